"""`experiment=textgen`, `experiment=g2p` and `experiment=asr_lm` end to end through the real CLIs
(a few batches each), then `rnnseq.generate` and `rnnseq.evaluate` on their run folders."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.callbacks import GENERATED_TAG
from tests.test_train_smoke import run_module, run_train

TINY_LM = ["model.lm.embed_dim=16", "model.lm.hidden_size=24"]
TINY_G2P = ["model.encoder.hidden_size=16", "model.decoder.hidden_size=16",
            "model.decoder.embed_dim=8", "model.attention.attention_dim=8",
            "task.source_embed_dim=8"]


@pytest.fixture(scope="module")
def textgen_run(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("runs") / "textgen"
    run_train(run_dir, data_dir, "trainer.fast_dev_run=3", "data.batch_size=8", "data.bptt=16",
              experiment="textgen", tiny=TINY_LM)
    return run_dir


def test_textgen_reports_loss_perplexity_and_bits_per_char(textgen_run):
    results = json.loads((textgen_run / "results.json").read_text())
    assert set(results["test"]) == {M.TEST_LOSS, M.TEST_PPL, M.TEST_BPC}
    test = results["test"]
    assert test[M.TEST_PPL] == pytest.approx(2.718281828 ** test[M.TEST_LOSS], rel=1e-4)
    assert M.VAL_LOSS in results["best_val"]
    events = EventAccumulator(str(textgen_run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert {M.TRAIN_LOSS, M.VAL_LOSS, M.VAL_PPL, M.VAL_BPC} <= set(events.Tags()["scalars"])
    assert any(t.startswith(GENERATED_TAG) for t in events.Tags()["tensors"])


def test_generate_prints_the_prompt_and_its_continuation(textgen_run, data_dir):
    args = [str(textgen_run), "--prompt", "ROMEO.", "--length", "40", "--temperature", "0.8",
            "--top-k", "10", "--top-p", "0.9", "--seed", "3"]
    first = run_module("rnnseq.generate", data_dir, *args).stdout
    second = run_module("rnnseq.generate", data_dir, *args).stdout
    assert first.startswith("ROMEO.") and len(first) > len("ROMEO.") and first == second


def test_g2p_runs_and_evaluate_rescores_with_other_decoding(tmp_path, data_dir):
    run_dir = tmp_path / "g2p"
    run_train(run_dir, data_dir, "trainer.fast_dev_run=2", "data.max_batch_size=16",
              experiment="g2p", tiny=TINY_G2P)
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["test"]) == {M.TEST_PER, M.TEST_WER}
    assert results["test_items"] > 0 and M.VAL_PER in results["best_val"]
    out = run_module("rnnseq.evaluate", data_dir, str(run_dir), "decoding.beam_size=2",
                     "--split", "valid", "data.max_batch_size=4").stdout
    assert "valid/per" in out
    record = json.loads(next((run_dir / "evaluations").glob("valid-*.json")).read_text())
    assert record["decoding"]["beam_size"] == 2 and record["items"]
    from rnnseq.evaluate import main

    assert main([f"run={run_dir}", "data.no_such_key=1"]) == 2  # named, not a traceback


def test_lm_fusion_through_evaluate(tmp_path, data_dir, tiny_corpus):
    from tests.conftest import corpus_overrides

    lm_dir = tmp_path / "asr_lm"
    run_train(lm_dir, data_dir, "trainer.fast_dev_run=2", "data.batch_size=16",
              experiment="asr_lm", tiny=TINY_LM)
    asr_dir = tmp_path / "asr"
    run_train(asr_dir, data_dir, *corpus_overrides(), "trainer.fast_dev_run=2")
    out = run_module("rnnseq.evaluate", data_dir, str(asr_dir), f"decoding.lm={lm_dir}",
                     "decoding.lm_weight=0.5").stdout
    assert "test/wer" in out
    record = json.loads(next((asr_dir / "evaluations").glob("test-*.json")).read_text())
    assert record["decoding"]["lm_weight"] == 0.5 and len(record["items"]) == 6
