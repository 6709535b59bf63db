"""Config helpers: the ``${metric:NAME}`` resolver and the config folder's location."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from rnnseq.metrics import metric_name

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


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


def register_resolvers() -> None:
    """``${metric:VAL_WER}`` names a metric constant instead of retyping ``val/wer``;
    ``${ensure_dir:PATH}`` creates a folder; ``${job_gpu:}`` picks a sweep job's GPU."""
    if not OmegaConf.has_resolver("metric"):
        OmegaConf.register_new_resolver("metric", metric_name)
    if not OmegaConf.has_resolver("ensure_dir"):
        OmegaConf.register_new_resolver("ensure_dir", ensure_dir)
    if not OmegaConf.has_resolver("job_gpu"):
        OmegaConf.register_new_resolver("job_gpu", job_gpu)


register_resolvers()
