import math

import pytest
import torch

from rnnseq.metrics import (
    NAMES,
    dtw_path_mean,
    error_rates,
    mel_cepstral_distortion,
    metric_name,
)


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


def slow_dtw_path_mean(cost):
    """The obvious recursion, one cell at a time: (total, length) of the cheapest path, ties
    broken in the order diagonal, vertical, horizontal, as dtw_path_mean documents."""
    n, m = cost.shape
    best = {}
    for i in range(n):
        for j in range(m):
            if i == j == 0:
                best[0, 0] = (float(cost[0, 0]), 1)
                continue
            options = [best[p] for p in ((i - 1, j - 1), (i - 1, j), (i, j - 1)) if p in best]
            total, length = min(options, key=lambda o: o[0])
            best[i, j] = (total + float(cost[i, j]), length + 1)
    total, length = best[n - 1, m - 1]
    return total / length


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (6, 9), (9, 6)])
def test_dtw_matches_the_cell_by_cell_recursion(shape):
    cost = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    assert dtw_path_mean(cost) == pytest.approx(slow_dtw_path_mean(cost))


def test_dtw_follows_a_cheap_detour_and_averages_over_its_length():
    # the diagonal costs 1 per cell; the path down the first column and along the last row is
    # free except its corner cells: 5 cells costing 0 + 0 + 0 + 0 + 0 against 3 of 1 each
    cost = torch.ones(3, 3)
    cost[:, 0] = 0
    cost[2, :] = 0
    assert dtw_path_mean(cost) == 0.0
    # with expensive corners every path pays 10 at least; the diagonal pays 11. Of the paths
    # that pay 10, the tie rule (diagonal first) takes (0,0) (1,0) (2,1) (2,2): 10 over 4 cells
    cost[0, 0] = cost[2, 2] = 5.0
    assert dtw_path_mean(cost) == pytest.approx(2.5)


def test_mcd_is_zero_for_the_same_frames_for_a_gain_and_for_a_slower_copy():
    frames = torch.randn(20, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert mel_cepstral_distortion(frames, frames) == 0.0
    assert mel_cepstral_distortion(frames, frames + 3.0) == pytest.approx(0.0, abs=1e-9)  # c0 only
    slower = frames.repeat_interleave(2, dim=0)  # every frame twice: DTW absorbs the timing
    assert mel_cepstral_distortion(frames, slower) == pytest.approx(0.0, abs=1e-9)


def test_mcd_of_one_cepstral_step_is_the_textbook_formula():
    # log power that differs by a * (the k-th orthonormal DCT basis vector) over 40 bins:
    # log amplitude differs by a / 2 in c_k only, so MCD = 10 sqrt(2) / ln 10 * a / 2
    bins, k, a = 40, 3, 0.8
    n = torch.arange(bins, dtype=torch.float64)
    basis = math.sqrt(2 / bins) * torch.cos(math.pi * k * (n + 0.5) / bins)
    x = torch.zeros(5, bins, dtype=torch.float64)
    expected = 10 * math.sqrt(2) / math.log(10) * a / 2
    assert mel_cepstral_distortion(x, x + a * basis) == pytest.approx(expected, rel=1e-6)
    # a coefficient above the order does not count
    high = math.sqrt(2 / bins) * torch.cos(math.pi * 20 * (n + 0.5) / bins)
    assert mel_cepstral_distortion(x, x + high) == pytest.approx(0.0, abs=1e-9)
