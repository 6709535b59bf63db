"""Tacotron 2 (Shen et al., 2018): text in, log-mel frames out, one attention step per r frames.

The parts are plain modules: :class:`TextEncoder` (embedding, convolutions, a bidirectional
recurrent layer), :class:`Prenet` (dropout that stays on at inference, as every Tacotron 2
implementation keeps it, since without it the decoder learns to copy its last frame),
:class:`TacotronDecoder` (attention and decoder recurrent layers, ``r`` frames and ``r`` stop
logits per step) and :class:`Postnet` (a convolutional residual on the whole mel). Free-running
synthesis with stopping lives in :mod:`rnnseq.decoding.synthesis`.

Shapes: B batch, S input tokens, T mel frames, N = ceil(T / r) decoder steps, F mel bins,
D encoder output size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from hydra.utils import instantiate
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.attention import Attention, AttentionState
from rnnseq.models.recurrent import (
    Cell,
    RecurrentLayer,
    build_recurrent,
    output_size,
    parse_cell,
    require_positive,
    step_recurrent,
    zero_state,
)


def group_frames(frames: torch.Tensor, reduction: int) -> torch.Tensor:
    """``(B, T, F) -> (B, ceil(T / r), r * F)``: r consecutive frames per decoder step, the last
    group padded with zero frames."""
    b, t, f = frames.shape
    steps = -(-t // reduction)
    padded = nn.functional.pad(frames, (0, 0, 0, steps * reduction - t))
    return padded.reshape(b, steps, reduction * f)


def ungroup_frames(grouped: torch.Tensor, reduction: int) -> torch.Tensor:
    """``(B, N, r * F) -> (B, N * r, F)``, the inverse of :func:`group_frames` (padding kept)."""
    b, n, rf = grouped.shape
    return grouped.reshape(b, n * reduction, rf // reduction)


class TextEncoder(nn.Module):
    """Token embedding, ``conv_layers`` convolutions (batch norm, ReLU, dropout) and one
    bidirectional recurrent layer: ``(B, S)`` tokens, ``(B,)`` lengths -> ``(B, S, D)`` memory,
    zero on padding, with ``D`` twice the cell's output size (:attr:`output_dim`).

    Padding is zeroed before every convolution, so an utterance's memory does not depend on what
    it is batched with.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 256, conv_layers: int = 3,
                 conv_kernel: int = 5, hidden_size: int = 128, cell: str | Cell | dict = "lstm",
                 dropout: float = 0.5):
        super().__init__()
        require_positive("text encoder", vocab_size=vocab_size, embed_dim=embed_dim,
                         hidden_size=hidden_size)
        if conv_kernel % 2 == 0:
            raise ValueError(f"text encoder conv_kernel must be odd, got {conv_kernel}")
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(embed_dim, embed_dim, conv_kernel, padding=conv_kernel // 2),
                          nn.BatchNorm1d(embed_dim), nn.ReLU(), nn.Dropout(dropout))
            for _ in range(conv_layers))
        cell = parse_cell(cell, "model.encoder.cell")
        self.recurrent = RecurrentLayer(embed_dim, hidden_size, cell, bidirectional=True)
        self.output_dim = 2 * cell.output_size(hidden_size)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = make_pad_mask(lengths, tokens.shape[1]).unsqueeze(1)  # (B, 1, S)
        x = self.embed(tokens).transpose(1, 2)  # (B, E, S) as Conv1d expects
        for conv in self.convs:
            x = conv(x * valid)
        return self.recurrent((x * valid).transpose(1, 2), lengths)  # (B, S, D)


