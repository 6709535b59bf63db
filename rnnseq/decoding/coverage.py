"""The coverage scorer: how much of the input the attention decoder has covered, read from its
attention weights at every step (:class:`CoverageScorer`)."""

from __future__ import annotations

import torch

from rnnseq.decoding.scorer import Scorer


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
