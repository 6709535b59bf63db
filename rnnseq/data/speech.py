"""Speech-to-text data: a dataset over manifest utterances and its LightningDataModule."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import soundfile
import torch
from torch.utils.data import DataLoader, Dataset

from rnnseq.data.audio import (
    AudioError,
    AudioFiles,
    FeatureConfig,
    LogMel,
    load_audio,
    require_sound,
)
from rnnseq.data.augment import WaveAugment, augment_settings, draw_seed
from rnnseq.data.base import PairedItems, SplitDataModule
from rnnseq.data.batching import EpochItem, Example, Failure, collate_examples
from rnnseq.data.feature_cache import FeatureCache, build_feature_cache
from rnnseq.data.manifest import DataReport, Utterance, normalize_utterances, read_manifest
from rnnseq.data.normalize import normalize_text
from rnnseq.data.tokenizer import (
    SPECIALS,
    CharTokenizer,
    LabelTokenizer,
    Tokenizer,
    build_tokenizer,
)
from rnnseq.resources import available_cores, data_workers, worker_init

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


class SpeechDataset(PairedItems, Dataset):
    """Utterances read from disk and turned into ``(S, F)`` log-mel features on the fly.

    Audio that fails to decode at run time gives a :class:`~rnnseq.data.batching.Failure`
    naming the file and the cause: the collate leaves it out of the batch and the task writes it
    to the run's data report, so one bad file never stops an epoch and none goes unreported.

    Args:
        augment: waveform augmentation applied to every item read from audio (use it for training
            data only); ``None`` for none.
        cache: precomputed features of the same utterances (:mod:`rnnseq.data.feature_cache`),
            read instead of the audio; not with ``augment``, which needs the waveform.
        variants: caches of augmented copies of the same utterances; each item is read from
            one of them drawn at random (training with cached augmentation). ``cache`` still
            gives the clean features (statistics, exact lengths).
        seed: with the epoch and the utterance id, it seeds every random draw of an item (which
            cached copy, the on-the-fly augmentation): the same draws with any number of
            DataLoader workers, on any machine, and after a resume.
        clean_epochs: epochs that read clean audio or features before the augmentation starts.
        symbols: the utterance field the tokenizer encodes: ``text`` (recognition) or
            ``phonemes`` (synthesis from phonemes); ``Example.text`` is always the text.
        speakers: ``{speaker name: id}``; when given, every item carries its speaker's id.
    """

    def __init__(
        self,
        utterances: list[Utterance],
        tokenizer: CharTokenizer | LabelTokenizer,
        features: FeatureConfig,
        augment: WaveAugment | None = None,
        cache: FeatureCache | None = None,
        variants: list[FeatureCache] | None = None,
        clean_epochs: int = 0,
        symbols: str = "text",
        speakers: Mapping[str, int] | None = None,
        seed: int = 0,
    ):
        if symbols not in ("text", "phonemes"):
            raise ValueError(f"symbols must be 'text' or 'phonemes', got {symbols!r}")
        if cache is not None and augment is not None:
            raise ValueError("cached features cannot be augmented on the fly; pass one of them")
        for each in [cache, *(variants or [])]:
            if each is not None and len(each) != len(utterances):
                raise ValueError(f"the feature cache {each.folder} holds {len(each)} utterances, "
                                 f"not {len(utterances)}")
        self.cache = cache
        self.variants = list(variants or [])
        self.utterances = utterances
        self.tokenizer = tokenizer
        self.feature_config = features
        self.logmel = LogMel(features)
        self.augment = augment
        self.clean_epochs = clean_epochs
        self.symbols = symbols
        self.speakers = speakers
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch that items indexed by a bare index are drawn for (a training loader indexes
        with :class:`~rnnseq.data.batching.EpochItem` pairs, which carry their own)."""
        self.epoch = epoch

    def augmenting(self, epoch: int) -> bool:
        """Whether items are augmented in ``epoch`` (not in the first ``clean_epochs``)."""
        return epoch >= self.clean_epochs and self.random_items

    @property
    def random_items(self) -> bool:
        """Whether items depend on the epoch (augmented, now or after ``clean_epochs``)."""
        return bool(self.variants) or self.augment is not None

    def item_generator(self, epoch: int, index: int) -> torch.Generator:
        """The random generator of item ``index`` in ``epoch``: seeded by the data seed, the epoch
        and the utterance id, and nothing else (not the process that reads it)."""
        return torch.Generator().manual_seed(draw_seed(self.seed, epoch, self.utterances[index].id))

    def __len__(self) -> int:
        return len(self.utterances)

    def frame_lengths(self) -> list[int]:
        """The most feature frames each utterance can have when served, so that a batch built
        from them stays within its frame budget (bucketing): the manifest duration, made longer by
        the slowest speed factor when augmenting on the fly, or the longest of the cached
        copies."""
        config = self.feature_config
        clean = [config.num_frames(u.duration) for u in self.utterances]
        if self.variants:
            caches = [c for c in (self.cache, *self.variants) if c is not None]
            cached = np.max(np.stack([c.index[:, 1] for c in caches]), axis=0)
            return [max(int(n), frames) for n, frames in zip(cached, clean)]
        if self.augment is None:
            return clean
        speed = self.augment.settings.speed
        return [speed.longest(int(u.duration * config.sample_rate), config.sample_rate)
                // config.hop_length + 1 for u in self.utterances]

    def input_lengths(self) -> list[int]:
        """Feature frames of every utterance: exact from the feature caches (the shortest of its
        cached copies), else from the manifest durations."""
        caches = [c for c in (self.cache, *self.variants) if c is not None]
        if caches:
            frames = np.min(np.stack([c.index[:, 1] for c in caches]), axis=0)
            return [max(int(n), 0) for n in frames]
        return [self.feature_config.num_frames(u.duration) for u in self.utterances]

    def target_ids(self) -> list[list[int]]:
        """Token ids of every transcript (or phoneme string)."""
        return [self.tokenizer.encode(getattr(u, self.symbols)) for u in self.utterances]

    def describe(self, index: int) -> tuple[str, str]:
        """``(audio file, id)`` of an utterance."""
        utt = self.utterances[index]
        return utt.audio_path, utt.id

    def subset(self, rows) -> SpeechDataset:
        """These utterances only (their cached features too)."""
        rows = list(rows)
        return SpeechDataset([self.utterances[i] for i in rows], self.tokenizer,
                             self.feature_config, self.augment,
                             self.cache.select(rows) if self.cache is not None else None,
                             [v.select(rows) for v in self.variants], self.clean_epochs,
                             self.symbols, self.speakers, self.seed)

    def without_augmentation(self) -> SpeechDataset:
        """The same utterances, clean (for feature statistics)."""
        return SpeechDataset(self.utterances, self.tokenizer, self.feature_config, None,
                             self.cache, symbols=self.symbols, speakers=self.speakers)

    def __getitem__(self, item: int | EpochItem) -> Example | Failure:
        epoch, index = item if isinstance(item, EpochItem) else (self.epoch, item)
        utt = self.utterances[index]
        if self.variants and self.augmenting(epoch):
            which = torch.randint(len(self.variants), (), generator=self.item_generator(epoch, index))
            features = self._cached(self.variants[int(which)], index)
        elif self.cache is not None:
            features = self._cached(self.cache, index)
        else:
            features = self._extract(utt, epoch, index)
        if isinstance(features, Failure):
            return features
        tokens = torch.tensor(self.tokenizer.encode(getattr(utt, self.symbols)), dtype=torch.long)
        speaker = self.speakers[utt.speaker] if self.speakers is not None else None
        return Example(id=utt.id, features=features, tokens=tokens, text=utt.text, speaker=speaker)

    def _cached(self, cache: FeatureCache, index: int) -> torch.Tensor | Failure:
        features = cache[index]
        if features is None:
            utt = self.utterances[index]
            return Failure(utt.id, utt.audio_path, "its audio could not be read when the "
                                                   "features were cached")
        return features

    def _extract(self, utt: Utterance, epoch: int, index: int) -> torch.Tensor | Failure:
        try:
            wave = require_sound(load_audio(utt.audio_path, self.feature_config.sample_rate),
                                 utt.audio_path)
        except AudioError as err:
            log.warning("skipping utterance %s: %s", utt.id, err)
            return Failure(utt.id, utt.audio_path, str(err))
        if self.augment is not None and self.augmenting(epoch):
            wave = self.augment(wave, self.item_generator(epoch, index))
        return self.logmel(wave)


def check_audio(utterances: list[Utterance], report: DataReport, split: str) -> list[Utterance]:
    """Keeps utterances whose audio file exists, opens and holds samples; reports the rest."""
    good = []
    for utt in utterances:
        if not os.path.isfile(utt.audio_path):
            report.add(utt.audio_path, None, f"audio file not found ({split} split)", id=utt.id)
            continue
        try:
            info = soundfile.info(utt.audio_path)
        except Exception as err:
            report.add(utt.audio_path, None, f"unreadable audio in {split} split: {err}", id=utt.id)
            continue
        if info.frames == 0:
            report.add(utt.audio_path, None, f"zero-length audio in {split} split", id=utt.id)
            continue
        good.append(utt)
    return good


class SpeechDataModule(SplitDataModule):
    """Speech corpora given as JSONL manifests (see :mod:`rnnseq.data.manifest`).

    Exposes what the model must know about the data, so that nothing derivable is typed twice in
    configs: :attr:`input_dim`, :attr:`tokenizer` and :meth:`feature_statistics`.

    Args:
        manifests: ``{"train": path, "valid": path, "test": path}``.
        corpus: an object with ``build() -> manifests`` (the embedded espeak corpus, or a
            reader of a corpus on disk, :mod:`rnnseq.data.readers`); when given, its manifests
            replace ``manifests``. It is built in :meth:`prepare_data`; what its ``report`` lists
            (items a reader left out) joins the run's data report.
        max_frames: padded feature frames per batch (the bucketing budget).
        length_jitter: relative jitter of the length sort key in training, so that batches differ
            between epochs (see :class:`~rnnseq.data.batching.BucketBatchSampler`).
        max_duration: utterances longer than this (seconds) are skipped and reported.
        vocabulary: a fixed list of characters (or labels); by default those of the training
            transcripts.
        tokenizer: the recognition targets: ``kind`` ``char`` (the default) or sentencepiece
            subwords ``bpe`` / ``unigram`` of ``vocab_size`` pieces, trained on the training
            transcripts with ``seed`` (the model is saved in the checkpoint).
        targets: ``char`` (transcripts as character sequences, for recognition) or ``label``
            (each whole transcript is one class, for spoken-command classification).
        augment: waveform augmentation of the training split (``data.augment``: ``speed``,
            ``noise``, ``reverb``, ``band_limit``, each with its probability ``p`` and ranges,
            and ``variants``; :mod:`rnnseq.data.augment`). With a feature cache and
            ``variants: K`` > 0, K augmented copies of the training split are cached and every
            item is read from one of them at random; otherwise training audio is augmented on
            the fly (and not cached).
        num_workers: DataLoader worker processes that read audio or cached features, or
            ``auto`` (:func:`rnnseq.resources.data_workers`: none on two cores, two above).
        pin_memory: batches in page-locked memory, copied to the GPU asynchronously; ``auto``:
            when the trainer runs on CUDA (:meth:`SplitDataModule.pins_memory`).
        worker_nice: how much lower the workers' scheduling priority is (``os.nice``); 0 keeps
            the training process's priority (``bench/threads.py`` measures whether lowering it helps).
        feature_cache: a folder where the features of every split are computed once and read
            back in every epoch and run (:mod:`rnnseq.data.feature_cache`); ``None`` computes them
            from the audio every time.
        validate_audio: open every audio header at setup, so bad files are reported up front.
        normalizer: how every transcript is normalised before use (``letters``, ``lowercase``,
            ``none``: :mod:`rnnseq.data.normalize`); recorded in the checkpoint, so that
            ``rnnseq.evaluate`` treats any reference the same way.
        stats_utterances: how many training utterances estimate the normalisation statistics.
        sorted_epochs: training epochs served from short to long utterances before shuffling
            starts (1: SortaGrad). ``experiment=asr`` sets how many; the runs that chose it
            are in ``experiments/asr/notes/``.
    """

    def __init__(
        self,
        manifests: Mapping[str, str] | None = None,
        corpus: Any = None,
        features: Mapping[str, Any] | None = None,
        max_frames: int = 20000,
        max_batch_size: int = 64,
        length_jitter: float = 0.02,
        max_duration: float | None = None,
        vocabulary: list[str] | None = None,
        tokenizer: Mapping[str, Any] | None = None,
        targets: str = "char",
        augment: Mapping[str, Any] | None = None,
        num_workers: int | str = "auto",
        pin_memory: bool | str = "auto",
        worker_nice: int = 0,
        feature_cache: str | None = None,
        validate_audio: bool = True,
        normalizer: str = "letters",
        stats_utterances: int = 500,
        sorted_epochs: int = 1,
        seed: int = 0,
    ):
        super().__init__(pin_memory)
        if manifests is None and corpus is None:
            raise ValueError("SpeechDataModule needs data.manifests (train/valid/test) or data.corpus")
        self.manifests = dict(manifests or {})
        self.corpus = corpus
        self.feature_config = FeatureConfig(**(features or {}))
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.length_jitter = length_jitter
        self.max_duration = max_duration
        self.vocabulary = vocabulary
        if targets not in ("char", "label"):
            raise ValueError(f"data.targets must be 'char' or 'label', got {targets!r}")
        self.targets = targets
        self.tokenizer_config = dict(tokenizer or {"kind": "char"})
        kind = self.tokenizer_config.get("kind", "char")
        if kind not in ("char", "bpe", "unigram"):
            raise ValueError(f"data.tokenizer.kind must be char, bpe or unigram, got {kind!r}")
        if kind != "char" and (targets != "char" or vocabulary is not None):
            raise ValueError(f"data.tokenizer.kind={kind} builds subword targets for recognition; "
                             f"it does not apply with data.targets={targets} or a fixed "
                             f"data.vocabulary (set data.tokenizer.kind=char)")
        if kind != "char" and not self.tokenizer_config.get("vocab_size"):
            raise ValueError(f"data.tokenizer.kind={kind} needs data.tokenizer.vocab_size "
                             f"(pieces, e.g. 300)")
        self.augment_settings = augment_settings(augment, seed)
        self.num_workers = data_workers(num_workers)
        self.worker_nice = worker_nice
        self.feature_cache = feature_cache
        self.validate_audio = validate_audio
        normalize_text("", normalizer)  # an unknown name fails here, naming data.normalizer
        self.normalizer = normalizer
        self.stats_utterances = stats_utterances
        self.sorted_epochs = sorted_epochs
        self.seed = seed
        self.tokenizer: Tokenizer | None = None
        self.datasets: dict[str, SpeechDataset] = {}

    # -- what the model needs to know -----------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """Feature size F (mel bins)."""
        return self.feature_config.n_mels

    def prepare_data(self) -> None:
        if self.corpus is not None:
            self.manifests = dict(self.corpus.build())

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.corpus is not None and not self.manifests:
            self.prepare_data()
        corpus_report = getattr(self.corpus, "report", None)  # what a reader left out on disk
        if corpus_report is not None:
            self.report.merge(corpus_report.issues)
        missing = [s for s in SPLITS if s not in self.manifests]
        if missing:
            raise ValueError(f"data.manifests lacks split(s) {missing}; give paths for {SPLITS}")
        utterances = {s: self._read_split(s) for s in [*SPLITS, *self.extra_test_splits]}
        if not utterances["train"]:
            raise ValueError(f"no usable training utterances in {self.manifests['train']}")
        self.tokenizer = self._make_tokenizer(utterances["train"])
        for split, utts in utterances.items():
            self.report.split = split
            utts = self._check_vocabulary(utts, split)
            self.datasets[split] = self._dataset(split, utts)
        self.report.split = None
        counts = {s: len(d) for s, d in self.datasets.items()}
        log.info("speech data: %s utterances, %d symbols, %s", counts, len(self.tokenizer),
                 self.report.counts() or "no problems")
        train = self.datasets["train"]
        if train.variants or train.augment is not None:
            how = (f"{len(train.variants)} cached augmented copies" if train.variants
                   else "augmented on the fly")
            log.info("training audio: %s (%s)", how, self.augment_settings)

    symbols = "text"  # the utterance field the tokenizer encodes (SpeechDataset.symbols)

    def _make_tokenizer(self, train: list[Utterance]) -> Tokenizer:
        """The symbol table: ``data.vocabulary`` when given, else the training transcripts'
        characters (labels), or subwords trained on them (``data.tokenizer``)."""
        kind = self.tokenizer_config.get("kind", "char")
        if kind != "char":
            return build_tokenizer(kind, (getattr(u, self.symbols) for u in train),
                                   vocab_size=self.tokenizer_config["vocab_size"], seed=self.seed)
        table = LabelTokenizer if self.targets == "label" else CharTokenizer
        if self.vocabulary is not None:
            return table([*SPECIALS, *(v for v in self.vocabulary if v not in SPECIALS)])
        return table.from_texts(getattr(u, self.symbols) for u in train)

    def _speakers(self) -> dict[str, int] | None:
        """``{speaker: id}`` that items carry (:class:`SpeechDataset`); none for recognition."""
        return None

    @property
    def extra_test_splits(self) -> list[str]:
        """Evaluation splits beyond ``test``, scored after it under their own names: every
        manifest key other than train, valid and test (the embedded corpus has ``test_text``
        and ``test_voices``; add your own with ``+data.manifests.NAME=path``)."""
        return [s for s in self.manifests if s not in SPLITS]

    def _dataset(self, split: str, utts: list[Utterance]) -> SpeechDataset:
        """One split's dataset: cached features where configured; training with augmentation,
        cached per variant or applied on the fly."""
        augment = None
        if split == "train" and self.augment_settings.active:
            talkers = AudioFiles([u.audio_path for u in utts], self.feature_config.sample_rate)
            augment = WaveAugment(self.augment_settings, self.feature_config.sample_rate, talkers)
        clean_epochs = self.augment_settings.clean_epochs
        same = dict(symbols=self.symbols, speakers=self._speakers(), seed=self.seed)
        if not self.feature_cache or (augment is not None and self.augment_settings.variants == 0):
            # augmented on the fly: every epoch reads the audio, so a clean cache would go unread
            # (at LibriSpeech's 960 h it would take 110 GB); the other splits are still cached
            return SpeechDataset(utts, self.tokenizer, self.feature_config, augment,
                                 clean_epochs=clean_epochs, **same)
        cache = build_feature_cache(utts, self.feature_config, self.feature_cache,
                                    num_workers=available_cores(),
                                    description=f"log-mel features of {split}")
        utts, cache = self._drop_unusable(utts, cache, split)
        if augment is None:
            return SpeechDataset(utts, self.tokenizer, self.feature_config, cache=cache, **same)
        variants = [build_feature_cache(utts, self.feature_config, self.feature_cache,
                                        num_workers=available_cores(), augment=augment, variant=k,
                                        description=f"augmented copy {k + 1} of {split}")
                    for k in range(self.augment_settings.variants)]
        return SpeechDataset(utts, self.tokenizer, self.feature_config, cache=cache,
                             variants=variants, clean_epochs=clean_epochs, **same)

    def _read_split(self, split: str) -> list[Utterance]:
        self.report.split = split
        utts = normalize_utterances(read_manifest(self.manifests[split], self.report),
                                    self.normalizer, self.report, self.manifests[split])
        if self.max_duration is not None:
            keep = []
            for u in utts:
                if u.duration > self.max_duration:
                    self.report.add(u.audio_path, None,
                                    f"{u.duration:.1f} s is over data.max_duration={self.max_duration}",
                                    id=u.id)
                else:
                    keep.append(u)
            utts = keep
        if self.validate_audio:
            utts = check_audio(utts, self.report, split)
        return utts

    def _drop_unusable(self, utts: list[Utterance], cache: FeatureCache, split: str):
        """Utterances whose audio gave features, and the cache seen through them; the others
        (undecodable or silent audio) go to the report."""
        problems = cache.problems()
        if not problems:
            return utts, cache
        for row, reason in sorted(problems.items()):
            self.report.add(utts[row].audio_path, None, f"{reason} ({split} split)", id=utts[row].id)
        rows = [i for i in range(len(utts)) if i not in problems]
        return [utts[i] for i in rows], cache.select(rows)

    def _check_vocabulary(self, utts: list[Utterance], split: str) -> list[Utterance]:
        """Training utterances with unknown characters (labels) are skipped; evaluation ones are
        kept (they become ``<unk>``) so that the test set is never silently shrunk."""
        keep = []
        for u in utts:
            unknown = self.tokenizer.unknown_symbols(getattr(u, self.symbols))
            if not unknown:
                keep.append(u)
                continue
            if self.symbols == "phonemes":
                what = f"phonemes {' '.join(sorted(unknown))!r} are outside the vocabulary"
            elif self.targets == "char":
                what = f"characters {''.join(sorted(unknown))!r} are outside the vocabulary"
            else:
                what = f"label {''.join(sorted(unknown))!r} is not one of the training labels"
            if split == "train":
                self.report.add(self.manifests[split], None, what, id=u.id)
            else:
                self.report.add(self.manifests[split], None, f"{what}; scored as <unk>",
                                action="kept", id=u.id)
                keep.append(u)
        return keep

    @torch.no_grad()
    def feature_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``(F,)`` of the features of (a sample of) the training split."""
        dataset = self.datasets["train"]
        rng = random.Random(self.seed)
        indices = rng.sample(range(len(dataset)), min(self.stats_utterances, len(dataset)))
        total = torch.zeros(self.input_dim, dtype=torch.float64)
        total_sq = torch.zeros(self.input_dim, dtype=torch.float64)
        frames = 0
        plain = dataset.without_augmentation()
        for i in indices:
            example = plain[i]
            if isinstance(example, Failure):
                continue
            feats = example.features.double()
            total += feats.sum(0)
            total_sq += feats.pow(2).sum(0)
            frames += feats.shape[0]
        if frames == 0:
            raise ValueError("no training audio could be read to compute feature statistics")
        mean = total / frames
        std = (total_sq / frames - mean.pow(2)).clamp_min(0).sqrt()
        return mean.float(), std.float()

    # -- what the task needs to know ------------------------------------------------------------
    def task_arguments(self) -> dict[str, Any]:
        """Arguments of the task that follow from the data (symbols and feature settings)."""
        arguments = {"vocabulary": self.tokenizer.symbols, "features": asdict(self.feature_config),
                     "normalizer": self.normalizer}
        if self.tokenizer.kind in ("bpe", "unigram"):
            arguments["tokenizer"] = self.tokenizer.state()
        return arguments

    def prepare_task(self, task: L.LightningModule) -> None:
        """Copies the training-split feature statistics into the task's normaliser, then drops
        what the task cannot align (see the base class)."""
        task.normalizer.set_statistics(*self.feature_statistics())
        super().prepare_task(task)

    # -- loaders --------------------------------------------------------------------------------
    def split_dataloader(self, split: str) -> DataLoader:
        """The evaluation loader of any split (``valid``, ``test`` or an extra test split)."""
        if split not in self.datasets:
            raise ValueError(f"no {split!r} split; this data has {sorted(self.datasets)}")
        return self._loader(split, shuffle=False)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        return self.bucket_loader(
            dataset, dataset.frame_lengths(), shuffle, self.seed,
            dict(max_frames=self.max_frames, max_batch_size=self.max_batch_size,
                 length_jitter=self.length_jitter,
                 sorted_epochs=self.sorted_epochs if shuffle else 0),
            collate_fn=collate_examples,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=worker_init(self.worker_nice),
        )
