"""Multi-step forecasting as a LightningModule: mean squared error on scaled values in training,
MAE and RMSE in the series' own units (and their ratio to the seasonal-naive baseline) over
whole validation and test spans."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnseq import metrics as M
from rnnseq.data.forecast import Scaler, SeriesBatch
from rnnseq.models.forecaster import build_forecaster
from rnnseq.tasks.base import Task, gather_rows, to_plain
from rnnseq.tasks.scheduled_sampling import check_scheduled_sampling, sampling_probability


class Forecasting(Task):
    """Predicts the next ``horizon`` values of a series from the ``history`` before them.

    The checkpoint holds what forecasting new data needs: model config, window sizes, season
    and the training span's scaler.

    Args:
        model: the ``model`` config group (see :func:`~rnnseq.models.forecaster.build_forecaster`).
        history, horizon, season, scaler, series: from the datamodule.
        optimizer, scheduler: as for every task.
        scheduled_sampling: ``probability`` (of the decoder reading its own prediction),
            ``schedule``, ``ramp_steps`` (:mod:`rnnseq.tasks.scheduled_sampling`); ``None``: 1,
            the decoder always reads its own predictions, in training as in forecasting.
    """

    MONITOR = M.VAL_LOSS
    VALIDATION_LOGGED = (M.VAL_LOSS, M.VAL_MAE, M.VAL_RMSE, M.VAL_MAE_RATIO, M.VAL_RMSE_RATIO)
    PROGRESS_BAR_METRICS = (M.VAL_MAE, M.VAL_MAE_RATIO)

    def __init__(
        self,
        model: Mapping[str, Any],
        history: int,
        horizon: int,
        season: int,
        scaler: Mapping[str, float],
        series: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        scheduled_sampling: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters({
            "model": to_plain(model), "history": history, "horizon": horizon, "season": season,
            "scaler": dict(scaler), "series": to_plain(series), "optimizer": to_plain(optimizer),
            "scheduler": to_plain(scheduler),
            "scheduled_sampling": check_scheduled_sampling(to_plain(scheduled_sampling),
                                                           default_probability=1.0),
        })
        self.model = build_forecaster(self.hparams.model, horizon, season)
        self.scaler = Scaler(**scaler)
        # per batch: (origins, forecasts, truth, seasonal naive), device tensors until the end
        self._rows: list[tuple[torch.Tensor, ...]] = []
        self.last_scores: dict[str, M.ForecastScores] = {}
        self.last_forecasts: dict[str, dict[str, torch.Tensor]] = {}
        self.test_results: list[dict] = []

    def forward(self, batch: SeriesBatch) -> torch.Tensor:
        """``(B, H)`` forecasts of a batch, scaled like the data."""
        return self.model(batch.history, batch.origins)

    def forecast(self, batch: SeriesBatch) -> torch.Tensor:
        """``(B, H)`` forecasts in the series' own units."""
        return self.scaler.inverse(self(batch))

    @functools.cached_property
    def scheduled_sampling(self) -> dict:
        """The checked ``scheduled_sampling`` settings, checked once (none given: probability 1,
        the decoder's own predictions, as at inference)."""
        return check_scheduled_sampling(self.hparams.get("scheduled_sampling"),
                                        default_probability=1.0)

    def training_loss(self, batch: SeriesBatch) -> torch.Tensor:
        predicted = self.model(batch.history, batch.origins, targets=batch.target,
                               sampling_probability=sampling_probability(
                                   self.scheduled_sampling, self.global_step))
        loss = F.mse_loss(predicted.float(), batch.target)
        self.log(M.TRAIN_LOSS, loss, batch_size=len(batch.ids))  # shown by callbacks.ProgressBar
        return loss

    # -- evaluation -----------------------------------------------------------------------------
    def evaluation_step(self, batch: SeriesBatch, split: str) -> None:
        predicted = self(batch).float()
        if split == "val":
            b = len(batch.ids)
            self.accumulate(loss=F.mse_loss(predicted, batch.target) * b, items=b)
        # kept on the device until the span ends: one host read per pass, not per batch
        self._rows.append((batch.origins, self.scaler.inverse(predicted),
                           self.scaler.inverse(batch.target), batch.naive))

    def end_evaluation(self, split: str) -> M.ForecastScores:
        if split == "val":
            self.log(M.VAL_LOSS, self.mean_loss(), prog_bar=True)
        own = [row for parts in self._rows
               for row in zip(*(part.tolist() for part in parts))]
        rows = sorted(gather_rows(own))  # every rank scores the whole span, in time order
        horizon = self.hparams.horizon
        # host: the whole span, gathered from every rank, is scored on the host
        origins = torch.tensor([r[0] for r in rows], dtype=torch.long)
        # host: as above
        forecasts, truth, naive = (torch.tensor([r[i] for r in rows]).view(-1, horizon)
                                   for i in (1, 2, 3))
        scores = M.forecast_scores(forecasts, truth, naive)
        self.last_scores[split] = scores
        self.last_forecasts[split] = {"origins": origins, "forecast": forecasts, "truth": truth,
                                      "naive": naive}
        prefix = split.upper()
        for key, value in (("MAE", scores.mae), ("RMSE", scores.rmse),
                           ("MAE_RATIO", scores.mae_ratio), ("RMSE_RATIO", scores.rmse_ratio)):
            name = M.metric_name(f"{prefix}_{key}")
            self.log(name, value, prog_bar=name in self.PROGRESS_BAR_METRICS)
        if split == "test":
            self.test_results = [{"origin": o, "time": self.time_of(o), "forecast": f,
                                  "truth": t, "seasonal_naive": n} for o, f, t, n in rows]
        return scores

    def time_of(self, position: int) -> float:
        """The time (e.g. decimal year) of a series position."""
        series = self.hparams.series
        return series["start"] + position * series["step"]

    def start_evaluation(self, split: str) -> None:
        self._rows = []
