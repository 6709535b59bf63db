"""CTC greedy (best-path) decoding against hand-worked cases."""

import math

import pytest
import torch

from rnnseq.decoding.ctc_greedy import ctc_greedy_search

BLANK = 0


def _log_probs(rows: list[list[int]], vocab: int = 5, confidence: float = 0.7) -> torch.Tensor:
    """``(B, S, V)`` log-probabilities whose best symbol at each frame is ``rows[b][s]``."""
    other = (1 - confidence) / (vocab - 1)
    probs = torch.full((len(rows), len(rows[0]), vocab), other)
    for b, row in enumerate(rows):
        for s, symbol in enumerate(row):
            probs[b, s, symbol] = confidence
    return probs.log()


def test_repeats_merge_blanks_drop_and_a_blank_separates_a_real_repeat():
    # frames: a a _ a b b _ _ c  ->  "a a b c" (the blank between the a's keeps both)
    log_probs = _log_probs([[1, 1, 0, 1, 2, 2, 0, 0, 3]])
    hyp, = ctc_greedy_search(log_probs, torch.tensor([9]), BLANK)
    assert hyp.tokens == [1, 1, 2, 3]
    assert hyp.score == pytest.approx(9 * math.log(0.7), abs=1e-5)


def test_frames_beyond_each_length_are_ignored():
    # utterance 2 has 3 real frames: "b"; its padding frames would spell "c d" and must not count
    log_probs = _log_probs([[1, 0, 2, 2, 3], [2, 2, 0, 3, 4]])
    first, second = ctc_greedy_search(log_probs, torch.tensor([5, 3]), BLANK)
    assert first.tokens == [1, 2, 3] and second.tokens == [2]
    assert second.score == pytest.approx(3 * math.log(0.7), abs=1e-5)
    assert ctc_greedy_search(log_probs[:, :0], torch.tensor([0, 0]), BLANK)[0].tokens == []

