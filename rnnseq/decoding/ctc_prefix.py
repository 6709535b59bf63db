"""CTC prefix scores for hypotheses that grow one token at a time, as used in joint CTC/attention
decoding (Watanabe et al., 2017, "Hybrid CTC/attention architecture for end-to-end speech
recognition", Algorithm 2), for a few candidate tokens per hypothesis.

For a prefix ``g`` and frame ``t``, ``r_n[t]`` and ``r_b[t]`` are the log-probabilities that the
CTC paths over frames ``0..t`` spell ``g`` and end in a non-blank or a blank. Extending ``g`` by
``c`` follows the recursion

    r_n[t] = logaddexp(r_n[t-1], phi[t-1]) + x_c[t]        phi: g complete at t-1, ready for c
    r_b[t] = logaddexp(r_n[t-1], r_b[t-1]) + x_blank[t]

which is linear in probabilities, so every frame is computed at once with cumulative sums
(``r_n = X + logcumsumexp(a - X_before)`` with ``X`` the cumulative log-probability of ``c``)
instead of a loop over frames. The prefix score of ``g + c`` sums over every frame where ``c``
can start; for ``<eos>`` it is the probability of the whole utterance spelling exactly ``g``.

Only frames a candidate can reach are computed: a prefix of ``L`` tokens needs ``L`` frames, so
its next token starts at frame ``L`` at the earliest (exact, not a window). Scores are computed
in float64: the cumulative sums over hundreds of frames would lose the differences in float32.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rnnseq.decoding.scorers import Scorer, Step

# Log-probability of a non-blank symbol on a padded frame: padding is a certain blank. Finite
# rather than -inf so that differences of cumulative sums stay defined; exp(-1e4) is exactly 0.
PADDED = -1e4


class CTCPrefixState(NamedTuple):
    r: torch.Tensor  # (S, N, 2) float64 log-probs of the prefix ending in non-blank / blank
    score: torch.Tensor  # (N,) prefix score of each hypothesis
    last: torch.Tensor  # (N,) last token of each hypothesis (-1 for the empty prefix)


class CTCPending(NamedTuple):
    r: torch.Tensor  # (S, N, C, 2) of every candidate extension
    score: torch.Tensor  # (N, C) prefix scores of the extensions
    candidates: torch.Tensor  # (N, C) token ids


class CTCPrefixScorer(Scorer):
    """Prefix scores of the candidate extensions of ``N`` hypotheses.

    Args:
        log_probs: ``(B, S, V)`` CTC log-probabilities of the utterances.
        lengths: ``(B,)`` frames of each utterance; frames beyond it are certain blanks, so the
            scores of a padded utterance equal those of the utterance alone.
        blank, eos: ids of the CTC blank and of the end of sentence.

    ``score_candidates`` returns the gain ``score(g + c) - score(g)`` of every candidate ``c``
    (``-inf`` for the blank), so the gains along a hypothesis ending in ``<eos>`` add up to its
    CTC log-probability, ``-ctc_loss``.
    """

    partial = True

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int):
        b, s, _ = log_probs.shape
        lengths = lengths.to(log_probs.device)
        padding = torch.arange(s, device=log_probs.device)[None, :] >= lengths[:, None]  # (B, S)
        x = log_probs.float().clamp_min(PADDED).masked_fill(padding[..., None], PADDED)
        x[..., blank] = x[..., blank].masked_fill(padding, 0.0)
        self.x = x.transpose(0, 1)  # (S, B, V)
        self.lengths = lengths
        self.blank, self.eos = blank, eos
        self.vocab_size = log_probs.shape[-1]

    def init_state(self, rows: torch.Tensor) -> CTCPrefixState:
        """The empty prefix for each row; ``rows`` is the ``(N,)`` utterance of each row."""
        self._rows = rows
        self._blank = self.x[:, rows, self.blank].double()  # (S, N)
        self._last_frame = (self.lengths[rows] - 1).clamp_min(0)  # (N,)
        s, n = self._blank.shape
        r = torch.full((s, n, 2), float("-inf"), dtype=torch.float64, device=self.x.device)
        r[:, :, 1] = torch.cumsum(self._blank, dim=0)  # only blanks so far
        return CTCPrefixState(r, torch.zeros(n, dtype=torch.float64, device=self.x.device),
                              torch.full((n,), -1, dtype=torch.long, device=self.x.device))

    def score(self, state: CTCPrefixState, step: Step):
        """Every token as a candidate (CTC prefix beam search, or a small vocabulary)."""
        n = state.score.shape[0]
        everything = torch.arange(self.vocab_size, device=self.x.device).expand(n, -1)
        return self.score_candidates(state, step, everything)

    def score_candidates(self, state: CTCPrefixState, step: Step, candidates: torch.Tensor):
        """``(N, C)`` candidates -> ``(N, C)`` float32 gains and the pending extensions."""
        s, n, _ = state.r.shape
        start = min(step.index, s)  # the new token's earliest frame
        x = self.x[start:, self._rows[:, None], candidates].double()  # (S', N, C)
        blank = self._blank[start:, :, None]  # (S', N, 1)
        r_prev = state.r
        phi = torch.logaddexp(r_prev[..., 0], r_prev[..., 1])[:, :, None]  # (S, N, 1)
        # Repeating the last token needs a blank in between: only blank-ending paths extend it.
        same = (candidates == state.last[:, None])[None]  # (1, N, C)
        phi = torch.where(same, r_prev[..., 1][:, :, None], phi)  # (S, N, C)
        # a[t]: log-probability of being ready for c at frame t (g complete at t - 1).
        a = torch.full_like(x, float("-inf"))
        if start > 0:
            a[:] = phi[start - 1 : s - 1]
        else:
            a[1:] = phi[: s - 1]
            a[0] = torch.where(state.last[None, :, None] < 0, 0.0, float("-inf"))
        cum_x = torch.cumsum(x, 0)
        r_n = cum_x + torch.logcumsumexp(a - (cum_x - x), 0)
        into_blank = torch.cat([torch.full_like(r_n[:1], float("-inf")), r_n[:-1]], 0)
        cum_b = torch.cumsum(blank, 0).expand_as(r_n)
        r_b = cum_b + torch.logcumsumexp(into_blank - (cum_b - blank), 0)
        score = torch.logsumexp(a + x, 0)  # (N, C)
        # <eos>: every frame is used, so the prefix must be complete at the last real frame.
        at_end = r_prev[self._last_frame, torch.arange(n, device=r_prev.device)]  # (N, 2)
        complete = torch.logaddexp(at_end[:, 0], at_end[:, 1])[:, None].expand_as(score)
        score = torch.where(candidates == self.eos, complete, score)
        score = score.masked_fill(candidates == self.blank, float("-inf"))
        r = torch.full((s, n, candidates.shape[1], 2), float("-inf"), dtype=torch.float64,
                       device=x.device)
        r[start:, ..., 0], r[start:, ..., 1] = r_n, r_b
        # A hypothesis CTC rules out (its prefix score is -inf) gains nothing from any token.
        gain = torch.where(torch.isneginf(state.score)[:, None], float("-inf"),
                           score - state.score[:, None])
        return gain.float(), CTCPending(r, score, candidates)

    def keep(self, state: CTCPrefixState, rows: torch.Tensor) -> CTCPrefixState:
        """The prefixes of ``rows`` only (frames are dim 0 of ``r``, rows dim 1)."""
        self._rows, self._blank = self._rows[rows], self._blank[:, rows]
        self._last_frame = self._last_frame[rows]
        return CTCPrefixState(state.r[:, rows], state.score[rows], state.last[rows])

    def select(self, pending: CTCPending, rows: torch.Tensor, tokens: torch.Tensor) -> CTCPrefixState:
        """The states after row ``rows[i]`` took ``tokens[i]`` (one of its candidates; a token that
        was not, which only a hypothesis scored -inf can take, gets the first candidate's state)."""
        position = (pending.candidates[rows] == tokens[:, None]).long().argmax(1)  # (N,)
        return CTCPrefixState(pending.r[:, rows, position], pending.score[rows, position], tokens)
