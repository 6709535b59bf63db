"""Beam search over scorers: the finished pool, n-best lists, CTC prefix scores with a pre-beam,
coverage, and equivalences (width one and greedy, batched and alone, early stop and none)."""

import itertools
import math

import pytest
import torch

from rnnseq.decoding.coverage import CoverageScorer
from rnnseq.decoding.ctc_prefix import CTCPrefixScorer
from rnnseq.decoding.decoder_scorer import DecoderScorer
from rnnseq.decoding.length_bonus import LengthBonus
from rnnseq.decoding.lm_fusion import LMScorer
from rnnseq.decoding.scorer import Step
from rnnseq.decoding.search import beam_search, scorer_beam_search, scorer_greedy_search
from tests.test_lm_fusion import _stateful_fusion
from tests.test_search import EOS, _setup

BLANK = 0


class TreeDecoder:
    """Next-token probabilities that depend on the last token only. Vocabulary: 0 blank (never),
    1 <eos>, 2 "a", 3 "b". From the start: <eos> .4, a .35, b .25; after a: a .9, <eos> .1; after
    b: <eos> (almost) 1. The state is the ``(B,)`` last token."""

    NEVER = 1e-12

    def __init__(self):
        table = torch.full((4, 4), self.NEVER)
        table[EOS, 1:] = torch.tensor([0.4, 0.35, 0.25])  # the start symbol is <eos>
        table[2, EOS], table[2, 2] = 0.1, 0.9
        table[3, EOS] = 1.0
        self.log_table = table.log()

    def init_state(self, memory, memory_mask):
        return torch.full((memory.shape[0],), EOS, dtype=torch.long)

    def step(self, tokens, state, memory, memory_mask):
        return self.log_table[tokens], tokens, memory_mask.float() / memory_mask.sum(-1, keepdim=True)


def test_finished_hypotheses_do_not_take_live_slots():
    """Beam 2, per-token normalisation, totals by hand: [] = log .4 / 1 = -0.916, [b] =
    log .25 / 2 = -0.693 (the best), [a] = log(.35 * .1) / 2 = -1.676, longer a's are worse.
    A search that keeps [] in the beam after step 0 has one slot left and fills it with a
    (.35 > .25), so it never sees [b]."""
    memory, mask = torch.zeros(1, 4, 2), torch.ones(1, 4, dtype=torch.bool)
    hyps = beam_search(TreeDecoder(), memory, mask, torch.tensor([4]), EOS, beam_size=2)
    assert hyps[0].tokens == [3]
    assert hyps[0].score == pytest.approx(math.log(0.25), abs=1e-6)


def test_nbest_lists_are_sorted_distinct_and_start_with_the_best():
    decoder, memory, mask, max_len = _setup(1)
    with torch.no_grad():
        decoder.output.bias[EOS] = 0.0
    best = beam_search(decoder, memory, mask, max_len, EOS, beam_size=4)
    nbest = beam_search_nbest(decoder, memory, mask, max_len, nbest=4, beam_size=4)
    for one, many, limit in zip(best, nbest, max_len.tolist()):
        assert len(many) == 4  # it stops early only with 4 finished; its last step ends all 4 live
        assert many[0] == one
        normalised = [h.score / (len(h.tokens) + 1) for h in many]
        assert normalised == sorted(normalised, reverse=True)
        assert len({tuple(h.tokens) for h in many}) == 4
        assert all(len(h.tokens) <= limit and EOS not in h.tokens for h in many)


def beam_search_nbest(decoder, memory, mask, max_len, nbest, beam_size, **weights):
    scorers = [(DecoderScorer(decoder, memory, mask), 1.0)]
    return scorer_beam_search(scorers, memory.shape[0], decoder.vocab_size, max_len, EOS, beam_size=beam_size,
                nbest=nbest)


