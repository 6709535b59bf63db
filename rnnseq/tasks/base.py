"""What every rnnseq task shares: optimiser and scheduler from configs, and the training
diagnostics (gradient norm, learning rate) in TensorBoard."""

from __future__ import annotations

import inspect
import logging
import math
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf

from rnnseq import metrics as M
from rnnseq.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from rnnseq.data.manifest import DataIssue
from rnnseq.safeguards import drop_gradients

log = logging.getLogger(__name__)

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
    if trainer.max_steps != -1 and trainer.max_epochs in (None, -1):
        return trainer.max_steps  # a step budget: the schedule ends with it
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


def require_matching_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor],
                            path: str | Path, key: str) -> None:
    """Raises a ``ValueError`` before training when the weights in ``state`` do not fit ``model``:
    names every parameter whose shape differs, and those missing on either side."""
    own = model.state_dict()
    wrong = [f"{name}: checkpoint {tuple(state[name].shape)}, config {tuple(own[name].shape)}"
             for name in own if name in state and state[name].shape != own[name].shape]
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if not (wrong or missing or extra):
        return
    lines = [f"{key}={path} does not fit the model this config builds:"]
    lines += [f"  shape {w}" for w in wrong[:10]]
    if missing:
        lines.append(f"  not in the checkpoint: {', '.join(missing[:10])}")
    if extra:
        lines.append(f"  not in the model: {', '.join(extra[:10])}")
    lines.append("The vocabulary (data) or the model sizes (model.*) differ from the run that wrote "
                 "it; use that run's data and model config, or train without " + key + ".")
    raise ValueError("\n".join(lines))


def restore_random_states(states: dict, rank: int = 0) -> None:
    """Sets the torch, Python, NumPy and (where saved and present) CUDA random states from a
    checkpoint's ``rng_states``. The states may have been loaded onto any device: the setters
    take CPU byte tensors. The CUDA states are one per process (each of its own GPU), so under
    DDP each ``rank`` takes its own; the host states are rank 0's on every rank."""
    torch.set_rng_state(states["torch"].cpu())  # host: the setters take CPU byte tensors
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), position, has_gauss, cached))
    saved = states.get("cuda") or []
    if saved and torch.cuda.is_available():
        if rank < len(saved):
            torch.cuda.set_rng_state(saved[rank].cpu())  # host: as above; this process's GPU
        else:
            log.warning("the checkpoint holds the GPU random states of %d processes; process %d "
                        "continues with its own", len(saved), rank)


def is_empty(batch: Any) -> bool:
    """Whether a batch holds no item to learn from or score (every item failed to load, or a
    rank's share of a short evaluation split is empty)."""
    return batch is None or bool(getattr(batch, "empty", False))


