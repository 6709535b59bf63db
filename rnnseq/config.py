"""Config helpers: the resolvers (``${metric:NAME}`` ...), the config folder's location, and the
config of a run composed without running it."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from rnnseq.metrics import metric_name

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def ensure_dir(path: str) -> str:
    """Resolver behind ``${ensure_dir:PATH}``: creates the folder (e.g. for a SQLite file that a
    sweeper opens before any job has created the sweep folder) and returns its path."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def job_gpu() -> list[int]:
    """Resolver behind ``${job_gpu:}``: ``[job number mod visible GPUs]`` for sweep jobs that
    run side by side (``trainer=gpu_per_job``); ``[0]`` outside a sweep."""
    import torch
    from hydra.core.hydra_config import HydraConfig

    count = torch.cuda.device_count()
    if count == 0:
        raise ValueError("trainer=gpu_per_job needs CUDA GPUs, and none is visible")
    num = HydraConfig.get().job.get("num") if HydraConfig.initialized() else None
    return [int(num or 0) % count]


def task_monitor(target: str) -> str:
    """Resolver behind ``${task_monitor:${task._target_}}``: the validation metric that the task
    class ``target`` declares for checkpointing, early stopping and the plateau scheduler."""
    from hydra.utils import get_class

    return get_class(target).MONITOR


def task_monitor_mode(target: str) -> str:
    """Resolver behind ``${task_monitor_mode:${task._target_}}``: ``min`` or ``max`` for it."""
    from hydra.utils import get_class

    return get_class(target).MONITOR_MODE


def tokenizer_state_of_run(run: str | None) -> dict | None:
    """Resolver behind ``data.tokenizer.state`` for ``data.tokenizer.from_run``: the saved state
    of that run's target tokenizer (:func:`rnnseq.runs.tokenizer_of_run`), or ``None`` without a
    run. The data layer then builds it from the state and reads no checkpoint itself."""
    if run is None:
        return None
    from rnnseq.runs import tokenizer_of_run

    return tokenizer_of_run(run).state()


def register_resolvers() -> None:
    """``${metric:VAL_WER}`` names a metric constant instead of retyping ``val/wer``;
    ``${task_monitor:...}``/``${task_monitor_mode:...}`` read a task's monitored metric;
    ``${ensure_dir:PATH}`` creates a folder; ``${job_gpu:}`` picks a sweep job's GPU;
    ``${tokenizer_state_of_run:RUN}`` reads a run's target tokenizer."""
    if not OmegaConf.has_resolver("metric"):
        OmegaConf.register_new_resolver("metric", metric_name)
    for name, resolver in (("task_monitor", task_monitor), ("task_monitor_mode", task_monitor_mode)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
    if not OmegaConf.has_resolver("ensure_dir"):
        OmegaConf.register_new_resolver("ensure_dir", ensure_dir)
    if not OmegaConf.has_resolver("job_gpu"):
        OmegaConf.register_new_resolver("job_gpu", job_gpu)
    if not OmegaConf.has_resolver("tokenizer_state_of_run"):
        OmegaConf.register_new_resolver("tokenizer_state_of_run", tokenizer_state_of_run)


register_resolvers()


AVERAGE_KEY = "average_checkpoints"  # task.average_checkpoints: read by rnnseq.train, not the task


def task_config(cfg):
    """``cfg.task`` as the task class takes it: without the keys that ``rnnseq.train`` reads
    itself (``average_checkpoints``)."""
    import copy

    from omegaconf import open_dict

    task = copy.deepcopy(cfg.task)  # keeps its parent, so ${task...} interpolations still resolve
    with open_dict(task):
        task.pop(AVERAGE_KEY, None)
    return task


def compose_train_config(overrides: list[str], run_dir: str | Path):
    """The config ``python -m rnnseq.train <overrides>`` would run with, outside a Hydra run (tests,
    benchmarks, notebooks): its output folder is ``run_dir``, so that ``${hydra:...}`` resolves."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg
