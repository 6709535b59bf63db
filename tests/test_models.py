"""Encoder, attention and decoder contracts at tiny sizes."""

import functools
import math

import pytest
import torch

from rnnseq.data.batching import make_pad_mask
from rnnseq.models import attention as A
from rnnseq.models.decoder import AttentionDecoder, select_state
from rnnseq.models.encoder import RecurrentEncoder
from rnnseq.models.recurrent import reverse_within_lengths
from rnnseq.upgrade import upgraded_attention_config

ATTENTIONS = {
    "none": A.NoAttention,
    "dot": A.DotAttention,
    "scaled_dot": A.ScaledDotAttention,
    "general": A.GeneralAttention,
    "additive": functools.partial(A.AdditiveAttention, attention_dim=8),
    "location": functools.partial(A.LocationAttention, attention_dim=8, conv_channels=3,
                                  conv_kernel=5),
}
# dot and scaled_dot score the memory itself, so their query size must equal the memory size (6);
# the others get a different query size (5) to show that they map one to the other.
SAME_SIZE = {"dot", "scaled_dot"}


def _query_dim(name: str) -> int:
    return 6 if name in SAME_SIZE else 5


def _memory(b=3, s=7, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 4, 1])[:b]
    memory = torch.randn(b, s, d, generator=g)
    return memory, lengths, make_pad_mask(lengths, s)


@pytest.mark.parametrize("name", ATTENTIONS)
def test_attention_weights_sum_to_one_and_ignore_padding(name):
    torch.manual_seed(0)
    memory, lengths, mask = _memory()
    q = _query_dim(name)
    att = ATTENTIONS[name](query_dim=q, memory_dim=6)
    state = att.init_state(memory, mask)
    for _ in range(3):  # several steps: location attention feeds its weights back
        context, weights, state = att(torch.randn(3, q), memory, mask, state)
        assert weights.shape == (3, 7) and context.shape == (3, 6)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3))
        assert weights[~mask].abs().max() == 0
    # the context only mixes real frames: changing padding changes nothing
    padded = memory.masked_fill(~mask.unsqueeze(-1), 1e3)
    c1, _, _ = att(torch.ones(3, q), memory, mask, att.init_state(memory, mask))
    c2, _, _ = att(torch.ones(3, q), padded, mask, att.init_state(padded, mask))
    torch.testing.assert_close(c1, c2)


@pytest.mark.parametrize("name", ATTENTIONS)
def test_attention_all_steps_at_once_equals_step_by_step(name):
    torch.manual_seed(0)
    memory, _, mask = _memory()
    att = ATTENTIONS[name](query_dim=_query_dim(name), memory_dim=6)
    queries = torch.randn(3, 4, _query_dim(name))
    contexts, weights = att.forward_all(queries, memory, mask, att.init_state(memory, mask))
    state = att.init_state(memory, mask)
    for t in range(4):
        c, w, state = att(queries[:, t], memory, mask, state)
        torch.testing.assert_close(contexts[:, t], c)
        torch.testing.assert_close(weights[:, t], w)


@pytest.mark.parametrize("chunk_elements", [1, 40, 1 << 22])  # one step, several, all at once
def test_chunked_additive_energies_match_autograd_of_the_plain_formula(monkeypatch, chunk_elements):
    monkeypatch.setattr(A._AdditiveEnergies, "CHUNK_ELEMENTS", chunk_elements)
    g = torch.Generator().manual_seed(0)
    keys, queries, v = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
                        for shape in [(2, 5, 3), (2, 4, 3), (3,)])
    plain = (keys.unsqueeze(1) + queries.unsqueeze(2)).tanh() @ v  # (B, T, S)
    chunked = A._AdditiveEnergies.apply(keys, queries, v)
    torch.testing.assert_close(chunked, plain)
    grad_out = torch.randn(plain.shape, generator=g, dtype=torch.float64)
    expected = torch.autograd.grad(plain, (keys, queries, v), grad_out)
    got = torch.autograd.grad(chunked, (keys, queries, v), grad_out)
    for name, a, b in zip(("keys", "queries", "v"), got, expected):
        torch.testing.assert_close(a, b, msg=f"gradient of {name}")


