"""Greedy and beam search over weighted scorers (:mod:`rnnseq.decoding.scorers`).

Both decode a whole batch of utterances at once and see the same rules at every step:

- a hypothesis of utterance ``i`` must end (take ``<eos>``) after ``max_lengths[i]`` tokens, and
  may not end before ``min_lengths[i]``;
- with ``eos_threshold`` set, ``<eos>`` may only be taken where its score from the primary
  scorer is within that factor of the step's best one (SpeechBrain's rule against stopping
  early: ``log p(<eos>) >= eos_threshold * max log p``);
- partial scorers (CTC prefix scores) score only ``pre_beam`` candidates per hypothesis and
  ``<eos>``, every other token is ruled out; ``pre_beam`` at or above the vocabulary scores all.

The *primary* scorer is the first one, ``scorers[0]``: the attention decoder, or CTC where there
is none (CTC prefix beam search), as :func:`~rnnseq.decoding.scorers.build_scorers` orders them.
The pre-beam's candidates are the best tokens of the full scorers' weighted total, plus, where
the primary scorer is partial, its weighted estimate over the whole vocabulary
(:meth:`~rnnseq.decoding.scorer.Scorer.rank_all`; CTC's is exact). So with an attention decoder
the decoder, the language model and the rewards pick the tokens CTC scores (ESPnet's pre-beam),
and in CTC prefix beam search the audio picks them, not a language model or a length bonus.

Beam search keeps ``K`` live hypotheses per utterance at every step; a hypothesis that takes
``<eos>`` (where ``<eos>`` ranks among the step's ``K`` best candidates of its utterance, as it
would in a classic beam) leaves the beam for a pool of finished ones, so short hypotheses never
crowd out live ones. The pool ranks by ``score / length ** length_penalty`` (the length counts
``<eos>``; 0 disables normalisation). An utterance ends when no live hypothesis can beat its
``nbest``-th best finished one: a live hypothesis's normalised score is at most its score plus
what its scorers can still add (:meth:`~rnnseq.decoding.scorer.Scorer.max_gain`), over the
normaliser of the length that favours it most. So the early stop never changes the result.

With log-probability scorers only and ``length_penalty=0``, width one is greedy search. With a
length normalisation or a reward (length bonus, coverage), width one may look past greedy's
``<eos>`` and end with a better-scored, longer hypothesis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from rnnseq.decoding.decoder_scorer import DecoderScorer
from rnnseq.decoding.lm_fusion import LMFusion
from rnnseq.decoding.scorer import Scorer, Step
from rnnseq.decoding.scorers import build_scorers, scorer_sources


class Hypothesis(NamedTuple):
    tokens: list[int]  # without <eos>
    score: float  # total weighted score (including <eos> when it was produced)


Weighted = Sequence[tuple[Scorer, float]]


def max_decode_lengths(memory_lengths: torch.Tensor, ratio: float, minimum: int = 1) -> torch.Tensor:
    """Most tokens to produce per utterance: ``ceil(ratio * memory length)``, at least ``minimum``."""
    return torch.clamp(torch.ceil(memory_lengths.float() * ratio).long(), min=minimum)


class _Rules(NamedTuple):
    """The per-step constraints, for ``N`` rows."""

    max_lengths: torch.Tensor  # (N,)
    min_lengths: torch.Tensor  # (N,)
    eos_id: int
    eos_threshold: float | None
    pre_beam: int | None


def _step_scores(scorers: Weighted, states: list, step: Step, rules: _Rules,
                 vocab_size: int) -> tuple[torch.Tensor, list]:
    """``(N, V)`` weighted sum of every scorer at ``step`` with the rules applied, and each
    scorer's pending value."""
    total, first, pendings = _weighted_scores(scorers, states, step, rules, vocab_size)
    return _apply_end_rules(total, first, step.index, rules), pendings


