"""Averaging the weights of several checkpoints of one run (ESPnet's ``valid.acc.ave_10best``):
which checkpoints (the best by the monitored metric, or the latest validations), the average, and
writing it. ``python -m rnnseq.average`` and ``task.average_checkpoints`` use it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rnnseq.checkpoints import AtomicCheckpointIO, checkpoint_folder, load_checkpoint, ranked_best

RECENT_PREFIX = "recent"

log = logging.getLogger(__name__)


def latest(folder: Path) -> list[Path]:
    """``recent-*.ckpt`` of a folder (the latest validations), newest step first."""
    steps = {torch.load(p, map_location="cpu", weights_only=True, mmap=True)["global_step"]: p
             for p in folder.glob(f"{RECENT_PREFIX}*.ckpt")}
    return [steps[s] for s in sorted(steps, reverse=True)]


def choose(run: str | Path, best: int | None = None, last: int | None = None) -> list[Path]:
    """The checkpoints ``--best N`` or ``--last N`` names (exactly one of them)."""
    if (best is None) == (last is None) or (best if best is not None else last) < 1:
        raise ValueError("give one of --best N or --last N, with N >= 1")
    folder = checkpoint_folder(run)
    if best is not None:
        chosen = ranked_best(folder)[:best]
        if len(chosen) < best:
            raise ValueError(f"{folder} keeps {len(chosen)} best checkpoint(s), fewer than --best "
                             f"{best}: train with callbacks.model_checkpoint.save_top_k={best} or more")
        return chosen
    chosen = latest(folder)[:last]
    if len(chosen) < last:
        raise ValueError(f"{folder} keeps {len(chosen)} recent checkpoint(s), fewer than --last "
                         f"{last}: train with callbacks.recent_checkpoints.keep={last} or more")
    return chosen


def average_checkpoints(paths: list[Path]) -> dict:
    """The newest of ``paths`` (by step) with its floating-point weights replaced by the mean of
    all of them (summed in float64, one checkpoint in memory at a time besides the newest),
    integer buffers kept, optimiser state dropped."""
    steps = [torch.load(p, map_location="cpu", weights_only=True, mmap=True)["global_step"]
             for p in paths]
    newest = max(range(len(paths)), key=lambda i: steps[i])
    out = load_checkpoint(paths[newest])
    out["optimizer_states"], out["lr_schedulers"] = [], []
    totals = {name: value.to(torch.float64) for name, value in out["state_dict"].items()
              if value.is_floating_point()}
    for i, path in enumerate(paths):
        if i == newest:
            continue
        state = load_checkpoint(path)["state_dict"]
        if set(state) != set(out["state_dict"]):
            raise ValueError(f"{path} holds other weights than {paths[newest]}; average checkpoints "
                             f"of one run")
        for name in totals:
            totals[name] += state[name].to(torch.float64)
        del state
    for name, total in totals.items():
        out["state_dict"][name] = (total / len(paths)).to(out["state_dict"][name].dtype)
    out.setdefault("rnnseq", {})["averaged"] = {"checkpoints": [p.name for p in paths], "steps": steps}
    return out


def write_average(run: str | Path, best: int | None = None, last: int | None = None,
                  out: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Averages the checkpoints :func:`choose` names and writes them; returns ``(file, sources)``."""
    chosen = choose(run, best, last)
    out = Path(out) if out else checkpoint_folder(run) / (
        f"average-best{best}.ckpt" if best is not None else f"average-last{last}.ckpt")
    AtomicCheckpointIO().save_checkpoint(average_checkpoints(chosen), out)
    return out, chosen


def average_best(trainer, folder: Path, count: int) -> tuple[str, list[str]]:
    """Rank 0 writes the average of the ``count`` best checkpoints in ``folder`` (fewer, with a
    warning, when fewer validations ran); every rank gets ``(its path, the names averaged)``."""
    result = None
    if trainer.is_global_zero:
        kept = min(count, len(ranked_best(folder)))
        if kept < count:
            log.warning("the %d best checkpoints were asked for, but only %d validation "
                        "checkpoint(s) were kept: averaging those", count, kept)
        path, chosen = write_average(folder, best=kept, out=folder / f"average-best{kept}.ckpt")
        log.info("testing the average of %s", ", ".join(p.name for p in chosen))
        result = (str(path), [p.name for p in chosen])
    return trainer.strategy.broadcast(result, src=0)  # the folder may be rank 0's own disk
