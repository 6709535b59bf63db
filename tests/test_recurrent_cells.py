"""The cell setting everywhere (rnnseq.models.recurrent): what each name builds, forget-gate bias,
zoneout, and the contracts every cell must keep in the encoder and the decoders."""

import functools

import pytest
import torch
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.decoding.search import beam_search, greedy_search, max_decode_lengths
from rnnseq.models.attention import LocationAttention
from rnnseq.models.cells import LayerNormLSTM, PeepholeLSTM
from rnnseq.models.decoder import AttentionDecoder
from rnnseq.models.encoder import RecurrentEncoder
from rnnseq.models.forecaster import RegressionDecoder
from rnnseq.models.recurrent import (
    CELLS,
    CellStack,
    build_recurrent,
    parse_cell,
    run_recurrent,
    step_recurrent,
    zero_state,
)
from rnnseq.models.tacotron import TacotronDecoder

EOS = 1
ATTENTION = functools.partial(LocationAttention, attention_dim=8, conv_channels=2, conv_kernel=3)


# -- what each setting builds ------------------------------------------------------------------

@pytest.mark.parametrize("name,module", [
    ("lstm", nn.LSTM), ("lstmp", nn.LSTM), ("gru", nn.GRU), ("rnn", nn.RNN),
    ("peephole_lstm", PeepholeLSTM), ("ln_lstm", LayerNormLSTM)])
def test_each_name_builds_its_module_and_pytorch_cells_stay_fused(name, module):
    stacked = build_recurrent(name, 5, 8, num_layers=3, dropout=0.2)
    if module in (nn.LSTM, nn.GRU, nn.RNN):  # one fused call for every layer
        assert type(stacked) is module and stacked.num_layers == 3 and stacked.dropout == 0.2
    else:
        assert isinstance(stacked, CellStack) and len(stacked.layers) == 3
        assert all(type(layer) is module for layer in stacked.layers)
    assert isinstance(build_recurrent(name, 5, 8, zoneout=0.1), CellStack)
    out, (h, c) = run_recurrent(stacked, torch.randn(2, 4, 5))
    projected = 4 if name == "lstmp" else 8  # lstmp's default projection: half the hidden size
    assert out.shape == (2, 4, projected) and h.shape == (3, 2, projected)
    assert c.shape == (3, 2, 0 if name in ("gru", "rnn") else 8)


@pytest.mark.parametrize("name", CELLS)
def test_zoneout_keeps_the_parameter_names_so_checkpoints_load_across_it(name):
    torch.manual_seed(0)
    plain = build_recurrent(name, 5, 6, num_layers=2)
    zoned = build_recurrent(name, 5, 6, num_layers=2, zoneout=0.1)
    assert list(plain.state_dict()) == list(zoned.state_dict())
    zoned.load_state_dict(plain.state_dict())
    zoned.zoneout = 0.0
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(run_recurrent(zoned, x)[0], run_recurrent(plain, x)[0])


def test_lstmp_projects_h_to_proj_size_and_refuses_one_as_large_as_the_hidden_size():
    rnn = build_recurrent({"name": "lstmp", "proj_size": 3}, 5, 8)
    assert rnn.proj_size == 3 and run_recurrent(rnn, torch.randn(2, 4, 5))[0].shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"model.cell.proj_size < model.hidden_size, got 8 and 8"):
        build_recurrent({"name": "lstmp", "proj_size": 8}, 5, 8)


def test_cell_settings_that_cannot_apply_are_errors_naming_the_key():
    with pytest.raises(ValueError, match=r"unknown recurrent cell 'transformer' \(model.lm.cell\)"):
        parse_cell("transformer", "model.lm.cell")
    with pytest.raises(ValueError, match="model.cell.proj_size applies to .*lstmp"):
        parse_cell({"name": "lstm", "proj_size": 4}, "model.cell")
    with pytest.raises(ValueError, match="model.cell.forget_bias applies to LSTMs only"):
        parse_cell({"name": "gru", "forget_bias": 1.0}, "model.cell")
    with pytest.raises(ValueError, match=r"model.cell has unknown settings \['zoneout'\]"):
        parse_cell({"name": "lstm", "zoneout": 0.1}, "model.cell")
    with pytest.raises(ValueError, match=r"model.decoder.zoneout must be in \[0, 1\)"):
        build_recurrent("lstm", 4, 4, zoneout=1.0, key="model.decoder")
    with pytest.raises(ValueError, match="model.lm.cell.proj_size < model.lm.hidden_size"):
        build_recurrent({"name": "lstmp", "proj_size": 4}, 4, 4, key="model.lm")