def test_dot_energies_are_the_plain_dot_product_of_query_and_memory():
    memory, _, mask = _memory()
    query = torch.randn(3, 6)
    att = A.DotAttention(query_dim=6, memory_dim=6)
    assert list(att.parameters()) == []  # nothing learnt: the memory is the key
    energies = att.energies(query, att.init_state(memory, mask))
    by_hand = torch.tensor([[sum(float(query[b, i] * memory[b, s, i]) for i in range(6))
                             for s in range(7)] for b in range(3)])
    torch.testing.assert_close(energies, by_hand)
    _, weights, _ = att(query, memory, mask, att.init_state(memory, mask))
    torch.testing.assert_close(weights, A.masked_softmax(by_hand, mask))


def test_scaled_dot_is_dot_over_the_square_root_of_the_size():
    memory, _, mask = _memory()
    dot, scaled = A.DotAttention(6, 6), A.ScaledDotAttention(6, 6)
    for query in (torch.randn(3, 6), torch.randn(3, 4, 6)):  # one step, all steps at once
        torch.testing.assert_close(scaled.energies(query, scaled.init_state(memory, mask)),
                                   dot.energies(query, dot.init_state(memory, mask)) / math.sqrt(6))


def test_general_is_the_unscaled_bilinear_product_with_its_parameter_named_proj():
    memory, _, mask = _memory()
    query = torch.randn(3, 5)
    att = A.GeneralAttention(query_dim=5, memory_dim=6)
    assert {k: tuple(v.shape) for k, v in att.state_dict().items()} == {"proj.weight": (5, 6)}
    by_hand = torch.einsum("bq,qd,bsd->bs", query, att.proj.weight, memory)
    torch.testing.assert_close(att.energies(query, att.init_state(memory, mask)), by_hand)


@pytest.mark.parametrize("cls,option", [(A.DotAttention, "dot"),
                                        (A.ScaledDotAttention, "scaled_dot")])
def test_dot_attentions_refuse_different_sizes_naming_both(cls, option):
    with pytest.raises(ValueError, match=rf"attention={option} .*memory_dim=6 .*query_dim=5 .*"
                                         r"model\.decoder\.hidden_size=6.*general"):
        cls(query_dim=5, memory_dim=6)


def test_upgrade_turns_an_old_dot_config_without_projection_into_the_same_scaled_dot():
    old = {"_target_": "rnnseq.models.attention.DotAttention", "_partial_": True}
    keys = ["model.decoder.lstm.weight_ih_l0", "model.decoder.combine.weight"]
    new = upgraded_attention_config(old, keys, "model.decoder.attention.")
    assert new == {"_target_": "rnnseq.models.attention.ScaledDotAttention", "_partial_": True}
    assert old["_target_"].endswith(".DotAttention")  # a copy: the checkpoint's config is intact
    # the old class computed q . m / sqrt(Q) when the sizes matched: the new target does that
    memory, _, mask = _memory()
    query = torch.randn(3, 6)
    att = A.ScaledDotAttention(6, 6)
    old_energies = torch.einsum("bq,bsq->bs", query, memory) / math.sqrt(6)
    torch.testing.assert_close(att.energies(query, att.init_state(memory, mask)), old_energies)


def test_upgrade_refuses_an_old_dot_config_with_its_hidden_projection_and_passes_others():
    old = {"_target_": "rnnseq.models.attention.DotAttention", "_partial_": True}
    prefix = "model.decoder.attention."
    with pytest.raises(ValueError, match=r"(?s)scaled dot product with a learnt projection.*"
                                         r"model/attention=general.*scaled_dot"):
        upgraded_attention_config(old, {f"{prefix}proj.weight", "model.decoder.output.weight"},
                                  prefix)
    state = {f"{prefix}proj.weight": torch.zeros(320, 512)}  # the state dict itself: sizes too
    with pytest.raises(ValueError, match="memory size 512 vs query size 320"):
        upgraded_attention_config(old, state, prefix)
    general = {"_target_": "rnnseq.models.attention.GeneralAttention", "_partial_": True}
    assert upgraded_attention_config(general, state, prefix) is general
    location = {"_target_": "rnnseq.models.attention.LocationAttention", "attention_dim": 8}
    assert upgraded_attention_config(location, [], prefix) is location


