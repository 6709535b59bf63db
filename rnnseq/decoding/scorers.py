"""Scorers: the parts a search adds up to rank the next token of every hypothesis.

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
scorer fills in before them. :data:`SCORERS` maps each ``task.decoding`` weight to the scorer it
switches on, so a new scorer is a class and an entry there; the search does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


@dataclass
class ScorerSpec:
    """A scorer that ``task.decoding`` switches on with a positive ``weight_key``.

    ``build(sources, decoding)`` makes it for one batch from the ``sources`` the task provides
    (``decoder``, ``memory``, ``memory_mask``, ``vocab_size``, ``ctc_log_probs``,
    ``memory_lengths``, ``blank_id``, ``eos_id``, ``lm``); ``needs`` names the sources it cannot do
    without, so a setting that cannot apply is an error naming the key; ``options`` are the
    other ``task.decoding`` keys it reads.
    """

    weight_key: str
    build: Callable[[Mapping[str, Any], Mapping[str, Any]], Scorer]
    needs: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def _ctc(sources, decoding):
    from rnnseq.decoding.ctc_prefix import CTCPrefixScorer

    return CTCPrefixScorer(sources["ctc_log_probs"], sources["memory_lengths"],
                           sources["blank_id"], sources["eos_id"])


def _lm(sources, decoding):
    from rnnseq.decoding.lm_fusion import LMScorer

    return LMScorer(sources["lm"])


SCORERS: dict[str, ScorerSpec] = {
    spec.weight_key: spec for spec in [
        ScorerSpec("ctc_weight", _ctc, needs=("ctc_log_probs",)),
        ScorerSpec("lm_weight", _lm, needs=("lm",)),
        ScorerSpec("length_bonus", lambda s, d: LengthBonus(s["vocab_size"])),
        ScorerSpec("coverage_weight",
                   lambda s, d: CoverageScorer(s["memory_mask"], s["vocab_size"],
                                               d.get("coverage_kind", "count"),
                                               d.get("coverage_threshold", 0.5)),
                   needs=("decoder",), options=("coverage_kind", "coverage_threshold")),
    ]
}


def scorer_sources(decoder, memory: torch.Tensor, memory_mask: torch.Tensor, vocab_size: int,
                   blank_id: int, eos_id: int, ctc_log_probs: torch.Tensor | None = None,
                   memory_lengths: torch.Tensor | None = None, lm=None) -> dict[str, Any]:
    """The ``sources`` of one batch that :func:`build_scorers` builds scorers from: the attention
    decoder (``None`` for CTC prefix beam search), its ``(B, S, D)`` memory and ``(B, S)`` mask,
    ``(B, S, V)`` CTC log-probabilities if CTC scores, the fusion language model if any (moved
    to the memory's device)."""
    lengths = memory_mask.sum(-1) if memory_lengths is None else memory_lengths
    if lm is not None and lm.index.device != memory.device:
        lm = lm.to(memory.device)
    return {"decoder": decoder, "memory": memory, "memory_mask": memory_mask,
            "memory_lengths": lengths, "vocab_size": vocab_size, "ctc_log_probs": ctc_log_probs,
            "blank_id": blank_id, "eos_id": eos_id, "lm": lm}


def build_scorers(decoding: Mapping[str, Any], sources: Mapping[str, Any]) -> list[tuple[Scorer, float]]:
    """The weighted scorers of ``decoding`` for one batch.

    The attention decoder (``sources["decoder"]``) scores with weight ``1 - ctc_weight`` (joint
    CTC/attention decoding, Watanabe et al. 2017), CTC prefix scores with ``ctc_weight``; every
    other scorer with its own weight. Without a decoder (``decoder=None``: CTC prefix beam search)
    the CTC scorer weighs 1. A positive weight whose source is missing is a ``ValueError`` naming
    the key.
    """
    scorers: list[tuple[Scorer, float]] = []
    ctc_weight = float(decoding.get("ctc_weight") or 0.0)
    use_decoder = sources.get("decoder") is not None
    if use_decoder:
        if ctc_weight >= 1:
            raise ValueError(f"decoding.ctc_weight={ctc_weight} leaves the attention decoder no "
                             f"weight; use decoding.mode=ctc_beam for CTC alone")
        scorers.append((DecoderScorer(sources["decoder"], sources["memory"],
                                      sources["memory_mask"]), 1.0 - ctc_weight))
    for key, spec in SCORERS.items():
        weight = 1.0 if key == "ctc_weight" and not use_decoder else float(decoding.get(key) or 0.0)
        if weight < 0:
            raise ValueError(f"decoding.{key} must be >= 0, got {weight}")
        if weight == 0:
            continue
        missing = [name for name in spec.needs if sources.get(name) is None]
        if missing:
            raise ValueError(f"decoding.{key}={weight} needs {' and '.join(missing)}, which this "
                             f"model or decoding mode does not give; set decoding.{key}=0")
        scorers.append((spec.build(sources, decoding), weight))
    return scorers
