"""Logging must not read values off the device on every training step.

On a GPU, turning a tensor into a Python number waits for all queued work; a framework that does
this once per step for its progress bar stalls the pipeline. There is no GPU in CI, so the test
counts those conversions (``item``, ``float``, ``int``, ``bool``, ``tolist``) made by Lightning
and rnnseq during real training steps on CPU.
"""

import traceback

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.train import train
from tests.conftest import compose_config, corpus_overrides
from tests.test_train_smoke import TINY_MODEL

CONVERSIONS = ("item", "tolist", "__float__", "__int__", "__bool__")
LOG_EVERY = 4
HOST_SIDE = ("/torch/utils/data/", "/rnnseq/data/", "/torch/optim/")


class _Recorder:
    """Counts tensor-to-Python conversions per training step (keyed by the step counter)."""

    def __init__(self):
        self.step: int | None = None
        self.calls: dict[int, list[str]] = {}

    def record(self):
        if self.step is None:
            return
        frames = traceback.extract_stack()[:-2]
        # Host-side work by design: collate runs on CPU tensors in the main process when workers
        # are off, and optimisers keep their step counters on the host (unless capturable).
        if any(part in f.filename for f in frames for part in HOST_SIDE):
            return
        where = f"{frames[-1].filename}:{frames[-1].lineno}"
        self.calls.setdefault(self.step, []).append(where)


def test_training_steps_convert_tensors_only_on_logging_steps(tmp_path, monkeypatch, tiny_corpus):
    recorder = _Recorder()
    for name in CONVERSIONS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            recorder.record()
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    from rnnseq.tasks.base import Task

    def on_train_batch_start(self, batch, batch_idx):
        recorder.step = self.trainer.global_step

    def on_train_epoch_end(self):
        recorder.step = None

    monkeypatch.setattr(Task, "on_train_batch_start", on_train_batch_start, raising=False)
    monkeypatch.setattr(Task, "on_train_epoch_end", on_train_epoch_end, raising=False)

    cfg = compose_config(["experiment=asr", *TINY_MODEL, *corpus_overrides(), "threads=1",
                          "data.num_workers=0", "data.max_batch_size=2", "trainer.max_epochs=1",
                          f"trainer.log_every_n_steps={LOG_EVERY}", "trainer.limit_val_batches=1",
                          "trainer.num_sanity_val_steps=0", "test=false"], tmp_path)
    results = train(cfg)

    steps = results["steps"]
    assert steps >= 3 * LOG_EVERY
    silent = [s for s in range(steps) if (s + 1) % LOG_EVERY and s % LOG_EVERY]
    converting = {s: recorder.calls[s] for s in silent if s in recorder.calls}
    assert not converting, f"steps that are not logging steps read the device: {converting}"
    # The loss still reaches TensorBoard every LOG_EVERY steps.
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [e.step for e in events.Scalars(M.TRAIN_LOSS)]
    assert len(logged) >= steps // LOG_EVERY
