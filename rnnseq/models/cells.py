"""LSTM cells that PyTorch has no fused kernel for: the peephole LSTM of the articles rnnseq grew
from, and the layer-normalised LSTM of Ba et al. (2016).

Both take and return what a one-layer, unidirectional, ``batch_first`` :class:`torch.nn.LSTM`
does: ``(B, T, I)`` inputs and an optional ``((1, B, H), (1, B, H))`` state in, ``(B, T, H)``
outputs and the final state out. Their weights have ``nn.LSTM``'s names, shapes and gate order
(input, forget, cell, output), so an ``nn.LSTM``'s weights load into them. The input projection
of every step is one matrix product over the whole sequence; the recurrence is a loop over
steps. Forward + backward for batch 32 x 200 steps, 240 -> 256 on 2 CPU cores, fused ``nn.LSTM``
0.069 s: the peephole LSTM with its backward written out 0.134 s (1.9x), the layer-normalised
one 0.229 s (3.3x); the peephole loop under autograd took 0.53 s, as TorchScript 0.67 s, with
``torch.compile`` of the gate arithmetic 0.61 s (``bench/recurrent_cells.py`` measures them at
the ``asr`` encoder's shape). Models build them by name through
:func:`rnnseq.models.recurrent.build_recurrent`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _cell_input_grads(d_c, i, f, g, c_prev):
    """Gradients of the input, forget and cell-input pre-activations from ``d_c``, the gradient
    of ``c = f * c_prev + i * g`` (``i``, ``f`` sigmoids, ``g`` a tanh, all ``(B, H)``)."""
    return d_c * g * i * (1 - i), d_c * c_prev * f * (1 - f), d_c * i * (1 - g * g)


def _previous(initial: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``(T, B, H)`` state before each step: ``initial`` (``(B, H)``), then ``states[:-1]``."""
    return torch.cat([initial[None], states[:-1]], 0)


def _weight_hh_grad(d_recurrent: torch.Tensor, h0: torch.Tensor, outputs: torch.Tensor):
    """``(4H, H)`` gradient of the recurrent weight from the ``(T, B, 4H)`` gradients of every
    step's recurrent projection ``h_prev @ W_hh^T``: one matrix product over all steps."""
    h_prev = _previous(h0, outputs)
    return d_recurrent.flatten(0, 1).t().mm(h_prev.flatten(0, 1))


class _PeepholeRecurrence(torch.autograd.Function):
    """The peephole recursion over ``T`` steps with its backward pass written out (back-propagation
    through time by hand): autograd would record a dozen small operations per step, which costs
    3.6x more on CPU. ``xp``: ``(T, B, 4H)`` input projections with both biases; ``h0``, ``c0``:
    ``(B, H)``; ``peephole``: ``(3, H)`` diagonal weights of the input, forget and output gates.
    Returns ``(T, B, H)`` outputs and the final ``h``, ``c``."""

    @staticmethod
    def forward(ctx, xp, h0, c0, weight_hh, peephole):
        steps = xp.shape[0]
        gates = xp.new_empty(xp.shape)  # (T, B, 4H) i, f, g, o after their nonlinearities
        cells = xp.new_empty(steps, *h0.shape)
        outputs = xp.new_empty(steps, *h0.shape)
        h, c = h0, c0
        for t in range(steps):
            a_i, a_f, a_g, a_o = torch.addmm(xp[t], h, weight_hh.t()).chunk(4, 1)
            i = torch.sigmoid(a_i.addcmul_(peephole[0], c))
            f = torch.sigmoid(a_f.addcmul_(peephole[1], c))
            g = torch.tanh(a_g)
            c = torch.addcmul(f * c, i, g)
            o = torch.sigmoid(a_o.addcmul_(peephole[2], c))  # the output gate sees the new c
            h = o * torch.tanh(c)
            gates[t] = torch.cat([i, f, g, o], 1)
            cells[t], outputs[t] = c, h
        ctx.save_for_backward(gates, cells, outputs, h0, c0, weight_hh, peephole)
        return outputs, h, c

    @staticmethod
    def backward(ctx, d_outputs, d_h, d_c):
        gates, cells, outputs, h0, c0, weight_hh, peephole = ctx.saved_tensors
        d_gates = torch.empty_like(gates)  # gradients of the gate pre-activations
        d_h_next, d_c = d_h.clone(), d_c.clone()
        for t in range(cells.shape[0] - 1, -1, -1):
            dh = d_h_next + d_outputs[t]
            i, f, g, o = gates[t].chunk(4, 1)
            tanh_c = torch.tanh(cells[t])
            da_o = dh * tanh_c * o * (1 - o)
            d_c = d_c + dh * o * (1 - tanh_c * tanh_c) + da_o * peephole[2]
            da_i, da_f, da_g = _cell_input_grads(d_c, i, f, g, cells[t - 1] if t > 0 else c0)
            d_c = d_c * f + da_i * peephole[0] + da_f * peephole[1]
            torch.cat([da_i, da_f, da_g, da_o], 1, out=d_gates[t])
            d_h_next = torch.mm(d_gates[t], weight_hh)
        d_weight_hh = _weight_hh_grad(d_gates, h0, outputs)
        c_prev = _previous(c0, cells)
        d_i, d_f, _, d_o = d_gates.chunk(4, 2)
        d_peephole = torch.stack([(d_i * c_prev).sum((0, 1)), (d_f * c_prev).sum((0, 1)),
                                  (d_o * cells).sum((0, 1))])
        return d_gates, d_h_next, d_c, d_weight_hh, d_peephole


