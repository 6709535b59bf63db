"""What a finished run leaves behind: ``results.json`` and the TensorBoard hparams entry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams as hparams_summary


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``; lists become strings (TensorBoard takes scalars only)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[name] = "None" if value is None else value
        else:
            flat[name] = str(value)
    return flat


def log_hparams_with_metrics(
    logger: TensorBoardLogger, params: Mapping[str, Any], metrics: Mapping[str, float]
) -> None:
    """Writes the hparams entry that ties ``params`` to metrics already logged as scalars.

    Lightning's own call would also log the metric values at step 0; here the hparams view reads
    the real, already-logged curves instead (no stuck ``hp_metric``).
    """
    exp, ssi, sei = hparams_summary(flatten(params), dict(metrics))
    writer = logger.experiment._get_file_writer()
    for summary in (exp, ssi, sei):
        writer.add_summary(summary)
    writer.flush()


def write_results(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Writes ``results.json`` atomically."""
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


DATA_REPORT_TAG = "data/report"


def log_data_report(logger: TensorBoardLogger, report, step: int = 0) -> None:
    """The data report's counts as scalars (``data/skipped``, ``data/kept``) and its first 50
    items as a table (``data/report``) at ``step``, so a glance at TensorBoard shows what was
    left out (written again after training and test when items failed to load meanwhile)."""
    counts = report.counts()
    for action in ("skipped", "kept"):
        logger.experiment.add_scalar(f"data/{action}", counts.get(action, 0), step)
    if report.issues:
        rows = ["| item | reason | action |", "|---|---|---|"]
        rows += [f"| {i.id or i.source} | {i.reason} | {i.action} |" for i in report.issues[:50]]
        if len(report.issues) > 50:
            rows.append(f"| ... | {len(report.issues) - 50} more in data_report.json | |")
        logger.experiment.add_text(DATA_REPORT_TAG, "\n".join(rows), step)
