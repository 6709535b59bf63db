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
instead of a loop over frames. The prefix score of ``g + c`` needs none of that: it is one sum
over the frames where ``c`` can first appear, ``logsumexp_t(phi[t-1] + x_c[t])``. So every
candidate gets its score, and only the extensions the search keeps get their recursion (in
``select``). For ``<eos>`` the score is the probability of the whole utterance spelling exactly
``g``.

The same sum for the whole vocabulary at once is one product over frames, ``(N, S') x (S', V)``
per utterance (:meth:`CTCPrefixScorer.rank_all`): in CTC prefix beam search, where CTC is the
search's primary scorer, it picks the candidates that ``score_candidates`` then scores, so the
audio, not a language model or a length bonus, decides which tokens CTC may score.

Only frames a candidate can reach are computed: a prefix of ``L`` tokens needs ``L`` frames, so
its next token starts at frame ``L`` at the earliest (exact, not a window). Scores are computed
in float64: the cumulative sums over hundreds of frames would lose the differences in float32.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rnnseq.decoding.scorer import Scorer, Step

# Log-probability of a non-blank symbol on a padded frame: padding is a certain blank. Finite
# rather than -inf so that differences of cumulative sums stay defined; exp(-1e4) is exactly 0.
PADDED = -1e4


class CTCPrefixState(NamedTuple):
    r: torch.Tensor  # (S, N, 2) float64 log-probs of the prefix ending in non-blank / blank
    score: torch.Tensor  # (N,) prefix score of each hypothesis
    last: torch.Tensor  # (N,) last token of each hypothesis (-1 for the empty prefix)


def _rows_of(state: CTCPrefixState, rows: torch.Tensor) -> CTCPrefixState:
    """The prefixes of ``rows`` (frames are dim 0 of ``r``, rows dim 1)."""
    return CTCPrefixState(state.r[:, rows], state.score[rows], state.last[rows])


