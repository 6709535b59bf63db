"""What rnnseq's training loop costs over a hand-written PyTorch loop, on the default speech model.

    .venv/bin/python bench/framework_overhead.py [--steps 60] [--warmup 10] [--repeats 3] [overrides]

Both sides train the model of ``experiment=asr`` from the same initial weights, on the same
batches (the datamodule's own DataLoader, default workers), with the same AdamW, warm-up/cosine
schedule and gradient clipping, from the same random state:

* **rnnseq**: the Lightning ``Trainer`` built from the config, with the default callbacks
  (progress bar, checkpointing, early stopping) and TensorBoard logging on. Validation is off,
  because the plain loop has none.
* **plain**: ``for batch in loader: loss = task.compute_losses(batch)["loss"]; zero_grad;
  backward; clip_grad_norm_; step; scheduler.step()`` (``common.plain_training``).

On a GPU both run there (Lightning's ``accelerator: auto``), timed without per-step waits.

Batches are shuffled from the first step (``data.sorted_epochs=0``), so that the timed
steps hold a representative mix of lengths. Runs alternate (plain, rnnseq, rnnseq, plain, ...).
Each run's step time is its mean over the steps after ``--warmup`` (data loading included); the
script prints the median over repeats, the ratio, and the largest difference between the two
sides' losses at every step.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import lightning as L
import torch
from common import (
    SHUFFLED,
    StepTimer,
    build_experiment,
    compose,
    interleaved,
    machine,
    median,
    plain_training,
    training_parser,
)
from hydra.utils import instantiate
from omegaconf import open_dict

from rnnseq.train import resolve_precision


class StepClock(L.Callback):
    """Time and loss after every training step (the loss stays a tensor until the end)."""

    def __init__(self, steps: int, warmup: int):
        self.timer = StepTimer(steps, warmup)
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach())
        self.timer.lap()


def main() -> None:
    parser = training_parser(__doc__, steps=60, warmup=10)
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="rnnseq-overhead-"))
    # Validation is off, so early stopping would find no metric at the end of the run (the
    # recipe has none: its budget is a number of steps).
    # float32 on both sides (the plain loop has no autocast), whatever the recipe picks here
    cfg = compose(["experiment=asr", SHUFFLED, "callbacks.early_stopping=null",
                   "trainer.precision=32-true", *args.overrides], out)
    datamodule, template = build_experiment(cfg)
    print(f"machine: {machine()}")
    print(f"model: experiment=asr, {sum(p.numel() for p in template.parameters()):,} parameters; "
          f"{args.steps} steps per run, {args.repeats} runs per side, "
          f"{datamodule.num_workers} DataLoader worker(s)")

    def fresh_task():
        task = copy.deepcopy(template)
        L.seed_everything(cfg.seed, verbose=False)
        return task

    losses: dict[str, list[float]] = {}

    def rnnseq_run() -> float:
        task = fresh_task()
        clock = StepClock(args.steps, args.warmup)
        callbacks = [instantiate(c) for c in cfg.callbacks.values() if c] + [clock]
        loggers = [instantiate(lg) for lg in cfg.logger.values() if lg]
        trainer_cfg = cfg.trainer.copy()
        with open_dict(trainer_cfg):
            trainer_cfg.update(max_steps=args.steps, max_time=None, limit_val_batches=0,
                               num_sanity_val_steps=0, enable_model_summary=False)
        trainer = instantiate(resolve_precision(trainer_cfg), callbacks=callbacks, logger=loggers)
        trainer.fit(task, datamodule=datamodule)
        losses["rnnseq"] = [float(x) for x in clock.losses]
        return clock.timer.mean()

    def plain_run() -> float:
        seconds, step_losses = plain_training(fresh_task(), datamodule.train_dataloader(), cfg,
                                              args.steps, args.warmup)
        losses["plain"] = [float(x) for x in step_losses]
        return seconds

    steps = interleaved({"plain": plain_run, "rnnseq": rnnseq_run}, args.repeats)
    plain, rnnseq = median(steps["plain"]), median(steps["rnnseq"])
    diff = max(abs(a - b) for a, b in zip(losses["plain"], losses["rnnseq"]))
    print(f"plain PyTorch loop: {plain * 1000:.1f} ms/step  (runs: "
          f"{', '.join(f'{s * 1000:.1f}' for s in steps['plain'])})")
    print(f"rnnseq (Lightning): {rnnseq * 1000:.1f} ms/step  (runs: "
          f"{', '.join(f'{s * 1000:.1f}' for s in steps['rnnseq'])})")
    paired = median([r / p for r, p in zip(steps["rnnseq"], steps["plain"])])
    print(f"step-time ratio rnnseq / plain: {rnnseq / plain:.3f} of the medians, {paired:.3f} "
          f"median of the rounds' ratios  (target <= 1.03)")
    print(f"losses after {len(losses['plain'])} steps: plain {losses['plain'][-1]:.6f}, rnnseq "
          f"{losses['rnnseq'][-1]:.6f}; largest difference over all steps {diff:.2e} "
          f"({'equal' if diff < 5e-6 else 'DIFFERENT'} to 5 decimals)")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
