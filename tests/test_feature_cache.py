"""The log-mel cache: identical features, reused across runs, rebuilt when audio changes,
unreadable audio skipped, nothing half-written left behind."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from rnnseq.data import feature_cache as FC
from rnnseq.data import speech
from rnnseq.data.speech import SpeechDataModule, SpeechDataset


def _copy_corpus(tiny_corpus, tmp_path) -> dict[str, str]:
    manifests = {}
    for split, manifest in tiny_corpus.items():
        shutil.copytree(Path(manifest).parent / "wav" / split, tmp_path / "wav" / split)
        shutil.copy(manifest, tmp_path / f"{split}.jsonl")
        manifests[split] = str(tmp_path / f"{split}.jsonl")
    return manifests


def test_cached_features_equal_features_computed_from_the_audio(tiny_corpus, tmp_path):
    cached = SpeechDataModule(manifests=tiny_corpus, num_workers=0,
                              feature_cache=str(tmp_path / "features"))
    cached.setup("fit")
    plain = SpeechDataModule(manifests=tiny_corpus, num_workers=0)
    plain.setup("fit")
    for split in ("train", "valid", "test"):
        a, b = cached.datasets[split], plain.datasets[split]
        assert a.cache is not None and b.cache is None
        for i in range(len(b)):
            assert torch.equal(a[i].features, b[i].features)
            assert a[i].text == b[i].text
    stats_cached, stats_plain = cached.feature_statistics(), plain.feature_statistics()
    assert all(torch.equal(x, y) for x, y in zip(stats_cached, stats_plain))


def test_a_cache_is_reused_and_rebuilt_when_the_audio_changes(tiny_corpus, tmp_path, monkeypatch):
    manifests = _copy_corpus(tiny_corpus, tmp_path)
    folder = tmp_path / "features"
    first = SpeechDataModule(manifests=manifests, num_workers=0, feature_cache=str(folder))
    first.setup("fit")
    assert len(list(folder.iterdir())) == len(tiny_corpus)  # one cache per split

    calls = []
    monkeypatch.setattr(speech, "available_cores", lambda: 1)  # extract in this process
    monkeypatch.setattr(FC, "_extract", lambda path: calls.append(path))
    again = SpeechDataModule(manifests=manifests, num_workers=0, feature_cache=str(folder))
    again.setup("fit")
    assert calls == []  # read back, not recomputed
    monkeypatch.undo()

    victim = Path(again.datasets["train"].utterances[0].audio_path)
    shutil.copy(again.datasets["train"].utterances[1].audio_path, victim)
    changed = SpeechDataModule(manifests=manifests, num_workers=0, feature_cache=str(folder))
    changed.setup("fit")
    assert len(list(folder.iterdir())) == len(tiny_corpus) + 1  # a new training cache; the rest reused
    assert torch.equal(changed.datasets["train"][0].features, changed.datasets["train"][1].features)


def test_audio_unusable_at_build_time_is_reported_and_left_out(tiny_corpus, tmp_path):
    manifests = _copy_corpus(tiny_corpus, tmp_path)
    dm = SpeechDataModule(manifests=manifests, num_workers=0, validate_audio=False,
                          feature_cache=str(tmp_path / "features"))
    lines = [json.loads(x) for x in Path(manifests["train"]).read_text().splitlines()]
    broken, silent = lines[0], lines[1]
    (tmp_path / broken["audio_filepath"]).write_bytes(b"broken")
    soundfile.write(tmp_path / silent["audio_filepath"], np.zeros(8000, dtype=np.float32), 16000)
    dm.setup("fit")
    reasons = {issue.id: issue.reason for issue in dm.report.issues}
    assert "cannot read audio" in reasons[broken["id"]]
    assert "is silent" in reasons[silent["id"]]
    assert len(dm.datasets["train"]) == len(lines) - 2
    ids = [i for batch in dm.train_dataloader() for i in batch.ids]
    assert sorted(ids) == sorted(x["id"] for x in lines[2:])


def test_an_interrupted_build_leaves_no_cache(tiny_corpus, tmp_path, monkeypatch):
    calls = []

    def failing(path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return torch.zeros(5, 80).numpy()

    monkeypatch.setattr(speech, "available_cores", lambda: 1)  # extract in this process
    monkeypatch.setattr(FC, "_extract", failing)
    dm = SpeechDataModule(manifests=tiny_corpus, num_workers=0,
                          feature_cache=str(tmp_path / "features"))
    with pytest.raises(KeyboardInterrupt):
        dm.setup("fit")
    assert list((tmp_path / "features").iterdir()) == []


def test_noisy_training_audio_is_not_cached(tiny_corpus, tmp_path):
    dm = SpeechDataModule(manifests=tiny_corpus, num_workers=0,
                          augment={"noise": {"p": 1.0, "snr_db": [10, 20], "kinds": ["white"]}},
                          feature_cache=str(tmp_path / "features"))
    dm.setup("fit")
    assert dm.datasets["train"].cache is None and dm.datasets["valid"].cache is not None
    with pytest.raises(ValueError, match="cannot be augmented on the fly"):
        SpeechDataset(dm.datasets["train"].utterances, dm.tokenizer, dm.feature_config,
                      dm.datasets["train"].augment, dm.datasets["valid"].cache)
