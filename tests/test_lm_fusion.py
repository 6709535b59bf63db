"""Shallow fusion of a character language model into beam search."""

import pytest
import torch

from rnnseq.data.tokenizer import SPECIALS, CharTokenizer, WordTokenizer
from rnnseq.decoding.lm_fusion import LMFusion, vocabulary_map
from rnnseq.decoding.search import beam_search
from rnnseq.models.language_model import RNNLanguageModel
from tests.test_search import EOS, _setup

# The search test decoder has 7 symbols: the 3 specials and 4 characters.
TARGET = CharTokenizer.from_texts(["abcd"])
LM_TOKENIZER = CharTokenizer([*SPECIALS, *"zdcybax"])  # more symbols, in another order
# LM id of every target id, matched by symbol independently of vocabulary_map
LM_ID = [LM_TOKENIZER.symbols.index(symbol) for symbol in TARGET.symbols]


def _fusion(seed=0) -> LMFusion:
    torch.manual_seed(seed)
    return LMFusion(RNNLanguageModel(len(LM_TOKENIZER), 6, 8).eval(), LM_TOKENIZER, TARGET)


def test_vocabularies_are_matched_symbol_by_symbol():
    index = vocabulary_map(TARGET, LM_TOKENIZER)
    assert [LM_TOKENIZER.symbols[i] for i in index] == TARGET.symbols
    with pytest.raises(ValueError, match=r"no id for decoder symbols \['d'\]"):
        vocabulary_map(TARGET, CharTokenizer.from_texts(["abc"]))
    with pytest.raises(ValueError, match="uses 'word' tokens"):
        vocabulary_map(TARGET, WordTokenizer.from_texts(["a b"]))


@pytest.mark.parametrize("seed", range(3))
def test_fusion_with_zero_weight_equals_plain_beam_search(seed):
    dec, memory, mask, max_len = _setup(seed)
    plain = beam_search(dec, memory, mask, max_len, EOS, beam_size=3)
    fused = beam_search(dec, memory, mask, max_len, EOS, beam_size=3, lm=_fusion(seed), lm_weight=0.0)
    assert [h.tokens for h in fused] == [h.tokens for h in plain]
    assert [h.score for h in fused] == pytest.approx([h.score for h in plain], abs=1e-6)


def test_a_heavily_weighted_language_model_steers_the_search():
    dec, memory, mask, max_len = _setup(0)
    fusion = _fusion()
    favourite = TARGET.encode("c")[0]
    with torch.no_grad():  # an LM that believes in "c" above all
        fusion.model.output.bias.zero_()
        fusion.model.output.bias[LM_TOKENIZER.encode("c")[0]] = 20.0
    plain = beam_search(dec, memory, mask, max_len, EOS, beam_size=3)
    fused = beam_search(dec, memory, mask, max_len, EOS, beam_size=3, lm=fusion, lm_weight=5.0)
    count = lambda hyps: sum(h.tokens.count(favourite) for h in hyps)  # noqa: E731
    assert count(fused) > count(plain)
    assert all(set(h.tokens) <= {favourite} for h in fused)


def _stateful_fusion(seed: int) -> LMFusion:
    """A random 2-layer LSTM LM whose next-token distribution depends on the whole prefix, not
    only on the last token: strong recurrent weights (N(0, 1) instead of the default +-1/sqrt(H))
    and output weights scaled up, so a beam that carried another beam's LM state would get
    clearly different log-probabilities."""
    fusion = _fusion(seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in fusion.model.rnn.named_parameters():
            if name.startswith("weight_hh"):
                weight.copy_(torch.randn(weight.shape, generator=generator))
        fusion.model.output.weight.mul_(8.0)
    return fusion


def _lm_log_prob(model: RNNLanguageModel, tokens: list[int]) -> float:
    """log p_LM of target ``tokens`` (ending in <eos>), run from the LM's start symbol over the
    whole prefix in one call: no state is carried from anywhere."""
    ids = [LM_TOKENIZER.eos_id] + [LM_ID[t] for t in tokens]
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))
    log_probs = torch.log_softmax(logits[0].float(), -1)  # (T, V_lm)
    return float(log_probs[torch.arange(len(tokens)), torch.tensor(ids[1:])].sum())


def _decoder_log_prob(decoder, memory, mask, tokens: list[int]) -> float:
    """Teacher-forced log p_decoder of ``tokens`` (ending in <eos>) after the start symbol <eos>."""
    inputs = torch.tensor([[EOS] + tokens[:-1]])
    with torch.no_grad():
        logits, _ = decoder(memory, mask, inputs)
    log_probs = torch.log_softmax(logits[0].float(), -1)  # (T, V)
    return float(log_probs[torch.arange(len(tokens)), torch.tensor(tokens)].sum())


def test_the_stateful_test_language_model_depends_on_more_than_the_last_token():
    model = _stateful_fusion(0).model
    c = LM_ID[TARGET.encode("c")[0]]
    with torch.no_grad():
        after = [torch.log_softmax(model(torch.tensor([[LM_TOKENIZER.eos_id, *prefix, c]]))[0][0, -1],
                                   -1) for prefix in ([], [LM_ID[3], LM_ID[4]], [LM_ID[6]] * 3)]
    assert min(float((after[0] - other).abs().max()) for other in after[1:]) > 0.3


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lm_weight", [0.5, 1.0])
def test_fused_scores_equal_rescoring_each_hypothesis_from_scratch(seed, lm_weight):
    """Every returned hypothesis scores ``log p_dec(y, <eos>) + w log p_LM(y, <eos>)``, with both
    models run over the whole prefix from their start: the search must have carried each beam's
    own decoder and LM states through every reordering (hypotheses cut at the length limit take
    <eos> at its real cost, so the formula holds for them too)."""
    decoder, memory, mask, max_len = _setup(seed)
    with torch.no_grad():  # no <eos> bias: some hypotheses stop early, others at the limit
        decoder.output.bias[EOS] = 0.0
    fusion = _stateful_fusion(seed)
    hyps = beam_search(decoder, memory, mask, max_len, EOS, beam_size=3, lm=fusion,
                       lm_weight=lm_weight)
    for i, hyp in enumerate(hyps):
        assert len(hyp.tokens) <= int(max_len[i]) and EOS not in hyp.tokens
        tokens = hyp.tokens + [EOS]
        expected = (_decoder_log_prob(decoder, memory[i : i + 1], mask[i : i + 1], tokens)
                    + lm_weight * _lm_log_prob(fusion.model, tokens))
        assert hyp.score == pytest.approx(expected, abs=1e-4), f"utterance {i}: {hyp.tokens}"