class Prenet(nn.Module):
    """Linear + ReLU layers, each followed by dropout that is applied in evaluation too.

    ``(..., F) -> (..., sizes[-1])``. At inference, ``generators`` (one per batch row) draw each
    row's dropout masks, so a synthesis is reproducible and does not depend on its batch.
    """

    def __init__(self, input_dim: int, sizes: Sequence[int] = (128, 128), dropout: float = 0.5):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"prenet dropout must be in [0, 1), got {dropout}")
        dims = [input_dim, *sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.dropout = dropout
        self.output_dim = dims[-1]

    def _mask(self, shape: torch.Size, generators, device) -> torch.Tensor:
        keep = 1.0 - self.dropout
        if generators is None:
            return torch.bernoulli(torch.full(shape, keep, device=device))
        # host: per-utterance CPU generators, so a text gets the same masks on every device
        rows = [torch.bernoulli(torch.full(shape[1:], keep), generator=g) for g in generators]
        return torch.stack(rows).to(device)

    def forward(self, x: torch.Tensor,
                generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        if generators is not None and len(generators) != x.shape[0]:
            raise ValueError(f"prenet got {len(generators)} generators for {x.shape[0]} rows")
        for layer in self.layers:
            x = torch.relu(layer(x))
            if self.dropout > 0:
                x = x * self._mask(x.shape, generators, x.device) / (1.0 - self.dropout)
        return x


class Postnet(nn.Module):
    """A residual on the decoder's mel: ``layers`` convolutions over time (batch norm, tanh
    except after the last, dropout). ``(B, T, F)`` mel, ``(B, T)`` mask -> ``(B, T, F)`` residual,
    zero on padding; padding is zeroed before every convolution."""

    def __init__(self, n_mels: int, channels: int = 256, kernel: int = 5, layers: int = 5,
                 dropout: float = 0.5):
        super().__init__()
        if layers < 2 or kernel % 2 == 0:
            raise ValueError(f"postnet needs layers >= 2 and an odd kernel, got layers={layers}, "
                             f"kernel={kernel}")
        dims = [n_mels] + [channels] * (layers - 1) + [n_mels]
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, kernel, padding=kernel // 2), nn.BatchNorm1d(b))
            for a, b in zip(dims, dims[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid = mask.unsqueeze(1).to(mel.dtype)  # (B, 1, T)
        x = mel.transpose(1, 2)  # (B, F, T)
        for i, conv in enumerate(self.convs):
            x = conv(x * valid)
            if i < len(self.convs) - 1:
                x = torch.tanh(x)
            x = self.dropout(x)
        return (x * valid).transpose(1, 2)


class TacotronState(NamedTuple):
    """What the decoder carries between steps. Batch is dim 0 of every tensor."""

    attention_h: torch.Tensor  # (B, P_a) attention recurrent layer's output
    attention_c: torch.Tensor  # (B, H_a) its cell state ((B, 0) for cells without one)
    decoder_h: torch.Tensor  # (B, P_d) decoder recurrent layer's output
    decoder_c: torch.Tensor  # (B, H_d)
    context: torch.Tensor  # (B, D) last attention context
    attention: AttentionState


class TacotronDecoder(nn.Module):
    """Autoregressive mel decoder with attention, r frames per step.

    Each step: ``p = prenet(last frame of the previous step)``,
    ``h_a = RNN_a([p; context], h_a)``, ``context, weights = attention(h_a, memory)``,
    ``h_d = RNN_d([h_a; context], h_d)``, then ``[h_d; context]`` gives r mel frames and r stop
    logits.

    Args:
        n_mels: mel bins F.
        memory_dim: encoder output size D.
        attention: builds the attention from ``(query_dim, memory_dim)`` (a Hydra ``_partial_``).
        reduction: frames per step r.
        prenet_sizes, prenet_dropout: the prenet's layers (dropout on at inference too).
        attention_rnn_size, decoder_rnn_size: sizes of the two recurrent layers.
        cell: a name of :data:`rnnseq.models.recurrent.CELLS` or a cell setting (``model.cell``).
        zoneout: of both recurrent layers (:class:`rnnseq.models.recurrent.CellStack`; Tacotron 2
            used 0.1); 0: off.
        dropout: on the outputs of both recurrent layers, in training.
    """

    def __init__(self, n_mels: int, memory_dim: int, attention: Callable[..., Attention],
                 reduction: int = 3, prenet_sizes: Sequence[int] = (128, 128),
                 prenet_dropout: float = 0.5, attention_rnn_size: int = 512,
                 decoder_rnn_size: int = 512, cell: str | Cell | dict = "lstm",
                 zoneout: float = 0.0, dropout: float = 0.1):
        super().__init__()
        require_positive("tacotron decoder", n_mels=n_mels, memory_dim=memory_dim,
                         reduction=reduction, attention_rnn_size=attention_rnn_size,
                         decoder_rnn_size=decoder_rnn_size)
        cell = parse_cell(cell, "model.decoder.cell")
        self.n_mels, self.reduction = n_mels, reduction
        self.prenet = Prenet(n_mels, prenet_sizes, prenet_dropout)
        self.attention_rnn = build_recurrent(cell, self.prenet.output_dim + memory_dim,
                                             attention_rnn_size, zoneout=zoneout,
                                             key="model.decoder")
        query_dim = output_size(self.attention_rnn)
        self.attention = attention(query_dim=query_dim, memory_dim=memory_dim)
        self.decoder_rnn = build_recurrent(cell, query_dim + memory_dim, decoder_rnn_size,
                                           zoneout=zoneout, key="model.decoder")
        out_dim = output_size(self.decoder_rnn) + memory_dim
        self.frames = nn.Linear(out_dim, reduction * n_mels)
        self.stop = nn.Linear(out_dim, reduction)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> TacotronState:
        """State before the first step; projects the memory into attention keys once."""
        b = memory.shape[0]
        attention_h, attention_c = zero_state(self.attention_rnn, b, memory)
        decoder_h, decoder_c = zero_state(self.decoder_rnn, b, memory)
        return TacotronState(attention_h[0], attention_c[0], decoder_h[0], decoder_c[0],
                             memory.new_zeros(b, memory.shape[-1]),
                             self.attention.init_state(memory, memory_mask))

    def go_frame(self, memory: torch.Tensor) -> torch.Tensor:
        """``(B, F)`` zero frame that the first step reads (the mean frame, after normalisation)."""
        return memory.new_zeros(memory.shape[0], self.n_mels)

    def step_from_prenet(self, prenet_out: torch.Tensor, state: TacotronState,
                         memory: torch.Tensor, memory_mask: torch.Tensor):
        """One step from the prenet's ``(B, P)`` output: ``(B, r, F)`` frames, ``(B, r)`` stop
        logits, the next state and ``(B, S)`` attention weights. ``memory_mask`` may be narrower
        than the padding mask (an inference-time attention window)."""
        _, (h_a, c_a) = step_recurrent(self.attention_rnn,
                                       torch.cat([prenet_out, state.context], -1),
                                       (state.attention_h[None], state.attention_c[None]))
        h_a, c_a = self.dropout(h_a[0]), c_a[0]
        context, weights, attention_state = self.attention(h_a, memory, memory_mask,
                                                           state.attention)
        _, (h_d, c_d) = step_recurrent(self.decoder_rnn, torch.cat([h_a, context], -1),
                                       (state.decoder_h[None], state.decoder_c[None]))
        h_d, c_d = self.dropout(h_d[0]), c_d[0]
        out = torch.cat([h_d, context], -1)  # (B, H_d + D)
        frames = self.frames(out).view(-1, self.reduction, self.n_mels)
        state = TacotronState(h_a, c_a, h_d, c_d, context, attention_state)
        return frames, self.stop(out), state, weights

    def step(self, last_frame: torch.Tensor, state: TacotronState, memory: torch.Tensor,
             memory_mask: torch.Tensor, generators: Sequence[torch.Generator] | None = None):
        """One free-running step from the ``(B, F)`` last frame of the previous step (or
        :meth:`go_frame`); see :meth:`step_from_prenet` for what it returns."""
        return self.step_from_prenet(self.prenet(last_frame, generators), state, memory,
                                     memory_mask)

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor, targets: torch.Tensor):
        """Teacher forcing on ``(B, T, F)`` targets: ``(B, N * r, F)`` frames, ``(B, N * r)`` stop
        logits and ``(B, N, S)`` attention weights, N = ceil(T / r). Step n reads the last frame
        of target group n - 1 (step 0 the go frame), as :meth:`step` reads its own output."""
        grouped = group_frames(targets, self.reduction)  # (B, N, r * F)
        last = grouped[:, :, -self.n_mels:]  # (B, N, F) last frame of each group
        inputs = torch.cat([self.go_frame(memory).unsqueeze(1), last[:, :-1]], 1)
        prenet_out = self.prenet(inputs)  # (B, N, P), all steps at once
        state = self.init_state(memory, memory_mask)
        frames, stops, weights = [], [], []
        for n in range(inputs.shape[1]):
            step_frames, step_stops, state, step_weights = self.step_from_prenet(
                prenet_out[:, n], state, memory, memory_mask)
            frames.append(step_frames)
            stops.append(step_stops)
            weights.append(step_weights)
        frames = torch.cat(frames, 1)  # (B, N * r, F)
        return frames, torch.cat(stops, 1), torch.stack(weights, 1)


class TacotronOutput(NamedTuple):
    mel: torch.Tensor  # (B, N * r, F) decoder output
    mel_postnet: torch.Tensor  # (B, N * r, F) after the postnet's residual
    stop_logits: torch.Tensor  # (B, N * r) one per frame
    attention: torch.Tensor  # (B, N, S) one row per decoder step


class Tacotron(nn.Module):
    """Text encoder, mel decoder and postnet. ``forward`` is teacher forced; free-running
    synthesis uses :meth:`encode`, the decoder's ``step`` and :meth:`postnet_mel`.

    With ``num_speakers`` > 0, a learnt ``speaker_dim`` embedding of each utterance's speaker is
    appended to every memory step (the decoder's ``memory_dim`` must include it).
    """

    def __init__(self, encoder: TextEncoder, decoder: TacotronDecoder, postnet: Postnet,
                 num_speakers: int = 0, speaker_dim: int = 0):
        super().__init__()
        if (num_speakers > 0) != (speaker_dim > 0):
            raise ValueError(f"a speaker embedding needs both num_speakers and speaker_dim > 0, "
                             f"got {num_speakers} and {speaker_dim}")
        self.encoder, self.decoder, self.postnet = encoder, decoder, postnet
        self.speaker_embedding = nn.Embedding(num_speakers, speaker_dim) if num_speakers else None

    @property
    def reduction(self) -> int:
        """Frames per decoder step (r)."""
        return self.decoder.reduction

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor,
               speakers: torch.Tensor | None = None):
        """``(B, S)`` tokens (and ``(B,)`` speaker ids) -> ``(B, S, D)`` memory, ``(B, S)`` mask."""
        memory = self.encoder(tokens, lengths)
        mask = make_pad_mask(lengths, tokens.shape[1])
        if self.speaker_embedding is not None:
            if speakers is None:
                raise ValueError("this model was trained with speakers: give each utterance's "
                                 "speaker id")
            voice = self.speaker_embedding(speakers).unsqueeze(1).expand(-1, memory.shape[1], -1)
            memory = torch.cat([memory, voice * mask.unsqueeze(-1)], -1)
        elif speakers is not None:
            raise ValueError("this model has no speaker embedding; it was trained on one speaker")
        return memory, mask

    def postnet_mel(self, mel: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` decoder mel -> the mel after the postnet's residual, zero beyond each
        item's ``(B,)`` length."""
        mask = make_pad_mask(frame_lengths, mel.shape[1])
        return (mel + self.postnet(mel, mask)) * mask.unsqueeze(-1).to(mel.dtype)

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor, targets: torch.Tensor,
                target_lengths: torch.Tensor,
                speakers: torch.Tensor | None = None) -> TacotronOutput:
        """Teacher forcing: ``(B, S)`` tokens, ``(B, T, F)`` target frames (with their lengths and
        ``(B,)`` speaker ids) -> :class:`TacotronOutput`."""
        memory, memory_mask = self.encode(tokens, token_lengths, speakers)
        mel, stop_logits, attention = self.decoder(memory, memory_mask, targets)
        return TacotronOutput(mel, self.postnet_mel(mel, target_lengths), stop_logits, attention)


def build_tacotron(model: Mapping[str, Any], vocab_size: int, n_mels: int,
                   num_speakers: int = 0) -> Tacotron:
    """A :class:`Tacotron` from the ``model`` config group (``encoder``, ``decoder``,
    ``attention`` and ``postnet`` Hydra partials, and ``speaker_dim``); the sizes that follow
    from the data and from other modules are filled in here and nowhere else."""
    encoder = instantiate(model["encoder"])(vocab_size=vocab_size)
    speaker_dim = int(model.get("speaker_dim") or 0) if num_speakers else 0
    decoder = instantiate(model["decoder"])(
        n_mels=n_mels, memory_dim=encoder.output_dim + speaker_dim,
        attention=instantiate(model["attention"]))
    postnet = instantiate(model["postnet"])(n_mels=n_mels)
    return Tacotron(encoder, decoder, postnet, num_speakers, speaker_dim)
