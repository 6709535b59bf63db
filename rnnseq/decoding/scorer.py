"""The scorer interface: the parts a search adds up to rank the next token of every hypothesis.

A search (:mod:`rnnseq.decoding.search`) holds ``N`` rows (hypotheses; in beam search
``utterances x beam``) and, at every step, asks each scorer for a score of every possible next
token, adds them with their weights and keeps the best. Every scorer has the same interface:

- ``init_state(rows)``: the state of the empty hypothesis for each row; ``rows`` is the ``(N,)``
  utterance index of each row (beam search starts ``K`` rows per utterance).
- ``score(state, step)``: ``(N, V)`` scores of every next token, and a *pending* value that
  :meth:`Scorer.select` turns into the next state. A *partial* scorer (CTC prefix scores, which
  cost time per token) scores only ``(N, C)`` candidates in ``score_candidates``: the search
  picks them as the best tokens of the full scorers' weighted total (ESPnet's pre-beam), plus,
  where the partial scorer is the search's primary one (``scorers[0]``: CTC in CTC prefix beam
  search), its weighted ``rank_all``.
- ``rank_all(state, step)``: an optional cheap ``(N, V)`` estimate of a partial scorer's scores
  of every token (``None`` where it has none), so that the audio, not a language model or a
  length bonus, picks the candidates when there is no attention decoder.
- ``select(pending, rows, tokens)``: the states after row ``rows[i]`` took token ``tokens[i]``:
  beam search reorders its rows after every step.
- ``max_gain(state, remaining)``: an upper bound on what the scorer can still add to a
  hypothesis that may take ``remaining`` more tokens; 0 for log-probabilities (they only fall),
  positive for rewards such as a length bonus. Beam search stops an utterance once no live
  hypothesis can beat its best finished one.

Scorers that need the attention decoder's weights read ``step.attention``, which the decoder
scorer fills in before them. Each scorer lives in a module of its own; the registry
(:mod:`rnnseq.decoding.scorers`) maps each ``task.decoding`` weight to the scorer it switches on,
so a new scorer is a class and an entry there; the search does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rnnseq.models.decoder import select_state


@dataclass
class Step:
    """What every scorer sees at one search step.

    Attributes:
        index: tokens that every live hypothesis already holds (all hypotheses of a step are
            equally long).
        tokens: ``(N,)`` last token of every row (``<eos>``, the start symbol, at step 0).
        attention: ``(N, S)`` attention weights of this step, filled in by the decoder scorer.
    """

    index: int
    tokens: torch.Tensor
    attention: torch.Tensor | None = None


class Scorer:
    """Base class; see the module docstring for the interface."""

    partial = False  # True: scores only candidate tokens (``score_candidates``)

    def init_state(self, rows: torch.Tensor) -> Any:
        """The state of the empty hypothesis of every row; ``rows``: ``(N,)`` utterance of each."""
        raise NotImplementedError

    def score(self, state: Any, step: Step) -> tuple[torch.Tensor, Any]:
        """``(N, V)`` scores of every next token and the pending value for :meth:`select`."""
        raise NotImplementedError

    def score_candidates(self, state: Any, step: Step,
                         candidates: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """``(N, C)`` scores of the ``(N, C)`` candidate tokens of each row (partial scorers)."""
        raise NotImplementedError

    def rank_all(self, state: Any, step: Step) -> torch.Tensor | None:
        """A partial scorer's cheap ``(N, V)`` estimate of its scores of every token, which the
        search ranks the pre-beam with where this is its primary scorer; ``None``: none (the
        full scorers alone rank)."""
        return None

    def select(self, pending: Any, rows: torch.Tensor, tokens: torch.Tensor) -> Any:
        """The states after row ``rows[i]`` took token ``tokens[i]`` (both ``(N,)``)."""
        raise NotImplementedError

    def keep(self, state: Any, rows: torch.Tensor) -> Any:
        """The states of ``rows`` only: the search drops the rows of utterances that have ended
        (any per-row inputs the scorer keeps shrink with them). The default suits states whose
        tensors all have the rows on dim 0."""
        return select_state(state, rows)

    def max_gain(self, state: Any, remaining: torch.Tensor) -> torch.Tensor | float:
        """Upper bound ``(N,)`` (or a number for all rows) on what the scorer can still add."""
        return 0.0
