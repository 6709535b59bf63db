"""The custom LSTM cells against nn.LSTM and against their formulas computed by hand."""

import math

import pytest
import torch
from torch import nn
from torch.nn.functional import layer_norm

from rnnseq.models.cells import LayerNormLSTM, PeepholeLSTM


def _copy_lstm_weights(source: nn.LSTM, target: nn.Module) -> None:
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(target, name).copy_(getattr(source, name))


def test_peephole_lstm_with_zero_peepholes_is_nn_lstm():
    torch.manual_seed(0)
    reference = nn.LSTM(5, 7, batch_first=True)
    cell = PeepholeLSTM(5, 7)
    _copy_lstm_weights(reference, cell)
    with torch.no_grad():
        cell.peephole.zero_()
    x = torch.randn(3, 6, 5)
    state = (torch.randn(1, 3, 7), torch.randn(1, 3, 7))
    want, (want_h, want_c) = reference(x, state)
    got, (h, c) = cell(x, state)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(h, want_h, atol=1e-6) and torch.allclose(c, want_c, atol=1e-6)


def _peephole_by_hand(cell: PeepholeLSTM, x_t, h, c):
    w_i, w_f, w_g, w_o = cell.weight_ih_l0.chunk(4)
    u_i, u_f, u_g, u_o = cell.weight_hh_l0.chunk(4)
    b = (cell.bias_ih_l0 + cell.bias_hh_l0).chunk(4)
    p_i, p_f, p_o = cell.peephole
    i = torch.sigmoid(x_t @ w_i.T + h @ u_i.T + p_i * c + b[0])
    f = torch.sigmoid(x_t @ w_f.T + h @ u_f.T + p_f * c + b[1])
    c_new = f * c + i * torch.tanh(x_t @ w_g.T + h @ u_g.T + b[2])
    o = torch.sigmoid(x_t @ w_o.T + h @ u_o.T + p_o * c_new + b[3])
    return o * torch.tanh(c_new), c_new


def test_peephole_lstm_steps_follow_the_formulas():
    torch.manual_seed(1)
    cell = PeepholeLSTM(4, 3)
    with torch.no_grad():
        cell.peephole.mul_(5.0)  # large enough that using c_prev for o (or c for i) shows
    x = torch.randn(2, 3, 4)
    h, c = torch.zeros(2, 3), torch.zeros(2, 3)
    with torch.no_grad():
        out, (last_h, last_c) = cell(x)
        for t in range(3):
            h, c = _peephole_by_hand(cell, x[:, t], h, c)
            assert torch.allclose(out[:, t], h, atol=1e-6)
    assert torch.allclose(last_h[0], h, atol=1e-6) and torch.allclose(last_c[0], c, atol=1e-6)


def test_layer_norm_lstm_step_normalises_gates_and_cell_as_written():
    torch.manual_seed(2)
    cell = LayerNormLSTM(4, 3)
    with torch.no_grad():  # gains and biases away from 1 and 0 so that each one counts
        for p in (cell.ih_gain, cell.ih_bias, cell.hh_gain, cell.hh_bias, cell.cell_gain,
                  cell.cell_bias):
            p.add_(torch.randn_like(p))
    x = torch.randn(2, 2, 4)
    h, c = torch.randn(2, 3), torch.randn(2, 3)
    with torch.no_grad():
        out, (last_h, last_c) = cell(x, (h[None], c[None]))
        for t in range(2):
            gates = (layer_norm(x[:, t] @ cell.weight_ih_l0.T, (12,), cell.ih_gain, cell.ih_bias)
                     + layer_norm(h @ cell.weight_hh_l0.T, (12,), cell.hh_gain, cell.hh_bias)
                     + cell.bias_ih_l0 + cell.bias_hh_l0)
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(layer_norm(c, (3,), cell.cell_gain, cell.cell_bias))
            assert torch.allclose(out[:, t], h, atol=1e-5)
    assert torch.allclose(last_c[0], c, atol=1e-5)


def test_layer_norm_statistics_of_a_hand_case():
    # One unit, so the gates have 4 features: a recurrent projection of 1, 2, 3, 6 (mean 3,
    # biased variance (4 + 1 + 0 + 9) / 4 = 3.5, as Ba et al.) normalises to (-2, -1, 0, 3) /
    # sqrt(3.5); the input projection is zero and normalises to zero. The cell state, one
    # feature, normalises to 0, so LN(c) is its bias, 0.5.
    cell = LayerNormLSTM(1, 1)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.weight_hh_l0.copy_(torch.tensor([[1.0], [2.0], [3.0], [6.0]]))
        cell.ih_gain.fill_(1.0)
        cell.hh_gain.fill_(1.0)
        cell.cell_gain.fill_(1.0)
        cell.cell_bias.fill_(0.5)
        out, (h, c) = cell(torch.zeros(1, 1, 1), (torch.ones(1, 1, 1), torch.full((1, 1, 1), 2.0)))
    i, f, g, o = (torch.tensor([-2.0, -1.0, 0.0, 3.0]) / 3.5 ** 0.5).tolist()
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert c.item() == pytest.approx(sigmoid(f) * 2.0 + sigmoid(i) * math.tanh(g), abs=1e-5)
    assert out.item() == h.item() == pytest.approx(sigmoid(o) * math.tanh(0.5), abs=1e-5)


@pytest.mark.parametrize("cell_class", [PeepholeLSTM, LayerNormLSTM])
def test_custom_cells_gradients_equal_finite_differences(cell_class):
    """The whole cell (input projection, hand-written recurrence backward, layer norms) against
    finite differences in float64, with respect to the inputs, the initial state and every
    parameter."""
    from torch.func import functional_call

    torch.manual_seed(5)
    cell = cell_class(3, 4).double()
    names = [name for name, _ in cell.named_parameters()]
    # gains and biases away from 1 and 0, peepholes large enough to matter
    params = [(p + 0.5 * torch.randn_like(p)).detach().requires_grad_() for p in cell.parameters()]
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))

    def run(x, h0, c0, *values):
        out, (h, c) = functional_call(cell, dict(zip(names, values)), (x, (h0, c0)))
        return out, h, c

    assert torch.autograd.gradcheck(run, (x, h0, c0, *params))


def test_peephole_backward_written_out_equals_autograd():
    from rnnseq.models.cells import _PeepholeRecurrence

    torch.manual_seed(3)
    steps, batch, hidden = 4, 3, 2
    inputs = [torch.randn(steps, batch, 4 * hidden), torch.randn(batch, hidden),
              torch.randn(batch, hidden), torch.randn(4 * hidden, hidden), torch.randn(3, hidden)]
    inputs = [t.double().requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(_PeepholeRecurrence.apply, inputs)


def test_layer_norm_backward_written_out_equals_autograd():
    from rnnseq.models.cells import _LayerNormRecurrence

    torch.manual_seed(4)
    steps, batch, hidden = 3, 2, 3
    inputs = [torch.randn(steps, batch, 4 * hidden), torch.randn(batch, hidden),
              torch.randn(batch, hidden), torch.randn(4 * hidden, hidden),
              torch.randn(4 * hidden), torch.randn(4 * hidden), torch.randn(hidden),
              torch.randn(hidden)]
    inputs = [t.double().requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(lambda *a: _LayerNormRecurrence.apply(*a, 1e-5), inputs)
