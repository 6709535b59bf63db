"""CTC greedy decoding ("best path"): the most likely symbol at every encoder frame, then repeats
merged and blanks removed (Graves et al., 2006). It reads only the CTC head, so it shows what the
encoder alone has learnt, at a fraction of the attention decoder's cost."""

from __future__ import annotations

import torch

from rnnseq.decoding.search import Hypothesis


@torch.no_grad()
def ctc_greedy_search(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int) -> list[Hypothesis]:
    """Best-path outputs of ``(B, S, V)`` CTC log-probabilities over the first ``lengths[b]``
    frames of each utterance.

    Each hypothesis holds the collapsed symbols and the log-probability of its best path (the sum
    over frames of the chosen symbol's log-probability).
    """
    best, index = log_probs.max(dim=-1)  # (B, S) each
    frames = torch.arange(log_probs.shape[1], device=log_probs.device)
    real = frames.unsqueeze(0) < lengths.to(log_probs.device).unsqueeze(1)  # (B, S)
    scores = torch.where(real, best, torch.zeros_like(best)).sum(-1).tolist()
    hyps = []
    for row, n, score in zip(index.tolist(), lengths.tolist(), scores):
        tokens, previous = [], None
        for symbol in row[: int(n)]:
            if symbol != previous and symbol != blank_id:  # a new symbol, not a held or blank one
                tokens.append(symbol)
            previous = symbol
        hyps.append(Hypothesis(tokens, float(score)))
    return hyps
