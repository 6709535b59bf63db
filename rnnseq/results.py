"""What a run reports once it has trained and tested: the fit's outcome (best checkpoint and
score, steps, whether the time cap stopped it, the checkpoint to test), the test splits' metrics
and outputs (``test_outputs*.json``), and ``results.json`` with the run's hyper-parameters against
its final scores in TensorBoard's HParams view. ``rnnseq.train`` calls these in order."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from omegaconf import DictConfig, OmegaConf

from rnnseq.averaging import average_best
from rnnseq.callbacks import RecentCheckpoints, tensorboard_logger
from rnnseq.reporting import log_hparams_with_metrics, write_results

log = logging.getLogger(__name__)


def time_capped(trainer) -> bool:
    """Whether the wall-clock cap (``trainer.max_time``) stopped training before its step or
    epoch budget was spent."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is None or remaining > 0:
        return False
    steps_done = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
    epochs_done = trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs
    return not (steps_done or epochs_done)


def best_checkpoint_callback(callbacks: list) -> ModelCheckpoint | None:
    """The ModelCheckpoint that keeps the best validations (not :class:`RecentCheckpoints`)."""
    return next((c for c in callbacks if isinstance(c, ModelCheckpoint)
                 and not isinstance(c, RecentCheckpoints)), None)


def fit_results(cfg: DictConfig, trainer, callbacks: list, average: int, run_dir: Path,
                seconds: float) -> dict:
    """What the fit gave: the best checkpoint and validation score, steps, whether the time cap
    stopped it, the precision, and the checkpoint to test (the average of the ``average`` best,
    :func:`checkpoints_to_average`)."""
    capped = time_capped(trainer)
    if capped:
        log.warning("CAPPED: trainer.max_time=%s stopped training after %d steps, before its "
                    "budget (trainer.max_steps=%s, trainer.max_epochs=%s): this run is not the "
                    "recipe's model, and results.json says capped: true", cfg.trainer.max_time,
                    trainer.global_step, trainer.max_steps, trainer.max_epochs)
    checkpoint = best_checkpoint_callback(callbacks)
    best_path = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    if checkpoint and not best_path and cfg.get("test", True):
        log.warning("no validation ran before training ended (trainer.max_steps=%s within the "
                    "first validation interval): the test scores the last weights",
                    cfg.trainer.max_steps)
    results: dict = {
        "run_dir": str(run_dir),
        "best_checkpoint": best_path,
        "best_val": {checkpoint.monitor: _number(checkpoint.best_model_score)} if best_path else {},
        "train_seconds": round(seconds, 1),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "capped": capped,  # stopped by trainer.max_time before its step or epoch budget
        "precision": str(trainer.precision),
    }
    if average and best_path:  # the test scores the average of the best instead
        best_path, results["averaged_checkpoints"] = average_best(trainer, Path(checkpoint.dirpath),
                                                                  average)
    results["tested_checkpoint"] = best_path  # `rnnseq.evaluate RUN --checkpoint` it to repeat the test
    return results


def test_results(trainer, task, datamodule, checkpoint, run_dir: Path) -> dict:
    """Scores ``checkpoint`` on the test split and every extra test split; writes their outputs
    (``test_outputs*.json``) and returns their metrics (and the decoding settings)."""
    metrics = trainer.test(task, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)[0]
    results: dict = {"test": {k: _number(v) for k, v in metrics.items()}}
    if getattr(task, "test_results", None):
        results["test_items"] = len(task.test_results)
        if trainer.is_global_zero:
            write_results(run_dir / "test_outputs.json", {"items": task.test_results})
    for split in getattr(datamodule, "extra_test_splits", ()):
        results[split] = test_extra_split(trainer, task, datamodule, split, checkpoint, run_dir)
    if task.hparams.get("decoding"):
        results["decoding"] = dict(task.hparams.decoding)
    return results


def test_extra_split(trainer, task, datamodule, split: str, best_path, run_dir: Path) -> dict:
    """Scores the best checkpoint on an extra test split (``test_text``, ``test_voices``): its
    metrics are logged as ``<split>/wer`` etc. and its outputs written to
    ``test_outputs_<split>.json``; returns the metrics."""
    task.test_label = split
    try:
        metrics = trainer.test(task, dataloaders=datamodule.split_dataloader(split),
                               ckpt_path=best_path, weights_only=True)[0]
    finally:
        task.test_label = "test"
    if getattr(task, "test_results", None) and trainer.is_global_zero:
        write_results(run_dir / f"test_outputs_{split}.json", {"items": task.test_results})
    return {k: _number(v) for k, v in metrics.items()}


def publish_results(cfg: DictConfig, trainer, datamodule, results: dict, run_dir: Path) -> None:
    """Rank 0: writes ``results.json``, and the run's hyper-parameters against its final scores
    to TensorBoard's HParams view."""
    write_results(run_dir / "results.json", results)
    tb = tensorboard_logger(trainer)
    extra = getattr(datamodule, "extra_test_splits", ())
    if tb is not None:
        final = {**results["best_val"], **results.get("test", {}),
                 **{k: v for split in extra for k, v in results.get(split, {}).items()}}
        log_hparams_with_metrics(tb, OmegaConf.to_container(cfg.model, resolve=True)
                                 | {"task": _task_hparams(cfg), "seed": cfg.seed}, final)
    log.info("results: %s", {k: results[k] for k in ("best_val", "test", *extra) if k in results})
    log.info("run folder: %s", run_dir)


def _task_hparams(cfg: DictConfig) -> dict:
    task = OmegaConf.to_container(cfg.task, resolve=True)
    return {k: v for k, v in task.items() if not k.startswith("_")}


def _number(value) -> float | None:
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)
