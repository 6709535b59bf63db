"""Finding and loading the checkpoint of a run folder."""

from __future__ import annotations

import sys
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


def task_class_for(checkpoint: str | Path) -> type[L.LightningModule]:
    """The rnnseq task that wrote ``checkpoint``, told by its saved hyper-parameters."""
    from rnnseq.tasks.language_model import LanguageModel
    from rnnseq.tasks.speech_to_text import SpeechToText
    from rnnseq.tasks.text_to_text import TextToText

    hparams = torch.load(checkpoint, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    if "features" in hparams:
        return SpeechToText
    if "source_tokenizer" in hparams:
        return TextToText
    if "tokenizer" in hparams:
        return LanguageModel
    raise ValueError(f"{checkpoint} was not written by an rnnseq task (no known hyper-parameters)")


def run_folder_of(path: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint inside its ``checkpoints/``."""
    path = Path(path)
    if path.is_file():
        return path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path


def load_task_or_report(task_class: type[TaskT], run: str | Path, device: str = "cpu") -> TaskT | None:
    """:func:`load_task` for command-line tools: a missing run or checkpoint is printed as one
    ``error:`` line on stderr (no traceback) and gives ``None``."""
    try:
        return load_task(task_class, run, device)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
