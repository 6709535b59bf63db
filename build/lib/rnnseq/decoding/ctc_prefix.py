"""CTC prefix scores for hypotheses that grow one token at a time, as used in joint CTC/attention
decoding (Watanabe et al., 2017, "Hybrid CTC/attention architecture for end-to-end speech
recognition", Algorithm 2), vectorised over hypotheses and candidate tokens.

For a prefix ``g`` and frame ``t``, ``r[t, n]`` and ``r[t, b]`` are the log-probabilities that the
CTC paths over frames ``0..t`` spell ``g`` and end in a non-blank or a blank. The prefix score of
``g + c`` sums over every frame where ``c`` can start; for ``<eos>`` it is the probability of the
whole utterance spelling exactly ``g``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class CTCPrefixState(NamedTuple):
    r: torch.Tensor  # (S, N, 2) log-probs of the prefix ending in non-blank / blank at each frame
    score: torch.Tensor  # (N,) prefix score of each hypothesis
    last: torch.Tensor  # (N,) last token of each hypothesis (-1 for the empty prefix)


class CTCPrefixScorer:
    """Scores every one-token extension of ``N`` hypotheses.

    Args:
        log_probs: ``(N, S, V)`` CTC log-probabilities of the utterance each hypothesis belongs to.
        lengths: ``(N,)`` frames of each utterance. Frames beyond it are treated as certain blanks,
            so the scores of padded rows equal those of the utterance alone.
    """

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int):
        n, s, v = log_probs.shape
        x = log_probs.float().transpose(0, 1).clone()  # (S, N, V)
        padding = torch.arange(s, device=x.device)[:, None] >= lengths.to(x.device)[None, :]
        x[padding] = float("-inf")
        x[..., blank] = x[..., blank].masked_fill(padding, 0.0)
        self.x = x
        self.blank, self.eos = blank, eos

    def initial_state(self) -> CTCPrefixState:
        """The state of the empty prefix for every hypothesis of the batch."""
        s, n, _ = self.x.shape
        r = torch.full((s, n, 2), float("-inf"), device=self.x.device)
        r[:, :, 1] = torch.cumsum(self.x[:, :, self.blank], dim=0)  # only blanks so far
        return CTCPrefixState(r, torch.zeros(n, device=self.x.device),
                              torch.full((n,), -1, dtype=torch.long, device=self.x.device))

    def extend(self, state: CTCPrefixState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prefix scores of every extension: ``((N, V) score gains, (N, V) scores, (S, N, V, 2) r)``.

        The gain is ``score(g + c) - score(g)``; the blank candidate gets ``-inf``.
        """
        x = self.x  # (S, N, V)
        s, n, v = x.shape
        r_prev = state.r
        phi = torch.logaddexp(r_prev[..., 0], r_prev[..., 1]).unsqueeze(-1).expand(s, n, v)
        # Repeating the last token needs a blank in between: only blank-ending paths extend it.
        same = torch.nn.functional.one_hot(state.last.clamp_min(0), v).bool()
        same &= (state.last >= 0).unsqueeze(-1)
        phi = torch.where(same.unsqueeze(0), r_prev[..., 1].unsqueeze(-1), phi)  # (S, N, V)
        r = torch.full((s, n, v, 2), float("-inf"), device=x.device)
        empty = (state.last < 0).view(1, n, 1)
        r[0, ..., 0] = torch.where(empty[0], x[0], float("-inf"))
        score = r[0, ..., 0].clone()
        blank = x[..., self.blank].unsqueeze(-1)  # (S, N, 1)
        for t in range(1, s):
            r[t, ..., 0] = torch.logaddexp(r[t - 1, ..., 0], phi[t - 1]) + x[t]
            r[t, ..., 1] = torch.logaddexp(r[t - 1, ..., 0], r[t - 1, ..., 1]) + blank[t]
            score = torch.logaddexp(score, phi[t - 1] + x[t])
        # <eos>: every frame is used, so the prefix must be complete at the last frame.
        score[:, self.eos] = torch.logaddexp(r_prev[-1, :, 0], r_prev[-1, :, 1])
        score[:, self.blank] = float("-inf")
        return score - state.score.unsqueeze(-1), score, r

    @staticmethod
    def select(scores: torch.Tensor, r: torch.Tensor, rows: torch.Tensor,
               tokens: torch.Tensor) -> CTCPrefixState:
        """The states of the chosen extensions ``(rows[i], tokens[i])``."""
        return CTCPrefixState(r[:, rows, tokens], scores[rows, tokens], tokens)
