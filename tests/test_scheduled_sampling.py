"""Scheduled sampling: its schedules by hand, what the decoders read, and that probability 0
leaves teacher forcing on the fused path, bit for bit."""

import functools
import math

import pytest
import torch

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.attention import LocationAttention
from rnnseq.models.decoder import AttentionDecoder
from rnnseq.models.forecaster import RegressionDecoder
from rnnseq.tasks.scheduled_sampling import check_scheduled_sampling, sampling_probability

ATTENTION = functools.partial(LocationAttention, attention_dim=8, conv_channels=2, conv_kernel=3)


def _settings(**settings):
    return check_scheduled_sampling(settings)


def test_schedules_by_hand():
    constant = _settings(probability=0.3)
    assert [sampling_probability(constant, s) for s in (0, 10, 10**6)] == [0.3, 0.3, 0.3]
    linear = _settings(probability=0.4, schedule="linear", ramp_steps=100)
    assert [sampling_probability(linear, s) for s in (0, 25, 100, 500)] == pytest.approx(
        [0.0, 0.1, 0.4, 0.4])
    ramp = _settings(probability=0.5, schedule="inverse_sigmoid", ramp_steps=1000)
    k = 100.0
    for _ in range(200):  # k ln k = 500 (halfway at 1000 / 2), by fixed-point iteration
        k = 500 / math.log(k)
    values = [sampling_probability(ramp, s) for s in (0, 250, 500, 1000, 5000, 10**7)]
    assert values[0] == pytest.approx(0.5 * (1 - k / (k + 1)))  # Bengio et al.'s formula at 0
    assert values[2] == pytest.approx(0.25)  # halfway at ramp_steps / 2
    assert values == sorted(values) and values[-1] == pytest.approx(0.5)


def test_scheduled_sampling_settings_that_cannot_apply_are_errors_naming_the_key():
    with pytest.raises(ValueError, match=r"unknown task.scheduled_sampling settings \['rate'\]"):
        _settings(rate=0.1)
    with pytest.raises(ValueError, match="probability must be in"):
        _settings(probability=1.5)
    with pytest.raises(ValueError, match="unknown task.scheduled_sampling.schedule 'cosine'"):
        _settings(probability=0.1, schedule="cosine")
    with pytest.raises(ValueError, match="ramp_steps applies to the linear"):
        _settings(probability=0.1, ramp_steps=100)
    with pytest.raises(ValueError, match="schedule=linear needs ramp_steps > 0"):
        _settings(probability=0.1, schedule="linear")


def _decoder(dropout=0.0):
    torch.manual_seed(0)
    return AttentionDecoder(vocab_size=9, memory_dim=6, attention=ATTENTION, embed_dim=4,
                            hidden_size=8, num_layers=2, dropout=dropout)


def _inputs():
    lengths = torch.tensor([7, 4, 6])
    return torch.randn(3, 7, 6), make_pad_mask(lengths, 7), torch.randint(0, 9, (3, 6))


def test_probability_zero_is_the_fused_path_bit_for_bit_without_random_draws(monkeypatch):
    decoder = _decoder(dropout=0.3).train()  # dropout: any extra random draw changes the result
    memory, mask, tokens = _inputs()
    torch.manual_seed(1)
    x = decoder.dropout(decoder.embed(tokens))  # the fused path, written out
    out, _ = decoder.rnn(x)
    contexts, want_weights = decoder.attention.forward_all(
        out, memory, mask, decoder.init_state(memory, mask).attention)
    want = decoder.output(decoder._attentional(out, contexts))
    calls = []
    decoder.rnn.register_forward_hook(lambda *_: calls.append(1))
    monkeypatch.setattr(decoder, "step", lambda *a: pytest.fail("stepped at probability 0"))
    torch.manual_seed(1)
    logits, weights = decoder(memory, mask, tokens, sampling_probability=0.0)
    assert calls == [1]  # one call of the two-layer nn.LSTM over every step
    assert torch.equal(logits, want) and torch.equal(weights, want_weights)


def test_probability_one_reads_the_decoders_own_best_token_at_every_step():
    decoder = _decoder().eval()
    memory, mask, tokens = _inputs()
    logits, weights = decoder(memory, mask, tokens, sampling_probability=1.0)
    state, previous = decoder.init_state(memory, mask), tokens[:, 0]
    for t in range(tokens.shape[1]):  # greedy decoding from the first reference token
        step_logits, state, step_weights = decoder.step(previous, state, memory, mask)
        torch.testing.assert_close(logits[:, t], step_logits)
        torch.testing.assert_close(weights[:, t], step_weights)
        previous = step_logits.argmax(-1)


