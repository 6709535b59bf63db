"""Callbacks that keep long runs from losing work: checkpoints every N steps or minutes, a clean
stop with a checkpoint on SIGTERM/SIGINT (pre-emption, Ctrl-C), and steps with a non-finite loss
or gradient skipped instead of poisoning the weights.

All of them save through ``trainer.save_checkpoint`` into ``<run>/checkpoints/last.ckpt``, which
:class:`rnnseq.checkpoints.AtomicCheckpointIO` writes atomically and ``resume=<run>`` continues
from, at the very batch where the run stopped.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger(__name__)

LAST = "last.ckpt"


def save_last(trainer: L.Trainer, dirpath: str | Path) -> Path:
    """Writes the full training state to ``<dirpath>/last.ckpt`` (on every rank; rank 0 writes)."""
    path = Path(dirpath) / LAST
    # weights_only=False: the whole training state (Lightning logs a notice when it is not given)
    trainer.save_checkpoint(path, weights_only=False)
    return path


class StepWatch:
    """Tells, at the end of a training batch, whether it ended an optimizer step. With gradient
    accumulation the batches in between hold gradients that a checkpoint would not keep, so
    checkpoints are taken only right after a step."""

    def __init__(self):
        self.seen: int | None = None

    def stepped(self, trainer: L.Trainer) -> bool:
        """Whether an optimizer step happened since the last call."""
        stepped = self.seen is not None and trainer.global_step != self.seen
        self.seen = trainer.global_step
        return stepped


class PeriodicCheckpoint(L.Callback):
    """Saves ``last.ckpt`` at the end of every epoch, and every ``every_n_steps`` optimizer steps
    and/or every ``every_minutes`` minutes of training, bounding what a hard kill (``kill -9``, a
    node failure) can lose.

    Args:
        dirpath: the run's checkpoint folder.
        every_n_steps: steps between saves; ``None`` or 0 for none.
        every_minutes: minutes between saves; ``None`` or 0 for none. Under distributed training
            rank 0's clock decides for every rank.
    """

    def __init__(self, dirpath: str, every_n_steps: int | None = None,
                 every_minutes: float | None = 10.0):
        for name, value in (("every_n_steps", every_n_steps), ("every_minutes", every_minutes)):
            if value is not None and value < 0:
                raise ValueError(f"callbacks.periodic_checkpoint.{name} must be >= 0 or null, "
                                 f"got {value}")
        self.dirpath = dirpath
        self.every_n_steps = every_n_steps or 0
        self.every_seconds = (every_minutes or 0) * 60
        self._last_save = time.monotonic()
        self._watch = StepWatch()

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_save = time.monotonic()
        self._watch.seen = trainer.global_step

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # After validation and the callbacks that watch it: Lightning's ModelCheckpoint rewrites
        # last.ckpt only when it also keeps a new best one, so without this a resumed run could
        # go back to an epoch that did not improve and redo everything after it.
        save_last(trainer, self.dirpath)
        self._last_save = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._watch.stepped(trainer):
            return
        due = bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0
        if self.every_seconds:
            late = time.monotonic() - self._last_save >= self.every_seconds
            due = due or trainer.strategy.broadcast(late)
        if due:
            save_last(trainer, self.dirpath)
            self._last_save = time.monotonic()


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``last.ckpt``; ``resume=`` continues it."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} after step {step}; the training state is in "
                         f"{checkpoint}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


class GracefulStop(L.Callback):
    """On SIGTERM (pre-emption, ``scancel``, ``timeout``) or SIGINT (Ctrl-C), finishes the current
    training step, saves ``last.ckpt`` and raises :class:`TrainingInterrupted`.

    A second Ctrl-C stops at once, as usual. Under distributed training a signal received by any
    rank stops all of them after the same step.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._watch = StepWatch()

    def _handle(self, signum, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.received = signum
        log.warning("received %s: stopping after this training step (Ctrl-C again to stop now)",
                    signal.Signals(signum).name)

    def on_train_start(self, trainer, pl_module) -> None:
        # Installed here, after Lightning's own SIGTERM handler (registered after on_fit_start),
        # which would otherwise abort validation without a checkpoint.
        self.received = None
        self._watch.seen = trainer.global_step
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be caught on the main thread
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _stop_if_asked(self, trainer) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            path = save_last(trainer, self.dirpath)
            self._restore()
            raise TrainingInterrupted(self.received or signal.SIGTERM, trainer.global_step, path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._watch.stepped(trainer):  # not half-way through accumulating gradients
            self._stop_if_asked(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop_if_asked(trainer)  # a signal during the last validation: no test after it
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()


def drop_gradients(optimizer) -> None:
    """Sets every gradient of ``optimizer`` to ``None``: torch optimizers leave parameters without
    a gradient untouched, so the coming step changes neither the weights nor the optimizer's state
    (momentum, step counts), and decoupled weight decay is not applied either."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


class NonFiniteLossError(RuntimeError):
    """Too many training steps in a row had a non-finite loss or gradient."""


class NonFiniteGuard(L.Callback):
    """Skips optimizer steps whose loss or gradients are NaN or infinite (through the task's
    ``skip_step``, which counts them in ``train/skipped_steps``), and stops the run when more
    than ``max_consecutive`` come in a row, naming the utterances of the last offending batch.

    The check reads one number from the device per step (a GPU waits for the backward pass to
    finish before the optimizer step is queued). Under 16-bit mixed precision the gradient scaler
    already skips overflowing steps, so only the loss is checked there.
    """

    def __init__(self, max_consecutive: int = 10):
        if max_consecutive < 0:
            raise ValueError(f"callbacks.nonfinite_guard.max_consecutive must be >= 0, "
                             f"got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.in_a_row = 0
        self._loss: torch.Tensor | None = None
        self._ids: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._ids = list(getattr(batch, "ids", None) or [])
        self._loss = None

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        checks = [] if self._loss is None else [self._loss.float().reshape(1)]
        if grads and getattr(trainer.precision_plugin, "scaler", None) is None:
            checks.append(torch.stack(torch._foreach_norm(grads)).float().sum().reshape(1))
        finite = bool(torch.isfinite(torch.cat(checks)).all()) if checks else True
        if trainer.world_size > 1:  # every rank must skip the same steps
            finite = not trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if finite:
            self.in_a_row = 0
        else:
            self._skip(trainer, pl_module, optimizer)

    def _skip(self, trainer, pl_module, optimizer) -> None:
        pl_module.skip_step(optimizer)  # counted and logged by the task
        self.in_a_row += 1
        log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row); batch: %s",
                    trainer.global_step, self.in_a_row, ", ".join(self._ids) or "?")
        if self.in_a_row > self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.in_a_row} training steps in a row had a non-finite loss or gradient "
                f"(more than callbacks.nonfinite_guard.max_consecutive={self.max_consecutive}). "
                f"Last batch: {', '.join(self._ids) or 'ids unknown'}. Check those items, or lower "
                f"the learning rate (task.optimizer.lr) or the clipping (trainer.gradient_clip_val)."
            )

    def state_dict(self) -> dict:
        return {"in_a_row": self.in_a_row}

    def load_state_dict(self, state_dict: dict) -> None:
        self.in_a_row = int(state_dict.get("in_a_row", 0))
