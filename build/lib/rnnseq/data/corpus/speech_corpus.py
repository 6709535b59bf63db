"""The embedded speech corpus: sentences from held-apart documents spoken by espeak-ng voices.

Everything is derived from the build settings and the seed, so the same settings always give the
same corpus. It is built once into ``<cache_dir>/<name>-<hash of the settings>/`` (in parallel
worker processes, with a progress bar) and reused afterwards; a build that is interrupted leaves
only a temporary folder behind, never a half-built corpus that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from rnnseq.data.corpus.sentences import extract_sentences
from rnnseq.data.corpus.shakespeare import fetch_shakespeare
from rnnseq.data.manifest import write_manifest

log = logging.getLogger(__name__)

DEFAULT_VOICES = (
    "en-us", "en", "en-us+f2", "en+m3", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+m7",
    "en-us+f5", "en-gb-x-gbclan",
)
SPLIT_NAMES = ("train", "valid", "test")
BUILD_INFO = "corpus.json"
CORPUS_FORMAT = 2  # bump when the same settings would build a different corpus


def settings_digest(settings, corpus_format: int) -> str:
    """A short hash of a corpus's settings dataclass and its format number (the cache name)."""
    blob = json.dumps({**asdict(settings), "format": corpus_format}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class SpeechCorpusSettings:
    """Everything that determines the corpus (its hash names the cache folder)."""

    text_source: str = "shakespeare"
    valid_documents: list[str] = field(default_factory=lambda: ["much_ado_about_nothing"])
    test_documents: list[str] = field(default_factory=lambda: ["hamlet"])
    num_utterances: dict[str, int] = field(
        default_factory=lambda: {"train": 8000, "valid": 300, "test": 500}
    )
    min_words: int = 3
    max_words: int = 12
    voices: list[str] = field(default_factory=lambda: list(DEFAULT_VOICES))
    rate: tuple[int, int] = (150, 220)
    pitch: tuple[int, int] = (30, 70)
    sample_rate: int = 16000
    seed: int = 0

    def digest(self) -> str:
        """A short hash of every setting: the name of the corpus's cache folder."""
        return settings_digest(self, CORPUS_FORMAT)


class EspeakCorpus:
    """Base of the corpora spoken by espeak-ng: builds (once) and returns their JSONL manifests.

    Subclasses set :attr:`settings_class` (a dataclass with ``digest()``, ``voices``, ``rate``,
    ``pitch``, ``sample_rate`` and ``seed``) and implement :meth:`_texts`; they may choose voices
    per split in :meth:`_voice_for`. The corpus lands in ``<cache_dir>/<name>-<digest>/``.
    """

    settings_class: type

    def __init__(self, cache_dir: str = "data", name: str = "espeak",
                 num_workers: int | None = None, **settings):
        self.cache_dir = Path(cache_dir)
        self.name = name
        self.num_workers = num_workers or os.cpu_count() or 1
        allowed = set(self.settings_class.__dataclass_fields__)
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown corpus setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        # Hydra hands over ListConfig/DictConfig; the settings (and their hash) want plain values.
        plain = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
                 for k, v in settings.items()}
        self.settings = self.settings_class(**plain)
        self.root = self.cache_dir / f"{name}-{self.settings.digest()}"

    def manifests(self) -> dict[str, str]:
        """``{split: manifest path}`` of this corpus's cache folder (built or not)."""
        return {split: str(self.root / f"{split}.jsonl") for split in SPLIT_NAMES}

    def _texts(self) -> dict[str, list[str]]:
        """What each split says, one utterance per entry."""
        raise NotImplementedError

    def _voice_for(self, utt_id: str, split: str) -> tuple[str, int, int]:
        """Voice, rate and pitch of one utterance, drawn from the settings and its id."""
        rng = random.Random(f"{self.settings.seed}/{utt_id}")
        s = self.settings
        return rng.choice(s.voices), rng.randint(*s.rate), rng.randint(*s.pitch)

    def build(self) -> dict[str, str]:
        """Builds the corpus unless it is already in the cache; returns the manifest paths."""
        if (self.root / BUILD_INFO).exists():
            return self.manifests()
        texts = self._texts()
        tmp = self.root.with_name(self.root.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        jobs = []
        for split, lines in texts.items():
            (tmp / "wav" / split).mkdir(parents=True)
            for i, text in enumerate(lines):
                utt_id = f"{split}-{i:05d}"
                jobs.append(_Job(utt_id, split, text, str(tmp / "wav" / split / f"{utt_id}.wav"),
                                 self._voice_for(utt_id, split), self.settings.sample_rate))
        entries: dict[str, list[dict]] = {split: [] for split in SPLIT_NAMES}
        context = multiprocessing.get_context("spawn")  # espeak-ng and torch both keep globals
        with ProcessPoolExecutor(self.num_workers, mp_context=context) as pool:
            results = pool.map(_synthesize, jobs, chunksize=16)
            for job, duration in tqdm(zip(jobs, results), total=len(jobs),
                                      desc=f"synthesising {self.root.name}", unit="utt"):
                entries[job.split].append({
                    "id": job.id,
                    "audio_filepath": os.path.relpath(job.path, tmp),
                    "duration": round(duration, 3),
                    "text": job.text,
                    "voice": job.voice[0],
                })
        for split in SPLIT_NAMES:
            write_manifest(tmp / f"{split}.jsonl", entries[split])
        info = {"settings": asdict(self.settings),
                "utterances": {s: len(e) for s, e in entries.items()},
                "hours": {s: round(sum(x["duration"] for x in e) / 3600, 3)
                          for s, e in entries.items()}}
        (tmp / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
        try:
            tmp.rename(self.root)  # atomic: the corpus appears complete or not at all
        except OSError:
            if not (self.root / BUILD_INFO).exists():
                raise
            shutil.rmtree(tmp)  # another process finished the same build first
        log.info("built speech corpus %s: %s", self.root, info["utterances"])
        return self.manifests()


class EspeakSpeechCorpus(EspeakCorpus):
    """The embedded speech corpus: sentences of held-apart documents.

    Args:
        cache_dir: where corpora and the downloaded text live.
        text_source: ``"shakespeare"`` or a folder of ``.txt`` documents of your own.
        valid_documents, test_documents: document names (file stems) held out of training.
        num_utterances: ``{"train": n, "valid": n, "test": n}``.
        voices: espeak-ng voice names with optional variant, e.g. ``"en-us+f2"``.
        rate, pitch: ``[low, high]`` ranges drawn per utterance (words/minute; 0-100).
        num_workers: synthesis processes (default: all cores).
    """

    settings_class = SpeechCorpusSettings

    def _texts(self) -> dict[str, list[str]]:
        return self._select_sentences()

    def _documents(self) -> dict[str, Path]:
        source = self.settings.text_source
        if source == "shakespeare":
            folder = fetch_shakespeare(self.cache_dir / "shakespeare")
        else:
            folder = Path(source)
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"text_source {source!r} is neither 'shakespeare' nor a folder of .txt files"
                )
        docs = {p.stem: p for p in sorted(folder.glob("*.txt"))}
        for key in ("valid_documents", "test_documents"):
            missing = [d for d in getattr(self.settings, key) if d not in docs]
            if missing:
                raise ValueError(f"{key} {missing} not found in {folder}; choose from {sorted(docs)}")
        return docs

    def _select_sentences(self) -> dict[str, list[str]]:
        """Sentences per split; held-out documents never feed training, and a held-out sentence
        that also occurs in the training documents is dropped."""
        s = self.settings
        docs = self._documents()
        held = {"valid": set(s.valid_documents), "test": set(s.test_documents)}
        if held["valid"] & held["test"]:
            raise ValueError(f"documents {held['valid'] & held['test']} are in both valid and test")
        pools: dict[str, list[str]] = {split: [] for split in SPLIT_NAMES}
        for name, path in docs.items():
            split = next((k for k, v in held.items() if name in v), "train")
            pools[split].extend(extract_sentences(path.read_text(encoding="utf-8"),
                                                  s.min_words, s.max_words))
        train_set = set(pools["train"])
        chosen = {}
        for split in SPLIT_NAMES:
            pool = list(dict.fromkeys(pools[split]))  # distinct, in text order
            if split != "train":
                pool = [x for x in pool if x not in train_set]
            wanted = s.num_utterances.get(split, 0)
            if wanted > len(pool):
                raise ValueError(
                    f"{split} split wants {wanted} sentences but its documents give {len(pool)}"
                )
            # One generator per split: resizing training data keeps the same test sentences.
            chosen[split] = random.Random(f"{s.seed}/{split}").sample(pool, wanted)
        return chosen


@dataclass(frozen=True)
class _Job:
    id: str
    split: str
    text: str
    path: str
    voice: tuple[str, int, int]
    sample_rate: int


def _synthesize(job: _Job) -> float:
    """Runs in a worker process: speaks one sentence and writes it as 16-bit wav; returns seconds."""
    import soundfile
    import torch
    import torchaudio

    from rnnseq.data.corpus.espeak import EspeakSynthesizer, Voice

    torch.set_num_threads(1)
    synth = EspeakSynthesizer.shared()
    name, rate, pitch = job.voice
    wave = synth.synthesize(job.text, Voice(name, rate=rate, pitch=pitch))
    wave = torchaudio.functional.resample(torch.from_numpy(wave), synth.sample_rate,
                                          job.sample_rate).numpy()
    wave = _normalize_loudness(wave)
    soundfile.write(job.path, wave, job.sample_rate, subtype="PCM_16")
    return len(wave) / job.sample_rate


def _normalize_loudness(wave: np.ndarray, target_rms: float = 0.1) -> np.ndarray:
    # Some espeak variants come out several times quieter than others.
    rms = float(np.sqrt(np.mean(wave**2))) if wave.size else 0.0
    if rms > 0:
        wave = wave * (target_rms / rms)
    return np.clip(wave, -1.0, 1.0)