def _normalise(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` over its last dimension to zero mean and unit (biased) variance, and ``1 / std``."""
    mean = x.mean(-1, keepdim=True)
    inv_std = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    return (x - mean) * inv_std, inv_std


def _layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, eps: float):
    """Layer normalisation over the last dimension with a gain and a bias."""
    return _normalise(x, eps)[0] * gain + bias


def _normalise_backward(d_normalised: torch.Tensor, normalised: torch.Tensor,
                        inv_std: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`_normalise`'s input from that of its output."""
    mean_d = d_normalised.mean(-1, keepdim=True)
    mean_dn = (d_normalised * normalised).mean(-1, keepdim=True)
    return inv_std * (d_normalised - mean_d - normalised * mean_dn)


class _LayerNormRecurrence(torch.autograd.Function):
    """The layer-normalised LSTM recursion over ``T`` steps with its backward pass written out
    (see :class:`_PeepholeRecurrence` for why). ``x_norm``: ``(T, B, 4H)`` normalised input
    projections plus the gate biases; ``h0``, ``c0``: ``(B, H)``. Returns ``(T, B, H)`` outputs
    and the final ``h``, ``c``."""

    @staticmethod
    def forward(ctx, x_norm, h0, c0, weight_hh, hh_gain, hh_bias, cell_gain, cell_bias, eps):
        steps = x_norm.shape[0]
        gates = x_norm.new_empty(x_norm.shape)  # i, f, g, o after their nonlinearities
        recurrent_hat = x_norm.new_empty(x_norm.shape)  # normalised recurrent projections
        recurrent_inv_std = x_norm.new_empty(steps, h0.shape[0], 1)
        cells = x_norm.new_empty(steps, *h0.shape)
        cell_hat = x_norm.new_empty(steps, *h0.shape)
        cell_inv_std = x_norm.new_empty(steps, h0.shape[0], 1)
        outputs = x_norm.new_empty(steps, *h0.shape)
        h, c = h0, c0
        for t in range(steps):
            r_hat, recurrent_inv_std[t] = _normalise(torch.mm(h, weight_hh.t()), eps)
            a_i, a_f, a_g, a_o = (x_norm[t] + r_hat * hh_gain + hh_bias).chunk(4, 1)
            i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
            c = torch.addcmul(f * c, i, g)
            c_hat, cell_inv_std[t] = _normalise(c, eps)
            h = o * torch.tanh(c_hat * cell_gain + cell_bias)
            gates[t] = torch.cat([i, f, g, o], 1)
            recurrent_hat[t], cells[t], cell_hat[t], outputs[t] = r_hat, c, c_hat, h
        ctx.save_for_backward(gates, recurrent_hat, recurrent_inv_std, cells, cell_hat,
                              cell_inv_std, outputs, h0, c0, weight_hh, hh_gain, cell_gain,
                              cell_bias)
        return outputs, h, c

    @staticmethod
    def backward(ctx, d_outputs, d_h, d_c):
        (gates, recurrent_hat, recurrent_inv_std, cells, cell_hat, cell_inv_std, outputs, h0, c0,
         weight_hh, hh_gain, cell_gain, cell_bias) = ctx.saved_tensors
        d_gates = torch.empty_like(gates)  # gradients of the gate pre-activations
        d_recurrent = torch.empty_like(gates)  # of the recurrent projections before their norm
        d_cell_out = torch.empty_like(cells)  # of LN(c) * gain + bias
        d_h_next, d_c = d_h.clone(), d_c.clone()
        for t in range(cells.shape[0] - 1, -1, -1):
            dh = d_h_next + d_outputs[t]
            i, f, g, o = gates[t].chunk(4, 1)
            tanh_u = torch.tanh(cell_hat[t] * cell_gain + cell_bias)
            da_o = dh * tanh_u * o * (1 - o)
            du = dh * o * (1 - tanh_u * tanh_u)
            d_cell_out[t] = du
            d_c = d_c + _normalise_backward(du * cell_gain, cell_hat[t], cell_inv_std[t])
            da_i, da_f, da_g = _cell_input_grads(d_c, i, f, g, cells[t - 1] if t > 0 else c0)
            d_c = d_c * f
            torch.cat([da_i, da_f, da_g, da_o], 1, out=d_gates[t])
            d_recurrent[t] = _normalise_backward(d_gates[t] * hh_gain, recurrent_hat[t],
                                                 recurrent_inv_std[t])
            d_h_next = torch.mm(d_recurrent[t], weight_hh)
        d_weight_hh = _weight_hh_grad(d_recurrent, h0, outputs)
        d_hh_gain = (d_gates * recurrent_hat).sum((0, 1))
        d_hh_bias = d_gates.sum((0, 1))
        d_cell_gain = (d_cell_out * cell_hat).sum((0, 1))
        d_cell_bias = d_cell_out.sum((0, 1))
        return (d_gates, d_h_next, d_c, d_weight_hh, d_hh_gain, d_hh_bias, d_cell_gain,
                d_cell_bias, None)


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
        x_norm = (_layer_norm(projected, self.ih_gain, self.ih_bias, self.eps)
                  + self.bias_ih_l0 + self.bias_hh_l0)  # (T, B, 4H)
        out, h, c = _LayerNormRecurrence.apply(x_norm, h, c, self.weight_hh_l0, self.hh_gain,
                                               self.hh_bias, self.cell_gain, self.cell_bias,
                                               self.eps)
        return out.transpose(0, 1), (h[None], c[None])
