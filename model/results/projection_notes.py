"""What a backtest says of a projected curve's band, in sentences: the headline's caveat (the
report's and ``summary.txt``'s) and the report's curve-section paragraph.

The figures are :class:`~model.results.calibration.BacktestCalibration`'s, read from a
``validate-*`` folder of the same readings and model (:func:`~model.results.calibration.find_backtest`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from model.config import BACKTEST_HORIZONS, DAYS_PER_MONTH
from model.results.calibration import (
    SAMPLING_KEYS,
    BacktestCalibration,
    retry_ladder,
    sampled_as,
)
from model.results.headline import signed_points

if TYPE_CHECKING:
    from model.results.fit_result import FitResult


def _held(lower: float, upper: float, level: float, n: int) -> str:
    """A band's backtest coverage against its level, in words (``lower``-``upper``: its 90%
    interval over ``n`` held-out readings)."""
    if upper < level:
        return "too narrow"
    if lower > level:
        return "too wide"
    return f"consistent with {level:.0%} at {n} readings"


def projection_calibration(
    result: FitResult, calibration: BacktestCalibration | None, *, short: bool = False
) -> list[str]:
    """What the backtest says about a projected curve's band, in sentences (none unless projected).

    ``short``: one sentence for the headline's caveats (the report's and ``summary.txt``'s;
    without a backtest, that it is not measured); else the report's curve-section paragraph,
    which says how to measure it where no backtest matches.
    """
    head = result.headline()
    if not head["projected"]:
        return []
    months = head["days_past_last_reading"] / DAYS_PER_MONTH
    if calibration is None:
        if result.design.reference_pollster is None:
            # The backtest scores predictions of a reference house's readings: it refuses
            # zero-sum and anchored configs.
            how = (
                "a backtest needs the curve's level fixed by a reference house (config "
                "house_effects = '<pollster>'), whose held-out readings it predicts"
            )
        elif short:
            how = (
                "python -m model validate with this run's table and config measures it; make "
                "validate on the project's own"
            )
        else:
            return [
                "How well such a projection holds has not been measured for these readings and this model: "
                "python -m model validate --data <this table> --config <this config> --runs-dir <the "
                "folder holding this run> (make validate, on the project's own table) backtests the "
                "model (refits on the readings before each cut-off, held-out readings predicted "
                f"{min(BACKTEST_HORIZONS)}-{max(BACKTEST_HORIZONS)} months later), and this report, "
                "drawn again, shows its figures here."
            ]
        if short:
            return [
                f"How well a band {months:.1f} months past the last reading holds is not measured "
                f"for these readings and this model: no backtest of them was found beside this run ({how})."
            ]
        return [
            "How well such a projection holds has not been measured for these readings and this "
            f"model: {how}."
        ]
    row = calibration.at(months)
    horizon = int(row["horizon_months"])
    horizons = calibration.table["horizon_months"]
    span = f"{int(horizons.min())}-{int(horizons.max())}"
    figures = (
        f"the model's 90% bands for a new reading {horizon} months past the data covered "
        f"{row['coverage90']:.0%} of the reported shares of {int(row['n'])} held-out readings "
        f"({_held(row['coverage90_lower'], row['coverage90_upper'], 0.9, int(row['n']))}) and its 50% bands "
        f"{row['coverage50']:.0%} ({_held(row['coverage50_lower'], row['coverage50_upper'], 0.5, int(row['n']))})"
        + _latest_coverage(row)
    )
    if months > horizons.max():
        where = (
            f"This curve ends {months:.1f} months past its last reading, longer than the backtest's "
            f"longest horizon ({horizon} months): {figures}."
        )
    else:
        where = (
            f"This curve ends {months:.1f} months past its last reading; at the backtest's shortest "
            f"horizon at or past that, {figures}."
        )
    refits, same = _refit_sampling(calibration, result)
    code = _backtest_code(calibration, result) + _gate_failures(row)
    offsets = _offsets(calibration.errors_at(months))
    off_centre = (
        f" At that horizon the readings came out, on average, {'; '.join(offsets)}."
        if offsets
        else ""
    )
    if short:
        return [
            f"The projection runs {months:.1f} months past the last reading. In a backtest of these "
            f"readings (run {calibration.folder.name}), {figures}; a reading's band is wider than "
            "the curve's own." + off_centre + ("" if same else f" {refits}") + code
        ]
    targets = (
        f" The held-out readings at that horizon were fielded from {row['first_target']:%B %Y} "
        f"to {row['last_target']:%B %Y}."
    )
    if not offsets and calibration.errors is not None:
        off_centre = (
            " At that horizon no answer's readings came out on one side of the predicted median "
            "beyond their 90% interval."
        )
    return [
        f"How such projections have held: in the backtest {calibration.folder.name} (the same readings "
        "and model; make validate), the model was refitted on the readings before each cut-off and "
        "predicted the held-out readings of the curve's reference house and question "
        f"{span} months later. A prediction's band is for a reading, the curve plus that reading's "
        "sampling and non-sampling error, so it is wider than the curve's own band; both widen with "
        f"the months past the data. {refits}{code} {where}{targets}{off_centre} (A band would be "
        "called too narrow or too wide if the coverage's 90% interval, which allows for "
        "neighbouring readings' errors being alike (Newey-West), excluded the band's level; an "
        "answer's readings are said to come out above or below the predicted median where the "
        "90% interval of their mean distance from it, Newey-West too, excludes zero.)"
    ]


def _latest_coverage(row: pd.Series) -> str:
    """The backtest's latest (confirmation) targets' coverage at a horizon, as a clause (none
    without them): the readings most like today's, so a reader sees them apart."""
    n = row.get("latest_n", 0)
    if not n or pd.isna(n):
        return ""
    n = int(n)
    span = (
        f"{row['latest_first']:%B %Y}"
        if row["latest_first"] == row["latest_last"]
        else f"{row['latest_first']:%B %Y} to {row['latest_last']:%B %Y}"
    )
    return (
        f"; of the {n} latest held-out reading{'s' if n != 1 else ''} (fielded {span}), the 90% bands "
        f"covered {row['latest_coverage90']:.0%} and the 50% bands {row['latest_coverage50']:.0%}"
    )


