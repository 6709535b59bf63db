"""Brings checkpoints and run folders written by older rnnseq versions up to date, once, so that
the rest of rnnseq reads only today's format (``rnnseq.formats.CHECKPOINT_FORMAT``).

    python -m rnnseq.upgrade experiments/asr/runs/<time>     # every checkpoint and the config
    rnnseq-upgrade old.ckpt                                  # one checkpoint

Each checkpoint is rewritten in place (atomically), its old version kept beside it as
``<name>.format<N>`` (``--no-backup`` drops it); a run folder's ``.hydra/config.yaml`` and
``overrides.yaml`` get today's spelling of renamed data settings. What changed in each format is in
CHANGELOG.md:

- checkpoints without ``checkpoint["rnnseq"]`` (format 1) get the task class that wrote them,
  told by their hyper-parameters; their ``dot`` attention, then a scaled dot product, becomes
  ``scaled_dot`` (or is refused, where it had a learnt projection); speech models get the
  ``none`` transcript normaliser, as they were scored;
- parameter names from before every model built its layers through one registry are renamed;
- the Griffin-Lim vocoder's mel filterbank, saved until format 2, is dropped (it is derived
  from the features now);
- ``data.noise_snr_db`` becomes ``data.augment.noise`` and ``data.sorted_first_epoch``
  ``data.sorted_epochs``; data classes of modules that moved (``rnnseq.data.corpus`` is now
  ``rnnseq.data.builders``) get their new path.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shutil
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from rnnseq.checkpoints import CHECKPOINT_FORMAT, AtomicCheckpointIO, checkpoint_folder, load_checkpoint
from rnnseq.formats import MOVED_MODULES
from rnnseq.tasks.base import Task
from rnnseq.tasks.classification import SpeechClassification
from rnnseq.tasks.forecasting import Forecasting
from rnnseq.tasks.language_model import LanguageModel
from rnnseq.tasks.speech_to_text import SpeechToText
from rnnseq.tasks.text_to_text import TextToText

# -- checkpoints ----------------------------------------------------------------------------------
# Parameter names that changed when every model began to build its layers here: the
# attention decoder's ``lstm`` became ``rnn``; the forecaster's ``nn.LSTMCell`` per layer became
# one stacked module. Full state-dict keys, under any prefix.
_RENAMED_PARAMETERS = [
    (re.compile(r"(.*\.)?(decoder\.)lstm\.(.+)"), r"\1\2rnn.\3"),
    (re.compile(r"(.*\.)?(decoder\.)cells\.(\d+)\.(weight|bias)_(ih|hh)"), r"\1\2rnn.\4_\5_l\3"),
]


# Buffers that older versions saved and that are now derived from the config when the module is
# built: the Griffin-Lim vocoder's mel filterbank (today its pseudo-inverse, not saved).
_RETIRED_BUFFERS = [re.compile(r"(.*\.)?vocoder\.inverse_mel\.fb")]


def upgrade_parameter_names(state: Mapping[str, torch.Tensor],
                            known: Collection[str]) -> dict[str, torch.Tensor]:
    """``state`` (a state dict) with parameter names of older rnnseq versions renamed to today's,
    where the model has no parameter of the old name and one of the new (``known``: the
    model's state-dict keys), so a module of one's own that has an ``lstm`` keeps it; buffers
    that are no longer saved are dropped where the model has no key of their name."""
    upgraded = {}
    for key, value in state.items():
        if key not in known and any(p.fullmatch(key) for p in _RETIRED_BUFFERS):
            continue
        if key not in known:
            for pattern, replacement in _RENAMED_PARAMETERS:
                renamed = pattern.sub(replacement, key) if pattern.fullmatch(key) else key
                if renamed in known:
                    key = renamed
                    break
        upgraded[key] = value
    return upgraded


def upgraded_attention_config(config: dict, state_keys: Collection[str], prefix: str) -> dict:
    """The attention config to build for a checkpoint written before ``dot`` became Luong's dot.

    Until then ``DotAttention`` computed ``q . m / sqrt(Q)`` and, when the memory size differed
    from the query size, a learnt projection ``proj`` of the memory first (a scaled ``general``).
    Given the checkpoint's attention ``config`` (a dict with ``_target_``), the keys of its state
    dict ``state_keys`` and the attention's key ``prefix`` in it (e.g.
    ``"model.decoder.attention."``):

    - an old ``DotAttention`` without ``{prefix}proj.weight`` becomes ``ScaledDotAttention``,
      which computes exactly what it did (a copy of ``config`` is returned);
    - an old ``DotAttention`` with that projection raises a ``ValueError``: rnnseq no longer builds
      that model. Pass the state dict itself (a mapping of keys to tensors) as ``state_keys`` and
      the message names the two sizes;
    - any other config is returned unchanged.
    """
    if config.get("_target_") != "rnnseq.models.attention.DotAttention":
        return config
    weight_key = f"{prefix}proj.weight"
    if weight_key in state_keys:
        weight = state_keys[weight_key] if isinstance(state_keys, Mapping) else None
        sizes = (f" (memory size {weight.shape[1]} vs query size {weight.shape[0]})"
                 if hasattr(weight, "shape") and len(weight.shape) == 2 else "")
        raise ValueError(
            f"this checkpoint was written when model/attention=dot was a scaled dot product with "
            f"a learnt projection of the memory ({weight_key}){sizes}, which rnnseq no longer "
            f"builds: `dot` is now Luong's unscaled q . m and needs equal sizes. Retrain with "
            f"model/attention=general (a learnt projection, unscaled) or model/attention="
            f"scaled_dot with model.decoder.hidden_size equal to the encoder output size")
    return {**config, "_target_": "rnnseq.models.attention.ScaledDotAttention"}


def upgraded_hparams(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters of a checkpoint written by an older rnnseq, brought up to date: the ones
    that changed; ``{}`` where none did.

    Before checkpoints recorded ``checkpoint["rnnseq"]``, ``dot`` attention was a scaled dot
    product (with a hidden projection when sizes differed): such checkpoints load as
    ``scaled_dot``, or fail with a message when they had the projection
    (:func:`upgraded_attention_config`). Speech models from then
    recorded no transcript normaliser: their references are scored as written (``none``).
    """
    if "rnnseq" in checkpoint:
        return {}
    hparams = checkpoint.get("hyper_parameters", {})
    upgraded: dict[str, Any] = {}
    if "features" in hparams and "normalizer" not in hparams:
        upgraded["normalizer"] = "none"  # references were scored as written before normalisers
    model = hparams.get("model")
    if isinstance(model, dict) and isinstance(model.get("attention"), dict):
        attention = upgraded_attention_config(model["attention"], checkpoint.get("state_dict", {}),
                                            "model.decoder.attention.")
        if attention != model["attention"]:
            upgraded["model"] = {**model, "attention": attention}
    return upgraded


