"""Test-only callbacks and datamodules, added to real CLI runs with
``+callbacks.<name>._target_=tests.helpers...`` or ``data._target_=tests.helpers...``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import lightning as L

from rnnseq.data.batching import BucketBatchSampler
from rnnseq.data.speech import SpeechDataModule, SpeechDataset
from rnnseq.tasks.speech_to_text import SpeechToText


class SignalAt(L.Callback):
    """Sends ``signum`` to this very process when training is about to run step ``step`` (for
    each of ``steps``), once per step over all resumptions of the run: a marker file in
    ``marker_dir`` records that it fired. SIGKILL stands for a crash or a node failure, SIGTERM for
    pre-emption, SIGINT for Ctrl-C."""

    def __init__(self, steps: list[int], signum: int, marker_dir: str):
        self.steps = sorted(int(s) for s in steps)
        self.signum = int(signum)
        self.marker_dir = Path(marker_dir)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        marker = self.marker_dir / f"signal-{self.signum}-at-{step}"
        if step in self.steps and not marker.exists():
            self.marker_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text("")
            os.kill(os.getpid(), self.signum)  # SIGKILL ends here; the others set a flag


class SpeechDataWithABadStep(SpeechDataModule):
    """The speech datamodule, with the training batches of one optimizer step spoilt: with
    ``spoil`` the second of the two batches of step ``step`` (rank 1's under 2-process DDP) has
    every audio file replaced by one that does not exist, so it fails to load at run time;
    without it, both batches of that step are left out of the training split (the run in which
    that step never happened). Needs sorted epochs (the same batches every epoch), no feature
    cache (audio is read at run time), and a batch budget cut by ``max_batch_size`` alone.
    The feature statistics come from the untouched training split in both cases."""

    def __init__(self, *args, step: int = 1, spoil: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.step, self.spoil = step, spoil
        self._untouched = None

    def setup(self, stage=None) -> None:
        if self.datasets:
            return
        super().setup(stage)
        train = self._untouched = self.datasets["train"]
        batches = BucketBatchSampler(train.frame_lengths(), self.max_frames, self.max_batch_size,
                                     seed=self.seed, sorted_epochs=10**6)._all_batches()
        first, second = batches[2 * self.step], batches[2 * self.step + 1]
        utterances = list(train.utterances)
        if self.spoil:
            for i in second:
                utterances[i] = replace(utterances[i], audio_path=f"/nonexistent/{utterances[i].id}.wav")
        else:
            utterances = [u for i, u in enumerate(utterances) if i not in {*first, *second}]
        self.datasets["train"] = SpeechDataset(utterances, self.tokenizer, self.feature_config)

    def feature_statistics(self):
        spoilt, self.datasets["train"] = self.datasets["train"], self._untouched
        try:
            return super().feature_statistics()
        finally:
            self.datasets["train"] = spoilt


class OwnSpeechTask(SpeechToText):
    """A task class from outside rnnseq (as a user's package would define one)."""
