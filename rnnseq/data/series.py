"""Time series for forecasting: the classic series bundled with statsmodels (read as plain CSV,
without importing statsmodels or pandas), or one column of any CSV file.

A :class:`Series` is a regularly spaced sequence of floats with its seasonal period and a time
axis (``start + index * step``, e.g. decimal years) for plots.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnseq.data.manifest import DataReport

MISSING_POLICIES = ("error", "interpolate", "drop")
MISSING_MARKERS = ("", "na", "nan", "null", "none", "?")


@dataclass
class Series:
    """One univariate series.

    Attributes:
        name: for logs and plot titles.
        values: ``(T,)`` float64, no missing values.
        season: the seasonal period in steps (12 for monthly data), used by the seasonal-naive
            baseline and the calendar features.
        start, step: the time of value ``i`` is ``start + i * step`` (for plots).
        unit: of that time axis ("year", "step").
    """

    name: str
    values: np.ndarray
    season: int
    start: float = 0.0
    step: float = 1.0
    unit: str = "step"

    def __post_init__(self):
        if self.season < 1:
            raise ValueError(f"the seasonal period must be >= 1, got {self.season} for {self.name}")

    def times(self, index: np.ndarray | int) -> np.ndarray | float:
        """The time (e.g. decimal year) of one position or an array of positions."""
        return self.start + np.asarray(index) * self.step


def statsmodels_dataset_dir(name: str) -> Path:
    """Folder of one statsmodels dataset, found without importing statsmodels."""
    spec = importlib.util.find_spec("statsmodels")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the built-in series ship with statsmodels, which is not installed: pip install "
            "statsmodels (it is a dependency of rnnseq; reinstall with pip install -e .)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / name


def parse_value(text: str) -> float | None:
    """A float, or ``None`` for a missing value (empty, NA, NaN, null, ?)."""
    if text.strip().lower() in MISSING_MARKERS:
        return None
    value = float(text)
    return None if math.isnan(value) else value


def fill_missing(values: list[float | None], policy: str, source: str,
                 report: DataReport | None = None, lines: list[int] | None = None) -> np.ndarray:
    """Resolves the ``None`` entries of ``values``: ``error`` refuses them (naming the first line),
    ``interpolate`` fills them linearly between their neighbours (the ends copy the nearest value),
    ``drop`` leaves them out. Filled or dropped points are listed in ``report``."""
    if policy not in MISSING_POLICIES:
        raise ValueError(f"unknown data.csv.missing {policy!r}; allowed: {list(MISSING_POLICIES)}")
    lines = lines if lines is not None else list(range(1, len(values) + 1))
    gaps = [i for i, v in enumerate(values) if v is None]
    if gaps and policy == "error":
        raise ValueError(
            f"{source}: line {lines[gaps[0]]} has no value ({len(gaps)} missing in all). Fill the "
            f"gaps, or set data.csv.missing=interpolate (or drop)")
    if len(gaps) == len(values):
        raise ValueError(f"{source}: no values at all")
    if report is not None:
        for i in gaps:
            report.add(source, lines[i], "missing value",
                       "interpolated" if policy == "interpolate" else "skipped")
    if policy == "drop":
        return np.array([v for v in values if v is not None], dtype=np.float64)
    known = np.array([i for i, v in enumerate(values) if v is not None])
    return np.interp(np.arange(len(values)), known,
                     np.array([values[i] for i in known], dtype=np.float64))


def read_csv_column(path: str | Path, column: str | int, missing: str = "error",
                    report: DataReport | None = None) -> np.ndarray:
    """The values of one column of a CSV file with a header row; ``column`` is its name or its
    0-based position. Rows are taken in file order (oldest first)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CSV file (data.csv.path)")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header row and at least one row of values")
    header = [h.strip() for h in rows[0]]
    if isinstance(column, int) or str(column).isdigit():
        index = int(column)
        if index >= len(header):
            raise ValueError(f"{path}: column {index} does not exist ({len(header)} columns)")
    elif column in header:
        index = header.index(column)
    else:
        raise ValueError(f"{path}: no column {column!r} (data.csv.column); columns: {header}")
    values: list[float | None] = []
    lines: list[int] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank line
        text = row[index] if index < len(row) else ""
        try:
            values.append(parse_value(text))
        except ValueError:
            raise ValueError(f"{path}: line {line}, column {header[index]!r}: {text!r} is not a "
                             f"number") from None
        lines.append(line)
    return fill_missing(values, missing, str(path), report, lines)


