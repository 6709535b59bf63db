"""Where the features of a 960-hour corpus come from: a cache on disk or the audio, every epoch.

    .venv/bin/python bench/feature_scaling.py [--utterances 300] [--repeats 3]

Takes utterances of the embedded corpus, writes them as 16-bit FLAC (LibriSpeech's format), and
measures, with one thread, in audio seconds per compute second (median of ``--repeats``):

1. **on the fly**: read the FLAC, resample to a random speed of 0.9 / 1.0 / 1.1 (the recipe's
   3-way speed perturbation), compute the 80-bin log-mel (what ``experiment=asr_librispeech``
   does for training);
2. **on the fly, clean**: read and compute the log-mel only;
3. **cached**: read the same features back from a float32 feature cache (memory-mapped).

and the cache's bytes per hour of audio, scaled to LibriSpeech's 960 h (and 3x for three cached
speed copies, as ESPnet and Kaldi store them). It prints how many worker cores keep one GPU fed
at a given training throughput (``--gpu-hours-per-hour``).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import soundfile
import torch
from common import compose, machine, median

from rnnseq.data.audio import FeatureConfig, LogMel, load_audio
from rnnseq.data.augment import speed_perturb
from rnnseq.data.feature_cache import build_feature_cache
from rnnseq.data.manifest import Utterance

LIBRISPEECH_HOURS = 960


def flac_copies(utterances: list[Utterance], folder: Path, rate: int) -> list[Utterance]:
    """The utterances rewritten as 16-bit FLAC files in ``folder``."""
    out = []
    for u in utterances:
        path = folder / f"{u.id.replace('/', '_')}.flac"
        soundfile.write(path, load_audio(u.audio_path, rate).numpy(), rate, subtype="PCM_16")
        out.append(Utterance(u.id, str(path), u.duration, u.text))
    return out


def on_the_fly(utterances: list[Utterance], config: FeatureConfig, perturb: bool) -> float:
    """Audio seconds turned into features per second, one thread."""
    logmel, rng = LogMel(config), random.Random(0)
    audio = 0.0
    start = time.perf_counter()
    for u in utterances:
        wave = load_audio(u.audio_path, config.sample_rate)
        audio += wave.numel() / config.sample_rate
        if perturb:
            wave = speed_perturb(wave, rng.choice([0.9, 1.0, 1.1]), config.sample_rate)
        logmel(wave)
    return audio / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-hours-per-hour", type=float, default=300.0,
                        help="audio hours a GPU trains on per hour (for the cores estimate)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = compose(["experiment=asr"])
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    from rnnseq.data.manifest import DataReport, read_manifest

    utterances = read_manifest(datamodule.manifests["train"], DataReport())[:args.utterances]
    config = FeatureConfig(**{**dict(cfg.data.features), "sample_rate": 16000, "n_mels": 80})
    with tempfile.TemporaryDirectory() as tmp:
        flacs = flac_copies(utterances, Path(tmp), config.sample_rate)
        hours = sum(soundfile.info(u.audio_path).duration for u in flacs) / 3600
        LogMel(config)(load_audio(flacs[0].audio_path, config.sample_rate))  # warm-up
        perturbed = [on_the_fly(flacs, config, True) for _ in range(args.repeats)]
        clean = [on_the_fly(flacs, config, False) for _ in range(args.repeats)]
        cache = build_feature_cache(flacs, config, Path(tmp) / "cache", num_workers=1,
                                    description="cache")
        cache_bytes = sum(p.stat().st_size for p in (Path(tmp) / "cache").rglob("*") if p.is_file())
        reads = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for i in range(len(flacs)):
                cache[i]
            reads.append(hours * 3600 / (time.perf_counter() - start))
    per_hour = cache_bytes / hours
    print(f"machine: {machine()}")
    print(f"{len(flacs)} utterances, {hours * 60:.1f} min of audio, 80 log-mel bins every 10 ms")
    print("| source | audio s per compute s (1 thread), each repeat | median |")
    print("|---|---|---|")
    for name, values in (("FLAC + speed perturbation + log-mel", perturbed),
                         ("FLAC + log-mel", clean), ("float32 cache (memory-mapped)", reads)):
        print(f"| {name} | {', '.join(f'{v:,.0f}' for v in values)} | {median(values):,.0f} |")
    print(f"cache: {per_hour / 1e6:.1f} MB per audio hour -> {per_hour * LIBRISPEECH_HOURS / 1e9:.0f} GB "
          f"for {LIBRISPEECH_HOURS} h, {3 * per_hour * LIBRISPEECH_HOURS / 1e9:.0f} GB with three "
          f"cached speed copies")
    need = args.gpu_hours_per_hour * 3600 / (median(perturbed) * 3600)
    print(f"on the fly: {need:.2f} cores keep a GPU that trains on {args.gpu_hours_per_hour:.0f} audio "
          f"hours per hour fed ({LIBRISPEECH_HOURS} h epoch: "
          f"{LIBRISPEECH_HOURS * 3600 / median(perturbed) / 3600:.1f} core-hours of features)")


if __name__ == "__main__":
    main()
