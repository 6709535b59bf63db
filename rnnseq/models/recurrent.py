"""Recurrent layers by cell name, and running them over padded batches."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def rnn_class(cell: str) -> type[nn.RNNBase]:
    """The fused torch module for ``cell`` (``lstm``, ``gru`` or ``rnn``)."""
    try:
        return RNN_CELLS[cell]
    except KeyError:
        raise ValueError(f"unknown recurrent cell {cell!r}; allowed: {sorted(RNN_CELLS)}") from None


def run_packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Runs ``rnn`` over ``(B, S, I)`` padded inputs -> ``(B, S, H)``, zero beyond each length.

    Packing keeps padding out of the backward direction of bidirectional layers, so every
    sequence gets exactly the output it would get alone.
    """
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out
