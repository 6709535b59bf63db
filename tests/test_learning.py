"""Learning tests with real thresholds (slow: run with `make test-all`)."""

import json

import pytest

from rnnseq import metrics as M
from rnnseq.data.corpus.speech_corpus import EspeakSpeechCorpus
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
        "trainer.max_epochs=100", "trainer.check_val_every_n_epoch=20",
        "callbacks.early_stopping.patience=100", "threads=2",
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"][M.TEST_CER] < 0.10, results
