"""Log-mel frames back to a waveform: the inverse of :class:`~rnnseq.data.audio.LogMel` followed
by Griffin-Lim phase reconstruction (torchaudio's).

Griffin-Lim is the vocoder that needs no training: it is what speech synthesis here is heard and
scored through, and copy-synthesis of reference mels through it is the floor that a synthesis
model's intelligibility is measured against.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from rnnseq.data.audio import LOG_FLOOR, FeatureConfig


class GriffinLimVocoder(nn.Module):
    """``(S, n_mels)`` natural-log mel power frames -> ``(N,)`` waveform, N = (S - 1) * hop
    (silence when that is under half an FFT window, too short to reconstruct).

    The mel power is mapped back to a linear power spectrogram by the minimum-norm least-squares
    inverse of the mel filterbank (clamped at zero), raised to ``power`` / 2 (GL iterates on
    magnitude ** power; 1 is magnitude, the classic choice, 2 is power), then ``n_iter``
    Griffin-Lim iterations with ``momentum`` recover a phase. The random initial phase is drawn
    from ``seed`` on the frames' device, so the same frames always give the same audio on one
    device (the CPU and CUDA draw different phases).
    """

    def __init__(self, features: FeatureConfig, n_iter: int = 32, power: float = 1.0,
                 momentum: float = 0.99, seed: int = 0):
        super().__init__()
        if n_iter < 1 or power <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"vocoder needs n_iter >= 1, power > 0 and 0 <= momentum < 1, got "
                             f"n_iter={n_iter}, power={power}, momentum={momentum}")
        self.features, self.power, self.seed = features, power, seed
        filterbank = torchaudio.functional.melscale_fbanks(  # (n_fft / 2 + 1, n_mels)
            features.n_fft // 2 + 1, 0.0, float(features.sample_rate // 2), features.n_mels,
            features.sample_rate)  # htk scale, no norm: as LogMel's MelSpectrogram
        # The pseudo-inverse is the minimum-norm least-squares solution (what an SVD solver
        # gives), so it also inverts rank-deficient filterbanks: with a short window (25 ms,
        # n_fft 512) the lowest mel filters fall between FFT bins and are empty. Computed once
        # here, it leaves no solver to run at synthesis time, where CUDA has none of this kind.
        # Derived from the features, so not part of checkpoints.
        # Singular values below float32's resolution count as zero, as a float32 solver's do.
        cutoff = torch.finfo(torch.float32).eps * max(filterbank.shape)
        inverse = torch.linalg.pinv(filterbank.T.double(), rtol=cutoff).float()
        self.register_buffer("mel_inverse", inverse, persistent=False)  # (n_fft / 2 + 1, n_mels)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=features.n_fft, n_iter=n_iter, win_length=features.win_length,
            hop_length=features.hop_length, power=power, momentum=momentum)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``(S, n_mels)`` -> ``(N,)`` float32 waveform on ``log_mel``'s device,
        N = (S - 1) * hop_length."""
        if log_mel.dim() != 2 or log_mel.shape[1] != self.features.n_mels:
            raise ValueError(f"expected (frames, {self.features.n_mels}) log-mel frames, got "
                             f"shape {tuple(log_mel.shape)}")
        samples = max(log_mel.shape[0] - 1, 0) * self.features.hop_length
        if samples <= self.features.n_fft // 2:  # shorter than half a window: Griffin-Lim's
            # reflection padding cannot work, give silence
            return log_mel.new_zeros(samples, dtype=torch.float32)
        mel_power = (log_mel.float().exp() - LOG_FLOOR).clamp_min(0).transpose(0, 1)  # (F, S)
        linear_power = (self.mel_inverse @ mel_power).clamp_min(0)  # (n_fft / 2 + 1, S)
        spectrogram = linear_power.pow(self.power / 2)
        device = log_mel.device
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the caller's random streams stay untouched
            torch.random.default_generator.manual_seed(self.seed)
            if cuda:  # only this device's stream: torch.manual_seed would reseed every GPU
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(self.seed)
            return self.griffin_lim(spectrogram)  # centred frames: (S - 1) * hop samples
