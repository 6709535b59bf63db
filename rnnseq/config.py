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


def register_resolvers() -> None:
    """``${metric:VAL_WER}`` names a metric constant instead of retyping ``val/wer``;
    ``${ensure_dir:PATH}`` creates a folder."""
    if not OmegaConf.has_resolver("metric"):
        OmegaConf.register_new_resolver("metric", metric_name)
    if not OmegaConf.has_resolver("ensure_dir"):
        OmegaConf.register_new_resolver("ensure_dir", ensure_dir)


register_resolvers()
