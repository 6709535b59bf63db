"""`experiment=textgen`, `experiment=g2p` and `experiment=asr_lm` end to end through the real CLIs
(a few batches each), then `rnnseq.generate` and `rnnseq.evaluate` on their run folders."""

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.callbacks import GENERATED_TAG
from tests.test_train_smoke import run_train

TINY_LM = ["model.lm.embed_dim=16", "model.lm.hidden_size=24"]
TINY_G2P = ["model.encoder.hidden_size=16", "model.decoder.hidden_size=16",
            "model.decoder.embed_dim=8", "model.attention.attention_dim=8",
            "task.source_embed_dim=8"]


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


def test_generate_prints_the_prompt_and_its_continuation(textgen_run, capsys):
    from rnnseq.generate import main

    args = [str(textgen_run), "--prompt", "ROMEO.", "--length", "40", "--temperature", "0.8",
            "--top-k", "10", "--top-p", "0.9", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    second = capsys.readouterr().out
    assert first.startswith("ROMEO.") and len(first) > len("ROMEO.") and first == second


def test_g2p_runs_and_evaluate_rescores_with_other_decoding(tmp_path, data_dir):
    run_dir = tmp_path / "g2p"
    run_train(run_dir, data_dir, "trainer.fast_dev_run=2", "data.max_batch_size=16",
              experiment="g2p", tiny=TINY_G2P)
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["test"]) == {M.TEST_PER, M.TEST_WER}
    assert results["test_items"] > 0 and M.VAL_PER in results["best_val"]
    from rnnseq.evaluate import main
    from rnnseq.evaluation import evaluate

    record = evaluate(run_dir, {"beam_size": 2}, split="valid", data_overrides=["data.max_batch_size=4"])
    assert "valid/per" in record["metrics"]
    assert record["decoding"]["beam_size"] == 2 and record["items"]

    assert main([f"run={run_dir}", "data.no_such_key=1"]) == 2  # named, not a traceback
    _check_heatmaps_have_one_labelled_row_per_phoneme(run_dir)


def _check_heatmaps_have_one_labelled_row_per_phoneme(run_dir):
    """The attention heatmaps of g2p label their rows with the target tokenizer's own symbols
    (phonemes, often several characters each), one row per emitted token plus <eos>."""
    from rnnseq.callbacks import ATTENTION_TAG, AttentionSamples
    from rnnseq.checkpoints import load_task
    from rnnseq.runs import run_data_loader
    from rnnseq.tasks.text_to_text import TextToText

    task = load_task(TextToText, run_dir)
    symbols = task.tokenizer.symbols
    phoneme = next(s for s in symbols[3:] if len(s) >= 2)  # e.g. "aɪ"
    with torch.no_grad():  # the decoder now says that phoneme until it is stopped
        task.model.decoder.output.bias[task.tokenizer.encode(phoneme)[0]] = 100.0
    dataset = run_data_loader(run_dir, "valid", [])[0].dataset
    items = [dataset[i] for i in range(2)]
    table, figures = AttentionSamples.samples(task, items)
    assert [tag for tag, _ in figures] == [f"{ATTENTION_TAG}/{item.id}" for item in items]
    ratio = task.hparams.decoding["max_length_ratio"]
    for item, (_, figure) in zip(items, figures):
        emitted = math.ceil(ratio * len(item.features))  # cut by the length limit, then <eos>
        labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
        assert labels == [phoneme] * emitted + ["<eos>"]
        assert figure.axes[0].images[0].get_array().shape[0] == emitted + 1
    assert f"| {' '.join([phoneme] * emitted)} |" in table


def test_lm_fusion_through_evaluate(tmp_path, data_dir, smoke_run):
    from rnnseq.evaluation import evaluate

    lm_dir = tmp_path / "asr_lm"
    run_train(lm_dir, data_dir, "trainer.fast_dev_run=2", "data.batch_size=16",
              experiment="asr_lm", tiny=TINY_LM)
    record = evaluate(smoke_run, {"lm": str(lm_dir), "lm_weight": 0.5})
    assert "test/wer" in record["metrics"]
    assert record["decoding"]["lm_weight"] == 0.5 and len(record["items"]) == 6


def test_subword_speech_recognition_trains_decodes_and_fuses_a_language_model_of_its_pieces(
        tmp_path, data_dir, tiny_corpus):
    from rnnseq.checkpoints import find_checkpoint
    from rnnseq.evaluation import evaluate
    from rnnseq.runs import tokenizer_of_run
    from rnnseq.tasks.speech_to_text import SpeechToText
    from tests.conftest import corpus_overrides
    from tests.test_train_smoke import TINY_MODEL

    asr = tmp_path / "asr-bpe"
    run_train(asr, data_dir, *corpus_overrides(), "trainer.fast_dev_run=2",
              "data.tokenizer.kind=bpe", "data.tokenizer.vocab_size=40", tiny=TINY_MODEL)
    task = SpeechToText.load_from_checkpoint(find_checkpoint(asr), map_location="cpu",
                                             weights_only=True)
    pieces = task.tokenizer
    assert pieces.kind == "bpe" and len(pieces) == task.model.decoder.vocab_size
    assert any(len(p.lstrip("\u2581")) > 1 for p in pieces.symbols[3:])  # pieces, not letters
    items = json.loads((asr / "test_outputs.json").read_text())["items"]
    assert len(items) == 6 and all(isinstance(i["hypothesis"], str) for i in items)
    # a language model over the recogniser's own pieces, then shallow fusion with it
    lm = tmp_path / "lm-bpe"
    run_train(lm, data_dir, "trainer.fast_dev_run=2", "data.batch_size=16",
              f"data.tokenizer.from_run={asr}", experiment="asr_lm", tiny=TINY_LM)
    assert tokenizer_of_run(lm) == pieces
    record = evaluate(asr, {"lm": str(lm), "lm_weight": 0.5, "ctc_weight": 0.3})
    assert record["decoding"]["lm_weight"] == 0.5 and len(record["items"]) == 6