def _weighted_scores(scorers: Weighted, states: list, step: Step, rules: _Rules, vocab_size: int):
    """The full scorers on every token, then the partial ones on the pre-beam candidates (every
    other token ruled out): ``(N, V)`` total, ``(N, V)`` scores of the primary scorer
    (``scorers[0]``; ``-inf`` on the tokens a partial one did not score), pendings."""
    n = len(step.tokens)
    full = [i for i, (s, _) in enumerate(scorers) if not s.partial]
    partial = [i for i, (s, _) in enumerate(scorers) if s.partial]
    pendings: list = [None] * len(scorers)
    total = torch.zeros(n, vocab_size, device=step.tokens.device)
    first = None
    for i in full:
        scorer, weight = scorers[i]
        scores, pendings[i] = scorer.score(states[i], step)
        first = scores if i == 0 else first
        total = total + weight * scores
    if not partial:
        return total, first, pendings
    ranking = _pre_beam_ranking(scorers, states, step, total, bool(full), rules, vocab_size)
    if ranking is not None:
        # <eos> is always a candidate: a hypothesis at its length limit must be able to end
        best = ranking.topk(rules.pre_beam, dim=1).indices
        candidates = torch.cat([best, best.new_full((n, 1), rules.eos_id)], 1)  # (N, C + 1)
    else:
        candidates = torch.arange(vocab_size, device=total.device).expand(n, -1)
    extra = torch.zeros(n, candidates.shape[1], device=total.device)
    for i in partial:
        scorer, weight = scorers[i]
        scores, pendings[i] = scorer.score_candidates(states[i], step, candidates)
        if i == 0:  # a partial primary scorer (CTC prefix beam search): spread it out
            first = torch.full_like(total, float("-inf")).scatter(1, candidates, scores)
        extra = extra + weight * scores
    ruled_out = torch.full_like(total, float("-inf"))
    return ruled_out.scatter(1, candidates, total.gather(1, candidates) + extra), first, pendings


def _pre_beam_ranking(scorers: Weighted, states: list, step: Step, total: torch.Tensor,
                      has_full: bool, rules: _Rules, vocab_size: int) -> torch.Tensor | None:
    """``(N, V)`` ranking of the tokens the partial scorers may score: the full scorers' weighted
    ``total`` (``(N, V)``), plus the primary scorer's weighted ``rank_all`` where it is partial
    and has one; ``None`` (score every token) without a pre-beam narrower than the vocabulary or
    anything to rank by."""
    if rules.pre_beam is None or rules.pre_beam >= vocab_size:
        return None
    primary, weight = scorers[0]
    estimate = primary.rank_all(states[0], step) if primary.partial else None
    if estimate is not None:
        return total + weight * estimate
    return total if has_full else None


def _apply_end_rules(total: torch.Tensor, first: torch.Tensor, index: int,
                     rules: _Rules) -> torch.Tensor:
    """Rules ``<eos>`` out before the minimum length or below the threshold, and everything but
    ``<eos>`` out at the length limit."""
    eos = rules.eos_id
    may_end = index >= rules.min_lengths
    if rules.eos_threshold is not None:
        may_end &= first[:, eos] >= rules.eos_threshold * first.max(-1).values
    must_end = index >= rules.max_lengths  # (N,) at the limit <eos> is the only way on
    may_end |= must_end
    ending = torch.where(may_end, total[:, eos], float("-inf"))
    total = total.masked_fill(must_end[:, None], float("-inf"))
    total[:, eos] = ending
    return total


def _rules(max_lengths, min_lengths, eos_id, eos_threshold, pre_beam, rows) -> _Rules:
    max_lengths = max_lengths.to(rows.device)
    min_lengths = (torch.zeros_like(max_lengths) if min_lengths is None
                   else torch.minimum(min_lengths.to(rows.device), max_lengths))
    return _Rules(max_lengths[rows], min_lengths[rows], eos_id, eos_threshold, pre_beam)


