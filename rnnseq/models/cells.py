"""LSTM cells that PyTorch has no fused kernel for: the peephole LSTM of the articles rnnseq grew
from, and the layer-normalised LSTM of Ba et al. (2016).

Both take and return what a one-layer, unidirectional, ``batch_first`` :class:`torch.nn.LSTM`
does: ``(B, T, I)`` inputs and an optional ``((1, B, H), (1, B, H))`` state in, ``(B, T, H)``
outputs and the final state out. Their weights have ``nn.LSTM``'s names, shapes and gate order
(input, forget, cell, output), so an ``nn.LSTM``'s weights load into them. The input projection
of every step is one matrix product over the whole sequence; the recurrence is a loop over
steps whose backward pass is written out, with everything that does not depend on the incoming
gradient computed for all steps before the loop. They are slower than the fused ``nn.LSTM``, which
runs one kernel for the whole sequence; ``bench/recurrent_cells.py`` measures by how much
(``experiments/benchmarks/notes/``). The loop under autograd, TorchScript and ``torch.compile`` of
the gate arithmetic were each slower than this written-out backward pass, compilation aside.
Models build the cells by name through :func:`rnnseq.models.recurrent.build_recurrent`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _previous(initial: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``(T, B, H)`` state before each step: ``initial`` (``(B, H)``), then ``states[:-1]``."""
    return torch.cat([initial[None], states[:-1]], 0)


def _weight_hh_grad(d_recurrent: torch.Tensor, h0: torch.Tensor, outputs: torch.Tensor):
    """``(4H, H)`` gradient of the recurrent weight from the ``(T, B, 4H)`` gradients of every
    step's recurrent projection ``h_prev @ W_hh^T``: one matrix product over all steps."""
    h_prev = _previous(h0, outputs)
    return d_recurrent.flatten(0, 1).t().mm(h_prev.flatten(0, 1))


def _gate_factors(gates: torch.Tensor, c_prev: torch.Tensor, tanh_out: torch.Tensor):
    """What the backward pass multiplies incoming gradients by, for all ``T`` steps at once (so
    that the loop over steps does a few operations each): ``(T, B, 3, H)`` derivatives of the
    input, forget and cell-input pre-activations with respect to ``c`` (of ``c = f * c_prev +
    i * g``), and ``(T, B, H)`` derivatives with respect to ``h = o * tanh_out`` of the output
    gate's pre-activation and of the tanh's argument. ``gates``: ``(T, B, 4H)`` i, f, g, o after
    their nonlinearities."""
    i, f, g, o = gates.chunk(4, 2)
    cell_inputs = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], 2)
    return cell_inputs, tanh_out * o * (1 - o), o * (1 - tanh_out * tanh_out)


def _gate_activations(pre: torch.Tensor, out: torch.Tensor, hidden: int) -> None:
    """Sigmoid of the i, f, o pre-activations and tanh of g, from ``(B, 4H)`` into ``out``."""
    torch.sigmoid(pre[:, :2 * hidden], out=out[:, :2 * hidden])
    torch.tanh(pre[:, 2 * hidden:3 * hidden], out=out[:, 2 * hidden:3 * hidden])
    torch.sigmoid(pre[:, 3 * hidden:], out=out[:, 3 * hidden:])


def _cell_input_grads(d_c: torch.Tensor, factors: torch.Tensor, d_gates: torch.Tensor) -> None:
    """Writes ``d_c * factors`` (``(B, H)`` times ``(B, 3, H)`` of :func:`_gate_factors`): the
    gradients of the i, f and g pre-activations, into the first ``3H`` columns of ``d_gates``."""
    hidden = d_c.shape[1]
    torch.mul(factors, d_c.unsqueeze(1), out=d_gates[:, :3 * hidden].unflatten(1, (3, hidden)))


