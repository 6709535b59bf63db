"""Spoken-command classification: labels, scores, pooling, the embedded corpus, the Speech
Commands folder layout, and `experiment=commands` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.data.builders.commands import EspeakCommands, SpeechCommandsFolder
from rnnseq.data.tokenizer import LabelTokenizer, tokenizer_from_state
from rnnseq.evaluation import evaluate
from rnnseq.models.classifier import SequenceClassifier
from rnnseq.models.encoder import RecurrentEncoder
from tests.test_train_smoke import run_train

FEW_WORDS = ["+data.corpus.words=[yes,no,up,down]", "data.corpus.per_word={train:4,valid:2,test:2}",
             "data.corpus.name=commands-tiny"]
TINY_CLASSIFIER = ["model.encoder.hidden_size=16", "model.encoder.num_layers=1",
                   "model.encoder.conv_channels=4", "data.stats_utterances=10"]


def test_labels_are_whole_transcripts_and_unknown_ones_become_unk():
    labels = LabelTokenizer.from_texts(["no", "yes", "no", "turn left"])
    assert labels.labels == ["no", "turn left", "yes"]
    assert labels.encode("turn left") == [labels.symbols.index("turn left")]
    assert labels.encode("maybe") == [labels.unk_id]
    assert labels.unknown_symbols("maybe") == {"maybe"} and not labels.unknown_symbols("yes")
    assert tokenizer_from_state(labels.state()) == labels


def test_accuracy_and_macro_f1_by_hand():
    # class 0: P 1/2 R 1/2 F1 .5; class 1: P 2/3 R 1 F1 .8; class 2: P 1 R 1/2 F1 2/3;
    # classes 3 and 4 occur nowhere and do not count.
    scores = M.classification_scores([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], num_classes=5)
    assert scores.accuracy == pytest.approx(4 / 6)
    assert scores.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert scores.confusion[0].tolist() == [1, 1, 0, 0, 0]  # true 0: once right, once as 1
    assert scores.confusion[2].tolist() == [1, 0, 1, 0, 0]
    perfect = M.classification_scores([3, 1, 3], [3, 1, 3], num_classes=4)
    assert (perfect.accuracy, perfect.macro_f1) == (1.0, 1.0)


@pytest.mark.parametrize("pooling", ["mean", "max", "mean+max"])
def test_pooling_ignores_padding(pooling):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(input_dim=6, hidden_size=5, num_layers=1, subsampling="none",
                               dropout=0.0)
    model = SequenceClassifier(encoder, num_classes=3, pooling=pooling, dropout=0.0).eval()
    short, long = torch.randn(1, 4, 6), torch.randn(1, 7, 6)
    padded = torch.zeros(2, 7, 6)
    padded[0, :4], padded[1] = short[0], long[0]
    together = model(padded, torch.tensor([4, 7]))
    torch.testing.assert_close(together[0], model(short, torch.tensor([4]))[0])
    torch.testing.assert_close(together[1], model(long, torch.tensor([7]))[0])


def test_unknown_pooling_fails_naming_the_choices():
    encoder = RecurrentEncoder(input_dim=6, hidden_size=5, num_layers=1, subsampling="none")
    with pytest.raises(ValueError, match=r"unknown model.pooling 'last'.*mean\+max"):
        SequenceClassifier(encoder, num_classes=3, pooling="last")


def test_embedded_commands_test_split_uses_unheard_voices(data_dir):
    corpus = EspeakCommands(cache_dir=str(data_dir), name="commands-tiny", num_workers=2,
                            words=["yes", "no", "up", "down"],
                            per_word={"train": 4, "valid": 2, "test": 2})
    manifests = corpus.build()
    rows = {split: [json.loads(x) for x in Path(path).read_text().splitlines()]
            for split, path in manifests.items()}
    assert [len(rows[s]) for s in ("train", "valid", "test")] == [16, 8, 8]
    assert {r["text"] for r in rows["test"]} == {"yes", "no", "up", "down"}
    assert {r["voice"] for r in rows["train"]} <= set(corpus.settings.voices)
    assert {r["voice"] for r in rows["valid"]} <= set(corpus.settings.valid_voices)
    assert {r["voice"] for r in rows["test"]} <= set(corpus.settings.test_voices)
    assert all(0.1 < r["duration"] < 2.0 for split in rows.values() for r in split)
    with pytest.raises(ValueError, match="in both"):
        EspeakCommands(cache_dir=str(data_dir), voices=["en-us"], valid_voices=["en"],
                       test_voices=["en-us"])


def _speech_commands_folder(root: Path) -> Path:
    """A tiny folder in the SPEECHCOMMANDS layout: three words, three speakers, a noise folder."""
    rate = 16000
    for k, word in enumerate(["no", "up", "yes"]):
        (root / word).mkdir(parents=True)
        for speaker in ("aaaa1111", "bbbb2222", "cccc3333"):
            t = np.arange(rate // 2) / rate
            tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * k) * t).astype(np.float32)
            soundfile.write(root / word / f"{speaker}_nohash_0.wav", tone, rate)
    (root / "_background_noise_").mkdir()
    soundfile.write(root / "_background_noise_" / "white.wav", np.zeros(rate, np.float32), rate)
    (root / "validation_list.txt").write_text("no/bbbb2222_nohash_0.wav\nup/bbbb2222_nohash_0.wav\n"
                                              "yes/bbbb2222_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/cccc3333_nohash_0.wav\nup/cccc3333_nohash_0.wav\n"
                                           "yes/cccc3333_nohash_0.wav\n")
    return root


def test_speech_commands_folder_follows_the_lists(tmp_path):
    root = _speech_commands_folder(tmp_path / "speech_commands_v0.02")
    manifests = SpeechCommandsFolder(str(root)).build()
    rows = {split: [json.loads(x) for x in Path(path).read_text().splitlines()]
            for split, path in manifests.items()}
    assert sorted(r["id"] for r in rows["test"]) == ["no/cccc3333_nohash_0", "up/cccc3333_nohash_0",
                                                     "yes/cccc3333_nohash_0"]
    assert all("aaaa1111" in r["id"] for r in rows["train"]) and len(rows["train"]) == 3
    assert {r["text"] for r in rows["valid"]} == {"no", "up", "yes"}
    assert not any("_background_noise_" in r["audio_filepath"] for s in rows.values() for r in s)
    assert rows["train"][0]["duration"] == pytest.approx(0.5)
    (root / "validation_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="validation_list.txt"):
        SpeechCommandsFolder(str(root)).build()


def test_commands_experiment_runs_end_to_end_with_a_confusion_matrix(tmp_path, data_dir):
    run = tmp_path / "run"
    run_train(run, data_dir, *FEW_WORDS, "trainer.fast_dev_run=2", "data.max_batch_size=4",
              experiment="commands", tiny=TINY_CLASSIFIER)
    results = json.loads((run / "results.json").read_text())
    assert set(results["test"]) == {M.TEST_ACCURACY, M.TEST_F1}
    assert 0.0 <= results["test"][M.TEST_ACCURACY] <= 1.0
    outputs = json.loads((run / "test_outputs.json").read_text())["items"]
    assert {item["reference"] for item in outputs} <= {"yes", "no", "up", "down"}
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "val/confusion" in events.Tags()["images"] and "test/confusion" in events.Tags()["images"]
    record = evaluate(run, {})  # python -m rnnseq.evaluate run=<run>
    assert set(record["metrics"]) == {M.TEST_ACCURACY, M.TEST_F1}
    assert record["items_scored"] == len(outputs)


def test_speech_commands_folder_trains_through_the_cli(tmp_path, data_dir):
    root = _speech_commands_folder(tmp_path / "sc")
    run = tmp_path / "run"
    run_train(run, data_dir, "data=speech_commands", f"data.corpus.root={root}",
              f"data.feature_cache={tmp_path / 'features'}", "trainer.fast_dev_run=1",
              experiment="commands", tiny=TINY_CLASSIFIER)
    results = json.loads((run / "results.json").read_text())
    assert results["test_items"] == 3


@pytest.mark.slow
def test_commands_are_learnt_and_recognised_in_unheard_voices(tmp_path, data_dir):
    """Ten words, 30 training utterances each; the test voices never occur in training."""
    run = tmp_path / "learn"
    words = "[yes,no,up,down,left,right,on,off,stop,go]"
    run_train(run, data_dir, f"+data.corpus.words={words}", "data.corpus.name=commands-ten",
              "data.corpus.per_word={train:30,valid:3,test:6}", "trainer.max_epochs=15",
              experiment="commands", tiny=[])
    accuracy = json.loads((run / "results.json").read_text())["test"][M.TEST_ACCURACY]
    assert accuracy >= 0.9
