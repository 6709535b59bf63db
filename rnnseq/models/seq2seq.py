"""Encoder-decoder with an optional CTC head, and the one place that wires sizes together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from hydra.utils import instantiate
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.decoder import AttentionDecoder


class Encoded(NamedTuple):
    memory: torch.Tensor  # (B, S', D)
    lengths: torch.Tensor  # (B,)
    mask: torch.Tensor  # (B, S') True on real frames

    def rows(self, start: int, stop: int) -> Encoded:
        """Utterances ``start:stop`` alone, their padding cut to the longest of them."""
        lengths = self.lengths[start:stop]
        frames = int(lengths.max()) if len(lengths) else 0
        return Encoded(self.memory[start:stop, :frames], lengths, self.mask[start:stop, :frames])


class Seq2SeqOutput(NamedTuple):
    logits: torch.Tensor  # (B, T, V) attention decoder, teacher forced
    attention: torch.Tensor  # (B, T, S')
    ctc_log_probs: torch.Tensor | None  # (B, S', V) float32, or None without a CTC head
    memory_lengths: torch.Tensor  # (B,)


class Seq2Seq(nn.Module):
    """An encoder, an attention decoder and, optionally, a CTC head on the encoder output.

    The decoder's start symbol and end symbol are the same id (``eos_id``), as in ESPnet.
    """

    def __init__(self, encoder: nn.Module, decoder: AttentionDecoder, ctc: bool = True):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.ctc_head = nn.Linear(encoder.output_dim, decoder.vocab_size) if ctc else None

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        """``(B, S, F)`` features -> encoder memory with its lengths and mask."""
        memory, memory_lengths = self.encoder(features, lengths)
        return Encoded(memory, memory_lengths, make_pad_mask(memory_lengths, memory.shape[1]))

    def ctc_log_probs(self, memory: torch.Tensor) -> torch.Tensor:
        """``(B, S', D) -> (B, S', V)`` log-probabilities in float32 (CTC is unstable in half)."""
        return torch.log_softmax(self.ctc_head(memory).float(), dim=-1)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, decoder_input: torch.Tensor
    ) -> Seq2SeqOutput:
        """Teacher-forced pass: ``(B, S, F)`` features, ``(B,)`` lengths, ``(B, T)`` decoder input
        ids -> logits ``(B, T, V)``, attention ``(B, T, S')``, CTC log-probabilities ``(B, S',
        V)``."""
        enc = self.encode(features, lengths)
        logits, attention = self.decoder(enc.memory, enc.mask, decoder_input)
        ctc = self.ctc_log_probs(enc.memory) if self.ctc_head is not None else None
        return Seq2SeqOutput(logits, attention, ctc, enc.lengths)


def build_seq2seq(
    model: Mapping[str, Any], input_dim: int, vocab_size: int, ctc: bool = True
) -> Seq2Seq:
    """Builds a :class:`Seq2Seq` from the ``model`` config group.

    ``model.encoder``, ``model.decoder`` and ``model.attention`` are Hydra ``_partial_`` configs;
    the sizes that follow from the data and from other modules are filled in here and nowhere else:
    the encoder gets ``input_dim``, the decoder gets ``vocab_size`` and ``memory_dim =
    encoder.output_dim``, the attention gets the decoder's query size and the memory size.
    """
    encoder = instantiate(model["encoder"])(input_dim=input_dim)
    attention = instantiate(model["attention"])
    decoder = instantiate(model["decoder"])(
        vocab_size=vocab_size, memory_dim=encoder.output_dim, attention=attention
    )
    return Seq2Seq(encoder, decoder, ctc=ctc)