def guess_task_class(hparams: dict, checkpoint) -> type[Task]:
    """The task class of a checkpoint written before checkpoints recorded it, told by its
    hyper-parameters."""
    if "features" in hparams:
        return SpeechToText if "decoding" in hparams else SpeechClassification
    if "horizon" in hparams:
        return Forecasting
    if "source_tokenizer" in hparams:
        return TextToText
    if "tokenizer" in hparams:
        return LanguageModel
    raise ValueError(f"{checkpoint} was not written by an rnnseq task (no known hyper-parameters)")


def task_class_of(checkpoint: dict, path) -> type[Task]:
    """The task class a checkpoint records, or the one its hyper-parameters tell."""
    recorded = checkpoint.get("rnnseq", {}).get("task")
    if recorded:
        from rnnseq.runs import task_class_named

        return task_class_named(recorded, path)
    return guess_task_class(checkpoint.get("hyper_parameters", {}), path)


def upgraded_checkpoint(checkpoint: dict, path) -> dict:
    """``checkpoint`` (the contents of ``path``) in today's format: its task class recorded, its
    hyper-parameters and parameter names brought up to date, retired buffers dropped. The model
    is built from the upgraded hyper-parameters and takes the upgraded weights (strictly), so
    what comes out loads as it is."""
    task_class = task_class_of(checkpoint, path)
    hparams = {**checkpoint.get("hyper_parameters", {}), **upgraded_hparams(checkpoint)}
    accepted = inspect.signature(task_class.__init__).parameters
    unknown = sorted(set(hparams) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise ValueError(f"{path}: {task_class.__name__} takes no hyper-parameters {unknown}")
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights
        model = task_class(**hparams)
    state = upgrade_parameter_names(checkpoint["state_dict"], model.state_dict().keys())
    model.load_state_dict(state)
    own = checkpoint.get("rnnseq", {})
    cls = task_class
    # the hyper-parameters as the task records them today, defaults of later settings included
    return {**checkpoint, "hyper_parameters": dict(model.hparams), "state_dict": state,
            "rnnseq": {**own, "task": f"{cls.__module__}.{cls.__qualname__}",
                       "format": CHECKPOINT_FORMAT}}


def upgrade_checkpoint(path: Path, backup: bool = True) -> bool:
    """Rewrites the checkpoint at ``path`` in today's format (keeping the old one as
    ``<name>.format<N>`` if ``backup``); ``False`` when it already was."""
    checkpoint = load_checkpoint(path, current=False)
    old = checkpoint.get("rnnseq", {}).get("format", 1)
    if old == CHECKPOINT_FORMAT:
        return False
    if old > CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {old}, newer than this rnnseq's "
                         f"({CHECKPOINT_FORMAT}); upgrade rnnseq instead")
    upgraded = upgraded_checkpoint(checkpoint, path)
    if backup:
        shutil.copy2(path, path.with_name(f"{path.name}.format{old}"))
    AtomicCheckpointIO().save_checkpoint(upgraded, path)
    return True


