"""What reaches the data report after setup: pairs that CTC cannot align, found once the model
exists (`zero_infinity=True` used to zero their loss without a word), and items that failed to
load while a run went on (kept across a resume)."""

from __future__ import annotations

import json

import pytest
import torch

from rnnseq.data.speech import SpeechDataModule
from tests.conftest import compose_config
from tests.test_configs import _build


def _asr_task(tmp_path, *overrides):
    cfg = compose_config(["experiment=asr", "model.encoder.hidden_size=8",
                          "model.decoder.hidden_size=8", *overrides], tmp_path)
    return _build(cfg)[1]


def test_ctc_needs_a_frame_per_token_and_a_blank_between_repeats(tmp_path):
    task = _asr_task(tmp_path)  # x4 subsampling: 13 input steps -> 7 -> 4 encoder frames
    assert task.model.encoder.output_lengths(torch.tensor([13])).tolist() == [4]
    targets = [[5, 6, 7, 8],      # 4 tokens, no repeat: needs 4 frames, gets 4: fine
               [5, 5, 6],         # 3 tokens, 1 repeat (a blank between the 5s): needs 4: fine
               [5, 5, 5],         # 3 tokens, 2 repeats: needs 5, gets 4
               [5, 6, 7, 8, 9]]   # 5 tokens: needs 5, gets 4
    problems = task.unalignable([13] * 4, targets)
    assert sorted(problems) == [2, 3]
    assert "3 target tokens (2 repeated) need 5 encoder frames, the encoder gives 4 from 13" \
        in problems[2]
    assert task.unalignable([12], [[5, 6, 7, 8]])  # 12 input steps -> 3 frames for 4 tokens
    # no CTC loss, no constraint
    assert _asr_task(tmp_path, "task.ctc_weight=0",
                     "task.decoding.ctc_weight=0").unalignable([1] * 4, targets) == {}


class _Picky:
    """Stands in for a task that cannot align the first item of every split."""

    def unalignable(self, input_lengths, targets):
        assert len(input_lengths) == len(targets) > 0
        return {0: "cannot align it"}


def test_unalignable_items_leave_training_only_and_every_one_is_reported(tiny_corpus, tmp_path):
    datamodule = SpeechDataModule(manifests=tiny_corpus, feature_cache=str(tmp_path / "features"))
    datamodule.setup("fit")
    sizes = {split: len(d) for split, d in datamodule.datasets.items()}
    first = {split: d.describe(0)[1] for split, d in datamodule.datasets.items()}
    exact = datamodule.datasets["train"].input_lengths()  # from the feature cache
    datamodule.drop_unalignable(_Picky())
    assert len(datamodule.datasets["train"]) == sizes["train"] - 1
    assert datamodule.datasets["train"].input_lengths() == exact[1:]  # cached features follow
    assert {s: len(d) for s, d in datamodule.datasets.items() if s != "train"} == \
        {s: n for s, n in sizes.items() if s != "train"}
    report = datamodule.report.to_dict()
    by_id = {i["id"]: i for i in report["issues"]}
    assert by_id[first["train"]]["action"] == "skipped"
    assert "left out of training" in by_id[first["train"]]["reason"]
    evaluation = [split for split in datamodule.datasets if split != "train"]
    assert evaluation == ["valid", "test", "test_text", "test_voices", "test_engine"]
    for split in evaluation:
        assert by_id[first[split]]["action"] == "kept"
        assert f"kept and scored ({split} split)" in by_id[first[split]]["reason"]
    path = datamodule.write_report(tmp_path)
    assert json.loads(path.read_text())["counts"] == {"skipped": 1, "kept": len(evaluation)}


def test_a_task_without_constraints_drops_nothing(tiny_corpus):
    from rnnseq.tasks.base import Task

    datamodule = SpeechDataModule(manifests=tiny_corpus, feature_cache=None)
    datamodule.setup("fit")
    before = len(datamodule.datasets["train"])
    datamodule.drop_unalignable(Task())
    assert len(datamodule.datasets["train"]) == before and not datamodule.report.issues


def test_items_that_failed_during_a_run_survive_a_checkpoint(tmp_path):
    from rnnseq.checkpoints import load_checkpoint
    from rnnseq.data.batching import Failure, collate_examples

    task = _asr_task(tmp_path)
    lost = Failure("utt-7", "/audio/utt-7.wav", "audio file /audio/utt-7.wav was not found")
    batch = collate_examples([lost])
    task.note_failures(batch, "training")
    task.note_failures(batch, "training")  # the same file failing again in a later epoch
    assert [(i.id, i.split) for i in task.runtime_issues()] == [("utt-7", "train")]
    checkpoint = {}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "state.ckpt")  # plain data: loads with weights_only=True
    resumed = _asr_task(tmp_path)
    resumed.on_load_checkpoint(load_checkpoint(tmp_path / "state.ckpt"))
    assert resumed.runtime_issues() == task.runtime_issues()
    assert "was not found (during training)" in resumed.runtime_issues()[0].reason


def test_a_wide_beam_searches_a_batch_in_slices_with_the_same_results(tmp_path, monkeypatch):
    from rnnseq.models.seq2seq import Encoded
    from rnnseq.tasks import seq2seq

    task = _asr_task(tmp_path, "task.decoding.beam_size=4", "task.decoding.ctc_weight=0.3").eval()
    torch.manual_seed(0)
    lengths = torch.tensor([9, 4, 7, 2, 6])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    enc = Encoded(torch.randn(5, 9, task.model.encoder.output_dim), lengths, mask)
    whole = task.beam_hypotheses(None, enc)
    monkeypatch.setattr(seq2seq, "BEAM_ROWS", 8)  # 2 utterances per search: 3 searches
    sliced = task.beam_hypotheses(None, enc)
    assert [[h.tokens for h in item] for item in sliced] == [[h.tokens for h in item] for item in whole]
    assert [h.score for item in sliced for h in item] == \
        pytest.approx([h.score for item in whole for h in item], abs=1e-5)
    assert enc.rows(1, 4).memory.shape[:2] == (3, 7)  # padding cut to the longest of the slice
