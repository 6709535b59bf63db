"""The scorer of the attention decoder: its log-probabilities of the next token
(:class:`DecoderScorer`)."""

from __future__ import annotations

import torch

from rnnseq.decoding.scorer import Scorer
from rnnseq.models.decoder import select_state


class DecoderScorer(Scorer):
    """The attention decoder's log-probabilities, ``log p(y_t | y_<t, x)``.

    Args:
        decoder: anything with ``init_state(memory, mask)`` and ``step(tokens, state, memory,
            mask) -> (logits, state, weights)`` (:class:`~rnnseq.models.decoder.AttentionDecoder`).
        memory: ``(B, S, D)`` encoder output of the utterances; ``memory_mask``: ``(B, S)``.

    The memory and the attention keys are expanded to the rows once; reordering rows of the same
    utterance leaves them as they are (``decoder.reorder_state``), so no step copies them.
    """

    def __init__(self, decoder, memory: torch.Tensor, memory_mask: torch.Tensor):
        self.decoder, self.memory, self.memory_mask = decoder, memory, memory_mask

    def init_state(self, rows):
        """The decoder's initial state (keys projected once per utterance), one per row."""
        state = self.decoder.init_state(self.memory, self.memory_mask)
        self._memory, self._mask = self.memory[rows], self.memory_mask[rows]
        return select_state(state, rows)

    def score(self, state, step):
        """One decoder step: ``(N, V)`` log-probabilities; fills in ``step.attention``."""
        logits, state, weights = self.decoder.step(step.tokens, state, self._memory, self._mask)
        step.attention = weights
        return torch.log_softmax(logits.float(), dim=-1), state

    def select(self, pending, rows, tokens):
        """The decoder states of the chosen rows (the token is fed at the next step)."""
        reorder = getattr(self.decoder, "reorder_state", None)
        return reorder(pending, rows) if reorder is not None else select_state(pending, rows)

    def keep(self, state, rows):
        """The decoder states, memory and mask of ``rows`` only."""
        self._memory, self._mask = self._memory[rows], self._mask[rows]
        return select_state(state, rows)
