"""Guided attention loss: the penalty against a direct loop over the formula, what the loss
rewards, and how the task adds it to training only, annealed and checked."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from rnnseq.config import task_config
from rnnseq.data.batching import Batch
from rnnseq.data.tokenizer import SPECIALS
from rnnseq.models.guided_attention import guided_attention_loss, guided_attention_penalty
from rnnseq.tasks.seq2seq import check_guided_attention, guided_attention_weight
from tests.conftest import compose_config
from tests.test_train_smoke import TINY_MODEL


def slow_loss(weights, query_lengths, memory_lengths, sigma):
    """The definition, one element at a time: mean over valid steps of the expected penalty."""
    total, steps = 0.0, 0
    for b in range(weights.shape[0]):
        big_n, big_s = int(query_lengths[b]), int(memory_lengths[b])
        for n in range(big_n):
            for s in range(big_s):
                penalty = 1 - math.exp(-((n / big_n - s / big_s) ** 2) / (2 * sigma ** 2))
                total += float(weights[b, n, s]) * penalty
            steps += 1
    return total / steps


def test_penalty_by_hand():
    penalty = guided_attention_penalty(torch.tensor([2]), torch.tensor([4]), 3, 5, sigma=0.5)
    # step 1 of 2 against memory step 0 of 4: distance 0.5, 1 - exp(-0.25 / 0.5)
    assert penalty[0, 1, 0].item() == pytest.approx(1 - math.exp(-0.5))
    assert penalty[0, 0, 0].item() == 0.0  # on the diagonal
    assert penalty[0, 1, 2].item() == 0.0  # 1/2 against 2/4
    assert penalty[0, 2].abs().sum() == 0 and penalty[0, :, 4].abs().sum() == 0  # padding


def test_loss_matches_the_definition_with_padding():
    generator = torch.Generator().manual_seed(0)
    weights = torch.rand(3, 6, 9, generator=generator).softmax(-1)
    query_lengths, memory_lengths = torch.tensor([6, 3, 4]), torch.tensor([9, 5, 7])
    got = guided_attention_loss(weights, query_lengths, memory_lengths, sigma=0.3)
    assert got.item() == pytest.approx(slow_loss(weights, query_lengths, memory_lengths, 0.3),
                                       rel=1e-5)


def test_diagonal_attention_costs_less_than_reversed():
    n, s = 8, 16
    diagonal = torch.zeros(1, n, s)
    diagonal[0, torch.arange(n), torch.arange(n) * 2] = 1.0
    reversed_ = diagonal.flip(-1)
    lengths = (torch.tensor([n]), torch.tensor([s]))
    assert guided_attention_loss(diagonal, *lengths, sigma=0.2).item() < 0.01
    assert guided_attention_loss(reversed_, *lengths, sigma=0.2).item() > 0.5


def test_annealed_weight_and_checks():
    settings = check_guided_attention({"weight": 2.0, "anneal_steps": 100})
    assert settings["sigma"] == 0.4  # the default filled in
    assert [guided_attention_weight(settings, step) for step in (0, 50, 100, 500)] == \
        [2.0, 1.0, 0.0, 0.0]
    assert guided_attention_weight(check_guided_attention({"weight": 0.5}), 10 ** 6) == 0.5
    with pytest.raises(ValueError, match="unknown task.guided_attention settings \\['width'\\]"):
        check_guided_attention({"width": 0.2})
    with pytest.raises(ValueError, match="task.guided_attention.sigma"):
        check_guided_attention({"sigma": 0.0})


def test_task_adds_the_loss_in_training_only(tmp_path):
    cfg = compose_config(["experiment=asr", *TINY_MODEL, "task.guided_attention.weight=2.0"],
                         tmp_path)
    task = instantiate(task_config(cfg), model=cfg.model, vocabulary=[*SPECIALS, " ", "a", "b"],
                       features=cfg.data.features)
    generator = torch.Generator().manual_seed(0)
    batch = Batch(features=torch.randn(2, 40, cfg.data.features.n_mels, generator=generator),
                  feature_lengths=torch.tensor([40, 32]),
                  targets=torch.tensor([[4, 5, 4], [5, 4, 0]]), target_lengths=torch.tensor([3, 2]),
                  ids=["x", "y"], texts=["aba", "ba"])
    task.train()
    torch.manual_seed(0)
    train = task.compute_losses(batch)
    torch.manual_seed(0)  # the same dropout and SpecAugment masks
    enc = task.encode(batch)
    decoder_input, _ = task._decoder_io(batch)
    _, weights = task.model.decoder(enc.memory, enc.mask, decoder_input)
    expected = guided_attention_loss(weights, batch.target_lengths + 1, enc.lengths, 0.4)
    assert train["guided"].item() == pytest.approx(expected.item(), rel=1e-5)
    w = task.hparams.ctc_weight
    mixed = (1 - w) * train["att"] + w * train["ctc"]
    assert train["loss"].item() == pytest.approx((mixed + 2.0 * train["guided"]).item(), rel=1e-5)
    task.eval()
    assert "guided" not in task.compute_losses(batch)  # val/loss stays comparable
