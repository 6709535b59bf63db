import math

import pytest

from rnnseq.metrics import NAMES, error_rates, metric_name


def test_corpus_level_rates_count_total_edits_over_total_reference():
    # utt 1: 1 substitution in 3 words; utt 2: 2 deletions of 2 words -> 3 / 5, not mean(1/3, 1)
    rates = error_rates(["a b c", "d e"], ["a x c", ""])
    assert rates.wer == pytest.approx(3 / 5)
    # characters (spaces count): "a b c" vs "a x c" 1 sub; "d e" fully deleted 3 -> 4 / 8
    assert rates.cer == pytest.approx(4 / 8)
    assert (rates.words, rates.chars, rates.utterances) == (5, 8, 2)


def test_insertions_can_exceed_one_and_perfect_is_zero():
    assert error_rates(["a"], ["a b c"]).wer == pytest.approx(2.0)
    assert error_rates(["to be", "or not"], ["to be", "or not"]).wer == 0.0
    assert math.isnan(error_rates([], []).wer)
    with pytest.raises(ValueError):
        error_rates(["a"], [])


def test_metric_resolver_names():
    assert metric_name("VAL_WER") == "val/wer" == NAMES["VAL_WER"]
    with pytest.raises(KeyError, match="unknown metric 'VAL_BLEU'"):
        metric_name("VAL_BLEU")
