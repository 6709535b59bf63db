"""Nothing lost: atomic checkpoints, a clean stop on SIGTERM/SIGINT, exact resumption after
SIGKILL, non-finite steps skipped, and checkpoints loaded without running pickled code."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from rnnseq.checkpoints import AtomicCheckpointIO, load_checkpoint
from rnnseq.safeguards import NonFiniteGuard, NonFiniteLossError, PeriodicCheckpoint
from rnnseq.tasks.base import Task, require_matching_shapes
from tests.conftest import EVERY_2, REPO, RESUMABLE, STEP_BUDGET, corpus_overrides
from tests.test_train_smoke import TINY_MODEL, run_module

# A few steps per epoch on the tiny corpus, every random draw reproducible (tests/conftest.py).
SHORT = [*RESUMABLE, "trainer.max_epochs=2"]


def _train_process(run_dir: Path, data_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m rnnseq.train experiment=asr`` (tiny model) that may fail: its exit status,
    stdout and stderr."""
    env = {**os.environ, "RNNSEQ_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "rnnseq.train", "experiment=asr", *TINY_MODEL,
           "data.num_workers=0", "threads=1", f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _resume_process(run_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """``python -m rnnseq.train resume=<run_dir>`` that may fail."""
    return subprocess.run([sys.executable, "-m", "rnnseq.train", f"resume={run_dir}"], cwd=REPO,
                          env={**os.environ, "RNNSEQ_DATA_DIR": str(data_dir)},
                          capture_output=True, text=True, timeout=600)


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def _assert_same_training(a: Path, b: Path) -> None:
    results_a = json.loads((a / "results.json").read_text())
    results_b = json.loads((b / "results.json").read_text())
    assert results_a["steps"] == results_b["steps"]
    assert results_a["test"] == results_b["test"]
    assert results_a["best_val"] == results_b["best_val"]
    weights_a, weights_b = _final_weights(a), _final_weights(b)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


# -- atomic writes ---------------------------------------------------------------------------------
def test_an_interrupted_checkpoint_write_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert int(load_checkpoint(path, current=False)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


# -- safe loading ----------------------------------------------------------------------------------
class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoints_with_pickled_code_are_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="not written by rnnseq"):
        load_checkpoint(path)
    torch.save({"state_dict": {"w": torch.zeros(100)}}, path)
    path.write_bytes(path.read_bytes()[:300])  # a torn write of the kind atomic saves prevent
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_weights_of_another_shape_fail_naming_the_parameters():
    small, large = torch.nn.Linear(4, 3), torch.nn.Linear(4, 5)
    with pytest.raises(ValueError) as err:
        require_matching_shapes(large, small.state_dict(), "run/best.ckpt", "ckpt_path")
    message = str(err.value)
    assert "ckpt_path=run/best.ckpt" in message and "weight: checkpoint (3, 4), config (5, 4)" in message
    require_matching_shapes(small, torch.nn.Linear(4, 3).state_dict(), "x", "resume")  # fits


def test_fine_tuning_from_a_checkpoint_of_another_size_fails_before_training(
        tmp_path, data_dir, smoke_run):
    source = smoke_run
    result = _train_process(tmp_path / "tuned", data_dir, *corpus_overrides(),
                            "trainer.fast_dev_run=1", "model.decoder.hidden_size=24",
                            f"ckpt_path={source / 'checkpoints' / 'last.ckpt'}")
    assert result.returncode != 0
    assert "does not fit the model" in result.stderr
    assert "model.decoder.rnn.weight_hh_l0: checkpoint (64, 16), config (96, 24)" in result.stderr
    assert not (tmp_path / "tuned" / "results.json").exists()


# -- non-finite steps ------------------------------------------------------------------------------
class _Batch(NamedTuple):
    x: torch.Tensor
    ids: list[str]


class _Regression(Task):
    """A linear model trained with plain SGD; batches in ``poisoned`` get a NaN loss."""

    def __init__(self, poisoned: set[int]):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        torch.nn.init.constant_(self.layer.weight, 0.5)
        torch.nn.init.zeros_(self.layer.bias)
        self.poisoned = poisoned

    def training_loss(self, batch):
        loss = (self.layer(batch.x) - 1).pow(2).mean()
        return loss * float("nan") if batch.ids[0] in self.poisoned else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(batches: list[_Batch], poisoned: set[int], callback: L.Callback,
         **trainer_args) -> _Regression:
    model = _Regression({f"utt{i}a" for i in poisoned})
    trainer = L.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        **trainer_args)
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    model.logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return model


def _batches(n: int) -> list[_Batch]:
    generator = torch.Generator().manual_seed(0)
    return [_Batch(torch.randn(4, 3, generator=generator), [f"utt{i}a", f"utt{i}b"])
            for i in range(n)]


def test_nonfinite_steps_are_skipped_and_counted():
    batches = _batches(6)
    guard = NonFiniteGuard(max_consecutive=2)
    poisoned = _fit(batches, {1, 4}, guard)
    assert poisoned.skipped_steps == 2 and poisoned.logged["train/skipped_steps"] == 2
    # Skipping a step is the same as never having seen the batch.
    clean = _fit([b for i, b in enumerate(batches) if i not in (1, 4)], set(), NonFiniteGuard())
    assert torch.equal(poisoned.layer.weight, clean.layer.weight)
    assert torch.isfinite(poisoned.layer.weight).all()


def test_too_many_nonfinite_steps_in_a_row_stop_naming_the_batch():
    with pytest.raises(NonFiniteLossError, match=r"3 training steps in a row.*utt2a, utt2b"):
        _fit(_batches(6), {0, 1, 2, 3}, NonFiniteGuard(max_consecutive=2))


def test_periodic_checkpoints_come_right_after_optimizer_steps(tmp_path, monkeypatch):
    saved_at = []
    monkeypatch.setattr("rnnseq.safeguards.save_last",
                        lambda trainer, dirpath: saved_at.append(trainer.global_step))
    every_step = PeriodicCheckpoint(str(tmp_path), every_n_steps=1, every_minutes=None)
    _fit(_batches(6), set(), every_step, accumulate_grad_batches=2)
    # After each step, never half-way through accumulating gradients; and at the epoch's end.
    assert saved_at == [1, 2, 3, 3]


# -- signals and resumption ------------------------------------------------------------------------
def _signal_at(steps: list[int], signum: int, marker_dir: Path, name: str = "signal_at") -> list[str]:
    return [f"+callbacks.{name}._target_=tests.helpers.SignalAt",
            f"+callbacks.{name}.steps=[{','.join(map(str, steps))}]",
            f"+callbacks.{name}.signum={int(signum)}",
            f"+callbacks.{name}.marker_dir={marker_dir}"]


def _assert_stopped_cleanly(stopped, parts: Path, signum: int, step: int) -> None:
    assert stopped.returncode == 128 + signum, stopped.stderr[-2000:]
    log = (parts / "train.log").read_text()
    assert f"stopped by {signal.Signals(signum).name} after step {step}" in log
    assert f"resume={parts}" in log
    assert "Traceback" not in stopped.stderr
    assert not (parts / "results.json").exists()  # no test on a half-trained model
    assert int(load_checkpoint(parts / "checkpoints" / "last.ckpt")["global_step"]) == step


def test_sigterm_then_sigint_stop_with_a_checkpoint_and_resume_finishes_the_same_run(
        tmp_path, data_dir, uninterrupted):
    """Pre-emption (SIGTERM) before step 4, then Ctrl-C (SIGINT) before step 8 of the resumed run:
    each finishes its step, saves and exits 128 + signal; the second resume ends the run."""
    parts, markers = tmp_path / "parts", tmp_path / "markers"
    signals = [*_signal_at([4], signal.SIGTERM, markers),
               *_signal_at([8], signal.SIGINT, markers, name="second_signal")]
    stopped = _train_process(parts, data_dir, *corpus_overrides(), *SHORT, *signals)
    _assert_stopped_cleanly(stopped, parts, signal.SIGTERM, 5)
    again = _resume_process(parts, data_dir)
    _assert_stopped_cleanly(again, parts, signal.SIGINT, 9)
    run_module("rnnseq.train", data_dir, f"resume={parts}")
    _assert_same_training(parts, uninterrupted)


def test_three_sigkills_at_random_steps_then_resume_equal_an_uninterrupted_run(
        tmp_path, data_dir, uninterrupted):
    """Checkpoints every 2 steps, so a kill loses up to 2 steps, which the resumed run redoes. The
    run has a step budget (as the speech recipe does) and equals the same steps run by epochs."""
    parts = tmp_path / "parts"
    total = json.loads((uninterrupted / "results.json").read_text())["steps"]
    kills = sorted(random.Random(7).sample(range(3, total), 3))
    killer = _signal_at(kills, signal.SIGKILL, tmp_path / "markers")

    first = _train_process(parts, data_dir, *corpus_overrides(), *RESUMABLE, *STEP_BUDGET, EVERY_2,
                           *killer)
    assert first.returncode == -signal.SIGKILL
    for _ in range(len(kills)):
        resumed = _resume_process(parts, data_dir)
        if resumed.returncode == 0:
            break
        assert resumed.returncode == -signal.SIGKILL, resumed.stderr[-2000:]
    assert resumed.returncode == 0, "the run should finish after the last kill"
    assert len(list((tmp_path / "markers").iterdir())) == 3
    _assert_same_training(parts, uninterrupted)
