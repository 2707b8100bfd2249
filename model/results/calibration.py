"""How the model's predictive bands held in a backtest of the same readings and settings.

``make validate`` (:mod:`model.validation.runner`) refits the model on the readings before each
of its targets' cut-offs, 0-9 months before the target's field start, and scores each held-out
reading against its predictive band (``backtest_horizons.csv``). A fit's projected curve is the
same kind of prediction made past the last reading, so the report puts those figures beside it:
:func:`find_backtest` finds a run of the same readings and model settings among a fit's sibling
folders, and :func:`backtest_calibration` reads the model's figures from it. Nothing here
samples; a fit without a matching backtest has none (the report says how to measure it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from model.config import Config, config_hash

#: The folders ``make validate`` writes (``runs/validate-<timestamp>``) and the files read here.
VALIDATE_PREFIX = "validate-"
SETTINGS_FILE = "settings.json"
HORIZONS_FILE = "backtest_horizons.csv"
#: The backtest's method name of the model itself, and its group of reference-house targets.
MODEL_METHOD = "model"
REFERENCE_TARGETS = "reference"
#: Columns of ``backtest_horizons.csv`` read here (coverage intervals: 90% Wilson).
COLUMNS = (
    "horizon_months",
    "n",
    "mae",
    "coverage50",
    "coverage50_lower",
    "coverage50_upper",
    "coverage90",
    "coverage90_lower",
    "coverage90_upper",
)


@dataclass(frozen=True)
class BacktestCalibration:
    """The model's backtest figures for reference-house targets, by horizon.

    Attributes
    ----------
    folder : pathlib.Path
        The ``validate-*`` run folder they were read from.
    created : str
        When that run was written (its folder's timestamp).
    table : pandas.DataFrame
        One row per horizon in months (:data:`COLUMNS`): targets scored, mean absolute error in
        points, and the share of held-out readings inside the 50% and 90% predictive bands with
        its 90% Wilson interval.
    """

    folder: Path
    created: str
    table: pd.DataFrame

    def at(self, months: float) -> pd.Series:
        """The row of the shortest horizon at or past ``months`` (the longest if none is)."""
        horizons = self.table["horizon_months"].to_numpy()
        past = horizons >= months - 1e-9
        row = int(past.argmax()) if past.any() else len(horizons) - 1
        return self.table.iloc[row]


def _matches(folder: Path, data_checksum: str, config: Config) -> bool:
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        (folder / HORIZONS_FILE).is_file()
        and settings.get("data_checksum") == data_checksum
        and isinstance(settings.get("config"), dict)
        and config_hash(settings["config"]) == config.replace(through=None).hash()
    )


def find_backtest(runs_dir: str | Path, data_checksum: str, config: Config) -> Path | None:
    """The newest ``validate-*`` folder in ``runs_dir`` that backtested these readings with this config.

    A backtest matches when its ``settings.json`` records the same table checksum
    (:func:`model.data.polls.table_checksum`) and the same config apart from ``through`` (a
    backtest's refits end at their cut-offs), and it wrote ``backtest_horizons.csv``.

    Parameters
    ----------
    runs_dir : path
        The folder holding run folders (a fit's parent).
    data_checksum : str
        The fit's ``data_checksum`` attribute.
    config : Config
        The fit's config.

    Returns
    -------
    pathlib.Path or None
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    folders = sorted(
        (p for p in runs_dir.iterdir() if p.is_dir() and p.name.startswith(VALIDATE_PREFIX)),
        key=lambda p: p.name,
        reverse=True,
    )
    return next((p for p in folders if _matches(p, data_checksum, config)), None)


def backtest_calibration(folder: str | Path) -> BacktestCalibration | None:
    """The model's figures for reference-house targets in the backtest at ``folder``, by horizon.

    Returns
    -------
    BacktestCalibration or None
        None when the backtest scored no reference target for the model.

    Raises
    ------
    ValueError
        When ``backtest_horizons.csv`` lacks one of :data:`COLUMNS` (named with the file).
    """
    folder = Path(folder)
    path = folder / HORIZONS_FILE
    table = pd.read_csv(path)
    missing = [c for c in ("method", "targets", *COLUMNS) if c not in table]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}; expected {list(COLUMNS)}")
    rows = table[
        (table["method"] == MODEL_METHOD)
        & (table["targets"] == REFERENCE_TARGETS)
        & (table["n"] > 0)
    ]
    if not len(rows):
        return None
    rows = rows.loc[:, list(COLUMNS)].sort_values("horizon_months").reset_index(drop=True)
    return BacktestCalibration(
        folder=folder, created=folder.name.removeprefix(VALIDATE_PREFIX), table=rows
    )
