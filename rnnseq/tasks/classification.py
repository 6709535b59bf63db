"""Spoken-command classification as a LightningModule: one label per utterance, cross-entropy
training, accuracy and macro F1 over whole splits, a confusion matrix for TensorBoard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnseq import metrics as M
from rnnseq.data.batching import Batch
from rnnseq.data.tokenizer import LabelTokenizer
from rnnseq.models.classifier import build_classifier
from rnnseq.tasks.base import Task, gather_rows, to_plain
from rnnseq.tasks.speech_input import SpeechInput


class SpeechClassification(SpeechInput, Task):
    """Classifies each utterance into one of the training labels (``data.targets: label``).

    Like :class:`~rnnseq.tasks.speech_to_text.SpeechToText`, the checkpoint holds everything
    needed to classify new audio: the model config, the labels and the feature settings.

    Args:
        model: the ``model`` config group: ``encoder`` (a ``_partial_``), ``pooling``, ``dropout``.
        vocabulary: the label tokenizer's symbols (from the datamodule).
        features: the feature settings (from the datamodule).
        optimizer, scheduler: as for every task.
        label_smoothing: of the cross-entropy.
        spec_augment: :class:`~rnnseq.data.audio.SpecAugment` arguments, or ``None``.
        normalizer: the transcript normaliser of the training data (:mod:`rnnseq.data.normalize`),
            applied by ``rnnseq.evaluate`` to the references it scores.
    """

    # The loss: accuracy on a small validation split saturates (1.0) long before the model stops
    # improving.
    MONITOR = M.VAL_LOSS
    VALIDATION_LOGGED = (M.VAL_LOSS, M.VAL_ACCURACY, M.VAL_F1)
    PROGRESS_BAR_METRICS = (M.VAL_ACCURACY, M.VAL_F1)

    def __init__(
        self,
        model: Mapping[str, Any],
        vocabulary: list[str],
        features: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
        spec_augment: Mapping[str, Any] | None = None,
        normalizer: str = "letters",
    ):
        super().__init__()
        self.save_hyperparameters({
            "model": to_plain(model), "vocabulary": list(vocabulary), "features": to_plain(features),
            "optimizer": to_plain(optimizer), "scheduler": to_plain(scheduler),
            "label_smoothing": label_smoothing, "spec_augment": to_plain(spec_augment),
            "normalizer": normalizer,
        })
        self.tokenizer = LabelTokenizer(vocabulary)
        input_dim = int(self.hparams.features["n_mels"])
        self.model = build_classifier(self.hparams.model, input_dim, len(self.tokenizer))
        self.init_speech_input(input_dim, spec_augment)
        # per batch: (ids, true classes, predicted classes), device tensors until the end
        self._rows: list[tuple[list[str], torch.Tensor, torch.Tensor]] = []
        self.last_scores: dict[str, M.ClassScores] = {}
        self.test_results: list[dict] = []

    def forward(self, batch: Batch) -> torch.Tensor:
        """``(B, C)`` class logits of a batch."""
        return self.model(self.prepare_features(batch), batch.feature_lengths)

    def classify(self, batch: Batch) -> list[str]:
        """The predicted label of every utterance of a batch."""
        return [self.tokenizer.symbols[i] for i in self(batch).argmax(-1).tolist()]

    def _loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch.targets[:, 0],
                               label_smoothing=self.hparams.label_smoothing)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        loss = self._loss(self(batch), batch)
        self.log(M.TRAIN_LOSS, loss, batch_size=len(batch.ids))  # shown by callbacks.ProgressBar
        return loss

    # -- evaluation -----------------------------------------------------------------------------
    def evaluation_step(self, batch: Batch, split: str) -> None:
        logits = self(batch)
        if split == "val":
            b = len(batch.ids)
            self.accumulate(loss=self._loss(logits, batch) * b, items=b)
        # kept on the device until the split ends: one host read per pass, not per batch
        self._rows.append((batch.ids, batch.targets[:, 0], logits.argmax(-1)))

    def end_evaluation(self, split: str) -> M.ClassScores:
        if split == "val":
            self.log(M.VAL_LOSS, self.mean_loss(), prog_bar=True)
        own = [row for ids, targets, predicted in self._rows
               for row in zip(ids, targets.tolist(), predicted.tolist())]
        rows = gather_rows(own)  # every rank scores the whole split
        scores = M.classification_scores([r[1] for r in rows], [r[2] for r in rows],
                                         len(self.tokenizer))
        self.last_scores[split] = scores
        prefix = split.upper()
        for key, value in ((f"{prefix}_ACCURACY", scores.accuracy), (f"{prefix}_F1", scores.macro_f1)):
            name = M.metric_name(key)
            self.log(name, value, prog_bar=name in self.PROGRESS_BAR_METRICS)
        if split == "test":
            symbols = self.tokenizer.symbols
            self.test_results = [{"id": i, "reference": symbols[t], "hypothesis": symbols[p]}
                                 for i, t, p in rows]
        return scores

    def start_evaluation(self, split: str) -> None:
        self._rows = []