def sunspots(report: DataReport | None = None) -> Series:
    """Yearly mean sunspot numbers, 1700-2008 (309 values); the solar cycle is about 11 years."""
    path = statsmodels_dataset_dir("sunspots") / "sunspots.csv"
    return Series("sunspots", read_csv_column(path, "SUNACTIVITY", report=report), season=11,
                  start=1700.0, step=1.0, unit="year")


def co2(report: DataReport | None = None) -> Series:
    """Mauna Loa CO2 (ppm), weekly readings 1958-2001 averaged per month (526 values; months
    without any reading are interpolated and reported)."""
    path = statsmodels_dataset_dir("co2") / "co2.csv"
    by_month: dict[tuple[int, int], list[float]] = defaultdict(list)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            value = parse_value(row["co2"])
            date = row["date"]
            if value is not None:
                by_month[(int(date[:4]), int(date[4:6]))].append(value)
            else:
                by_month.setdefault((int(date[:4]), int(date[4:6])), [])
    first, last = min(by_month), max(by_month)
    months = [(y, m) for y in range(first[0], last[0] + 1) for m in range(1, 13)
              if first <= (y, m) <= last]
    means = [float(np.mean(by_month[k])) if by_month.get(k) else None for k in months]
    values = fill_missing(means, "interpolate", str(path), report,
                          lines=[y * 100 + m for y, m in months])  # "line" = YYYYMM
    return Series("co2", values, season=12, start=first[0] + (first[1] - 1) / 12, step=1 / 12,
                  unit="year")


def elnino(report: DataReport | None = None) -> Series:
    """Monthly sea surface temperature (deg C) of the El Nino region, 1950-2010 (732 values)."""
    path = statsmodels_dataset_dir("elnino") / "elnino.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    values = [parse_value(v) for row in rows[1:] if row for v in row[1:13]]
    first_year = int(float(rows[1][0]))
    return Series("elnino", fill_missing(values, "error", str(path), report), season=12,
                  start=float(first_year), step=1 / 12, unit="year")


BUILTIN_SERIES = {"sunspots": sunspots, "co2": co2, "elnino": elnino}


def load_series(name: str | None = None, csv_file: dict | None = None, season: int | None = None,
                report: DataReport | None = None) -> Series:
    """A CSV column when ``csv_file`` has a ``path`` (and ``column``, optional ``missing``),
    else the built-in series ``name``; ``season`` overrides the period (required for a CSV)."""
    if csv_file and csv_file.get("path"):
        if csv_file.get("column") is None:
            raise ValueError("data.csv.column is missing: the column's header name or its "
                             "0-based index")
        if not season:
            raise ValueError("a CSV series needs its seasonal period: data.season=12 for monthly "
                             "data with a yearly cycle (1 for no seasonality)")
        values = read_csv_column(csv_file["path"], csv_file["column"],
                                 csv_file.get("missing", "error"), report)
        return Series(Path(csv_file["path"]).stem, values, season=int(season))
    if name not in BUILTIN_SERIES:
        raise ValueError(f"unknown data.series {name!r}; built in: {sorted(BUILTIN_SERIES)} "
                         f"(or give a CSV file: data.csv.path=... data.csv.column=...)")
    series = BUILTIN_SERIES[name](report)
    if season:
        series.season = int(season)
    return series