@torch.no_grad()
def scorer_greedy_search(scorers: Weighted, batch_size: int, vocab_size: int,
                         max_lengths: torch.Tensor, eos_id: int,
                         min_lengths: torch.Tensor | None = None,
                         eos_threshold: float | None = None, pre_beam: int | None = None,
                         device: torch.device | None = None,
                         ) -> tuple[list[Hypothesis], torch.Tensor | None]:
    """The best next token at every step over weighted ``scorers``, under the same rules as
    :func:`scorer_beam_search` (:func:`greedy_search` builds the scorers of an attention
    decoder).

    Returns one hypothesis per utterance and the ``(B, T, S)`` attention weights of every step
    (``None`` without an attention decoder).
    """
    rows = torch.arange(batch_size, device=device)
    rules = _rules(max_lengths, min_lengths, eos_id, eos_threshold, pre_beam, rows)
    states = [s.init_state(rows) for s, _ in scorers]
    tokens = torch.full((batch_size,), eos_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    scores = torch.zeros(batch_size, device=device)
    steps, weights = [], []
    for t in range(int(max_lengths.max()) + 1):
        step = Step(t, tokens)
        total, pendings = _step_scores(scorers, states, step, rules, vocab_size)
        best, tokens = total.max(-1)
        tokens = torch.where(finished, eos_id, tokens)
        scores += torch.where(finished, 0.0, best)
        steps.append(tokens)
        weights.append(step.attention)
        finished |= tokens == eos_id
        if bool(finished.all()):
            break
        states = [s.select(p, rows, tokens) for (s, _), p in zip(scorers, pendings)]
    history = torch.stack(steps, 1).tolist()  # (B, T)
    hyps = [Hypothesis(_until_eos(row, eos_id), s) for row, s in zip(history, scores.tolist())]
    attention = torch.stack(weights, 1) if weights[0] is not None else None
    return hyps, attention


@torch.no_grad()
def scorer_beam_search(scorers: Weighted, batch_size: int, vocab_size: int,
                       max_lengths: torch.Tensor, eos_id: int, beam_size: int = 4,
                       length_penalty: float = 1.0, min_lengths: torch.Tensor | None = None,
                       eos_threshold: float | None = None, pre_beam: int | None = None,
                       nbest: int = 1, device: torch.device | None = None,
                       stop_early: bool = True) -> list[list[Hypothesis]]:
    """Beam search over weighted ``scorers``, ``batch_size`` utterances x ``beam_size`` rows
    in one batch (:func:`beam_search` builds the scorers of an attention decoder).

    Returns, per utterance, its ``nbest`` best finished hypotheses, best first by normalised
    score (each with its total, unnormalised score); see the module docstring for the rules.
    ``stop_early=False`` runs every utterance to its length limit (for tests: the result is the
    same, only slower).
    """
    b, k = batch_size, beam_size
    utterance = torch.arange(b, device=device).repeat_interleave(k)  # (B*K,) utterance of a row
    rules = _rules(max_lengths, min_lengths, eos_id, eos_threshold, pre_beam, utterance)
    states = [s.init_state(utterance) for s, _ in scorers]
    active = torch.arange(b, device=device)  # utterances still searched, (A,)
    limits = rules.max_lengths.view(b, k)[:, 0]  # (A,)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all rows start identical: keep one alive
    tokens = torch.full((b * k,), eos_id, dtype=torch.long, device=device)
    pool = _Pool(b, max(k, nbest), device)
    token_history, parent_history = [], []  # each (B, K) per step, by utterance
    for t in range(int(limits.max()) + 1):
        a = len(active)
        step = Step(t, tokens)
        total, pendings = _step_scores(scorers, states, step, rules, vocab_size)
        # a dead row (no hypothesis yet) stays dead, whatever it scores
        candidates = torch.where(torch.isneginf(scores)[..., None], float("-inf"),
                                 scores[..., None] + total.view(a, k, vocab_size))  # (A, K, V)
        # <eos> ends a hypothesis where it ranks among the K best candidates of its utterance,
        # as it would in a beam that kept it; the live beam then takes the K best other tokens.
        kth_best = candidates.view(a, -1).topk(k, dim=1).values[:, -1:]  # (A, 1)
        ending = candidates[..., eos_id]  # (A, K)
        pool.add(active, ending.masked_fill(ending < kth_best, float("-inf")), t, length_penalty)
        candidates[..., eos_id] = float("-inf")
        scores, flat = candidates.view(a, -1).topk(k, dim=1)
        parent, token = flat // vocab_size, flat % vocab_size
        token_history.append(torch.zeros(b, k, dtype=torch.long, device=device).index_copy(
            0, active, token))
        parent_history.append(torch.zeros(b, k, dtype=torch.long, device=device).index_copy(
            0, active, parent))
        rows = (parent + k * torch.arange(a, device=device)[:, None]).view(-1)
        tokens = token.view(-1)
        states = [s.select(p, rows, tokens) for (s, _), p in zip(scorers, pendings)]
        # Upper bound on the normalised score of each live hypothesis when it ends: it holds
        # t + 1 tokens and may take up to `remaining` more, <eos> included.
        remaining = (limits[:, None] - t).clamp_min(0).expand(a, k).reshape(-1)  # (A*K,)
        best_possible = scores.clone()
        for (scorer, weight), state in zip(scorers, states):
            best_possible += weight * torch.as_tensor(scorer.max_gain(state, remaining),
                                                      device=scores.device).expand(a * k).view(a, k)
        shortest = float(t + 2) ** length_penalty
        longest = (limits[:, None] + 1).float() ** length_penalty
        bound = torch.where(best_possible > 0, best_possible / shortest, best_possible / longest)
        done = t >= limits
        if stop_early:
            done |= pool.normalised[active, nbest - 1] >= bound.max(1).values
        if bool(done.all()):
            break
        if bool(done.any()):  # the ended utterances leave the batch: later steps cost less
            keep = (~done).nonzero().squeeze(1)  # (A',) positions among the active
            kept_rows = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)
            states = [s.keep(state, kept_rows) for (s, _), state in zip(scorers, states)]
            active, limits, scores = active[keep], limits[keep], scores[keep]
            tokens = tokens[kept_rows]
            rules = rules._replace(max_lengths=rules.max_lengths[kept_rows],
                                   min_lengths=rules.min_lengths[kept_rows])
    return pool.hypotheses(token_history, parent_history, nbest, eos_id)


