"""The batch contract shared by data and models, its collate function and length bucketing.

Shapes use one vocabulary throughout rnnseq: B batch, S source steps (feature frames),
F features, T target tokens.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Sampler


class Failure(NamedTuple):
    """An item that could not be read when its batch was made (e.g. audio that no longer
    decodes). It travels inside the batch, also out of DataLoader worker processes, so that the
    task can put it in the run's data report."""

    id: str
    source: str  # the file that failed
    reason: str


class Batch(NamedTuple):
    """A padded batch. Lengths are absolute integers, never fractions of the padded length.

    A batch whose every item failed has ``B = 0`` (:attr:`empty`) and only :attr:`failed`.
    """

    features: torch.Tensor  # (B, S, F) float (or (B, S) long source ids), zero beyond each length
    feature_lengths: torch.Tensor  # (B,) long
    targets: torch.Tensor  # (B, T) long, padded with the tokenizer's pad id (0)
    target_lengths: torch.Tensor  # (B,) long
    ids: list[str]
    texts: list[str]
    failed: tuple[Failure, ...] = ()  # items of this batch that could not be read
    speakers: torch.Tensor | None = None  # (B,) long speaker ids, for data that has speakers

    @property
    def empty(self) -> bool:
        """Whether no item of the batch could be read."""
        return not self.ids


class Example(NamedTuple):
    """One item as a dataset returns it."""

    id: str
    features: torch.Tensor  # (S, F) float features, or (S,) long source token ids
    tokens: torch.Tensor  # (T,) long
    text: str
    speaker: int | None = None  # speaker id, for data that has speakers


def make_pad_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B,) lengths -> (B, max_len)`` bool mask, True on real steps and False on padding."""
    max_len = int(lengths.max()) if max_len is None else max_len
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def collate_examples(items: Sequence[Example | Failure], pad_id: int = 0) -> Batch:
    """Pads a list of examples into a :class:`Batch`.

    :class:`Failure` items (utterances whose audio could not be read at run time) are left out
    of the tensors and listed in ``Batch.failed``; when nothing is left the batch is
    :attr:`~Batch.empty` and the tasks skip it (all ranks together under distributed training).
    """
    failed = tuple(it for it in items if isinstance(it, Failure))
    items = [it for it in items if not isinstance(it, Failure)]
    if not items:
        none = torch.zeros(0, dtype=torch.long)
        return Batch(torch.zeros(0, 0), none, torch.zeros(0, 0, dtype=torch.long), none, [], [],
                     failed)
    feature_lengths = torch.tensor([it.features.shape[0] for it in items], dtype=torch.long)
    target_lengths = torch.tensor([it.tokens.shape[0] for it in items], dtype=torch.long)
    # (B, S, F) float features, or (B, S) token ids for text sources; zero is padding in both.
    first = items[0].features
    features = first.new_zeros((len(items), int(feature_lengths.max()), *first.shape[1:]))
    targets = torch.full((len(items), int(target_lengths.max())), pad_id, dtype=torch.long)
    for i, it in enumerate(items):
        features[i, : it.features.shape[0]] = it.features
        targets[i, : it.tokens.shape[0]] = it.tokens
    speakers = None
    if any(it.speaker is not None for it in items):
        if any(it.speaker is None for it in items):
            raise ValueError("a batch mixes items with and without a speaker id")
        speakers = torch.tensor([it.speaker for it in items], dtype=torch.long)
    return Batch(
        features=features,
        feature_lengths=feature_lengths,
        targets=targets,
        target_lengths=target_lengths,
        ids=[it.id for it in items],
        texts=[it.text for it in items],
        failed=failed,
        speakers=speakers,
    )


class EpochItem(NamedTuple):
    """An item's index with the training epoch that serves it, for datasets whose items depend on
    the epoch (random augmentation drawn per epoch): the epoch travels with the index, into
    DataLoader worker processes too, and is the sampler's own, also in a resumed run."""

    epoch: int
    index: int


class ResumableBatches(Sampler[list[int]]):
    """What a batch sampler needs for exact resumption: an epoch that Lightning moves on (through
    :attr:`sampler`, where Lightning looks for ``set_epoch``), and :meth:`resume_at` to start an
    epoch part-way. Subclasses implement ``_epoch_batches()`` (the batches of ``self.epoch``).

    After :meth:`resume_at`, the restored position is served first, and Lightning's epoch numbers
    count from it: training by steps that resumes from a checkpoint of an epoch's last batch runs
    an empty epoch in Lightning 2.6 (its epoch number then stays one ahead), and the batches must
    follow the data's own position, not that count.
    """

    epoch: int = 0
    _skip: int = 0  # batches of the current epoch already served before a resume
    tag_epoch: bool = False  # serve EpochItem(epoch, index) instead of bare indices
    _resumed: bool = False  # a restored position waits to be served
    _asked: int | None = None  # the epoch Lightning last asked for since the restore
    _offset: int = 0  # the data's epoch minus Lightning's, fixed when a restored position is served

    def _epoch_batches(self) -> list[list[int]]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Moves to ``epoch`` (Lightning calls this at every epoch start); a new epoch starts from
        its first batch. A restored position not yet served stays."""
        if self._resumed:
            self._asked = epoch
            return
        epoch += self._offset
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    @property
    def sampler(self) -> ResumableBatches:
        """This object. Lightning calls ``set_epoch`` at the start of every epoch (and after
        resuming) on ``dataloader.batch_sampler.sampler``, not on the batch sampler itself; without
        this, every epoch would be epoch 0."""
        return self

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Makes the next iteration serve epoch ``epoch`` without its first ``batches_done``
        batches, as an interrupted run would have gone on; a finished epoch moves to the next."""
        self.epoch, self._skip = epoch, batches_done
        if batches_done >= len(self):
            self.epoch, self._skip = epoch + 1, 0
        self._resumed, self._asked = True, None

    def __iter__(self) -> Iterator[list[int]] | Iterator[list[EpochItem]]:
        skip, self._skip = self._skip, 0
        if self._resumed:  # Lightning's later epoch numbers count from the position it restored
            self._offset = self.epoch - self._asked if self._asked is not None else self._offset
            self._resumed = False
        for batch in self._epoch_batches()[skip:]:
            yield [EpochItem(self.epoch, i) for i in batch] if self.tag_epoch else batch

    def __len__(self) -> int:
        return len(self._epoch_batches())


