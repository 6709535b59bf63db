"""A sweep's jobs read back from their folders: each job's overrides against its metrics, as a
table (Markdown and CSV). ``python -m rnnseq.summarize`` and the notebooks use it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml


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