def test_location_features_equal_the_convolution_then_the_projection():
    attention = A.LocationAttention(query_dim=4, memory_dim=6, attention_dim=8, conv_channels=3,
                                    conv_kernel=5)
    weights = torch.softmax(torch.randn(2, 9), -1)
    reference = attention.location_proj(attention.conv(weights.unsqueeze(1)).transpose(1, 2))
    assert torch.allclose(attention.location_features(weights), reference, atol=1e-6)


def test_cumulative_location_features_equal_a_two_channel_convolution_then_the_projection():
    attention = A.LocationAttention(query_dim=4, memory_dim=6, attention_dim=8, conv_channels=3,
                                    conv_kernel=5, cumulative=True)
    weights = torch.softmax(torch.randn(2, 9), -1)
    cumulative = torch.rand(2, 9) * 3
    channels = torch.stack([weights, cumulative], 1)  # (B, 2, S): channel 0 previous, 1 sum
    reference = attention.location_proj(attention.conv(channels).transpose(1, 2))
    assert torch.allclose(attention.location_features(weights, cumulative), reference, atol=1e-6)


def test_cumulative_attention_state_sums_every_steps_weights_and_survives_reordering():
    torch.manual_seed(0)
    attention = A.LocationAttention(query_dim=4, memory_dim=6, attention_dim=8, conv_channels=3,
                                    conv_kernel=5, cumulative=True)
    memory, mask = torch.randn(2, 7, 6), torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    state = attention.init_state(memory, mask)
    assert torch.equal(state.cumulative, torch.zeros(2, 7))
    seen = torch.zeros(2, 7)
    for _ in range(3):
        _, weights, state = attention(torch.randn(2, 4), memory, mask, state)
        seen += weights
    torch.testing.assert_close(state.cumulative, seen)
    assert state.cumulative[1, 4:].abs().sum() == 0  # padding never receives weight
    flipped = select_state(state, torch.tensor([1, 0]))
    torch.testing.assert_close(flipped.cumulative, seen.flip(0))
    plain = A.LocationAttention(query_dim=4, memory_dim=6, attention_dim=8)
    assert select_state(plain.init_state(memory, mask), torch.tensor([0])).cumulative is None


