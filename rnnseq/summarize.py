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
import csv
import io
import json
import sys
from pathlib import Path

import yaml

from rnnseq.arguments import strip_key


def job_folders(sweep: Path) -> list[Path]:
    """Folders below ``sweep`` that hold a Hydra job (``.hydra/overrides.yaml``), in job order."""
    jobs = [p.parent.parent for p in sweep.glob("**/.hydra/overrides.yaml")]
    return sorted(jobs, key=lambda p: (len(p.parts), int(p.name) if p.name.isdigit() else p.name))


def read_job(folder: Path) -> dict:
    """``{"job", "overrides": {key: value}, "metrics": {name: value}}`` of one job folder."""
    overrides = {}
    for item in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text()) or []:
        key, _, value = str(item).partition("=")
        overrides[key] = value
    metrics: dict[str, float | None] = {}
    results_path = folder / "results.json"
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        metrics.update(results.get("best_val") or {})
        metrics.update(results.get("test") or {})
        metrics["train_seconds"] = results.get("train_seconds")
    return {"job": folder.name, "overrides": overrides, "metrics": metrics}


def summary_rows(jobs: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows: the job, the overrides that vary between jobs, then every metric."""
    override_keys = sorted({k for j in jobs for k in j["overrides"]})
    varying = [k for k in override_keys
               if len({j["overrides"].get(k) for j in jobs}) > 1 or len(jobs) == 1]
    metric_keys = sorted({k for j in jobs for k in j["metrics"]},
                         key=lambda k: (k == "train_seconds", k))
    header = ["job", *varying, *metric_keys]
    rows = [[j["job"], *(j["overrides"].get(k, "") for k in varying),
             *(j["metrics"].get(k) for k in metric_keys)] for j in jobs]
    return header, rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def to_markdown(header: list[str], rows: list[list]) -> str:
    """A Markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], rows: list[list]) -> str:
    """``rows`` under ``header`` as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[("" if v is None else v) for v in row] for row in rows])
    return out.getvalue()


def summarize(sweep: Path) -> str:
    """Writes ``summary.md`` and ``summary.csv`` into ``sweep``; returns the Markdown table."""
    folders = job_folders(sweep)
    if not folders:
        raise FileNotFoundError(f"no job folders (with .hydra/overrides.yaml) under {sweep}")
    header, rows = summary_rows([read_job(f) for f in folders])
    markdown = to_markdown(header, rows)
    (sweep / "summary.md").write_text(markdown)
    (sweep / "summary.csv").write_text(to_csv(header, rows))
    return markdown


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
