"""What the datamodules share: one loader per split, the data report, and the hooks through which
``rnnseq.train`` hands data-derived facts (vocabulary, feature statistics) to the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from rnnseq.data.manifest import DataReport


class SplitDataModule(L.LightningDataModule):
    """Base of the rnnseq datamodules: subclasses implement :meth:`_loader` (one split's
    DataLoader) and :meth:`task_arguments`, and fill :attr:`report` while reading."""

    def __init__(self):
        super().__init__()
        self.report = DataReport()

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        raise NotImplementedError

    def task_arguments(self) -> dict[str, Any]:
        """Arguments of the task that follow from the data (tokenizers, feature settings)."""
        raise NotImplementedError

    def prepare_task(self, task: L.LightningModule) -> None:
        """Copies data statistics into a freshly built task; nothing by default."""

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def write_report(self, run_dir: str | Path) -> Path:
        """Writes every skipped or repaired item to ``<run_dir>/data_report.json``."""
        path = Path(run_dir) / "data_report.json"
        self.report.write(path)
        return path
