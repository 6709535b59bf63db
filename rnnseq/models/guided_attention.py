"""Guided attention loss (Tachibana et al. 2018): a penalty on attention weights far from the
diagonal, for tasks whose alignment is monotonic and roughly linear in time (speech recognition,
speech synthesis). It makes the attention find the diagonal in the first few hundred steps
instead of after an epoch or more of searching."""

from __future__ import annotations

import torch


def guided_attention_penalty(query_lengths: torch.Tensor, memory_lengths: torch.Tensor,
                             num_queries: int, num_keys: int, sigma: float) -> torch.Tensor:
    """``(B, N, S)`` penalty ``1 - exp(-(n / N_b - s / S_b)^2 / (2 sigma^2))`` for query step
    ``n`` of ``N_b`` and memory step ``s`` of ``S_b``; zero outside each item's lengths.

    Args:
        query_lengths: ``(B,)`` valid decoder steps per item (``N_b <= num_queries``).
        memory_lengths: ``(B,)`` valid memory (encoder) steps per item (``S_b <= num_keys``).
        num_queries, num_keys: the padded sizes ``N`` and ``S``.
        sigma: width of the band around the diagonal, as a fraction of both lengths.
    """
    device = query_lengths.device
    n = torch.arange(num_queries, device=device, dtype=torch.float32)
    s = torch.arange(num_keys, device=device, dtype=torch.float32)
    n_rel = n[None, :] / query_lengths[:, None].float()  # (B, N)
    s_rel = s[None, :] / memory_lengths[:, None].float()  # (B, S)
    distance = n_rel[:, :, None] - s_rel[:, None, :]  # (B, N, S)
    penalty = 1.0 - torch.exp(-distance.pow(2) / (2.0 * sigma * sigma))
    valid = (n[None, :, None] < query_lengths[:, None, None]) & \
            (s[None, None, :] < memory_lengths[:, None, None])
    return penalty * valid


def guided_attention_loss(weights: torch.Tensor, query_lengths: torch.Tensor,
                          memory_lengths: torch.Tensor, sigma: float = 0.4) -> torch.Tensor:
    """Mean over valid decoder steps of the attention mass that lies off the diagonal band.

    Each valid step's term is ``sum_s weights[b, n, s] * penalty[b, n, s]``, the expected penalty
    under that step's attention distribution (between 0 and 1), so the loss is 0 for attention on
    the diagonal and approaches 1 for attention at the far end.

    Args:
        weights: ``(B, N, S)`` attention weights (rows sum to 1 over valid memory steps).
        query_lengths: ``(B,)`` valid decoder steps per item.
        memory_lengths: ``(B,)`` valid memory steps per item.
        sigma: width of the diagonal band (ESPnet's default 0.4; smaller is stricter).
    """
    if sigma <= 0:
        raise ValueError(f"guided attention sigma must be > 0, got {sigma}")
    b, n, s = weights.shape
    penalty = guided_attention_penalty(query_lengths, memory_lengths, n, s, sigma)
    return (weights.float() * penalty).sum() / query_lengths.clamp(max=n).sum().clamp(min=1)
