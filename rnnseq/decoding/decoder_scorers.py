"""Scorers that read the attention decoder: its log-probabilities of the next token
(:class:`DecoderScorer`) and how much of the input its attention has covered
(:class:`CoverageScorer`)."""

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


class CoverageScorer(Scorer):
    """A reward for attending to all of the input, from the attention weights of every step.

    ``kind="count"`` (Chorowski & Jaitly, 2017): the number of input frames whose cumulative
    attention exceeds ``threshold``, so a hypothesis that loops over one part of the audio and
    never reaches the rest ends worse. ``kind="log"`` (Wu et al., 2016, as in OpenNMT-py):
    ``sum_j log(min(cumulative_j, 1))`` over real frames, a penalty that shrinks as every frame
    gets its share (floored at ``log(floor)`` per frame so that unattended frames are not -inf).

    The scorer adds, at each step, how much the measure grows with this step's weights, so a
    hypothesis's total is the measure of its final cumulative attention. The growth is the same
    for every next token: the attention of a step does not depend on the token it emits.
    """

    KINDS = ("count", "log")

    def __init__(self, memory_mask: torch.Tensor, vocab_size: int, kind: str = "count",
                 threshold: float = 0.5, floor: float = 1e-3):
        if kind not in self.KINDS:
            raise ValueError(f"decoding.coverage_kind={kind!r} is not one of {self.KINDS}")
        self.memory_mask, self.vocab_size = memory_mask, vocab_size
        self.kind, self.threshold, self.floor = kind, threshold, floor

    def measure(self, cumulative: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(N, S)`` cumulative attention -> ``(N,)`` coverage measure over real frames."""
        if self.kind == "count":
            return ((cumulative > self.threshold) & mask).sum(-1).float()
        logs = torch.log(cumulative.clamp(min=self.floor, max=1.0))
        return torch.where(mask, logs, torch.zeros_like(logs)).sum(-1)

    def init_state(self, rows):
        """No attention yet: cumulative weights zero, and their measure."""
        self._mask = self.memory_mask[rows]
        self._frames = self._mask.sum(-1).float()
        cumulative = torch.zeros(self._mask.shape, device=self._mask.device)
        return cumulative, self.measure(cumulative, self._mask)

    def score(self, state, step):
        """The growth of the measure with this step's attention, the same for every token."""
        if step.attention is None:
            raise ValueError("coverage needs the attention decoder's weights; it cannot score "
                             "without an attention decoder (decoding.mode=ctc_beam)")
        cumulative, measure = state
        cumulative = cumulative + step.attention.float()
        new_measure = self.measure(cumulative, self._mask)
        gain = (new_measure - measure)[:, None].expand(-1, self.vocab_size)
        return gain, (cumulative, new_measure)

    def select(self, pending, rows, tokens):
        """The cumulative attention of the chosen rows."""
        cumulative, measure = pending
        return cumulative[rows], measure[rows]

    def keep(self, state, rows):
        """The cumulative attention and mask of ``rows`` only."""
        self._mask, self._frames = self._mask[rows], self._frames[rows]
        return self.select(state, rows, None)

    def max_gain(self, state, remaining):
        """What the measure can still grow: every frame covered (count) or at 1 (log)."""
        _, measure = state
        if self.kind == "count":  # frames not yet covered
            return self._frames - measure
        return -measure  # log(min(c, 1)) <= 0 and only grows
