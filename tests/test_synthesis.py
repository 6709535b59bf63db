import pytest
import torch

from rnnseq.decoding.synthesis import (
    SynthesisSettings,
    first_stop,
    synthesize,
    utterance_seed,
    window_mask,
)
from tests.test_tacotron import F, tiny_tacotron


def test_first_stop_is_the_first_frame_over_the_threshold_where_stopping_is_allowed():
    probs = torch.tensor([[0.1, 0.7, 0.9], [0.6, 0.2, 0.1], [0.9, 0.9, 0.9], [0.1, 0.2, 0.3]])
    may_stop = torch.tensor([True, True, False, True])
    assert first_stop(probs, may_stop, 0.5).tolist() == [1, 0, -1, -1]


def test_window_mask_keeps_the_tokens_around_the_focus_and_never_padding():
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    got = window_mask(torch.tensor([3, 2]), mask, backward=1, forward=2)
    assert got.int().tolist() == [[0, 0, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0]]


def test_a_stop_fires_only_once_the_attention_reaches_the_last_tokens():
    model = tiny_tacotron(reduction=2)
    torch.nn.init.constant_(model.decoder.stop.bias, 20.0)  # every frame says stop
    tokens, lengths = torch.randint(1, 9, (2, 6)), torch.tensor([6, 4])
    anywhere = synthesize(model, tokens, lengths, SynthesisSettings(stop_tokens=6))
    assert anywhere.lengths.tolist() == [1, 1] and anywhere.stopped.all()
    # with the stop allowed near the end only, an utterance runs until its focus gets there
    near_end = synthesize(model, tokens, lengths, SynthesisSettings(stop_tokens=1))
    for row, length in enumerate(near_end.lengths.tolist()):
        step = (length - 1) // 2
        assert near_end.attention[row, step].argmax() == lengths[row] - 1
        assert (near_end.attention[row, :step].argmax(-1) < lengths[row] - 1).all()


def test_an_utterance_that_never_stops_ends_at_the_frame_limit_and_says_so():
    model = tiny_tacotron(reduction=3)
    torch.nn.init.constant_(model.decoder.stop.bias, -20.0)
    result = synthesize(model, torch.randint(1, 9, (2, 5)), torch.tensor([5, 2]),
                        SynthesisSettings(max_length_ratio=4.0))
    assert result.lengths.tolist() == [21, 9]  # ceil(4 * 5 / 3) = 7 steps, ceil(8 / 3) = 3
    assert not result.stopped.any()
    assert result.mel[1, 9:].abs().sum() == 0 and result.mel.shape == (2, 21, F)


@pytest.mark.parametrize("window", [None, (1, 2)])
def test_a_batch_synthesises_what_each_utterance_gives_alone(window):
    model = tiny_tacotron(reduction=2, prenet_dropout=0.5)
    tokens, lengths = torch.randint(1, 9, (3, 7)), torch.tensor([7, 3, 5])
    settings = SynthesisSettings(max_length_ratio=3.0, window=window)
    seeds = [utterance_seed(str(t.tolist())) for t in tokens]
    batch = synthesize(model, tokens, lengths, settings, seeds)
    for row in range(3):
        n = int(lengths[row])
        alone = synthesize(model, tokens[row:row + 1, :n], lengths[row:row + 1], settings,
                           seeds[row:row + 1])
        assert alone.lengths[0] == batch.lengths[row]
        frames = int(alone.lengths[0])
        torch.testing.assert_close(batch.mel[row, :frames], alone.mel[0, :frames])
        assert batch.mel[row, frames:].abs().sum() == 0
    again = synthesize(model, tokens, lengths, settings, seeds)
    assert torch.equal(again.mel, batch.mel)  # the seeds make it reproducible


def test_the_window_keeps_each_step_within_reach_of_the_last_focus():
    model = tiny_tacotron(reduction=2)
    tokens, lengths = torch.randint(1, 9, (2, 8)), torch.tensor([8, 6])
    result = synthesize(model, tokens, lengths, SynthesisSettings(window=(0, 1),
                                                                  max_length_ratio=2.0))
    focus = result.attention.argmax(-1)  # (B, N)
    steps = focus[:, 1:] - focus[:, :-1]
    assert ((steps == 0) | (steps == 1)).all()


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="stop_threshold"):
        SynthesisSettings(stop_threshold=1.5)
    with pytest.raises(ValueError, match="window"):
        SynthesisSettings(window=(1, -1))


def test_free_running_equals_teacher_forcing_on_its_own_output():
    model = tiny_tacotron(reduction=3)  # prenet dropout 0: both paths see the same inputs
    torch.nn.init.constant_(model.decoder.stop.bias, -20.0)
    with torch.no_grad():  # a tiny random model barely listens to its last frame: make it
        for layer in model.decoder.prenet.layers:
            layer.weight.mul_(10)
    tokens, lengths = torch.randint(1, 9, (2, 5)), torch.tensor([5, 4])
    free = synthesize(model, tokens, lengths, SynthesisSettings(max_length_ratio=3.0))
    with torch.no_grad():
        memory, mask = model.encode(tokens, lengths)
        decoder_mel = []  # the decoder's own frames (before the postnet), regrouped
        state, last = model.decoder.init_state(memory, mask), model.decoder.go_frame(memory)
        for _ in range(free.attention.shape[1]):
            frames, _, state, _ = model.decoder.step(last, state, memory, mask)
            decoder_mel.append(frames)
            last = frames[:, -1]
        own = torch.cat(decoder_mel, 1)
        forced, _, weights = model.decoder(memory, mask, own)
    torch.testing.assert_close(forced, own)
    torch.testing.assert_close(weights, free.attention)
    torch.testing.assert_close(model.postnet_mel(own, free.lengths), free.mel)
