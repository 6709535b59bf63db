"""CTC prefix beam search (``decoding.mode=ctc_beam``): the audio picks the pre-beam's candidates,
and the end rules read CTC, the search's primary scorer."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from rnnseq.data.batching import make_pad_mask
from rnnseq.data.tokenizer import SPECIALS, CharTokenizer
from rnnseq.decoding.ctc_prefix import CTCPrefixScorer
from rnnseq.decoding.lm_fusion import LMFusion
from rnnseq.decoding.scorer import Step
from rnnseq.decoding.scorers import build_scorers, scorer_sources
from rnnseq.decoding.search import scorer_beam_search
from rnnseq.models.language_model import RNNLanguageModel

BLANK, EOS = 0, 1  # and 2 is <unk>, as in every tokenizer
V, FRAMES = 300, 12  # a subword vocabulary
PRE_BEAM = 32  # rnnseq.decoding.settings.default_pre_beam for beams up to 10
PIECES = CharTokenizer([*SPECIALS, *(chr(0x4E00 + i) for i in range(V - len(SPECIALS)))])


def _spelled(seed: int, lengths: list[int]) -> torch.Tensor:
    """``(B, S, V)`` peaked CTC log-probabilities: on each real frame a blank or one of four
    random high-id pieces (in order) wins, with a random high-id rival close behind."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(lengths), FRAMES, V, generator=generator)
    for i, n in enumerate(lengths):
        pieces = torch.randint(100, V, (4,), generator=generator).tolist()
        frames = sorted(torch.randperm(n, generator=generator)[:4].tolist())
        for t in range(FRAMES):
            winner = pieces[frames.index(t)] if t in frames else BLANK
            logits[i, t, winner] += 7.0
            logits[i, t, int(torch.randint(100, V, (1,), generator=generator))] += 5.0
    return torch.log_softmax(logits, -1)


def _language_model(seed: int, eos_bias: float | None = None) -> LMFusion:
    """A tiny random LSTM language model over the pieces, with sharp next-piece preferences."""
    torch.manual_seed(seed)
    model = RNNLanguageModel(V, 8, 16).eval()
    with torch.no_grad():
        model.output.weight.mul_(8.0)
        if eos_bias is not None:
            model.output.bias[EOS] = eos_bias
    return LMFusion(model, PIECES, PIECES)


def _ctc_beam(log_probs, lengths, max_lengths, pre_beam, lm=None, beam_size=4, nbest=1,
              eos_threshold=None, **weights):
    """``decoding.mode=ctc_beam``: the scorers as the task builds them without a decoder."""
    b = log_probs.shape[0]
    sources = scorer_sources(None, torch.zeros(b, FRAMES, 1), make_pad_mask(lengths, FRAMES), V,
                             BLANK, EOS, ctc_log_probs=log_probs, memory_lengths=lengths, lm=lm)
    scorers = build_scorers(weights, sources)
    return scorer_beam_search(scorers, b, V, max_lengths, EOS, beam_size=beam_size, length_penalty=0.0,
                pre_beam=pre_beam, nbest=nbest, eos_threshold=eos_threshold)


