"""CTC prefix scores (joint CTC/attention decoding): every frame at once, candidates only."""

import pytest
import torch
import torch.nn.functional as F

from rnnseq.decoding.ctc_prefix import CTCPrefixScorer
from rnnseq.decoding.scorer import Step

BLANK, EOS = 0, 1


def _ctc_inputs(seed=0, b=3, s=12, v=6):
    generator = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(2 * torch.randn(b, s, v, generator=generator), -1)
    lengths = torch.tensor([12, 9, 5])[:b]
    return log_probs, lengths


def _ctc_gains(scorer, targets, pre_beam=None):
    """The CTC gains of each target token and of <eos>, scoring only ``pre_beam`` candidates
    (the target among them) or the whole vocabulary."""
    n = len(targets)
    state = scorer.init_state(torch.arange(n))
    steps = max(len(t) for t in targets) + 1
    total = torch.zeros(n)
    last = torch.full((n,), EOS)
    done = torch.zeros(n, dtype=torch.bool)
    for i in range(steps):
        token = torch.tensor([t[i] if i < len(t) else EOS for t in targets])
        if pre_beam is None:
            gains, pending = scorer.score(state, Step(i, last))
            chosen = gains.gather(1, token[:, None])[:, 0]
        else:  # the target, then the other tokens in a scrambled order, cut at pre_beam
            others = torch.stack([torch.tensor([c for c in (5, 2, 4, 1, 3, 0) if c != int(t)])
                                  for t in token])
            candidates = torch.cat([token[:, None], others], 1)[:, :pre_beam]
            gains, pending = scorer.score_candidates(state, Step(i, last), candidates)
            chosen = gains[:, 0]
        total += torch.where(done, 0.0, chosen)
        done |= token == EOS
        state = scorer.select(pending, torch.arange(n), token)
        last = token
    return total


@pytest.mark.parametrize("pre_beam", [None, 2, 3])
def test_ctc_prefix_gains_add_up_to_the_ctc_loss_with_or_without_a_pre_beam(pre_beam):
    log_probs, lengths = _ctc_inputs()
    targets = [[2, 3, 3, 4], [5, 2, 2], [3]]  # repeats need a blank in between
    scorer = CTCPrefixScorer(log_probs, lengths, BLANK, EOS)
    total = _ctc_gains(scorer, targets, pre_beam)
    padded = torch.tensor([t + [0] * (4 - len(t)) for t in targets])
    expected = -F.ctc_loss(log_probs.transpose(0, 1), padded, lengths,
                           torch.tensor([len(t) for t in targets]), blank=BLANK, reduction="none")
    assert total.tolist() == pytest.approx(expected.tolist(), abs=1e-4)


def test_ctc_prefix_scores_of_a_padded_utterance_equal_it_alone_and_a_pre_beam_changes_nothing():
    log_probs, lengths = _ctc_inputs(1)
    step = Step(0, torch.full((3,), EOS))
    batched = CTCPrefixScorer(log_probs, lengths, BLANK, EOS)
    state = batched.init_state(torch.arange(3))
    full, pending = batched.score(state, step)
    alone = CTCPrefixScorer(log_probs[2:, :5], lengths[2:], BLANK, EOS)
    assert alone.score(alone.init_state(torch.arange(1)), Step(0, step.tokens[:1]))[0][0].tolist() \
        == pytest.approx(full[2].tolist(), abs=1e-5)
    # two steps on: the pre-beam's scores are the full scores of the same candidates
    tokens = torch.tensor([2, 3, 4])
    state = batched.select(pending, torch.arange(3), tokens)
    full, _ = batched.score(state, Step(1, tokens))
    candidates = torch.tensor([[4, 1], [3, 2], [5, 4]])
    partial, _ = batched.score_candidates(state, Step(1, tokens), candidates)
    assert torch.allclose(partial, full.gather(1, candidates), atol=1e-5)
    assert full[:, BLANK].eq(float("-inf")).all()


@pytest.mark.parametrize("target", [[3], [3, 4], [3, 3], [4, 3, 3, 2], [2, 2, 2]])
def test_gains_of_one_utterance_add_up_to_its_ctc_log_likelihood(target):
    log_probs, _ = _ctc_inputs(2, b=1, s=8, v=5)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([8]), BLANK, EOS)
    total = _ctc_gains(scorer, [target])
    expected = -F.ctc_loss(log_probs.transpose(0, 1), torch.tensor([target]), torch.tensor([8]),
                           torch.tensor([len(target)]), blank=BLANK, reduction="sum")
    assert float(total[0]) == pytest.approx(float(expected), abs=1e-4)
