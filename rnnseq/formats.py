"""What rnnseq reads, and what it refuses from older versions of itself: the checkpoint format,
data settings that were renamed and modules that moved. Every refusal ends with the same advice,
the one-off conversion ``python -m rnnseq.upgrade`` (:mod:`rnnseq.upgrade`, which reads these
tables too); CHANGELOG.md says what changed in each version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The layout of the checkpoints rnnseq writes and reads (``checkpoint["rnnseq"]["format"]``).
CHECKPOINT_FORMAT = 3

# Data settings that were renamed: the old key under ``data``, and today's spelling.
RETIRED_DATA_SETTINGS = {"noise_snr_db": "data.augment.noise (p 1, kinds [white])",
                         "sorted_first_epoch": "data.sorted_epochs"}

# Modules that moved, by their old prefix, and their new one.
MOVED_MODULES = {"rnnseq.data.corpus.": "rnnseq.data.builders.",
                 "rnnseq.data.readers.corpus.": "rnnseq.data.readers.split_corpus."}


def upgrade_advice(target: str | Path = "RUN") -> str:
    """How to convert ``target`` (a run folder or checkpoint) written by an older rnnseq."""
    return f"convert it once with `python -m rnnseq.upgrade {target}`"


def moved_targets(config: Any) -> list[str]:
    """The ``_target_`` values anywhere in ``config`` (nested mappings and lists) that name a
    module of :data:`MOVED_MODULES` by its old path."""
    if isinstance(config, Mapping):
        found = [t for k, t in config.items() if k == "_target_" and isinstance(t, str)
                 and t.startswith(tuple(MOVED_MODULES))]
        return found + [t for v in config.values() for t in moved_targets(v)]
    if isinstance(config, Sequence) and not isinstance(config, str):
        return [t for v in config for t in moved_targets(v)]
    return []


def require_current_data_config(data: Mapping[str, Any], where: str | Path = "RUN") -> None:
    """Raises a ``ValueError`` for a ``data`` config of an older rnnseq (``where`` it came from:
    a run folder, or the command line): a renamed setting (``null`` ones included) names today's
    spelling, a moved class its module; both name the upgrade command."""
    for key in data:
        if key in RETIRED_DATA_SETTINGS:
            raise ValueError(f"data.{key} is now {RETIRED_DATA_SETTINGS[key]}: write that instead, "
                             f"or, for a run folder written with it, {upgrade_advice(where)}")
    moved = moved_targets(data)
    if moved:
        raise ValueError(f"{moved[0]} is a module that has moved since this config was written: "
                         f"{upgrade_advice(where)}")
