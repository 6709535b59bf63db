"""One table for a sweep, or for several runs: each job's overrides against its metrics.

    python -m rnnseq.summarize experiments/asr/multiruns/<time>
    rnnseq-summarize sweep=experiments/asr/multiruns/<time>      # the same
    python -m rnnseq.summarize --seeds RUN RUN RUN   # runs of one recipe: then mean and spread

Reads every job folder below the sweep folder (``<job>/results.json`` and
``<job>/.hydra/overrides.yaml``), prints a Markdown table and writes it to ``summary.md`` and
``summary.csv`` in the sweep folder. Columns: the job, every override that differs between jobs,
the best validation metric, the test metrics, training time. Jobs that did not finish are listed
with empty metrics. Run folders (``--runs``, or ``--seeds`` for the seeds of one recipe, which adds
a mean row and a spread row, lowest-highest, of every metric) are only printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnseq.arguments import strip_key
from rnnseq.sweeps import summarize, summarize_runs


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.summarize``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.summarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", metavar="SWEEP",
                        help="a multirun folder (experiments/<study>/multiruns/<time>), as PATH or "
                             "sweep=PATH; with --runs or --seeds, run folders")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--runs", action="store_true", help="the folders are runs: a row each")
    runs.add_argument("--seeds", action="store_true",
                      help="the folders are runs of one recipe with different seeds: a row each, "
                           "then their mean and spread")
    args = parser.parse_args(argv)
    folders = [Path(strip_key(f, key="sweep")) for f in args.folders]
    try:
        if args.runs or args.seeds:
            print(summarize_runs(folders, seeds=args.seeds), end="")
            return 0
        if len(folders) > 1:
            parser.error("one sweep folder at a time; give --runs or --seeds for run folders")
        print(summarize(folders[0]), end="")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"written to {folders[0] / 'summary.md'} and {folders[0] / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