def test_coverage_on_a_hand_computed_case():
    mask = torch.tensor([[True, True, True, False]])
    steps = [torch.tensor([[0.6, 0.4, 0.0, 0.0]]), torch.tensor([[0.1, 0.3, 0.6, 0.0]])]
    count = CoverageScorer(mask, vocab_size=5, kind="count", threshold=0.5)
    log = CoverageScorer(mask, vocab_size=5, kind="log", floor=1e-3)
    # count: cumulative .6 .4 0 -> 1 frame above .5; then .7 .7 .6 -> 3 (the padded frame never)
    # log: log .6 + log .4 + log 1e-3, then log .7 + log .7 + log .6
    expected = {count: [1.0, 2.0],
                log: [math.log(0.6 * 0.4 * 1e-3) - 3 * math.log(1e-3),
                      math.log(0.7 * 0.7 * 0.6) - math.log(0.6 * 0.4 * 1e-3)]}
    for scorer, gains in expected.items():
        state = scorer.init_state(torch.tensor([0]))
        assert float(scorer.max_gain(state, torch.tensor([5]))) == pytest.approx(
            3.0 if scorer is count else -3 * math.log(1e-3))
        for attention, gain in zip(steps, gains):
            scores, pending = scorer.score(state, Step(0, torch.tensor([EOS]), attention))
            assert scores.shape == (1, 5) and torch.allclose(scores, torch.tensor(gain))
            state = scorer.select(pending, torch.tensor([0]), torch.tensor([2]))
        assert float(scorer.max_gain(state, torch.tensor([5]))) == pytest.approx(
            0.0 if scorer is count else -math.log(0.7 * 0.7 * 0.6), abs=1e-5)


def _scorers(kind: str, decoder, memory, mask, ctc):
    """Weighted scorers: the decoder plus the combination named by ``kind``."""
    parts = {"ctc": lambda: (CTCPrefixScorer(ctc, mask.sum(-1), BLANK, EOS), 0.4),
             "lm": lambda: (LMScorer(_stateful_fusion(0)), 0.5),
             "bonus": lambda: (LengthBonus(decoder.vocab_size), 0.8),
             "coverage": lambda: (CoverageScorer(mask, decoder.vocab_size), 0.7)}
    names = [] if kind == "decoder" else kind.split("+")
    weight = 0.6 if "ctc" in names else 1.0
    return [(DecoderScorer(decoder, memory, mask), weight)] + [parts[n]() for n in names]


COMBINATIONS = ["decoder", "ctc", "lm", "bonus", "coverage", "ctc+lm", "ctc+lm+bonus+coverage"]


def _problem(seed):
    decoder, memory, mask, max_len = _setup(seed)
    with torch.no_grad():
        decoder.output.bias[EOS] = 0.0
    generator = torch.Generator().manual_seed(seed)
    ctc = torch.log_softmax(2 * torch.randn(memory.shape[0], memory.shape[1], 7,
                                            generator=generator), -1)
    return decoder, memory, mask, max_len, ctc


@pytest.mark.parametrize("kind", COMBINATIONS)
def test_width_one_is_greedy_and_batched_equals_alone_for_every_scorer_combination(kind):
    decoder, memory, mask, max_len, ctc = _problem(0)
    b, v = memory.shape[0], decoder.vocab_size
    scorers = _scorers(kind, decoder, memory, mask, ctc)
    greedy_hyps, _ = scorer_greedy_search(scorers, b, v, max_len, EOS, pre_beam=3)
    width_one = scorer_beam_search(scorers, b, v, max_len, EOS, beam_size=1, length_penalty=0.0, pre_beam=3)
    for g, (w,) in zip(greedy_hyps, width_one):
        if kind in ("decoder", "ctc", "lm", "ctc+lm"):  # log-probabilities: it stops as greedy
            assert w.tokens == g.tokens and w.score == pytest.approx(g.score, abs=1e-4)
        else:  # a reward for more tokens lets it look past greedy's <eos>, never for less
            assert w.score >= g.score - 1e-4
    batched = scorer_beam_search(scorers, b, v, max_len, EOS, beam_size=3, pre_beam=4)
    for i in range(b):
        n = int(mask[i].sum())
        alone = scorer_beam_search(_scorers(kind, decoder, memory[i : i + 1, :n], mask[i : i + 1, :n],
                              ctc[i : i + 1, :n]), 1, v, max_len[i : i + 1], EOS, beam_size=3,
                     pre_beam=4)
        assert alone[0][0].tokens == batched[i][0].tokens
        assert alone[0][0].score == pytest.approx(batched[i][0].score, abs=1e-4)


@pytest.mark.parametrize("kind", COMBINATIONS)
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_stopping_an_utterance_early_never_changes_its_result(kind, length_penalty):
    decoder, memory, mask, max_len, ctc = _problem(2)
    scorers = _scorers(kind, decoder, memory, mask, ctc)
    args = (scorers, memory.shape[0], decoder.vocab_size, max_len + 3, EOS)
    early = scorer_beam_search(*args, beam_size=3, length_penalty=length_penalty, nbest=2)
    full = scorer_beam_search(*args, beam_size=3, length_penalty=length_penalty, nbest=2, stop_early=False)
    assert [[h.tokens for h in u] for u in early] == [[h.tokens for h in u] for u in full]


