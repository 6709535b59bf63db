"""Test-only callbacks, added to real CLI runs with ``+callbacks.<name>._target_=tests.helpers...``."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L


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
