"""``bench/gpu_check.py`` in its tiny CPU mode (so that the GPU check cannot rot), with the two
settings it measures: the deterministic recipe for CTC on CUDA, and ``data.pin_memory``."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import torch
from omegaconf import OmegaConf

from rnnseq.data.base import SplitDataModule, pin_memory_setting
from rnnseq.train import CTC_NOT_DETERMINISTIC, resolve_determinism
from tests.conftest import REPO, TINY_TTS, corpus_overrides

sys.path.insert(0, str(REPO / "bench"))
import gpu_check  # noqa: E402  (a script folder, not a package)

ROWS = ["ddp/asr", "deterministic/asr", "deterministic/tts", "resume/asr", "resume/tts",
        "throughput/asr", "throughput/tts", "beam/1", "beam/2", "synthesize/tts"]
RAN_ON_THE_CPU = {"train/asr/32-true", "train/tts/32-true", "ddp/asr", "deterministic/asr",
                  "deterministic/tts", "throughput/asr", "throughput/tts", "beam/1", "beam/2",
                  "synthesize/tts"}


def test_the_tiny_cpu_mode_reports_every_row_with_a_reason_where_it_did_not_run(
        tmp_path, data_dir, tiny_corpus, monkeypatch, capsys):
    monkeypatch.setenv("RNNSEQ_DATA_DIR", str(data_dir))
    rows = gpu_check.main(["--cpu-tiny", "--json", str(tmp_path / "gpu_check.json")])

    experiments = sorted(p.stem for p in (REPO / "rnnseq/conf/experiment").glob("*.yaml"))
    expected = [f"train/{e}/{p}" for e in experiments for p in ("32-true", "bf16-mixed")] + ROWS
    assert [r.name for r in rows] == expected
    status = {r.name: r.status for r in rows}
    assert all(status[name] == "ok" for name in RAN_ON_THE_CPU), status
    for name, text in status.items():
        # on a machine with a GPU the CUDA rows are skipped for the CPU mode, not for the machine
        assert text in ("ok", "skipped: no CUDA", "skipped: --cpu-tiny runs on the CPU"), (name, text)
    numbers = {r.name: r.numbers for r in rows}
    assert numbers["train/asr/32-true"]["steps"] == numbers["train/tts/32-true"]["steps"] == 2
    assert all(numbers[f"train/{e}/32-true"] == {"composed": True}
               for e in experiments if e not in ("asr", "tts"))
    assert numbers["ddp/asr"]["max_weight_difference"] <= 1e-5
    assert numbers["deterministic/asr"]["max_weight_difference"] == 0.0
    assert numbers["deterministic/tts"]["max_weight_difference"] == 0.0
    assert numbers["beam/2"]["utt_per_s"] > 0 and numbers["throughput/asr"]["utt_per_s_unpinned"] > 0

    printed = capsys.readouterr().out
    assert all(name in printed for name in expected)
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["mode"] == "cpu-tiny" and [r["name"] for r in written["rows"]] == expected


def test_the_tiny_settings_are_the_tests_own():
    from tests.test_commands import FEW_WORDS, TINY_CLASSIFIER
    from tests.test_forecast import TINY_FORECASTER
    from tests.test_text_tasks_smoke import TINY_G2P, TINY_LM
    from tests.test_train_smoke import TINY_MODEL

    assert gpu_check.ESPEAK_TINY == corpus_overrides()
    assert gpu_check.TINY_ASR == [o for o in TINY_MODEL if not o.startswith("trainer.")]
    assert gpu_check.TINY["tts"] == TINY_TTS
    assert gpu_check.TINY["g2p"] == TINY_G2P and gpu_check.TINY_LM == TINY_LM
    assert gpu_check.TINY["commands"][:len(TINY_CLASSIFIER + FEW_WORDS)] == TINY_CLASSIFIER + FEW_WORDS
    assert gpu_check.TINY["forecast"] == TINY_FORECASTER


class _Task:
    def __init__(self, ctc_weight: float):
        self.hparams = {"ctc_weight": ctc_weight}


@pytest.mark.parametrize(("cuda", "accelerator", "ctc_weight", "expected"), [
    (True, "gpu", 0.5, "warn"), (True, "auto", 0.3, "warn"),  # CTC on CUDA: warn
    (True, "gpu", 0.0, True), (True, "cpu", 0.5, True), (False, "auto", 0.5, True),
])
def test_deterministic_mode_warns_only_for_ctc_on_cuda(monkeypatch, caplog, cuda, accelerator,
                                                       ctc_weight, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    trainer = OmegaConf.create({"accelerator": accelerator, "deterministic": True})
    with caplog.at_level(logging.WARNING, logger="rnnseq.train"):
        resolved = resolve_determinism(trainer, _Task(ctc_weight))
    assert resolved.deterministic == expected and trainer.deterministic is True  # a copy
    said = [r.getMessage() for r in caplog.records if r.getMessage() == CTC_NOT_DETERMINISTIC]
    assert len(said) == (1 if expected == "warn" else 0)


def test_deterministic_false_stays_false_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    trainer = OmegaConf.create({"accelerator": "gpu", "deterministic": False})
    assert resolve_determinism(trainer, _Task(0.5)).deterministic is False


class _Strategy:
    def __init__(self, device: str):
        self.root_device = torch.device(device)


class _Trainer:
    def __init__(self, device: str):
        self.strategy = _Strategy(device)


def test_pin_memory_auto_pins_only_when_the_trainer_runs_on_cuda():
    data = SplitDataModule()
    assert data.pin_memory == "auto" and data.pins_memory() is False  # no trainer: as on the CPU
    for device, pinned in (("cpu", False), ("cuda", True)):
        data.trainer = _Trainer(device)
        assert data.pins_memory() is pinned
    assert SplitDataModule(pin_memory=False).pins_memory() is False
    with pytest.raises(ValueError, match="data.pin_memory must be true, false or auto"):
        pin_memory_setting("yes")