# -- run configs ----------------------------------------------------------------------------------
def moved_to(target: str) -> str:
    """A ``_target_`` with its module's path of today (:data:`rnnseq.formats.MOVED_MODULES`)."""
    for old, new in MOVED_MODULES.items():
        if target.startswith(old):
            return new + target[len(old):]
    return target


def with_moved_targets(config):
    """``config`` (nested dicts and lists) with every ``_target_`` in today's module path."""
    if isinstance(config, dict):
        return {k: moved_to(v) if k == "_target_" and isinstance(v, str) else with_moved_targets(v)
                for k, v in config.items()}
    if isinstance(config, list):
        return [with_moved_targets(v) for v in config]
    return config


def upgraded_data_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """A run's ``data`` config with renamed settings in today's spelling: ``noise_snr_db``
    (white noise at an SNR range on every utterance) as ``augment.noise``, ``sorted_first_epoch``
    as ``sorted_epochs``, and classes of moved modules by their new path."""
    data = with_moved_targets(dict(data))
    snr = data.pop("noise_snr_db", None)
    if snr is not None:
        augment = dict(data.get("augment") or {})
        augment["noise"] = {**dict(augment.get("noise") or {}), "p": 1.0,
                            "snr_db": list(snr), "kinds": ["white"]}
        data["augment"] = augment
    sorted_first = data.pop("sorted_first_epoch", None)
    if sorted_first is not None:
        data["sorted_epochs"] = int(bool(sorted_first))
    tokenizer = data.get("tokenizer")
    if isinstance(tokenizer, dict) and "from_run" in tokenizer and "state" not in tokenizer:
        data["tokenizer"] = {**tokenizer, "state": TOKENIZER_STATE}
    return data


