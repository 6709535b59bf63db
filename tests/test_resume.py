"""`resume=<run>` continues a run into the same folder and curves; `ckpt_path=` fine-tunes."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.train import resume_arguments
from tests.conftest import EVERY_2, RESUMABLE, corpus_overrides
from tests.test_train_smoke import run_module, run_train


def _scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, data_dir, uninterrupted):
    whole, parts = uninterrupted, tmp_path / "parts"
    run_train(parts, data_dir, *corpus_overrides(), *RESUMABLE, EVERY_2, "trainer.max_epochs=1",
              "test=false")
    first_steps = [s for s, _ in _scalars(parts, M.TRAIN_LOSS)]
    run_module("rnnseq.train", data_dir, f"resume={parts}", "trainer.max_epochs=2", "test=true")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]  # no second folder
    resumed, uninterrupted = _scalars(parts, M.TRAIN_LOSS), _scalars(whole, M.TRAIN_LOSS)
    steps = [s for s, _ in resumed]
    assert steps == sorted(set(steps)) and steps[: len(first_steps)] == first_steps  # one curve
    assert steps == [s for s, _ in uninterrupted]
    for (_, a), (_, b) in zip(resumed, uninterrupted):
        assert abs(a - b) < 1e-4
    test_parts = json.loads((parts / "results.json").read_text())["test"]
    test_whole = json.loads((whole / "results.json").read_text())["test"]
    assert test_parts == test_whole


def test_ckpt_path_starts_a_new_run_from_another_runs_weights(tmp_path, data_dir, smoke_run):
    tuned = tmp_path / "tuned"
    checkpoint = smoke_run / "checkpoints" / "last.ckpt"
    run_train(tuned, data_dir, *corpus_overrides(), "trainer.fast_dev_run=1",
              f"ckpt_path={checkpoint}")
    results = json.loads((tuned / "results.json").read_text())
    assert results["steps"] == 1  # a fresh optimiser and step counter
    assert "initialised the model from" in (tuned / "train.log").read_text()


def test_resume_arguments_recompose_the_run(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / ".hydra" / "overrides.yaml").write_text("- experiment=asr\n- trainer.max_epochs=1\n")
    assert resume_arguments(["seed=3"]) == ["seed=3"]
    assert resume_arguments([f"resume={run}", "trainer.max_epochs=5"]) == [
        "experiment=asr", "trainer.max_epochs=1", f"hydra.run.dir={run}", f"resume={run}",
        "trainer.max_epochs=5"]


def test_loading_a_model_to_use_it_leaves_the_callers_random_streams_alone(smoke_run):
    """Only a resumed fit takes the checkpoint's random states; loading a model for inference
    (synthesize, transcribe, a notebook) must not reset the caller's generators."""
    import random

    import numpy as np
    import torch

    from rnnseq.checkpoints import load_task
    from rnnseq.tasks.speech_to_text import SpeechToText

    def draws():
        return torch.rand(3).tolist(), random.random(), float(np.random.rand())

    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    expected = draws()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    load_task(SpeechToText, smoke_run, "cpu")
    assert draws() == expected


def test_checkpoints_keep_the_gpus_random_states_and_a_resumed_fit_restores_them(
        smoke_run, monkeypatch):
    """Without a GPU: the CUDA calls are stood in for. The state is a byte tensor that a
    ``weights_only`` load reads back, one per process (each of its own GPU), restored (as a CPU
    tensor) only when a fit resumes, by the process of the same rank."""
    import io
    from types import SimpleNamespace

    import torch
    from lightning.pytorch.trainer.states import TrainerFn

    from rnnseq.checkpoints import load_task
    from rnnseq.tasks.speech_to_text import SpeechToText

    task = load_task(SpeechToText, smoke_run, "cpu")
    restored = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: torch.arange(4, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    assert [s.tolist() for s in checkpoint["rng_states"]["cuda"]] == [[0, 1, 2, 3]]

    task.on_load_checkpoint(checkpoint)  # no trainer: loaded to be used
    assert restored == []
    fitting = SimpleNamespace(fn=TrainerFn.FITTING)
    try:
        task._trainer = SimpleNamespace(state=fitting, global_rank=0)
        task.on_load_checkpoint(checkpoint)
        assert [s.tolist() for s in restored] == [[0, 1, 2, 3]]
        assert all(s.device.type == "cpu" for s in restored)
        task._trainer = SimpleNamespace(state=fitting, global_rank=1)  # no state of its own
        task.on_load_checkpoint(checkpoint)
        assert len(restored) == 1
    finally:
        task._trainer = None
