"""Sequence classification: a recurrent encoder, pooled over time, and a linear layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.recurrent import require_positive

POOLINGS = ("mean", "max", "mean+max")


class SequenceClassifier(nn.Module):
    """``(B, S, F)`` features with ``(B,)`` lengths -> ``(B, C)`` class logits.

    The encoder's output is pooled over its real (unpadded) frames: ``mean``, ``max`` or both
    concatenated (``mean+max``: the mean keeps evidence spread over the word, the max a short
    decisive moment), then passes dropout and a linear layer.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "mean+max",
                 dropout: float = 0.1):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown model.pooling {pooling!r}; allowed: {list(POOLINGS)}")
        require_positive("classifier", num_classes=num_classes)
        self.encoder = encoder
        self.pooling = pooling
        pooled = encoder.output_dim * (2 if pooling == "mean+max" else 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(pooled, num_classes)

    def pool(self, memory: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, S', D)`` memory -> ``(B, D)`` or ``(B, 2D)`` summary of the real frames."""
        mask = make_pad_mask(lengths, memory.shape[1]).unsqueeze(-1)  # (B, S', 1)
        parts = []
        if self.pooling in ("mean", "mean+max"):
            parts.append((memory * mask).sum(1) / lengths.clamp_min(1).unsqueeze(-1).to(memory.dtype))
        if self.pooling in ("max", "mean+max"):
            parts.append(memory.masked_fill(~mask, float("-inf")).amax(1))
        return torch.cat(parts, dim=-1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        memory, memory_lengths = self.encoder(features, lengths)
        return self.head(self.dropout(self.pool(memory, memory_lengths)))


def build_classifier(model: Mapping[str, Any], input_dim: int, num_classes: int) -> SequenceClassifier:
    """Builds a :class:`SequenceClassifier` from the ``model`` config group: ``model.encoder``
    (a Hydra ``_partial_``), ``model.pooling`` and ``model.dropout``; the input size and the
    number of classes come from the data."""
    encoder = instantiate(model["encoder"])(input_dim=input_dim)
    return SequenceClassifier(encoder, num_classes, pooling=model.get("pooling", "mean+max"),
                              dropout=model.get("dropout", 0.1))
