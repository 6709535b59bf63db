"""Recurrent layers by cell name: the one place where a cell setting becomes a module.

:func:`build_recurrent` turns a cell setting (``model.cell``, or a module's own ``cell``) into a
``batch_first`` module with :class:`torch.nn.LSTM`'s call interface; every model builds its
recurrent layers through it, and runs them through :func:`run_recurrent` /
:func:`step_recurrent`, which speak one state format for every cell. PyTorch's fused modules
(``nn.LSTM``, ``nn.GRU``, ``nn.RNN``: oneDNN on CPU, cuDNN on GPU) are used whenever they can
compute the cell; :class:`CellStack` runs the rest (custom cells stacked, zoneout).

Encoders run over padded batches. Packed sequences would keep padding out of the backward
direction, but on CPU they leave oneDNN's fused RNN kernels for a loop of small matrix products
(1.8x slower for a 3-layer bidirectional LSTM, batch 64, 60 steps, 2 cores). Instead, each
direction is a unidirectional layer over the padded batch; the backward one reads every sequence
reversed *within its own length*, so padding stays at the end where a causal layer never sees it.
The result equals the packed computation exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.cells import LayerNormLSTM, PeepholeLSTM

CELLS = ("lstm", "gru", "rnn", "lstmp", "peephole_lstm", "ln_lstm")
# PyTorch's fused modules, and rnnseq's cells with nn.LSTM's interface (rnnseq.models.cells)
FUSED_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "lstmp": nn.LSTM, "gru": nn.GRU,
                                            "rnn": nn.RNN}
CUSTOM_CELLS: dict[str, type[nn.Module]] = {"peephole_lstm": PeepholeLSTM,
                                            "ln_lstm": LayerNormLSTM}
_CELL_SETTINGS = ("name", "proj_size", "forget_bias")

# A recurrent state in one format for every cell: ``(h, c)``, h ``(L, B, P)`` (P the output size:
# the projection of an LSTMP, else the hidden size), c ``(L, B, H)`` for LSTMs and ``(L, B, 0)``
# for the GRU and the plain RNN, which have no cell state.
RecurrentState = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Cell:
    """A recurrent cell setting (see ``rnnseq/conf/model/cell/``).

    Attributes:
        name: one of :data:`CELLS`.
        proj_size: ``lstmp`` only: size of the projected output ``h`` (``None``: half of each
            module's hidden size).
        forget_bias: LSTMs only: the forget gate's bias at initialisation (1.0 in Jozefowicz
            et al., 2015); ``None`` keeps PyTorch's uniform initialisation.
    """

    name: str = "lstm"
    proj_size: int | None = None
    forget_bias: float | None = None

    @property
    def has_cell_state(self) -> bool:
        """Whether the cell carries a cell state ``c`` besides ``h`` (every LSTM)."""
        if self.name in CUSTOM_CELLS:
            return CUSTOM_CELLS[self.name].has_cell_state
        return self.name in ("lstm", "lstmp")

    def output_size(self, hidden_size: int) -> int:
        """Size of the output ``h`` of a layer with ``hidden_size`` units."""
        if self.name != "lstmp":
            return hidden_size
        return self.proj_size if self.proj_size is not None else max(1, hidden_size // 2)


def parse_cell(cell: str | Mapping | Cell, key: str = "cell") -> Cell:
    """A :class:`Cell` from a name (``"gru"``) or a mapping of its settings (``model.cell``);
    ``key`` is the config key the setting came from, named in every error."""
    if isinstance(cell, Cell):
        return cell
    settings = {"name": cell} if isinstance(cell, str) else dict(cell)
    unknown = sorted(set(settings) - set(_CELL_SETTINGS))
    if unknown:
        raise ValueError(f"{key} has unknown settings {unknown}; allowed: {list(_CELL_SETTINGS)}")
    parsed = Cell(**settings)
    if parsed.name not in CELLS:
        raise ValueError(f"unknown recurrent cell {parsed.name!r} ({key}); allowed: {list(CELLS)}")
    if parsed.proj_size is not None and (parsed.name != "lstmp" or parsed.proj_size <= 0):
        raise ValueError(f"{key}.proj_size applies to a positive projection of lstmp only (cell "
                         f"{parsed.name!r}, proj_size {parsed.proj_size}): remove it or pick lstmp")
    if parsed.forget_bias is not None and not parsed.has_cell_state:
        raise ValueError(f"{key}.forget_bias applies to LSTMs only ({parsed.name!r} has no forget "
                         f"gate): remove it")
    return parsed


def require_positive(module: str, **sizes: int) -> None:
    """Raises a ``ValueError`` naming every size of ``module`` that is not positive."""
    bad = {name: value for name, value in sizes.items() if value <= 0}
    if bad:
        listed = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise ValueError(f"{module} sizes must be positive, got {listed}")


@functools.cache
def _cpu_has_bf16_rnn_kernels() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _as_float(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.float()
    return type(state)(_as_float(s) for s in state)


def run_fused(rnn: nn.Module, x: torch.Tensor, hidden=None):
    """``rnn(x, hidden)`` for a module with ``nn.LSTM``'s interface, in float32 where it must be.

    Under CPU autocast (``trainer.precision=bf16-mixed``) on a CPU without bfloat16 kernels (no
    AVX-512 BF16 or AMX), oneDNN cannot build a bfloat16 recurrent layer, so the layer runs in
    float32 there and the rest of the network in bfloat16. The custom cells
    (:mod:`rnnseq.models.cells`) always run in float32: their recurrences are written for one
    dtype."""
    device = x.device.type
    custom = not isinstance(rnn, nn.RNNBase)
    if torch.is_autocast_enabled(device) and (
            custom or (device == "cpu" and not _cpu_has_bf16_rnn_kernels())):
        with torch.autocast(device, enabled=False):
            return rnn(x.float(), _as_float(hidden))
    return rnn(x, hidden)


def _set_forget_bias(module: nn.Module, value: float) -> None:
    """Sets every LSTM layer's forget-gate bias (gate order i, f, g, o) to ``value``: the input
    bias holds it, the recurrent bias is zero there, so their sum is ``value``."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            kind = name.rsplit(".", 1)[-1]
            if kind.startswith(("bias_ih", "bias_hh")):
                hidden = param.shape[0] // 4
                param[hidden:2 * hidden] = value if kind.startswith("bias_ih") else 0.0


