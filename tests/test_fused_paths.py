"""The fast paths the benchmarks measure, held by behaviour: recurrent layers run as one fused
call per layer whatever the sequence length, and attention keys are projected once per utterance."""

import functools

import pytest
import torch
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.decoding.search import beam_search, greedy_search, max_decode_lengths
from rnnseq.models.attention import LocationAttention
from rnnseq.models.decoder import AttentionDecoder
from rnnseq.models.encoder import RecurrentEncoder
from rnnseq.models.language_model import RNNLanguageModel


def _count_rnn_calls(model: nn.Module, run) -> int:
    """Calls of fused recurrent modules (``nn.LSTM``/``GRU``/``RNN``) while ``run()`` runs; cell
    modules (``nn.LSTMCell``...) would mean a Python loop over time and are refused outright."""
    assert not any(isinstance(m, nn.RNNCellBase) for m in model.modules())
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1))
             for m in model.modules() if isinstance(m, nn.RNNBase)]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_calls_each_fused_layer_once_whatever_the_length(cell, bidirectional):
    encoder = RecurrentEncoder(8, hidden_size=6, num_layers=3, cell=cell,
                               bidirectional=bidirectional, conv_channels=2)
    counts = set()
    for frames in (8, 40, 120):
        features = torch.randn(2, frames, 8)
        lengths = torch.tensor([frames, frames // 2])
        counts.add(_count_rnn_calls(encoder, lambda f=features, n=lengths: encoder(f, n)))
    assert counts == {3 * (2 if bidirectional else 1)}


def test_language_model_calls_its_fused_stack_once_per_batch():
    lm = RNNLanguageModel(vocab_size=11, embed_dim=4, hidden_size=6, num_layers=2)
    for steps in (5, 50):
        tokens = torch.randint(0, 11, (3, steps))
        assert _count_rnn_calls(lm, lambda t=tokens: lm(t)) == 1


def test_attention_keys_are_projected_once_per_utterance_in_every_search():
    torch.manual_seed(0)
    decoder = AttentionDecoder(vocab_size=7, memory_dim=6, embed_dim=4, hidden_size=8,
                               attention=functools.partial(LocationAttention, attention_dim=8,
                                                           conv_channels=2, conv_kernel=3)).eval()
    projected_rows = []
    decoder.attention.memory_proj.register_forward_hook(
        lambda module, inputs, output: projected_rows.append(inputs[0].shape[0]))
    lengths = torch.tensor([9, 6])
    memory, mask = torch.randn(2, 9, 6), make_pad_mask(lengths, 9)
    limits = max_decode_lengths(lengths, 1.0)

    greedy_search(decoder, memory, mask, limits, eos_id=1)
    assert projected_rows == [2]  # one projection of both utterances, not one per step
    projected_rows.clear()
    beam_search(decoder, memory, mask, limits, eos_id=1, beam_size=3)
    assert projected_rows == [2]  # projected before the beams are expanded
