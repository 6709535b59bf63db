"""Waveform augmentation, each operation on a hand-made signal, and its cached variants."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnseq.data import speech
from rnnseq.data.augment import (
    WaveAugment,
    add_at_snr,
    augment_settings,
    babble,
    band_limit,
    coloured_noise,
    reverberate,
    room_impulse_response,
    speed_perturb,
)
from rnnseq.data.batching import EpochItem
from rnnseq.data.speech import SpeechDataModule

SR = 16000


def sine(hz: float, seconds: float = 1.0, amplitude: float = 0.1) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amplitude * torch.sin(2 * math.pi * hz * t)


def peak_hz(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave).abs()
    return float(torch.fft.rfftfreq(len(wave), 1 / SR)[spectrum.argmax()])


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    return float(10 * torch.log10(clean.pow(2).mean() / (noisy - clean).pow(2).mean()))


def band_energy(wave: torch.Tensor, low: float, high: float) -> float:
    spectrum = torch.fft.rfft(wave).abs().pow(2)
    freqs = torch.fft.rfftfreq(len(wave), 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs <= high)].sum())


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_divides_the_duration_and_multiplies_the_pitch_by_the_factor(factor):
    wave = sine(440.0)
    fast = speed_perturb(wave, factor, SR)
    assert abs(len(fast) - len(wave) / factor) <= 1
    assert peak_hz(fast) == pytest.approx(440.0 * factor, abs=2.0)  # 1 Hz bins


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
@pytest.mark.parametrize("target", [0.0, 12.5, 30.0])
def test_noise_reaches_the_requested_snr(kind, target):
    generator = torch.Generator().manual_seed(3)
    wave = sine(300.0) + sine(1200.0, amplitude=0.05)
    if kind == "babble":
        talkers = [sine(f, seconds=0.37, amplitude=a) for f, a in ((150, 0.2), (210, 0.05), (330, 1))]
        noise = babble(len(wave), talkers, generator)
    else:
        noise = coloured_noise(len(wave), {"white": 0, "pink": 1, "brown": 2}[kind], generator)
    assert abs(snr_db(wave, add_at_snr(wave, noise, target)) - target) < 0.5


def test_coloured_noises_fall_off_with_frequency_as_their_colour_says():
    generator = torch.Generator().manual_seed(0)
    tilt = {}
    for name, exponent in (("white", 0), ("pink", 1), ("brown", 2)):
        noise = coloured_noise(4 * SR, exponent, generator)
        # power per octave: flat for pink, falling 3 dB/octave for white-per-Hz ... compare bands
        tilt[name] = band_energy(noise, 100, 200) / band_energy(noise, 3200, 6400) * 32
    # Per hertz, white is flat (ratio ~1), pink falls as 1/f (~ x 32 between the bands' centres),
    # brown as 1/f^2 (~ x 1024).
    assert tilt["white"] == pytest.approx(1.0, rel=0.3)
    assert tilt["pink"] == pytest.approx(32.0, rel=0.3)
    assert tilt["brown"] == pytest.approx(1024.0, rel=0.3)


def test_reverberation_keeps_the_length_and_level_and_decays_by_60_db_in_rt60():
    generator = torch.Generator().manual_seed(1)
    rt60 = 0.4
    rir = room_impulse_response(rt60, SR, generator, direct_ratio_db=0.0)
    assert len(rir) == int(rt60 * SR)
    assert float(rir[0]) == 1.0 and float(rir[1:].pow(2).sum()) == pytest.approx(1.0, rel=1e-4)
    wave = sine(250.0) + 0.3 * torch.randn(SR, generator=generator)
    wet = reverberate(wave, rir)
    assert wet.shape == wave.shape and torch.isfinite(wet).all()
    assert float(wet.pow(2).mean()) == pytest.approx(float(wave.pow(2).mean()), rel=1e-3)
    assert not torch.allclose(wet, wave, atol=1e-3)
    # An impulse in silence rings on and dies away: 30 dB down half way through rt60.
    click = torch.zeros(SR)
    click[1000] = 1.0
    ring = reverberate(click, rir).pow(2)
    early = ring[1001:1001 + 400].mean()  # the first 25 ms of the tail
    middle_start = 1000 + int(rt60 / 2 * SR)
    middle = ring[middle_start - 200:middle_start + 200].mean()
    drop = 10 * math.log10(float(early / middle))
    assert 20 < drop < 36


def test_band_limiting_removes_the_energy_outside_the_band():
    noise = torch.randn(SR, generator=torch.Generator().manual_seed(2))
    phone = band_limit(noise, SR, 300.0, 3400.0)
    assert phone.shape == noise.shape
    assert band_energy(phone, 3401, SR / 2) < 1e-9 * band_energy(noise, 3401, SR / 2)
    assert band_energy(phone, 0, 299) < 1e-9 * band_energy(noise, 0, 299)
    assert band_energy(phone, 400, 3300) == pytest.approx(band_energy(noise, 400, 3300), rel=1e-4)


def test_the_chain_is_reproducible_from_its_seed_and_applies_each_step_with_its_probability():
    settings = augment_settings({"speed": {"p": 0.5, "factors": [1.1]},
                                 "noise": {"p": 0.0}, "reverb": {"p": 0.0},
                                 "band_limit": {"p": 0.0}}, seed=4)
    chain = WaveAugment(settings, SR)
    wave = sine(500.0)
    first = chain(wave, torch.Generator().manual_seed(9))
    assert torch.equal(first, chain(wave, torch.Generator().manual_seed(9)))
    lengths = [len(chain(wave, torch.Generator().manual_seed(i))) for i in range(200)]
    faster = sum(n < len(wave) for n in lengths)
    assert 70 < faster < 130  # p = 0.5 of 200
    assert chain.seed_for("a.wav", 0) != chain.seed_for("a.wav", 1) != chain.seed_for("b.wav", 1)


def test_bad_augmentation_settings_name_the_key():
    with pytest.raises(ValueError, match=r"data.augment key\(s\) \['echo'\]"):
        augment_settings({"echo": {"p": 1}})
    with pytest.raises(ValueError, match=r"data.augment.noise key\(s\) \['snr'\]"):
        augment_settings({"noise": {"snr": [1, 2]}})
    with pytest.raises(ValueError, match="data.augment.reverb.p must be in"):
        augment_settings({"reverb": {"p": 2}})
    with pytest.raises(ValueError, match=r"data.augment.band_limit.high_hz must be \[low, high\]"):
        augment_settings({"band_limit": {"high_hz": [4000, 3000]}})
    with pytest.raises(ValueError, match="noise.kinds"):
        augment_settings({"noise": {"kinds": ["traffic"]}})
    with pytest.raises(ValueError, match="babble noise needs training utterances"):
        WaveAugment(augment_settings({"noise": {"p": 1}}), SR)


EVERY_AUGMENTATION = {"speed": {"p": 1.0, "factors": [0.9, 1.1]},
                      "noise": {"p": 1.0, "snr_db": [5, 10], "kinds": ["babble", "pink"]},
                      "reverb": {"p": 0.5}, "band_limit": {"p": 0.5}}


def test_cached_variants_differ_from_the_clean_features_and_are_reused(tiny_corpus, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(speech, "available_cores", lambda: 1)

    def module():
        dm = SpeechDataModule(manifests=tiny_corpus, num_workers=0,
                              feature_cache=str(tmp_path / "features"),
                              augment={**EVERY_AUGMENTATION, "variants": 2})
        dm.setup("fit")
        return dm

    train = module().datasets["train"]
    assert len(train.variants) == 2 and train.cache is not None
    clean = train.cache[0]
    copies = [v[0] for v in train.variants]
    assert all(not torch.equal(c[: min(len(c), len(clean))], clean[: min(len(c), len(clean))])
               for c in copies)
    assert not torch.equal(copies[0], copies[1])
    # Speed perturbation changes the frame counts; CTC feasibility uses the shortest copy.
    frames = [[int(c.index[i, 1]) for c in (train.cache, *train.variants)] for i in range(len(train))]
    assert train.input_lengths() == [min(f) for f in frames]
    assert any(len(set(f)) > 1 for f in frames)
    # Validation and test stay clean; a second setup reuses every cache.
    assert module().datasets["valid"].variants == []
    folders = sorted(p.name for p in (tmp_path / "features").iterdir())
    again = module().datasets["train"]
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == folders
    assert torch.equal(again.variants[1][0], train.variants[1][0])
    # Items are drawn from the copies, the same one for an item within an epoch.
    seen = set()
    for epoch in range(40):
        train.set_epoch(epoch)
        assert torch.equal(train[0].features, train[0].features)
        seen.add(tuple(train[0].features.shape))
    assert seen <= {tuple(c.shape) for c in copies} and len(seen) == len({c.shape for c in copies})


def test_without_variants_training_audio_is_augmented_on_the_fly(tiny_corpus, tmp_path):
    dm = SpeechDataModule(manifests=tiny_corpus, num_workers=0,
                          feature_cache=str(tmp_path / "features"), augment=EVERY_AUGMENTATION)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert train.cache is None and train.augment is not None
    first = train[0].features
    assert not torch.equal(first, train.without_augmentation()[0].features)
    assert torch.equal(first, train[0].features)  # an item's draw is fixed within an epoch ...
    train.set_epoch(1)
    assert not torch.equal(first, train[0].features)  # ... and new in the next
    assert dm.datasets["valid"].augment is None


@pytest.mark.parametrize("variants", [0, 2], ids=["on the fly", "cached copies"])
def test_the_same_seed_draws_the_same_augmentation_with_any_number_of_workers(
        tiny_corpus, tmp_path, monkeypatch, variants):
    monkeypatch.setattr(speech, "available_cores", lambda: 1)

    def served(workers: int) -> dict:
        dm = SpeechDataModule(manifests=tiny_corpus, num_workers=workers, seed=7,
                              feature_cache=str(tmp_path / "features"),
                              augment={**EVERY_AUGMENTATION, "variants": variants})
        dm.setup("fit")
        loader = dm.train_dataloader()
        items = {}
        for epoch in (0, 1):
            loader.batch_sampler.set_epoch(epoch)
            items.update({(epoch, i): f[:n] for batch in loader
                          for i, f, n in zip(batch.ids, batch.features, batch.feature_lengths)})
        return items

    alone, with_workers = served(0), served(2)
    assert alone.keys() == with_workers.keys()
    assert all(torch.equal(alone[key], with_workers[key]) for key in alone)
    # and they are draws: the same items differ between the two epochs
    ids = {i for _, i in alone}
    changed = [i for i in ids if alone[(0, i)].shape != alone[(1, i)].shape
               or not torch.equal(alone[(0, i)], alone[(1, i)])]
    assert len(changed) >= len(ids) // 4


def test_the_retired_noise_key_is_refused_naming_its_new_spelling(tmp_path):
    from rnnseq.formats import require_current_data_config
    from rnnseq.train import build_data_and_task
    from tests.conftest import compose_config

    for value in ([10, 20], None):  # null too: only run folders of an older rnnseq carry it
        with pytest.raises(ValueError, match=r"data.noise_snr_db is now data.augment.noise .*"
                                             r"python -m rnnseq.upgrade RUN"):
            require_current_data_config({"max_frames": 100, "noise_snr_db": value})
    # a training command with it stops before any data is read
    cfg = compose_config(["experiment=asr", "+data.noise_snr_db=[10,20]"], tmp_path)
    with pytest.raises(ValueError, match="data.noise_snr_db is now"):
        build_data_and_task(cfg)


def test_a_quick_run_with_every_augmentation_on_the_fly_and_the_recipes_cached_copies(
        tmp_path, data_dir, tiny_corpus, smoke_run):
    from tests.conftest import corpus_overrides
    from tests.test_train_smoke import run_train

    run_train(tmp_path, data_dir, *corpus_overrides(), "trainer.fast_dev_run=2",
              "data.augment.variants=0", "data.augment.speed.p=1", "data.augment.noise.p=1",
              "data.augment.reverb.p=1", "data.augment.band_limit.p=1",
              "task.spec_augment.freq_warp=0.2")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["steps"] == 1 and set(results["test"]) == {"test/wer", "test/cer"}
    config = (tmp_path / ".hydra" / "config.yaml").read_text()
    assert "babble" in config and "variants: 0" in config
    # The shared smoke run is the recipe itself: two cached augmented copies of training.
    assert "variants: 2" in (smoke_run / ".hydra" / "config.yaml").read_text()
    assert "training audio: 2 cached augmented copies" in (smoke_run / "console.txt").read_text()


def test_clean_epochs_read_clean_features_until_the_loader_reaches_them(tiny_corpus, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(speech, "available_cores", lambda: 1)
    dm = SpeechDataModule(manifests=tiny_corpus, num_workers=0, sorted_epochs=0,
                          feature_cache=str(tmp_path / "features"),
                          augment={**EVERY_AUGMENTATION, "variants": 1, "clean_epochs": 1})
    dm.setup("fit")
    train = dm.datasets["train"]
    clean = {train.utterances[i].id: train.cache[i] for i in range(len(train))}
    copy = {train.utterances[i].id: train.variants[0][i] for i in range(len(train))}
    loader = dm.train_dataloader()

    def served(epoch):
        loader.batch_sampler.set_epoch(epoch)
        return {i: f[:n] for batch in loader
                for i, f, n in zip(batch.ids, batch.features, batch.feature_lengths)}

    assert all(torch.equal(f, clean[i]) for i, f in served(0).items())
    assert all(torch.equal(f, copy[i]) for i, f in served(1).items())
    assert train.subset([0, 1]).clean_epochs == 1
    with pytest.raises(ValueError, match="data.augment.clean_epochs must be >= 0"):
        augment_settings({"clean_epochs": -1})


def test_the_cache_key_of_a_copy_ignores_how_many_copies_there_are_and_when_they_start():
    base = augment_settings({"speed": {"p": 0.5}, "variants": 1})
    assert augment_settings({"speed": {"p": 0.5}, "variants": 3, "clean_epochs": 1}).digest() \
        == base.digest()
    assert augment_settings({"speed": {"p": 0.6}, "variants": 1}).digest() != base.digest()
    assert augment_settings({"speed": {"p": 0.5}}, seed=1).digest() != base.digest()


@pytest.mark.parametrize("variants", [0, 1], ids=["on the fly", "cached copies"])
def test_bucketing_counts_the_frames_that_slowed_down_items_will_have(tiny_corpus, tmp_path,
                                                                     monkeypatch, variants):
    """At half speed every training item is twice as long as its manifest says; the lengths that
    batches are built from must say so, or a batch holds up to twice its frame budget."""
    monkeypatch.setattr(speech, "available_cores", lambda: 1)
    dm = SpeechDataModule(manifests=tiny_corpus, num_workers=0, max_frames=600,
                          feature_cache=str(tmp_path / "features"),
                          augment={"speed": {"p": 1.0, "factors": [0.5]}, "variants": variants})
    dm.setup("fit")
    train = dm.datasets["train"]
    served = [train[EpochItem(1, i)].features.shape[0] for i in range(len(train))]
    lengths = train.frame_lengths()
    assert all(n <= bound for n, bound in zip(served, lengths))
    assert sum(lengths) <= 1.01 * sum(served)  # a bound, not a guess: no more than 1 % over
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(1)
    for batch in loader:
        assert batch.features.shape[0] * batch.features.shape[1] <= 600 or len(batch.ids) == 1
    assert dm.datasets["valid"].frame_lengths() == [
        dm.feature_config.num_frames(u.duration) for u in dm.datasets["valid"].utterances]
