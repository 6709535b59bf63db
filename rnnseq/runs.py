"""What a run holds, read from its checkpoint: the task class that wrote it and the tokenizer its
targets were written with. Above the tasks (it knows every one), below the entry points.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning as L

from rnnseq.checkpoints import find_checkpoint, load_checkpoint
from rnnseq.data.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_state
from rnnseq.tasks.base import Task
from rnnseq.tasks.classification import SpeechClassification
from rnnseq.tasks.forecasting import Forecasting
from rnnseq.tasks.language_model import LanguageModel
from rnnseq.tasks.speech_to_text import SpeechToText
from rnnseq.tasks.text_to_text import TextToText


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
        if not (isinstance(task_class, type) and issubclass(task_class, Task)):
            raise ValueError(f"{checkpoint} names {recorded} as its task, which is not an rnnseq "
                             f"task class; rnnseq does not load it")
        return task_class
    return _guess_task_class(contents.get("hyper_parameters", {}), checkpoint)


def _guess_task_class(hparams: dict, checkpoint) -> type[L.LightningModule]:
    if "features" in hparams:
        return SpeechToText if "decoding" in hparams else SpeechClassification
    if "horizon" in hparams:
        return Forecasting
    if "source_tokenizer" in hparams:
        return TextToText
    if "tokenizer" in hparams:
        return LanguageModel
    raise ValueError(f"{checkpoint} was not written by an rnnseq task (no known hyper-parameters)")


def tokenizer_of_run(run: str | Path) -> Tokenizer:
    """The target tokenizer of a run folder or checkpoint: its saved tokenizer, or its symbol
    table (``vocabulary``) as characters."""
    checkpoint = find_checkpoint(run)
    hparams = load_checkpoint(checkpoint).get("hyper_parameters", {})
    if hparams.get("tokenizer"):
        return tokenizer_from_state(hparams["tokenizer"])
    if hparams.get("vocabulary"):
        return CharTokenizer(hparams["vocabulary"])
    raise ValueError(f"data.tokenizer.from_run={run}: {checkpoint} holds no tokenizer or "
                     f"vocabulary; give a speech-to-text or text-to-text run")
