"""Average the weights of several checkpoints of one run (ESPnet's ``valid.acc.ave_10best``).

    python -m rnnseq.average experiments/asr/runs/<time> --best 5      # the 5 best by val metric
    python -m rnnseq.average run=<run> --last 3                         # the 3 latest validations
    python -m rnnseq.evaluate <run> --checkpoint <run>/checkpoints/average-best5.ckpt

Writes ``<run>/checkpoints/average-best<N>.ckpt`` (or ``average-last<N>.ckpt``; ``--out`` to
choose): the newest of the chosen checkpoints with every floating-point weight replaced by the
mean over the chosen ones (integer buffers, such as batch norm's step count, are the newest's),
and no optimiser state, so it can be scored, fine-tuned from (``ckpt_path=``) or loaded like any
best checkpoint, but not resumed. ``task.average_checkpoints=N`` in training tests the average of
the N best instead of the single best.

The ranking is the one training kept: ``best-*.ckpt`` are the ``save_top_k`` best validations by
the task's monitored metric (``callbacks.model_checkpoint.save_top_k``), their scores read from
the run's checkpoint state; ``recent-*.ckpt`` are the latest validations
(``callbacks.recent_checkpoints.save_top_k``). Asking for more than the run kept is an error
that says which setting to raise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rnnseq.arguments import strip_key
from rnnseq.checkpoints import BEST_PREFIX, load_checkpoint, ranked_best

RECENT_PREFIX = "recent"


def checkpoint_folder(run: str | Path) -> Path:
    """``run/checkpoints`` (or ``run`` itself when it is a checkpoint folder)."""
    run = Path(run)
    folder = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    if not folder.is_dir():
        raise FileNotFoundError(f"{run} is not a run folder (no checkpoints/ in it)")
    return folder


def latest(folder: Path) -> list[Path]:
    """Validation checkpoints (``best-*`` and ``recent-*``) of a folder, newest step first."""
    steps = {}
    for path in [*folder.glob(f"{BEST_PREFIX}*.ckpt"), *folder.glob(f"{RECENT_PREFIX}*.ckpt")]:
        step = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
        steps.setdefault(step, path)  # the same validation saved by both callbacks counts once
    return [steps[s] for s in sorted(steps, reverse=True)]


def choose(run: str | Path, best: int | None = None, last: int | None = None) -> list[Path]:
    """The checkpoints ``--best N`` or ``--last N`` names (exactly one of them)."""
    if (best is None) == (last is None) or (best or last) < 1:
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
        raise ValueError(f"{folder} keeps {len(chosen)} validation checkpoint(s), fewer than --last "
                         f"{last}: train with callbacks.recent_checkpoints.save_top_k={last} or more")
    return chosen


def average_checkpoints(paths: list[Path]) -> dict:
    """The newest of ``paths`` (by step) with its floating-point weights replaced by the mean of
    all of them (accumulated in float64), integer buffers kept, optimiser state dropped."""
    checkpoints = [load_checkpoint(p) for p in paths]
    newest = max(range(len(paths)), key=lambda i: checkpoints[i]["global_step"])
    out = checkpoints[newest]
    names = set(out["state_dict"])
    for path, checkpoint in zip(paths, checkpoints):
        if set(checkpoint["state_dict"]) != names:
            raise ValueError(f"{path} holds other weights than {paths[newest]}; average checkpoints "
                             f"of one run")
    averaged = {}
    for name, value in out["state_dict"].items():
        if value.is_floating_point():
            total = sum(c["state_dict"][name].to(torch.float64) for c in checkpoints)
            averaged[name] = (total / len(checkpoints)).to(value.dtype)
        else:
            averaged[name] = value
    out["state_dict"] = averaged
    out["optimizer_states"], out["lr_schedulers"] = [], []
    out.setdefault("rnnseq", {})["averaged"] = {"checkpoints": [p.name for p in paths],
                                                "steps": [c["global_step"] for c in checkpoints]}
    return out


def write_average(run: str | Path, best: int | None = None, last: int | None = None,
                  out: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Averages the checkpoints :func:`choose` names and writes them; returns ``(file, sources)``."""
    from rnnseq.checkpoints import AtomicCheckpointIO

    chosen = choose(run, best, last)
    out = Path(out) if out else checkpoint_folder(run) / (
        f"average-best{best}.ckpt" if best is not None else f"average-last{last}.ckpt")
    AtomicCheckpointIO().save_checkpoint(average_checkpoints(chosen), out)
    return out, chosen


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.average RUN --best N | --last N``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.average", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder (RUN or run=RUN)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--best", type=int, metavar="N", help="the N best validation checkpoints")
    group.add_argument("--last", type=int, metavar="N", help="the N latest validation checkpoints")
    parser.add_argument("--out", type=Path, help="file to write (default: in the run's checkpoints/)")
    args = parser.parse_args(argv)
    run = strip_key(args.run)
    try:
        out, chosen = write_average(run, args.best, args.last, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"averaged {len(chosen)} checkpoints ({', '.join(p.name for p in chosen)}) into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
