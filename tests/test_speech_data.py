"""The speech datamodule on a corpus with bad items: it reports them and keeps going."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from rnnseq.data.speech import SpeechDataModule


def _bad_corpus(tiny_corpus, tmp_path) -> dict[str, str]:
    """A copy of the tiny corpus with one of each kind of bad item added."""
    out = {}
    for split in ("train", "valid", "test"):
        manifest = tiny_corpus[split]
        lines = [json.loads(x) for x in Path(manifest).read_text().splitlines()]
        for x in lines:
            x["audio_filepath"] = str(Path(manifest).parent / x["audio_filepath"])
        out[split] = lines
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    good = out["train"][0]
    out["train"] += [
        {**good, "id": "corrupt", "audio_filepath": str(corrupt)},
        {**good, "id": "empty", "audio_filepath": str(empty)},
        {**good, "id": "silent", "audio_filepath": str(silent), "duration": 1.0},
        {**good, "id": "missing", "audio_filepath": str(tmp_path / "missing.wav")},
        {**good, "id": "no-text", "text": ""},
        {**good, "id": "too-long", "duration": 99.0},
        {**good},  # the same id twice
    ]
    out["test"] += [{**out["test"][0], "id": "accented", "text": "caf\u00e9 ole"}]
    paths = {}
    for split, lines in out.items():
        path = tmp_path / f"{split}.jsonl"
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n" + '{"truncated": \n')
        paths[split] = str(path)
    return paths


def test_bad_items_are_reported_and_training_data_still_loads(tiny_corpus, tmp_path):
    manifests = _bad_corpus(tiny_corpus, tmp_path)
    dm = SpeechDataModule(manifests=manifests, max_duration=20.0, num_workers=0, max_frames=3000,
                          feature_cache=str(tmp_path / "features"))
    dm.setup("fit")
    reasons = {(i.id, i.action): i.reason for i in dm.report.issues}
    assert "is silent" in reasons[("silent", "skipped")]
    duplicate = json.loads(Path(manifests["train"]).read_text().splitlines()[0])["id"]
    assert "duplicate id" in reasons[(duplicate, "skipped")]
    assert "unreadable audio" in reasons[("corrupt", "skipped")]
    assert "not found" in reasons[("missing", "skipped")]  # not soundfile's "System error"
    assert "zero-length" in reasons[("empty", "skipped")]
    assert reasons[("no-text", "skipped")] == "empty transcript"
    assert "max_duration" in reasons[("too-long", "skipped")]
    assert "outside the vocabulary" in reasons[("accented", "kept")]
    truncated = [i for i in dm.report.issues if "malformed JSON" in i.reason]
    assert len(truncated) == 3 and all(i.line is not None for i in truncated)
    assert len(dm.datasets["train"]) == 24 and len(dm.datasets["test"]) == 7
    report = json.loads(dm.write_report(tmp_path).read_text())
    assert report["counts"] == {"skipped": 10, "kept": 1}

    seen = 0
    for batch in dm.train_dataloader():
        assert batch.features.shape[2] == dm.input_dim == 80
        assert batch.features.shape[0] * batch.features.shape[1] <= 3000 or len(batch.ids) == 1
        seen += len(batch.ids)
    assert seen == 24


def test_audio_that_breaks_after_setup_is_dropped_not_fatal(tiny_corpus, tmp_path):
    manifests = {}
    for split, manifest in tiny_corpus.items():
        folder = tmp_path / split
        shutil.copytree(Path(manifest).parent / "wav" / split, folder / "wav" / split)
        shutil.copy(manifest, folder / f"{split}.jsonl")
        manifests[split] = str(folder / f"{split}.jsonl")
    dm = SpeechDataModule(manifests=manifests, num_workers=0)
    dm.setup("fit")
    victim = dm.datasets["train"].utterances[0]
    Path(victim.audio_path).write_bytes(b"broken")
    ids = [i for batch in dm.train_dataloader() if batch is not None for i in batch.ids]
    assert victim.id not in ids and len(ids) == 23


def test_statistics_and_vocabulary_come_from_training_data(tiny_corpus):
    dm = SpeechDataModule(manifests=tiny_corpus, num_workers=0)
    dm.setup("fit")
    train_chars = {c for u in dm.datasets["train"].utterances for c in u.text}
    assert set(dm.tokenizer.symbols[3:]) == train_chars
    mean, std = dm.feature_statistics()
    assert mean.shape == std.shape == (80,)
    assert torch.isfinite(mean).all() and (std > 0).all()


def test_the_retired_sorted_first_epoch_key_is_refused_and_the_upgrade_rewrites_it(
        tiny_corpus, tmp_path):
    import yaml

    from rnnseq.formats import require_current_data_config
    from rnnseq.upgrade import upgrade_run_config

    with pytest.raises(ValueError, match="data.sorted_first_epoch is now data.sorted_epochs"):
        require_current_data_config({"sorted_first_epoch": True}, tmp_path)
    assert SpeechDataModule(manifests=tiny_corpus, sorted_epochs=3).sorted_epochs == 3
    hydra = tmp_path / ".hydra"  # a run folder written with both retired settings
    hydra.mkdir()
    (hydra / "config.yaml").write_text(yaml.safe_dump({"data": {
        "max_frames": 100, "sorted_first_epoch": True, "noise_snr_db": [10, 20]}}))
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(
        ["experiment=asr", "data.sorted_first_epoch=false", "data.noise_snr_db=[5,15]",
         "~data.noise_snr_db"]))
    assert upgrade_run_config(tmp_path) and not upgrade_run_config(tmp_path)
    data = yaml.safe_load((hydra / "config.yaml").read_text())["data"]
    assert data == {"max_frames": 100, "sorted_epochs": 1, "augment": {
        "noise": {"p": 1.0, "snr_db": [10, 20], "kinds": ["white"]}}}
    assert yaml.safe_load((hydra / "overrides.yaml").read_text()) == [
        "experiment=asr", "data.sorted_epochs=0", "data.augment.noise.p=1.0",
        "data.augment.noise.snr_db=[5, 15]", "data.augment.noise.kinds=[white]"]
    assert (hydra / "config.yaml.before-upgrade").is_file()
    # a language model's data read the tokenizer of from_run itself; now the config reads it
    (hydra / "config.yaml").write_text(yaml.safe_dump({"data": {"tokenizer": {
        "kind": "char", "from_run": "/runs/asr"}}}))
    assert upgrade_run_config(tmp_path)
    tokenizer = yaml.safe_load((hydra / "config.yaml").read_text())["data"]["tokenizer"]
    assert tokenizer["state"] == "${tokenizer_state_of_run:${data.tokenizer.from_run}}"


def test_a_run_naming_a_moved_data_class_is_refused_until_the_upgrade_rewrites_it(tmp_path):
    import yaml

    from rnnseq.runs import run_data_config
    from rnnseq.upgrade import upgrade_run_config

    hydra = tmp_path / ".hydra"
    hydra.mkdir()
    old = {"data": {"_target_": "rnnseq.data.speech.SpeechDataModule", "corpus": {
        "_target_": "rnnseq.data.corpus.speech_corpus.EspeakSpeechCorpus", "sources": [
            {"_target_": "rnnseq.data.readers.corpus.SplitCorpus"}]}}}
    (hydra / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(ValueError, match=r"rnnseq.data.corpus.speech_corpus.EspeakSpeechCorpus is "
                                         r"a module that has moved.*python -m rnnseq.upgrade"):
        run_data_config(tmp_path, [])
    assert upgrade_run_config(tmp_path)
    corpus = run_data_config(tmp_path, []).data.corpus
    assert corpus._target_ == "rnnseq.data.builders.speech_corpus.EspeakSpeechCorpus"
    assert corpus.sources[0]._target_ == "rnnseq.data.readers.split_corpus.SplitCorpus"
    from hydra.utils import get_class
    assert get_class(corpus._target_).__name__ == "EspeakSpeechCorpus"  # the new path imports


def test_training_on_a_corpus_full_of_bad_items_runs_to_the_end_and_reports_them(
        tiny_corpus, tmp_path, data_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.test_train_smoke import run_train

    manifests = _bad_corpus(tiny_corpus, tmp_path)
    run = tmp_path / "run"
    run_train(run, data_dir, "data=speech",
              *(f"data.manifests.{split}={path}" for split, path in manifests.items()),
              "data.max_duration=20", f"data.feature_cache={tmp_path / 'features'}",
              "data.max_batch_size=8", "trainer.max_epochs=1")
    report = json.loads((run / "data_report.json").read_text())
    reasons = " | ".join(issue["reason"] for issue in report["issues"])
    for expected in ("unreadable audio", "zero-length audio", "is silent", "empty transcript",
                     "max_duration", "duplicate id", "malformed JSON", "outside the vocabulary"):
        assert expected in reasons, expected
    assert report["counts"] == {"skipped": 10, "kept": 1}
    results = json.loads((run / "results.json").read_text())
    assert results["data_issues"] == report["counts"]
    assert results["steps"] == 3 and results["test_items"] == 7  # 24 good train items, batches of 8
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("data/skipped")] == [10]
