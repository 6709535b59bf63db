"""Where one training step of the real loop spends its time.

    .venv/bin/python bench/step_profile.py [--steps 30] [--warmup 10] [--profiled 10] [--ops 20]
        [overrides]

Trains ``experiment=asr`` (plus Hydra overrides, e.g. ``trainer.precision=bf16-mixed``) through
the Lightning ``Trainer`` that ``rnnseq.train`` builds, with its callbacks and TensorBoard logger,
on shuffled batches (``data.sorted_epochs=0``) and without validation, and reports two views of
the steps after ``--warmup``:

* **phases**, from callback hooks: waiting for the batch (data reading and collation in this
  process, or a worker's hand-over), the forward pass, split into the encoder (normalisation,
  SpecAugment and the recurrent stack), the attention decoder (teacher forced) and the two
  losses; the backward pass; and the rest (gradient clipping, the callbacks' checks, the
  optimiser, the schedule, logging);
* **operators**: ``torch.profiler``'s self time per operator over ``--profiled`` more steps
  (the profiler slows them, so they are not among the timed ones), backward operators included,
  largest first.
"""

from __future__ import annotations

import collections
import shutil
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from common import SHUFFLED, build_experiment, compose, machine, training_parser
from hydra.utils import instantiate
from omegaconf import open_dict

from rnnseq.train import resolve_precision

FORWARD_PARTS = ("encoder", "decoder", "losses")


class PhaseClock(L.Callback):
    """Seconds per phase of the training steps ``warmup .. warmup + timed - 1``; the steps after
    them run under ``torch.profiler``."""

    def __init__(self, warmup: int, timed: int):
        self.warmup, self.timed = warmup, timed
        self.totals: dict[str, float] = collections.defaultdict(float)
        self.steps = 0
        self._mark: float | None = None
        self._batch_end: float | None = None
        self.profiler: torch.profiler.profile | None = None

    def _lap(self, phase: str) -> None:
        now = time.perf_counter()
        if self._mark is not None and self.timing:
            self.totals[phase] += now - self._mark
        self._mark = now

    @property
    def timing(self) -> bool:
        return self.warmup <= self.steps < self.warmup + self.timed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if self.steps == self.warmup + self.timed:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()
        if self._batch_end is not None and self.timing:
            self.totals["data"] += now - self._batch_end
        self._mark = now

    def on_before_backward(self, trainer, pl_module, loss):
        self._lap("forward")

    def on_after_backward(self, trainer, pl_module):
        self._lap("backward")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._lap("optimiser and the rest")
        self.steps += 1
        self._batch_end = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if self.profiler is not None:
            self.profiler.__exit__(None, None, None)


def time_forward_parts(task, clock: PhaseClock) -> None:
    """Wraps the task's encoder pass, decoder and losses so that their forward time adds up in
    ``clock.totals`` (as ``forward: <part>``)."""

    def timed(part: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if clock.timing and task.training:
                clock.totals[f"  forward: {part}"] += time.perf_counter() - start
            return out
        return wrapper

    task.encode = timed("encoder", task.encode)
    task.model.decoder.forward = timed("decoder", task.model.decoder.forward)
    for name in ("ctc_loss", "cross_entropy"):
        setattr(torch.nn.functional, name, timed("losses", getattr(torch.nn.functional, name)))


def main() -> None:
    parser = training_parser(__doc__, steps=30, warmup=10)
    parser.add_argument("--profiled", type=int, default=10, help="steps under torch.profiler")
    parser.add_argument("--ops", type=int, default=20, help="operators listed")
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="rnnseq-profile-"))
    cfg = compose(["experiment=asr", SHUFFLED, "callbacks.early_stopping=null", *args.overrides],
                  out)
    datamodule, task = build_experiment(cfg)
    clock = PhaseClock(args.warmup, args.steps)
    time_forward_parts(task, clock)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c] + [clock]
    loggers = [instantiate(lg) for lg in cfg.logger.values() if lg]
    trainer_cfg = resolve_precision(cfg.trainer.copy())
    with open_dict(trainer_cfg):
        trainer_cfg.update(max_steps=args.warmup + args.steps + args.profiled, max_epochs=None,
                           max_time=None, limit_val_batches=0, num_sanity_val_steps=0,
                           enable_model_summary=False, val_check_interval=None,
                           check_val_every_n_epoch=1)
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=loggers)
    started = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    wall = time.perf_counter() - started

    steps = args.steps
    total = sum(v for k, v in clock.totals.items() if not k.startswith(" "))
    print(f"machine: {machine()}")
    print(f"experiment=asr {' '.join(args.overrides)}; precision {trainer.precision}; "
          f"{sum(p.numel() for p in task.parameters()):,} parameters; {steps} steps timed after "
          f"{args.warmup} (fit took {wall:.1f} s in all)")
    print(f"{'phase':<28} {'ms/step':>8} {'share':>6}")
    for phase, seconds in clock.totals.items():
        print(f"{phase:<28} {1000 * seconds / steps:8.1f} {seconds / total:6.1%}")
    print(f"{'step':<28} {1000 * total / steps:8.1f}")
    if clock.profiler is not None:
        print(f"\noperators, self CPU time over {args.profiled} more steps (profiled, so slower):")
        print(clock.profiler.key_averages().table(sort_by="self_cpu_time_total",
                                                  row_limit=args.ops, max_name_column_width=48))
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
