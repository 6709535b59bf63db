"""Source-target text pairs for text-to-text tasks (grapheme-to-phoneme and the like).

Pairs come from TSV files (``source<TAB>target``), JSONL files (``{"source": ..., "target": ...}``)
or CMUdict-style dictionaries (``WORD  P1 P2 ...``, ``;;;`` comments, ``WORD(2)`` alternates).
Bad lines are skipped and reported with file and line. Splits are by source word: every
pronunciation of a word lands in the same split, so test words are never seen in training.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from rnnseq.data.base import PairedItems, SplitDataModule
from rnnseq.data.batching import Example, collate_examples
from rnnseq.data.manifest import DataReport
from rnnseq.data.tokenizer import CharTokenizer, Tokenizer, WordTokenizer, tokenizer_from_state

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
PAIR_FORMATS = ("auto", "tsv", "jsonl", "cmudict")
_ALTERNATE = re.compile(r"\(\d+\)$")  # CMUdict: "READ(1)" is a second pronunciation of READ


class Pair(NamedTuple):
    source: str
    target: str


def detect_format(path: Path) -> str:
    """``jsonl`` for ``.jsonl``/``.json``, ``tsv`` for ``.tsv``/``.txt`` with tabs, else ``cmudict``."""
    if path.suffix in (".jsonl", ".json"):
        return "jsonl"
    if path.suffix == ".tsv":
        return "tsv"
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip() and not line.startswith(";;;"):
                return "tsv" if "\t" in line else "cmudict"
    return "tsv"


def read_pairs(path: str | Path, report: DataReport, fmt: str = "auto",
               lowercase_cmudict: bool = True) -> list[Pair]:
    """All usable pairs of a file; unusable lines are skipped and reported."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file {path} does not exist; check data.source")
    if fmt not in PAIR_FORMATS:
        raise ValueError(f"unknown pair format {fmt!r}; choose one of {', '.join(PAIR_FORMATS)}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    pairs = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip() or (fmt == "cmudict" and line.startswith(";;;")):
                continue
            pair, problem = _parse(line, fmt, lowercase_cmudict)
            if problem:
                report.add(path, number, problem)
            else:
                pairs.append(pair)
    if not pairs:
        raise ValueError(f"{path} holds no usable {fmt} pairs (see the warnings above)")
    return pairs


def _parse(line: str, fmt: str, lowercase: bool) -> tuple[Pair | None, str | None]:
    if fmt == "jsonl":
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            return None, f"not JSON ({err.msg})"
        if not isinstance(record, dict):
            return None, "not a JSON object"
        source, target = record.get("source"), record.get("target")
    elif fmt == "tsv":
        fields = line.split("\t")
        if len(fields) != 2:
            return None, f"expected 2 tab-separated fields, found {len(fields)}"
        source, target = fields
    else:  # cmudict
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            return None, "expected a word followed by its phonemes"
        source, target = _ALTERNATE.sub("", fields[0]), fields[1].split("#")[0]
        source = source.lower() if lowercase else source
    if not isinstance(source, str) or not isinstance(target, str):
        return None, "missing source or target"
    source, target = source.strip(), " ".join(target.split())
    if not source or not target:
        return None, "empty source or target"
    return Pair(source, target), None


def split_of(source: str, valid_fraction: float, test_fraction: float) -> str:
    """A split for a source string that depends only on the string (a stable hash)."""
    u = zlib.crc32(source.encode("utf-8")) / 2**32
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


class PairFiles:
    """Pairs read from files. Splits without a file are carved out of ``train`` by source word.

    Args:
        train, valid, test: pair files (TSV, JSONL or CMUdict).
        format: ``auto`` (by extension and content), ``tsv``, ``jsonl`` or ``cmudict``.
        holdout_fraction: share of training words moved to each missing split.
    """

    def __init__(self, train: str, valid: str | None = None, test: str | None = None,
                 format: str = "auto", holdout_fraction: float = 0.05):
        if not 0 < holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in (0, 0.5), got {holdout_fraction}")
        self.paths = {"train": train, "valid": valid, "test": test}
        self.format = format
        self.holdout_fraction = holdout_fraction

    def load(self, report: DataReport) -> dict[str, list[Pair]]:
        """``{split: pairs}``; splits not given are carved out of ``train`` by source word."""
        splits = {s: read_pairs(p, report, self.format) for s, p in self.paths.items() if p}
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            fractions = {s: (self.holdout_fraction if s in missing else 0.0) for s in ("valid", "test")}
            carved: dict[str, list[Pair]] = {s: [] for s in SPLITS}
            for pair in splits["train"]:
                carved[split_of(pair.source, fractions["valid"], fractions["test"])].append(pair)
            splits["train"] = carved["train"]
            for s in missing:
                splits[s] = carved[s]
                log.info("no %s pairs given: holding out %d pairs of %d training words", s,
                         len(carved[s]), len({p.source for p in carved[s]}))
        return splits


class PairDataset(PairedItems, Dataset):
    """Item ``i``: the source's ids as ``features`` ``(S,)`` and the target's ids as ``tokens``."""

    def __init__(self, pairs: list[Pair], source_tokenizer: Tokenizer, target_tokenizer: Tokenizer):
        self.pairs = pairs
        self.examples = [
            Example(id=p.source,
                    features=torch.tensor(source_tokenizer.encode(p.source), dtype=torch.long),
                    tokens=torch.tensor(target_tokenizer.encode(p.target), dtype=torch.long),
                    text=p.target)
            for p in pairs
        ]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]

    def input_lengths(self) -> list[int]:
        """Source tokens of every pair."""
        return [len(e.features) for e in self.examples]

    def target_ids(self) -> list[list[int]]:
        """Target ids of every pair."""
        return [e.tokens.tolist() for e in self.examples]

    def describe(self, index: int) -> tuple[str, str]:
        """``(source text, id)``: pairs come from one file, their source text names them."""
        return self.pairs[index].source, self.examples[index].id

    def subset(self, rows) -> PairDataset:
        """These pairs only."""
        subset = PairDataset.__new__(PairDataset)
        subset.pairs = [self.pairs[i] for i in rows]
        subset.examples = [self.examples[i] for i in rows]
        return subset

    def lengths(self) -> list[int]:
        """Source length (tokens) of every item, for length bucketing."""
        return [max(len(e.features), len(e.tokens)) for e in self.examples]