def build_recurrent(cell: Cell | str | Mapping, input_size: int, hidden_size: int,
                    num_layers: int = 1, dropout: float = 0.0, zoneout: float = 0.0,
                    key: str = "model") -> nn.Module:
    """A unidirectional, ``batch_first`` stack of ``num_layers`` layers of ``cell``.

    Returns the fused PyTorch module where one computes the cell (``lstm``, ``lstmp`` through
    ``proj_size``, ``gru``, ``rnn``) without zoneout, otherwise a :class:`CellStack` (the custom
    cells of :mod:`rnnseq.models.cells`, zoneout). Both have the same parameter names, so a
    checkpoint loads whatever the zoneout. Run them with :func:`run_recurrent` or
    :func:`step_recurrent`.

    Args:
        dropout: on the outputs of every layer but the last.
        zoneout: probability that each unit keeps its previous state at a step (Krueger et al.,
            2017); decoders only, since it forces a loop over steps.
        key: the module's config key (``model.decoder``), named in errors.
    """
    cell = parse_cell(cell, f"{key}.cell")
    if not 0.0 <= zoneout < 1.0:
        raise ValueError(f"{key}.zoneout must be in [0, 1), got {zoneout}")
    output_size = cell.output_size(hidden_size)
    if cell.name == "lstmp" and output_size >= hidden_size:
        raise ValueError(f"lstmp needs {key}.cell.proj_size < {key}.hidden_size, got "
                         f"{output_size} and {hidden_size}")

    def layers(count: int, first_input: int, dropout: float) -> nn.Module:
        if cell.name in CUSTOM_CELLS:
            return CUSTOM_CELLS[cell.name](first_input, hidden_size)
        return FUSED_CELLS[cell.name](first_input, hidden_size, count, batch_first=True,
                                 dropout=dropout if count > 1 else 0.0,
                                 **({"proj_size": output_size} if cell.name == "lstmp" else {}))

    if zoneout == 0.0 and cell.name in FUSED_CELLS:
        module = layers(num_layers, input_size, dropout)
    else:
        module = CellStack([layers(1, input_size if i == 0 else output_size, 0.0)
                            for i in range(num_layers)], dropout, zoneout)
    if cell.forget_bias is not None:
        _set_forget_bias(module, cell.forget_bias)
    return module


def _has_cell_state(rnn: nn.Module) -> bool:
    return isinstance(rnn, nn.LSTM) or bool(getattr(rnn, "has_cell_state", False))