def test_between_zero_and_one_each_row_reads_the_reference_or_its_own_prediction():
    decoder = _decoder().eval()
    memory, mask, tokens = _inputs()
    memory, mask, tokens = memory.repeat(40, 1, 1), mask.repeat(40, 1), tokens.repeat(40, 1)
    read = []
    decoder.embed.register_forward_hook(lambda module, args, out: read.append(args[0]))
    logits, _ = decoder(memory, mask, tokens, sampling_probability=0.4)
    own = []
    for t in range(1, tokens.shape[1]):
        predicted = logits[:, t - 1].argmax(-1)
        assert torch.all((read[t] == tokens[:, t]) | (read[t] == predicted))
        differ = tokens[:, t] != predicted  # rows where the two choices can be told apart
        own.append((read[t] == predicted)[differ].float())
    assert torch.equal(read[0], tokens[:, 0])
    assert 0.3 < torch.cat(own).mean().item() < 0.5  # about 0.4 of the readable choices


@pytest.mark.parametrize("cell", ["lstm", "gru", "ln_lstm"])
def test_forecaster_reads_true_values_below_probability_one_and_its_own_at_one(cell, monkeypatch):
    from rnnseq.models import forecaster

    torch.manual_seed(0)
    decoder = RegressionDecoder(memory_dim=6, hidden_size=8, cell=cell, attention=ATTENTION).eval()
    memory, last, features = torch.randn(3, 5, 6), torch.randn(3), torch.zeros(3, 4, 0)
    targets = torch.randn(3, 4)
    fed = []
    step = forecaster.step_recurrent

    def recording_step(rnn, x, state):  # x (B, I): the value read first
        fed.append(x[:, 0])
        return step(rnn, x, state)

    monkeypatch.setattr(forecaster, "step_recurrent", recording_step)
    free, _ = decoder(memory, last, features)
    own = torch.stack(fed, 1)
    torch.testing.assert_close(own[:, 1:], free[:, :-1])  # its own predictions, fed back
    assert torch.equal(decoder(memory, last, features, targets, sampling_probability=1.0)[0], free)
    fed.clear()
    decoder(memory, last, features, targets, sampling_probability=0.0)  # teacher forcing
    torch.testing.assert_close(torch.stack(fed, 1), torch.cat([last[:, None], targets[:, :3]], 1))


def test_forecasting_passes_its_schedules_probability_and_targets_in_training(tmp_path,
                                                                            monkeypatch):
    from rnnseq.data.forecast import SeriesBatch
    from tests.test_configs import _build, compose_config

    cfg = compose_config(["experiment=forecast", "task.scheduled_sampling.schedule=linear",
                          "task.scheduled_sampling.ramp_steps=200"], tmp_path)
    _, task, _ = _build(cfg)
    seen = []
    forward = task.model.forward

    def record(history, origins, targets=None, sampling_probability=1.0, **kw):
        seen.append((targets is not None, sampling_probability))
        return forward(history, origins, targets=targets,
                       sampling_probability=sampling_probability, **kw)

    monkeypatch.setattr(task.model, "forward", record)
    monkeypatch.setattr(type(task), "global_step", property(lambda self: 50))
    history, horizon = task.hparams.history, task.hparams.horizon
    batch = SeriesBatch(history=torch.randn(2, history), target=torch.randn(2, horizon),
                        naive=torch.zeros(2, horizon), origins=torch.tensor([60, 70]),
                        ids=["t=60", "t=70"])
    task.training_loss(batch)
    assert seen == [(True, 0.25)]  # a quarter of the way up the linear ramp to 1


def test_tasks_pass_the_schedules_probability_in_training_only(tmp_path, monkeypatch):
    from tests.test_configs import _build, compose_config

    cfg = compose_config(["experiment=g2p", "model.encoder.hidden_size=8",
                          "model.decoder.hidden_size=8", "task.scheduled_sampling.probability=0.5",
                          "task.scheduled_sampling.schedule=linear",
                          "task.scheduled_sampling.ramp_steps=100"], tmp_path)
    _, task, _ = _build(cfg)
    seen = []
    forward = task.model.decoder.forward

    def record(*args, sampling_probability=0.0):
        seen.append(sampling_probability)
        return forward(*args, sampling_probability=sampling_probability)

    monkeypatch.setattr(task.model.decoder, "forward", record)
    monkeypatch.setattr(type(task), "global_step", property(lambda self: 50))
    batch = _text_batch(task)
    task.train()
    task.compute_losses(batch)
    task.eval()
    task.compute_losses(batch)
    assert seen == [0.25, 0.0]  # half-way up the linear ramp to 0.5; nothing at evaluation


def _text_batch(task):
    from rnnseq.data.batching import Batch

    source = torch.randint(3, len(task.source_tokenizer), (2, 5))
    target = torch.randint(3, len(task.tokenizer), (2, 4))
    lengths = torch.tensor([5, 3])
    return Batch(ids=["a", "b"], features=source, feature_lengths=lengths, targets=target,
                 target_lengths=torch.tensor([4, 2]), texts=["", ""])
