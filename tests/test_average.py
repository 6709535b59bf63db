"""Checkpoint averaging: which checkpoints `--best N` / `--last N` name, the mean of their weights
(computed here by hand), the error when a run kept too few, and `task.average_checkpoints` in a
real training run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from rnnseq.average import main
from rnnseq.averaging import average_checkpoints, choose, write_average
from rnnseq.checkpoints import CHECKPOINT_FORMAT, find_checkpoint
from tests.conftest import corpus_overrides
from tests.test_train_smoke import run_module, run_train


def fake_run(folder: Path, scores: dict[str, float], mode: str = "min") -> dict[str, dict]:
    """Checkpoints ``best-<name>.ckpt`` (steps in the order given) whose weight ``w`` is the
    step, each with the ModelCheckpoint state training would have written at that point: the
    scores of the validations so far, the best of them, the mode in the state's key."""
    ckpts = folder / "checkpoints"
    ckpts.mkdir(parents=True)
    key = f"ModelCheckpoint{{'monitor': 'val/m', 'mode': '{mode}', 'every_n_train_steps': 0}}"
    pick = min if mode == "min" else max
    written, seen = {}, {}
    for step, (name, score) in enumerate(scores.items(), start=1):
        seen[str(ckpts / f"best-{name}.ckpt")] = torch.tensor(score)
        best = pick(seen, key=lambda p: float(seen[p]))
        state = {"best_k_models": dict(seen), "best_model_path": best}
        checkpoint = {"global_step": step * 10, "state_dict": {
            "w": torch.full((2,), float(step)), "half": torch.full((1,), float(step), dtype=torch.float16),
            "count": torch.tensor(step)}, "optimizer_states": [{"lr": 1}], "lr_schedulers": [{}],
            "callbacks": {key: state}, "rnnseq": {"format": CHECKPOINT_FORMAT}}
        path = ckpts / f"best-{name}.ckpt"
        torch.save(checkpoint, path)
        os.utime(path, (1000 + step, 1000 + step))  # written in this order, whatever the clock says
        written[name] = checkpoint
    return written


def test_best_n_follows_the_recorded_scores_in_the_recorded_direction(tmp_path):
    # lower is better: read from the newest file's state (d), not the oldest's (a alone)
    fake_run(tmp_path / "wer", {"a": 0.30, "b": 0.10, "c": 0.20, "d": 0.40})
    assert [p.name for p in choose(tmp_path / "wer", best=2)] == ["best-b.ckpt", "best-c.ckpt"]
    assert find_checkpoint(tmp_path / "wer").name == "best-b.ckpt"  # not the newest file (d)
    # higher is better (accuracy), even when the best is the newest
    fake_run(tmp_path / "acc", {"a": 0.70, "b": 0.80, "c": 0.90}, mode="max")
    assert [p.name for p in choose(tmp_path / "acc", best=2)] == ["best-c.ckpt", "best-b.ckpt"]


def test_last_n_are_the_latest_validations_kept_by_recent_checkpoints(tmp_path):
    fake_run(tmp_path, {"a": 0.3, "b": 0.1})
    for step in (5, 40, 25):
        torch.save({"global_step": step, "state_dict": {}},
                   tmp_path / "checkpoints" / f"recent-step{step}.ckpt")
    assert [p.name for p in choose(tmp_path, last=2)] == ["recent-step40.ckpt", "recent-step25.ckpt"]


def test_the_average_is_the_mean_of_float_weights_and_keeps_the_newest_integers(tmp_path):
    fake_run(tmp_path, {"a": 0.3, "b": 0.1, "c": 0.2})
    out, chosen = write_average(tmp_path, best=2)
    assert out == tmp_path / "checkpoints" / "average-best2.ckpt"
    averaged = torch.load(out, weights_only=True)
    assert torch.equal(averaged["state_dict"]["w"], torch.full((2,), 2.5))   # steps 2 and 3
    assert averaged["state_dict"]["half"].dtype == torch.float16
    assert torch.equal(averaged["state_dict"]["count"], torch.tensor(3))      # the newest's
    assert averaged["global_step"] == 30 and averaged["optimizer_states"] == []
    assert averaged["rnnseq"]["averaged"]["checkpoints"] == ["best-b.ckpt", "best-c.ckpt"]


