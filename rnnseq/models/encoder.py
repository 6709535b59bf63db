"""Speech encoders: time subsampling followed by stacked (bi)directional recurrent layers."""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.recurrent import Cell, RecurrentLayer, parse_cell, require_positive

SUBSAMPLING = ("conv", "vgg", "pyramid", "none")


class ConvSubsampling(nn.Module):
    """Two (or more) stride-2 3x3 convolutions over time and frequency.

    ``(B, S, F) -> (B, S', output_dim)`` with ``S' = ceil(S / factor)``. Frames beyond each length
    are zeroed after every convolution, so padding never leaks into real frames.
    """

    def __init__(self, input_dim: int, output_dim: int, factor: int = 4, channels: int = 32):
        super().__init__()
        steps = _log2(factor)
        convs = []
        freq = input_dim
        for i in range(steps):
            convs.append(nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2, padding=1))
            freq = (freq + 1) // 2
        self.convs = nn.ModuleList(convs)
        self.proj = nn.Linear(channels * freq, output_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # (B, 1, S, F)
        for conv in self.convs:
            x = torch.relu(conv(x))  # (B, C, ceil(S/2), ceil(F/2))
            lengths = (lengths + 1) // 2
            x = x * make_pad_mask(lengths, x.shape[2])[:, None, :, None]
        b, c, s, f = x.shape
        x = self.proj(x.transpose(1, 2).reshape(b, s, c * f))  # (B, S', output_dim)
        return x * make_pad_mask(lengths, s).unsqueeze(-1), lengths


class VGGSubsampling(nn.Module):
    """VGG blocks (Simonyan & Zisserman 2015; ESPnet's ``VGG2L``): per block two 3x3 convolutions
    with ReLU, then 2x2 max pooling, which halves time and frequency; ``log2(factor)`` blocks with
    ``channels``, ``2 * channels``, ... channels, then a linear projection.

    ``(B, S, F) -> (B, S', output_dim)`` with ``S' = ceil(S / factor)``. Frames beyond each length
    are zeroed after every convolution and pooling, so padding never leaks into real frames.
    """

    def __init__(self, input_dim: int, output_dim: int, factor: int = 4, channels: int = 64):
        super().__init__()
        blocks, freq, width = [], input_dim, 1
        for i in range(_log2(factor)):
            out = channels * 2**i
            blocks.append(nn.ModuleList([nn.Conv2d(width, out, 3, padding=1),
                                         nn.Conv2d(out, out, 3, padding=1)]))
            width, freq = out, (freq + 1) // 2
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.proj = nn.Linear(width * freq, output_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # (B, 1, S, F)
        for convs in self.blocks:
            mask = make_pad_mask(lengths, x.shape[2])[:, None, :, None]
            for conv in convs:
                x = torch.relu(conv(x)) * mask  # (B, C, S, F): 3x3 reads neighbours, so re-zero
            x = self.pool(x)  # (B, C, ceil(S/2), ceil(F/2)); padding is zero and ReLU output >= 0
            lengths = (lengths + 1) // 2
        b, c, s, f = x.shape
        x = self.proj(x.transpose(1, 2).reshape(b, s, c * f))  # (B, S', output_dim)
        return x * make_pad_mask(lengths, s).unsqueeze(-1), lengths


def stack_frames(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenates pairs of adjacent frames: ``(B, S, D) -> (B, ceil(S/2), 2D)``.

    An odd last frame is paired with a zero frame (recurrent layers output zeros on padding).
    """
    b, s, d = x.shape
    if s % 2:
        x = torch.cat([x, x.new_zeros(b, 1, d)], dim=1)
    return x.reshape(b, (s + 1) // 2, 2 * d), (lengths + 1) // 2


class RecurrentEncoder(nn.Module):
    """Subsampling front end plus stacked recurrent layers.

    Args:
        input_dim: feature dimension F (derived from the data).
        hidden_size: units per direction.
        num_layers: recurrent layers.
        cell: a name of :data:`rnnseq.models.recurrent.CELLS` or a cell setting (``model.cell``).
        bidirectional: read the sequence both ways; the output has twice the cell's output size
            (``2 * hidden_size``, or ``2 * proj_size`` for ``lstmp``).
        subsampling: ``conv`` (strided convolutions before the first layer), ``vgg`` (VGG blocks
            with max pooling before it, ESPnet's ``vgg`` front end), ``pyramid`` (pairs of frames
            stacked after each of the first ``log2(factor)`` layers, as in Listen, Attend and
            Spell) or ``none``.
        conv_channels: channels of the ``conv`` front end; of the first ``vgg`` block (doubled in
            each next one).
        subsampling_factor: a power of two.
        dropout: between layers and on the front end's output.

    Shapes: ``forward((B, S, F) features, (B,) lengths) -> ((B, S', D) memory, (B,) lengths)`` with
    ``S' = ceil(S / subsampling_factor)`` and ``D =`` :attr:`output_dim`.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int = 256,
        num_layers: int = 3,
        cell: str | Cell | dict = "lstm",
        bidirectional: bool = True,
        subsampling: str = "conv",
        subsampling_factor: int = 4,
        conv_channels: int = 32,
        dropout: float = 0.1,
    ):
        super().__init__()
        if subsampling not in SUBSAMPLING:
            raise ValueError(f"unknown subsampling {subsampling!r}; allowed: {list(SUBSAMPLING)}")
        require_positive("encoder", input_dim=input_dim, hidden_size=hidden_size,
                         num_layers=num_layers)
        cell = parse_cell(cell, "model.encoder.cell")
        directions = 2 if bidirectional else 1
        self.output_dim = cell.output_size(hidden_size) * directions
        self.subsampling_factor = subsampling_factor if subsampling != "none" else 1
        self.dropout = nn.Dropout(dropout)
        self.front: ConvSubsampling | VGGSubsampling | None = None
        self.stack_after = 0  # frames are stacked in pairs after this many first layers
        if subsampling in ("conv", "vgg"):
            front = ConvSubsampling if subsampling == "conv" else VGGSubsampling
            self.front = front(input_dim, hidden_size, subsampling_factor, conv_channels)
            size = hidden_size
        else:
            size = input_dim
            if subsampling == "pyramid":
                self.stack_after = _log2(subsampling_factor)
                if num_layers <= self.stack_after:
                    raise ValueError(
                        f"pyramid subsampling by {subsampling_factor} needs num_layers > "
                        f"{self.stack_after} (got {num_layers})"
                    )
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            self.layers.append(RecurrentLayer(size, hidden_size, cell, bidirectional))
            size = self.output_dim * (2 if i < self.stack_after else 1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Memory lengths for input lengths ``(B,)`` (each subsampling step rounds up)."""
        for _ in range(_log2(self.subsampling_factor)):
            lengths = (lengths + 1) // 2
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features
        if self.front is not None:
            x, lengths = self.front(x, lengths)
            x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, lengths)  # (B, S', D), zero on padding
            if i < self.stack_after:
                x, lengths = stack_frames(x, lengths)
            x = self.dropout(x)
        return x, lengths


def _log2(factor: int) -> int:
    steps = int(math.log2(factor)) if factor > 0 else -1
    if steps < 0 or 2**steps != factor:
        raise ValueError(f"subsampling_factor must be a power of two, got {factor}")
    return steps