@pytest.mark.parametrize("name", ["lstm", "lstmp", "peephole_lstm", "ln_lstm"])
@pytest.mark.parametrize("zoneout", [0.0, 0.1])
def test_forget_bias_sets_the_forget_gate_of_every_layer_and_nothing_else(name, zoneout):
    torch.manual_seed(0)
    reference = build_recurrent(name, 5, 6, num_layers=2, zoneout=zoneout)
    torch.manual_seed(0)
    rnn = build_recurrent({"name": name, "forget_bias": 1.0}, 5, 6, num_layers=2,
                          zoneout=zoneout)
    biases = {n: p for n, p in rnn.named_parameters() if "bias_ih" in n}
    assert len(biases) == 2  # one per layer
    for key, bias_ih in biases.items():
        bias_hh = dict(rnn.named_parameters())[key.replace("bias_ih", "bias_hh")]
        total = bias_ih + bias_hh
        assert torch.equal(total[6:12], torch.ones(6))  # gate order i, f, g, o
        before = dict(reference.named_parameters())[key]
        assert torch.equal(bias_ih[:6], before[:6]) and torch.equal(bias_ih[12:], before[12:])


def test_custom_cells_run_in_float32_under_bfloat16_autocast():
    rnn = build_recurrent("peephole_lstm", 5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = run_recurrent(rnn, torch.randn(2, 3, 5))
    assert out.dtype == h.dtype == torch.float32


@pytest.mark.parametrize("training", [False, True])
def test_a_zoneout_decoder_of_custom_cells_steps_from_a_bfloat16_state(training):
    decoder = _decoder("ln_lstm", zoneout=0.1).train(training)
    memory, mask, _ = _memory()
    memory = memory.bfloat16()  # as the encoder's output under bf16-mixed precision
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = decoder.init_state(memory, mask)
        assert state.h.dtype == torch.bfloat16
        logits, state, _ = decoder.step(torch.zeros(3, dtype=torch.long), state, memory, mask)
    assert torch.isfinite(logits.float()).all() and state.h.dtype == torch.float32


# -- zoneout -------------------------------------------------------------------------------------

def _zoneout_stack(name: str, zoneout: float, num_layers: int = 1) -> CellStack:
    torch.manual_seed(0)
    return build_recurrent(name, 4, 6, num_layers=num_layers, zoneout=zoneout)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_zoneout_at_evaluation_is_the_expectation_and_without_randomness(name):
    stack = _zoneout_stack(name, 0.25, num_layers=2).eval()
    x = torch.randn(3, 5, 4)
    got, (h_end, c_end) = run_recurrent(stack, x)
    state = [zero_state(layer, 3, x) for layer in stack.layers]
    want = []
    for t in range(5):  # by hand: each unit 0.25 of its previous value, 0.75 of the new one,
        out = x[:, t]  # and the next layer reads the zoned-out h
        for i, layer in enumerate(stack.layers):
            _, new = step_recurrent(layer, out, state[i])
            state[i] = tuple(0.25 * old + 0.75 * fresh for old, fresh in zip(state[i], new))
            out = state[i][0][0]
        want.append(out)
    torch.testing.assert_close(got, torch.stack(want, 1))
    torch.testing.assert_close(h_end, torch.cat([h for h, _ in state]))
    torch.testing.assert_close(c_end, torch.cat([c for _, c in state]))
    assert torch.equal(run_recurrent(stack, x)[0], got)  # no random draw at evaluation


FUSED_MODULES = {
    "lstm": lambda **kw: nn.LSTM(5, 7, 2, batch_first=True, **kw),
    "gru": lambda **kw: nn.GRU(5, 7, 2, batch_first=True, **kw),
    "rnn_tanh": lambda **kw: nn.RNN(5, 7, 2, nonlinearity="tanh", batch_first=True, **kw),
    "rnn_relu": lambda **kw: nn.RNN(5, 7, 2, nonlinearity="relu", batch_first=True, **kw),
}


def _step_and_sequence_of_one(kind: str, **kw):
    """``step_recurrent`` and the fused module over a sequence of one step, from the same state,
    and whether the step called the fused module."""
    torch.manual_seed(0)
    rnn = FUSED_MODULES[kind](**kw)
    x = torch.randn(3, 5)
    cells = 7 if kind == "lstm" else 0
    state = (torch.randn(2, 3, 7), torch.randn(2, 3, cells))
    calls = []
    hook = rnn.register_forward_pre_hook(lambda *_: calls.append(1))
    stepped = step_recurrent(rnn, x, state)
    called = bool(calls)
    hook.remove()
    out, (h, c) = run_recurrent(rnn, x.unsqueeze(1), state)
    return stepped, (out[:, 0], (h, c)), called


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(FUSED_MODULES))
def test_a_step_of_a_fused_module_runs_its_cell_functions_and_equals_the_module(kind, bias):
    (out, (h, c)), (want_out, (want_h, want_c)), called = _step_and_sequence_of_one(kind, bias=bias)
    assert not called  # the per-layer cell functions, not the fused kernel (bench: 1.6x faster)
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(h, want_h)  # every layer's state, in order
    torch.testing.assert_close(c, want_c)


