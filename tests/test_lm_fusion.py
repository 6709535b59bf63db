"""Shallow fusion of a character language model into beam search."""

import pytest
import torch

from rnnseq.data.tokenizer import CharTokenizer, WordTokenizer
from rnnseq.decoding.lm_fusion import LMFusion, vocabulary_map
from rnnseq.decoding.search import beam_search
from rnnseq.models.language_model import RNNLanguageModel
from tests.test_search import EOS, _setup

# The search test decoder has 7 symbols: the 3 specials and 4 characters.
TARGET = CharTokenizer.from_texts(["abcd"])
LM_TOKENIZER = CharTokenizer.from_texts(["dcbaxyz"])  # more symbols, in another order


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
