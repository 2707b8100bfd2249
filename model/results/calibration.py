"""How the model's predictive bands held in a backtest of the same readings and model.

``make validate`` (:mod:`model.validation.runner`) refits the model on the readings before each
of its targets' cut-offs, 0-9 months before the target's field start, and scores each held-out
reading against its predictive bands (``backtest_targets.csv``; each reported answer's prediction
in ``backtest_answers.csv``). A fit's projected curve is the
same kind of prediction made past the last reading, so the report puts those figures beside it:
:func:`find_backtest` finds a run of the same readings and model among a fit's sibling folders,
and :func:`backtest_calibration` reads the model's figures from it. Neighbouring targets share
most of their training readings and the same stretch of the curve, so the coverage's uncertainty
is a Newey-West interval (:func:`newey_west_se`), not a binomial one. Nothing here samples; a fit
without a matching backtest has none (the report says how to measure it).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from model.config import Config, ConfigError, Sampler

#: The folders ``make validate`` writes (``runs/validate-<timestamp>``) and the files read here.
VALIDATE_PREFIX = "validate-"
SETTINGS_FILE = "settings.json"
TARGETS_FILE = "backtest_targets.csv"
#: The backtest's method name of the model itself, and its group of reference-house targets.
MODEL_METHOD = "model"
REFERENCE_TARGETS = "reference"
#: Columns of ``backtest_targets.csv`` read here.
TARGET_COLUMNS = (
    "method",
    "reference",
    "horizon_months",
    "field_start",
    "error",
    "abs_error",
    "covered50",
    "covered90",
)
#: The per-answer predictions (``make validate`` writes them beside the targets), and the columns
#: read from them: each reported answer's observed share and predictive median, in points.
ANSWERS_FILE = "backtest_answers.csv"
ANSWER_COLUMNS = (
    "method",
    "reference",
    "horizon_months",
    "field_start",
    "answer",
    "observed",
    "median",
)
#: Config fields a backtest may differ in from the fit it is shown with: the date the curve runs
#: to (a refit ends at its cut-off) and the sampler's settings (the refits use the backtest's own,
#: recorded as ``backtest_sampler`` in its settings).
NOT_COMPARED = ("through", "sampler")
#: The sampler settings a backtest's refits are compared on with the fit (``Sampler`` fields;
#: besides these, the retry ladder and ``retry_draws``, which a backtest from before they existed
#: does not record: none).
SAMPLING_KEYS = ("nuts_sampler", "chains", "draws", "tune", "target_accept")
#: The central probability of the coverage intervals given with the backtest's figures.
INTERVAL = 0.9


def newey_west_se(values: np.ndarray, lags: int | None = None) -> float:
    r"""The Newey-West (Bartlett-kernel HAC) standard error of the mean of a series in time order.

    .. math::

        \widehat{\mathrm{se}}^2 = \frac{1}{n - 1}\Big(\hat\gamma_0 + 2\sum_{l=1}^{L}
        \big(1 - \tfrac{l}{L+1}\big)\hat\gamma_l\Big), \qquad
        \hat\gamma_l = \frac{1}{n}\sum_{t=l+1}^{n} (x_t - \bar x)(x_{t-l} - \bar x),

    with ``L = floor(4 (n / 100)^(2/9))`` lags unless given (Newey and West's rule: 2 lags for
    13-27 values, 3 for 28-100), so that with ``L = 0`` it is the i.i.d. ``sd / sqrt(n)``. The lags
    count positions in the series, not time: unevenly spaced values are taken as they come.
    NaN for fewer than two values; never below zero (the Bartlett weights keep it non-negative).
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return float("nan")
    if lags is None:
        lags = int(np.floor(4 * (n / 100) ** (2 / 9)))
    lags = min(int(lags), n - 1)
    centred = x - x.mean()
    variance = centred @ centred / n
    for lag in range(1, lags + 1):
        variance += 2 * (1 - lag / (lags + 1)) * (centred[lag:] @ centred[:-lag]) / n
    return float(np.sqrt(max(variance, 0.0) / (n - 1)))