class Task(L.LightningModule):
    """Base of the tasks. Subclasses save ``optimizer`` (a Hydra ``_partial_`` optimiser config)
    and ``scheduler`` (a ``_partial_`` scheduler config plus ``interval`` and optional
    ``monitor``, or ``None`` for a constant learning rate) in their hyper-parameters, and
    implement :meth:`training_loss` and the evaluation hooks below.

    Subclasses may define ``test_results`` (a list of per-item dicts written to
    ``test_outputs.json``) and ``hparams.decoding`` (recorded in ``results.json``).

    Every task declares :attr:`MONITOR`, the one validation metric that checkpointing, early
    stopping and the plateau scheduler watch (the configs read it through
    ``${task_monitor:${task._target_}}``), and :attr:`VALIDATION_LOGGED`, every metric it logs
    in validation: a callback or scheduler that monitors anything else is an error.

    Training batches whose every item failed to load are skipped by all ranks together: a zero
    loss over every parameter keeps distributed gradient averaging in step, and the gradients are
    then dropped, so neither weight decay nor momentum moves the weights
    (``train/skipped_steps`` counts such steps and those that :class:`~rnnseq.safeguards.
    NonFiniteGuard` skips). Items that failed are collected in :attr:`runtime_issues`.
    """

    MONITOR: str = M.VAL_LOSS
    MONITOR_MODE: str = "min"
    VALIDATION_LOGGED: tuple[str, ...] = (M.VAL_LOSS,)

    test_results: list[dict]
    # The name the test hooks score under: "test", or an extra test split (``test_voices``) that
    # rnnseq.train scores after it.
    test_label: str = "test"

    def __init__(self):
        super().__init__()
        self.skipped_steps = 0  # optimizer steps skipped (empty batches, non-finite values)
        self._batches_since_step = 0  # non-empty training batches since the last optimizer step
        self._skipped_now = False
        self._runtime_issues: dict[tuple[str, str, str], DataIssue] = {}
        # running sums of the evaluation pass under way (:meth:`accumulate`)
        self._evaluation_sums: dict[str, torch.Tensor | float] = {}

    def validation_metrics(self) -> tuple[str, ...]:
        """Every metric this task logs in validation."""
        return self.VALIDATION_LOGGED

    # -- training -------------------------------------------------------------------------------
    def training_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one non-empty training batch (and its logging)."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int):
        self.note_failures(batch, "training")
        empty = is_empty(batch)
        if self._trainer is not None and self.trainer.world_size > 1:
            # One rank alone may not skip: the others would wait for its gradients forever.
            empty = self.trainer.strategy.reduce_boolean_decision(empty, all=False)
        if empty:
            return self.zero_loss()
        self._batches_since_step += 1
        return self.training_loss(batch)

    def zero_loss(self) -> torch.Tensor:
        """A loss of exactly zero that depends on every trainable parameter, so that a skipped
        step still runs backward (and its gradient all-reduce under DDP) like any other."""
        return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0

    def skip_step(self, optimizer) -> None:
        """Drops every gradient of ``optimizer`` so that its step leaves the weights and its state
        (momentum, weight decay) alone, and counts the step in ``train/skipped_steps``."""
        drop_gradients(optimizer)
        self.skipped_steps += 1
        self._skipped_now = True

    def on_before_optimizer_step(self, optimizer) -> None:
        # After the callbacks' hooks (Lightning's order), so a NonFiniteGuard skip is counted.
        if self._batches_since_step == 0:  # every batch of this step was empty on some rank
            self.skip_step(optimizer)
        self._batches_since_step = 0
        skipped, self._skipped_now = self._skipped_now, False
        logging_step = self.trainer.global_step % self.trainer.log_every_n_steps == 0
        # Only on logging steps: a norm over every parameter each step would cost time for nothing.
        if logging_step:
            grads = [p.grad.detach().norm() for p in self.parameters() if p.grad is not None]
            if grads:
                self.log(M.GRAD_NORM, torch.stack(grads).norm(), on_step=True, on_epoch=False)
            self.log(M.LEARNING_RATE, optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)
        if skipped or logging_step:
            self.log(M.SKIPPED_STEPS, float(self.skipped_steps), on_step=True, on_epoch=False)

    def unalignable(self, input_lengths: list[int], targets: list[list[int]]) -> dict[int, str]:
        """``{item: reason}`` for the (input length, target ids) pairs this model cannot learn
        from; none by default (see :meth:`~rnnseq.data.base.SplitDataModule.drop_unalignable`)."""
        return {}

    # -- items that failed after setup ----------------------------------------------------------
    def note_failures(self, batch: Any, phase: str) -> None:
        """Remembers the items of ``batch`` that could not be read (once per item and cause)."""
        for failure in getattr(batch, "failed", ()):
            key = (failure.source, failure.id, failure.reason)
            if key not in self._runtime_issues:
                split = {"training": "train", "validation": "valid"}.get(phase, phase)
                self._runtime_issues[key] = DataIssue(
                    failure.source, None, f"{failure.reason} (during {phase})", id=failure.id,
                    split=split)

    def runtime_issues(self) -> list[DataIssue]:
        """The items that failed to load since the task was built, in the order they failed."""
        return list(self._runtime_issues.values())

    # -- checkpoints ----------------------------------------------------------------------------
    # Random states travel with checkpoints, so a resumed run draws the same dropout masks,
    # augmentations and samples as an uninterrupted one. They are restored only when a fit
    # resumes: loading a model to use it leaves the caller's random streams alone.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        name, keys, position, has_gauss, cached = np.random.get_state()
        # Tensors and plain numbers only, so the checkpoint still loads with weights_only=True.
        numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached)
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                                    "numpy": numpy_state}
        if torch.cuda.is_initialized():  # the state of each process's GPU, in rank order
            checkpoint["rng_states"]["cuda"] = gather_rows([torch.cuda.get_rng_state()])
        cls = type(self)
        checkpoint["rnnseq"] = {"task": f"{cls.__module__}.{cls.__qualname__}",
                                "format": CHECKPOINT_FORMAT, "skipped_steps": self.skipped_steps,
                                # plain dicts: items that failed so far survive a resume
                                "runtime_issues": [asdict(i) for i in self.runtime_issues()]}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states and self._resuming_fit():
            restore_random_states(states, self._trainer.global_rank)
        own = checkpoint.get("rnnseq", {})
        self.skipped_steps = int(own.get("skipped_steps", 0))
        for row in own.get("runtime_issues", []):
            issue = DataIssue(**row)
            self._runtime_issues.setdefault((issue.source, issue.id, issue.reason), issue)

    def _resuming_fit(self) -> bool:
        """Whether a trainer is restoring this task to go on fitting it (not loading it to use)."""
        return self._trainer is not None and self._trainer.state.fn == TrainerFn.FITTING

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None,
                             strict=None, **kwargs):
        """Lightning's loader, after checking that the checkpoint has today's format (an older one
        is a ``ValueError`` naming ``python -m rnnseq.upgrade``); keyword arguments override saved
        hyper-parameters as in Lightning."""
        if isinstance(checkpoint_path, (str, Path)) and "://" not in str(checkpoint_path):
            load_checkpoint(checkpoint_path)
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location,
                                            hparams_file=hparams_file, strict=strict, **kwargs)

    # -- evaluation: one set of hooks serves validation ("val") and the test ("test") ------------
    def start_evaluation(self, split: str) -> None:
        """Forgets what was collected over the last pass of ``split`` (``val`` or ``test``)."""

    def evaluation_step(self, batch: Any, split: str) -> None:
        """Scores or collects one batch of ``split``."""
        raise NotImplementedError

    def end_evaluation(self, split: str) -> None:
        """Logs the scores of the whole split (``val/...`` or ``test/...``)."""

    def accumulate(self, **values: torch.Tensor | float) -> None:
        """Adds scalars to this pass's running sums, on the device (no host read per batch);
        :meth:`evaluation_totals` reads them once."""
        for key, value in values.items():
            value = torch.as_tensor(value, device=self.device).detach().double()
            self._evaluation_sums[key] = self._evaluation_sums.get(key, 0.0) + value

    def evaluation_totals(self, keys: list[str]) -> dict[str, float]:
        """This pass's sums of ``keys`` over every rank (0 for a key a rank never added), the
        same on every rank. Every rank must ask for the same keys: they are gathered together."""
        local = torch.stack([torch.as_tensor(self._evaluation_sums.get(key, 0.0),
                                             dtype=torch.float64, device=self.device)
                             for key in keys])  # (K,)
        gathered = self.all_gather(local)  # (ranks, K) under distributed training, else (K,)
        totals = gathered.sum(0) if gathered.dim() > 1 else gathered
        return dict(zip(keys, totals.tolist()))

    def mean_loss(self) -> float:
        """The split's loss as a mean over items, from ``accumulate(loss=mean * items,
        items=items)`` calls: every item weighs the same, on any number of ranks."""
        totals = self.evaluation_totals(["loss", "items"])
        return totals["loss"] / max(totals["items"], 1.0)

    def on_validation_epoch_start(self) -> None:
        self._evaluation_sums = {}
        self.start_evaluation("val")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.note_failures(batch, "validation")
        if not is_empty(batch):
            self.evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.end_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._evaluation_sums = {}
        self.start_evaluation(self.test_label)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.note_failures(batch, self.test_label)
        if not is_empty(batch):
            self.evaluation_step(batch, self.test_label)

    def on_test_epoch_end(self) -> None:
        self.end_evaluation(self.test_label)

    def require_logged(self, metric: str, key: str) -> None:
        """Raises a ``ValueError`` naming ``key`` when ``metric`` is not one this task logs in
        validation (a watcher of a metric that never comes would silently do nothing)."""
        logged = self.validation_metrics()
        if metric not in logged:
            raise ValueError(f"{key}={metric} is not logged by {type(self).__name__}, which logs "
                             f"{', '.join(logged)} in validation; leave {key} at its default "
                             f"({self.MONITOR}) or pick one of those")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip the gradients of a fused optimiser,
        # which unscales 16-bit gradients inside its step. Without a gradient scaler (bf16, or
        # float32) the gradients are already true, so they are clipped here as in float32.
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        if not gradient_clip_val or scaled or not getattr(optimizer, "_step_supports_amp_scaling",
                                                          False):
            super().configure_gradient_clipping(optimizer, gradient_clip_val,
                                                gradient_clip_algorithm)
            return
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.get("scheduler"):
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        monitor = config.pop("monitor", None)
        if "_target_" not in config:  # e.g. task/scheduler=none under a recipe that sets warm-up
            raise ValueError(f"task.scheduler has {sorted(config)} but no scheduler to give them "
                             f"to (no _target_); for a constant learning rate use "
                             f"task.scheduler=null, which also drops the experiment's settings")
        factory = instantiate(config)  # a partial: the optimizer (and run length) come from here
        parameters = inspect.signature(factory.func).parameters
        # A partial accepts any key until it is called; name the one that does not apply (e.g. a
        # warm-up length left over from the default schedule after task/scheduler=plateau).
        takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
        for key in sorted(set(factory.keywords) - set(parameters) if not takes_any else ()):
            raise ValueError(f"task.scheduler.{key} does not apply to {config['_target_']}; "
                             f"remove it (~task.scheduler.{key}) or choose another task/scheduler")
        kwargs = {}
        if "total_steps" in parameters:
            kwargs["total_steps"] = planned_steps(self.trainer)
        scheduler = {"scheduler": factory(optimizer, **kwargs), "interval": interval}
        if monitor:
            self.require_logged(monitor, "task.scheduler.monitor")
            scheduler["monitor"] = monitor
            # the name was checked above: a missing value can only mean that no validation has
            # run yet (a step budget that ends within the first epoch), so wait for one
            scheduler["strict"] = False
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
