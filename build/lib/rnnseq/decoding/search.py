"""Greedy and beam search over a decoder's ``init_state``/``step`` interface.

Both decode a whole batch of utterances at once. Every hypothesis of utterance ``i`` stops after
``max_lengths[i]`` tokens if it has not produced ``<eos>`` by then, so both searches explore the
same space: a beam of width one returns exactly the greedy result.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rnnseq.decoding.ctc_prefix import CTCPrefixScorer
from rnnseq.decoding.lm_fusion import LMFusion
from rnnseq.models.decoder import AttentionDecoder, select_state


class Hypothesis(NamedTuple):
    tokens: list[int]  # without <eos>
    score: float  # total log-probability (including <eos> when it was produced)


def max_decode_lengths(memory_lengths: torch.Tensor, ratio: float, minimum: int = 1) -> torch.Tensor:
    """Most tokens to produce per utterance: ``ceil(ratio * memory length)``, at least ``minimum``."""
    return torch.clamp(torch.ceil(memory_lengths.float() * ratio).long(), min=minimum)


@torch.no_grad()
def greedy_search(
    decoder: AttentionDecoder,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    eos_id: int,
    return_attention: bool = False,
) -> tuple[list[Hypothesis], torch.Tensor | None]:
    """Most likely token at every step for ``(B, S, D)`` memory.

    Returns one hypothesis per utterance and, if asked, the ``(B, T, S)`` attention weights.
    """
    b = memory.shape[0]
    state = decoder.init_state(memory, memory_mask)
    tokens = torch.full((b,), eos_id, dtype=torch.long, device=memory.device)
    finished = torch.zeros(b, dtype=torch.bool, device=memory.device)
    scores = torch.zeros(b, device=memory.device)
    steps, weights = [], []
    for t in range(int(max_lengths.max()) + 1):
        logits, state, w = decoder.step(tokens, state, memory, memory_mask)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        tokens = log_probs.argmax(-1)
        tokens = torch.where(finished | (t >= max_lengths), eos_id, tokens)
        scores += torch.where(finished, 0.0, log_probs.gather(1, tokens[:, None]).squeeze(1))
        steps.append(tokens)
        weights.append(w)
        finished |= tokens == eos_id
        if bool(finished.all()):
            break
    history = torch.stack(steps, 1).tolist()  # (B, T)
    hyps = [Hypothesis(_until_eos(row, eos_id), float(s)) for row, s in zip(history, scores)]
    return hyps, (torch.stack(weights, 1) if return_attention else None)


@torch.no_grad()
def beam_search(
    decoder: AttentionDecoder,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    max_lengths: torch.Tensor,
    eos_id: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    ctc_log_probs: torch.Tensor | None = None,
    ctc_weight: float = 0.0,
    blank_id: int = 0,
    lm: LMFusion | None = None,
    lm_weight: float = 0.0,
) -> list[Hypothesis]:
    """Beam search over utterances x beams in one batch.

    Finished hypotheses keep their place in the beam with a frozen score; the search ends when
    every beam of every utterance has finished. The winner maximises
    ``score / length ** length_penalty`` (length counts ``<eos>``; 0 disables normalisation).

    With ``ctc_weight > 0`` and ``(B, S, V)`` CTC log-probabilities of the same memory frames, every
    step scores ``(1 - ctc_weight) * attention + ctc_weight * CTC prefix gain`` (joint
    CTC/attention decoding): CTC vetoes hypotheses that skip or repeat parts of the audio.

    With a language model ``lm``, ``lm_weight * log p_LM(token | prefix)`` is added to every
    step's score (shallow fusion); ``lm_weight = 0`` gives exactly the search without it.
    """
    b, k = memory.shape[0], beam_size
    device = memory.device
    state = decoder.init_state(memory, memory_mask)
    expand = torch.arange(b, device=device).repeat_interleave(k)  # (B*K,) utterance of each row
    state = select_state(state, expand)  # keys were projected once per utterance, then copied
    memory, memory_mask = memory[expand], memory_mask[expand]
    limits = max_lengths.to(device)[:, None]  # (B, 1)

    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive
    lengths = torch.zeros(b, k, device=device)
    finished = torch.zeros(b, k, dtype=torch.bool, device=device)
    tokens = torch.full((b * k,), eos_id, dtype=torch.long, device=device)
    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (tokens, parent beam), each (B, K)
    ctc = None
    if ctc_weight > 0 and ctc_log_probs is not None:
        ctc = CTCPrefixScorer(ctc_log_probs[expand], memory_mask.sum(-1), blank_id, eos_id)
        ctc_state = ctc.initial_state()
    if lm is not None:
        lm_log_probs, lm_state = lm.initial(b * k)
    for t in range(int(max_lengths.max()) + 1):
        logits, state, _ = decoder.step(tokens, state, memory, memory_mask)
        log_probs = torch.log_softmax(logits.float(), dim=-1).view(b, k, -1)  # (B, K, V)
        if ctc is not None:
            gain, ctc_scores, ctc_r = ctc.extend(ctc_state)
            gain = torch.nan_to_num(gain, nan=float("-inf"))  # finished rows: -inf - -inf
            log_probs = (1 - ctc_weight) * log_probs + ctc_weight * gain.view(b, k, -1)
        if lm is not None:
            log_probs = log_probs + lm_weight * lm_log_probs.view(b, k, -1)
        # A finished beam may only repeat <eos> at no cost (its score is frozen); a beam at its
        # utterance's length limit must take <eos> at its real cost.
        forced = torch.full_like(log_probs, float("-inf"))
        forced[..., eos_id] = torch.where(finished, 0.0, log_probs[..., eos_id])
        stop = finished | (t >= limits)  # (B, K)
        log_probs = torch.where(stop.unsqueeze(-1), forced, log_probs)
        candidates = (scores.unsqueeze(-1) + log_probs).view(b, -1)  # (B, K*V)
        scores, flat = candidates.topk(k, dim=1)
        parent = torch.div(flat, log_probs.shape[-1], rounding_mode="floor")  # (B, K)
        token = flat % log_probs.shape[-1]
        was_finished = finished.gather(1, parent)
        lengths = lengths.gather(1, parent) + (~was_finished).float()
        finished = was_finished | (token == eos_id)
        history.append((token, parent))
        rows = (parent + torch.arange(b, device=device)[:, None] * k).view(-1)
        state = select_state(state, rows)
        if ctc is not None:
            ctc_state = ctc.select(ctc_scores, ctc_r, rows, token.view(-1))
        tokens = token.view(-1)
        if bool(finished.all()):
            break
        if lm is not None:
            lm_log_probs, lm_state = lm.advance(tokens, lm.select(lm_state, rows))
    normalized = scores / lengths.clamp_min(1).pow(length_penalty)
    best = normalized.argmax(1)  # (B,)
    return [Hypothesis(_backtrack(history, i, int(best[i]), eos_id), float(scores[i, best[i]]))
            for i in range(b)]


def _backtrack(history, utt: int, beam: int, eos_id: int) -> list[int]:
    out = []
    for token, parent in reversed(history):
        out.append(int(token[utt, beam]))
        beam = int(parent[utt, beam])
    return _until_eos(out[::-1], eos_id)


def _until_eos(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens

