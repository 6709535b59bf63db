import numpy as np
import pytest
import soundfile
import torch

from rnnseq.data.audio import (
    AudioError,
    FeatureConfig,
    FeatureNormalizer,
    LogMel,
    SpecAugment,
    load_audio,
    stretch_bins,
)


def test_load_audio_resamples_and_mixes_to_mono(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5
    soundfile.write(tmp_path / "x.flac", stereo, 8000)
    wave = load_audio(str(tmp_path / "x.flac"), 16000)
    assert wave.shape == (16000,) and wave.dtype == torch.float32
    assert wave.abs().max() == pytest.approx(0.25, abs=0.02)


def test_corrupt_and_empty_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF0000WAVEjunkjunk")
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_audio(str(bad), 16000)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty.wav.*no samples"):
        load_audio(str(empty), 16000)


def test_logmel_frames_match_the_bucketing_count():
    config = FeatureConfig()
    feats = LogMel(config)(torch.randn(16000))
    assert feats.shape == (config.num_frames(1.0), 80) == (101, 80)


def test_normalizer_zeroes_padding_and_standardises():
    norm = FeatureNormalizer(2)
    norm.set_statistics(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    x = torch.tensor([[[3.0, 6.0], [5.0, 5.0]]])
    out = norm(x, torch.tensor([[True, False]]))
    assert out.tolist() == [[[1.0, 1.0], [0.0, 0.0]]]


def test_spec_augment_masks_only_in_training():
    aug = SpecAugment(freq_masks=1, freq_width=10, time_masks=1, time_width=10, max_time_ratio=1.0)
    x = torch.ones(4, 50, 20)
    assert torch.equal(aug.eval()(x), x)
    torch.manual_seed(0)
    masked = aug.train()(x)
    assert masked.shape == x.shape and (masked == 0).any() and (masked == 1).any()


def test_stretch_bins_moves_spectral_peaks_by_the_factor():
    ramp = torch.arange(5.0).view(1, 1, 5)
    # factor 2: bin f reads position f / 2 (interpolated); factor 0.5 reads 2f, clamped at the top
    assert stretch_bins(ramp, torch.tensor([2.0])).tolist() == [[[0.0, 0.5, 1.0, 1.5, 2.0]]]
    assert stretch_bins(ramp, torch.tensor([0.5])).tolist() == [[[0.0, 2.0, 4.0, 4.0, 4.0]]]
    assert torch.equal(stretch_bins(ramp, torch.tensor([1.0])), ramp)
    peak = torch.zeros(2, 3, 40)
    peak[:, :, 10] = 1.0
    moved = stretch_bins(peak, torch.tensor([1.2, 0.8]))
    assert moved[0, 0].argmax() == 12 and moved[1, 0].argmax() == 8  # a formant at bin 10


def test_spec_augment_freq_warp_stretches_each_utterance_in_training_only():
    aug = SpecAugment(freq_masks=0, time_masks=0, freq_warp=0.2)
    x = torch.randn(8, 5, 40)
    assert torch.equal(aug.eval()(x), x)
    torch.manual_seed(0)
    warped = aug.train()(x)
    assert not torch.allclose(warped, x) and warped.shape == x.shape
    with pytest.raises(ValueError, match="freq_warp must be in"):
        SpecAugment(freq_warp=1.5)


def test_spec_augment_waits_for_its_start_step():
    from torch import nn

    from rnnseq.data.batching import Batch
    from rnnseq.tasks.speech_input import SpeechInput

    class Features(SpeechInput, nn.Module):
        global_step = 0

    task = Features()
    nn.Module.__init__(task)
    task.init_speech_input(20, {"freq_masks": 1, "freq_width": 10, "time_masks": 1,
                                "time_width": 10, "max_time_ratio": 1.0, "start_step": 3})
    task.train()
    batch = Batch(features=torch.ones(4, 50, 20), feature_lengths=torch.full((4,), 50),
                  targets=torch.zeros(4, 1, dtype=torch.long),
                  target_lengths=torch.ones(4, dtype=torch.long), ids=list("abcd"),
                  texts=list("abcd"))
    torch.manual_seed(0)
    task.global_step = 2
    assert torch.equal(task.prepare_features(batch), batch.features)  # before the start step
    task.global_step = 3
    assert (task.prepare_features(batch) == 0).any()  # masked from the start step on
    with pytest.raises(ValueError, match="start_step must be >= 0"):
        SpecAugment(start_step=-1)


def test_normalizer_utterance_mean_removes_each_utterances_mean_over_its_frames():
    norm = FeatureNormalizer(2, utterance_mean=True)
    norm.set_statistics(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]))
    x = torch.tensor([[[3.0, 6.0], [5.0, 2.0], [9.0, 9.0]],
                      [[1.0, 4.0], [7.0, 7.0], [7.0, 7.0]]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = norm(x, mask)
    # first utterance, 2 frames: globally normalised [[1, 6], [2, 2]], mean [1.5, 4]
    assert out[0].tolist() == [[-0.5, 2.0], [0.5, -2.0], [0.0, 0.0]]
    # second, 3 frames: [[0, 4], [3, 7], [3, 7]], mean [2, 6]
    assert out[1].tolist() == [[-2.0, -2.0], [1.0, 1.0], [1.0, 1.0]]
    assert torch.equal(FeatureNormalizer(2)(x, mask)[0, 2], torch.zeros(2))  # global: padding 0
