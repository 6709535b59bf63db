"""Learning-rate schedules that Lightning steps every optimizer step."""

from __future__ import annotations

import logging
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

log = logging.getLogger(__name__)


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 500,
    min_lr_ratio: float = 0.05,
) -> LambdaLR:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at
    ``total_steps`` (Lightning's estimate of the run's optimizer steps)."""
    if warmup_steps < 0 or not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"need warmup_steps >= 0 and 0 <= min_lr_ratio <= 1, got "
                         f"{warmup_steps} and {min_lr_ratio}")
    if total_steps > 0 and warmup_steps >= total_steps:  # a warning: short test runs do this
        log.warning("task.scheduler.warmup_steps=%d is not below the run's %d optimizer steps: the "
                    "learning rate never reaches its peak nor decays; lower it for a real run",
                    warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
