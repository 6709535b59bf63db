import pytest
import torch
import torch.nn.functional as F

from rnnseq.decoding.ctc_prefix import CTCPrefixScorer

BLANK, EOS = 0, 1


def _log_probs(n, s, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(n, s, v, generator=g) * 2, dim=-1)


@pytest.mark.parametrize("target", [[3], [3, 4], [3, 3], [4, 3, 3, 2], [2, 2, 2]])
def test_prefix_gains_add_up_to_the_ctc_likelihood(target):
    lp = _log_probs(1, 8, 5)
    scorer = CTCPrefixScorer(lp, torch.tensor([8]), BLANK, EOS)
    state = scorer.initial_state()
    total = 0.0
    for token in target:
        gain, scores, r = scorer.extend(state)
        total += float(gain[0, token])
        state = scorer.select(scores, r, torch.tensor([0]), torch.tensor([token]))
    gain, _, _ = scorer.extend(state)
    total += float(gain[0, EOS])
    expected = -F.ctc_loss(lp.transpose(0, 1), torch.tensor([target]), torch.tensor([8]),
                           torch.tensor([len(target)]), blank=BLANK, reduction="sum")
    assert total == pytest.approx(float(expected), abs=1e-4)


def test_padded_rows_score_like_the_utterance_alone_and_blank_is_never_proposed():
    lp = _log_probs(2, 9, 5, seed=1)
    lengths = torch.tensor([9, 5])
    batched = CTCPrefixScorer(lp, lengths, BLANK, EOS)
    alone = CTCPrefixScorer(lp[1:, :5], lengths[1:], BLANK, EOS)
    sb, sa = batched.initial_state(), alone.initial_state()
    for token in [3, 4]:
        gb, scb, rb = batched.extend(sb)
        ga, sca, ra = alone.extend(sa)
        torch.testing.assert_close(gb[1], ga[0])
        assert torch.isinf(gb[:, BLANK]).all()
        sb = batched.select(scb, rb, torch.tensor([0, 1]), torch.tensor([token, token]))
        sa = alone.select(sca, ra, torch.tensor([0]), torch.tensor([token]))
