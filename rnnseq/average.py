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

from rnnseq.arguments import strip_key
from rnnseq.averaging import write_average


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
