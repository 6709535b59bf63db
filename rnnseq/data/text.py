"""Text for language models: token streams cut into truncated-BPTT windows, or independent lines.

Stream mode follows PyTorch's word_language_model: every split becomes one token stream (each
line followed by ``<eos>``), the stream is cut into ``batch_size`` parallel rows, and batch ``i``
holds columns ``[i * bptt, (i + 1) * bptt)`` of every row. Row ``b`` of batch ``i + 1`` continues
row ``b`` of batch ``i``, so the model carries its recurrent state from one batch to the next
(detached: gradients stop at the window edge). Line mode treats every line as its own sequence,
``<eos> x`` predicting ``x <eos>``, batched by length.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from rnnseq.data.base import ResumableLoader, SplitDataModule, own_generator
from rnnseq.data.batching import InOrderBatches
from rnnseq.data.builders.text_sources import SPLITS
from rnnseq.data.tokenizer import Tokenizer, build_tokenizer, tokenizer_from_state
from rnnseq.formats import upgrade_advice

log = logging.getLogger(__name__)

TEXT_MODES = ("stream", "lines")


class TextBatch(NamedTuple):
    inputs: torch.Tensor  # (B, T) token ids
    targets: torch.Tensor  # (B, T) next tokens; pad (0) where there is none
    stateful: bool  # True: row b continues row b of the previous batch (carry the state)

    @property
    def empty(self) -> bool:
        """Whether the batch holds no line (a rank's share of a short split)."""
        return self.inputs.shape[0] == 0


def encode_stream(lines: Sequence[str], tokenizer: Tokenizer) -> torch.Tensor:
    """``(N,)`` ids of all lines, each followed by ``<eos>``."""
    ids: list[int] = []
    for line in lines:
        ids.extend(tokenizer.encode(line))
        ids.append(tokenizer.eos_id)
    return torch.tensor(ids, dtype=torch.long)


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``(N,) -> (batch_size, N // batch_size)``: row ``b`` is the ``b``-th contiguous slice of the
    stream; the last ``N % batch_size`` tokens are dropped."""
    per_row = stream.numel() // batch_size
    if per_row < 2:
        raise ValueError(f"a stream of {stream.numel()} tokens is too short for {batch_size} rows; "
                         f"lower the batch size")
    return stream[: per_row * batch_size].view(batch_size, per_row)


def _the_only_item(items: list[TextBatch]) -> TextBatch:
    """Collate of one-item batches whose item is a whole batch already."""
    return items[0]


class StreamWindows(Dataset):
    """Consecutive ``bptt``-long windows over a batchified ``(B, L)`` stream; item ``i`` is a whole
    :class:`TextBatch` (load it with ``batch_size=None`` and no shuffling, in order)."""

    def __init__(self, rows: torch.Tensor, bptt: int):
        if bptt <= 0:
            raise ValueError(f"bptt must be positive, got {bptt}")
        self.rows = rows
        self.bptt = bptt

    def __len__(self) -> int:
        return math.ceil((self.rows.shape[1] - 1) / self.bptt)

    def __getitem__(self, index: int) -> TextBatch:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.bptt
        end = min(start + self.bptt, self.rows.shape[1] - 1)
        return TextBatch(self.rows[:, start:end], self.rows[:, start + 1 : end + 1], stateful=True)


class LineDataset(Dataset):
    """Independent lines: item ``i`` is the ``(T_i,)`` ids of line ``i``."""

    def __init__(self, lines: Sequence[str], tokenizer: Tokenizer, max_length: int | None = None):
        self.items = [torch.tensor(tokenizer.encode(line), dtype=torch.long) for line in lines]
        if max_length:
            self.items = [ids[:max_length] for ids in self.items]
        self.eos_id = tokenizer.eos_id

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.items[index]

    def lengths(self) -> list[int]:
        """Token count of every line, for length bucketing."""
        return [len(ids) + 1 for ids in self.items]  # + <eos>


def collate_lines(items: Sequence[torch.Tensor], eos_id: int, pad_id: int = 0) -> TextBatch:
    """``<eos> x`` as inputs and ``x <eos>`` as targets, padded to ``(B, max T + 1)``."""
    longest = max((len(x) for x in items), default=0) + 1
    inputs = torch.full((len(items), longest), pad_id, dtype=torch.long)
    targets = torch.full((len(items), longest), pad_id, dtype=torch.long)
    for i, x in enumerate(items):
        inputs[i, 0] = eos_id
        inputs[i, 1 : len(x) + 1] = x
        targets[i, : len(x)] = x
        targets[i, len(x)] = eos_id
    return TextBatch(inputs, targets, stateful=False)


class TextDataModule(SplitDataModule):
    """Language-model data from a text source (see :mod:`rnnseq.data.builders.text_sources`).

    Args:
        source: an object with ``load() -> {"train": lines, "valid": lines, "test": lines}``.
        tokenizer: ``kind`` (``char``, ``word``, ``bpe``, ``unigram``) and ``vocab_size`` (word cap
            or subword count), trained on the training split; or ``state``, a saved tokenizer
            (:meth:`Tokenizer.state`) to reuse as is; or ``from_run``, a speech-to-text run (or
            checkpoint) whose targets the language model should predict (for shallow fusion
            with that recogniser: the same characters or the same subword model), which the
            config reads into ``state`` (``${tokenizer_state_of_run:...}``, :mod:`rnnseq.config`).
        mode: ``stream`` (truncated BPTT over a token stream) or ``lines`` (independent lines).
        batch_size: parallel streams (stream mode) or most lines per batch (line mode).
        bptt: window length of stream mode.
        eval_batch_size: parallel streams in validation and test (default: ``batch_size``).
        max_tokens: padded tokens per batch in line mode.
        max_length: line mode cuts longer lines to this many tokens.
        pin_memory: ``auto`` (pinned batches where the trainer runs on CUDA), ``true`` or
            ``false`` (:meth:`~rnnseq.data.base.SplitDataModule.pins_memory`).
    """

    def __init__(
        self,
        source: Any,
        tokenizer: Mapping[str, Any] | None = None,
        mode: str = "stream",
        batch_size: int = 64,
        bptt: int = 64,
        eval_batch_size: int | None = None,
        max_tokens: int = 8192,
        max_length: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | str = "auto",
        seed: int = 0,
    ):
        super().__init__(pin_memory)
        if mode not in TEXT_MODES:
            raise ValueError(f"data.mode must be one of {TEXT_MODES}, got {mode!r}")
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        self.source = source
        self.tokenizer_config = dict(tokenizer or {"kind": "char"})
        self.mode = mode
        self.batch_size = batch_size
        self.bptt = bptt
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_tokens = max_tokens
        self.max_length = max_length
        self.num_workers = num_workers
        self.seed = seed
        self.tokenizer: Tokenizer | None = None
        self.lines: dict[str, list[str]] = {}
        self.datasets: dict[str, Dataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.lines = self.source.load()
        for split in SPLITS:
            if not self.lines.get(split):
                raise ValueError(f"the text source gave no {split} lines; check data.source")
        self.tokenizer = self._build_tokenizer(self.lines["train"])
        for split in SPLITS:
            self.datasets[split] = self._dataset(split)
        sizes = {s: sum(len(t) for t in lines) for s, lines in self.lines.items()}
        log.info("text data (%s mode): characters %s, %r", self.mode, sizes, self.tokenizer)

    def _build_tokenizer(self, train_lines: list[str]) -> Tokenizer:
        config = dict(self.tokenizer_config)
        if config.get("state"):
            return tokenizer_from_state(config["state"])
        if config.get("from_run"):  # the config resolves it into ``state`` (rnnseq.config)
            raise ValueError(f"data.tokenizer.from_run={config['from_run']} needs its tokenizer "
                             f"state: compose the config through rnnseq.config, or pass "
                             f"tokenizer={{'state': ...}} (rnnseq.runs.tokenizer_of_run(run).state()); "
                             f"for a run folder written before this, {upgrade_advice()}")
        return build_tokenizer(config.get("kind", "char"), train_lines,
                               vocab_size=config.get("vocab_size"), seed=self.seed)

    def _dataset(self, split: str) -> Dataset:
        lines = self.lines[split]
        if self.mode == "lines":
            return LineDataset(lines, self.tokenizer, self.max_length)
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        stream = encode_stream(lines, self.tokenizer)
        unknown = int((stream == self.tokenizer.unk_id).sum())
        if unknown:
            self.report.add(split, None, f"{unknown} of {stream.numel()} tokens are <unk>", "kept")
        return StreamWindows(batchify(stream, batch_size), self.bptt)

    # -- what the task needs to know ------------------------------------------------------------
    def task_arguments(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.state()}

    # -- loaders --------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        if self.mode == "stream":  # each item is already a batch, and order matters
            replicas, rank = self.distributed()
            if replicas > 1:  # each rank carries its own rows: the global batch stays batch_size
                if dataset.rows.shape[0] < replicas:
                    raise ValueError(f"stream mode needs at least one row per process: "
                                     f"batch size {dataset.rows.shape[0]} < {replicas} processes")
                dataset = StreamWindows(dataset.rows[rank::replicas], dataset.bptt)
            if not shuffle:
                return DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                                  generator=own_generator(self.seed),
                                  pin_memory=self.pins_memory())
            return ResumableLoader(dataset, InOrderBatches(len(dataset)), seed=self.seed,
                                   position=self._batches_done, collate_fn=_the_only_item,
                                   num_workers=self.num_workers,
                                   pin_memory=self.pins_memory())
        return self.bucket_loader(
            dataset, dataset.lengths(), shuffle, self.seed,
            dict(max_frames=self.max_tokens, max_batch_size=self.batch_size),
            num_workers=self.num_workers,
            collate_fn=partial(collate_lines, eos_id=self.tokenizer.eos_id))