class CTCPending(NamedTuple):
    parent: CTCPrefixState  # the hypotheses that were scored
    start: int  # the candidates' earliest frame
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
        self._group = self._rows_per_utterance(rows)
        self._exp_x = self._max_x = None  # rank_all's tables, made when it is first asked
        return CTCPrefixState(r, torch.zeros(n, dtype=torch.float64, device=self.x.device),
                              torch.full((n,), -1, dtype=torch.long, device=self.x.device))

    def score(self, state: CTCPrefixState, step: Step):
        """Every token as a candidate (CTC prefix beam search, or a small vocabulary)."""
        n = state.score.shape[0]
        everything = torch.arange(self.vocab_size, device=self.x.device).expand(n, -1)
        return self.score_candidates(state, step, everything)

    def score_candidates(self, state: CTCPrefixState, step: Step, candidates: torch.Tensor):
        """``(N, C)`` candidates -> ``(N, C)`` float32 gains and the pending extensions.

        A prefix score needs one sum over frames per candidate; the recursion over frames that
        the next step needs runs in :meth:`select`, for the chosen extensions only."""
        start = min(step.index, self.x.shape[0])  # the new token's earliest frame
        ready, x = self._ready(state, candidates, start)  # (S', N, C) each
        score = torch.logsumexp(ready + x, 0)  # (N, C): c first emitted at some frame t
        # <eos>: every frame is used, so the prefix must be complete at the last real frame.
        complete = self._complete(state)[:, None].expand_as(score)
        score = torch.where(candidates == self.eos, complete, score)
        score = score.masked_fill(candidates == self.blank, float("-inf"))
        return self._gains(state, score), CTCPending(state, start, score, candidates)

    def rank_all(self, state: CTCPrefixState, step: Step) -> torch.Tensor:
        """``(N, V)`` float32 gains of every token, those :meth:`score_candidates` gives the
        tokens it scores (up to float64 rounding, and terms some 700 nats below a row's best
        frame, which underflow), computed for the whole vocabulary at once.

        ``logsumexp_t(phi[t-1] + x_c[t])`` for every ``c`` is ``exp(phi - max) @ exp(x - max)``,
        an ``(N, S') x (S', V)`` product in float64 over the frames from the step's earliest one,
        one per utterance for all its rows (beam search keeps each utterance's rows together);
        the last token, which only blank-ending paths repeat, takes ``r_b`` in place of ``phi``.
        The search ranks the pre-beam with it where CTC is its primary scorer."""
        n = state.score.shape[0]
        start = min(step.index, self.x.shape[0])
        phi, blank_ending = self._complete_before(state, start)  # (S', N) each
        score = torch.full((n, self.vocab_size), float("-inf"), dtype=torch.float64,
                           device=state.r.device)
        if phi.shape[0] > 0:  # frames left for another token
            exp_x, max_x = self._tables()
            exp_x = exp_x[:, start:]  # (G, S', V), G = N / k; 0 on padded frames
            k = self._group
            shift = phi.amax(0)  # (N,) the largest ready probability, 1 after the shift
            shift = torch.where(torch.isneginf(shift), torch.zeros_like(shift), shift)
            ready = torch.exp(phi.T - shift[:, None])  # (N, S')
            max_x = max_x.repeat_interleave(k, 0) + shift[:, None]  # (N, V)
            total = torch.bmm(ready.reshape(-1, k, ready.shape[1]), exp_x)  # (G, k, V)
            score = torch.log(total.reshape(n, -1)) + max_x
            # Repeating the last token needs a blank in between: only blank-ending paths.
            rows = torch.arange(n, device=state.r.device)
            last = state.last.clamp_min(0)  # (N,) (the empty prefix has no last token)
            again = torch.exp(blank_ending.T - shift[:, None]) * exp_x[rows // k, :, last]
            again = torch.log(again.sum(1)) + max_x[rows, last]  # (N,)
            # Padded frames, where every token has log-probability PADDED: added apart, so
            # that a token only they could give stays finite, as in score_candidates.
            frames = torch.arange(start, start + phi.shape[0], device=state.r.device)
            padded = frames[:, None] >= self.lengths[self._rows][None, :]  # (S', N)
            on_padding = [PADDED + torch.logsumexp(ready_.masked_fill(~padded, float("-inf")), 0)
                          for ready_ in (phi, blank_ending)]  # (N,) each
            score = torch.logaddexp(score, on_padding[0][:, None])
            again = torch.logaddexp(again, on_padding[1])
            score[rows, last] = torch.where(state.last >= 0, again, score[rows, last])
        score[:, self.eos] = self._complete(state)
        score[:, self.blank] = float("-inf")
        return self._gains(state, score)

    def _gains(self, state: CTCPrefixState, score: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` float64 prefix scores of extensions -> ``(N, C)`` float32 gains over the
        prefix; a hypothesis CTC rules out (its prefix score is -inf) gains nothing from any
        token."""
        gain = torch.where(torch.isneginf(state.score)[:, None], float("-inf"),
                           score - state.score[:, None])
        return gain.float()

    def _complete(self, state: CTCPrefixState) -> torch.Tensor:
        """``(N,)`` float64 log-probability that the utterance spells exactly the prefix (the
        prefix complete at the last real frame): the score of ``<eos>``."""
        n = state.score.shape[0]
        at_end = state.r[self._last_frame, torch.arange(n, device=state.r.device)]  # (N, 2)
        return torch.logaddexp(at_end[:, 0], at_end[:, 1])

    def _complete_before(self, state: CTCPrefixState, start: int):
        """``phi[t]``: log-probability that the prefix is complete at frame ``t - 1``, so that a
        new token may start at ``t``; ``r_b[t]``: the same for the paths ending in a blank, the
        only ones that may repeat the last token; both ``(S - start, N)`` float64, over the
        frames from ``start``."""
        s = state.r.shape[0]
        before = state.r[max(start - 1, 0) : s - 1]  # (frames, N, 2) at t - 1
        phi = torch.logaddexp(before[..., 0], before[..., 1])  # (frames, N)
        blank_ending = before[..., 1]
        if start == 0:  # frame 0: only the empty prefix is complete "before" the utterance
            first = torch.where(state.last < 0, 0.0, float("-inf")).to(phi.dtype)[None]  # (1, N)
            phi, blank_ending = torch.cat([first, phi], 0), torch.cat([first, blank_ending], 0)
        return phi, blank_ending

    def _ready(self, state: CTCPrefixState, candidates: torch.Tensor, start: int):
        """``ready[t]``: log-probability that the prefix is complete at frame ``t - 1`` and may
        take candidate ``c`` at ``t``; ``x[t]``: log-probability of ``c`` at ``t``; both
        ``(S - start, N, C)`` float64, over the frames from ``start``."""
        x = self.x[start:, self._rows[:, None], candidates].double()
        phi, blank_ending = self._complete_before(state, start)
        # Repeating the last token needs a blank in between: only blank-ending paths extend it.
        same = (candidates == state.last[:, None])[None]  # (1, N, C)
        return torch.where(same, blank_ending[:, :, None], phi[:, :, None]), x

    def _rows_per_utterance(self, rows: torch.Tensor) -> int:
        """``k`` where ``rows`` (``(N,)`` utterance of each row) holds every utterance ``k``
        times in a row, as beam search lays them out: :meth:`rank_all` then multiplies each
        utterance's frames once for its ``k`` rows. 1 otherwise (each row on its own)."""
        b, n = self.x.shape[1], len(rows)
        k = n // b
        if k > 1 and n == k * b and torch.equal(
                rows, torch.arange(b, device=rows.device).repeat_interleave(k)):
            return k
        return 1

    def _tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``exp(x - max)``, ``(G, S, V)`` (0 on padded frames), and the max over real frames,
        ``(G, V)``, float64, of the utterance of each group of ``k`` rows; made once, shrunk by
        :meth:`keep`."""
        if self._exp_x is None:
            utterances = self._rows[:: self._group]  # (G,)
            x = self.x[:, utterances].double().transpose(0, 1)  # (G, S, V)
            frames = torch.arange(x.shape[1], device=x.device)
            padded = (frames[None, :] >= self.lengths[utterances][:, None])[..., None]  # (G, S, 1)
            x = x.masked_fill(padded, float("-inf"))  # rank_all adds the padded frames apart
            max_x = x.amax(1)
            self._max_x = torch.where(torch.isneginf(max_x), torch.zeros_like(max_x), max_x)
            self._exp_x = torch.exp(x - self._max_x[:, None]).contiguous()
        return self._exp_x, self._max_x

    def keep(self, state: CTCPrefixState, rows: torch.Tensor) -> CTCPrefixState:
        """The prefixes of ``rows`` only (frames are dim 0 of ``r``, rows dim 1)."""
        self._rows, self._blank = self._rows[rows], self._blank[:, rows]
        self._last_frame = self._last_frame[rows]
        k = self._group
        if len(rows) % k:  # not whole utterances: each row on its own from now on
            self._group, self._exp_x, self._max_x = 1, None, None
        elif self._exp_x is not None:  # whole utterances, kept in order (as beam search does)
            groups = rows[::k] // k
            self._exp_x, self._max_x = self._exp_x[groups], self._max_x[groups]
        return _rows_of(state, rows)

    def select(self, pending: CTCPending, rows: torch.Tensor, tokens: torch.Tensor) -> CTCPrefixState:
        """The states after row ``rows[i]`` took ``tokens[i]``: the recursion over frames for
        these extensions only (``r_n``, ``r_b`` of the module docstring, with cumulative sums).
        A token that was not a candidate, which only a hypothesis scored -inf can take, gets
        score -inf."""
        parent = _rows_of(pending.parent, rows)
        matches = pending.candidates[rows] == tokens[:, None]  # (N, C)
        score = pending.score[rows].masked_fill(~matches, float("-inf")).max(1).values  # (N,)
        start = pending.start
        ready, x = self._ready(parent, tokens[:, None], start)  # (S', N, 1)
        ready, x = ready[..., 0], x[..., 0]
        cum_x = torch.cumsum(x, 0)
        r_n = cum_x + torch.logcumsumexp(ready - (cum_x - x), 0)
        into_blank = torch.cat([torch.full_like(r_n[:1], float("-inf")), r_n[:-1]], 0)
        blank = self._blank[start:]
        cum_b = torch.cumsum(blank, 0)
        r_b = cum_b + torch.logcumsumexp(into_blank - (cum_b - blank), 0)
        r = torch.full_like(parent.r, float("-inf"))
        r[start:, :, 0], r[start:, :, 1] = r_n, r_b
        return CTCPrefixState(r, score, tokens)
