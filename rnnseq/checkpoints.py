"""Checkpoint files: written atomically, found in run folders, loaded without running code."""

from __future__ import annotations

import importlib
import os
import pickle
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

TaskT = TypeVar("TaskT", bound=L.LightningModule)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made crash-safe on local disks: the checkpoint is written to
    a temporary file in the same folder, flushed to disk, and renamed over the old one. A kill or
    a full disk during the write leaves the previous ``last.ckpt`` whole; the temporary file is
    removed when Python gets the chance. Remote paths (``s3://`` ...) use Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Makes a rename inside ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, read with ``weights_only=True``: tensors, numbers, strings and
    containers only, so a tampered file cannot run code. rnnseq writes nothing else into its
    checkpoints (configs are plain dicts, tokenizers their symbol lists, random states tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds objects other than tensors and plain data, so it was not "
                         f"written by rnnseq or has been altered; rnnseq does not load it "
                         f"({str(err).splitlines()[0]})") from None
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt?): {err}") from None


def require_matching_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor],
                            path: str | Path, key: str) -> None:
    """Raises a ``ValueError`` before training when the weights in ``state`` do not fit ``model``:
    names every parameter whose shape differs, and those missing on either side. Parameter names
    of older rnnseq versions count as today's
    (:func:`rnnseq.models.recurrent.upgrade_parameter_names`)."""
    from rnnseq.models.recurrent import upgrade_parameter_names

    own = model.state_dict()
    state = upgrade_parameter_names(state, own.keys())
    wrong = [f"{name}: checkpoint {tuple(state[name].shape)}, config {tuple(own[name].shape)}"
             for name in own if name in state and state[name].shape != own[name].shape]
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if not (wrong or missing or extra):
        return
    lines = [f"{key}={path} does not fit the model this config builds:"]
    lines += [f"  shape {w}" for w in wrong[:10]]
    if missing:
        lines.append(f"  not in the checkpoint: {', '.join(missing[:10])}")
    if extra:
        lines.append(f"  not in the model: {', '.join(extra[:10])}")
    lines.append("The vocabulary (data) or the model sizes (model.*) differ from the run that wrote "
                 "it; use that run's data and model config, or train without " + key + ".")
    raise ValueError("\n".join(lines))


BEST_PREFIX = "best"  # callbacks.model_checkpoint.filename starts with it


def checkpoint_folder(run: str | Path) -> Path:
    """``run/checkpoints`` (or ``run`` itself when it is a checkpoint folder)."""
    run = Path(run)
    folder = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    if not folder.is_dir():
        raise FileNotFoundError(f"{run} is neither a checkpoint file nor a run folder")
    return folder


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file, else the best ``best*.ckpt`` of a run folder's
    ``checkpoints/`` (:func:`ranked_best`), or its ``last.ckpt``."""
    path = Path(path)
    if path.is_file():
        return path
    folder = checkpoint_folder(path)
    best = ranked_best(folder)
    if best:
        return best[0]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise FileNotFoundError(f"no best*.ckpt or last.ckpt under {folder}")


def _best_state(checkpoint: dict) -> tuple[dict | None, str | None]:
    """The state of the ModelCheckpoint that keeps ``best-*.ckpt`` in a checkpoint's callbacks,
    and its mode (``min``/``max``, from the state's key), or ``(None, None)``."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and any(
                Path(p).name.startswith(BEST_PREFIX) for p in state.get("best_k_models") or {}):
            mode = re.search(r"'mode': '(min|max)'", key)
            return state, mode.group(1) if mode else None
    return None, None


def ranked_best(folder: Path) -> list[Path]:
    """``best-*.ckpt`` of a checkpoint folder, best first, ranked by the validation scores that
    training recorded (in the newest checkpoint's ModelCheckpoint state, whose key holds the
    mode); files the state does not know (or no state at all) rank after, newest first."""
    files = {p.name: p for p in folder.glob(f"{BEST_PREFIX}*.ckpt")}
    if not files:
        return []
    newest = max([*files.values(), *folder.glob("last.ckpt")], key=lambda p: p.stat().st_mtime)
    state, mode = _best_state(torch.load(newest, map_location="cpu", weights_only=True, mmap=True))
    scores = {Path(p).name: float(s) for p, s in ((state or {}).get("best_k_models") or {}).items()
              if Path(p).name in files}
    ranked = sorted(scores, key=lambda n: scores[n], reverse=mode == "max")
    rest = sorted((n for n in files if n not in scores), key=lambda n: -files[n].stat().st_mtime)
    return [files[n] for n in [*ranked, *rest]]


