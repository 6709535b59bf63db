"""The one argument style of the entry points that read a run: the run (or a sweep folder) is
``run=PATH`` anywhere on the line, or else the first positional argument.

    rnnseq-evaluate run=experiments/asr/runs/<time> decoding.beam_size=8
    rnnseq-evaluate experiments/asr/runs/<time> decoding.beam_size=8     # the same
    rnnseq-transcribe <run> a.wav b.wav                                  # = run=<run> a.wav b.wav
    rnnseq-summarize sweep=experiments/asr/multiruns/<time>              # = the folder alone
"""

from __future__ import annotations

import re

import yaml

# KEY=VALUE settings (decoding.beam_size=8, data.max_frames=4000): never taken for the run.
_SETTING = re.compile(r"^[A-Za-z_][\w.]*=")


def is_setting(item: str) -> bool:
    """Whether ``item`` is a ``KEY=VALUE`` setting rather than a path or a text."""
    return bool(_SETTING.match(item))


def take_run(items: list[str], key: str = "run") -> tuple[str | None, list[str]]:
    """Splits the run off ``items``: ``(run, the other items in their order)``.

    ``key=PATH`` wins wherever it stands; without it, the first item that is not a ``KEY=VALUE``
    setting is the run. Raises ``ValueError`` naming ``key`` when it is given twice. ``run`` is
    None when nothing names it (the caller says what is missing).
    """
    prefix = f"{key}="
    named = [i for i, item in enumerate(items) if item.startswith(prefix)]
    if len(named) > 1:
        raise ValueError(f"{key}= given {len(named)} times; give one {key}=PATH")
    if named:
        index = named[0]
        run = items[index][len(prefix):]
    else:
        index = next((i for i, item in enumerate(items) if not is_setting(item)), None)
        if index is None:
            return None, list(items)
        run = items[index]
    return run, items[:index] + items[index + 1:]


def strip_key(value: str, key: str = "run") -> str:
    """A single positional path given either way: ``key=PATH`` -> ``PATH``, ``PATH`` -> ``PATH``."""
    prefix = f"{key}="
    return value[len(prefix):] if value.startswith(prefix) else value


DECODING_PREFIX = "decoding."


def parse_assignments(assignments: list[str], prefix: str) -> dict:
    """``["decoding.beam_size=8", "decoding.lm=null"]`` with prefix ``decoding.`` ->
    ``{"beam_size": 8, "lm": None}`` (values parsed as YAML, so numbers, booleans, lists and
    null work)."""
    out = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith(prefix) or key == prefix:
            raise ValueError(f"expected {prefix}KEY=VALUE, got {item!r}")
        out[key[len(prefix):]] = yaml.safe_load(value)
    return out


def parse_decoding(assignments: list[str]) -> dict:
    """``decoding.KEY=VALUE`` items as a dict (:func:`parse_assignments`)."""
    return parse_assignments(assignments, DECODING_PREFIX)