class InOrderBatches(ResumableBatches):
    """Items ``0 .. n-1`` in order, one per batch: for datasets whose items are whole batches
    already (a language model's stream windows, where order carries the hidden state)."""

    def __init__(self, num_items: int):
        self.num_items = num_items

    def _epoch_batches(self) -> list[list[int]]:
        return [[i] for i in range(self.num_items)]


class BucketBatchSampler(ResumableBatches):
    """Batches of similar length under a padded-size budget.

    Items are sorted by length (with a small random jitter so that batches differ between
    epochs), cut greedily into batches whose padded size ``len(batch) * longest`` stays within
    ``max_frames`` and whose count stays within ``max_batch_size``, and the batches are shuffled.
    With ``num_replicas > 1`` each rank takes every ``num_replicas``-th batch. In training
    (``drop_uneven``) every rank gets the same number of batches (the last few are dropped) so that
    gradient all-reduces stay in step; evaluation keeps them all, so every item is scored once.

    Args:
        lengths: length of every item, in the unit of ``max_frames`` (feature frames).
        max_frames: budget of padded frames per batch; an item longer than this forms a batch alone.
        max_batch_size: most items in one batch.
        shuffle: shuffle batch order and jitter lengths every epoch (call :meth:`set_epoch`).
        length_jitter: relative jitter of the sort key, e.g. 0.02 for +-2 %: enough for every
            batch to differ between epochs, while padding stays near 2 % (about 5 % at 0.05;
            ``bench/data_pipeline.py``).
        sorted_epochs: serve the first this many epochs from the shortest batch to the longest,
            without jitter ("SortaGrad", Amodei et al., 2016: attention learns to align on short
            utterances first); later epochs are shuffled. 0 shuffles from the start.
        tag_epoch: serve :class:`EpochItem` ``(epoch, index)`` pairs instead of indices, for a
            dataset whose items depend on the epoch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        max_batch_size: int = 64,
        shuffle: bool = True,
        length_jitter: float = 0.02,
        seed: int = 0,
        sorted_epochs: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_uneven: bool = True,
        tag_epoch: bool = False,
    ):
        if max_frames <= 0 or max_batch_size <= 0:
            raise ValueError(
                f"max_frames ({max_frames}) and max_batch_size ({max_batch_size}) must be positive"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, num_replicas={num_replicas})")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.length_jitter = length_jitter
        self.seed = seed
        if sorted_epochs < 0:
            raise ValueError(f"sorted_epochs must be >= 0, got {sorted_epochs}")
        self.sorted_epochs = sorted_epochs
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_uneven = drop_uneven
        self.tag_epoch = tag_epoch
        self.epoch = 0

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        sorted_epoch = self.epoch < self.sorted_epochs
        if self.shuffle and self.length_jitter > 0 and not sorted_epoch:
            keys = [n * (1 + rng.uniform(-self.length_jitter, self.length_jitter)) for n in self.lengths]
        else:
            keys = self.lengths
        order = sorted(range(len(self.lengths)), key=keys.__getitem__)
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for idx in order:
            n = self.lengths[idx]
            new_longest = max(longest, n)
            if current and (
                (len(current) + 1) * new_longest > self.max_frames
                or len(current) >= self.max_batch_size
            ):
                batches.append(current)
                current, new_longest = [], n
            current.append(idx)
            longest = new_longest
        if current:
            batches.append(current)
        if self.shuffle and not sorted_epoch:
            rng.shuffle(batches)
        return batches

    def _epoch_batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch."""
        batches = self._all_batches()
        if self.num_replicas == 1:
            return batches
        mine = batches[self.rank :: self.num_replicas]
        if not self.drop_uneven:  # evaluation: every item once, ranks may get one batch less;
            # a rank with none gets one empty batch, so that it still runs the epoch's hooks,
            # whose gathers the other ranks wait for
            return mine or [[]]
        return mine[: len(batches) // self.num_replicas]


def padding_ratio(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Padded frames over real frames for a list of batches (1.0 means no padding)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return padded / real if real else math.nan