@dataclass(frozen=True)
class BacktestCalibration:
    """The model's backtest figures for reference-house targets, by horizon.

    Attributes
    ----------
    folder : pathlib.Path
        The ``validate-*`` run folder they were read from.
    sampler : dict
        The refits' sampler settings (``backtest_sampler`` in its ``settings.json``).
    code : dict
        The code that ran it (``code`` in its ``settings.json``: :func:`model.provenance.code_version`);
        empty for a backtest from before it was recorded.
    table : pandas.DataFrame
        One row per horizon in months: ``n`` held-out readings scored, ``mae`` (mean absolute
        error of the predictive median, points), ``gate_failures`` (how many of the ``n`` were
        predicted by a refit that missed the diagnostics gate; NaN where the backtest does not
        record it: :func:`gate_failures`), and for the 50% and 90% bands the mean share of a
        reading's reported answers they covered (``coverage50``, ``coverage90``) with its
        :data:`INTERVAL` interval from the Newey-West standard error over the targets in
        field-start order (``coverage50_lower`` ... ``coverage90_upper``, clipped to 0-1), and
        the first and last target's field start (``first_target``, ``last_target``). Where the
        backtest marks its ``confirmation`` targets (the latest reference readings, held back as a
        set of their own), the same figures for them alone: ``latest_n``, ``latest_coverage50``,
        ``latest_coverage90``, ``latest_first``, ``latest_last`` (``latest_n`` 0 where none of them
        was scored at that horizon).
    errors : pandas.DataFrame or None
        Where the bands sat, per horizon and reported answer: ``n`` readings, ``mean_error`` (the
        reported share less the predictive median, points, averaged over the targets: positive
        when the readings came out above the prediction) with its :data:`INTERVAL` interval
        (``lower``, ``upper``) from the Newey-West standard error over the targets in field-start
        order. None for a backtest without ``backtest_answers.csv``.
    """

    folder: Path
    sampler: dict[str, Any]
    table: pd.DataFrame
    errors: pd.DataFrame | None = None
    code: dict[str, Any] = field(default_factory=dict)

    def at(self, months: float) -> pd.Series:
        """The row of the shortest horizon at or past ``months`` (the longest if none is)."""
        horizons = self.table["horizon_months"].to_numpy()
        past = horizons >= months - 1e-9
        row = int(past.argmax()) if past.any() else len(horizons) - 1
        return self.table.iloc[row]

    def errors_at(self, months: float) -> pd.DataFrame:
        """The :attr:`errors` rows of the horizon :meth:`at` reads (none without them)."""
        if self.errors is None:
            return pd.DataFrame(columns=["horizon_months", "answer", "n", "mean_error"])
        horizon = int(self.at(months)["horizon_months"])
        return self.errors[self.errors["horizon_months"] == horizon].reset_index(drop=True)


def gate_failures(targets: pd.DataFrame) -> float:
    """How many of a backtest's scored ``targets`` were predicted by a refit that missed the
    diagnostics gate (``gate_passed`` False); NaN where the table does not record it."""
    if "gate_passed" not in targets:
        return float("nan")
    return int(targets["gate_passed"].eq(False).sum())


def retry_ladder(sampler: Mapping[str, Any]) -> tuple[float, ...]:
    """The settings' ``retry_target_accept`` as :attr:`Sampler.retry_ladder` reads it (a JSON
    list, a number or None)."""
    return Sampler(retry_target_accept=sampler.get("retry_target_accept")).retry_ladder


def sampled_as(refits: Mapping[str, Any], sampler: Sampler) -> bool:
    """Whether a backtest's refits (``backtest_sampler`` in its ``settings.json``) were sampled as
    ``sampler`` sets: the same :data:`SAMPLING_KEYS`, retry ladder and ``retry_draws``."""
    fit = dataclasses.asdict(sampler)
    return (
        all(key in refits and refits[key] == fit[key] for key in SAMPLING_KEYS)
        and retry_ladder(refits) == retry_ladder(fit)
        and refits.get("retry_draws") == fit.get("retry_draws")
    )


def _compared(config: Config) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in NOT_COMPARED}