class _PeepholeRecurrence(torch.autograd.Function):
    """The peephole recursion over ``T`` steps with its backward pass written out (back-propagation
    through time by hand): autograd would record a dozen small operations per step, which costs
    3.6x more on CPU. ``xp``: ``(T, B, 4H)`` input projections with both biases; ``h0``, ``c0``:
    ``(B, H)``; ``peephole``: ``(3, H)`` diagonal weights of the input, forget and output gates.
    Returns ``(T, B, H)`` outputs and the final ``h``, ``c``."""

    @staticmethod
    def forward(ctx, xp, h0, c0, weight_hh, peephole):
        steps, hidden = xp.shape[0], h0.shape[1]
        gates = xp.new_empty(xp.shape)  # (T, B, 4H) i, f, g, o after their nonlinearities
        cells = xp.new_empty(steps, *h0.shape)
        tanh_cells = torch.empty_like(cells)
        outputs = torch.empty_like(cells)
        input_forget_peepholes = peephole[:2].unsqueeze(0)  # (1, 2, H)
        recurrent_weight = weight_hh.t().contiguous()  # (H, 4H), laid out for the step's product
        h, c = h0, c0
        for t in range(steps):
            pre = torch.addmm(xp[t], h, recurrent_weight)  # (B, 4H)
            pre[:, :2 * hidden].unflatten(1, (2, hidden)).addcmul_(input_forget_peepholes,
                                                                   c.unsqueeze(1))
            gate = gates[t]
            torch.sigmoid(pre[:, :2 * hidden], out=gate[:, :2 * hidden])
            torch.tanh(pre[:, 2 * hidden:3 * hidden], out=gate[:, 2 * hidden:3 * hidden])
            c = torch.addcmul(gate[:, hidden:2 * hidden] * c, gate[:, :hidden],
                              gate[:, 2 * hidden:3 * hidden], out=cells[t])
            output_gate = pre[:, 3 * hidden:].addcmul_(peephole[2], c)  # o sees the new c
            torch.sigmoid(output_gate, out=gate[:, 3 * hidden:])
            h = torch.mul(gate[:, 3 * hidden:], torch.tanh(c, out=tanh_cells[t]), out=outputs[t])
        ctx.save_for_backward(gates, cells, tanh_cells, outputs, h0, c0, weight_hh, peephole)
        return outputs, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_outputs, d_h, d_c):
        gates, cells, tanh_cells, outputs, h0, c0, weight_hh, peephole = ctx.saved_tensors
        hidden = h0.shape[1]
        c_prev = _previous(c0, cells)
        cell_inputs, output_gate, through_tanh = _gate_factors(gates, c_prev, tanh_cells)
        # d c_prev / d c through the forget gate and the peepholes of i and f, and d c / d h
        # through tanh and o's peephole, for all steps at once: two operations fewer per step.
        carry = torch.addcmul(gates[:, :, hidden:2 * hidden], cell_inputs[:, :, 0], peephole[0])
        carry.addcmul_(cell_inputs[:, :, 1], peephole[1])
        through_h = torch.addcmul(through_tanh, output_gate, peephole[2])
        d_gates = torch.empty_like(gates)  # gradients of the gate pre-activations
        dh = d_h + d_outputs[-1]
        for t in range(cells.shape[0] - 1, -1, -1):
            d_gate = d_gates[t]
            torch.mul(dh, output_gate[t], out=d_gate[:, 3 * hidden:])
            d_c = d_c.addcmul(dh, through_h[t])
            _cell_input_grads(d_c, cell_inputs[t], d_gate)
            d_c = d_c * carry[t]
            # the gradient of the step before's h: its output's, plus through the recurrent weight
            dh = torch.addmm(d_outputs[t - 1] if t else torch.zeros_like(dh), d_gate, weight_hh)
        d_weight_hh = _weight_hh_grad(d_gates, h0, outputs)
        d_i, d_f, _, d_o = d_gates.chunk(4, 2)
        d_peephole = torch.stack([(d_i * c_prev).sum((0, 1)), (d_f * c_prev).sum((0, 1)),
                                  (d_o * cells).sum((0, 1))])
        return d_gates, dh, d_c, d_weight_hh, d_peephole


def _layer_norm_backward(d_out, x, shape, mean, rstd, gain):
    """The gradient of ``layer_norm(x) * gain + bias`` with respect to ``x``, from the statistics
    ``torch.native_layer_norm`` returned (one fused kernel, as the forward)."""
    return torch.ops.aten.native_layer_norm_backward(d_out, x, shape, mean, rstd, gain, None,
                                                     [True, False, False])[0]


