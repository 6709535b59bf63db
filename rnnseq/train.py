"""Train, then test: ``python -m rnnseq.train experiment=asr [overrides]``.

Seeds everything, builds the datamodule, the task (with sizes taken from the data), callbacks,
loggers and trainer from the config, fits, tests the best checkpoint and writes ``results.json``.
Returns the best validation metric so that sweeps can optimise it.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from rnnseq.callbacks import DataReportPublisher
from rnnseq.checkpoints import load_checkpoint
from rnnseq.config import AVERAGE_KEY, CONFIG_DIR, task_config
from rnnseq.console import quiet_third_party
from rnnseq.formats import require_current_data_config
from rnnseq.resources import auto_precision, limit_kernel_cache, set_threads, share_cores
from rnnseq.results import best_checkpoint_callback, fit_results, publish_results, test_results
from rnnseq.safeguards import TrainingInterrupted
from rnnseq.tasks.base import require_matching_shapes

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


def resolve_precision(trainer_cfg: DictConfig) -> DictConfig:
    """``trainer.precision=auto`` made concrete (:func:`rnnseq.resources.auto_precision`: bf16
    where the hardware computes it natively, float32 elsewhere); other values pass unchanged."""
    if str(trainer_cfg.get("precision")) != "auto":
        return trainer_cfg
    trainer_cfg = trainer_cfg.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.precision = auto_precision(str(trainer_cfg.get("accelerator") or "auto"))
    log.info("trainer.precision=auto: training in %s on this machine", trainer_cfg.precision)
    return trainer_cfg


CTC_NOT_DETERMINISTIC = ("trainer.deterministic=true: CUDA's ctc_loss backward has no deterministic "
                         "kernel, so this run uses Lightning's deterministic='warn': all other ops "
                         "are deterministic, the CTC gradients may differ in their last bits")


def resolve_determinism(trainer_cfg: DictConfig, task) -> DictConfig:
    """``trainer.deterministic=true`` on CUDA for a task with a CTC loss (``ctc_weight > 0``)
    becomes Lightning's ``"warn"``: CUDA's ctc_loss backward has no deterministic kernel, and
    ``true`` would raise at the first backward. Every other op stays deterministic, and the
    choice is logged once. On the CPU, or without CTC, the setting passes unchanged."""
    if trainer_cfg.get("deterministic") is not True:
        return trainer_cfg
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    ctc = float((getattr(task, "hparams", None) or {}).get("ctc_weight") or 0.0) > 0
    if not (on_cuda and ctc):
        return trainer_cfg
    trainer_cfg = trainer_cfg.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.deterministic = "warn"
    log.warning(CTC_NOT_DETERMINISTIC)
    return trainer_cfg


def build_data_and_task(cfg: DictConfig):
    """Threads and seeds set, the datamodule prepared and set up, and the task built with the sizes
    and statistics of the data: ``(datamodule, task)``."""
    set_threads(cfg.get("threads"))
    L.seed_everything(cfg.seed, workers=True)
    require_current_data_config(OmegaConf.to_container(cfg.data), cfg.get("resume") or "RUN")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, build_task(cfg, datamodule)


def build_task(cfg: DictConfig, datamodule):
    """The task of ``cfg`` with the sizes and statistics of a set-up ``datamodule`` (another model
    config may share one datamodule)."""
    task = instantiate(task_config(cfg), model=cfg.model, **datamodule.task_arguments())
    datamodule.prepare_task(task)
    return task


def checkpoints_to_average(cfg: DictConfig, callbacks: list) -> int:
    """``task.average_checkpoints`` (0: test the single best), checked against what the best
    checkpoint callback keeps."""
    count = int(cfg.task.get(AVERAGE_KEY) or 0)
    if count <= 0:
        return 0
    best = best_checkpoint_callback(callbacks)
    if best is None or 0 <= best.save_top_k < count:  # -1 keeps every checkpoint
        kept = best.save_top_k if best is not None else "no checkpoints (callbacks.model_checkpoint=null)"
        raise ValueError(f"task.{AVERAGE_KEY}={count} averages the {count} best checkpoints, but "
                         f"callbacks.model_checkpoint.save_top_k keeps {kept}; set it to {count} or more")
    return count


def build_callbacks(cfg: DictConfig, task) -> list:
    """The ``callbacks`` group's callbacks; one that watches a metric the task does not log in
    validation (``callbacks.<name>.monitor``) is an error naming the key."""
    callbacks = []
    for name, conf in (cfg.get("callbacks") or {}).items():
        if not conf:  # an entry set to null (`callbacks.attention_samples=null`) is switched off
            continue
        callback = instantiate(conf)
        if getattr(callback, "monitor", None) not in (None, "step", "epoch"):  # those two always are
            task.require_logged(callback.monitor, f"callbacks.{name}.monitor")
        callbacks.append(callback)
    return callbacks


def require_same_attention(checkpoint: dict, path, key: str, cfg: DictConfig) -> None:
    """Continuing (``resume``) or fine-tuning (``ckpt_path``) a checkpoint with another attention
    class than it was trained with would put the same weights under other arithmetic (``dot`` and
    ``scaled_dot`` have the same parameters): an error naming the config option to use."""
    model = checkpoint.get("hyper_parameters", {}).get("model") or {}
    trained = (model.get("attention") or {}).get("_target_")
    current = ((cfg.get("model") or {}).get("attention") or {}).get("_target_")
    if not trained or not current or trained == current:
        return
    options = [p.stem for p in sorted((CONFIG_DIR / "model" / "attention").glob("*.yaml"))
               if f"_target_: {trained}" in p.read_text()]
    use = f"model/attention={options[0]}" if options else f"model.attention._target_={trained}"
    raise ValueError(f"{key}={path} was trained with {trained.rsplit('.', 1)[-1]} attention and "
                     f"this config builds {current.rsplit('.', 1)[-1]}; continue it with {use}")


def build_trainer(cfg: DictConfig, task, callbacks: list) -> L.Trainer:
    """The Lightning trainer of ``cfg.trainer`` (precision and determinism resolved for this
    machine and task) with ``callbacks`` and the ``logger`` group's loggers; it shares the cores."""
    loggers = [instantiate(lg) for lg in (cfg.get("logger") or {}).values() if lg]
    trainer_cfg = resolve_determinism(resolve_precision(quick_run_overrides(cfg.trainer)), task)
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=loggers)
    share_cores(cfg.get("threads"), trainer)
    return trainer