def _settings(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return None


def _matches(settings: dict[str, Any], data_checksum: str, config: Config) -> bool:
    if settings.get("data_checksum") != data_checksum or not isinstance(
        settings.get("config"), dict
    ):
        return False
    try:  # read as a Config, so a config stored before a field was added compares by its defaults
        stored = Config.from_dict(settings["config"], source=SETTINGS_FILE)
    except (ConfigError, TypeError, ValueError):
        return False
    return _compared(stored) == _compared(config)


def find_backtest(
    runs_dir: str | Path, data_checksum: str, config: Config
) -> BacktestCalibration | None:
    """The backtest in ``runs_dir`` of these readings and this model that the fit is shown with.

    A ``validate-*`` folder matches when its ``settings.json`` records the same table checksum
    (:func:`model.data.polls.table_checksum`) and the same config apart from
    :data:`NOT_COMPARED`, and its ``backtest_targets.csv`` scores the model on reference-house
    targets. Of the matching folders, the newest whose refits were sampled as this fit is set to
    (:func:`sampled_as`) and all passed the diagnostics gate is taken; failing that, the newest
    sampled as this fit; failing that, the newest (the report then gives its figures with how its
    refits were sampled and how many missed the gate): a quick check (``validate --draws 300``)
    run after a whole backtest does not replace it. A backtest that does not record its refits'
    gate results counts as one with failures. A matching folder whose table cannot be read is
    passed over with a warning.

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
    BacktestCalibration or None
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    folders = sorted(
        (p for p in runs_dir.iterdir() if p.is_dir() and p.name.startswith(VALIDATE_PREFIX)),
        key=lambda p: p.name,
        reverse=True,
    )
    fallback: dict[bool, BacktestCalibration] = {}  # the newest sampled as the fit (True) or not
    for folder in folders:
        settings = _settings(folder)
        if settings is None or not _matches(settings, data_checksum, config):
            continue
        if not (folder / TARGETS_FILE).is_file():
            continue
        try:
            found = backtest_calibration(folder)
        except (OSError, ValueError) as err:
            warnings.warn(f"{folder}: backtest not read ({err})", stacklevel=2)
            continue
        if found is None:
            continue
        same = sampled_as(found.sampler, config.sampler)
        if same and (found.table["gate_failures"] == 0).all():
            return found
        fallback.setdefault(same, found)
    return fallback.get(True, fallback.get(False))


def backtest_calibration(folder: str | Path) -> BacktestCalibration | None:
    """The model's figures for reference-house targets in the backtest at ``folder``, by horizon.

    Returns
    -------
    BacktestCalibration or None
        None when the backtest scored no reference target for the model.

    Raises
    ------
    ValueError
        When ``backtest_targets.csv`` lacks one of :data:`TARGET_COLUMNS` (named with the file).
    """
    folder = Path(folder)
    targets = _read_table(folder / TARGETS_FILE, TARGET_COLUMNS)
    scored = targets[
        (targets["method"] == MODEL_METHOD)
        & targets["reference"].astype(bool)
        & (targets["error"].astype("string").fillna("") == "")
        & targets["covered90"].notna()
    ]
    if not len(scored):
        return None
    z = float(ndtri(0.5 + INTERVAL / 2))  # 1.645 for a 90% interval
    rows = []
    for horizon, group in scored.groupby("horizon_months", sort=True):
        group = group.sort_values("field_start", kind="stable")
        row: dict[str, Any] = {
            "horizon_months": int(horizon),
            "n": len(group),
            "mae": float(group["abs_error"].mean()),
            "gate_failures": gate_failures(group),
        }
        for level in (50, 90):
            mean, lower, upper = _mean_and_interval(group[f"covered{level}"], z)
            row[f"coverage{level}"] = mean
            row[f"coverage{level}_lower"] = np.nan if np.isnan(lower) else max(lower, 0.0)
            row[f"coverage{level}_upper"] = np.nan if np.isnan(upper) else min(upper, 1.0)
        row["first_target"] = pd.Timestamp(group["field_start"].iloc[0])
        row["last_target"] = pd.Timestamp(group["field_start"].iloc[-1])
        if "confirmation" in group:
            latest = group[group["confirmation"].astype(bool)]
            row["latest_n"] = len(latest)
            scored = len(latest) > 0
            for level in (50, 90):
                row[f"latest_coverage{level}"] = (
                    float(latest[f"covered{level}"].mean()) if scored else np.nan
                )
            starts = latest["field_start"]
            row["latest_first"] = pd.Timestamp(starts.iloc[0]) if scored else pd.NaT
            row["latest_last"] = pd.Timestamp(starts.iloc[-1]) if scored else pd.NaT
        rows.append(row)
    settings = _settings(folder) or {}
    return BacktestCalibration(
        folder=folder,
        sampler=dict(settings.get("backtest_sampler") or {}),
        table=pd.DataFrame(rows),
        errors=_answer_errors(folder / ANSWERS_FILE, z),
        code=dict(settings.get("code") or {}),
    )


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A backtest's CSV table, with every one of ``columns`` (else a ValueError naming the file)."""
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}; expected {list(columns)}")
    return table


def _mean_and_interval(values, z: float) -> tuple[float, float, float]:
    """The mean of ``values`` (in field-start order) and its ``z`` interval from the Newey-West
    standard error (:func:`newey_west_se`; NaN ends for fewer than two values)."""
    x = np.asarray(values, dtype=float)
    mean, se = float(x.mean()), newey_west_se(x)
    return mean, mean - z * se, mean + z * se


def _answer_errors(path: Path, z: float) -> pd.DataFrame | None:
    """:attr:`BacktestCalibration.errors` from ``backtest_answers.csv`` (None if there is none)."""
    if not path.is_file():
        return None
    answers = _read_table(path, ANSWER_COLUMNS)
    scored = answers[
        (answers["method"] == MODEL_METHOD)
        & answers["reference"].astype(bool)
        & answers["observed"].notna()
        & answers["median"].notna()
    ]
    rows = []
    for (horizon, answer), group in scored.groupby(["horizon_months", "answer"], sort=False):
        group = group.sort_values("field_start", kind="stable")
        mean, lower, upper = _mean_and_interval(group["observed"] - group["median"], z)
        rows.append(
            {
                "horizon_months": int(horizon),
                "answer": answer,
                "n": len(group),
                "mean_error": mean,
                "lower": lower,
                "upper": upper,
            }
        )
    columns = ["horizon_months", "answer", "n", "mean_error", "lower", "upper"]
    # Horizons in order, answers in the order the file first gives them.
    return (
        pd.DataFrame(rows, columns=columns)
        .sort_values("horizon_months", kind="stable")
        .reset_index(drop=True)
    )