def test_a_step_drops_out_between_layers_in_training_as_the_fused_module_does():
    # dropout 1 zeroes the second layer's input in both, so their outputs must still agree;
    # a step that skipped the dropout would feed the first layer's output instead
    (out, _), (want_out, _), _ = _step_and_sequence_of_one("lstm", dropout=1.0)
    torch.testing.assert_close(out, want_out)
    (eval_out, _), _, _ = _step_and_sequence_of_one("lstm", dropout=0.0)
    assert not torch.allclose(out, eval_out)


def test_zoneout_of_zero_is_the_layer_itself():
    stack = _zoneout_stack("lstm", 0.25)
    lstm = stack.layers[0]
    stack.zoneout = 0.0
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(run_recurrent(stack, x)[0], lstm(x)[0])


def test_zoneout_in_training_keeps_each_unit_old_or_new_at_its_rate():
    stack = _zoneout_stack("lstm", 0.3).train()
    lstm = stack.layers[0]
    x = torch.randn(400, 1, 4)
    previous = (torch.randn(1, 400, 6), torch.randn(1, 400, 6))
    _, new = step_recurrent(lstm, x[:, 0], previous)  # the layer's own step, as the stack runs it
    _, zoned = run_recurrent(stack, x, previous)
    for old_part, new_part, got in zip(previous, new, zoned):
        kept = got == old_part
        assert torch.all(kept | (got == new_part))  # each unit is exactly one of the two
        assert 0.25 < kept.float().mean().item() < 0.35  # 2,400 units at rate 0.3


# -- every cell keeps the contracts of the modules it runs in ----------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_encoder_padded_batch_equals_each_sequence_alone_for_every_cell(cell):
    torch.manual_seed(0)
    enc = RecurrentEncoder(input_dim=6, hidden_size=6, num_layers=2, cell=cell,
                           subsampling="none", dropout=0.0).eval()
    lengths = torch.tensor([9, 5, 2])
    feats = torch.randn(3, 9, 6) * make_pad_mask(lengths).unsqueeze(-1)
    out, _ = enc(feats, lengths)
    assert out.shape[-1] == enc.output_dim == (6 if cell == "lstmp" else 12)
    for i in range(3):
        alone, _ = enc(feats[i:i + 1, :lengths[i]], lengths[i:i + 1])
        torch.testing.assert_close(out[i, :lengths[i]], alone[0], atol=1e-5, rtol=1e-4)
        assert out[i, lengths[i]:].abs().sum() == 0


def _decoder(cell, zoneout=0.0, **options) -> AttentionDecoder:
    torch.manual_seed(0)
    decoder = AttentionDecoder(vocab_size=7, memory_dim=6, attention=ATTENTION, embed_dim=4,
                               hidden_size=8, num_layers=2, dropout=0.0, cell=cell,
                               zoneout=zoneout, **options)
    with torch.no_grad():
        decoder.output.bias[EOS] = 1.0  # a mild <eos> bias: varied lengths
    return decoder.eval()


