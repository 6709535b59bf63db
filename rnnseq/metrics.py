"""Metric names (defined once, referenced by configs through ``${metric:NAME}``) and scoring."""

from __future__ import annotations

import math
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

# text-to-speech: L1 + L2 of the decoder's and the postnet's mel, stop-token cross-entropy; free
# running on test splits: mel-cepstral distortion (dB), share of utterances the stop token ended,
# median synthesised/recorded length, mean largest attention weight per step
TRAIN_MEL_LOSS = "train/mel_loss"
TRAIN_POSTNET_LOSS = "train/postnet_loss"
TRAIN_STOP_LOSS = "train/stop_loss"
VAL_MEL_LOSS = "val/mel_loss"
VAL_POSTNET_LOSS = "val/postnet_loss"
VAL_STOP_LOSS = "val/stop_loss"
TEST_MCD = "test/mcd"
TEST_STOPPED = "test/stopped"
TEST_LENGTH_RATIO = "test/length_ratio"
TEST_FOCUS_RATE = "test/focus_rate"

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
        return ClassScores(float("nan"), float("nan"),
                           torch.zeros(num_classes, num_classes))  # host: scores of Python lists
    target, preds = torch.tensor(list(references)), torch.tensor(list(predictions))  # host: same
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


# Mel-cepstral distortion: 10 / ln(10) converts natural-log differences to decibels, sqrt(2)
# counts each cepstral coefficient twice (it stands for the symmetric coefficient of negative
# quefrency), as in Kubichek (1993).
MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)


def mel_cepstra(log_mel: torch.Tensor, order: int = 13) -> torch.Tensor:
    """``(S, F)`` natural-log mel power frames -> ``(S, order)`` cepstra c1..c_order.

    The cepstra are the orthonormal DCT-II of the log mel *amplitude* (half the log power), the
    mel-frequency analogue of the cepstrum that MCD is defined on. c0 (the frame's overall level)
    is left out, so a constant gain does not count as distortion.
    """
    if log_mel.dim() != 2 or log_mel.shape[1] <= order:
        raise ValueError(f"need (frames, mel bins) with more than {order} bins, "
                         f"got shape {tuple(log_mel.shape)}")
    bins = log_mel.shape[1]
    n = torch.arange(bins, dtype=torch.float64, device=log_mel.device).unsqueeze(1)  # (F, 1)
    k = torch.arange(1, order + 1, dtype=torch.float64, device=log_mel.device)  # (order,)
    dct = math.sqrt(2.0 / bins) * torch.cos(math.pi * k * (n + 0.5) / bins)  # (F, order)
    return (0.5 * log_mel.double()) @ dct


def dtw_path_mean(cost: torch.Tensor) -> float:
    """Mean cost along the cheapest monotonic path through an ``(N, M)`` cost matrix, from
    (0, 0) to (N-1, M-1) in steps of (1, 0), (0, 1) and (1, 1): total cost over path length.

    Filled one anti-diagonal at a time, so every cell's three predecessors are already known.
    Equally cheap predecessors are taken in the order diagonal, vertical, horizontal.
    """
    n, m = cost.shape
    total = torch.full((n + 1, m + 1), math.inf, dtype=torch.float64, device=cost.device)
    steps = torch.zeros((n + 1, m + 1), dtype=torch.float64, device=cost.device)
    total[0, 0] = 0.0
    cost = cost.double()
    for diagonal in range(2, n + m + 1):  # cells (i, j), 1-based, with i + j == diagonal
        i = torch.arange(max(1, diagonal - m), min(n, diagonal - 1) + 1, device=cost.device)
        j = diagonal - i
        candidates = torch.stack([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]])
        lengths = torch.stack([steps[i - 1, j - 1], steps[i - 1, j], steps[i, j - 1]])
        best = candidates.min(0).values
        choice = (candidates == best).double().argmax(0)
        total[i, j] = best + cost[i - 1, j - 1]
        steps[i, j] = lengths.gather(0, choice.unsqueeze(0)).squeeze(0) + 1
    return float(total[n, m] / steps[n, m])


def mel_cepstral_distortion(reference: torch.Tensor, synthesized: torch.Tensor,
                            order: int = 13) -> float:
    """MCD in dB between two ``(S, F)`` natural-log mel power sequences, aligned by DTW.

    Per frame pair: ``MCD_CONSTANT * ||c(x) - c(y)||`` over cepstra c1..c_order
    (:func:`mel_cepstra`); the result is its mean along the cheapest DTW path
    (:func:`dtw_path_mean`), so the two sequences may differ in length and timing.
    MCD(x, x) = 0.
    """
    x, y = mel_cepstra(reference, order), mel_cepstra(synthesized, order)
    cost = MCD_CONSTANT * (x.unsqueeze(1) - y.unsqueeze(0)).norm(dim=-1)  # (N, M)
    return dtw_path_mean(cost)
