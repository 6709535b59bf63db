"""experiment=asr_librispeech: it composes with ESPnet's sizes, and a few steps of it as it trains
(2-process DDP, bf16-mixed) on a fixture in LibriSpeech's layout train, test and report what the
reader left out."""

from __future__ import annotations

import json

from tests.conftest import compose_config
from tests.test_corpus_readers import librispeech_fixture, tone
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


def test_three_ddp_steps_of_the_recipe_on_a_librispeech_layout(tmp_path, data_dir):
    """The recipe as it trains (2-process gloo DDP, bf16-mixed, a step budget, speed perturbation
    on the fly), tiny, on a fixture in LibriSpeech's layout. dev-clean's 2 utterances fit one batch
    of ``data.max_frames=210`` padded frames (101 + 51), so one rank validates and tests an empty
    batch; every training utterance (1 s, 112 frames at speed 0.9) is a batch alone, 5 per rank,
    so the first validation (at the end of the epoch, as tiny runs have it) would come after the
    budget of 3 steps, and early stopping must wait for it."""
    root = librispeech_fixture(tmp_path / "LibriSpeech")
    for subset in ("test-clean", "test-other"):
        (root / subset).symlink_to(root / "dev-clean")
    chapter = root / "train-clean-5" / "19" / "227"  # 8 more training utterances
    for n in range(8):
        tone(chapter / f"19-227-{n:04d}.flac", 1.0, frequency=200.0 + 20 * n)
    (chapter / "19-227.trans.txt").write_text("".join(f"19-227-{n:04d} SAY IT AGAIN\n"
                                                      for n in range(8)))
    run = tmp_path / "run"
    tiny = ["model.encoder.hidden_size=16", "model.encoder.num_layers=2", "model.encoder.conv_channels=2",
            "model.encoder.cell.proj_size=8", "model.decoder.hidden_size=16", "model.decoder.embed_dim=8",
            "model.attention.attention_dim=8", "model.attention.conv_kernel=5", "data.stats_utterances=4",
            "data.tokenizer.vocab_size=30", "task.decoding.beam_size=2", "data.max_frames=210",
            "trainer.val_check_interval=1.0", "trainer.check_val_every_n_epoch=1"]
    run_train(run, data_dir, "trainer=ddp_cpu", "trainer.precision=bf16-mixed",
              "trainer.max_epochs=null", "trainer.max_steps=3", f"data.corpus.root={root}",
              "data.corpus.splits.train=[train-clean-5]", f"data.corpus.out_dir={tmp_path / 'manifests'}",
              experiment="asr_librispeech", tiny=tiny, timeout=300)
    results = json.loads((run / "results.json").read_text())
    assert (results["steps"], results["precision"]) == (3, "bf16-mixed")
    assert results["best_val"] == {}  # the budget ended before the first validation
    assert {"test/wer", "test/cer"} <= set(results["test"])
    assert {"test_other/wer", "test_other/cer"} <= set(results["test_other"])
    # both ranks' halves of the test split, upper-case transcripts scored as the normaliser made them
    references = {i["reference"] for i in json.loads((run / "test_outputs.json").read_text())["items"]}
    assert results["test_items"] == 2
    assert references == {"go do you hear", "but in less than five minutes the staircase groaned"}
    report = json.loads((run / "data_report.json").read_text())
    reasons = [i["reason"] for i in report["issues"]]
    assert any(r.startswith("no line for 84-121123-0003") for r in reasons), reasons
