"""Forecasting data: a series cut into chronological train, validation and test spans, and
windows of ``history`` past values followed by the ``horizon`` values to predict.

A window belongs to the split that holds all of its targets; its history may reach back into
earlier spans (as it would when forecasting for real). Evaluation scores every forecast origin
of a span (rolling origin, stride 1). The scaler is fitted on the training span only, so nothing
about the validation or test values leaks into training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rnnseq.data.base import SplitDataModule
from rnnseq.data.series import Series, load_series

log = logging.getLogger(__name__)

SCALINGS = ("standard", "none")


class SeriesBatch(NamedTuple):
    """Windows of one series. Values are scaled (see :class:`Scaler`) except ``naive``."""

    history: torch.Tensor  # (B, L) the values before the origin
    target: torch.Tensor  # (B, H) the values to predict
    naive: torch.Tensor  # (B, H) seasonal-naive forecast, in the series' own units
    origins: torch.Tensor  # (B,) long: index in the series of the first target value
    ids: list[str]  # "t=<origin>", for messages about a batch

    @property
    def empty(self) -> bool:
        """Whether the batch holds no window (a rank's share of a short split)."""
        return not self.ids


class Scaler:
    """``(x - mean) / std`` with statistics of the training span (``none``: mean 0, std 1)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean = float(mean)
        self.std = float(std) if std > 1e-12 else 1.0

    @classmethod
    def fit(cls, values: np.ndarray, kind: str = "standard") -> Scaler:
        if kind not in SCALINGS:
            raise ValueError(f"unknown data.scaling {kind!r}; allowed: {list(SCALINGS)}")
        return cls(values.mean(), values.std()) if kind == "standard" else cls()

    def transform(self, values):
        """Values (array or tensor, any shape) in scaled units."""
        return (values - self.mean) / self.std

    def inverse(self, values):
        """Scaled values (array or tensor, any shape) back in the series' units."""
        return values * self.std + self.mean

    def state(self) -> dict[str, float]:
        """``{mean, std}``, as saved in checkpoints."""
        return {"mean": self.mean, "std": self.std}


def seasonal_naive(values: np.ndarray, origins: Sequence[int], horizon: int,
                   season: int) -> np.ndarray:
    """``(N, H)`` forecasts that repeat the last observed season: the value for step ``o + h``
    is the one ``season * (h // season + 1)`` steps earlier, always before the origin ``o``.
    With ``season=1`` this is the naive (last value) forecast."""
    steps = np.arange(horizon)
    lags = season * (steps // season + 1)  # (H,)
    index = np.asarray(origins)[:, None] + steps[None, :] - lags[None, :]
    if (index < 0).any():
        raise ValueError(f"the seasonal-naive forecast needs {season} values before every origin")
    return values[index]


def split_bounds(length: int, splits: Mapping[str, float | int]) -> dict[str, tuple[int, int]]:
    """``{split: (start, end)}`` spans of a series of ``length`` values, in time order train,
    valid, test. A split size below 1 is a fraction of the series, otherwise a count."""
    sizes = {}
    for split in ("valid", "test"):
        size = splits.get(split, 0)
        sizes[split] = int(round(size * length)) if 0 < size < 1 else int(size)
        if sizes[split] < 0:
            raise ValueError(f"data.splits.{split} must be >= 0, got {size}")
    train_end = length - sizes["valid"] - sizes["test"]
    if train_end <= 0:
        raise ValueError(f"data.splits leave no training values ({length} in the series)")
    valid_end = train_end + sizes["valid"]
    return {"train": (0, train_end), "valid": (train_end, valid_end), "test": (valid_end, length)}


class WindowDataset(Dataset):
    """The windows whose first target is at ``origins[i]``; items are origins, batches are built
    by :meth:`collate` (one indexing operation per batch)."""

    def __init__(self, scaled: np.ndarray, values: np.ndarray, origins: Sequence[int],
                 history: int, horizon: int, season: int):
        self.scaled = torch.from_numpy(scaled.astype(np.float32))
        self.origins = np.asarray(origins, dtype=np.int64)
        self.history, self.horizon = history, horizon
        self.naive = torch.from_numpy(seasonal_naive(values, self.origins, horizon, season)
                                      .astype(np.float32))

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, items: list[int]) -> SeriesBatch:
        """The windows of item indices ``items`` as one :class:`SeriesBatch`."""
        origins = torch.from_numpy(self.origins[items])
        past = origins[:, None] + torch.arange(-self.history, 0)  # (B, L)
        future = origins[:, None] + torch.arange(self.horizon)  # (B, H)
        return SeriesBatch(self.scaled[past], self.scaled[future], self.naive[items], origins,
                           [f"t={int(o)}" for o in origins])


class ForecastDataModule(SplitDataModule):
    """Windows of a built-in series (``series``) or of a CSV column (``csv``).

    Args:
        series: ``sunspots``, ``co2`` or ``elnino`` (see :mod:`rnnseq.data.series`).
        csv: ``{path, column, missing}`` of a CSV file with a header row; used instead of
            ``series`` when ``path`` is set.
        season: seasonal period in steps; overrides the built-in series' own.
        history: past values the model reads (L).
        horizon: values it predicts (H).
        splits: sizes of the validation and test spans at the end of the series (fractions
            below 1, else counts); the training span is what is left before them.
        batch_size: windows per training and evaluation batch.
        scaling: ``standard`` (mean and std of the training span) or ``none``.
        seed: shuffles the training windows.
        pin_memory: ``auto`` (pinned batches where the trainer runs on CUDA), ``true`` or
            ``false`` (:meth:`~rnnseq.data.base.SplitDataModule.pins_memory`).
    """

    def __init__(
        self,
        series: str | None = "co2",
        csv: Mapping[str, Any] | None = None,
        season: int | None = None,
        history: int = 48,
        horizon: int = 12,
        splits: Mapping[str, float | int] | None = None,
        batch_size: int = 32,
        scaling: str = "standard",
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool | str = "auto",
    ):
        super().__init__(pin_memory)
        if history < 1 or horizon < 1 or batch_size < 1:
            raise ValueError(f"data.history ({history}), data.horizon ({horizon}) and "
                             f"data.batch_size ({batch_size}) must be positive")
        self.series_name, self.csv, self.season = series, dict(csv) if csv else None, season
        self.history, self.horizon = history, horizon
        self.splits = dict(splits) if splits else {"valid": 0.15, "test": 0.15}
        self.batch_size, self.scaling = batch_size, scaling
        self.seed, self.num_workers = seed, num_workers
        self.series: Series | None = None
        self.scaler: Scaler | None = None
        self.bounds: dict[str, tuple[int, int]] = {}
        self.datasets: dict[str, WindowDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.series is not None:
            return
        series = load_series(self.series_name, self.csv, self.season, self.report)
        self.bounds = split_bounds(len(series.values), self.splits)
        train_start, train_end = self.bounds["train"]
        self.scaler = Scaler.fit(series.values[train_start:train_end], self.scaling)
        scaled = self.scaler.transform(series.values)
        first = max(self.history, series.season)  # both the model and the baseline look back
        for split, (start, end) in self.bounds.items():
            origins = range(max(start, first), end - self.horizon + 1)
            if end > start and len(origins) == 0:
                raise ValueError(
                    f"{series.name}: the {split} span (values {start}-{end - 1}) has no window: "
                    f"it needs {self.horizon} values (data.horizon) after {first} earlier ones "
                    f"(data.history, or the season). Shorten them or change data.splits")
            self.datasets[split] = WindowDataset(scaled, series.values, origins, self.history,
                                                 self.horizon, series.season)
        self.series = series
        log.info("%s: %d values (season %d); windows train %d, valid %d, test %d",
                 series.name, len(series.values), series.season,
                 *(len(self.datasets[s]) for s in ("train", "valid", "test")))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        return self.bucket_loader(
            dataset, [self.history] * len(dataset), shuffle, self.seed,
            dict(max_frames=self.batch_size * self.history, max_batch_size=self.batch_size),
            collate_fn=dataset.collate, num_workers=self.num_workers)

    def task_arguments(self) -> dict[str, Any]:
        s = self.series
        return {"history": self.history, "horizon": self.horizon, "season": s.season,
                "scaler": self.scaler.state(),
                "series": {"name": s.name, "start": s.start, "step": s.step, "unit": s.unit}}