class PairDataModule(SplitDataModule):
    """Text-to-text data: characters in, whitespace-separated symbols (e.g. phonemes) out.

    Args:
        source: an object with ``load(report) -> {"train"|"valid"|"test": [Pair]}`` (e.g.
            :class:`PairFiles` or the embedded espeak lexicon).
        max_tokens: padded tokens per batch (bucketing budget over the longer side of a pair).
        max_batch_size: most pairs per batch.
        source_tokenizer, target_tokenizer: saved tokenizer states to reuse; by default a character
            tokenizer of the training sources and a symbol (word) tokenizer of the training targets.
        pin_memory: ``auto`` (pinned batches where the trainer runs on CUDA), ``true`` or
            ``false`` (:meth:`~rnnseq.data.base.SplitDataModule.pins_memory`).
    """

    def __init__(self, source: Any, max_tokens: int = 4096, max_batch_size: int = 256,
                 source_tokenizer: Mapping | None = None, target_tokenizer: Mapping | None = None,
                 num_workers: int = 0, seed: int = 0, pin_memory: bool | str = "auto"):
        super().__init__(pin_memory)
        self.source = source
        self.max_tokens = max_tokens
        self.max_batch_size = max_batch_size
        self.saved_tokenizers = {"source": source_tokenizer, "target": target_tokenizer}
        self.num_workers = num_workers
        self.seed = seed
        self.datasets: dict[str, PairDataset] = {}
        self.source_tokenizer: Tokenizer | None = None
        self.tokenizer: Tokenizer | None = None  # the target side, as in the other datamodules

    def prepare_data(self) -> None:
        build = getattr(self.source, "build", None)
        if build is not None:
            build()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        pairs = self.source.load(self.report)
        for split in SPLITS:
            if not pairs.get(split):
                raise ValueError(f"the pair source gave no {split} pairs; check data.source")
        train = pairs["train"]
        saved = self.saved_tokenizers
        self.source_tokenizer = (tokenizer_from_state(saved["source"]) if saved["source"]
                                 else CharTokenizer.from_texts(p.source for p in train))
        self.tokenizer = (tokenizer_from_state(saved["target"]) if saved["target"]
                          else WordTokenizer.from_texts(p.target for p in train))
        for split in SPLITS:
            self.datasets[split] = PairDataset(pairs[split], self.source_tokenizer, self.tokenizer)
        log.info("pairs: %s; %d source and %d target symbols",
                 {s: len(d) for s, d in self.datasets.items()}, len(self.source_tokenizer),
                 len(self.tokenizer))

    def task_arguments(self) -> dict[str, Any]:
        return {"source_tokenizer": self.source_tokenizer.state(),
                "target_tokenizer": self.tokenizer.state()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        return self.bucket_loader(
            dataset, dataset.lengths(), shuffle, self.seed,
            dict(max_frames=self.max_tokens, max_batch_size=self.max_batch_size),
            collate_fn=collate_examples, num_workers=self.num_workers)