def _offsets(errors) -> list[str]:
    """Each answer whose held-out readings came out on one side of the predictive median beyond
    their 90% interval, in words (rows of :attr:`BacktestCalibration.errors`)."""
    words = []
    for _, r in errors.iterrows():
        if not (r["lower"] > 0 or r["upper"] < 0):  # NaN (one reading) compares False: left out
            continue
        side = "above" if r["mean_error"] > 0 else "below"
        words.append(
            f"{r['answer']} {abs(r['mean_error']):.1f} points {side} the predicted median (90% "
            f"interval {signed_points(r['lower'])} to {signed_points(r['upper'])}, "
            f"{int(r['n'])} readings)"
        )
    return words


def sampling_words(sampler: Mapping[str, Any]) -> str:
    """How a fit or a backtest's refits were sampled, in words (chains, draws, tuning, sampler,
    target acceptance, and the retries its settings allow)."""
    ladder = retry_ladder(sampler)
    notes = []
    if ladder:
        notes.append(
            f"again at {', then '.join(f'{t:g}' for t in ladder)} while divergent transitions remained"
        )
    if sampler.get("retry_draws"):
        notes.append(
            f"with {sampler['retry_draws']} draws a chain if R-hat or ESS alone then missed the gate"
        )
    again = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"{sampler['chains']} chains of {sampler['draws']} draws after {sampler['tune']} tuning "
        f"steps with {sampler['nuts_sampler']} at target acceptance {sampler['target_accept']}"
        f"{again}"
    )


def _refit_sampling(calibration: BacktestCalibration, result: FitResult) -> tuple[str, bool]:
    """How the backtest's refits were sampled, in a sentence, and whether as this fit was.

    The backtest is matched without its sampler settings (:data:`~model.results.calibration.NOT_COMPARED`),
    so a quick one (``validate --draws 100``) must say so where its figures are quoted.
    """
    fit = dataclasses.asdict(result.config.sampler)
    refits = calibration.sampler
    missing = [key for key in SAMPLING_KEYS if key not in refits]
    if missing:
        return (
            f"The backtest's settings.json does not record its refits' {', '.join(missing)}.",
            False,
        )
    if sampled_as(refits, result.config.sampler):
        return f"Each refit sampled {sampling_words(refits)}, as this fit was set to.", True
    return (
        f"Each refit sampled {sampling_words(refits)}, where this fit sampled "
        f"{sampling_words(fit)}.",
        False,
    )


def _gate_failures(row: pd.Series) -> str:
    """A sentence (with its leading space) where some of a horizon's held-out readings were
    predicted by refits that missed the diagnostics gate, or where the backtest does not record
    whether they passed; none where every refit passed."""
    failed = row.get("gate_failures", float("nan"))
    if pd.isna(failed):  # not recorded
        return " The backtest does not record whether its refits passed the diagnostics gate."
    failed = int(failed)
    if not failed:
        return ""
    return (
        f" {failed} of these {int(row['n'])} predictions came from refits that missed the "
        "diagnostics gate, whose draws do not support them."
    )


def _backtest_code(calibration: BacktestCalibration, result: FitResult) -> str:
    """A sentence (with its leading space) where the backtest ran on other code than the fit, or
    does not record its code; none where both record the same source checksum."""
    theirs = calibration.code.get("source_sha256")
    ours = result.code["source_sha256"]
    if not theirs:
        return " The backtest does not record the code it ran on (it may be older than this fit's)."
    if not ours:
        return " This fit does not record the code it ran on, so whether the backtest's was the same is not known."
    if ours and theirs != ours:
        commits = (calibration.code.get("git_commit"), result.code["git_commit"])
        which = f" (commit {commits[0]}, against this fit's {commits[1]})" if all(commits) else ""
        return f" The backtest ran on other code than this fit{which}."
    return ""
