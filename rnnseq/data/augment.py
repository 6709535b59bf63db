"""Waveform augmentation for speech training: speed perturbation, additive noise (white,
coloured, babble), simulated room reverberation and band limiting.

Each augmentation is applied to an utterance with its own probability ``p`` and draws its
strength from a range, all from one :class:`torch.Generator`, so that a given seed always gives
the same augmented waveform. That is what lets the feature cache hold augmented copies: variant
``k`` of an utterance is drawn from a seed made of the augmentation seed, ``k`` and the
utterance's audio path (:meth:`WaveAugment.seed_for`), and a cache key that names all of them.
Without a feature cache the same chain runs on the fly, seeded by the data seed, the epoch and the
utterance (:func:`draw_seed`), so that the draws are the same with any number of DataLoader
workers, on any machine, and after a resume.

The chain runs in the order a recording would: the talker's speaking rate (speed), the room
(reverberation), sounds in the room (noise), then the channel (band limiting). Shapes: every
function takes and returns a ``(N,)`` float waveform.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torchaudio
from omegaconf import OmegaConf

from rnnseq.data.audio import AudioError

NOISE_KINDS = ("white", "pink", "brown", "babble")
# Spectral slope of each coloured noise: power falls as 1 / f ** exponent.
_NOISE_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def draw_seed(*parts: object) -> int:
    """A 64-bit seed made of ``parts`` (e.g. the data seed, an epoch and an utterance id) by
    hashing, so that nearby parts give unrelated seeds."""
    text = "/".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


# -- the operations, each on a (N,) waveform ----------------------------------------------------
def speed_perturb(wave: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
    """The waveform played ``factor`` times faster by resampling (Ko et al., 2015, as Kaldi and
    ESPnet do): duration divided by ``factor``, pitch and formants multiplied by it.
    ``(N,) -> (round(N / factor),)``."""
    if factor == 1.0:
        return wave
    # Read as if recorded at sample_rate * factor, then brought back to sample_rate.
    source_rate = int(round(sample_rate * factor))
    return torchaudio.functional.resample(wave, source_rate, sample_rate)


def power(wave: torch.Tensor) -> torch.Tensor:
    """Mean square of a waveform (a 0-dim tensor), floored so that silence does not divide by 0."""
    return wave.pow(2).mean().clamp_min(1e-12)


def coloured_noise(num_samples: int, exponent: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise whose power spectrum falls as ``1 / f ** exponent`` (0 white, 1 pink,
    2 brown), unit power: ``(num_samples,)``."""
    white = torch.randn(num_samples, generator=generator)
    if exponent == 0:
        return white / power(white).sqrt()
    spectrum = torch.fft.rfft(white)
    freqs = torch.arange(spectrum.shape[0], dtype=torch.float32)
    freqs[0] = 1.0  # keep the DC bin finite; it is removed below
    shaped = torch.fft.irfft(spectrum / freqs.pow(exponent / 2), n=num_samples)
    shaped = shaped - shaped.mean()
    return shaped / power(shaped).sqrt()


def babble(num_samples: int, talkers: Sequence[torch.Tensor], generator: torch.Generator
           ) -> torch.Tensor:
    """Several talkers at once: each waveform of ``talkers`` looped to ``num_samples`` from a
    random start, scaled to equal power and summed; unit power: ``(num_samples,)``."""
    total = torch.zeros(num_samples)
    for talker in talkers:
        start = int(torch.randint(len(talker), (1,), generator=generator))
        repeats = math.ceil((start + num_samples) / len(talker))
        segment = talker.repeat(repeats)[start:start + num_samples]
        total += segment / power(segment).sqrt()
    return total / power(total).sqrt()


