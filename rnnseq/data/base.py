"""What the datamodules share: one loader per split, the data report, and the hooks through which
``rnnseq.train`` hands data-derived facts (vocabulary, feature statistics) to the task."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from rnnseq.data.batching import BucketBatchSampler, ResumableBatches
from rnnseq.data.manifest import DataReport

log = logging.getLogger(__name__)


def own_generator(seed: int) -> torch.Generator:
    """A DataLoader's own random generator. Every new iterator draws its workers' seed from it;
    without one it comes from the global generator, so a validation pass would shift the dropout
    and augmentation draws of all later training steps, and a resumed run (which starts with a
    sanity validation) would draw differently from an uninterrupted one."""
    return torch.Generator().manual_seed(seed)


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`~rnnseq.data.batching.ResumableBatches` batch sampler whose
    place in training travels with checkpoints, so that a run resumed mid-epoch sees exactly the
    batches it would have seen.

    Lightning saves ``state_dict()`` in every checkpoint and hands it back through
    ``load_state_dict()`` before the first batch after a resume. ``position`` tells how many
    batches of the current epoch training has consumed (the prefetched one is not counted).

    The loader's own random generator, reseeded from ``seed`` and the epoch, draws the seed of its
    worker processes, so creating an iterator (on resume, too) never moves the global random state
    that dropout and augmentation draw from.
    """

    def __init__(self, dataset: Dataset, batch_sampler: ResumableBatches, seed: int = 0,
                 position: Callable[[], int] | None = None, **kwargs: Any):
        kwargs.setdefault("generator", own_generator(seed))
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self.seed = seed
        self.position = position

    def __iter__(self):
        self.generator.manual_seed(self.seed * 100_003 + self.batch_sampler.epoch)
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        """The place in training, saved in every checkpoint: epoch and batches consumed."""
        done = self.position() if self.position is not None else 0
        return {"epoch": self.batch_sampler.epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Makes the next epoch start where the checkpointed run stopped."""
        self.batch_sampler.resume_at(int(state["epoch"]), int(state["batches_done"]))


class PairedItems:
    """What a dataset of (input, target) items tells the checks that need both sides' lengths
    (:meth:`SplitDataModule.drop_unalignable`)."""

    def input_lengths(self) -> list[int]:
        """Input steps S of every item (feature frames, source tokens), as exact as known."""
        raise NotImplementedError

    def target_ids(self) -> list[list[int]]:
        """Target token ids of every item."""
        raise NotImplementedError

    def describe(self, index: int) -> tuple[str, str]:
        """``(source file, id)`` of an item, for the data report."""
        raise NotImplementedError

    def subset(self, rows: Sequence[int]) -> PairedItems:
        """The same dataset restricted to ``rows``, in that order."""
        raise NotImplementedError


def pin_memory_setting(value: bool | str) -> bool | str:
    """``data.pin_memory`` checked: ``true``, ``false`` or ``auto`` (pinned when the trainer
    runs on CUDA, :meth:`SplitDataModule.pins_memory`)."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError(f"data.pin_memory must be true, false or auto, got {value!r}")


class SplitDataModule(L.LightningDataModule):
    """Base of the rnnseq datamodules: subclasses implement :meth:`_loader` (one split's
    DataLoader) and :meth:`task_arguments`, and fill :attr:`report` while reading."""

    def __init__(self, pin_memory: bool | str = "auto"):
        super().__init__()
        self.report = DataReport()
        self.pin_memory = pin_memory_setting(pin_memory)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        raise NotImplementedError

    def distributed(self) -> tuple[int, int]:
        """``(number of processes, rank of this one)`` in distributed training, else ``(1, 0)``."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def pins_memory(self) -> bool:
        """Whether the loaders put batches in page-locked host memory: ``pin_memory`` itself,
        or with ``auto`` whether the trainer runs on CUDA (a pinned batch is copied to the GPU
        asynchronously; on the CPU pinning would only cost a copy)."""
        if self.pin_memory != "auto":
            return self.pin_memory
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _batches_done(self) -> int:
        """Training batches consumed so far in the current epoch (read when checkpointing)."""
        trainer = self.trainer
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer else 0

    def bucket_loader(self, dataset: Dataset, lengths: Sequence[int], shuffle: bool,
                      seed: int, sampler_args: dict[str, Any], **loader_args: Any) -> DataLoader:
        """A length-bucketed loader: resumable and with shuffled batches for training, in order
        for evaluation; with this rank's share of the batches under distributed training. A
        training dataset whose items depend on the epoch (``dataset.random_items``) is indexed
        with :class:`~rnnseq.data.batching.EpochItem` pairs. Batches are pinned as
        :meth:`pins_memory` says unless ``loader_args`` says otherwise."""
        replicas, rank = self.distributed()
        loader_args.setdefault("pin_memory", self.pins_memory())
        sampler = BucketBatchSampler(lengths, shuffle=shuffle, seed=seed, num_replicas=replicas,
                                     rank=rank, drop_uneven=shuffle,
                                     tag_epoch=shuffle and getattr(dataset, "random_items", False),
                                     **sampler_args)
        if not shuffle:
            return DataLoader(dataset, batch_sampler=sampler, generator=own_generator(seed),
                              **loader_args)
        return ResumableLoader(dataset, sampler, seed=seed, position=self._batches_done,
                               **loader_args)

    def task_arguments(self) -> dict[str, Any]:
        """Arguments of the task that follow from the data (tokenizers, feature settings)."""
        raise NotImplementedError

    def prepare_task(self, task: L.LightningModule) -> None:
        """Readies the data for a freshly built task: drops what it cannot learn from
        (:meth:`drop_unalignable`). Subclasses also copy data statistics into it."""
        self.drop_unalignable(task)

    def drop_unalignable(self, task: L.LightningModule) -> None:
        """Asks the task which items it cannot align (``task.unalignable``: e.g. CTC needs at
        least as many encoder frames as target tokens plus repeats, and the encoder's subsampling
        is known only once the model exists). Training items are dropped, evaluation items kept
        and scored; all of them go to the data report with their ids."""
        for split, dataset in list(getattr(self, "datasets", {}).items()):
            if not isinstance(dataset, PairedItems):
                continue
            problems = task.unalignable(dataset.input_lengths(), dataset.target_ids())
            self.report.split = split
            for row, reason in sorted(problems.items()):
                source, item_id = dataset.describe(row)
                if split == "train":
                    self.report.add(source, None, f"{reason}; left out of training", id=item_id,
                                    quiet=True)
                else:
                    self.report.add(source, None, f"{reason}; kept and scored ({split} split)",
                                    action="kept", id=item_id, quiet=True)
            if problems:  # one line, not hundreds: the report lists every item
                log.warning("%d of %d %s items cannot be aligned by the model (e.g. %s: %s); %s; "
                            "every one is listed in data_report.json", len(problems), len(dataset),
                            split, dataset.describe(min(problems))[1], problems[min(problems)],
                            "left out of training" if split == "train" else "kept and scored")
            self.report.split = None
            if split == "train" and problems:
                self.datasets[split] = dataset.subset(
                    [i for i in range(len(dataset)) if i not in problems])

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def write_report(self, run_dir: str | Path) -> Path:
        """Writes every skipped or repaired item to ``<run_dir>/data_report.json``."""
        path = Path(run_dir) / "data_report.json"
        self.report.write(path)
        return path
