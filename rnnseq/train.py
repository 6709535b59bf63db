"""Train, then test: ``python -m rnnseq.train experiment=asr [overrides]``.

Seeds everything, builds the datamodule, the task (with sizes taken from the data), callbacks,
loggers and trainer from the config, fits, tests the best checkpoint and writes ``results.json``.
Returns the best validation metric so that sweeps can optimise it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from rnnseq.config import CONFIG_DIR
from rnnseq.reporting import log_hparams_with_metrics, write_results

log = logging.getLogger(__name__)


def quick_run_overrides(trainer_cfg: DictConfig) -> DictConfig:
    """rnnseq's ``trainer.fast_dev_run=N``: N batches of train, validation and test, with the
    run's checkpoints, logs and results still written (Lightning's own flag turns them off, and a
    smoke test should see them)."""
    n = trainer_cfg.get("fast_dev_run")
    if not n:
        return trainer_cfg
    n = 1 if n is True else int(n)
    trainer_cfg = trainer_cfg.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.fast_dev_run = False
        trainer_cfg.max_epochs = 1
        trainer_cfg.max_steps = -1
        trainer_cfg.max_time = None
        trainer_cfg.limit_train_batches = n
        trainer_cfg.limit_val_batches = n
        trainer_cfg.limit_test_batches = n
        trainer_cfg.num_sanity_val_steps = 0
        trainer_cfg.val_check_interval = 1.0  # validate once, after the N training batches
        trainer_cfg.check_val_every_n_epoch = 1
        trainer_cfg.log_every_n_steps = 1
    return trainer_cfg


def train(cfg: DictConfig) -> dict:
    """Runs one experiment described by ``cfg``; returns the dict written to ``results.json``."""
    started = time.time()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    task = instantiate(cfg.task, model=cfg.model, **datamodule.task_arguments())
    datamodule.prepare_task(task)
    datamodule.write_report(run_dir)

    # A config group entry set to null (e.g. `callbacks.attention_samples: null`) is switched off.
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg]
    trainer = instantiate(quick_run_overrides(cfg.trainer), callbacks=callbacks, logger=loggers)
    trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_seconds = time.time() - started

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    results: dict = {
        "run_dir": str(run_dir),
        "best_checkpoint": best_path,
        "best_val": {checkpoint.monitor: _number(checkpoint.best_model_score)} if best_path else {},
        "train_seconds": round(train_seconds, 1),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "data_issues": datamodule.report.counts(),
    }
    if cfg.get("test", True):
        test_metrics = trainer.test(task, datamodule=datamodule, ckpt_path=best_path,
                                    weights_only=False)[0]
        results["test"] = {k: _number(v) for k, v in test_metrics.items()}
        if getattr(task, "test_results", None):
            results["test_items"] = len(task.test_results)
            write_results(run_dir / "test_outputs.json", {"items": task.test_results})
        if task.hparams.get("decoding"):
            results["decoding"] = dict(task.hparams.decoding)
    results["wall_seconds"] = round(time.time() - started, 1)
    write_results(run_dir / "results.json", results)

    tb = next((lg for lg in loggers if isinstance(lg, TensorBoardLogger)), None)
    if tb is not None:
        final = {**results["best_val"], **results.get("test", {})}
        log_hparams_with_metrics(tb, OmegaConf.to_container(cfg.model, resolve=True)
                                 | {"task": _task_hparams(cfg), "seed": cfg.seed}, final)
    log.info("results: %s", {k: results[k] for k in ("best_val", "test") if k in results})
    log.info("run folder: %s", run_dir)
    return results


def _task_hparams(cfg: DictConfig) -> dict:
    task = OmegaConf.to_container(cfg.task, resolve=True)
    return {k: v for k, v in task.items() if not k.startswith("_")}


def _number(value) -> float | None:
    if value is None:
        return None
    return float(value.item() if hasattr(value, "item") else value)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    best = list(results["best_val"].values())
    return best[0] if best else None


if __name__ == "__main__":
    main()
