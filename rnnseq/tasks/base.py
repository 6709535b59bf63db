"""What every rnnseq task shares: optimiser and scheduler from configs, and the training
diagnostics (gradient norm, learning rate) in TensorBoard."""

from __future__ import annotations

import inspect
import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnseq import metrics as M


def to_plain(value: Any) -> Any:
    """Hydra configs become plain dicts and lists, so checkpoints hold no OmegaConf objects."""
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def planned_steps(trainer: L.Trainer) -> int:
    """Optimizer steps the run will take (what ``trainer.estimated_stepping_batches`` gives),
    counted from a fresh training loader of the datamodule.

    Lightning's property sets up the fit loop's own loader and fetches its first batch, and
    optimizers are configured before a checkpoint is restored: a resumed run would then start
    its first epoch from that batch instead of where it stopped.
    """
    datamodule = trainer.datamodule
    if datamodule is None or trainer.max_epochs in (None, -1):
        return int(trainer.estimated_stepping_batches)
    batches = len(datamodule.train_dataloader())
    limit = trainer.limit_train_batches
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    steps = math.ceil(batches / trainer.accumulate_grad_batches) * max(trainer.max_epochs, 1)
    return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps


def gather_rows(rows: list) -> list:
    """Under distributed training, every rank's ``rows`` concatenated (rank 0's first), on every
    rank; otherwise ``rows`` itself. For scores over a whole split that each rank saw part of."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows
    parts: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, rows)
    return [row for part in parts for row in part]


class Task(L.LightningModule):
    """Base of the tasks. Subclasses save ``optimizer`` (a Hydra ``_partial_`` optimiser config)
    and ``scheduler`` (a ``_partial_`` scheduler config plus ``interval`` and optional
    ``monitor``, or ``None`` for a constant learning rate) in their hyper-parameters.

    Subclasses may define ``test_results`` (a list of per-item dicts written to
    ``test_outputs.json``) and ``hparams.decoding`` (recorded in ``results.json``).
    """

    test_results: list[dict]

    def on_before_optimizer_step(self, optimizer) -> None:
        # Only on logging steps: a norm over every parameter each step would cost time for nothing.
        if self.trainer.global_step % self.trainer.log_every_n_steps == 0:
            grads = [p.grad.detach().norm() for p in self.parameters() if p.grad is not None]
            if grads:
                self.log(M.GRAD_NORM, torch.stack(grads).norm(), on_step=True, on_epoch=False)
            self.log(M.LEARNING_RATE, optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    # Random states travel with checkpoints, so a resumed run draws the same dropout masks,
    # augmentations and samples as an uninterrupted one.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        name, keys, position, has_gauss, cached = np.random.get_state()
        # Tensors and plain numbers only, so the checkpoint still loads with weights_only=True.
        numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                                    "numpy": numpy_state}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            random.setstate(states["python"])
            name, keys, position, has_gauss, cached = states["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))

    # -- evaluation: one set of hooks serves validation ("val") and the test ("test") ------------
    def start_evaluation(self, split: str) -> None:
        """Forgets what was collected over the last pass of ``split`` (``val`` or ``test``)."""

    def evaluation_step(self, batch: Any, split: str) -> None:
        """Scores or collects one batch of ``split``."""
        raise NotImplementedError

    def end_evaluation(self, split: str) -> None:
        """Logs the scores of the whole split (``val/...`` or ``test/...``)."""

    def on_validation_epoch_start(self) -> None:
        self.start_evaluation("val")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.end_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self.start_evaluation("test")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.end_evaluation("test")

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.get("scheduler"):
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        monitor = config.pop("monitor", None)
        factory = instantiate(config)  # a partial: the optimizer (and run length) come from here
        kwargs = {}
        if "total_steps" in inspect.signature(factory).parameters:
            kwargs["total_steps"] = planned_steps(self.trainer)
        scheduler = {"scheduler": factory(optimizer, **kwargs), "interval": interval}
        if monitor:
            scheduler["monitor"] = monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
