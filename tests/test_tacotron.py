import functools

import pytest
import torch

from rnnseq.models.attention import LocationAttention
from rnnseq.models.tacotron import (
    Postnet,
    Prenet,
    Tacotron,
    TacotronDecoder,
    TextEncoder,
    group_frames,
    ungroup_frames,
)

F = 6  # mel bins


def tiny_tacotron(reduction=2, prenet_dropout=0.0, cell="lstm") -> Tacotron:
    torch.manual_seed(0)
    encoder = TextEncoder(vocab_size=9, embed_dim=8, conv_layers=2, conv_kernel=3, hidden_size=5,
                          cell=cell)
    attention = functools.partial(LocationAttention, attention_dim=7, conv_channels=3,
                                  conv_kernel=5, cumulative=True)
    decoder = TacotronDecoder(F, encoder.output_dim, attention, reduction=reduction,
                              prenet_sizes=(8, 8), prenet_dropout=prenet_dropout,
                              attention_rnn_size=12, decoder_rnn_size=10, cell=cell)
    return Tacotron(encoder, decoder, Postnet(F, channels=8, kernel=3, layers=3)).eval()


def test_frames_grouped_per_step_and_ungrouped_come_back_with_zero_padding():
    frames = torch.arange(2 * 7 * 2, dtype=torch.float32).view(2, 7, 2)
    grouped = group_frames(frames, 3)
    assert grouped.shape == (2, 3, 6)
    assert grouped[0, 1].tolist() == frames[0, 3:6].flatten().tolist()  # frames 3, 4, 5
    back = ungroup_frames(grouped, 3)
    assert torch.equal(back[:, :7], frames)
    assert back[:, 7:].abs().sum() == 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_teacher_forcing_equals_stepping_on_the_last_frame_of_each_target_group(cell):
    model = tiny_tacotron(reduction=2, cell=cell)
    tokens, lengths = torch.randint(1, 9, (2, 5)), torch.tensor([5, 3])
    targets = torch.randn(2, 7, F)
    with torch.no_grad():
        memory, mask = model.encode(tokens, lengths)
        frames, stops, weights = model.decoder(memory, mask, targets)
        assert frames.shape == (2, 8, F) and stops.shape == (2, 8) and weights.shape == (2, 4, 5)
        state, last = model.decoder.init_state(memory, mask), model.decoder.go_frame(memory)
        for n in range(4):
            step_frames, step_stops, state, step_weights = model.decoder.step(last, state, memory,
                                                                              mask)
            torch.testing.assert_close(step_frames, frames[:, 2 * n:2 * n + 2])
            torch.testing.assert_close(step_stops, stops[:, 2 * n:2 * n + 2])
            torch.testing.assert_close(step_weights, weights[:, n])
            last = targets[:, min(2 * n + 1, 6)]  # the last frame of target group n
    assert weights[1, :, 3:].abs().sum() == 0  # no attention on padded tokens


def test_an_utterance_gives_the_same_output_alone_and_in_a_padded_batch():
    model = tiny_tacotron(reduction=3)
    tokens = torch.randint(1, 9, (2, 6))
    targets = torch.randn(2, 9, F)
    with torch.no_grad():
        batch = model(tokens, torch.tensor([6, 4]), targets, torch.tensor([9, 5]))
        alone = model(tokens[1:, :4], torch.tensor([4]), targets[1:, :5], torch.tensor([5]))
    torch.testing.assert_close(batch.mel[1, :6], alone.mel[0])
    torch.testing.assert_close(batch.mel_postnet[1, :5], alone.mel_postnet[0, :5])
    assert batch.mel_postnet[1, 5:].abs().sum() == 0
    torch.testing.assert_close(batch.attention[1, :2, :4], alone.attention[0])


def test_prenet_dropout_stays_on_in_eval_and_per_row_generators_make_it_batch_independent():
    prenet = Prenet(4, sizes=(16, 16), dropout=0.5).eval()
    x = torch.ones(3, 4)
    assert not torch.equal(prenet(x), prenet(x))  # dropout on at inference
    rows = prenet(x, [torch.Generator().manual_seed(s) for s in (7, 8, 9)])
    alone = prenet(x[1:2], [torch.Generator().manual_seed(8)])
    torch.testing.assert_close(rows[1:2], alone)
    assert not torch.equal(rows[0], rows[1])  # each row its own masks
    with pytest.raises(ValueError, match="2 generators for 3 rows"):
        prenet(x, [torch.Generator(), torch.Generator()])


def test_a_speaker_embedding_joins_every_memory_step_and_is_required_once_trained():
    import functools as ft

    encoder = TextEncoder(vocab_size=9, embed_dim=8, conv_layers=1, conv_kernel=3, hidden_size=5)
    attention = ft.partial(LocationAttention, attention_dim=7, conv_channels=3, conv_kernel=5)
    decoder = TacotronDecoder(F, encoder.output_dim + 4, attention, reduction=2,
                              prenet_sizes=(8,), prenet_dropout=0.0, attention_rnn_size=6,
                              decoder_rnn_size=6)
    model = Tacotron(encoder, decoder, Postnet(F, channels=4, kernel=3, layers=2),
                     num_speakers=3, speaker_dim=4).eval()
    tokens, lengths = torch.randint(1, 9, (2, 5)), torch.tensor([5, 3])
    memory, mask = model.encode(tokens, lengths, torch.tensor([0, 2]))
    assert memory.shape == (2, 5, encoder.output_dim + 4)
    torch.testing.assert_close(memory[1, 0, -4:], model.speaker_embedding.weight[2])
    assert memory[1, 3:].abs().sum() == 0  # padding stays zero
    other, _ = model.encode(tokens, lengths, torch.tensor([1, 2]))
    assert not torch.equal(other[0], memory[0]) and torch.equal(other[1], memory[1])
    with pytest.raises(ValueError, match="speaker id"):
        model.encode(tokens, lengths)
    with pytest.raises(ValueError, match="no speaker embedding"):
        tiny_tacotron().encode(tokens, lengths, torch.tensor([0, 1]))
