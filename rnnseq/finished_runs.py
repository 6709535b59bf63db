"""Looking at finished runs and sweeps from Python (the notebooks use this): find them, load
their models, take a few examples of their data, tabulate and plot sweeps.

    from rnnseq import finished_runs
    run = finished_runs.find_run("asr")    # $RNNSEQ_RUN, else the newest run of the study
    task = finished_runs.load_run(run)     # the right task class, in eval mode
    batch = finished_runs.examples(run, "test", 3)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L

import rnnseq.config  # noqa: F401  (registers the resolvers that run configs use)
from rnnseq.checkpoints import find_checkpoint, load_task, run_folder_of
from rnnseq.data.batching import Batch, collate_examples
from rnnseq.plots import metric_against
from rnnseq.runs import task_class_for
from rnnseq.sweeps import job_folders, read_job, summary_rows

RUN_VARIABLE = "RNNSEQ_RUN"
SWEEP_VARIABLE = "RNNSEQ_SWEEP"


def experiments_dir() -> Path:
    """``$RNNSEQ_EXPERIMENTS_DIR``, else ``experiments/`` of the working folder (or of its parent,
    for notebooks started inside ``notebooks/``)."""
    if os.environ.get("RNNSEQ_EXPERIMENTS_DIR"):
        return Path(os.environ["RNNSEQ_EXPERIMENTS_DIR"])
    here = Path.cwd()
    return next((p / "experiments" for p in (here, here.parent) if (p / "experiments").is_dir()),
                here / "experiments")


def _newest(folders: list[Path], what: str, hint: str) -> Path:
    if not folders:
        raise FileNotFoundError(f"no {what}: {hint}")
    return max(folders, key=lambda p: p.stat().st_mtime)


def find_run(study: str) -> Path:
    """The run folder named by ``$RNNSEQ_RUN``, else the newest run of ``study`` that has a
    checkpoint (``experiments/<study>/runs/<time>``)."""
    if os.environ.get(RUN_VARIABLE):
        return run_folder_of(os.environ[RUN_VARIABLE])
    runs = experiments_dir() / study / "runs"
    folders = [p for p in runs.glob("*") if any((p / "checkpoints").glob("*.ckpt"))]
    return _newest(folders, f"run of {study} with a checkpoint under {runs}",
                   f"train one (python -m rnnseq.train experiment={study}) or set {RUN_VARIABLE}")


def find_sweep(study: str) -> Path:
    """The sweep folder named by ``$RNNSEQ_SWEEP``, else the newest multirun of ``study``
    (``experiments/<study>/multiruns/<time>``) with at least one job."""
    if os.environ.get(SWEEP_VARIABLE):
        return Path(os.environ[SWEEP_VARIABLE])
    sweeps = experiments_dir() / study / "multiruns"
    folders = [p for p in sweeps.glob("*") if p.is_dir() and job_folders(p)]
    return _newest(folders, f"sweep of {study} under {sweeps}",
                   f"run one (python -m rnnseq.train -m experiment={study} "
                   f"model.encoder.hidden_size=128,256) or set {SWEEP_VARIABLE}")


def load_run(run: str | Path, device: str = "auto") -> L.LightningModule:
    """The task (SpeechToText, LanguageModel, ...) of a run folder's best checkpoint, or of a
    checkpoint file, in eval mode on ``device`` (``auto``: a GPU where there is one)."""
    return load_task(task_class_for(find_checkpoint(run)), run, device)


def results(run: str | Path) -> dict:
    """The run's ``results.json`` (best validation and test metrics, times, data issues)."""
    path = run_folder_of(run) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run has not finished its test")
    return json.loads(path.read_text())


def examples(run: str | Path, split: str = "test", count: int = 3) -> Batch:
    """The first ``count`` items of a split of the run's data (rebuilt from its config) as one
    padded :class:`~rnnseq.data.batching.Batch`: ``features`` ``(B, S, F)``, ``ids``, ``texts``."""
    from rnnseq.runs import run_data_loader

    loader, _, _ = run_data_loader(run_folder_of(run), split, [])
    dataset = loader.dataset
    batch = collate_examples([dataset[i] for i in range(min(count, len(dataset)))])
    if batch.empty:
        raise ValueError(f"the first {count} items of {split} could not be read")
    return batch


def play(wave, sample_rate: int):
    """A player for ``(N,)`` samples in a notebook (IPython's ``Audio``)."""
    from IPython.display import Audio

    samples = wave.cpu().numpy() if hasattr(wave, "numpy") else wave
    return Audio(samples, rate=sample_rate, normalize=True)


def audio_files(run: str | Path, split: str = "test", count: int = 3) -> list[str]:
    """Paths of the first ``count`` audio files of a split of a speech run's data."""
    from rnnseq.runs import run_data_loader

    _, utterances, _ = run_data_loader(run_folder_of(run), split, [])
    if not utterances:
        raise ValueError(f"{run} is not a speech run (its {split} split has no audio files)")
    return [u.audio_path for u in utterances[:count]]


def sweep_table(sweep: str | Path) -> list[dict]:
    """One dict per job of a sweep: ``job``, every override that varies between jobs, and every
    metric (best validation, test, training seconds); as ``python -m rnnseq.summarize``."""
    return _sweep(sweep)[0]


def _sweep(sweep: str | Path) -> tuple[list[dict], list[str], list[str]]:
    """The sweep's table, its hyper-parameter columns and its metric columns."""
    jobs = [read_job(f) for f in job_folders(Path(sweep))]
    if not jobs:
        raise FileNotFoundError(f"no job folders (with .hydra/overrides.yaml) under {sweep}")
    header, rows = summary_rows(jobs)
    metrics = {k for job in jobs for k in job["metrics"]}
    return ([dict(zip(header, row)) for row in rows],
            [c for c in header[1:] if c not in metrics], [c for c in header if c in metrics])


def plot_sweep(sweep: str | Path, x: str | None = None, y: str | None = None):
    """A metric ``y`` against a hyper-parameter ``x`` over the jobs of a sweep. By default ``x``
    is the first override that varies and ``y`` the first validation metric."""
    table, params, metrics = _sweep(sweep)
    x = x or (params[0] if params else None)
    y = y or next((c for c in metrics if c.startswith("val/")), None)
    for name, value, choices in (("x", x, params), ("y", y, metrics)):
        if value not in choices:
            raise ValueError(f"{name}={value!r} is not a column of the sweep; choose from {choices}")
    return metric_against([row[x] for row in table], [row[y] for row in table], x, y,
                          f"{Path(sweep).name}: {len(table)} jobs")
