"""Multi-step forecasting as sequence-to-sequence regression: a recurrent encoder reads the
history window, an autoregressive recurrent decoder emits the next H values, optionally attending
over the encoder's outputs."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from rnnseq.models.recurrent import (
    Cell,
    build_recurrent,
    parse_cell,
    require_positive,
    step_recurrent,
    zero_state,
)

ANCHORS = ("last", "none")


def calendar_features(positions: torch.Tensor, season: int) -> torch.Tensor:
    """``(B, T)`` series positions -> ``(B, T, 2)`` sine and cosine of the phase in the season,
    so that the model knows which month (of 12) or which year of a cycle each value belongs to."""
    angle = (positions % season).float() * (2 * math.pi / season)
    return torch.stack([angle.sin(), angle.cos()], dim=-1)


class RegressionDecoder(nn.Module):
    """Emits one value per step; the next step reads its own prediction or, in training with
    scheduled sampling, the true value.

    Its state starts from a projection of the encoder's first and last outputs (the ends of the
    two directions of a bidirectional encoder). With ``attention`` each step also reads a context
    vector over the encoder outputs; without it, the state carries everything.

    Args:
        memory_dim: size D of the encoder outputs.
        step_features: size E of the known features of every target step (0 or 2 calendar ones).
        hidden_size, num_layers: of the recurrent layers.
        dropout: between recurrent layers and on the last one's output.
        cell: a name of :data:`rnnseq.models.recurrent.CELLS` or a cell setting (``model.cell``).
        zoneout: see :class:`rnnseq.models.recurrent.CellStack` (0: off).
        attention: an attention ``_partial_`` (``rnnseq.models.attention``), or ``None``.

    Shapes: ``forward((B, S, D) memory, (B,) last value, (B, H, E) step features[, (B, H)
    targets]) -> ((B, H) predictions, (B, H, S) attention weights or None)``.
    """

    def __init__(self, memory_dim: int, step_features: int = 0, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.1, cell: str | Cell | dict = "lstm",
                 zoneout: float = 0.0, attention: Callable[..., nn.Module] | None = None):
        super().__init__()
        require_positive("decoder", hidden_size=hidden_size, num_layers=num_layers)
        cell = parse_cell(cell, "model.decoder.cell")
        context_dim = memory_dim if attention else 0
        query_dim = cell.output_size(hidden_size)
        # registered in this order: an optimizer's saved state follows the parameters' order
        self.attention = attention(query_dim=query_dim, memory_dim=memory_dim) if attention else None
        self.init_state = nn.Linear(2 * memory_dim, num_layers * query_dim)
        self.rnn = build_recurrent(cell, 1 + step_features + context_dim, hidden_size, num_layers,
                                   dropout, zoneout, key="model.decoder")
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(query_dim + context_dim, 1)

    def forward(self, memory: torch.Tensor, last_value: torch.Tensor,
                step_features: torch.Tensor, targets: torch.Tensor | None = None,
                sampling_probability: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """With ``targets``, each row reads at every step after the first the true previous
        value with probability ``1 - sampling_probability`` (teacher forcing), else its own
        prediction; at 1 (the default) it always reads its own, as in inference."""
        batch, horizon = step_features.shape[:2]
        summary = torch.cat([memory[:, 0], memory[:, -1]], dim=-1)  # (B, 2D)
        h = torch.tanh(self.init_state(summary)).view(batch, self.rnn.num_layers, -1)
        h = h.transpose(0, 1).contiguous()  # (L, B, P)
        hidden = (h, zero_state(self.rnn, batch, h)[1])
        mask = memory.new_ones(memory.shape[:2], dtype=torch.bool)  # windows have no padding
        state = self.attention.init_state(memory, mask) if self.attention is not None else None
        context = memory.new_zeros(batch, memory.shape[-1] if state is not None else 0)
        value = last_value.unsqueeze(-1)  # (B, 1)
        teacher = targets is not None and sampling_probability < 1
        predictions, weights = [], []
        for t in range(horizon):
            if teacher and t > 0:
                true = torch.rand(batch, 1, device=value.device) >= sampling_probability
                value = torch.where(true, targets[:, t - 1:t], value)
            x = torch.cat([value, step_features[:, t], context], dim=-1)
            out, hidden = step_recurrent(self.rnn, x, hidden)
            out = self.dropout(out)
            if state is not None:
                context, w, state = self.attention(hidden[0][-1], memory, mask, state)
                weights.append(w)
            value = self.out(torch.cat([out, context], dim=-1))  # (B, 1)
            predictions.append(value)
        return torch.cat(predictions, dim=1), torch.stack(weights, 1) if weights else None


class Seq2SeqForecaster(nn.Module):
    """Encoder over the history, regression decoder over the horizon.

    ``anchor="last"`` subtracts the last history value from the window and adds it back to the
    forecast: the network models changes, so a level the training span never reached (a rising
    trend) is no harder than a familiar one.

    Shapes: ``forward((B, L) history, (B,) origins) -> (B, H)`` forecasts in the same (scaled)
    units; ``origins`` are the series positions of the first target step. In training,
    ``targets`` ``(B, H)`` and ``sampling_probability`` < 1 feed the decoder true values
    (:class:`RegressionDecoder`).
    """

    def __init__(self, encoder: nn.Module, decoder: RegressionDecoder, horizon: int,
                 season: int, anchor: str = "last", calendar: bool = True):
        super().__init__()
        if anchor not in ANCHORS:
            raise ValueError(f"unknown model.anchor {anchor!r}; allowed: {list(ANCHORS)}")
        require_positive("forecaster", horizon=horizon, season=season)
        self.encoder, self.decoder = encoder, decoder
        self.horizon, self.season, self.anchor = horizon, season, anchor
        self.calendar = calendar and season > 1

    def forward(self, history: torch.Tensor, origins: torch.Tensor,
                return_attention: bool = False, targets: torch.Tensor | None = None,
                sampling_probability: float = 1.0):
        batch, length = history.shape
        base = history[:, -1:] if self.anchor == "last" else history.new_zeros(batch, 1)
        inputs = (history - base).unsqueeze(-1)  # (B, L, 1)
        steps = origins.unsqueeze(-1) + torch.arange(-length, self.horizon, device=origins.device)
        if self.calendar:
            known = calendar_features(steps, self.season)  # (B, L + H, 2)
            inputs = torch.cat([inputs, known[:, :length]], dim=-1)
            future = known[:, length:]
        else:
            future = history.new_zeros(batch, self.horizon, 0)
        lengths = torch.full((batch,), length, dtype=torch.long, device=history.device)
        memory, _ = self.encoder(inputs, lengths)  # (B, L, D)
        changes, attention = self.decoder(
            memory, inputs[:, -1, 0], future,
            targets=None if targets is None else targets - base,
            sampling_probability=sampling_probability)
        forecast = changes + base
        return (forecast, attention) if return_attention else forecast


def build_forecaster(model: Mapping[str, Any], horizon: int, season: int) -> Seq2SeqForecaster:
    """Builds a :class:`Seq2SeqForecaster` from the ``model`` config group: ``model.encoder`` and
    ``model.decoder`` (Hydra ``_partial_`` configs), ``model.attention`` (a ``_partial_`` or
    null), ``model.anchor`` and ``model.calendar``; horizon and season come from the data."""
    calendar = bool(model.get("calendar", True)) and season > 1
    features = 2 if calendar else 0
    encoder = instantiate(model["encoder"])(input_dim=1 + features)
    if getattr(encoder, "subsampling_factor", 1) != 1:
        raise ValueError("a forecaster's encoder must keep every step: set "
                         "model.encoder.subsampling=none")
    attention = None
    if model.get("attention"):
        if "_target_" not in model["attention"]:
            raise ValueError("model.attention has settings but no attention class: pick one "
                             "(model/attention=additive) or none ('~model/attention')")
        attention = instantiate(model["attention"])
    decoder = instantiate(model["decoder"])(memory_dim=encoder.output_dim,
                                            step_features=features, attention=attention)
    return Seq2SeqForecaster(encoder, decoder, horizon, season,
                             anchor=model.get("anchor", "last"), calendar=calendar)
