"""Finding and loading the checkpoint of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import lightning as L
import torch

TaskT = TypeVar("TaskT", bound=L.LightningModule)


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file, else the newest ``best*.ckpt`` (or ``last.ckpt``) of a run
    folder's ``checkpoints/``."""
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not folder.is_dir():
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a run folder")
    best = sorted(folder.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise FileNotFoundError(f"no best*.ckpt or last.ckpt under {folder}")


def load_task(task_class: type[TaskT], run: str | Path, device: str = "cpu") -> TaskT:
    """The task of a run folder's best checkpoint (or of a checkpoint file), in eval mode."""
    task = task_class.load_from_checkpoint(find_checkpoint(run), map_location=torch.device(device),
                                           weights_only=False)
    return task.eval()
