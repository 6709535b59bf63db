"""Attention over encoder memory, all with one call signature.

``attention(query, memory, memory_mask, state) -> (context, weights, state)`` with query ``(B, Q)``,
memory ``(B, S, D)``, memory_mask ``(B, S)`` (True on real frames), context ``(B, D)`` and weights
``(B, S)`` that sum to one and are zero on padding. :meth:`Attention.init_state` computes the key
projections once per utterance; every decoder step reuses them.

Each class takes ``(query_dim, memory_dim, ...)``; configs give the rest as a ``_partial_`` and
the decoder completes it with the sizes it knows.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class AttentionState(NamedTuple):
    """What an attention carries between decoder steps. Batch is dim 0 of every tensor."""

    keys: torch.Tensor  # (B, S, A) projected memory, computed once per utterance
    weights: torch.Tensor  # (B, S) weights of the previous step (location-aware attention)


def masked_softmax(energies: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim of ``(..., S)`` energies with zero weight where ``mask`` is False."""
    return torch.softmax(energies.masked_fill(~mask, float("-inf")), dim=-1)


class Attention(nn.Module):
    """Base class: subclasses define :meth:`keys` and :meth:`energies`.

    ``parallel`` attentions score every query independently of earlier steps, so teacher forcing
    can score all target steps at once with :meth:`forward_all`.
    """

    parallel = True

    def __init__(self, query_dim: int, memory_dim: int):
        super().__init__()
        self.query_dim = query_dim
        self.memory_dim = memory_dim

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """``(B, S, D) -> (B, S, A)``."""
        return memory

    def energies(self, query: torch.Tensor, state: AttentionState) -> torch.Tensor:
        """``(B, Q)`` or ``(B, T, Q)`` queries -> ``(B, S)`` or ``(B, T, S)`` energies."""
        raise NotImplementedError

    def init_state(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> AttentionState:
        """The state before the first decoder step: keys of the ``(B, S, D)`` memory, uniform
        weights."""
        uniform = memory_mask.float() / memory_mask.sum(-1, keepdim=True)
        return AttentionState(keys=self.keys(memory), weights=uniform)

    def forward(self, query, memory, memory_mask, state):
        """One decoder step: ``(B, Q)`` query -> ``(B, D)`` context, ``(B, S)`` weights, next
        state."""
        weights = masked_softmax(self.energies(query, state), memory_mask)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, D)
        return context, weights, state._replace(weights=weights)

    def forward_all(self, queries, memory, memory_mask, state):
        """All target steps at once: ``(B, T, Q) -> ((B, T, D) contexts, (B, T, S) weights)``."""
        if not self.parallel:
            contexts, weights = [], []
            for t in range(queries.shape[1]):
                context, w, state = self(queries[:, t], memory, memory_mask, state)
                contexts.append(context)
                weights.append(w)
            return torch.stack(contexts, 1), torch.stack(weights, 1)
        weights = masked_softmax(self.energies(queries, state), memory_mask.unsqueeze(1))
        return torch.bmm(weights, memory), weights  # (B, T, D), (B, T, S)


class NoAttention(Attention):
    """No attention: every step sees the mean of the memory (a fixed context vector)."""

    def energies(self, query, state):
        shape = (*query.shape[:-1], state.keys.shape[1])
        return query.new_zeros(shape)


class DotAttention(Attention):
    """Scaled dot product ``q . k / sqrt(Q)`` (Luong et al., 2015). The memory is the key when
    its size equals the query's; otherwise a linear map brings it to the query size."""

    def __init__(self, query_dim: int, memory_dim: int):
        super().__init__(query_dim, memory_dim)
        self.proj = nn.Linear(memory_dim, query_dim, bias=False) if memory_dim != query_dim else None
        self.scale = 1.0 / math.sqrt(query_dim)

    def keys(self, memory):
        return memory if self.proj is None else self.proj(memory)

    def energies(self, query, state):
        if query.dim() == 2:
            return torch.bmm(state.keys, query.unsqueeze(-1)).squeeze(-1) * self.scale
        return torch.bmm(query, state.keys.transpose(1, 2)) * self.scale


class GeneralAttention(DotAttention):
    """Bilinear ``q . W m`` (Luong's "general"): always a learnt map of the memory."""

    def __init__(self, query_dim: int, memory_dim: int):
        super().__init__(query_dim, memory_dim)
        self.proj = nn.Linear(memory_dim, query_dim, bias=False)
        self.scale = 1.0


class AdditiveAttention(Attention):
    """``v . tanh(W m + U q)`` (Bahdanau et al., 2015)."""

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int = 256):
        super().__init__(query_dim, memory_dim)
        self.memory_proj = nn.Linear(memory_dim, attention_dim)
        self.query_proj = nn.Linear(query_dim, attention_dim, bias=False)
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def keys(self, memory):
        return self.memory_proj(memory)

    def energies(self, query, state):
        q = self.query_proj(query)
        if q.dim() == 2:
            return self.v(torch.tanh(state.keys + q.unsqueeze(1))).squeeze(-1)  # (B, S)
        # (B, T, 1, A) + (B, 1, S, A) -> (B, T, S)
        return self.v(torch.tanh(state.keys.unsqueeze(1) + q.unsqueeze(2))).squeeze(-1)


class LocationAttention(AdditiveAttention):
    """Location-aware attention (Chorowski et al., 2015): additive energies plus features of the
    previous step's weights, ``v . tanh(W m + U q + V (F * a_prev))``. It helps speech alignments
    move forward monotonically. Sequential by nature: each step needs the last weights."""

    parallel = False

    def __init__(
        self,
        query_dim: int,
        memory_dim: int,
        attention_dim: int = 256,
        conv_channels: int = 10,
        conv_kernel: int = 31,
    ):
        super().__init__(query_dim, memory_dim, attention_dim)
        if conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {conv_kernel}")
        self.conv = nn.Conv1d(1, conv_channels, conv_kernel, padding=conv_kernel // 2, bias=False)
        self.location_proj = nn.Linear(conv_channels, attention_dim, bias=False)

    def location_features(self, weights: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` previous weights -> ``(B, S, A)``: ``location_proj(conv(weights))``.

        The convolution and the projection are both linear, so they are applied as one matrix
        ``(A, K)`` to each window of K weights: one matrix product instead of a convolution and a
        product, and 40 % less time for both directions of a decoder step
        (``bench/attention_decoding.py``). The parameters stay those of the two layers.
        """
        kernel = self.conv.weight.shape[-1]
        combined = self.location_proj.weight @ self.conv.weight.squeeze(1)  # (A, K)
        windows = F.pad(weights, (kernel // 2, kernel // 2)).unfold(1, kernel, 1)  # (B, S, K)
        return windows @ combined.t()

    def energies(self, query, state):
        q = self.query_proj(query).unsqueeze(1)  # (B, 1, A)
        location = self.location_features(state.weights)  # (B, S, A)
        return self.v(torch.tanh(state.keys + q + location)).squeeze(-1)
