"""Metric names (defined once, referenced by configs through ``${metric:NAME}``) and scoring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import torch
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
)

TRAIN_LOSS = "train/loss"
TRAIN_ATTENTION_LOSS = "train/att_loss"
TRAIN_CTC_LOSS = "train/ctc_loss"
TRAIN_GUIDED_ATTENTION_LOSS = "train/guided_attention_loss"
GRAD_NORM = "train/grad_norm"
LEARNING_RATE = "train/lr"
SKIPPED_STEPS = "train/skipped_steps"  # steps with a non-finite loss or gradient (safeguards)
VAL_LOSS = "val/loss"
VAL_WER = "val/wer"
VAL_CER = "val/cer"
TEST_WER = "test/wer"
TEST_CER = "test/cer"
# language models: mean negative log-likelihood per token (nats), its exp, and bits per character
VAL_PPL = "val/ppl"
VAL_BPC = "val/bpc"
TEST_LOSS = "test/loss"
TEST_PPL = "test/ppl"
TEST_BPC = "test/bpc"
# text-to-text (g2p): phoneme error rate over symbols, word error rate as whole-word exact match
VAL_PER = "val/per"
TEST_PER = "test/per"
# classification (spoken commands): share of correct labels, F1 averaged over classes
VAL_ACCURACY = "val/accuracy"
VAL_F1 = "val/macro_f1"
TEST_ACCURACY = "test/accuracy"
TEST_F1 = "test/macro_f1"
# forecasting: errors in the series' own units, and their ratio to the seasonal-naive forecast's
# (below 1: better than repeating the last season)
VAL_MAE = "val/mae"
VAL_RMSE = "val/rmse"
VAL_MAE_RATIO = "val/mae_vs_naive"
VAL_RMSE_RATIO = "val/rmse_vs_naive"
TEST_MAE = "test/mae"
TEST_RMSE = "test/rmse"
TEST_MAE_RATIO = "test/mae_vs_naive"
TEST_RMSE_RATIO = "test/rmse_vs_naive"

NAMES = {k: v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str)}


def split_metric(split: str, name: str) -> str:
    """The name of metric ``name`` (``wer``, ``cer``) on an evaluation split: ``test/wer`` and
    ``val/wer`` are the constants above; extra test splits follow the same pattern
    (``test_voices/wer``)."""
    return f"{split}/{name}"


def metric_name(key: str) -> str:
    """Resolver behind ``${metric:VAL_WER}`` in configs: the name of a metric constant."""
    try:
        return NAMES[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r}; known: {sorted(NAMES)}") from None


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level error rates: total edits over total reference words/characters."""

    wer: float
    cer: float
    words: int
    chars: int
    utterances: int


def error_rates(references: list[str], hypotheses: list[str]) -> ErrorRates:
    """WER and CER over a whole split (not an average of per-utterance or per-batch rates).

    An empty hypothesis counts every reference word as deleted.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        return ErrorRates(float("nan"), float("nan"), 0, 0, 0)
    words = jiwer.process_words(references, hypotheses)
    chars = jiwer.process_characters(references, hypotheses)
    n_words = words.hits + words.substitutions + words.deletions
    n_chars = chars.hits + chars.substitutions + chars.deletions
    return ErrorRates(
        wer=(words.substitutions + words.deletions + words.insertions) / max(n_words, 1),
        cer=(chars.substitutions + chars.deletions + chars.insertions) / max(n_chars, 1),
        words=n_words,
        chars=n_chars,
        utterances=len(references),
    )


@dataclass(frozen=True)
class ClassScores:
    """Scores of a classifier over a whole split."""

    accuracy: float
    macro_f1: float  # F1 of each class, averaged over the classes that occur (in truth or output)
    confusion: torch.Tensor  # (C, C) counts: row = true class, column = predicted class


def classification_scores(references: Sequence[int], predictions: Sequence[int],
                          num_classes: int) -> ClassScores:
    """Accuracy, macro F1 and the confusion matrix of class ids (torchmetrics)."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        return ClassScores(float("nan"), float("nan"), torch.zeros(num_classes, num_classes))
    target, preds = torch.tensor(list(references)), torch.tensor(list(predictions))
    f1 = multiclass_f1_score(preds, target, num_classes, average="macro")
    confusion = multiclass_confusion_matrix(preds, target, num_classes)
    return ClassScores(float((preds == target).float().mean()), float(f1), confusion)


@dataclass(frozen=True)
class ForecastScores:
    """Errors of multi-step forecasts over a whole split, every origin and horizon step weighted
    equally, next to the same errors of the seasonal-naive baseline."""

    mae: float
    rmse: float
    naive_mae: float
    naive_rmse: float
    forecasts: int  # origins scored

    @property
    def mae_ratio(self) -> float:
        """MAE over the seasonal-naive forecast's MAE (below 1: better than naive)."""
        return self.mae / self.naive_mae if self.naive_mae > 0 else float("nan")

    @property
    def rmse_ratio(self) -> float:
        """RMSE over the seasonal-naive forecast's RMSE."""
        return self.rmse / self.naive_rmse if self.naive_rmse > 0 else float("nan")


def forecast_scores(predictions: torch.Tensor, truth: torch.Tensor,
                    naive: torch.Tensor) -> ForecastScores:
    """MAE and RMSE of ``(N, H)`` predictions and of the ``(N, H)`` naive forecasts against the
    ``(N, H)`` truth, all in the series' own units."""
    if not predictions.shape == truth.shape == naive.shape:
        raise ValueError(f"shapes differ: predictions {tuple(predictions.shape)}, truth "
                         f"{tuple(truth.shape)}, naive {tuple(naive.shape)}")
    if predictions.numel() == 0:
        return ForecastScores(*(float("nan"),) * 4, 0)
    p, t, n = (x.double() for x in (predictions, truth, naive))
    return ForecastScores(
        mae=float((p - t).abs().mean()), rmse=float((p - t).pow(2).mean().sqrt()),
        naive_mae=float((n - t).abs().mean()), naive_rmse=float((n - t).pow(2).mean().sqrt()),
        forecasts=int(predictions.shape[0]),
    )