def start_from(cfg: DictConfig, task) -> Path | None:
    """Loads ``ckpt_path``'s weights into ``task`` (fine-tuning: a fresh optimiser and schedule),
    and returns the checkpoint that ``resume`` continues from; both checked against the config
    first."""
    if cfg.get("ckpt_path"):
        source = load_checkpoint(cfg.ckpt_path)  # read once: a checkpoint can be large
        require_same_attention(source, cfg.ckpt_path, "ckpt_path", cfg)
        require_matching_shapes(task, source["state_dict"], cfg.ckpt_path, "ckpt_path")
        task.load_state_dict(source["state_dict"])
        log.info("initialised the model from %s", cfg.ckpt_path)
    if not cfg.get("resume"):
        return None
    resume_from = Path(cfg.resume) / "checkpoints" / "last.ckpt"
    previous = load_checkpoint(resume_from)
    require_same_attention(previous, resume_from, "resume", cfg)
    require_matching_shapes(task, previous["state_dict"], resume_from, "resume")
    return resume_from


def train(cfg: DictConfig) -> dict:
    """Runs one experiment described by ``cfg``; returns the dict written to ``results.json``."""
    started = time.time()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    datamodule, task = build_data_and_task(cfg)
    callbacks = [*build_callbacks(cfg, task), DataReportPublisher(run_dir, datamodule)]
    average = checkpoints_to_average(cfg, callbacks)  # checked before training
    trainer = build_trainer(cfg, task, callbacks)
    resume_from = start_from(cfg, task)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except TrainingInterrupted as stop:
        log.warning("%s. Continue with: python -m rnnseq.train resume=%s", stop, run_dir)
        raise
    results = fit_results(cfg, trainer, callbacks, average, run_dir, time.time() - started)
    if cfg.get("test", True):
        results |= test_results(trainer, task, datamodule, results["tested_checkpoint"], run_dir)
    results["data_issues"] = datamodule.report.counts()
    results["wall_seconds"] = round(time.time() - started, 1)
    if trainer.is_global_zero:  # the other ranks of a distributed run hold the same results
        publish_results(cfg, trainer, datamodule, results, run_dir)
    return results


def resume_arguments(argv: list[str]) -> list[str]:
    """Command-line arguments that continue the run named by ``resume=<run folder>``.

    The run's own overrides (``.hydra/overrides.yaml``) recompose its config, its folder stays the
    output folder, and arguments given after ``resume=`` (e.g. ``trainer.max_epochs=30``) apply
    on top. Without ``resume=`` the arguments are returned unchanged.
    """
    resumes = [a for a in argv if a.startswith("resume=")]
    if not resumes:
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        raise SystemExit("error: resume= continues one run; it cannot be combined with -m")
    run = Path(resumes[-1].split("=", 1)[1])
    overrides = run / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        raise SystemExit(f"error: {overrides} is missing: resume= takes a run folder written "
                         f"by rnnseq.train")
    if not (run / "checkpoints" / "last.ckpt").is_file():
        raise SystemExit(f"error: {run} has no checkpoints/last.ckpt to resume from")
    own = ("resume=", "hydra.run.dir=", "ckpt_path=")
    saved = [str(o) for o in (yaml.safe_load(overrides.read_text()) or []) if not str(o).startswith(own)]
    extra = [a for a in argv if not a.startswith("resume=")]
    return [*saved, f"hydra.run.dir={run}", f"resume={run}", *extra]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        results = train(cfg)
    except TrainingInterrupted as stop:  # checkpoint written: a clean exit, no traceback
        raise SystemExit(stop.exit_code) from None
    best = list(results["best_val"].values())
    return best[0] if best else None


def main() -> float | None:
    """``python -m rnnseq.train [overrides]``; ``resume=<run folder>`` continues a run."""
    quiet_third_party()
    limit_kernel_cache()
    sys.argv = [sys.argv[0], *resume_arguments(sys.argv[1:])]
    return _hydra_main()


if __name__ == "__main__":
    main()