def load_task(task_class: type[TaskT], run: str | Path, device: str = "auto") -> TaskT:
    """The task of a run folder's best checkpoint (or of a checkpoint file), in eval mode, on
    ``device`` (``auto``: a GPU where there is one, :func:`rnnseq.resources.resolve_device`)."""
    from rnnseq.resources import resolve_device

    # Building the model draws its initial weights on the CPU before the saved ones replace
    # them; the caller's random stream goes on as if nothing had been drawn.
    with torch.random.fork_rng(devices=[]):
        task = task_class.load_from_checkpoint(
            find_checkpoint(run), map_location=resolve_device(device), weights_only=True)
    return task.eval()


def task_class_for(checkpoint: str | Path) -> type[L.LightningModule]:
    """The task class that wrote ``checkpoint``: the import path it records
    (``checkpoint["rnnseq"]["task"]``, so a task of your own package needs no entry anywhere), or,
    for checkpoints written before rnnseq recorded it, a guess from the saved hyper-parameters."""
    contents = load_checkpoint(checkpoint)
    recorded = contents.get("rnnseq", {}).get("task")
    if recorded:
        module_name, _, class_name = recorded.rpartition(".")
        try:
            task_class = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"{checkpoint} was written by the task {recorded}, which cannot be "
                             f"imported here ({err}); install the package that defines it") from None
        from rnnseq.tasks.base import Task

        if not (isinstance(task_class, type) and issubclass(task_class, Task)):
            raise ValueError(f"{checkpoint} names {recorded} as its task, which is not an rnnseq "
                             f"task class; rnnseq does not load it")
        return task_class
    return _guess_task_class(contents.get("hyper_parameters", {}), checkpoint)


def _guess_task_class(hparams: dict, checkpoint) -> type[L.LightningModule]:
    from rnnseq.tasks.classification import SpeechClassification
    from rnnseq.tasks.forecasting import Forecasting
    from rnnseq.tasks.language_model import LanguageModel
    from rnnseq.tasks.speech_to_text import SpeechToText
    from rnnseq.tasks.text_to_text import TextToText

    if "features" in hparams:
        return SpeechToText if "decoding" in hparams else SpeechClassification
    if "horizon" in hparams:
        return Forecasting
    if "source_tokenizer" in hparams:
        return TextToText
    if "tokenizer" in hparams:
        return LanguageModel
    raise ValueError(f"{checkpoint} was not written by an rnnseq task (no known hyper-parameters)")


def legacy_hparams(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters of a checkpoint written by an older rnnseq, brought up to date: the ones
    that changed, to pass to ``load_from_checkpoint``; ``{}`` for a current checkpoint.

    Before checkpoints recorded ``checkpoint["rnnseq"]``, ``dot`` attention was a scaled dot
    product (with a hidden projection when sizes differed): such checkpoints load as
    ``scaled_dot``, or fail with a message when they had the projection
    (:func:`rnnseq.models.attention.legacy_attention_config`). Speech models from then
    recorded no transcript normaliser: their references are scored as written (``none``).
    """
    from rnnseq.models.attention import legacy_attention_config

    if "rnnseq" in checkpoint:
        return {}
    hparams = checkpoint.get("hyper_parameters", {})
    upgraded: dict[str, Any] = {}
    if "features" in hparams and "normalizer" not in hparams:
        upgraded["normalizer"] = "none"  # references were scored as written before normalisers
    model = hparams.get("model")
    if isinstance(model, dict) and isinstance(model.get("attention"), dict):
        attention = legacy_attention_config(model["attention"], checkpoint.get("state_dict", {}),
                                            "model.decoder.attention.")
        if attention != model["attention"]:
            upgraded["model"] = {**model, "attention": attention}
    return upgraded


def run_folder_of(path: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint inside its ``checkpoints/``."""
    path = Path(path)
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path


def load_task_or_report(task_class: type[TaskT], run: str | Path,
                        device: str = "auto") -> TaskT | None:
    """:func:`load_task` for command-line tools: a missing run or checkpoint is printed as one
    ``error:`` line on stderr (no traceback) and gives ``None``."""
    try:
        return load_task(task_class, run, device)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