# How a language model's data config reads the tokenizer of the run named by ``from_run``.
TOKENIZER_STATE = "${tokenizer_state_of_run:${data.tokenizer.from_run}}"


_OVERRIDE = re.compile(r"^(~|\+{0,2})data\.(noise_snr_db|sorted_first_epoch)(?:=(.*))?$")


def upgraded_overrides(overrides: list[str]) -> list[str]:
    """A run's command-line overrides with renamed data settings in today's spelling."""
    out = []
    for item in overrides:
        match = _OVERRIDE.match(item)
        if not match:
            out.append(item)
            continue
        key, value = match.group(2), yaml.safe_load(match.group(3) or "null")
        if match.group(1) == "~" or value is None:  # removed, or null: nothing to say now
            continue
        if key == "noise_snr_db":
            if not (isinstance(value, list) and len(value) == 2):
                raise ValueError(f"cannot rewrite the override {item!r}: expected "
                                 f"data.noise_snr_db=[low, high]; write data.augment.noise instead")
            out += ["data.augment.noise.p=1.0", f"data.augment.noise.snr_db={list(value)}",
                    "data.augment.noise.kinds=[white]"]
        else:
            out.append(f"data.sorted_epochs={int(bool(value))}")
    return out


def upgrade_run_config(run: Path) -> bool:
    """Rewrites ``run/.hydra/config.yaml`` and ``overrides.yaml`` in today's spelling; whether
    anything changed."""
    changed = False
    config_path, overrides_path = run / ".hydra" / "config.yaml", run / ".hydra" / "overrides.yaml"
    if config_path.is_file():
        config = yaml.safe_load(config_path.read_text()) or {}
        data = config.get("data")
        if isinstance(data, dict) and upgraded_data_settings(data) != data:
            _rewrite(config_path, {**config, "data": upgraded_data_settings(data)})
            changed = True
    if overrides_path.is_file():
        overrides = yaml.safe_load(overrides_path.read_text()) or []
        new = upgraded_overrides(overrides)
        if new != overrides:
            _rewrite(overrides_path, new)
            changed = True
    return changed


def _rewrite(path: Path, contents) -> None:
    """Writes ``contents`` as YAML over ``path`` through a temporary file (the old file kept as
    ``<name>.before-upgrade``)."""
    shutil.copy2(path, path.with_name(f"{path.name}.before-upgrade"))
    temporary = path.with_name(f".{path.name}.upgrading")
    temporary.write_text(yaml.safe_dump(contents, sort_keys=False))
    temporary.replace(path)


# -- command line ---------------------------------------------------------------------------------
def upgrade(path: Path, backup: bool = True) -> list[str]:
    """Upgrades a checkpoint file, or a run folder (its config and every checkpoint under
    ``checkpoints/``); returns a line for each thing it changed."""
    done = []
    if path.is_dir():
        if upgrade_run_config(path):
            done.append(f"{path / '.hydra'}: data settings in today's spelling")
        files = sorted(checkpoint_folder(path).glob("*.ckpt"))
    else:
        files = [path]
    for file in files:  # one that cannot be upgraded is named, and the others still are
        try:
            if upgrade_checkpoint(file, backup):
                done.append(f"{file}: checkpoint format {CHECKPOINT_FORMAT}")
        except (ValueError, TypeError, RuntimeError) as err:
            done.append(f"error: {file}: {str(err).splitlines()[0]}")
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.upgrade``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.upgrade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="run folders or checkpoint files")
    parser.add_argument("--no-backup", action="store_true",
                        help="do not keep the old checkpoints as <name>.format<N>")
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths:
        try:
            done = upgrade(path, backup=not args.no_backup)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 2
            continue
        print("\n".join(done) if done else f"{path}: already up to date")
        status = 2 if any(line.startswith("error:") for line in done) else status
    return status


if __name__ == "__main__":
    sys.exit(main())