def add_at_snr(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wave + noise`` with the noise scaled so that ``10 log10(P_wave / P_noise) = snr_db``
    exactly (powers as mean squares over the whole utterance)."""
    scale = torch.sqrt(power(wave) / (power(noise) * 10 ** (snr_db / 10)))
    return wave + noise * scale


def room_impulse_response(rt60: float, sample_rate: int, generator: torch.Generator,
                          direct_ratio_db: float = 0.0) -> torch.Tensor:
    """A synthetic room impulse response: the direct sound, then a tail of Gaussian noise that
    decays by 60 dB in ``rt60`` seconds (the exponential decay of a diffuse field, Schroeder's
    model). ``direct_ratio_db`` is the direct-to-reverberant energy ratio. ``(rt60 * sr,)``."""
    length = max(int(rt60 * sample_rate), 2)
    t = torch.arange(length, dtype=torch.float32) / sample_rate
    # Amplitude falls by 60 dB (a factor 1000) at t = rt60: exp(-ln(1000) t / rt60).
    tail = torch.randn(length, generator=generator) * torch.exp(-math.log(1000.0) * t / rt60)
    tail[0] = 0.0
    tail *= torch.sqrt(10 ** (-direct_ratio_db / 10) / power(tail) / length)  # tail energy
    tail[0] = 1.0  # direct path, energy 1
    return tail


def reverberate(wave: torch.Tensor, impulse_response: torch.Tensor) -> torch.Tensor:
    """``wave`` convolved with a room impulse response, cut to the input's length and scaled back
    to its power (the room changes the sound, not its level): ``(N,) -> (N,)``."""
    n, m = wave.shape[0], impulse_response.shape[0]
    size = 1 << (n + m - 2).bit_length()  # a power of two >= n + m - 1: no circular wrap, fast FFT
    wet = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(impulse_response, size),
                          size)[:n]
    return wet * torch.sqrt(power(wave) / power(wet))


def band_limit(wave: torch.Tensor, sample_rate: int, low_hz: float, high_hz: float) -> torch.Tensor:
    """Only the band ``[low_hz, high_hz]`` kept (a telephone passes about 300-3400 Hz): every
    frequency bin outside it is zeroed. ``(N,) -> (N,)``."""
    spectrum = torch.fft.rfft(wave)
    freqs = torch.fft.rfftfreq(wave.shape[0], d=1.0 / sample_rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return torch.fft.irfft(spectrum, n=wave.shape[0])


# -- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Speed:
    """Speed perturbation: with probability ``p``, one factor of ``factors`` (Kaldi's recipe:
    ``[0.9, 1.0, 1.1]``)."""

    p: float = 0.0
    factors: tuple[float, ...] = (0.9, 1.0, 1.1)

    def longest(self, num_samples: int, sample_rate: int) -> int:
        """The most samples that ``num_samples`` can become (the slowest factor, as
        :func:`speed_perturb` resamples it); ``num_samples`` when nothing can change speed."""
        if self.p <= 0:
            return num_samples
        return max(num_samples if f == 1.0 else
                   math.ceil(num_samples * sample_rate / int(round(sample_rate * f)))
                   for f in self.factors)


@dataclass(frozen=True)
class Noise:
    """Additive noise: with probability ``p``, one kind of ``kinds`` at an SNR drawn uniformly
    from ``snr_db``; babble mixes ``babble_talkers`` (a range) other training utterances."""

    p: float = 0.0
    snr_db: tuple[float, float] = (5.0, 25.0)
    kinds: tuple[str, ...] = ("white", "pink", "brown", "babble")
    babble_talkers: tuple[int, int] = (3, 6)


@dataclass(frozen=True)
class Reverb:
    """Simulated room: with probability ``p``, reverberation time ``rt60`` (seconds) and
    direct-to-reverberant ratio ``direct_ratio_db`` drawn uniformly from their ranges."""

    p: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.8)
    direct_ratio_db: tuple[float, float] = (-3.0, 9.0)


@dataclass(frozen=True)
class BandLimit:
    """Telephone-like channel: with probability ``p``, the band between a low cut-off drawn from
    ``low_hz`` and a high cut-off drawn from ``high_hz``."""

    p: float = 0.0
    low_hz: tuple[float, float] = (100.0, 400.0)
    high_hz: tuple[float, float] = (3000.0, 4000.0)


@dataclass(frozen=True)
class AugmentSettings:
    """Everything that determines the augmented audio (``data.augment`` in the configs)."""

    speed: Speed = field(default_factory=Speed)
    noise: Noise = field(default_factory=Noise)
    reverb: Reverb = field(default_factory=Reverb)
    band_limit: BandLimit = field(default_factory=BandLimit)
    variants: int = 0  # cached augmented copies per training utterance (0: on the fly)
    clean_epochs: int = 0  # first epochs read clean audio (a curriculum: align, then generalise)
    seed: int = 0

    @property
    def active(self) -> bool:
        """Whether any augmentation can happen."""
        return any(part.p > 0 for part in (self.speed, self.noise, self.reverb, self.band_limit))

    def digest(self) -> str:
        """A short hash of what decides the augmented audio (part of the augmented caches' keys):
        every step's settings and the seed, not how many copies are made or when they are used."""
        audio = {k: v for k, v in asdict(self).items() if k not in ("variants", "clean_epochs")}
        return hashlib.sha256(json.dumps(audio, sort_keys=True).encode()).hexdigest()[:12]


_PARTS = {"speed": Speed, "noise": Noise, "reverb": Reverb, "band_limit": BandLimit}


def augment_settings(config: Mapping[str, Any] | None, seed: int = 0) -> AugmentSettings:
    """Settings from a ``data.augment`` mapping; an unknown key or value is an error naming it."""
    if OmegaConf.is_config(config):
        config = OmegaConf.to_container(config, resolve=True)
    config = dict(config or {})
    own = {"variants", "clean_epochs"}
    unknown = set(config) - {*_PARTS, *own}
    if unknown:
        raise ValueError(f"unknown data.augment key(s) {sorted(unknown)}; "
                         f"allowed: {sorted({*_PARTS, *own})}")
    parts = {}
    for name, cls in _PARTS.items():
        values = dict(config.get(name) or {})
        allowed = set(cls.__dataclass_fields__)
        wrong = set(values) - allowed
        if wrong:
            raise ValueError(f"unknown data.augment.{name} key(s) {sorted(wrong)}; "
                             f"allowed: {sorted(allowed)}")
        values = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}
        part = cls(**values)
        _check(name, part)
        parts[name] = part
    counts = {key: int(config.get(key, 0)) for key in sorted(own)}
    for key, value in counts.items():
        if value < 0:
            raise ValueError(f"data.augment.{key} must be >= 0, got {value}")
    return AugmentSettings(**parts, **counts, seed=seed)


def _check(name: str, part) -> None:
    if not 0.0 <= part.p <= 1.0:
        raise ValueError(f"data.augment.{name}.p must be in [0, 1], got {part.p}")
    for key, value in asdict(part).items():
        if key in ("p", "factors", "kinds"):
            continue
        if len(value) != 2 or value[0] > value[1]:
            raise ValueError(f"data.augment.{name}.{key} must be [low, high], got {list(value)}")
    if name == "speed" and (not part.factors or min(part.factors) <= 0):
        raise ValueError(f"data.augment.speed.factors must be positive, got {list(part.factors)}")
    if name == "noise":
        bad = [k for k in part.kinds if k not in NOISE_KINDS]
        if bad or not part.kinds:
            raise ValueError(f"data.augment.noise.kinds {list(part.kinds)}: choose from "
                             f"{list(NOISE_KINDS)}")
    if name == "reverb" and part.rt60[0] <= 0:
        raise ValueError(f"data.augment.reverb.rt60 must be above 0 s, got {list(part.rt60)}")


# -- the chain ----------------------------------------------------------------------------------
class WaveAugment:
    """The augmentation chain of :class:`AugmentSettings` on ``(N,)`` waveforms.

    Args:
        settings: probabilities and ranges.
        sample_rate: of the waveforms.
        talkers: training utterances that babble noise mixes, any sequence of ``(N,)``
            waveforms (e.g. :class:`~rnnseq.data.audio.AudioFiles`, which reads them when
            indexed); ``None``: babble is not available.
    """

    def __init__(self, settings: AugmentSettings, sample_rate: int,
                 talkers: Sequence[torch.Tensor] | None = None):
        if "babble" in settings.noise.kinds and settings.noise.p > 0 and talkers is None:
            raise ValueError("babble noise needs training utterances to mix; give talkers or "
                             "drop 'babble' from data.augment.noise.kinds")
        self.settings = settings
        self.sample_rate = sample_rate
        self.talkers = talkers

    def seed_for(self, key: str, variant: int) -> int:
        """The seed of one cached variant of one utterance (``key``: its audio path)."""
        return draw_seed(self.settings.seed, variant, key)

    def __call__(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw of the chain: ``(N,) -> (N',)`` (N' differs from N only by speed)."""
        s = self.settings

        def happens(p: float) -> bool:
            return p > 0 and float(torch.rand((), generator=generator)) < p

        def uniform(low_high) -> float:
            low, high = low_high
            return low + (high - low) * float(torch.rand((), generator=generator))

        def pick(options):
            return options[int(torch.randint(len(options), (1,), generator=generator))]

        if happens(s.speed.p):
            wave = speed_perturb(wave, float(pick(s.speed.factors)), self.sample_rate)
        if happens(s.reverb.p):
            rir = room_impulse_response(uniform(s.reverb.rt60), self.sample_rate, generator,
                                        uniform(s.reverb.direct_ratio_db))
            wave = reverberate(wave, rir)
        if happens(s.noise.p):
            kind = pick(s.noise.kinds)
            if kind == "babble":
                low, high = s.noise.babble_talkers
                count = int(torch.randint(low, high + 1, (1,), generator=generator))
                picks = torch.randint(len(self.talkers), (count,), generator=generator).tolist()
                voices = []
                for i in picks:
                    try:
                        voices.append(self.talkers[i])
                    except AudioError:  # a broken file is reported where it is a training item
                        continue
                noise = (babble(len(wave), voices, generator) if voices
                         else coloured_noise(len(wave), _NOISE_EXPONENT["pink"], generator))
            else:
                noise = coloured_noise(len(wave), _NOISE_EXPONENT[kind], generator)
            wave = add_at_snr(wave, noise, uniform(s.noise.snr_db))
        if happens(s.band_limit.p):
            wave = band_limit(wave, self.sample_rate, uniform(s.band_limit.low_hz),
                              uniform(s.band_limit.high_hz))
        return wave