def output_size(rnn: nn.Module) -> int:
    """Size P of the outputs ``h`` of a module from :func:`build_recurrent`."""
    return getattr(rnn, "proj_size", 0) or rnn.hidden_size


def zero_state(rnn: nn.Module, batch_size: int, like: torch.Tensor) -> RecurrentState:
    """The all-zero :data:`RecurrentState` of ``rnn`` for ``batch_size`` sequences, with the
    dtype and device of ``like``."""
    layers = rnn.num_layers
    cell_size = rnn.hidden_size if _has_cell_state(rnn) else 0
    return (like.new_zeros(layers, batch_size, output_size(rnn)),
            like.new_zeros(layers, batch_size, cell_size))


def run_recurrent(rnn: nn.Module, x: torch.Tensor, state: RecurrentState | None = None
                  ) -> tuple[torch.Tensor, RecurrentState]:
    """``(B, T, I)`` inputs and an optional :data:`RecurrentState` -> ``(B, T, P)`` outputs and
    the state after the last step, for any module from :func:`build_recurrent`."""
    if isinstance(rnn, CellStack):
        return rnn(x, state)
    if _has_cell_state(rnn):
        out, (h, c) = run_fused(rnn, x, state)
        return out, (h, c)
    out, h = run_fused(rnn, x, None if state is None else state[0])
    cells = state[1] if state is not None else x.new_zeros(rnn.num_layers, x.shape[0], 0)
    return out, (h, cells)


def step_recurrent(rnn: nn.Module, x: torch.Tensor, state: RecurrentState
                   ) -> tuple[torch.Tensor, RecurrentState]:
    """One step: ``(B, I)`` input -> ``(B, P)`` output and the new state.

    A fused unidirectional module steps through the cell function of each of its layers
    (``torch.lstm_cell``, ``gru_cell``, ``rnn_*_cell``) with its own weights: a fused kernel
    called on one step pays a sequence set-up that the step does not amortise (for a 320-unit
    LSTM at batch 32 on 2 CPU cores, 1.6x the time of the cell function forward and backward,
    and up to 4.7x forward alone at batch 1). An LSTM with a projection (``lstmp``) has no cell
    function and takes the fused kernel.
    """
    if (isinstance(rnn, nn.RNNBase) and rnn.mode in _CELL_STEPS and not rnn.bidirectional
            and not rnn.proj_size):
        return _cell_step(rnn, x, state)
    out, state = run_recurrent(rnn, x.unsqueeze(1), state)
    return out[:, 0], state


_CELL_STEPS = {"LSTM": torch.lstm_cell, "GRU": torch.gru_cell, "RNN_TANH": torch.rnn_tanh_cell,
               "RNN_RELU": torch.rnn_relu_cell}


