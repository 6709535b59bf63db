"""A reward per token, against the search's preference for short hypotheses."""

from __future__ import annotations

import torch

from rnnseq.decoding.scorer import Scorer


class LengthBonus(Scorer):
    """A reward of 1 for every token, ``<eos>`` included (ESPnet's length bonus): with a positive
    weight it counters the search's preference for short outputs."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def init_state(self, rows):
        """No state: the bonus depends on nothing."""
        return None

    def score(self, state, step):
        """1 for every token."""
        return step.tokens.new_ones(len(step.tokens), self.vocab_size, dtype=torch.float), None

    def select(self, pending, rows, tokens):
        """No state."""
        return None

    def max_gain(self, state, remaining):
        """1 for each token a hypothesis may still take."""
        return remaining.float()