def _memory(seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 4, 6])
    return torch.randn(3, 7, 6, generator=g), make_pad_mask(lengths, 7), lengths


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("zoneout", [0.0, 0.2])
def test_decoder_teacher_forcing_equals_stepwise_decoding_for_every_cell(cell, zoneout):
    decoder = _decoder(cell, zoneout)
    memory, mask, _ = _memory()
    tokens = torch.randint(0, 7, (3, 5))
    logits, weights = decoder(memory, mask, tokens)
    state = decoder.init_state(memory, mask)
    for t in range(5):
        step_logits, state, step_weights = decoder.step(tokens[:, t], state, memory, mask)
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(step_weights, weights[:, t], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_equals_beam_of_one_for_every_cell(cell):
    decoder = _decoder(cell, zoneout=0.1 if cell == "lstm" else 0.0)
    memory, mask, lengths = _memory(2)
    limits = max_decode_lengths(lengths, 1.0)
    greedy, _ = greedy_search(decoder, memory, mask, limits, EOS)
    beam = beam_search(decoder, memory, mask, limits, EOS, beam_size=1)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.score for h in beam] == pytest.approx([h.score for h in greedy], abs=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstmp", "ln_lstm"])
def test_forecaster_and_tacotron_decoders_step_with_every_kind_of_state(cell):
    torch.manual_seed(0)
    forecaster = RegressionDecoder(memory_dim=6, step_features=2, hidden_size=8, num_layers=2,
                                   cell=cell, attention=ATTENTION)
    predictions, weights = forecaster(torch.randn(3, 5, 6), torch.randn(3), torch.randn(3, 4, 2))
    assert predictions.shape == (3, 4) and weights.shape == (3, 4, 5)
    tacotron = TacotronDecoder(n_mels=4, memory_dim=6, attention=ATTENTION, reduction=2,
                               prenet_sizes=(8,), attention_rnn_size=8, decoder_rnn_size=10,
                               cell=cell, zoneout=0.1)
    memory, mask, _ = _memory()
    frames, stops, weights = tacotron(memory, mask, torch.randn(3, 6, 4))
    assert frames.shape == (3, 6, 4) and stops.shape == (3, 6) and weights.shape == (3, 3, 7)


def test_step_recurrent_equals_one_step_of_the_sequence():
    rnn = build_recurrent("ln_lstm", 5, 6, num_layers=2)
    x = torch.randn(2, 3, 5)
    out, _ = run_recurrent(rnn, x)
    state = zero_state(rnn, 2, x)
    for t in range(3):
        step, state = step_recurrent(rnn, x[:, t], state)
        torch.testing.assert_close(step, out[:, t])


# -- checkpoints from before the cell setting (rnnseq.upgrade) ------------------------------------

def test_parameter_names_from_before_the_cell_setting_are_upgraded():
    from rnnseq.upgrade import upgrade_parameter_names

    decoder = _decoder("lstm")
    known = {f"model.decoder.{k}" for k in decoder.state_dict()}
    old = {(f"model.decoder.lstm.{k[4:]}" if k.startswith("rnn.") else f"model.decoder.{k}"): v
           for k, v in decoder.state_dict().items()}
    assert "model.decoder.lstm.weight_hh_l1" in old
    upgraded = upgrade_parameter_names(old, known)
    assert set(upgraded) == known
    fresh = _decoder("lstm")
    nn.init.zeros_(fresh.rnn.weight_hh_l1)
    fresh.load_state_dict({k[len("model.decoder."):]: v for k, v in upgraded.items()})
    assert torch.equal(fresh.rnn.weight_hh_l1, decoder.rnn.weight_hh_l1)
    # a model of one's own whose decoder has an `lstm` keeps its names
    assert upgrade_parameter_names({"decoder.lstm.x": 1}, {"decoder.lstm.x"}) == {
        "decoder.lstm.x": 1}

    forecaster = RegressionDecoder(memory_dim=6, hidden_size=8, num_layers=2,
                                   attention=ATTENTION)
    cells = [nn.LSTMCell(7, 8), nn.LSTMCell(8, 8)]  # the decoder's layers before the registry
    prefix = "model.decoder."
    old = {}  # in the order the old decoder registered its parameters
    for name, p in forecaster.state_dict().items():
        if name.startswith("out."):
            for i, cell in enumerate(cells):
                old.update({f"{prefix}cells.{i}.{n}": q for n, q in cell.state_dict().items()})
        if not name.startswith("rnn."):
            old[prefix + name] = p
    upgraded = upgrade_parameter_names(old, {prefix + k for k in forecaster.state_dict()})
    upgraded = {k[len(prefix):]: v for k, v in upgraded.items()}
    forecaster.load_state_dict(upgraded)
    assert torch.equal(forecaster.rnn.weight_ih_l1, cells[1].weight_ih)
    assert torch.equal(forecaster.rnn.bias_hh_l0, cells[0].bias_hh)
    # an optimizer's saved state follows the parameters' order, which must not have moved
    assert list(upgraded) == [n for n, _ in forecaster.named_parameters()]