def _cell_step(rnn: nn.RNNBase, x: torch.Tensor, state: RecurrentState
               ) -> tuple[torch.Tensor, RecurrentState]:
    """:func:`step_recurrent` of a fused module without projection, layer by layer: the same
    weights, the same dropout between layers in training."""
    cell = _CELL_STEPS[rnn.mode]
    h0, c0 = state  # (L, B, H), (L, B, H or 0)
    hs, cs = [], []
    for k in range(rnn.num_layers):
        if k > 0:
            x = nn.functional.dropout(x, rnn.dropout, rnn.training)
        weights = [getattr(rnn, f"{name}_l{k}", None)  # no biases: None, as the cells accept
                   for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if rnn.mode == "LSTM":
            h, c = cell(x, (h0[k], c0[k]), *weights)  # (B, H) each
            cs.append(c)
        else:
            h = cell(x, h0[k], *weights)
        hs.append(h)
        x = h
    return x, (torch.stack(hs), torch.stack(cs) if cs else c0)


class CellStack(nn.Module):
    """Single-layer recurrent modules run one after another, for what one fused module cannot
    do: stack custom cells, and zoneout (Krueger et al., 2017), where each unit of ``h`` and
    ``c`` keeps its previous value with probability ``zoneout`` at every step of training. At
    evaluation a unit takes the expectation, ``zoneout * previous + (1 - zoneout) * new``, as in
    the paper and ESPnet's Tacotron 2; either way the loop over steps is Python's.

    ``forward((B, T, I), RecurrentState | None) -> ((B, T, P), RecurrentState)``; dropout on the
    outputs of every layer but the last.
    """

    def __init__(self, layers: list[nn.Module], dropout: float = 0.0, zoneout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout, self.zoneout = dropout, zoneout
        self.num_layers = len(layers)
        self.hidden_size = layers[0].hidden_size
        self.proj_size = getattr(layers[0], "proj_size", 0)
        self.has_cell_state = _has_cell_state(layers[0])
        # Saved under nn.LSTM's flat names (layer i's weight_ih_l0 as weight_ih_l{i}, its
        # peephole as peephole_l{i}), so that zoneout does not change a checkpoint's names.
        self.register_state_dict_post_hook(_flat_parameter_names)
        self.register_load_state_dict_pre_hook(_layered_parameter_names)

    def _between_layers(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(x, self.dropout, self.training)

    def _zone(self, previous: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        previous = previous.to(new.dtype)  # custom cells return float32 under autocast
        if self.training:
            keep = torch.rand_like(new) < self.zoneout
            return torch.where(keep, previous, new)
        return torch.lerp(new, previous, self.zoneout)

    def forward(self, x: torch.Tensor, state: RecurrentState | None = None
                ) -> tuple[torch.Tensor, RecurrentState]:
        h0, c0 = state if state is not None else zero_state(self, x.shape[0], x)
        if self.zoneout == 0.0:  # each layer runs over the whole sequence at once
            hs, cs = [], []
            for i, layer in enumerate(self.layers):
                x, (h, c) = run_recurrent(layer, self._between_layers(x) if i else x,
                                          (h0[i:i + 1], c0[i:i + 1]))
                hs.append(h)
                cs.append(c)
            return x, (torch.cat(hs), torch.cat(cs))
        h, c = list(h0.unbind(0)), list(c0.unbind(0))
        outputs = []
        for t in range(x.shape[1]):
            out = x[:, t]
            for i, layer in enumerate(self.layers):
                new_out, (new_h, new_c) = step_recurrent(
                    layer, self._between_layers(out) if i else out, (h[i][None], c[i][None]))
                h[i], c[i] = self._zone(h[i], new_h[0]), self._zone(c[i], new_c[0])
                out = h[i]
            outputs.append(out)
        return torch.stack(outputs, 1), (torch.stack(h), torch.stack(c))


def _flat_name(name: str, layer: int) -> str:
    """``weight_ih_l0`` of layer 2 -> ``weight_ih_l2``; ``peephole`` -> ``peephole_l2``."""
    return f"{name.removesuffix('_l0')}_l{layer}"


def _flat_parameter_names(module: CellStack, state_dict, prefix: str, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "layers.")]:
        layer, name = key[len(prefix + "layers."):].split(".", 1)
        state_dict[prefix + _flat_name(name, int(layer))] = state_dict.pop(key)


def _layered_parameter_names(module: CellStack, state_dict, prefix: str, *_) -> None:
    for i, layer in enumerate(module.layers):
        for name in layer.state_dict():
            flat = prefix + _flat_name(name, i)
            if flat in state_dict:
                state_dict[f"{prefix}layers.{i}.{name}"] = state_dict.pop(flat)


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverses the first ``lengths[b]`` steps of each ``(B, S, D)`` sequence; padding stays put.

    Applying it twice gives back ``x``.
    """
    s = x.shape[1]
    steps = torch.arange(s, device=x.device).unsqueeze(0)  # (1, S)
    index = lengths.to(x.device).unsqueeze(1) - 1 - steps  # (B, S)
    index = torch.where(index >= 0, index, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class RecurrentLayer(nn.Module):
    """One (bi)directional recurrent layer: ``(B, S, I)`` -> ``(B, S, P * directions)`` (P the
    cell's output size), zero on padding, equal for every sequence to what it would give alone."""

    def __init__(self, input_size: int, hidden_size: int, cell: Cell | str | Mapping = "lstm",
                 bidirectional: bool = True, key: str = "model.encoder"):
        super().__init__()
        self.forward_rnn = build_recurrent(cell, input_size, hidden_size, key=key)
        self.backward_rnn = (build_recurrent(cell, input_size, hidden_size, key=key)
                             if bidirectional else None)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = run_fused(self.forward_rnn, x)
        if self.backward_rnn is not None:
            back, _ = run_fused(self.backward_rnn, reverse_within_lengths(x, lengths))
            out = torch.cat([out, reverse_within_lengths(back, lengths)], dim=-1)
        return out * make_pad_mask(lengths, x.shape[1]).unsqueeze(-1).to(out.dtype)