def test_the_search_finds_the_best_hypothesis_of_a_small_space():
    """Every sequence over {a, b} up to 3 tokens, scored from scratch: beam 4 with the finished
    pool finds the best per-token score."""
    memory, mask = torch.zeros(1, 4, 2), torch.ones(1, 4, dtype=torch.bool)
    decoder = TreeDecoder()
    best = None
    for n in range(4):
        for tokens in itertools.product([2, 3], repeat=n):
            path = [EOS, *tokens, EOS]
            score = sum(float(decoder.log_table[a, b]) for a, b in zip(path, path[1:]))
            if best is None or score / (n + 1) > best[1] / (len(best[0]) + 1):
                best = (list(tokens), score)
    hyps = beam_search(decoder, memory, mask, torch.tensor([3]), EOS, beam_size=4)
    assert (hyps[0].tokens, hyps[0].score) == (best[0], pytest.approx(best[1], abs=1e-5))


def test_a_pre_beam_without_eos_still_lets_hypotheses_end_at_their_limit():
    decoder, memory, mask, max_len, ctc = _problem(3)
    with torch.no_grad():
        decoder.output.bias[EOS] = -30.0  # never among the decoder's best tokens
    scorers = _scorers("ctc", decoder, memory, mask, ctc)
    hyps = scorer_beam_search(scorers, memory.shape[0], decoder.vocab_size, max_len, EOS, beam_size=2,
                pre_beam=1, nbest=2)
    # without <eos> among the candidates no hypothesis could end, not even at its limit
    assert [len(u) for u in hyps] == [2] * memory.shape[0]
    assert all(len(h.tokens) <= limit for u, limit in zip(hyps, max_len.tolist()) for h in u)


def test_reordering_beams_moves_every_state_but_the_attention_keys():
    from rnnseq.models.decoder import select_state

    decoder, memory, mask, _ = _setup(0)
    scorer = DecoderScorer(decoder, memory, mask)
    rows = torch.arange(4).repeat_interleave(3)  # 3 beams per utterance
    state = scorer.init_state(rows)
    _, pending = scorer.score(state, Step(0, torch.full((12,), EOS)))
    reorder = torch.tensor([2, 0, 0, 5, 4, 3, 6, 6, 6, 11, 9, 10])  # within each utterance
    moved = scorer.select(pending, reorder, torch.zeros(12, dtype=torch.long))
    assert moved.attention.keys is pending.attention.keys  # not copied at any step
    expected = select_state(pending, reorder)  # everything copied, keys included
    for got, want in zip(moved, expected):
        for a, b in zip(got if isinstance(got, tuple) else [got],
                        want if isinstance(want, tuple) else [want]):
            assert (a is None and b is None) or torch.equal(a, b)


def test_eos_threshold_and_minimum_length_hold_back_an_early_end_but_not_the_limit():
    """ScriptedDecoder (tests/test_search.py), no normalisation: [] (log .4) wins. With
    eos_threshold 1.5, <eos> at step 0 (log .4 < 1.5 log .6) and step 1 (log .3 < 1.5 log .7) is
    held back, at step 2 it is the best token: [a, a] = log(.6 .7 .7). A minimum of 2 tokens
    does the same. At a length limit of 1, <eos> must be taken even below the threshold."""
    from tests.test_search import ScriptedDecoder

    memory, mask = torch.zeros(1, 3, 2), torch.ones(1, 3, dtype=torch.bool)
    scorers = [(DecoderScorer(ScriptedDecoder(), memory, mask), 1.0)]
    args = (scorers, 1, 3, torch.tensor([5]), EOS)
    assert scorer_beam_search(*args, beam_size=2, length_penalty=0.0)[0][0].tokens == []
    held = scorer_beam_search(*args, beam_size=2, length_penalty=0.0, eos_threshold=1.5)[0][0]
    assert held.tokens == [2, 2] and held.score == pytest.approx(math.log(0.6 * 0.7 * 0.7))
    assert scorer_greedy_search(*args, eos_threshold=1.5)[0][0].tokens == [2, 2]
    longer = scorer_beam_search(*args, beam_size=2, length_penalty=0.0, min_lengths=torch.tensor([2]))[0][0]
    assert longer.tokens == [2, 2]
    limited = scorer_beam_search(scorers, 1, 3, torch.tensor([1]), EOS, beam_size=2, length_penalty=0.0,
                   eos_threshold=1.5)[0][0]
    assert limited.tokens == [2] and limited.score == pytest.approx(math.log(0.6 * 0.3))
