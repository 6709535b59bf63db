"""Checkpoint files: written atomically, found in run folders, loaded without running code."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from rnnseq.formats import CHECKPOINT_FORMAT, upgrade_advice

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


def require_current_format(contents: dict[str, Any], path: str | Path) -> None:
    """Raises a ``ValueError`` naming the upgrade command when ``contents`` (of the checkpoint
    at ``path``) were written in another format than :data:`CHECKPOINT_FORMAT`."""
    found = contents.get("rnnseq", {}).get("format", 1) if isinstance(contents, dict) else None
    if found == CHECKPOINT_FORMAT:
        return
    if isinstance(found, int) and found > CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {found}, newer than this rnnseq reads "
                         f"({CHECKPOINT_FORMAT}); upgrade rnnseq")
    raise ValueError(f"{path} was written by an older rnnseq (checkpoint format {found}; this one "
                     f"reads {CHECKPOINT_FORMAT}): {upgrade_advice(path)} (or the run folder, for "
                     f"all of its checkpoints)")


def load_checkpoint(path: str | Path, current: bool = True) -> dict[str, Any]:
    """A checkpoint's contents, read with ``weights_only=True``: tensors, numbers, strings and
    containers only, so a tampered file cannot run code. rnnseq writes nothing else into its
    checkpoints (configs are plain dicts, tokenizers their symbol lists, random states tensors).
    With ``current``, a checkpoint of another format is a ``ValueError`` naming the upgrade
    command (:func:`require_current_format`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        try:  # mapped, not read: a caller that wants the metadata does not read every weight
            contents = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            contents = torch.load(path, map_location="cpu", weights_only=True)  # an old layout
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds objects other than tensors and plain data, so it was not "
                         f"written by rnnseq or has been altered; rnnseq does not load it "
                         f"({str(err).splitlines()[0]})") from None
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt?): {err}") from None
    if current:
        require_current_format(contents, path)
    return contents


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


def run_folder_of(path: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint inside its ``checkpoints/``."""
    path = Path(path)
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path
