"""`python -m rnnseq.train experiment=asr` end to end on a tiny corpus (the real CLI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.callbacks import ATTENTION_TAG, SAMPLES_TAG
from rnnseq.tasks.speech_to_text import SpeechToText
from tests.conftest import REPO, corpus_overrides

TINY_MODEL = [
    "model.encoder.hidden_size=16", "model.encoder.num_layers=2", "model.encoder.conv_channels=4",
    "model.decoder.hidden_size=16", "model.decoder.embed_dim=8",
    "model.attention.attention_dim=8", "data.stats_utterances=10",
    # the recipe validates every N steps across epochs; tiny runs validate once per epoch
    "trainer.val_check_interval=1.0", "trainer.check_val_every_n_epoch=1",
]


def run_module(module: str, data_dir: Path, *args: str,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m <module> <args>`` from the repository root, killed after ``timeout``
    seconds; asserts it succeeded."""
    env = {**os.environ, "RNNSEQ_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", module, *args]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_train(run_dir: Path, data_dir: Path, *overrides: str, experiment: str = "asr",
              tiny: list[str] = TINY_MODEL, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m rnnseq.train experiment=<experiment>`` with a tiny model, into ``run_dir``."""
    return run_module("rnnseq.train", data_dir, f"experiment={experiment}", *tiny,
                      "data.num_workers=0", "threads=1", f"hydra.run.dir={run_dir}", *overrides,
                      timeout=timeout)


# `smoke_run` (tests/conftest.py): experiment=asr, this tiny model, fast_dev_run=2


def test_the_console_shows_no_known_harmless_third_party_notices(smoke_run):
    console = (smoke_run / "console.txt").read_text()
    assert "Epoch 0" in console or "test/wer" in console  # the run's own output is there
    for notice in ("litlogger", "`weights_only` was not set", "LeafSpec"):
        assert notice not in console, notice


def test_run_folder_has_config_checkpoints_results_and_report(smoke_run):
    assert (smoke_run / ".hydra" / "config.yaml").is_file()
    checkpoints = sorted(p.name for p in (smoke_run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and any(p.startswith("best-") for p in checkpoints)
    results = json.loads((smoke_run / "results.json").read_text())
    assert set(results["test"]) == {M.TEST_WER, M.TEST_CER}
    # the logged scores are corpus-level rates over the items written out (jiwer, computed anew)
    items = json.loads((smoke_run / "test_outputs.json").read_text())["items"]
    assert results["test_items"] == len(items) == 6
    references, hypotheses = [i["reference"] for i in items], [i["hypothesis"] for i in items]
    assert results["test"][M.TEST_CER] == pytest.approx(jiwer.cer(references, hypotheses), abs=1e-6)
    assert results["test"][M.TEST_WER] == pytest.approx(jiwer.wer(references, hypotheses), abs=1e-6)
    recipe = OmegaConf.load(smoke_run / ".hydra" / "config.yaml").task.decoding
    assert {k: results["decoding"][k] for k in ("beam_size", "ctc_weight")} == \
        {"beam_size": recipe.beam_size, "ctc_weight": recipe.ctc_weight} != \
        {"beam_size": 4, "ctc_weight": 0.0}  # the recipe's own, not the task's defaults
    assert results["wall_seconds"] > 0 and results["best_checkpoint"]
    assert M.VAL_WER in results["best_val"]
    # the extra test splits of the embedded corpus are scored too, each under its own name
    for split in ("test_text", "test_voices"):
        items = json.loads((smoke_run / f"test_outputs_{split}.json").read_text())["items"]
        assert len(items) == 6
        references, hypotheses = [i["reference"] for i in items], [i["hypothesis"] for i in items]
        assert results[split] == pytest.approx({f"{split}/wer": jiwer.wer(references, hypotheses),
                                                f"{split}/cer": jiwer.cer(references, hypotheses)})
    report = json.loads((smoke_run / "data_report.json").read_text())
    assert report["counts"] == {}


def test_tensorboard_has_scalars_attention_images_text_and_hparams(smoke_run):
    events = EventAccumulator(str(smoke_run / "tensorboard"),
                              size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for name in (M.TRAIN_LOSS, M.GRAD_NORM, M.LEARNING_RATE, M.VAL_LOSS, M.VAL_WER, M.VAL_CER,
                 M.TEST_WER, M.TEST_CER, "test_text/wer", "test_voices/cer"):
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


def test_checkpoint_records_its_task_class_and_older_ones_are_upgraded(smoke_run, tmp_path):
    from rnnseq.checkpoints import load_checkpoint
    from rnnseq.runs import task_class_for
    from tests.helpers import OwnSpeechTask

    path = smoke_run / "checkpoints" / "last.ckpt"
    contents = load_checkpoint(path)
    assert contents["rnnseq"]["task"] == "rnnseq.tasks.speech_to_text.SpeechToText"
    assert task_class_for(path) is SpeechToText
    own = tmp_path / "own.ckpt"  # a task class of the user's own package needs no registry
    torch.save({**contents, "rnnseq": {**contents["rnnseq"], "task": "tests.helpers.OwnSpeechTask"}},
               own)
    assert task_class_for(own) is OwnSpeechTask
    old = tmp_path / "old.ckpt"  # written before checkpoints said: refused, then upgraded
    hparams = {k: v for k, v in contents["hyper_parameters"].items() if k != "normalizer"}
    torch.save({**{k: v for k, v in contents.items() if k != "rnnseq"},
                "hyper_parameters": hparams}, old)
    with pytest.raises(ValueError, match=r"format 1.*python -m rnnseq.upgrade"):
        task_class_for(old)
    from rnnseq.upgrade import upgrade_checkpoint

    assert upgrade_checkpoint(old, backup=False)
    assert task_class_for(old) is SpeechToText  # told by its hyper-parameters
    assert load_checkpoint(old)["hyper_parameters"]["normalizer"] == "none"  # as it was scored
    gone = tmp_path / "gone.ckpt"
    torch.save({**contents, "rnnseq": {**contents["rnnseq"], "task": "nowhere.Task"}}, gone)
    with pytest.raises(ValueError, match="nowhere.Task, which cannot be imported"):
        task_class_for(gone)
    stranger = tmp_path / "stranger.ckpt"  # importable, but no task: refused
    torch.save({**contents, "rnnseq": {**contents["rnnseq"], "task": "collections.OrderedDict"}},
               stranger)
    with pytest.raises(ValueError, match="not an rnnseq task class"):
        task_class_for(stranger)


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
    # greedy decoding by hand: from <eos>, the decoder's best token at every step until <eos>,
    # which is the only way on after the most tokens the decoding settings allow
    from rnnseq.decoding.search import max_decode_lengths

    eos, decoder = model.tokenizer.eos_id, model.model.decoder
    with torch.no_grad():
        enc = model.encode(batch)
        limit = int(max_decode_lengths(enc.lengths, model.hparams.decoding.get(
            "max_length_ratio", 1.0))[0])
        state = decoder.init_state(enc.memory, enc.mask)
        token, tokens, weights = torch.tensor([eos]), [], []
        for t in range(limit + 1):
            logits, state, step_weights = decoder.step(token, state, enc.memory, enc.mask)
            weights.append(step_weights[0])
            token = logits.argmax(-1)
            if t == limit or int(token) == eos:
                break
            tokens.append(int(token))
    assert tokens  # something to lose: the untrained decoder says something before <eos>
    assert texts == [model.tokenizer.decode(tokens)]
    assert attention.shape == (1, len(weights), enc.memory.shape[1])
    torch.testing.assert_close(attention[0], torch.stack(weights))
    torch.testing.assert_close(attention.sum(-1), torch.ones(1, len(weights)))


def test_monitored_metrics_are_logged(smoke_run):
    from omegaconf import OmegaConf

    import rnnseq.config  # noqa: F401  (registers ${metric:...})

    cfg = OmegaConf.load(smoke_run / ".hydra" / "config.yaml")
    events = EventAccumulator(str(smoke_run / "tensorboard"))
    events.Reload()
    for callback in cfg.callbacks.values():
        if callback is not None and "monitor" in callback:  # early stopping is off in the recipe
            assert callback.monitor == SpeechToText.MONITOR
    assert set(SpeechToText.VALIDATION_LOGGED) <= set(events.Tags()["scalars"])


def test_debug_overfit_drives_the_training_loss_down(tmp_path, data_dir, tiny_corpus):
    run_dir = tmp_path / "overfit"
    run_train(run_dir, data_dir, *corpus_overrides(), "debug=overfit", "trainer.max_epochs=60",
              "task.spec_augment=null", "task.label_smoothing=0", "task.optimizer.lr=1e-2",
              "test=false", "trainer.check_val_every_n_epoch=10",  # as debug=overfit has it
              "trainer.precision=32-true")  # bf16 does not pay at these sizes
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars(M.TRAIN_LOSS)]
    assert len(losses) >= 50 and losses[-1] < 0.8 * losses[0]


def test_transcribe_prints_one_line_per_file_at_any_sample_rate(smoke_run, tiny_corpus, tmp_path,
                                                                capsys):
    import soundfile

    from rnnseq.data.manifest import DataReport, read_manifest
    from rnnseq.transcribe import main

    utts = read_manifest(tiny_corpus["test"], DataReport())[:2]
    wave, rate = soundfile.read(utts[1].audio_path, dtype="float32")
    resampled = tmp_path / "eight_khz.flac"
    soundfile.write(resampled, wave[::2], rate // 2)  # crude, but a different rate and format
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEnot really audio")
    files = [str(utts[0].audio_path), str(resampled), str(broken)]
    status = main([f"run={smoke_run}", *files, "decoding.beam_size=2"])
    out = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.out.splitlines()] == files[:2]
    assert status == 1 and "broken.wav" in out.err
    # CTC greedy and a setting that cannot apply (no language model to weigh)
    assert main([f"run={smoke_run}", files[0], "decoding.mode=ctc_greedy"]) == 0
    assert main([f"run={smoke_run}", files[0], "decoding.lm_weight=0.3"]) == 2
    assert "decoding.lm_weight=0.3 has no language model" in capsys.readouterr().err


def test_evaluate_scores_any_manifest_with_errors_and_real_time_factor(smoke_run, tiny_corpus,
                                                                       tmp_path, capsys):
    from rnnseq.evaluate import main
    from rnnseq.evaluation import evaluate

    checkpoint = smoke_run / "checkpoints" / "last.ckpt"
    assert main([f"run={checkpoint}", "--manifest", tiny_corpus["valid"], "decoding.beam_size=1"]) == 0
    out = capsys.readouterr().out
    assert "valid/wer" in out and "real-time factor" in out
    report = json.loads(Path(out.split("written to ")[-1].strip()).read_text())
    assert report["items_scored"] == 6 and report["real_time_factor"] > 0
    assert report["decoding"]["beam_size"] == 1 and report["audio_seconds"] > 0
    item = report["items"][0]
    errors = item["errors"]
    assert errors["words"] == len(item["reference"].split())
    assert errors["wer"] == (errors["substitutions"] + errors["deletions"]
                             + errors["insertions"]) / errors["words"]

    # The same audio with LibriSpeech-style references (upper case, punctuation), one missing
    # file and one broken line: references pass through the checkpoint's normaliser, so the
    # scores are the same, and what could not be scored is listed with its reason.
    lines = [json.loads(x) for x in Path(tiny_corpus["valid"]).read_text().splitlines()]
    folder = Path(tiny_corpus["valid"]).parent
    shouted = [{**x, "audio_filepath": str(folder / x["audio_filepath"]),
                "text": x["text"].upper().replace(" ", ", ", 1) + "!"} for x in lines]
    missing = {**shouted[0], "id": "lost", "audio_filepath": str(tmp_path / "lost.wav")}
    manifest = tmp_path / "shouted.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in [*shouted, missing]) + "{oops\n")
    loud = evaluate(checkpoint, {"beam_size": 1}, manifest=manifest)
    assert loud["metrics"]["shouted/wer"] == report["metrics"]["valid/wer"]
    assert [i["reference"] for i in loud["items"]] == [i["reference"] for i in report["items"]]
    assert {i["raw_reference"] for i in loud["items"]} == {x["text"] for x in shouted}
    reasons = {i["id"]: i["reason"] for i in loud["data_issues"]}
    assert "was not found" in reasons["lost"] and loud["items_skipped"] == 2
    assert any("malformed JSON" in i["reason"] for i in loud["data_issues"])


def test_evaluate_reads_the_runs_batching_and_decodes_with_the_ctc_head_alone(smoke_run):
    import itertools

    from rnnseq.evaluation import evaluate
    from rnnseq.runs import manifest_batching, run_data_config

    run_config = run_data_config(smoke_run, [])
    assert manifest_batching(run_config) == {"max_frames": run_config.data.max_frames,
                                             "max_batch_size": run_config.data.max_batch_size}
    assert manifest_batching(run_data_config(smoke_run, ["data.max_batch_size=3"]))[
        "max_batch_size"] == 3
    record = evaluate(smoke_run, {"mode": "ctc_greedy"})
    assert record["decoding"]["mode"] == "ctc_greedy"
    # the best path computed here in the plainest way: argmax per frame, runs merged, blanks out
    task = SpeechToText.load_from_checkpoint(record["checkpoint"], map_location="cpu",
                                             weights_only=True).eval()
    from rnnseq.runs import run_data_loader

    expected = {}
    with torch.no_grad():
        for batch in run_data_loader(smoke_run, "test", [])[0]:
            enc = task.encode(batch)
            best = task.model.ctc_log_probs(enc.memory).argmax(-1)
            for utt, row, n in zip(batch.ids, best.tolist(), enc.lengths.tolist()):
                symbols = [k for k, _ in itertools.groupby(row[:n]) if k != task.tokenizer.blank_id]
                expected[utt] = task.tokenizer.decode(symbols)
    assert {i["id"]: i["hypothesis"] for i in record["items"]} == expected


def test_evaluate_writes_nbest_lists_with_an_oracle_and_runs_ctc_prefix_beam_search(smoke_run):
    from rnnseq.evaluate import parse_args
    from rnnseq.evaluation import evaluate, item_errors

    assert parse_args([str(smoke_run), "--nbest", "3"]).decoding == {"nbest": 3}
    record = evaluate(smoke_run, {"nbest": 3, "ctc_weight": 0.3, "beam_size": 3})
    items = record["items"]
    assert all(1 <= len(i["nbest"]) <= 3 and i["nbest"][0]["hypothesis"] == i["hypothesis"]
               for i in items)
    # the oracle by hand: per item, the fewest word errors among its n-best
    errors = sum(min(sum(item_errors(i["reference"], h["hypothesis"])[k]
                         for k in ("substitutions", "deletions", "insertions")) for h in i["nbest"])
                 for i in items)
    words = sum(item_errors(i["reference"], i["hypothesis"])["words"] for i in items)
    assert record["metrics"]["test/oracle_wer_3best"] == pytest.approx(errors / words)
    assert record["metrics"]["test/oracle_wer_3best"] <= record["metrics"]["test/wer"] + 1e-9
    ctc_beam = evaluate(smoke_run, {"mode": "ctc_beam", "beam_size": 2})
    assert ctc_beam["decoding"]["mode"] == "ctc_beam" and len(ctc_beam["items"]) == len(items)
    with pytest.raises(ValueError, match="decoding.coverage_weight=0.5 does not apply to "
                                         "decoding.mode=ctc_beam"):
        evaluate(smoke_run, {"mode": "ctc_beam", "coverage_weight": 0.5})
    with pytest.raises(ValueError, match="decoding.pre_beam=4 limits CTC prefix scoring, which "
                                         "is off"):
        evaluate(smoke_run, {"pre_beam": 4, "ctc_weight": 0.0})
    with pytest.raises(ValueError, match="decoding.length_bonus is used by beam search only"):
        evaluate(smoke_run, {"mode": "greedy", "length_bonus": 1.0, "length_penalty": 0.0})
    with pytest.raises(ValueError, match="decoding.length_bonus=1.0 changes nothing with "
                                         "decoding.length_penalty=1"):
        evaluate(smoke_run, {"length_bonus": 1.0})


def test_a_decoding_sweep_encodes_once_and_scores_as_evaluate_does(smoke_run, monkeypatch):
    from rnnseq.evaluate import main, parse_sweep
    from rnnseq.evaluation import evaluate, sweep_decoding

    calls = []
    encode = SpeechToText.encode
    monkeypatch.setattr(SpeechToText, "encode", lambda self, batch: calls.append(1) or encode(
        self, batch))
    grid = parse_sweep(["decoding.ctc_weight=0,0.3", "decoding.beam_size=2"])
    assert grid == {"ctc_weight": [0, 0.3], "beam_size": [2]}
    record = sweep_decoding(smoke_run, grid, split="valid")
    batches = len(calls)
    assert [r["settings"] for r in record["results"]] == [{"ctc_weight": 0, "beam_size": 2},
                                                          {"ctc_weight": 0.3, "beam_size": 2}]
    for row in record["results"]:
        alone = evaluate(smoke_run, row["settings"], split="valid")
        assert row["metrics"] == pytest.approx(alone["metrics"])
    assert len(calls) == 3 * batches  # the sweep encoded once; each evaluate once more
    assert main([str(smoke_run), "--split", "valid", "--sweep", "decoding.mode=greedy"]) == 2


def test_evaluate_scores_an_extra_test_split_as_the_run_did_and_names_unknown_ones(smoke_run):
    from rnnseq.evaluation import evaluate

    record = evaluate(smoke_run, {})
    voices = evaluate(smoke_run, {}, split="test_voices")
    assert set(voices["metrics"]) == {"test_voices/wer", "test_voices/cer"}
    in_run = json.loads((smoke_run / "results.json").read_text())["test_voices"]
    assert voices["metrics"] == pytest.approx(in_run)
    assert {i["id"] for i in voices["items"]}.isdisjoint({i["id"] for i in record["items"]})
    with pytest.raises(ValueError, match="no such split; choose from valid, test, test_text"):
        evaluate(smoke_run, {}, split="test_robots")
