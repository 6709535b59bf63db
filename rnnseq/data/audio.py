"""Reading audio and turning it into normalised log-mel features.

Audio goes through ``soundfile`` (its wheel bundles libsndfile) rather than ``torchaudio.load``,
which now needs FFmpeg through torchcodec. The transforms are ``nn.Module``s from torchaudio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile
import torch
import torchaudio
from torch import nn


class AudioError(RuntimeError):
    """An audio file that cannot be used; the message names the file and the cause."""


def load_audio(path: str, sample_rate: int) -> torch.Tensor:
    """Reads ``path`` as mono float32 at ``sample_rate`` Hz: ``-> (N,)`` samples.

    Raises :class:`AudioError` naming the file when it cannot be decoded or holds no samples.
    """
    if not Path(path).is_file():  # soundfile would only say "System error"
        raise AudioError(f"audio file {path} was not found")
    try:
        data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError or OSError
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    wave = torch.from_numpy(data).mean(dim=1)  # (N,) mono
    if file_rate != sample_rate:
        wave = torchaudio.functional.resample(wave, file_rate, sample_rate)
    return wave


SILENCE_PEAK = 1e-4  # -80 dBFS: below 16-bit dither, nothing a recogniser could transcribe


def require_sound(wave: torch.Tensor, path: str) -> torch.Tensor:
    """``wave`` itself, or :class:`AudioError` when it is silence only (peak below -80 dBFS):
    training on a transcript with nothing audible teaches the model to hallucinate it."""
    peak = float(wave.abs().max()) if wave.numel() else 0.0
    if peak < SILENCE_PEAK:
        raise AudioError(f"audio file {path} is silent (peak amplitude {peak:.1e} is below "
                         f"{SILENCE_PEAK:.0e}, -80 dBFS)")
    return wave


@dataclass(frozen=True)
class FeatureConfig:
    """How waveforms become features; stored with every checkpoint so that a model can
    transcribe new audio without its corpus."""

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0

    @property
    def hop_length(self) -> int:
        """Samples between frames."""
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        """Samples in one analysis window."""
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def n_fft(self) -> int:
        """FFT size: the next power of two at or above the window."""
        return 1 << (self.win_length - 1).bit_length()

    def num_frames(self, seconds: float) -> int:
        """Frames that ``seconds`` of audio give (what length bucketing counts)."""
        return int(seconds * self.sample_rate) // self.hop_length + 1


LOG_FLOOR = 1e-6  # added to the mel power before the log: silence maps to log(1e-6), not -inf


class LogMel(nn.Module):
    """``(N,) waveform -> (S, n_mels)`` log-mel features, S = N // hop + 1 (also for a waveform
    shorter than half a window, which is padded with silence)."""

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
        )

    @torch.no_grad()
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(N,)`` mono waveform -> ``(S, n_mels)`` log-mel frames."""
        samples, shortest = wave.shape[-1], self.config.n_fft // 2 + 1
        if samples < shortest:  # too short to reflect at the edges: pad with silence instead
            wave = torch.nn.functional.pad(wave, (0, shortest - samples))
        spec = self.mel(wave)[:, : samples // self.config.hop_length + 1]  # (n_mels, S)
        return torch.log(spec + LOG_FLOOR).transpose(0, 1)  # (S, n_mels)


class FeatureNormalizer(nn.Module):
    """Per-dimension mean/variance normalisation with statistics of the training split, then
    optionally each utterance's own mean removed per dimension (``utterance_mean``: cepstral mean
    normalisation per utterance, as ESPnet's ``utterance_mvn`` does for the mean; it takes away
    what stays constant over an utterance, such as a voice's spectral tilt or a channel's
    colouring).

    The statistics are buffers, so they travel inside the model's ``state_dict``.
    """

    def __init__(self, num_features: int, utterance_mean: bool = False):
        super().__init__()
        self.utterance_mean = utterance_mean
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Sets the ``(F,)`` per-bin mean and standard deviation (the training split's)."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-5))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, S, F)`` features and ``(B, S)`` bool mask -> normalised features, zero on padding."""
        valid = mask.unsqueeze(-1).to(features.dtype)  # (B, S, 1)
        normalised = ((features - self.mean) / self.std) * valid
        if self.utterance_mean:
            frames = valid.sum(1, keepdim=True).clamp_min(1)  # (B, 1, 1)
            normalised = (normalised - normalised.sum(1, keepdim=True) / frames) * valid
        return normalised


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al., 2019) from torchaudio, on a padded batch, and an
    optional random stretch of the mel axis.

    Masks are drawn independently for every utterance. The masked value is 0, which after
    normalisation is the training mean. ``freq_warp`` w > 0 stretches each utterance's mel axis
    by a factor drawn from [1 - w, 1 + w]: a cheap stand-in for vocal tract length perturbation
    that works on cached features and makes a model less sensitive to the speaker's formants.
    ``start_step`` is read by the task (:class:`~rnnseq.tasks.speech_input.SpeechInput`): no
    augmentation before that training step, so that a model on varied data first escapes the
    early plateau where its CTC head emits only blanks (see experiments/asr).
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int = 40,
        max_time_ratio: float = 0.2,
        freq_warp: float = 0.0,
        start_step: int = 0,
    ):
        super().__init__()
        if not 0.0 <= freq_warp < 1.0:
            raise ValueError(f"spec_augment.freq_warp must be in [0, 1), got {freq_warp}")
        if start_step < 0:
            raise ValueError(f"spec_augment.start_step must be >= 0, got {start_step}")
        self.freq_warp = freq_warp
        self.start_step = start_step
        self.freq_masks = nn.ModuleList(
            torchaudio.transforms.FrequencyMasking(freq_width, iid_masks=True)
            for _ in range(freq_masks)
        )
        self.time_masks = nn.ModuleList(
            torchaudio.transforms.TimeMasking(time_width, iid_masks=True, p=max_time_ratio)
            for _ in range(time_masks)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, S, F) -> (B, S, F)``; identity outside training."""
        if not self.training:
            return features
        if self.freq_warp > 0:
            factors = 1 + (torch.rand(features.shape[0], device=features.device) * 2 - 1) \
                * self.freq_warp
            features = stretch_bins(features, factors)
        spec = features.transpose(1, 2).unsqueeze(1)  # (B, 1, F, S) as torchaudio expects
        for mask in (*self.freq_masks, *self.time_masks):
            spec = mask(spec)
        return spec.squeeze(1).transpose(1, 2)


def stretch_bins(features: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Stretch the last axis of ``(B, S, F)`` features by ``(B,)`` factors, linearly interpolated.

    Output bin f reads input position f / factor (clamped to the top bin): a factor above 1
    moves spectral peaks up, as a shorter vocal tract would.
    """
    num_bins = features.shape[-1]
    bins = torch.arange(num_bins, device=features.device, dtype=features.dtype)
    source = (bins / factors.to(features.dtype).unsqueeze(-1)).clamp(max=num_bins - 1)  # (B, F)
    lower = source.floor().long()
    upper = (lower + 1).clamp(max=num_bins - 1)
    weight = (source - lower).unsqueeze(1)  # (B, 1, F)
    expand = (-1, features.shape[1], -1)
    low_values = features.gather(-1, lower.unsqueeze(1).expand(*expand))
    high_values = features.gather(-1, upper.unsqueeze(1).expand(*expand))
    return low_values * (1 - weight) + high_values * weight


class AudioFiles(Sequence):
    """Audio files read when indexed: ``files[i] -> (N,)`` mono float32 at ``sample_rate``
    (e.g. the training utterances that babble noise mixes). Small to pickle into workers."""

    def __init__(self, paths: list[str], sample_rate: int):
        self.paths = list(paths)
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_audio(self.paths[index], self.sample_rate)
