"""LSTM cells that PyTorch has no fused kernel for: the peephole LSTM of the articles rnnseq grew
from, and the layer-normalised LSTM of Ba et al. (2016).

Both take and return what a one-layer, unidirectional, ``batch_first`` :class:`torch.nn.LSTM`
does: ``(B, T, I)`` inputs and an optional ``((1, B, H), (1, B, H))`` state in, ``(B, T, H)``
outputs and the final state out. Their weights have ``nn.LSTM``'s names, shapes and gate order
(input, forget, cell, output), so an ``nn.LSTM``'s weights load into them. The input projection
of every step is one matrix product over the whole sequence; the recurrence is a loop over
steps. (First version, issue 19: TorchScript made that loop slower, not faster, with the torch
installed here — 0.67 s against 0.49 s forward + backward for batch 32 x 200 steps, 240 -> 256,
where fused ``nn.LSTM`` takes 0.08 s — so it stays plain Python until a compiled path beats it.)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _peephole_loop(x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                   weight_hh: torch.Tensor, peephole: torch.Tensor):
    """``x_proj``: ``(T, B, 4H)`` input projections with both biases; ``h``, ``c``: ``(B, H)``;
    ``peephole``: ``(3, H)`` diagonal weights of the input, forget and output gates."""
    outputs = []
    for t in range(x_proj.shape[0]):
        gates = x_proj[t] + torch.mm(h, weight_hh.t())
        i, f, g, o = gates.chunk(4, 1)
        i = torch.sigmoid(i + peephole[0] * c)
        f = torch.sigmoid(f + peephole[1] * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + peephole[2] * c)  # the output gate sees the new cell state
        h = o * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), h, c


def _layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, eps: float):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gain + bias


def _layer_norm_loop(x_norm: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                     weight_hh: torch.Tensor, hh_gain: torch.Tensor, hh_bias: torch.Tensor,
                     cell_gain: torch.Tensor, cell_bias: torch.Tensor, eps: float):
    """``x_norm``: ``(T, B, 4H)`` normalised input projections plus the gate biases."""
    outputs = []
    for t in range(x_norm.shape[0]):
        recurrent = torch.mm(h, weight_hh.t())
        mean = recurrent.mean(-1, keepdim=True)
        var = recurrent.var(-1, unbiased=False, keepdim=True)
        gates = x_norm[t] + (recurrent - mean) / torch.sqrt(var + eps) * hh_gain + hh_bias
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        c_mean = c.mean(-1, keepdim=True)
        c_var = c.var(-1, unbiased=False, keepdim=True)
        c_norm = (c - c_mean) / torch.sqrt(c_var + eps) * cell_gain + cell_bias
        h = torch.sigmoid(o) * torch.tanh(c_norm)
        outputs.append(h)
    return torch.stack(outputs), h, c


class _LSTMBase(nn.Module):
    """Parameters with ``nn.LSTM``'s names and its uniform initialisation."""

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
        out, h, c = _peephole_loop(x_proj, h, c, self.weight_hh_l0, self.peephole)
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
        out, h, c = _layer_norm_loop(x_norm, h, c, self.weight_hh_l0, self.hh_gain, self.hh_bias,
                                     self.cell_gain, self.cell_bias, self.eps)
        return out.transpose(0, 1), (h[None], c[None])
