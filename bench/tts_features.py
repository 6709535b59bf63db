"""Which log-mel analysis should speech synthesis predict? Each candidate setting is scored on
what Griffin-Lim makes of it (copy synthesis: recording -> log-mel -> vocoder -> audio) and on
how many frames the decoder would have to produce.

For every setting (``WIN_MS/HOP_MS``) and every test recording of the synthesis corpus:

- frames per second of audio, and decoder steps per second at reduction factor ``--reduction``;
- MCD (dB, :func:`rnnseq.metrics.mel_cepstral_distortion`) between the recording and its copy
  synthesis, both analysed with one fixed setting (``--judge``), so settings compare fairly;
- with ``--asr RUN`` (a speech-to-text run): CER and WER of what it hears in the copy synthesis,
  next to what it hears in the recordings themselves;
- Griffin-Lim time per second of audio (median per setting; informative only, not interleaved).

    .venv/bin/python bench/tts_features.py --asr experiments/asr/runs/RUN --items 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on the import path)
import torch

from rnnseq import metrics as M
from rnnseq.data.audio import FeatureConfig, LogMel, load_audio
from rnnseq.data.normalize import normalize_text
from rnnseq.data.vocoder import GriffinLimVocoder


def setting(text: str) -> FeatureConfig:
    """``"50/12.5"`` -> a 16 kHz, 80-bin config with a 50 ms window and a 12.5 ms hop."""
    win, hop = (float(x) for x in text.split("/"))
    return FeatureConfig(sample_rate=16000, n_mels=80, win_ms=win, hop_ms=hop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--settings", nargs="+", default=["25/10", "50/10", "50/12.5"],
                        help="WIN_MS/HOP_MS analyses to compare")
    parser.add_argument("--judge", default="25/10", help="the analysis MCD is measured in")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="recordings (default: the embedded synthesis corpus's test split)")
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--reduction", type=int, default=3, help="frames per decoder step")
    parser.add_argument("--asr", default=None, help="a speech-to-text run that listens")
    parser.add_argument("--n-iter", type=int, default=32, help="Griffin-Lim iterations")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    manifest = args.manifest or next(Path("data").glob("espeak_tts-[0-9a-f]*/test.jsonl"))
    lines = [json.loads(x) for x in manifest.read_text().splitlines()][: args.items]
    waves = [load_audio(manifest.parent / line["audio_filepath"], 16000) for line in lines]
    seconds = sum(len(w) for w in waves) / 16000
    judge = LogMel(setting(args.judge))
    asr = None
    if args.asr:
        from rnnseq.checkpoints import load_task
        from rnnseq.tasks.speech_to_text import SpeechToText

        asr = load_task(SpeechToText, args.asr, "cpu")
        references = [normalize_text(line["text"], asr.hparams.normalizer) for line in lines]
        heard = M.error_rates(references, asr.transcribe_waves(waves))
        print(f"recordings ({len(waves)}, {seconds:.0f} s): CER {100 * heard.cer:.2f} % "
              f"WER {100 * heard.wer:.2f} %")
    print(f"{'win/hop ms':>10} {'frames/s':>8} {'steps/s':>7} {'copy MCD':>8} "
          f"{'copy CER':>8} {'copy WER':>8} {'GL s/s':>7}")
    for text in args.settings:
        config = setting(text)
        analyse, vocoder = LogMel(config), GriffinLimVocoder(config, n_iter=args.n_iter)
        copies, mcds, times = [], [], []
        for wave in waves:
            mel = analyse(wave)
            start = time.perf_counter()
            copy = vocoder(mel)
            times.append((time.perf_counter() - start) / (len(wave) / 16000))
            copies.append(copy)
            mcds.append(M.mel_cepstral_distortion(judge(wave), judge(copy)))
        rates = "" if asr is None else M.error_rates(references, asr.transcribe_waves(copies))
        heard = "" if asr is None else f"{100 * rates.cer:8.2f} {100 * rates.wer:8.2f}"
        frames = 1000 / config.hop_ms
        print(f"{text:>10} {frames:8.1f} {frames / args.reduction:7.1f} "
              f"{statistics.mean(mcds):8.2f} {heard:>17} {statistics.median(times):7.3f}")
    print(f"{common.machine()}; {len(waves)} recordings of {manifest}")


if __name__ == "__main__":
    main()