class _LayerNormRecurrence(torch.autograd.Function):
    """The layer-normalised LSTM recursion over ``T`` steps with its backward pass written out
    (see :class:`_PeepholeRecurrence` for why); both normalisations are PyTorch's fused layer
    norm kernels. ``x_norm``: ``(T, B, 4H)`` normalised input projections plus the gate biases;
    ``h0``, ``c0``: ``(B, H)``. Returns ``(T, B, H)`` outputs and the final ``h``, ``c``."""

    @staticmethod
    def forward(ctx, x_norm, h0, c0, weight_hh, hh_gain, hh_bias, cell_gain, cell_bias, eps):
        steps, hidden = x_norm.shape[0], h0.shape[1]
        gates = torch.empty_like(x_norm)  # i, f, g, o after their nonlinearities
        recurrent = torch.empty_like(x_norm)  # recurrent projections before their norm
        cells = x_norm.new_empty(steps, *h0.shape)
        tanh_norm_cells = torch.empty_like(cells)
        outputs = torch.empty_like(cells)
        statistics = []  # per step: mean and 1/std of the recurrent projection and of the cell
        recurrent_weight = weight_hh.t().contiguous()  # (H, 4H), laid out for the step's product
        h, c = h0, c0
        for t in range(steps):
            projected = torch.mm(h, recurrent_weight, out=recurrent[t])
            pre, r_mean, r_rstd = torch.native_layer_norm(projected, [4 * hidden], hh_gain,
                                                          hh_bias, eps)
            gate = gates[t]
            _gate_activations(pre.add_(x_norm[t]), gate, hidden)
            c = torch.addcmul(gate[:, hidden:2 * hidden] * c, gate[:, :hidden],
                              gate[:, 2 * hidden:3 * hidden], out=cells[t])
            norm_cell, c_mean, c_rstd = torch.native_layer_norm(c, [hidden], cell_gain,
                                                                cell_bias, eps)
            h = torch.mul(gate[:, 3 * hidden:], torch.tanh(norm_cell, out=tanh_norm_cells[t]),
                          out=outputs[t])
            statistics.append(torch.cat([r_mean, r_rstd, c_mean, c_rstd], 1))
        ctx.eps = eps
        ctx.save_for_backward(gates, recurrent, cells, tanh_norm_cells, outputs,
                              torch.stack(statistics), h0, c0, weight_hh, hh_gain, cell_gain)
        return outputs, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_outputs, d_h, d_c):
        (gates, recurrent, cells, tanh_norm_cells, outputs, statistics, h0, c0, weight_hh,
         hh_gain, cell_gain) = ctx.saved_tensors
        hidden = h0.shape[1]
        # (T, B, 1) each, contiguous: the fused backward kernel reads them as such
        r_mean, r_rstd, c_mean, c_rstd = statistics.movedim(2, 0).unsqueeze(-1).contiguous()
        cell_inputs, output_gate, through_tanh = _gate_factors(
            gates, _previous(c0, cells), tanh_norm_cells)
        forget = gates[:, :, hidden:2 * hidden]
        d_gates = torch.empty_like(gates)  # gradients of the gate pre-activations
        d_recurrent = torch.empty_like(gates)  # of the recurrent projections before their norm
        d_norm_cells = torch.empty_like(cells)  # of LN(c) * gain + bias
        dh = d_h + d_outputs[-1]
        for t in range(cells.shape[0] - 1, -1, -1):
            d_gate = d_gates[t]
            torch.mul(dh, output_gate[t], out=d_gate[:, 3 * hidden:])
            d_norm_cell = torch.mul(dh, through_tanh[t], out=d_norm_cells[t])
            d_c = d_c + _layer_norm_backward(d_norm_cell, cells[t], [hidden], c_mean[t],
                                             c_rstd[t], cell_gain)
            _cell_input_grads(d_c, cell_inputs[t], d_gate)
            d_c = d_c * forget[t]
            d_recurrent[t] = _layer_norm_backward(d_gate, recurrent[t], [4 * hidden], r_mean[t],
                                                  r_rstd[t], hh_gain)
            dh = torch.addmm(d_outputs[t - 1] if t else torch.zeros_like(dh), d_recurrent[t],
                             weight_hh)
        d_weight_hh = _weight_hh_grad(d_recurrent, h0, outputs)
        recurrent_hat = (recurrent - r_mean) * r_rstd
        cell_hat = (cells - c_mean) * c_rstd
        return (d_gates, dh, d_c, d_weight_hh, (d_gates * recurrent_hat).sum((0, 1)),
                d_gates.sum((0, 1)), (d_norm_cells * cell_hat).sum((0, 1)),
                d_norm_cells.sum((0, 1)), None)