def test_reverse_within_lengths_keeps_padding_and_is_an_involution():
    x = torch.arange(8.0).view(2, 4, 1)
    lengths = torch.tensor([4, 2])
    rev = reverse_within_lengths(x, lengths)
    assert rev[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    torch.testing.assert_close(reverse_within_lengths(rev, lengths), x)


@pytest.mark.parametrize("subsampling,cell", [("conv", "lstm"), ("pyramid", "gru"),
                                              ("none", "rnn"), ("conv", "gru"), ("vgg", "lstm")])
def test_encoder_padded_batch_equals_each_sequence_alone(subsampling, cell):
    torch.manual_seed(0)
    enc = RecurrentEncoder(input_dim=6, hidden_size=5, num_layers=3, cell=cell,
                           subsampling=subsampling, conv_channels=2, dropout=0.0).eval()
    lengths = torch.tensor([13, 9, 4])
    feats = torch.randn(3, 13, 6) * make_pad_mask(lengths).unsqueeze(-1)
    out, out_lengths = enc(feats, lengths)
    assert out_lengths.tolist() == enc.output_lengths(lengths).tolist()
    assert out.shape == (3, int(out_lengths.max()), enc.output_dim) and enc.output_dim == 10
    for i in range(3):
        alone, alone_len = enc(feats[i : i + 1, : lengths[i]], lengths[i : i + 1])
        assert alone_len.item() == out_lengths[i].item()
        torch.testing.assert_close(out[i, : out_lengths[i]], alone[0], atol=1e-5, rtol=1e-4)
        assert out[i, out_lengths[i] :].abs().sum() == 0


def test_vgg_front_end_has_espnets_vgg2l_sizes():
    from rnnseq.models.encoder import VGGSubsampling

    front = VGGSubsampling(80, 256, factor=4, channels=64)
    convs = (1 * 64 + 64 * 64 + 64 * 128 + 128 * 128) * 9 + 64 + 64 + 128 + 128  # 3x3 kernels + biases
    projection = 128 * 20 * 256 + 256  # 80 mel bins pooled twice: 20
    assert sum(p.numel() for p in front.parameters()) == convs + projection == 259_008 + 655_616
    out, lengths = front(torch.randn(2, 13, 80), torch.tensor([13, 6]))
    assert out.shape == (2, 4, 256) and lengths.tolist() == [4, 2]  # ceil(13/4), ceil(6/4)


def test_encoder_rejects_bad_settings_naming_the_key():
    with pytest.raises(ValueError, match="unknown recurrent cell 'transformer'.*gru"):
        RecurrentEncoder(input_dim=4, cell="transformer")
    with pytest.raises(ValueError, match="unknown subsampling"):
        RecurrentEncoder(input_dim=4, subsampling="magic")
    with pytest.raises(ValueError, match="power of two"):
        RecurrentEncoder(input_dim=4, subsampling_factor=3)
    with pytest.raises(ValueError, match="num_layers > 2"):
        RecurrentEncoder(input_dim=4, subsampling="pyramid", num_layers=2)
    with pytest.raises(ValueError, match="must be positive"):
        RecurrentEncoder(input_dim=4, hidden_size=-1)


def _decoder(attention, input_feeding):
    return AttentionDecoder(vocab_size=9, memory_dim=6, attention=ATTENTIONS[attention],
                            embed_dim=4, hidden_size=_query_dim(attention), num_layers=2,
                            input_feeding=input_feeding, dropout=0.0).eval()


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("input_feeding", [False, True])
def test_teacher_forcing_equals_stepwise_decoding(attention, input_feeding):
    torch.manual_seed(0)
    dec = _decoder(attention, input_feeding)
    memory, _, mask = _memory()
    tokens = torch.randint(0, 9, (3, 5))
    logits, weights = dec(memory, mask, tokens)
    assert logits.shape == (3, 5, 9) and weights.shape == (3, 5, 7)
    state = dec.init_state(memory, mask)
    for t in range(5):
        step_logits, state, w = dec.step(tokens[:, t], state, memory, mask)
        torch.testing.assert_close(logits[:, t], step_logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(weights[:, t], w, atol=1e-5, rtol=1e-4)


def test_select_state_reorders_every_tensor_on_batch_dim():
    dec = _decoder("location", True)
    memory, _, mask = _memory()
    state = dec.init_state(memory, mask)
    picked = select_state(state, torch.tensor([2, 0]))
    assert picked.h.shape == (2, 2, 5) and picked.attention.keys.shape == (2, 7, 8)
    torch.testing.assert_close(picked.attention.weights[0], state.attention.weights[2])


def test_seq2seq_forward_wires_encoder_decoder_and_ctc():
    from omegaconf import OmegaConf

    from rnnseq.models.seq2seq import build_seq2seq

    torch.manual_seed(0)
    model_cfg = OmegaConf.create({
        "encoder": {"_target_": "rnnseq.models.encoder.RecurrentEncoder", "_partial_": True,
                    "hidden_size": 4, "num_layers": 1, "conv_channels": 2, "dropout": 0.0},
        "decoder": {"_target_": "rnnseq.models.decoder.AttentionDecoder", "_partial_": True,
                    "hidden_size": 8, "embed_dim": 3, "dropout": 0.0},  # dot: = encoder output
        "attention": {"_target_": "rnnseq.models.attention.DotAttention", "_partial_": True},
    })
    model = build_seq2seq(model_cfg, input_dim=5, vocab_size=11).eval()
    assert model.decoder.attention.memory_dim == model.encoder.output_dim == 8
    feats, lengths = torch.randn(2, 17, 5), torch.tensor([17, 9])
    tokens = torch.randint(0, 11, (2, 4))
    out = model(feats, lengths, tokens)
    assert out.logits.shape == (2, 4, 11) and out.ctc_log_probs.shape == (2, 5, 11)
    assert out.memory_lengths.tolist() == [5, 3]
    torch.testing.assert_close(out.ctc_log_probs.exp().sum(-1), torch.ones(2, 5))
    enc = model.encode(feats, lengths)
    logits, _ = model.decoder(enc.memory, enc.mask, tokens)
    torch.testing.assert_close(out.logits, logits)
