"""`python -m rnnseq.train experiment=asr` end to end on a tiny corpus (the real CLI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.callbacks import ATTENTION_TAG, SAMPLES_TAG
from rnnseq.tasks.speech_to_text import SpeechToText
from tests.conftest import REPO, corpus_overrides

TINY_MODEL = [
    "model.encoder.hidden_size=16", "model.encoder.num_layers=2", "model.encoder.conv_channels=4",
    "model.decoder.hidden_size=16", "model.decoder.embed_dim=8",
    "model.attention.attention_dim=8", "data.stats_utterances=10",
]


def run_module(module: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs ``python -m <module> <args>`` from the repository root; asserts it succeeded."""
    env = {**os.environ, "RNNSEQ_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", module, *args]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_train(run_dir: Path, data_dir: Path, *overrides: str, experiment: str = "asr",
              tiny: list[str] = TINY_MODEL) -> subprocess.CompletedProcess:
    """``python -m rnnseq.train experiment=<experiment>`` with a tiny model, into ``run_dir``."""
    return run_module("rnnseq.train", data_dir, f"experiment={experiment}", *tiny,
                      "data.num_workers=0", "threads=1", f"hydra.run.dir={run_dir}", *overrides)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir, tiny_corpus):
    run_dir = tmp_path_factory.mktemp("runs") / "asr-smoke"
    run_train(run_dir, data_dir, *corpus_overrides(), "trainer.fast_dev_run=2")
    return run_dir


def test_run_folder_has_config_checkpoints_results_and_report(smoke_run):
    assert (smoke_run / ".hydra" / "config.yaml").is_file()
    checkpoints = sorted(p.name for p in (smoke_run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and any(p.startswith("best-") for p in checkpoints)
    results = json.loads((smoke_run / "results.json").read_text())
    assert set(results["test"]) == {M.TEST_WER, M.TEST_CER}
    assert 0 <= results["test"][M.TEST_CER] and results["test_items"] > 0
    assert results["decoding"]["beam_size"] == 4
    assert results["wall_seconds"] > 0 and results["best_checkpoint"]
    assert M.VAL_WER in results["best_val"]
    report = json.loads((smoke_run / "data_report.json").read_text())
    assert report["counts"] == {}


def test_tensorboard_has_scalars_attention_images_text_and_hparams(smoke_run):
    events = EventAccumulator(str(smoke_run / "tensorboard"),
                              size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for name in (M.TRAIN_LOSS, M.GRAD_NORM, M.LEARNING_RATE, M.VAL_LOSS, M.VAL_WER, M.VAL_CER,
                 M.TEST_WER, M.TEST_CER):
        assert name in tags["scalars"], name
    attention = [t for t in tags["images"] if t.startswith(ATTENTION_TAG + "/")]
    assert len(attention) == 3
    assert any(t.startswith(SAMPLES_TAG) for t in tags["tensors"])
    plugins = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins
    experiment = plugins["_hparams_/experiment"]
    for name in (M.VAL_WER, M.TEST_WER):
        assert name.encode() in experiment  # the hparams view lists the real metrics
    assert b"hp_metric" not in experiment


def test_checkpoint_loads_without_the_corpus_and_transcribes(smoke_run, tiny_corpus):
    path = smoke_run / "checkpoints" / "last.ckpt"
    model = SpeechToText.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval()
    assert model.tokenizer.symbols[:3] == ["<blank>", "<eos>", "<unk>"]
    assert model.normalizer.std.ne(1).any()  # training statistics travel with the weights
    from rnnseq.data.audio import FeatureConfig, LogMel, load_audio
    from rnnseq.data.batching import Example, collate_examples
    from rnnseq.data.manifest import DataReport, read_manifest

    config = FeatureConfig(**model.hparams.features)
    utt = read_manifest(tiny_corpus["test"], DataReport())[0]
    feats = LogMel(config)(load_audio(utt.audio_path, config.sample_rate))
    batch = collate_examples([Example(utt.id, feats, torch.tensor([3]), utt.text)])
    texts, attention = model.greedy_decode(batch, return_attention=True)
    assert isinstance(texts[0], str) and attention.shape[0] == 1


def test_monitored_metrics_are_logged(smoke_run):
    from omegaconf import OmegaConf

    import rnnseq.config  # noqa: F401  (registers ${metric:...})

    cfg = OmegaConf.load(smoke_run / ".hydra" / "config.yaml")
    events = EventAccumulator(str(smoke_run / "tensorboard"))
    events.Reload()
    for callback in cfg.callbacks.values():
        if "monitor" in callback:
            assert callback.monitor in events.Tags()["scalars"]


def test_debug_overfit_drives_the_training_loss_down(tmp_path, data_dir, tiny_corpus):
    run_dir = tmp_path / "overfit"
    run_train(run_dir, data_dir, *corpus_overrides(), "debug=overfit", "trainer.max_epochs=60",
              "task.spec_augment=null", "task.label_smoothing=0", "task.optimizer.lr=1e-2",
              "test=false")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars(M.TRAIN_LOSS)]
    assert len(losses) >= 50 and losses[-1] < 0.8 * losses[0]


def test_transcribe_prints_one_line_per_file_at_any_sample_rate(smoke_run, tiny_corpus, tmp_path,
                                                                data_dir):
    import soundfile

    from rnnseq.data.manifest import DataReport, read_manifest

    utts = read_manifest(tiny_corpus["test"], DataReport())[:2]
    wave, rate = soundfile.read(utts[1].audio_path, dtype="float32")
    resampled = tmp_path / "eight_khz.flac"
    soundfile.write(resampled, wave[::2], rate // 2)  # crude, but a different rate and format
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEnot really audio")
    files = [str(utts[0].audio_path), str(resampled), str(broken)]
    env = {**os.environ, "RNNSEQ_DATA_DIR": str(data_dir)}
    result = subprocess.run([sys.executable, "-m", "rnnseq.transcribe", f"run={smoke_run}",
                             *files, "decoding.beam_size=2"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == files[:2]
    assert result.returncode == 1 and "broken.wav" in result.stderr


def test_evaluate_scores_any_manifest_with_errors_and_real_time_factor(smoke_run, tiny_corpus,
                                                                       data_dir):
    checkpoint = smoke_run / "checkpoints" / "last.ckpt"
    out = run_module("rnnseq.evaluate", data_dir, f"run={checkpoint}", "--manifest",
                     tiny_corpus["valid"], "decoding.beam_size=1").stdout
    assert "valid/wer" in out and "real-time factor" in out
    report = json.loads(next((smoke_run / "evaluations").glob("valid-*.json")).read_text())
    assert report["items_scored"] == 6 and report["real_time_factor"] > 0
    assert report["decoding"]["beam_size"] == 1 and report["audio_seconds"] > 0
    item = report["items"][0]
    errors = item["errors"]
    assert errors["words"] == len(item["reference"].split())
    assert errors["wer"] == (errors["substitutions"] + errors["deletions"]
                             + errors["insertions"]) / errors["words"]