class _LSTMBase(nn.Module):
    """Parameters with ``nn.LSTM``'s names and its uniform initialisation; the attributes
    :mod:`rnnseq.models.recurrent` reads off ``nn.LSTM`` too."""

    num_layers = 1
    proj_size = 0
    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool = True):
        super().__init__()
        if not batch_first:
            raise ValueError("rnnseq's custom LSTM cells take batch_first inputs")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))

    def reset_parameters(self) -> None:
        """Uniform in ``+-1/sqrt(H)``, as ``nn.LSTM``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0):
            nn.init.uniform_(p, -bound, bound)

    def _initial(self, x: torch.Tensor, state):
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            return zeros, zeros
        h, c = state
        return h[0], c[0]


class PeepholeLSTM(_LSTMBase):
    """LSTM with peephole connections: the input and forget gates see ``c_{t-1}``, the output gate
    sees ``c_t``, each through a diagonal weight (``peephole``: ``(3, H)``, rows i, f, o)::

        i = sigmoid(W_i x + U_i h + p_i * c_prev + b_i)
        f = sigmoid(W_f x + U_f h + p_f * c_prev + b_f)
        c = f * c_prev + i * tanh(W_c x + U_c h + b_c)
        o = sigmoid(W_o x + U_o h + p_o * c + b_o)
        h = o * tanh(c)

    With zero peephole weights it is ``nn.LSTM``.
    """

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool = True):
        super().__init__(input_size, hidden_size, batch_first)
        self.peephole = nn.Parameter(torch.empty(3, hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.LSTM``'s initialisation, and the peephole weights from the same range."""
        super().reset_parameters()
        bound = 1.0 / math.sqrt(self.hidden_size)
        nn.init.uniform_(self.peephole, -bound, bound)

    def forward(self, x: torch.Tensor, state=None):
        """``(B, T, I)`` -> ``(B, T, H)`` outputs and ``((1, B, H), (1, B, H))`` final state."""
        h, c = self._initial(x, state)
        x_proj = torch.nn.functional.linear(x.transpose(0, 1), self.weight_ih_l0,
                                            self.bias_ih_l0 + self.bias_hh_l0)  # (T, B, 4H)
        out, h, c = _PeepholeRecurrence.apply(x_proj, h, c, self.weight_hh_l0, self.peephole)
        return out.transpose(0, 1), (h[None], c[None])


class LayerNormLSTM(_LSTMBase):
    """Layer-normalised LSTM (Ba et al., 2016): the input and the recurrent projections of the
    gates are each normalised over their ``4H`` features (own gain and bias), and so is the cell
    state before the output ``h = o * tanh(LN(c))``; the state carried on is the un-normalised
    ``c``. The gate bias is ``bias_ih_l0 + bias_hh_l0``, as in ``nn.LSTM``."""

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool = True,
                 eps: float = 1e-5):
        super().__init__(input_size, hidden_size, batch_first)
        self.eps = eps
        self.ih_gain = nn.Parameter(torch.ones(4 * hidden_size))
        self.ih_bias = nn.Parameter(torch.zeros(4 * hidden_size))
        self.hh_gain = nn.Parameter(torch.ones(4 * hidden_size))
        self.hh_bias = nn.Parameter(torch.zeros(4 * hidden_size))
        self.cell_gain = nn.Parameter(torch.ones(hidden_size))
        self.cell_bias = nn.Parameter(torch.zeros(hidden_size))
        self.reset_parameters()

    def forward(self, x: torch.Tensor, state=None):
        """``(B, T, I)`` -> ``(B, T, H)`` outputs and ``((1, B, H), (1, B, H))`` final state."""
        h, c = self._initial(x, state)
        projected = torch.nn.functional.linear(x.transpose(0, 1), self.weight_ih_l0)
        x_norm = (torch.nn.functional.layer_norm(projected, projected.shape[-1:], self.ih_gain,
                                                 self.ih_bias, self.eps)
                  + self.bias_ih_l0 + self.bias_hh_l0)  # (T, B, 4H)
        out, h, c = _LayerNormRecurrence.apply(x_norm, h, c, self.weight_hh_l0, self.hh_gain,
                                               self.hh_bias, self.cell_gain, self.cell_bias,
                                               self.eps)
        return out.transpose(0, 1), (h[None], c[None])