class _Pool:
    """The finished hypotheses of every utterance: the ``size`` best by normalised score, each
    remembered by its step and the beam row it ended from, so that its tokens are read back
    from the search history at the end (on the device, one transfer for the whole batch)."""

    def __init__(self, batch_size: int, size: int, device):
        self.normalised = torch.full((batch_size, size), float("-inf"), device=device)
        self.score = torch.full((batch_size, size), float("-inf"), device=device)
        self.step = torch.zeros(batch_size, size, dtype=torch.long, device=device)
        self.beam = torch.zeros(batch_size, size, dtype=torch.long, device=device)

    def add(self, utterances: torch.Tensor, eos_scores: torch.Tensor, step: int,
            length_penalty: float) -> None:
        """``(A, K)`` totals of the hypotheses of ``utterances`` (``(A,)``) that end at ``step``
        (``step`` tokens + <eos>)."""
        normalised = eos_scores / float(step + 1) ** length_penalty
        k = eos_scores.shape[1]
        beams = torch.arange(k, device=eos_scores.device).expand_as(eos_scores)
        fields = ("normalised", "score", "step", "beam")
        merged = [torch.cat([getattr(self, name)[utterances], new], 1) for name, new in zip(
            fields, (normalised, eos_scores, torch.full_like(beams, step), beams))]
        keep = merged[0].topk(self.normalised.shape[1], dim=1).indices
        for name, values in zip(fields, merged):
            getattr(self, name)[utterances] = values.gather(1, keep)

    def hypotheses(self, token_history: list[torch.Tensor], parent_history: list[torch.Tensor],
                   nbest: int, eos_id: int) -> list[list[Hypothesis]]:
        """The ``nbest`` best of every utterance (fewer if fewer ended with a finite score)."""
        b = self.score.shape[0]
        steps, beams = self.step[:, :nbest].reshape(-1), self.beam[:, :nbest].reshape(-1)
        utterance = torch.arange(b, device=steps.device).repeat_interleave(nbest)
        length = len(token_history)
        out = torch.full((len(steps), max(length, 1)), eos_id, dtype=torch.long, device=steps.device)
        for u in reversed(range(length)):  # the entry ending at step s read rows of steps < s
            active = u < steps
            out[:, u] = torch.where(active, token_history[u][utterance, beams], eos_id)
            beams = torch.where(active, parent_history[u][utterance, beams], beams)
        # one transfer from the device: tokens, length and total of every entry (float64 holds
        # token ids exactly)
        table = torch.cat([out.double(), steps[:, None].double(),
                           self.score[:, :nbest].reshape(-1, 1).double()], 1).tolist()
        result: list[list[Hypothesis]] = [[] for _ in range(b)]
        for i, row in enumerate(table):
            total, n = row[-1], int(row[-2])
            if total != float("-inf"):
                result[i // nbest].append(Hypothesis([int(t) for t in row[:n]], total))
        return result


def _until_eos(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens


# -- the attention decoder's searches, with the classic arguments ---------------------------------

def _decoder_scorers(decoder, memory, memory_mask, vocab_size, ctc_log_probs=None, ctc_weight=0.0,
                     blank_id=0, eos_id=1, lm=None, lm_weight=0.0, **weights) -> list:
    sources = scorer_sources(decoder, memory, memory_mask, vocab_size, blank_id, eos_id,
                             ctc_log_probs=ctc_log_probs, lm=lm)
    # a weight without its source is an error in build_scorers, as it is for a task's decoding
    return build_scorers({"ctc_weight": ctc_weight, "lm_weight": lm_weight, **weights}, sources)


@torch.no_grad()
def greedy_search(
    decoder,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    eos_id: int,
    return_attention: bool = False,
) -> tuple[list[Hypothesis], torch.Tensor | None]:
    """The attention decoder's most likely token at every step for ``(B, S, D)`` memory.

    Returns one hypothesis per utterance and, if asked, the ``(B, T, S)`` attention weights.
    """
    scorers = [(DecoderScorer(decoder, memory, memory_mask), 1.0)]
    vocab_size = _vocab_size(decoder, memory, memory_mask)
    hyps, attention = scorer_greedy_search(scorers, memory.shape[0], vocab_size, max_lengths, eos_id,
                             device=memory.device)
    return hyps, (attention if return_attention else None)


@torch.no_grad()
def beam_search(
    decoder,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    eos_id: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    ctc_log_probs: torch.Tensor | None = None,
    ctc_weight: float = 0.0,
    blank_id: int = 0,
    lm: LMFusion | None = None,
    lm_weight: float = 0.0,
    **options,
) -> list[Hypothesis]:
    """The 1-best of :func:`scorer_beam_search` for an attention decoder over ``(B, S, D)`` memory.

    With ``ctc_weight > 0`` and ``(B, S, V)`` CTC log-probabilities of the same memory frames, every
    step scores ``(1 - ctc_weight) * attention + ctc_weight * CTC prefix gain`` (joint
    CTC/attention decoding): CTC vetoes hypotheses that skip or repeat parts of the audio. With a
    language model ``lm``, ``lm_weight * log p_LM(token | prefix)`` is added to every step's score
    (shallow fusion). ``options`` are further scorer weights (``length_bonus``,
    ``coverage_weight``) and :func:`scorer_beam_search`'s keywords.
    """
    search_keys = ("min_lengths", "eos_threshold", "pre_beam", "nbest")
    search = {key: options.pop(key) for key in search_keys if key in options}
    vocab_size = _vocab_size(decoder, memory, memory_mask)
    scorers = _decoder_scorers(decoder, memory, memory_mask, vocab_size, ctc_log_probs,
                               ctc_weight, blank_id, eos_id, lm, lm_weight, **options)
    nbest = scorer_beam_search(scorers, memory.shape[0], vocab_size, max_lengths, eos_id, beam_size,
                 length_penalty, device=memory.device, **search)
    return [hyps[0] if hyps else Hypothesis([], float("-inf")) for hyps in nbest]


def _vocab_size(decoder, memory, memory_mask) -> int:
    size = getattr(decoder, "vocab_size", None)
    if size is None:  # any decoder with the step interface: ask it once
        state = decoder.init_state(memory[:1], memory_mask[:1])
        tokens = torch.zeros(1, dtype=torch.long, device=memory.device)
        size = decoder.step(tokens, state, memory[:1], memory_mask[:1])[0].shape[-1]
    return int(size)
