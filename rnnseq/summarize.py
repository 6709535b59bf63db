"""One table for a sweep: each job's overrides against its metrics.

    python -m rnnseq.summarize experiments/asr/multiruns/<time>
    rnnseq-summarize sweep=experiments/asr/multiruns/<time>      # the same

Reads every job folder below the sweep folder (``<job>/results.json`` and
``<job>/.hydra/overrides.yaml``), prints a Markdown table and writes it to ``summary.md`` and
``summary.csv`` in the sweep folder. Columns: the job, every override that differs between jobs,
the best validation metric, the test metrics, training time. Jobs that did not finish are listed
with empty metrics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnseq.arguments import strip_key
from rnnseq.sweeps import summarize


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.summarize``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.summarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="a multirun folder (experiments/<study>/multiruns/<time>), "
                                      "as PATH or sweep=PATH")
    args = parser.parse_args(argv)
    args.sweep = Path(strip_key(args.sweep, key="sweep"))
    try:
        print(summarize(args.sweep), end="")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"written to {args.sweep / 'summary.md'} and {args.sweep / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
