"""Checkpoint averaging: which checkpoints `--best N` / `--last N` name, the mean of their weights
(computed here by hand), the error when a run kept too few, and `task.average_checkpoints` in a
real training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnseq.average import average_checkpoints, choose, main, write_average
from rnnseq.checkpoints import find_checkpoint
from tests.conftest import corpus_overrides
from tests.test_train_smoke import run_module, run_train


def fake_run(folder: Path, scores: dict[str, float], best: str) -> dict[str, dict]:
    """Checkpoints ``best-<name>.ckpt`` (steps in the order given) whose weight ``w`` is the
    step, with the ModelCheckpoint state training writes (scores, best path) in the newest."""
    ckpts = folder / "checkpoints"
    ckpts.mkdir(parents=True)
    written = {}
    state = {"best_k_models": {str(ckpts / f"best-{n}.ckpt"): torch.tensor(s) for n, s in scores.items()},
             "best_model_path": str(ckpts / f"best-{best}.ckpt")}
    for step, name in enumerate(scores, start=1):
        checkpoint = {"global_step": step * 10, "state_dict": {
            "w": torch.full((2,), float(step)), "half": torch.full((1,), float(step), dtype=torch.float16),
            "count": torch.tensor(step)}, "optimizer_states": [{"lr": 1}], "lr_schedulers": [{}],
            "callbacks": {"ModelCheckpoint{'monitor': 'val/wer'}": state}, "rnnseq": {"format": 2}}
        torch.save(checkpoint, ckpts / f"best-{name}.ckpt")
        written[name] = checkpoint
    return written


def test_best_n_follows_the_recorded_scores_in_either_direction(tmp_path):
    # lower is better: the recorded best has the smallest score
    fake_run(tmp_path / "wer", {"a": 0.30, "b": 0.10, "c": 0.20, "d": 0.40}, best="b")
    assert [p.name for p in choose(tmp_path / "wer", best=2)] == ["best-b.ckpt", "best-c.ckpt"]
    assert find_checkpoint(tmp_path / "wer").name == "best-b.ckpt"  # not the newest file (d)
    # higher is better (accuracy): the recorded best has the largest
    fake_run(tmp_path / "acc", {"a": 0.70, "b": 0.90, "c": 0.80}, best="b")
    assert [p.name for p in choose(tmp_path / "acc", best=2)] == ["best-b.ckpt", "best-c.ckpt"]
    assert [p.name for p in choose(tmp_path / "acc", last=2)] == ["best-c.ckpt", "best-b.ckpt"]


def test_the_average_is_the_mean_of_float_weights_and_keeps_the_newest_integers(tmp_path):
    fake_run(tmp_path, {"a": 0.3, "b": 0.1, "c": 0.2}, best="b")
    out, chosen = write_average(tmp_path, best=2)
    assert out == tmp_path / "checkpoints" / "average-best2.ckpt"
    averaged = torch.load(out, weights_only=True)
    assert torch.equal(averaged["state_dict"]["w"], torch.full((2,), 2.5))   # steps 2 and 3
    assert averaged["state_dict"]["half"].dtype == torch.float16
    assert torch.equal(averaged["state_dict"]["count"], torch.tensor(3))      # the newest's
    assert averaged["global_step"] == 30 and averaged["optimizer_states"] == []
    assert averaged["rnnseq"]["averaged"]["checkpoints"] == ["best-b.ckpt", "best-c.ckpt"]


def test_asking_for_more_than_the_run_kept_names_the_setting(tmp_path, capsys):
    fake_run(tmp_path, {"a": 0.3, "b": 0.1}, best="b")
    with pytest.raises(ValueError, match="callbacks.model_checkpoint.save_top_k=3"):
        choose(tmp_path, best=3)
    assert main([f"run={tmp_path}", "--last", "5"]) == 2
    assert "callbacks.recent_checkpoints.save_top_k=5" in capsys.readouterr().err
    torch.save({"global_step": 1, "state_dict": {"other": torch.zeros(1)}}, tmp_path / "x.ckpt")
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

    cfg = compose_config(["experiment=asr", "task.average_checkpoints=3"], tmp_path)
    with pytest.raises(ValueError, match="task.average_checkpoints=3 .*save_top_k keeps 1; set it to 3"):
        checkpoints_to_average(cfg, build_callbacks(cfg, _task_stub()))


def _task_stub():
    class Stub:
        def require_logged(self, *_):
            pass
    return Stub()
