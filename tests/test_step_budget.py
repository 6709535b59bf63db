"""The speech recipe's budget is a number of optimiser steps: its learning-rate schedule ends with
them, a wall-clock cap only guards them (and marks a run it stops), and the precision follows
what the CPU computes natively."""

from __future__ import annotations

import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.trainer.states import RunningStage
from omegaconf import OmegaConf

from rnnseq import resources
from rnnseq.results import time_capped
from rnnseq.tasks.base import planned_steps
from rnnseq.train import resolve_precision
from tests.conftest import compose_config


def test_the_recipe_schedule_is_planned_over_its_step_budget_and_ends_with_it(tmp_path):
    cfg = compose_config(["experiment=asr"], tmp_path)
    budget = cfg.trainer.max_steps
    assert budget > 0 and cfg.trainer.max_epochs in (None, -1)  # steps, not epochs or minutes
    trainer = instantiate(resolve_precision(cfg.trainer), callbacks=[], logger=False)
    assert planned_steps(trainer) == budget

    schedule = {k: v for k, v in cfg.task.scheduler.items() if k not in ("interval", "monitor")}
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=cfg.task.optimizer.lr)
    scheduler = instantiate(schedule)(optimizer, total_steps=planned_steps(trainer))
    rates = []
    for _ in range(budget):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak, floor = cfg.task.optimizer.lr, cfg.task.optimizer.lr * cfg.task.scheduler.min_lr_ratio
    assert max(rates) == pytest.approx(peak)
    assert rates[-1] == pytest.approx(floor, rel=1e-3)  # the last step runs at the floor ...
    assert rates[int(0.9 * budget)] > floor + 0.01 * (peak - floor)  # ... reached only there


def _trainer(duration_s: float, elapsed_s: float, steps: int, max_steps: int):
    timer = Timer(duration={"seconds": duration_s})
    timer._start_time[RunningStage.TRAINING], timer._end_time[RunningStage.TRAINING] = 0.0, elapsed_s
    return SimpleNamespace(callbacks=[timer], global_step=steps, max_steps=max_steps,
                           max_epochs=-1, current_epoch=1)


def test_only_a_run_the_time_cap_stopped_before_its_budget_is_capped():
    assert time_capped(_trainer(duration_s=60, elapsed_s=61, steps=500, max_steps=1000))
    assert not time_capped(_trainer(duration_s=60, elapsed_s=61, steps=1000, max_steps=1000))
    assert not time_capped(_trainer(duration_s=60, elapsed_s=30, steps=500, max_steps=1000))
    assert not time_capped(SimpleNamespace(callbacks=[], global_step=5, max_steps=10,
                                           max_epochs=-1, current_epoch=0))


CPUINFO = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 {extra}\n\n"


@pytest.mark.parametrize("extra, precision", [
    ("avx512f amx_bf16 amx_tile", "bf16-mixed"),   # Sapphire Rapids and later
    ("avx512f avx512_bf16", "bf16-mixed"),         # Cooper Lake, Zen 4
    ("avx512f avx512bw", "32-true"),               # AVX-512 without bf16: emulated, slower
    ("", "32-true"),                               # AVX2 only
])
def test_auto_precision_is_bf16_exactly_where_the_cpu_computes_it_natively(
        monkeypatch, extra, precision):
    monkeypatch.setattr(resources.Path, "read_text", lambda self: CPUINFO.format(extra=extra))
    assert resources.native_bf16() == (precision == "bf16-mixed")
    auto = OmegaConf.create({"accelerator": "cpu", "precision": "auto"})
    assert resolve_precision(auto).precision == precision
    fixed = OmegaConf.create({"accelerator": "cpu", "precision": "32-true"})
    assert resolve_precision(fixed).precision == "32-true"  # an explicit choice stays


def test_results_record_the_precision_and_whether_the_time_cap_stopped_the_run(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    config = OmegaConf.load(smoke_run / ".hydra" / "config.yaml")
    expected = resolve_precision(OmegaConf.create({"accelerator": "cpu",
                                                   "precision": config.trainer.precision}))
    assert results["precision"] == expected.precision
    assert results["capped"] is False


@pytest.mark.parametrize("trained_in, cuda, decoded_in", [
    ("32-true", False, "32-true"),        # a float32 run is scored in float32 on any CPU
    ("bf16-mixed", False, "bf16-mixed"),  # as its own test split was
    ("auto", False, "this machine's"),    # resolved here, as training resolved it
    (None, False, "this machine's"),      # a bare checkpoint: no run folder, no config
    ("16-mixed", False, "this machine's"),  # float16 autocast needs a GPU
    ("16-mixed", True, "16-mixed"),
])
def test_evaluate_decodes_in_the_precision_the_run_was_trained_in(
        monkeypatch, tmp_path, trained_in, cuda, decoded_in):
    from rnnseq import runs

    monkeypatch.setattr(resources, "auto_precision", lambda: "this machine's")
    monkeypatch.setattr(runs, "_cuda", lambda: cuda)
    if trained_in is not None:
        (tmp_path / ".hydra").mkdir()
        (tmp_path / ".hydra" / "config.yaml").write_text(f"trainer:\n  precision: {trained_in}\n")
    assert runs.run_precision(tmp_path) == decoded_in


class _LoggingBoringModel(BoringModel):
    """Lightning's toy model, logging ``val/loss`` after each validation."""

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.step(batch), on_epoch=True)


@pytest.mark.parametrize("stopper", ["lightning", "rnnseq"])
def test_a_step_budget_that_ends_before_the_first_validation_is_no_error(tmp_path, stopper):
    """Validation once an epoch, and a budget of 2 of the epoch's 8 steps: the epoch ends with no
    value to watch. Lightning's early stopping stops the run with an error there; ours waits."""
    from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

    from rnnseq.callbacks import EarlyStopping

    cls = {"lightning": LightningEarlyStopping, "rnnseq": EarlyStopping}[stopper]
    trainer = L.Trainer(max_epochs=None, max_steps=2, limit_train_batches=8, limit_val_batches=2,
                        callbacks=[cls(monitor="val/loss")], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    if stopper == "lightning":
        with pytest.raises(RuntimeError, match="val/loss"):
            trainer.fit(_LoggingBoringModel())
        return
    trainer.fit(_LoggingBoringModel())
    assert trainer.global_step == 2


def test_after_a_validation_a_missing_value_is_still_an_error(tmp_path):
    from rnnseq.callbacks import EarlyStopping

    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                        callbacks=[EarlyStopping(monitor="val/missing")], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    with pytest.raises(RuntimeError, match="val/missing"):
        trainer.fit(_LoggingBoringModel())
