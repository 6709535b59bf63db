import math

import pytest
import torch

from rnnseq.data.audio import FeatureConfig, LogMel
from rnnseq.data.vocoder import GriffinLimVocoder

FEATURES = FeatureConfig(sample_rate=16000, n_mels=80, win_ms=50.0, hop_ms=12.5)


def tone(hz: float, seconds: float = 0.5, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return 0.5 * torch.sin(2 * math.pi * hz * t)


# the ASR's 25 ms analysis (n_fft 512) has empty low mel filters: a rank-deficient inverse.
# Bounds on the mean log-mel error of the copy: about 1.25x what 16 iterations gave when they
# were set (0.195 nats at 50 ms, 0.495 at 25 ms, 1 thread); one Griffin-Lim iteration gives 0.376
# and 0.713, a magnitude squared instead of raised to power / 2 about 8.
@pytest.mark.parametrize("features, bound", [(FEATURES, 0.25),
                                             (FeatureConfig(win_ms=25.0, hop_ms=10.0), 0.62)],
                         ids=["50ms", "25ms"])
def test_copy_synthesis_keeps_the_length_the_pitch_and_the_level_of_a_tone(features, bound):
    wave = tone(1000.0)
    log_mel = LogMel(features)(wave)  # (S, 80)
    out = GriffinLimVocoder(features, n_iter=16)(log_mel)
    assert out.shape == ((log_mel.shape[0] - 1) * features.hop_length,)
    spectrum = torch.fft.rfft(out).abs()
    peak_hz = float(spectrum.argmax()) * features.sample_rate / out.shape[0]
    assert abs(peak_hz - 1000.0) < 40  # one mel band near 1 kHz is about 40 Hz wide
    # the level survives too: log-mel of the copy close to the original where it carries energy
    # (phase errors smear a little energy into neighbouring bands), and its RMS within 1 dB of
    # the tone's (0.50 dB at 50 ms, 0.36 dB at 25 ms when set)
    again = LogMel(features)(out)[2:-2]
    loud = log_mel[2:-2] > log_mel.max() - 6
    assert float((again[loud] - log_mel[2:-2][loud]).abs().mean()) < bound
    level_db = 20 * math.log10(float(out.pow(2).mean().sqrt() / wave.pow(2).mean().sqrt()))
    assert abs(level_db) < 1.0


def test_the_same_frames_give_the_same_audio_and_the_seed_sets_the_phase():
    log_mel = LogMel(FEATURES)(tone(440.0, 0.2))
    first = GriffinLimVocoder(FEATURES, n_iter=4, seed=1)(log_mel)
    torch.rand(3)  # the caller's random stream must not matter
    assert torch.equal(first, GriffinLimVocoder(FEATURES, n_iter=4, seed=1)(log_mel))
    assert not torch.equal(first, GriffinLimVocoder(FEATURES, n_iter=4, seed=2)(log_mel))


def test_bad_settings_and_shapes_are_named():
    with pytest.raises(ValueError, match="n_iter"):
        GriffinLimVocoder(FEATURES, n_iter=0)
    with pytest.raises(ValueError, match="80"):
        GriffinLimVocoder(FEATURES)(torch.zeros(10, 40))


@pytest.mark.parametrize("frames", [0, 1, 2, 3, 4])
def test_a_synthesis_that_stopped_at_once_gives_its_few_samples_not_an_error(frames):
    out = GriffinLimVocoder(FEATURES, n_iter=2)(torch.full((frames, 80), -3.0))
    assert out.shape == (max(frames - 1, 0) * FEATURES.hop_length,)
    if frames <= 3:  # 400 samples or fewer: under half the 1024-point window
        assert out.abs().sum() == 0


@pytest.mark.parametrize("samples", [0, 1, 400, 513, 4000])
def test_log_mel_of_any_length_has_one_frame_per_hop_plus_one(samples):
    assert LogMel(FEATURES)(torch.zeros(samples)).shape == (samples // 200 + 1, 80)


@pytest.mark.parametrize("features", [FEATURES, FeatureConfig(win_ms=25.0, hop_ms=10.0)],
                         ids=["50ms", "25ms"])
def test_the_mel_inverse_is_the_minimum_norm_least_squares_solution(features):
    """The pseudo-inverse (made once, usable on any device) gives what torchaudio's SVD solver
    gives at synthesis time, rank-deficient filterbank (25 ms) included."""
    import torchaudio

    solver = torchaudio.transforms.InverseMelScale(  # reference only: a CPU-only solver
        n_stft=features.n_fft // 2 + 1, n_mels=features.n_mels,
        sample_rate=features.sample_rate, driver="gelsd")
    mel_power = LogMel(features)(tone(440.0) + 0.1 * tone(2500.0)).exp().T  # (F, S)
    expected = solver(mel_power)
    got = (GriffinLimVocoder(features).mel_inverse @ mel_power).clamp_min(0)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.max()))

