"""Scheduled sampling (Bengio et al., 2015): how often, at each training step, a decoder reads its
own previous prediction instead of the reference (``task.scheduled_sampling``).

``probability`` is the most it reaches; ``schedule`` says how it gets there:

* ``constant``: ``probability`` from the first step;
* ``linear``: from 0 at step 0 up to ``probability`` at ``ramp_steps``, then flat;
* ``inverse_sigmoid``: Bengio et al.'s ``1 - k / (k + exp(step / k))`` times ``probability``,
  with ``k`` chosen so that it is halfway at ``ramp_steps / 2`` (``k ln k = ramp_steps / 2``).

The decoders take the probability of the step (:class:`rnnseq.models.decoder.AttentionDecoder`,
:class:`rnnseq.models.forecaster.RegressionDecoder`); evaluation always reads the reference.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

SCHEDULES = ("constant", "linear", "inverse_sigmoid")
SETTINGS = ("probability", "schedule", "ramp_steps")


def check_scheduled_sampling(settings: Mapping[str, Any] | None,
                             default_probability: float = 0.0) -> dict:
    """``task.scheduled_sampling`` with defaults filled in (``default_probability``: what the
    task does without the setting); unknown keys, values out of range and a ``ramp_steps`` the
    schedule does not use are a ``ValueError`` naming the key."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown task.scheduled_sampling settings {unknown}; known: "
                         f"{list(SETTINGS)}")
    checked = {"probability": default_probability, "schedule": "constant", "ramp_steps": None,
               **settings}
    if not 0.0 <= checked["probability"] <= 1.0:
        raise ValueError(f"task.scheduled_sampling.probability must be in [0, 1], got "
                         f"{checked['probability']}")
    if checked["schedule"] not in SCHEDULES:
        raise ValueError(f"unknown task.scheduled_sampling.schedule {checked['schedule']!r}; "
                         f"allowed: {list(SCHEDULES)}")
    ramp = checked["ramp_steps"]
    if checked["schedule"] == "constant" and ramp is not None:
        raise ValueError("task.scheduled_sampling.ramp_steps applies to the linear and "
                         "inverse_sigmoid schedules: remove it or pick one of them")
    if checked["schedule"] != "constant" and (ramp is None or ramp <= 0):
        raise ValueError(f"task.scheduled_sampling.schedule={checked['schedule']} needs "
                         f"ramp_steps > 0, got {ramp}")
    return checked


@functools.cache
def _inverse_sigmoid_k(half_steps: float) -> float:
    """The ``k >= 1`` with ``k ln k = half_steps``, by bisection (``k ln k`` grows from 0 at 1)."""
    low, high = 1.0, max(half_steps, math.e) + 1.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if middle * math.log(middle) < half_steps else (low, middle)
    return (low + high) / 2


def sampling_probability(settings: Mapping[str, Any], step: int) -> float:
    """The probability of reading the decoder's own prediction at training step ``step``, for
    settings from :func:`check_scheduled_sampling`."""
    top, schedule, ramp = settings["probability"], settings["schedule"], settings["ramp_steps"]
    if top == 0.0 or schedule == "constant":
        return top
    if schedule == "linear":
        return top * min(1.0, step / ramp)
    k = _inverse_sigmoid_k(ramp / 2)
    exponent = step / k
    teacher = 0.0 if exponent > 700 else k / (k + math.exp(exponent))  # exp overflows past ~709
    return top * (1.0 - teacher)
