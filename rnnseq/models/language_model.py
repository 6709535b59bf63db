"""Recurrent language model: embedding, stacked recurrent layers, softmax over the vocabulary."""

from __future__ import annotations

import torch
from torch import nn

from rnnseq.models.recurrent import (
    Cell,
    RecurrentState,
    build_recurrent,
    output_size,
    require_positive,
    run_recurrent,
    zero_state,
)

# The recurrent state (h, c) of rnnseq.models.recurrent for every cell; each tensor is
# (num_layers, B, *), so the batch is dim 1.
LMState = RecurrentState


class RNNLanguageModel(nn.Module):
    """Next-token model ``p(x_t | x_<t)`` in the style of PyTorch's word_language_model.

    ``tokens (B, T) -> embedding (B, T, E) -> L recurrent layers (B, T, H) -> logits (B, T, V)``.

    Args:
        vocab_size: V (derived from the tokenizer).
        embed_dim: E.
        hidden_size: H of every recurrent layer.
        num_layers: L.
        cell: a name of :data:`rnnseq.models.recurrent.CELLS` or a cell setting (``model.cell``).
        embedding_dropout: on the embeddings.
        dropout: between recurrent layers.
        output_dropout: on the last layer's output, before the softmax layer.
        tie_weights: share the input embedding with the output layer (Press & Wolf, 2017). When
            the recurrent output size (``hidden_size``, or ``proj_size`` of an ``lstmp``) differs
            from ``embed_dim``, a linear projection to E is added before the output.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 2,
        cell: str | Cell | dict = "lstm",
        embedding_dropout: float = 0.0,
        dropout: float = 0.2,
        output_dropout: float = 0.2,
        tie_weights: bool = False,
    ):
        super().__init__()
        require_positive("language model", vocab_size=vocab_size, embed_dim=embed_dim,
                         hidden_size=hidden_size, num_layers=num_layers)
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.rnn = build_recurrent(cell, embed_dim, hidden_size, num_layers, dropout,
                                   key="model.lm")
        self.output_dropout = nn.Dropout(output_dropout)
        output_dim = output_size(self.rnn)
        self.projection = None
        if tie_weights and output_dim != embed_dim:
            self.projection = nn.Linear(output_dim, embed_dim)
            output_dim = embed_dim
        self.output = nn.Linear(output_dim, vocab_size)
        if tie_weights:
            self.output.weight = self.embed.weight

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> LMState:
        """Zero state for ``batch_size`` sequences."""
        return zero_state(self.rnn, batch_size, self.embed.weight.new_empty(0, device=device))

    def forward(self, tokens: torch.Tensor, state: LMState | None = None
                ) -> tuple[torch.Tensor, LMState]:
        """``(B, T)`` tokens and an optional carried state -> ``(B, T, V)`` logits, new state."""
        x = self.embedding_dropout(self.embed(tokens))
        out, new_state = run_recurrent(self.rnn, x, state)
        out = self.output_dropout(out)
        if self.projection is not None:
            out = self.projection(out)
        return self.output(out), new_state

    def step(self, tokens: torch.Tensor, state: LMState | None) -> tuple[torch.Tensor, LMState]:
        """One step: ``(B,)`` previous tokens -> ``(B, V)`` logits and the new state."""
        logits, state = self(tokens.unsqueeze(1), state)
        return logits[:, 0], state


def detach_state(state: LMState | None) -> LMState | None:
    """The state without its autograd history: truncated back-propagation through time."""
    return None if state is None else tuple(s.detach() for s in state)


def select_lm_state(state: LMState, index: torch.Tensor) -> LMState:
    """Picks sequences ``index`` (dim 1 of ``h`` ``(L, B, P)`` and ``c`` ``(L, B, H or 0)``), e.g.
    surviving beams."""
    return tuple(s.index_select(1, index) for s in state)
