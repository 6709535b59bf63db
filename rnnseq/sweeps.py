"""A sweep's jobs (or several runs) read back from their folders: each one's overrides against
its metrics, as a table (Markdown and CSV); for runs of one recipe with different seeds, their
mean and spread too. ``python -m rnnseq.summarize`` and the notebooks use it."""

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
        for split, scores in results.items():  # further test splits: {"test_text/wer": ...}
            if split != "test" and isinstance(scores, dict) and scores and all(
                    str(k).startswith(f"{split}/") for k in scores):
                metrics.update(scores)
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


def with_mean_and_spread(header: list[str], rows: list[list], first_metric: int) -> list[list]:
    """``rows`` (runs of one recipe, one per seed) followed by a ``mean`` row and a ``spread`` row
    (lowest and highest, as ``"low-high"``) of every column from ``first_metric`` on that every
    run has; the columns before it (the run, its overrides) stay empty in both."""
    mean, spread = ["mean"] + [""] * (len(header) - 1), ["spread"] + [""] * (len(header) - 1)
    for column in range(first_metric, len(header)):
        values = [row[column] for row in rows]
        if len(values) < 2 or any(not isinstance(v, (int, float)) for v in values):
            continue
        mean[column] = sum(values) / len(values)
        spread[column] = f"{_cell(float(min(values)))}-{_cell(float(max(values)))}"
    return [*rows, mean, spread]


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


def summarize_runs(runs: list[Path], seeds: bool = False) -> str:
    """The Markdown table of several run folders (each with ``.hydra/overrides.yaml``), in the
    order given; with ``seeds``, runs of one recipe, so a mean and a spread row follow."""
    missing = [run for run in runs if not (run / ".hydra" / "overrides.yaml").is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} is not a run folder (no .hydra/overrides.yaml)")
    jobs = [{**read_job(run), "job": run.name} for run in runs]
    header, rows = summary_rows(jobs)
    if seeds:
        metrics = {name for job in jobs for name in job["metrics"]}
        first_metric = next((i for i, name in enumerate(header) if name in metrics), len(header))
        rows = with_mean_and_spread(header, rows, first_metric)
    return to_markdown(header, rows)


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


