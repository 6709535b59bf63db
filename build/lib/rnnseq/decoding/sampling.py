"""Sampling text from a language model: temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

import torch

from rnnseq.models.language_model import RNNLanguageModel


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``(B, V)`` logits with every token outside the allowed set at ``-inf``.

    ``top_k > 0`` keeps the ``k`` most likely tokens; ``top_p < 1`` keeps the smallest set of most
    likely tokens whose probability reaches ``top_p`` (Holtzman et al., 2020). Both may be combined;
    the most likely token always survives.
    """
    if top_k < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got top_k={top_k}, top_p={top_p}")
    logits = logits.clone()
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already reach top_p.
        drop = probs.cumsum(-1) - probs >= top_p
        logits.scatter_(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draws one ``(B,)`` token per row of ``(B, V)`` logits; ``temperature == 0`` is greedy."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate(
    model: RNNLanguageModel,
    prompt: list[int],
    length: int,
    eos_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """``length`` tokens continuing ``prompt`` (ids; the model first reads ``<eos>``, the start
    of a line, then the prompt). Returns only the new tokens."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    context = torch.tensor([[eos_id, *prompt]], dtype=torch.long, device=device)  # (1, P + 1)
    logits, state = model(context)
    logits = logits[:, -1]  # (1, V)
    out: list[int] = []
    for _ in range(length):
        token = sample_next(logits, temperature, top_k, top_p, generator)  # (1,)
        out.append(int(token))
        logits, state = model.step(token, state)
    model.train(was_training)
    return out
