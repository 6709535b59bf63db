"""experiment=asr_librispeech: it composes with ESPnet's sizes, and a fast_dev_run on a fixture
in LibriSpeech's layout trains, tests and reports what the reader left out."""

from __future__ import annotations

import json

from tests.conftest import compose_config
from tests.test_corpus_readers import librispeech_fixture
from tests.test_train_smoke import run_train


def test_the_recipe_has_espnets_sizes(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_config(["experiment=asr_librispeech", "data.corpus.root=/nowhere"], tmp_path)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.augment.speed.p == 1.0 and cfg.data.tokenizer.vocab_size == 5000
    encoder = instantiate(cfg.model.encoder)(input_dim=80)
    assert encoder.output_dim == 1024 and len(encoder.layers) == 5
    assert type(encoder.front).__name__ == "VGGSubsampling"
    assert cfg.task.average_checkpoints == 10 <= cfg.callbacks.model_checkpoint.save_top_k


def test_fast_dev_run_on_a_librispeech_layout(tmp_path, data_dir):
    root = librispeech_fixture(tmp_path / "LibriSpeech")
    for subset in ("test-clean", "test-other"):
        (root / subset).symlink_to(root / "dev-clean")
    run = tmp_path / "run"
    tiny = ["model.encoder.hidden_size=16", "model.encoder.num_layers=2", "model.encoder.conv_channels=2",
            "model.encoder.cell.proj_size=8", "model.decoder.hidden_size=16", "model.decoder.embed_dim=8",
            "model.attention.attention_dim=8", "model.attention.conv_kernel=5", "data.stats_utterances=4",
            "data.tokenizer.vocab_size=30", "task.decoding.beam_size=2"]
    run_train(run, data_dir, "trainer=cpu", f"data.corpus.root={root}",
              "data.corpus.splits.train=[train-clean-5]", f"data.corpus.out_dir={tmp_path / 'manifests'}",
              "trainer.fast_dev_run=1", "task.average_checkpoints=0", experiment="asr_librispeech",
              tiny=tiny)
    results = json.loads((run / "results.json").read_text())
    assert "test/wer" in results["test"] and "test_other/wer" in results["test_other"]
    # upper-case LibriSpeech transcripts are scored as the normaliser made them
    references = {i["reference"] for i in json.loads((run / "test_outputs.json").read_text())["items"]}
    assert references == {"go do you hear", "but in less than five minutes the staircase groaned"}
    report = json.loads((run / "data_report.json").read_text())
    reasons = [i["reason"] for i in report["issues"]]
    assert any(r.startswith("no line for 84-121123-0003") for r in reasons), reasons