def _ctc_log_prob(log_probs: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """``(len(targets),)`` CTC log-probabilities of label sequences for one ``(S, V)`` utterance."""
    longest = max(1, max(len(t) for t in targets))
    padded = torch.tensor([t + [BLANK] * (longest - len(t)) for t in targets])
    n = len(targets)
    return -F.ctc_loss(log_probs[:, None].expand(-1, n, -1), padded,
                       torch.full((n,), log_probs.shape[0]), torch.tensor([len(t) for t in targets]),
                       blank=BLANK, reduction="none")


@pytest.mark.parametrize("k", [1, 3])
def test_rank_all_gives_the_exact_gain_of_every_token(k):
    """rank_all equals score_candidates over the whole vocabulary, step after step: repeats of the
    last token, padded utterances, rows of an utterance dropped by ``keep``."""
    lengths = torch.tensor([12, 9, 5])
    scorer = CTCPrefixScorer(_spelled(0, lengths.tolist()), lengths, BLANK, EOS)
    state = scorer.init_state(torch.arange(3).repeat_interleave(k))
    generator = torch.Generator().manual_seed(1)
    last = torch.full((3 * k,), EOS)
    for t in range(FRAMES):
        exact, pending = scorer.score(state, Step(t, last))
        ranked = scorer.rank_all(state, Step(t, last))
        assert ranked.shape == (len(last), V)
        assert torch.equal(torch.isfinite(ranked), torch.isfinite(exact))
        finite = torch.isfinite(exact)
        assert torch.allclose(ranked[finite], exact[finite], atol=1e-4, rtol=0)
        tokens = torch.randint(100, V, (len(last),), generator=generator)
        if t > 0:
            tokens[::2] = last[::2]
        state, last = scorer.select(pending, torch.arange(len(last)), tokens), tokens
        if t == 3:  # the second utterance ends
            kept = torch.cat([torch.arange(k), torch.arange(2 * k, 3 * k)])
            state, last = scorer.keep(state, kept), last[kept]


@pytest.mark.parametrize("weights", [{"length_bonus": 0.5}, {"lm_weight": 0.3}],
                         ids=["length_bonus", "lm"])
def test_ctc_beam_with_the_default_pre_beam_equals_scoring_every_token(weights):
    """The pre-beam's candidates come from CTC's scores of the whole vocabulary: the result is
    the search that scores every token exactly, not the lowest ids (a length bonus ties every
    token) or the language model's favourites."""
    lengths = torch.tensor([12, 10, 7])
    log_probs = _spelled(2, lengths.tolist())
    lm = _language_model(3) if "lm_weight" in weights else None
    max_lengths = torch.tensor([6, 5, 4])
    narrow = _ctc_beam(log_probs, lengths, max_lengths, PRE_BEAM, lm, nbest=2, **weights)
    exact = _ctc_beam(log_probs, lengths, max_lengths, None, lm, nbest=2, **weights)
    assert [[h.tokens for h in hyps] for hyps in narrow] == [[h.tokens for h in hyps]
                                                             for hyps in exact]
    assert [h.score for hyps in narrow for h in hyps] == pytest.approx(
        [h.score for hyps in exact for h in hyps], abs=1e-4)
    assert all(min(hyps[0].tokens) >= 100 for hyps in exact)  # the spelled pieces


@pytest.mark.parametrize("bonus", [0.0, 0.5])
def test_ctc_beam_finds_the_best_of_every_short_labelling(bonus):
    """Every labelling of at most 3 pieces over the pieces some frame ranks in its top 3, scored
    by one batched ctc_loss (plus the bonus for each token and <eos>): beam 8 returns the best,
    with its CTC log-probability as its score."""
    generator = torch.Generator().manual_seed(4)
    active = (100 + torch.randperm(V - 100, generator=generator)[:10]).tolist()
    logits = 0.5 * torch.randn(FRAMES, V, generator=generator)
    for t in range(FRAMES):  # three pieces spoken (each with a rival), blanks between
        first, second = torch.randperm(10, generator=generator)[:2].tolist()
        spoken = t in (2, 6, 10)
        logits[t, active[first] if spoken else BLANK] += 8.0
        logits[t, active[second]] += 6.5 if spoken else 4.0
        logits[t, BLANK if spoken else active[first]] += 5.0
    log_probs = torch.log_softmax(logits, -1)
    pieces = sorted(set(log_probs.topk(3, -1).indices.flatten().tolist()) - {BLANK, EOS})
    assert 5 <= len(pieces) <= 10
    labellings = [list(t) for n in range(4) for t in itertools.product(pieces, repeat=n)]
    scores = _ctc_log_prob(log_probs, labellings) + bonus * torch.tensor(
        [len(t) + 1.0 for t in labellings])
    (best,), = _ctc_beam(log_probs[None], torch.tensor([FRAMES]), torch.tensor([3]), PRE_BEAM,
                         beam_size=8, length_bonus=bonus)
    assert best.tokens in labellings
    assert best.score == pytest.approx(float(scores.max()), abs=1e-4)
    own = float(_ctc_log_prob(log_probs, [best.tokens])[0]) + bonus * (len(best.tokens) + 1)
    assert best.score == pytest.approx(own, abs=1e-4)


def test_eos_threshold_reads_ctc_not_the_language_model():
    """CTC is certain the audio spells two pieces; the language model all but rules <eos> out
    everywhere. The threshold compares CTC's <eos> with CTC's best token, so the search ends
    after the two pieces (with the LM's <eos> cost), as it does without a threshold, rather than
    being held back by the LM's <eos> until the length limit."""
    a, b = 150, 220
    logits = torch.zeros(FRAMES, V)
    for t in range(FRAMES):
        logits[t, {3: a, 4: a, 8: b}.get(t, BLANK)] = 15.0
    log_probs = torch.log_softmax(logits, -1)[None]
    lm = _language_model(5, eos_bias=-20.0)
    args = (log_probs, torch.tensor([FRAMES]), torch.tensor([6]), PRE_BEAM, lm)
    (held,), = _ctc_beam(*args, eos_threshold=1.5, lm_weight=0.3)
    (free,), = _ctc_beam(*args, lm_weight=0.3)
    assert held.tokens == free.tokens == [a, b]
    assert held.score == pytest.approx(free.score, abs=1e-5)
