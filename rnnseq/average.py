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
the task's monitored metric (``callbacks.model_checkpoint.save_top_k``), their scores and the
direction (min or max) read from the run's checkpoint state; ``recent-*.ckpt`` are the latest
validations (``callbacks.recent_checkpoints.keep``). Asking for more than the run kept is an error
that says which setting to raise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rnnseq.arguments import strip_key
from rnnseq.checkpoints import checkpoint_folder, load_checkpoint, ranked_best

RECENT_PREFIX = "recent"


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
