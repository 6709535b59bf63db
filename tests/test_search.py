import functools
import math

import pytest
import torch

from rnnseq.data.batching import make_pad_mask
from rnnseq.decoding.search import beam_search, greedy_search, max_decode_lengths
from rnnseq.models.attention import LocationAttention
from rnnseq.models.decoder import AttentionDecoder

EOS = 1


def _setup(seed=0, b=4):
    torch.manual_seed(seed)
    dec = AttentionDecoder(vocab_size=7, memory_dim=6, embed_dim=4, hidden_size=8,
                           attention=functools.partial(LocationAttention, attention_dim=8,
                                                       conv_channels=2, conv_kernel=3),
                           dropout=0.0).eval()
    # A strong <eos> bias early would end everything at once; a mild one gives varied lengths.
    with torch.no_grad():
        dec.output.bias[EOS] = 1.0
    lengths = torch.tensor([9, 5, 7, 2])[:b]
    memory = torch.randn(b, 9, 6)
    return dec, memory, make_pad_mask(lengths, 9), max_decode_lengths(lengths, 1.0)


@pytest.mark.parametrize("seed", range(4))
def test_beam_of_one_equals_greedy(seed):
    dec, memory, mask, max_len = _setup(seed)
    greedy, _ = greedy_search(dec, memory, mask, max_len, EOS)
    beam = beam_search(dec, memory, mask, max_len, EOS, beam_size=1)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    for g, b in zip(greedy, beam):
        assert g.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("beam_size", [2, 5])
def test_batched_beam_search_equals_decoding_each_utterance_alone(beam_size):
    dec, memory, mask, max_len = _setup(1)
    batched = beam_search(dec, memory, mask, max_len, EOS, beam_size=beam_size)
    for i in range(memory.shape[0]):
        alone = beam_search(dec, memory[i : i + 1, : int(mask[i].sum())],
                            mask[i : i + 1, : int(mask[i].sum())], max_len[i : i + 1], EOS,
                            beam_size=beam_size)
        assert alone[0].tokens == batched[i].tokens
        assert alone[0].score == pytest.approx(batched[i].score, abs=1e-4)


def test_hypotheses_respect_length_limits_and_wider_beams_score_no_worse():
    dec, memory, mask, max_len = _setup(2)
    greedy, attention = greedy_search(dec, memory, mask, max_len, EOS, return_attention=True)
    assert attention.shape[0] == 4 and attention.shape[2] == 9
    wide = beam_search(dec, memory, mask, max_len, EOS, beam_size=6, length_penalty=0.0)
    for g, w, limit in zip(greedy, wide, max_len.tolist()):
        assert len(g.tokens) <= limit and len(w.tokens) <= limit
        assert EOS not in w.tokens
        # without length normalisation the wider search keeps the greedy path's score or beats it
        assert w.score >= g.score - 1e-5


def test_max_decode_lengths():
    assert max_decode_lengths(torch.tensor([10, 3, 0]), 0.5).tolist() == [5, 2, 1]


def test_joint_ctc_search_follows_a_confident_ctc_and_batches_like_alone():
    dec, memory, mask, max_len = _setup(3)
    b, s, v = memory.shape[0], memory.shape[1], 7
    # A CTC that is certain of "3 4" (blank elsewhere) overrides the untrained attention decoder.
    ctc = torch.full((b, s, v), -20.0)
    ctc[:, :, 0] = 0.0
    ctc[:, 0, 0], ctc[:, 0, 3] = -20.0, 0.0
    ctc[:, 1, 0], ctc[:, 1, 4] = -20.0, 0.0
    max_len = torch.clamp(max_len, min=3)
    hyps = beam_search(dec, memory, mask, max_len, EOS, beam_size=3, ctc_log_probs=ctc,
                       ctc_weight=0.9)
    assert [h.tokens for h in hyps[:3]] == [[3, 4]] * 3
    # utterance 3 has 2 frames: still "3 4", and its result does not depend on the batch
    alone = beam_search(dec, memory[3:, :2], mask[3:, :2], max_len[3:], EOS, beam_size=3,
                        ctc_log_probs=ctc[3:, :2], ctc_weight=0.9)
    assert alone[0].tokens == hyps[3].tokens == [3, 4]
    # a weight without its scores is refused, as in a task's decoding settings, not dropped
    with pytest.raises(ValueError, match=r"ctc_weight=0.9 needs ctc_log_probs"):
        beam_search(dec, memory, mask, max_len, EOS, beam_size=3, ctc_weight=0.9)
    with pytest.raises(ValueError, match=r"lm_weight=0.5 needs lm"):
        beam_search(dec, memory, mask, max_len, EOS, beam_size=3, lm_weight=0.5)


class ScriptedDecoder:
    """A decoder whose next-token probabilities depend only on the step number, so that every
    hypothesis's total is known by hand. Vocabulary: 0 blank (never), 1 <eos>, 2 "a".

    step 0: <eos> .4, a .6; step 1: a .7, <eos> .3; step 2: <eos> .7, a .3; then <eos> only.
    The state is the ``(B,)`` step count, batch-first as :func:`select_state` expects.
    """

    TABLE = [[0.0, 0.4, 0.6], [0.0, 0.3, 0.7], [0.0, 0.7, 0.3], [0.0, 1.0, 0.0]]
    NEVER = 1e-12  # stands in for probability 0, which would give -inf - -inf in the search

    def init_state(self, memory, memory_mask):
        return torch.zeros(memory.shape[0], dtype=torch.long)

    def step(self, tokens, state, memory, memory_mask):
        table = torch.tensor(self.TABLE).clamp_min(self.NEVER).log()
        logits = table[state.clamp_max(len(self.TABLE) - 1)]  # (B, V), log-probabilities
        return logits, state + 1, memory_mask.float() / memory_mask.sum(-1, keepdim=True)


@pytest.mark.parametrize("beam_size", [2, 3])
def test_length_penalty_picks_the_best_score_per_token(beam_size):
    """Totals by hand: [] = log .4 = -0.916 (1 token with <eos>), [a] = log(.6 * .3) = -1.715
    (2), [a, a] = log(.6 * .7 * .7) = -1.224 (3, -0.408 per token), [a, a, a] = log(.6 * .7 *
    .3) = -2.071 (4). Without normalisation [] wins; per token, [a, a] does."""
    memory, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    max_len = torch.tensor([5, 5])
    raw = beam_search(ScriptedDecoder(), memory, mask, max_len, EOS, beam_size=beam_size,
                      length_penalty=0.0)
    assert [h.tokens for h in raw] == [[], []]
    assert [h.score for h in raw] == pytest.approx([math.log(0.4)] * 2, abs=1e-6)
    per_token = beam_search(ScriptedDecoder(), memory, mask, max_len, EOS, beam_size=beam_size,
                            length_penalty=1.0)
    assert [h.tokens for h in per_token] == [[2, 2], [2, 2]]
    # the returned score is the total, not the normalised one
    assert [h.score for h in per_token] == pytest.approx([math.log(0.6 * 0.7 * 0.7)] * 2, abs=1e-6)
