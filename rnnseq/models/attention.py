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
    cumulative: torch.Tensor | None = None  # (B, S) sum of all earlier steps' weights, if kept


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
        if state.cumulative is None:
            return context, weights, state._replace(weights=weights)
        return context, weights, state._replace(weights=weights,
                                                cumulative=state.cumulative + weights)

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


def _dot(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``(B, Q)`` or ``(B, T, Q)`` queries against ``(B, S, Q)`` keys -> ``(B, S)`` or
    ``(B, T, S)`` dot products."""
    if query.dim() == 2:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)
    return torch.bmm(query, keys.transpose(1, 2))


class DotAttention(Attention):
    """Luong's "dot" (Luong et al., 2015): energy ``q . m_s``, the memory itself is the key.

    Nothing is learnt and nothing is scaled, so the memory size D must equal the query size Q
    (the decoder's hidden size); other sizes raise a ``ValueError`` rather than adding a hidden
    projection (that would be ``general``).
    """

    option = "dot"  # the name of its config in rnnseq/conf/model/attention, for error messages

    def __init__(self, query_dim: int, memory_dim: int):
        super().__init__(query_dim, memory_dim)
        if memory_dim != query_dim:
            raise ValueError(
                f"model/attention={self.option} scores the memory directly, so the memory size "
                f"must equal the query size, got memory_dim={memory_dim} (encoder output) and "
                f"query_dim={query_dim} (decoder hidden size); set "
                f"model.decoder.hidden_size={memory_dim} (model.decoder.cell.proj_size with an "
                f"lstmp cell), or use model/attention=general, "
                f"additive or location, which learn a map between the two sizes")

    def energies(self, query, state):
        return _dot(query, state.keys)


class ScaledDotAttention(DotAttention):
    """Scaled dot product (Vaswani et al., 2017): energy ``q . m_s / sqrt(D)``, which keeps the
    softmax out of saturation for large sizes. Same size rule as :class:`DotAttention`."""

    option = "scaled_dot"

    def __init__(self, query_dim: int, memory_dim: int):
        super().__init__(query_dim, memory_dim)
        self.scale = 1.0 / math.sqrt(query_dim)

    def energies(self, query, state):
        return _dot(query, state.keys) * self.scale


class GeneralAttention(Attention):
    """Bilinear ``q . W m_s`` (Luong's "general"), unscaled: a learnt ``(Q, D)`` map ``W``
    (``proj``) brings the memory to the query size, so any two sizes work."""

    def __init__(self, query_dim: int, memory_dim: int):
        super().__init__(query_dim, memory_dim)
        self.proj = nn.Linear(memory_dim, query_dim, bias=False)

    def keys(self, memory):
        return self.proj(memory)  # (B, S, Q)

    def energies(self, query, state):
        return _dot(query, state.keys)


def in_float32(tensor: torch.Tensor):
    """A context in which autocast is off on ``tensor``'s device: for the additive energies, whose
    elementwise sums and tanh over ``(B, S, A)`` are cheap in float32 and several times slower in
    bfloat16 on a CPU (tanh 0.14 against 0.66 ms for 32 x 75 x 256 values)."""
    return torch.autocast(tensor.device.type, enabled=False)


class _AdditiveEnergies(torch.autograd.Function):
    """``v . tanh(keys_s + query_t)`` for every decoder step ``t`` and memory frame ``s``:
    ``keys (B, S, A)``, ``queries (B, T, A)``, ``v (A,)`` -> ``(B, T, S)``.

    Autograd would keep the ``(B, T, S, A)`` tanh from the forward pass to the backward one and
    then build two gradients of that size: on the longest training batches of the speech recipe
    these were the largest tensors of the step (hundreds of MB each). Here the forward and backward
    passes walk the decoder steps in chunks of about ``CHUNK_ELEMENTS`` values, save only the
    inputs and recompute each chunk's tanh in backward, so no tensor of that size outlives a
    chunk."""

    CHUNK_ELEMENTS = 1 << 22  # 16 MB per float32 chunk tensor

    @staticmethod
    def chunks(keys: torch.Tensor, steps: int):
        batch, frames, dim = keys.shape
        size = max(1, _AdditiveEnergies.CHUNK_ELEMENTS // max(1, batch * frames * dim))
        return [slice(start, start + size) for start in range(0, steps, size)]

    @staticmethod
    def forward(ctx, keys, queries, v):
        energies = keys.new_empty(keys.shape[0], queries.shape[1], keys.shape[1])
        for part in _AdditiveEnergies.chunks(keys, queries.shape[1]):
            hidden = (keys.unsqueeze(1) + queries[:, part].unsqueeze(2)).tanh_()  # (B, t, S, A)
            energies[:, part] = hidden @ v
        ctx.save_for_backward(keys, queries, v)
        return energies

    @staticmethod
    def backward(ctx, grad_energies):
        keys, queries, v = ctx.saved_tensors
        grad_keys, grad_queries = torch.zeros_like(keys), torch.empty_like(queries)
        grad_v = torch.zeros_like(v)
        for part in _AdditiveEnergies.chunks(keys, queries.shape[1]):
            hidden = (keys.unsqueeze(1) + queries[:, part].unsqueeze(2)).tanh_()  # (B, t, S, A)
            grad = grad_energies[:, part].unsqueeze(-1)  # (B, t, S, 1)
            grad_v += (grad * hidden).flatten(0, 2).sum(0)
            # d tanh(x) / dx = 1 - tanh(x)^2, computed in the chunk's own storage
            grad_sum = hidden.square_().neg_().add_(1).mul_(v).mul_(grad)  # (B, t, S, A)
            grad_queries[:, part] = grad_sum.sum(2)
            grad_keys += grad_sum.sum(1)
        return grad_keys, grad_queries, grad_v


class AdditiveAttention(Attention):
    """``v . tanh(W m + U q)`` (Bahdanau et al., 2015). Keys and energies are computed in float32
    under mixed precision (:func:`in_float32`)."""

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int = 256):
        super().__init__(query_dim, memory_dim)
        self.memory_proj = nn.Linear(memory_dim, attention_dim)
        self.query_proj = nn.Linear(query_dim, attention_dim, bias=False)
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def keys(self, memory):
        return self.memory_proj(memory).float()  # once per utterance, read at every step

    def energies(self, query, state):
        with in_float32(query):
            return self._energies(query.float(), state)

    def _energies(self, query, state):
        q = self.query_proj(query)
        # tanh in place on the fresh sum: the (B, S, A) energies are the largest tensors of a
        # decoder step, and a second one costs an allocation and a pass over memory
        if q.dim() == 2:
            return self.v((state.keys + q.unsqueeze(1)).tanh_()).squeeze(-1)  # (B, S)
        return _AdditiveEnergies.apply(state.keys, q, self.v.weight[0])  # (B, T, S)


class LocationAttention(AdditiveAttention):
    """Location-aware attention (Chorowski et al., 2015): additive energies plus features of the
    previous step's weights, ``v . tanh(W m + U q + V (F * a_prev))``. It helps speech alignments
    move forward monotonically. Sequential by nature: each step needs the last weights.

    With ``cumulative=True`` the convolution also reads the sum of all earlier weights (a second
    input channel), as Tacotron 2 does (Shen et al., 2018): the attention then knows which inputs
    it has already covered, which keeps long syntheses from repeating or skipping. The state
    carries that sum, starting from zero.
    """

    parallel = False

    def __init__(
        self,
        query_dim: int,
        memory_dim: int,
        attention_dim: int = 256,
        conv_channels: int = 10,
        conv_kernel: int = 31,
        cumulative: bool = False,
    ):
        super().__init__(query_dim, memory_dim, attention_dim)
        if conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {conv_kernel}")
        self.cumulative = cumulative
        self.conv = nn.Conv1d(2 if cumulative else 1, conv_channels, conv_kernel,
                              padding=conv_kernel // 2, bias=False)
        self.location_proj = nn.Linear(conv_channels, attention_dim, bias=False)

    def init_state(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> AttentionState:
        state = super().init_state(memory, memory_mask)
        if not self.cumulative:
            return state
        return state._replace(cumulative=torch.zeros_like(state.weights))

    def location_features(self, weights: torch.Tensor,
                          cumulative: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, S)`` previous weights (and their ``(B, S)`` cumulative sum, when the attention
        keeps it) -> ``(B, S, A)``: ``location_proj(conv(weights))``.

        The convolution and the projection are both linear, so they are applied as one matrix
        ``(A, channels * K)`` to each window of K weights per channel: one matrix product instead
        of a convolution and a product, which ``bench/attention_decoding.py`` times on the machine
        at hand. The parameters stay those of the two layers.
        """
        out_channels, channels, kernel = self.conv.weight.shape
        combined = self.location_proj.weight @ self.conv.weight.reshape(
            out_channels, channels * kernel)  # (A, channels * K), channel-major
        inputs = [weights] if cumulative is None else [weights, cumulative]
        windows = torch.cat([F.pad(w, (kernel // 2, kernel // 2)).unfold(1, kernel, 1)
                             for w in inputs], dim=-1)  # (B, S, channels * K), channel-major
        return windows @ combined.t()

    def _energies(self, query, state):
        q = self.query_proj(query).unsqueeze(1)  # (B, 1, A)
        location = self.location_features(state.weights, state.cumulative)  # (B, S, A), fresh
        # summed and squashed in place: no further (B, S, A) tensor is allocated at every step,
        # which beam search, with its many rows, feels most; autograd keeps what it needs (the
        # product's inputs, tanh's output)
        return self.v(location.add_(state.keys).add_(q).tanh_()).squeeze(-1)
