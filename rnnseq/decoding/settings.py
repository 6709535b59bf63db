"""The decoding settings of a sequence-to-sequence task (``task.decoding``): which search, its
sizes and limits, and the weights of the scorers it adds up. :func:`check_decoding` refuses a
setting that could not apply, naming the key; :class:`DecodingSettings` is the checked settings as
one typed object, which the task reads instead of string keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from rnnseq.decoding.coverage import CoverageScorer
from rnnseq.decoding.scorers import SCORERS

DECODING_MODES = ("beam", "greedy", "ctc_greedy", "ctc_beam")
BEAM_MODES = ("beam", "ctc_beam")
SEARCH_KEYS = ("mode", "max_length_ratio", "min_length_ratio", "beam_size", "length_penalty",
               "pre_beam", "eos_threshold", "nbest", "lm")
# the search's own settings, then each scorer's weight and options (rnnseq.decoding.scorers)
DECODING_KEYS = SEARCH_KEYS + tuple(SCORERS) + tuple(
    option for spec in SCORERS.values() for option in spec.options)


def default_pre_beam(beam_size: int) -> int:
    """CTC prefix scores per hypothesis when ``decoding.pre_beam=null``: at least 32 candidates,
    so a character vocabulary is scored whole (exact; ESPnet's 1.5 x beam cost 0.7 WER points at
    beam 4 here, 3 x beam 0.4 with an LM), and 3 x beam for wide beams. Scoring a candidate is one
    sum over frames, so 32 of 1,000 subwords cost 1.4x what 31 characters do
    (bench/ctc_prefix_scoring.py)."""
    return max(32, 3 * beam_size)


# what each setting is when it is off: beam search alone reads these
BEAM_ONLY_OFF = {**{key: 0.0 for key in SCORERS}, "lm": None, "pre_beam": None,
                 "eos_threshold": None, "nbest": 1, "min_length_ratio": 0.0}


def not_applicable_in(mode: str, decoding: dict, keep: dict) -> dict:
    """The settings of ``decoding`` that ``mode`` cannot use, switched off, except those in
    ``keep`` (the ones asked for now, which :func:`check_decoding` still judges): a recipe that
    decodes with a CTC weight can still be scored with ``decoding.mode=greedy``."""
    if mode == "beam":
        return {}
    off = {"ctc_weight": 0.0, "coverage_weight": 0.0} if mode == "ctc_beam" else BEAM_ONLY_OFF
    return {key: value for key, value in off.items()
            if key not in keep and key in decoding and decoding[key] not in (value, None)}


def check_decoding(decoding: dict, has_ctc: bool) -> None:
    """Raises a ``ValueError`` naming the key when a decoding setting cannot apply: CTC scores
    without a CTC head, scorer weights outside beam search, a language model without a weight or
    a weight without a language model, values out of range."""
    mode = decoding.get("mode", "beam")
    if mode not in DECODING_MODES:
        raise ValueError(f"decoding.mode={mode!r} is not one of {', '.join(DECODING_MODES)}")
    ctc_weight = decoding.get("ctc_weight") or 0.0
    lm, lm_weight = decoding.get("lm"), decoding.get("lm_weight") or 0.0
    if not has_ctc and (ctc_weight > 0 or mode.startswith("ctc")):
        what = f"decoding.mode={mode}" if mode.startswith("ctc") else f"decoding.ctc_weight={ctc_weight}"
        raise ValueError(f"{what} needs a CTC head, and this model has none (it was built with "
                         f"task.ctc_weight=0); set decoding.ctc_weight=0 and decoding.mode=beam "
                         f"or greedy, or train with task.ctc_weight > 0")
    weights = {key: decoding.get(key) or 0.0 for key in SCORERS}
    for key, value in {**weights, "min_length_ratio": decoding.get("min_length_ratio") or 0.0}.items():
        if value < 0:
            raise ValueError(f"decoding.{key} must be >= 0, got {value}")
    used = [key for key, value in weights.items() if value > 0] + (["lm"] if lm else [])
    used += [key for key in ("pre_beam", "eos_threshold") if decoding.get(key) is not None]
    used += ["nbest"] if (decoding.get("nbest") or 1) > 1 else []
    used += ["min_length_ratio"] if (decoding.get("min_length_ratio") or 0.0) > 0 else []
    if mode not in BEAM_MODES and used:
        raise ValueError(f"decoding.{used[0]} is used by beam search only, not by "
                         f"decoding.mode={mode}; set decoding.mode=beam or drop it")
    if mode == "ctc_beam":
        for key in ("ctc_weight", "coverage_weight"):
            if weights[key] > 0:
                why = ("CTC weighs 1 there" if key == "ctc_weight"
                       else "coverage reads the attention decoder's weights")
                raise ValueError(f"decoding.{key}={weights[key]} does not apply to "
                                 f"decoding.mode=ctc_beam ({why}); set decoding.{key}=0")
    if weights["length_bonus"] > 0 and decoding.get("length_penalty", 1.0) == 1.0:
        raise ValueError(f"decoding.length_bonus={weights['length_bonus']} changes nothing with "
                         f"decoding.length_penalty=1 (every hypothesis's score per token gains "
                         f"the same); set decoding.length_penalty=0 (ESPnet's way) or drop it")
    kinds = CoverageScorer.KINDS
    if decoding.get("coverage_kind", "count") not in kinds:
        raise ValueError(f"decoding.coverage_kind={decoding['coverage_kind']!r} is not one of "
                         f"{', '.join(kinds)}")
    if decoding.get("pre_beam") is not None and (mode != "ctc_beam" and ctc_weight == 0):
        raise ValueError(f"decoding.pre_beam={decoding['pre_beam']} limits CTC prefix scoring, "
                         f"which is off (decoding.ctc_weight=0); drop it or set a CTC weight")
    for key in ("pre_beam", "nbest", "beam_size"):
        if decoding.get(key) is not None and decoding[key] < 1:
            raise ValueError(f"decoding.{key} must be >= 1, got {decoding[key]}")
    if decoding.get("eos_threshold") is not None and decoding["eos_threshold"] < 1:
        raise ValueError(f"decoding.eos_threshold must be >= 1 (<eos> within that factor of the "
                         f"best log-probability; 1.5 in SpeechBrain), got {decoding['eos_threshold']}")
    if lm and lm_weight == 0:
        raise ValueError(f"decoding.lm={lm} is set but decoding.lm_weight is 0, so it would not "
                         f"change anything; give decoding.lm_weight (e.g. 0.2)")
    if lm_weight and not lm:
        raise ValueError(f"decoding.lm_weight={lm_weight} has no language model to weigh; give "
                         f"decoding.lm=<language-model run folder or checkpoint>")


@dataclass(frozen=True)
class DecodingSettings:
    """``task.decoding`` as one typed object, settings left out at their defaults (check them
    first with :func:`check_decoding`)."""

    mode: str = "beam"
    beam_size: int = 4
    length_penalty: float = 1.0
    max_length_ratio: float = 1.0
    min_length_ratio: float = 0.0
    pre_beam: int | None = None  # CTC prefix scores per hypothesis (None: default_pre_beam)
    eos_threshold: float | None = None
    nbest: int = 1
    lm: str | None = None
    ctc_weight: float = 0.0
    lm_weight: float = 0.0
    length_bonus: float = 0.0
    coverage_weight: float = 0.0
    coverage_kind: str = "count"
    coverage_threshold: float = 0.5

    @classmethod
    def from_mapping(cls, decoding: Mapping[str, Any]) -> DecodingSettings:
        """The settings of a ``task.decoding`` mapping; a ``None`` value means the default, an
        unknown key is a ``ValueError`` naming it."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(decoding) - names)
        if unknown:
            raise ValueError(f"unknown decoding settings {unknown}; known: {sorted(names)}")
        return cls(**{key: value for key, value in decoding.items() if value is not None})

    @property
    def beam_search(self) -> bool:
        """Whether the mode is a beam search (``beam`` or ``ctc_beam``)."""
        return self.mode in BEAM_MODES

    @property
    def uses_ctc(self) -> bool:
        """Whether CTC scores the hypotheses (CTC prefix beam search, or a CTC weight)."""
        return self.mode == "ctc_beam" or self.ctc_weight > 0

    @property
    def candidates(self) -> int:
        """CTC prefix scores per hypothesis: ``pre_beam``, or :func:`default_pre_beam`."""
        return self.pre_beam or default_pre_beam(self.beam_size)
