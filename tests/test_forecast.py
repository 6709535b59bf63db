"""Forecasting: series files, windows and scaler, the seasonal-naive baseline and the scores by
hand, the forecaster's shapes and invariances, and `experiment=forecast` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.data.forecast import ForecastDataModule, Scaler, seasonal_naive, split_bounds
from rnnseq.data.manifest import DataReport
from rnnseq.data.series import BUILTIN_SERIES, load_series, read_csv_column
from rnnseq.evaluation import evaluate
from rnnseq.models.attention import AdditiveAttention
from rnnseq.models.encoder import RecurrentEncoder
from rnnseq.models.forecaster import RegressionDecoder, Seq2SeqForecaster
from tests.test_train_smoke import run_train

TINY_FORECASTER = ["model.encoder.hidden_size=8", "model.decoder.hidden_size=8"]


def _write_csv(path: Path, values, column: str = "load") -> Path:
    lines = [f"month,{column}"] + [f"{i},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def seasonal_series(length: int, season: int = 12, trend: float = 0.05, seed: int = 0):
    """A rising trend plus a yearly wave plus a little noise."""
    t = np.arange(length)
    noise = np.random.default_rng(seed).normal(0, 0.1, length)
    return 10 + trend * t + np.sin(2 * np.pi * t / season) + noise


def test_seasonal_naive_repeats_the_last_observed_season():
    values = np.arange(20.0)
    # season 4, origin 8 (first target): steps 8..13 read 4,5,6,7 then 4,5 again
    np.testing.assert_array_equal(seasonal_naive(values, [8], 6, 4), [[4, 5, 6, 7, 4, 5]])
    np.testing.assert_array_equal(seasonal_naive(values, [5, 9], 2, 1), [[4, 4], [8, 8]])
    with pytest.raises(ValueError, match="needs 4 values before"):
        seasonal_naive(values, [3], 2, 4)


def test_forecast_scores_by_hand():
    predictions = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    truth = torch.ones(2, 2)
    naive = torch.full((2, 2), 2.0)
    scores = M.forecast_scores(predictions, truth, naive)
    assert scores.mae == pytest.approx(1.5)  # errors 0, 1, 2, 3
    assert scores.rmse == pytest.approx(math.sqrt(3.5))
    assert (scores.naive_mae, scores.naive_rmse) == (1.0, 1.0)
    assert scores.mae_ratio == pytest.approx(1.5)
    assert scores.rmse_ratio == pytest.approx(math.sqrt(3.5))
    assert scores.forecasts == 2
    with pytest.raises(ValueError, match="shapes differ"):
        M.forecast_scores(predictions, truth[:1], naive)


def test_split_bounds_take_fractions_or_counts_in_time_order():
    assert split_bounds(100, {"valid": 0.1, "test": 0.2}) == {
        "train": (0, 70), "valid": (70, 80), "test": (80, 100)}
    assert split_bounds(100, {"valid": 5, "test": 10})["test"] == (90, 100)
    with pytest.raises(ValueError, match="no training values"):
        split_bounds(10, {"valid": 5, "test": 5})


def test_scaler_is_fitted_on_the_training_span_only(tmp_path):
    values = np.concatenate([np.full(60, 1.0) + np.arange(60) % 2, np.full(40, 1000.0)])
    csv = _write_csv(tmp_path / "jump.csv", values)
    data = ForecastDataModule(series=None, csv={"path": str(csv), "column": "load"}, season=2,
                              history=6, horizon=3, splits={"valid": 20, "test": 20})
    data.setup("fit")
    assert data.scaler.mean == pytest.approx(1.5) and data.scaler.std == pytest.approx(0.5)
    assert data.bounds == {"train": (0, 60), "valid": (60, 80), "test": (80, 100)}
    batch = next(iter(data.test_dataloader()))
    # every target lies in the test span; histories may reach back into earlier spans
    assert int(batch.origins.min()) >= 80 and int(batch.origins.max()) + 3 <= 100
    assert len(data.datasets["test"]) == 20 - 3 + 1
    first = data.datasets["valid"].collate([0])
    assert int(first.origins[0]) == 60
    torch.testing.assert_close(data.scaler.inverse(first.history[0]),
                               torch.tensor(values[54:60], dtype=torch.float32))
    torch.testing.assert_close(first.naive[0], torch.tensor(values[[58, 59, 58]], dtype=torch.float32))
    assert Scaler.fit(values, "none").state() == {"mean": 0.0, "std": 1.0}


def test_csv_problems_name_the_file_line_and_fix(tmp_path):
    csv = tmp_path / "gaps.csv"
    csv.write_text("month,load\n0,1.0\n1,\n2,3.0\n3,NA\n4,5.5\n")
    with pytest.raises(ValueError,
                       match=r"gaps.csv: line 3 has no value \(2 missing.*data\.csv\.missing=interpolate"):
        read_csv_column(csv, "load")
    report = DataReport()
    filled = read_csv_column(csv, "load", "interpolate", report)
    np.testing.assert_allclose(filled, [1.0, 2.0, 3.0, 4.25, 5.5])
    assert report.counts() == {"interpolated": 2}
    np.testing.assert_allclose(read_csv_column(csv, 1, "drop"), [1.0, 3.0, 5.5])
    with pytest.raises(ValueError, match=r"no column 'demand'.*\['month', 'load'\]"):
        read_csv_column(csv, "demand")
    csv.write_text("month,load\n0,1.0\n1,lots\n")
    with pytest.raises(ValueError, match="line 3, column 'load': 'lots' is not a number"):
        read_csv_column(csv, "load")
    with pytest.raises(FileNotFoundError, match="data.csv.path"):
        read_csv_column(tmp_path / "none.csv", "load")
    with pytest.raises(ValueError, match="seasonal period"):
        load_series(None, {"path": str(csv), "column": "load"})
    with pytest.raises(ValueError, match="unknown data.series 'ozone'.*co2"):
        load_series("ozone")


def test_windows_that_do_not_fit_fail_naming_the_settings(tmp_path):
    csv = _write_csv(tmp_path / "short.csv", np.arange(30.0))
    data = ForecastDataModule(series=None, csv={"path": str(csv), "column": "load"}, season=1,
                              history=8, horizon=6, splits={"valid": 4, "test": 6})
    with pytest.raises(ValueError, match=r"valid span \(values 20-23\) has no window.*data.horizon"):
        data.setup("fit")


@pytest.mark.parametrize("name, length, season", [("sunspots", 309, 11), ("co2", 526, 12),
                                                   ("elnino", 732, 12)])
def test_builtin_series_load_without_gaps(name, length, season):
    series = BUILTIN_SERIES[name]()
    assert len(series.values) == length and series.season == season
    assert np.isfinite(series.values).all() and series.unit == "year"
    assert load_series(name, season=6).season == 6


def _forecaster(attention: bool, anchor: str = "last") -> Seq2SeqForecaster:
    encoder = RecurrentEncoder(input_dim=3, hidden_size=6, num_layers=1, subsampling="none",
                               dropout=0.0)
    partial = (lambda **sizes: AdditiveAttention(attention_dim=5, **sizes)) if attention else None
    decoder = RegressionDecoder(encoder.output_dim, step_features=2, hidden_size=7, dropout=0.0,
                                attention=partial)
    return Seq2SeqForecaster(encoder, decoder, horizon=4, season=12, anchor=anchor).eval()


@pytest.mark.parametrize("attention", [False, True])
def test_forecaster_shapes_and_anchoring(attention):
    torch.manual_seed(0)
    model = _forecaster(attention)
    history, origins = torch.randn(3, 10), torch.tensor([10, 11, 30])
    forecast, weights = model(history, origins, return_attention=True)
    assert forecast.shape == (3, 4)
    if attention:
        assert weights.shape == (3, 4, 10)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    else:
        assert weights is None
    # anchored on the last value: a shifted history gives the same forecast, shifted
    torch.testing.assert_close(model(history + 5.0, origins), forecast + 5.0)
    # the calendar features: the same window a season later gives the same forecast
    torch.testing.assert_close(model(history, origins + 12), forecast)
    unanchored = _forecaster(attention, anchor="none")
    assert not torch.allclose(unanchored(history + 5.0, origins), unanchored(history, origins) + 5.0)


def test_forecast_experiment_runs_end_to_end_with_a_plot(tmp_path, data_dir):
    run = tmp_path / "run"
    run_train(run, data_dir, "trainer.fast_dev_run=2", experiment="forecast", tiny=TINY_FORECASTER)
    results = json.loads((run / "results.json").read_text())
    assert set(results["test"]) == {M.TEST_MAE, M.TEST_RMSE, M.TEST_MAE_RATIO, M.TEST_RMSE_RATIO}
    items = json.loads((run / "test_outputs.json").read_text())["items"]
    assert len(items[0]["forecast"]) == len(items[0]["truth"]) == 12
    # the scores are those of the forecasts written out, computed anew, and of the model's own
    # forecasts: not all 0, not one constant (a model that outputs 0 gives the scaler's mean
    # everywhere), not the seasonal-naive ones
    forecast, truth, naive = (torch.tensor([i[key] for i in items], dtype=torch.float64)
                              for key in ("forecast", "truth", "seasonal_naive"))
    mae = float((forecast - truth).abs().mean())
    rmse = float((forecast - truth).pow(2).mean().sqrt())
    naive_mae = float((naive - truth).abs().mean())
    assert results["test"][M.TEST_MAE] == pytest.approx(mae, rel=1e-6)
    assert results["test"][M.TEST_RMSE] == pytest.approx(rmse, rel=1e-6)
    assert results["test"][M.TEST_MAE_RATIO] == pytest.approx(mae / naive_mae, rel=1e-6)
    assert forecast.abs().max() > 0 and forecast.std() > 0
    assert (forecast - naive).abs().max() > 1e-3
    assert 1995 < items[0]["time"] < 2002  # co2's test span
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"val/forecast", "test/forecast"} <= set(events.Tags()["images"])
    # the checkpoint scores again without its training run: python -m rnnseq.evaluate run=<run>
    record = evaluate(run, {}, split="valid")
    assert set(record["metrics"]) == {"valid/mae", "valid/rmse", "valid/mae_vs_naive",
                                      "valid/rmse_vs_naive"}
    assert record["items_scored"] == 79 - 12 + 1  # every origin of co2's 79 validation months
    with pytest.raises(ValueError, match="no decoding settings"):
        evaluate(run, {"beam_size": 2})


def test_forecaster_learns_a_seasonal_csv_series_better_than_seasonal_naive(tmp_path, data_dir):
    """A trend the seasonal-naive forecast lags behind; a tiny model learns it in seconds."""
    csv = _write_csv(tmp_path / "demand.csv", seasonal_series(240))
    run = tmp_path / "csv"
    run_train(run, data_dir, f"data.csv.path={csv}", "data.csv.column=load",
              "data.season=12", "data.history=24", "~model/attention", "trainer.max_epochs=25",
              "task.scheduler.warmup_steps=10", "model.encoder.hidden_size=16",
              "model.decoder.hidden_size=16", experiment="forecast", tiny=[])
    test = json.loads((run / "results.json").read_text())["test"]
    assert test[M.TEST_MAE_RATIO] < 0.8 and test[M.TEST_RMSE_RATIO] < 0.8


@pytest.mark.slow
def test_co2_recipe_beats_seasonal_naive(tmp_path, data_dir):
    run = tmp_path / "co2"
    run_train(run, data_dir, experiment="forecast", tiny=[])
    test = json.loads((run / "results.json").read_text())["test"]
    assert test[M.TEST_MAE_RATIO] < 0.6 and test[M.TEST_RMSE_RATIO] < 0.6