def test_asking_for_more_than_the_run_kept_names_the_setting(tmp_path, capsys):
    fake_run(tmp_path, {"a": 0.3, "b": 0.1})
    with pytest.raises(ValueError, match="callbacks.model_checkpoint.save_top_k=3"):
        choose(tmp_path, best=3)
    assert main([f"run={tmp_path}", "--last", "1"]) == 2  # best-* are not recent-*
    assert "callbacks.recent_checkpoints.keep=1" in capsys.readouterr().err
    assert main([str(tmp_path), "--best", "0"]) == 2
    assert "N >= 1" in capsys.readouterr().err
    torch.save({"global_step": 1, "state_dict": {"other": torch.zeros(1)},
                "rnnseq": {"format": CHECKPOINT_FORMAT}}, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="holds other weights"):
        average_checkpoints([tmp_path / "checkpoints" / "best-a.ckpt", tmp_path / "x.ckpt"])


def test_training_tests_the_average_of_the_best_and_the_cli_averages_the_latest(tmp_path, data_dir,
                                                                               tiny_corpus):
    run = tmp_path / "run"
    run_train(run, data_dir, *corpus_overrides(), "trainer.max_epochs=3",
              "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
              "callbacks.model_checkpoint.save_top_k=2", "callbacks.recent_checkpoints.keep=2",
              "task.average_checkpoints=2", "task.decoding.beam_size=1")
    results = json.loads((run / "results.json").read_text())
    assert len(results["averaged_checkpoints"]) == 2 and "test" in results
    assert results["tested_checkpoint"].endswith("average-best2.ckpt")
    # the averaged ones are the checkpoints training kept as its best, by the last.ckpt's record
    state = next(v for k, v in torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
                 ["callbacks"].items() if k.startswith("ModelCheckpoint{'monitor': 'val/wer'"))
    scores = sorted((float(v), Path(k).name) for k, v in state["best_k_models"].items())
    assert sorted(results["averaged_checkpoints"]) == sorted(n for _, n in scores[:2])
    averaged = torch.load(run / "checkpoints" / "average-best2.ckpt", weights_only=True)
    sources = [torch.load(run / "checkpoints" / n, weights_only=True)["state_dict"]
               for n in results["averaged_checkpoints"]]
    name = next(k for k, v in averaged["state_dict"].items() if v.is_floating_point() and v.dim() == 2)
    assert torch.allclose(averaged["state_dict"][name], (sources[0][name] + sources[1][name]) / 2)
    assert len(list((run / "checkpoints").glob("recent-*.ckpt"))) == 2
    out = run_module("rnnseq.average", data_dir, str(run), "--last", "2").stdout
    assert "averaged 2 checkpoints" in out and (run / "checkpoints" / "average-last2.ckpt").is_file()


def test_averaging_more_than_save_top_k_is_refused_before_training(tmp_path):
    from rnnseq.train import build_callbacks, checkpoints_to_average
    from tests.conftest import compose_config

    cfg = compose_config(["experiment=asr", "task.average_checkpoints=3",
                          "callbacks.model_checkpoint.save_top_k=1"], tmp_path)
    with pytest.raises(ValueError, match="task.average_checkpoints=3 .*save_top_k keeps 1; set it to 3"):
        checkpoints_to_average(cfg, build_callbacks(cfg, _task_stub()))
    every = compose_config(["experiment=asr", "task.average_checkpoints=3",
                            "callbacks.model_checkpoint.save_top_k=-1"], tmp_path)
    assert checkpoints_to_average(every, build_callbacks(every, _task_stub())) == 3


def _task_stub():
    class Stub:
        def require_logged(self, *_):
            pass
    return Stub()
