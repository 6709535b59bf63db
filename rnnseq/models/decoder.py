"""The attention decoder: an ``init_state``/``step`` interface that teacher forcing, greedy
search and beam search all build on."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from rnnseq.models.attention import Attention, AttentionState
from rnnseq.models.recurrent import (
    Cell,
    build_recurrent,
    output_size,
    require_positive,
    run_recurrent,
    step_recurrent,
    zero_state,
)


class DecoderState(NamedTuple):
    """Everything a decoder carries between steps. Batch is dim 0 of every tensor, so beam
    search can reorder a state with one ``index_select`` per tensor (:func:`select_state`)."""

    h: torch.Tensor  # (B, L, P) recurrent output h of every layer
    c: torch.Tensor  # (B, L, H) LSTM cell state ((B, L, 0) for cells without one)
    attentional: torch.Tensor  # (B, H) last attentional vector (fed back with input feeding)
    attention: AttentionState


def select_state(state, index: torch.Tensor):
    """Picks batch entries ``index`` (dim 0) of every tensor in a (nested) state tuple; ``None``
    fields (state an attention does not keep) stay ``None``."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index)
    return type(state)(*(select_state(s, index) for s in state))


class AttentionDecoder(nn.Module):
    """Recurrent decoder with attention and a Luong-style attentional output layer.

    Each step: ``h_t = RNN(embed(y_{t-1}) [; a_{t-1}], h_{t-1})``, ``c_t = attention(h_t, memory)``,
    ``a_t = tanh(W [h_t; c_t])``, ``logits_t = V a_t``. Without input feeding (the default) the
    RNN does not depend on attention, so teacher forcing runs it over all steps at once (one fused
    call for PyTorch's cells, the custom cells' own loop, a loop over steps with zoneout) and, for
    attentions that allow it, scores all steps at once. Input feeding and scheduled sampling
    need the previous step's output, so they go step by step: scheduled sampling through
    :meth:`step`, input feeding with the embeddings and the output layer over all steps at once.

    Args:
        vocab_size: output symbols V (derived from the tokenizer).
        memory_dim: encoder output size D (derived from the encoder).
        attention: builds the attention from ``(query_dim, memory_dim)`` (a Hydra ``_partial_``).
        embed_dim, hidden_size, num_layers: sizes of the embedding and the recurrent layers.
        input_feeding: feed ``a_{t-1}`` into the RNN input (Luong et al., 2015).
        dropout: on embeddings, between recurrent layers and on the attentional vector.
        cell: a name of :data:`rnnseq.models.recurrent.CELLS` or a cell setting (``model.cell``).
        zoneout: see :class:`rnnseq.models.recurrent.CellStack` (0: off).
    """

    def __init__(
        self,
        vocab_size: int,
        memory_dim: int,
        attention: Callable[..., Attention],
        embed_dim: int = 128,
        hidden_size: int = 320,
        num_layers: int = 1,
        input_feeding: bool = False,
        dropout: float = 0.1,
        cell: str | Cell | dict = "lstm",
        zoneout: float = 0.0,
    ):
        super().__init__()
        require_positive("decoder", vocab_size=vocab_size, memory_dim=memory_dim,
                         embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.input_feeding = input_feeding
        self.embed = nn.Embedding(vocab_size, embed_dim)
        rnn_input = embed_dim + (hidden_size if input_feeding else 0)
        self.rnn = build_recurrent(cell, rnn_input, hidden_size, num_layers, dropout, zoneout,
                                   key="model.decoder")
        query_dim = output_size(self.rnn)
        self.attention = attention(query_dim=query_dim, memory_dim=memory_dim)
        self.combine = nn.Linear(query_dim + memory_dim, hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> DecoderState:
        """State before the first step; projects the memory into attention keys once."""
        b = memory.shape[0]
        h, c = zero_state(self.rnn, b, memory)  # (L, B, *)
        return DecoderState(h=h.transpose(0, 1), c=c.transpose(0, 1),
                            attentional=memory.new_zeros(b, self.hidden_size),
                            attention=self.attention.init_state(memory, memory_mask))

    @staticmethod
    def reorder_state(state: DecoderState, rows: torch.Tensor) -> DecoderState:
        """:func:`select_state` for rows that stay within their utterance (beam search): the
        attention keys are the same for every row of an utterance, so they are not copied."""
        attention = state.attention
        keys = attention.keys
        moved = select_state(attention._replace(keys=None), rows)._replace(keys=keys)
        return DecoderState(state.h.index_select(0, rows), state.c.index_select(0, rows),
                            state.attentional.index_select(0, rows), moved)

    def _attentional(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.tanh(self.combine(torch.cat([h, context], dim=-1))))

    def step(
        self,
        tokens: torch.Tensor,
        state: DecoderState,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One step: ``(B,)`` previous tokens -> ``(B, V)`` logits, new state, ``(B, S)`` weights."""
        x = self.dropout(self.embed(tokens))  # (B, E)
        hidden = (state.h.transpose(0, 1).contiguous(), state.c.transpose(0, 1).contiguous())
        attentional, (h, c), att_state, weights = self._advance(
            x, state.attentional, hidden, state.attention, memory, memory_mask)
        new_state = DecoderState(h.transpose(0, 1), c.transpose(0, 1), attentional, att_state)
        return self.output(attentional), new_state, weights

    def _advance(self, x: torch.Tensor, attentional: torch.Tensor, hidden, attention, memory,
                 memory_mask):
        """The recurrence, the attention and the attentional vector of one step, from ``(B, E)``
        embedded tokens, the last ``(B, H)`` attentional vector (read with input feeding) and the
        ``(L, B, *)`` recurrent state: the new attentional vector, recurrent state, attention state
        and ``(B, S)`` weights."""
        if self.input_feeding:
            x = torch.cat([x, attentional], dim=-1)  # (B, E + H)
        out, hidden = step_recurrent(self.rnn, x, hidden)  # out (B, P); h, c (L, B, *)
        context, weights, attention = self.attention(out, memory, memory_mask, attention)
        return self._attentional(out, context), hidden, attention, weights  # (B, H), ...

    def forward(
        self, memory: torch.Tensor, memory_mask: torch.Tensor, tokens: torch.Tensor,
        sampling_probability: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: ``(B, T)`` input tokens -> ``(B, T, V)`` logits, ``(B, T, S)`` weights.

        Gives the same result as calling :meth:`step` once per target step. With
        ``sampling_probability`` p > 0 (scheduled sampling, Bengio et al., 2015), each row reads
        at every step after the first, with probability p, the decoder's own best token of the
        previous step instead of the reference (the argmax, as ESPnet does).
        """
        state = self.init_state(memory, memory_mask)
        if self.input_feeding and sampling_probability == 0:
            return self._input_fed(memory, memory_mask, tokens, state)
        if sampling_probability > 0:
            logits, weights = [], []
            for t in range(tokens.shape[1]):
                inputs = tokens[:, t]
                if t > 0:
                    own = torch.rand(inputs.shape, device=inputs.device) < sampling_probability
                    inputs = torch.where(own, logits[-1].argmax(-1), inputs)
                step_logits, state, w = self.step(inputs, state, memory, memory_mask)
                logits.append(step_logits)
                weights.append(w)
            return torch.stack(logits, 1), torch.stack(weights, 1)
        x = self.dropout(self.embed(tokens))  # (B, T, E)
        out, _ = run_recurrent(self.rnn, x)  # (B, T, P): causal, so trailing padding cannot reach real steps
        contexts, weights = self.attention.forward_all(out, memory, memory_mask, state.attention)
        return self.output(self._attentional(out, contexts)), weights

    def _input_fed(self, memory: torch.Tensor, memory_mask: torch.Tensor, tokens: torch.Tensor,
                   state: DecoderState) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing with input feeding: :meth:`step`'s computation, with the embeddings
        and the output layer applied to all ``T`` steps at once and the recurrent state kept in
        the layers' own ``(L, B, *)`` layout between steps; only the recurrence, the attention and
        the attentional vector go step by step."""
        embedded = self.dropout(self.embed(tokens))  # (B, T, E)
        hidden = (state.h.transpose(0, 1).contiguous(), state.c.transpose(0, 1).contiguous())
        attentional, attention = state.attentional, state.attention
        outputs, weights = [], []
        for t in range(tokens.shape[1]):
            attentional, hidden, attention, w = self._advance(
                embedded[:, t], attentional, hidden, attention, memory, memory_mask)
            outputs.append(attentional)
            weights.append(w)
        return self.output(torch.stack(outputs, 1)), torch.stack(weights, 1)
