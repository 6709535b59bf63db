"""Config helpers: the ``${metric:NAME}`` resolver and the config folder's location."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from rnnseq.metrics import metric_name

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def register_resolvers() -> None:
    """Lets configs name metrics as ``${metric:VAL_WER}`` instead of retyping ``val/wer``."""
    if not OmegaConf.has_resolver("metric"):
        OmegaConf.register_new_resolver("metric", metric_name)


register_resolvers()
