"""The scorer registry: which ``task.decoding`` weight switches on which scorer, and the weighted
scorers of one batch (:func:`build_scorers`).

:data:`SCORERS` maps each weight to its scorer (:mod:`rnnseq.decoding.scorer` states the
interface every scorer has), so a new scorer is a class in a module of its own and an entry here;
the search does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from rnnseq.decoding.coverage import CoverageScorer
from rnnseq.decoding.ctc_prefix import CTCPrefixScorer
from rnnseq.decoding.decoder_scorer import DecoderScorer
from rnnseq.decoding.length_bonus import LengthBonus
from rnnseq.decoding.lm_fusion import LMScorer
from rnnseq.decoding.scorer import Scorer


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
    return CTCPrefixScorer(sources["ctc_log_probs"], sources["memory_lengths"],
                           sources["blank_id"], sources["eos_id"])


def _lm(sources, decoding):
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
