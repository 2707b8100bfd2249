"""model.results.calibration: a backtest of the same readings and model, read for the report (no sampling)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import model
from model.results.calibration import (
    ANSWERS_FILE,
    TARGETS_FILE,
    backtest_calibration,
    find_backtest,
    newey_west_se,
)

CONFIG = model.Config(reference_question="Q_MAIN", house_effects="House A", through="today")
CHECKSUM = "a" * 64
#: The model's 90% coverage per reference target at 9 months, in field-start order.
COVERED90_AT_9 = [1.0, 1.0, 0.0, 1 / 3, 0.0]


def target_rows() -> pd.DataFrame:
    """Rows as the backtest writes them: the model's reference targets at horizons 0, 3 and 9
    (out of field-start order), a non-reference target, a target whose refit raised, and another
    method's rows."""
    rows = []

    def add(method, horizon, month, covered90, reference=True, error=""):
        rows.append(
            {
                "method": method,
                "source_row": len(rows),
                "reference": reference,
                "horizon_months": horizon,
                "field_start": f"2025-{month:02d}-01",
                "error": error,
                "log_score": 4.0,
                "abs_error": 2.0 + horizon / 3,
                "covered50": 0.5,
                "covered90": covered90,
            }
        )

    for month, covered in zip([5, 1, 9, 7, 3], [0.0, 1.0, 0.0, 1 / 3, 1.0], strict=True):
        add("model", 9, month, covered)  # in field-start order: COVERED90_AT_9
    for horizon in (0, 3):
        for month in (1, 2, 3):
            add("model", horizon, month, 1.0)
    add("model", 0, 4, 0.0, reference=False)  # another house's target
    add("model", 0, 5, np.nan, error="RuntimeError: boom")
    add("reference_only", 0, 1, 0.0)
    return pd.DataFrame(rows)


#: The model's talks readings at 9 months less its predictive median, in field-start order:
#: all above it. Its continue readings are as far below; at 0 months the errors straddle zero.
TALKS_ERRORS_AT_9 = [4.0, 6.0, 3.0, 7.0, 5.0]


def answer_rows(answers=("talks", "continue")) -> pd.DataFrame:
    """``backtest_answers.csv`` as the backtest writes it: each reported answer of the model's
    reference targets at 0 and 9 months (out of field-start order), plus rows that are not read
    (another house's target, another method)."""
    rows = []

    def add(method, horizon, month, answer, error, reference=True):
        rows.append(
            {
                "answer": answer,
                "observed": 50.0 + error,
                "median": 50.0,
                "signed_error": -error,
                "method": method,
                "reference": reference,
                "horizon_months": horizon,
                "field_start": f"2025-{month:02d}-01",
            }
        )

    first, second = answers
    for month, error in zip([5, 1, 9, 7, 3], [3.0, 4.0, 5.0, 7.0, 6.0], strict=True):
        add("model", 9, month, first, error)  # in field-start order: TALKS_ERRORS_AT_9
        add("model", 9, month, second, -error)
    for month, error in zip([1, 2, 3], [-1.0, 1.0, 0.5], strict=True):
        add("model", 0, month, first, error)
        add("model", 0, month, second, -error)
    add("model", 0, 4, first, 30.0, reference=False)
    add("reference_only", 0, 1, first, 30.0)
    return pd.DataFrame(rows)


def write_backtest(
    runs,
    name,
    checksum=CHECKSUM,
    config=CONFIG,
    targets=None,
    sampler=None,
    answers=None,
    code=None,
):
    """A backtest's folder; its refits sampled as ``config`` says unless ``sampler`` is given;
    ``backtest_answers.csv`` only when ``answers`` are given; ``code`` recorded when given."""
    folder = runs / name
    folder.mkdir(parents=True)
    settings = {
        "settings": {},
        "config": config.replace(through=None).to_dict(),
        "data_checksum": checksum,
        "backtest_sampler": dataclasses.asdict(config.sampler) if sampler is None else sampler,
        **({} if code is None else {"code": code}),
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (target_rows() if targets is None else targets).to_csv(folder / TARGETS_FILE, index=False)
    if answers is not None:
        answers.to_csv(folder / ANSWERS_FILE, index=False)
    return folder


def backtest_beside(result, runs, **kwargs):
    """A backtest (``validate-20260102T000000Z``) in ``runs`` of ``result``'s readings and config:
    the one a fit written beside it matches (``kwargs``: :func:`write_backtest`'s)."""
    return write_backtest(
        runs,
        "validate-20260102T000000Z",
        checksum=result.idata.attrs["data_checksum"],
        config=result.config,
        **kwargs,
    )


def test_the_newest_backtest_of_the_same_readings_and_model_is_found(tmp_path):
    write_backtest(tmp_path, "validate-20260101T000000Z")
    newest = write_backtest(tmp_path, "validate-20260103T000000Z")
    write_backtest(tmp_path, "validate-20260104T000000Z", checksum="b" * 64)
    write_backtest(tmp_path, "validate-20260105T000000Z", config=CONFIG.replace(grid="month"))
    rows = target_rows()
    write_backtest(tmp_path, "validate-20260106T000000Z", targets=rows[rows["method"] != "model"])
    (tmp_path / "validate-20260107T000000Z").mkdir()  # no settings.json
    (tmp_path / "validate-20260108T000000Z").mkdir()
    (tmp_path / "validate-20260108T000000Z" / "settings.json").write_text("{not json")
    (tmp_path / "20260109T000000Z-fit").mkdir()
    assert find_backtest(tmp_path, CHECKSUM, CONFIG).folder == newest
    # Neither the fit's own date nor its sampler matters: refits end at their cut-offs and use
    # the backtest's sampler (read back with the figures).
    other = CONFIG.replace(through="2026-11-28", sampler={"draws": 300, "chains": 2})
    found = find_backtest(tmp_path, CHECKSUM, other)
    assert found.folder == newest and found.sampler == dataclasses.asdict(CONFIG.sampler)
    assert find_backtest(tmp_path, CHECKSUM, CONFIG.replace(trend="drift")) is None
    assert find_backtest(tmp_path, "c" * 64, CONFIG) is None
    assert find_backtest(tmp_path / "absent", CHECKSUM, CONFIG) is None


def with_gate_failures(failed: int) -> pd.DataFrame:
    """:func:`target_rows` with a ``gate_passed`` column: the first ``failed`` of the model's five
    reference targets at 9 months predicted by refits that missed the gate."""
    rows = target_rows()
    rows["gate_passed"] = True
    at_9 = rows.index[(rows["method"] == "model") & (rows["horizon_months"] == 9)]
    rows.loc[at_9[:failed], "gate_passed"] = False
    return rows


def test_a_quick_or_gate_failing_backtest_does_not_replace_one_sampled_as_the_fit(tmp_path):
    """The newest backtest sampled as the fit is set to, every refit through the gate, is taken
    over newer ones that are not (a quick check with fewer draws; one whose refits missed the
    gate); with none such, the newest, its gate failures counted by horizon."""
    whole = write_backtest(tmp_path, "validate-20260101T000000Z", targets=with_gate_failures(0))
    quick = {**dataclasses.asdict(CONFIG.sampler), "draws": 300, "chains": 2}
    write_backtest(tmp_path, "validate-20260102T000000Z", sampler=quick)
    failing = write_backtest(tmp_path, "validate-20260103T000000Z", targets=with_gate_failures(2))
    assert find_backtest(tmp_path, CHECKSUM, CONFIG).folder == whole
    shutil.rmtree(whole)
    found = find_backtest(tmp_path, CHECKSUM, CONFIG)
    assert found.folder == failing
    assert found.table.set_index("horizon_months")["gate_failures"].to_dict() == {0: 0, 3: 0, 9: 2}
    # One sampled as the fit, even with failures, is taken over a newer quick check.
    newer_quick = write_backtest(
        tmp_path, "validate-20260104T000000Z", sampler=quick, targets=with_gate_failures(0)
    )
    assert find_backtest(tmp_path, CHECKSUM, CONFIG).folder == failing
    shutil.rmtree(failing)
    assert find_backtest(tmp_path, CHECKSUM, CONFIG).folder == newer_quick


def test_a_backtest_that_does_not_record_its_gate_results_counts_as_one_with_failures(tmp_path):
    clean = write_backtest(tmp_path, "validate-20260101T000000Z", targets=with_gate_failures(0))
    unrecorded = write_backtest(tmp_path, "validate-20260102T000000Z")  # no gate_passed column
    assert find_backtest(tmp_path, CHECKSUM, CONFIG).folder == clean
    table = backtest_calibration(unrecorded).table
    assert table["gate_failures"].isna().all()


def test_a_backtest_that_cannot_be_read_is_passed_over_with_a_warning(tmp_path):
    older = write_backtest(tmp_path, "validate-20260101T000000Z")
    write_backtest(
        tmp_path, "validate-20260102T000000Z", targets=target_rows().drop(columns="covered90")
    )
    with pytest.warns(
        UserWarning, match=r"validate-20260102T000000Z: backtest not read .*covered90"
    ):
        assert find_backtest(tmp_path, CHECKSUM, CONFIG).folder == older


def test_the_models_reference_targets_are_read_by_horizon_with_a_newey_west_interval(tmp_path):
    calibration = backtest_calibration(write_backtest(tmp_path, "validate-20260101T000000Z"))
    table = calibration.table.set_index("horizon_months")
    assert table.index.tolist() == [0, 3, 9]
    # Not the other house's target, the failed refit or the other method.
    assert table["n"].tolist() == [3, 3, 5]
    assert table["coverage90"].tolist() == [1.0, 1.0, pytest.approx(np.mean(COVERED90_AT_9))]
    assert table.loc[9, "mae"] == pytest.approx(5.0)
    se = newey_west_se(np.array(COVERED90_AT_9))  # in field-start order
    mean = np.mean(COVERED90_AT_9)
    assert table.loc[9, "coverage90_lower"] == pytest.approx(mean - 1.6448536 * se)
    assert table.loc[9, "coverage90_upper"] == pytest.approx(mean + 1.6448536 * se)
    # Constant coverage has no spread: its interval is the value itself, within 0-1.
    assert (table.loc[0, "coverage90_lower"], table.loc[0, "coverage90_upper"]) == (1.0, 1.0)
    # A projection is read at the shortest horizon as long as it or longer, else the longest.
    assert [int(calibration.at(m)["horizon_months"]) for m in (0, 0.4, 3, 4.2, 9, 20)] == [
        0,
        3,
        3,
        9,
        9,
        9,
    ]


def with_latest(rows: pd.DataFrame, months=("2025-07-01", "2025-09-01")) -> pd.DataFrame:
    """``rows`` with the backtest's ``confirmation`` column: the model's reference targets fielded
    in ``months`` are its latest (confirmation) targets."""
    latest = (rows["method"] == "model") & rows["reference"] & rows["field_start"].isin(months)
    return rows.assign(confirmation=latest)


def test_the_latest_targets_figures_are_read_beside_all_of_them(tmp_path):
    rows = with_latest(target_rows())
    table = backtest_calibration(
        write_backtest(tmp_path, "validate-20260101T000000Z", targets=rows)
    ).table.set_index("horizon_months")
    # At 9 months the latest two targets (July: 1/3 covered, September: none) apart from all five.
    assert table.loc[9, "latest_n"] == 2 and table.loc[0, "latest_n"] == 0
    assert table.loc[9, "latest_coverage90"] == pytest.approx(1 / 6)
    assert table.loc[9, "latest_coverage50"] == pytest.approx(0.5)
    assert (table.loc[9, "latest_first"], table.loc[9, "latest_last"]) == (
        pd.Timestamp("2025-07-01"),
        pd.Timestamp("2025-09-01"),
    )
    assert np.isnan(table.loc[0, "latest_coverage90"])
    # A backtest that marks none (written before the confirmation set existed) has no such figures.
    plain = backtest_calibration(write_backtest(tmp_path, "validate-20260102T000000Z")).table
    assert not any(c.startswith("latest_") for c in plain.columns)


def test_where_each_answers_readings_fell_against_the_median_is_read_by_horizon(tmp_path):
    folder = write_backtest(tmp_path, "validate-20260101T000000Z", answers=answer_rows())
    calibration = backtest_calibration(folder)
    errors = calibration.errors.set_index(["horizon_months", "answer"])
    # Not the other house's target or the other method: three and five readings per answer.
    assert errors["n"].to_dict() == {
        (0, "talks"): 3,
        (0, "continue"): 3,
        (9, "talks"): 5,
        (9, "continue"): 5,
    }
    # The reported share less the predictive median (the file's signed_error is the reverse).
    assert errors.loc[(9, "talks"), "mean_error"] == pytest.approx(5.0)
    assert errors.loc[(9, "continue"), "mean_error"] == pytest.approx(-5.0)
    assert errors.loc[(0, "talks"), "mean_error"] == pytest.approx(0.5 / 3)
    se = newey_west_se(np.array(TALKS_ERRORS_AT_9))  # in field-start order
    assert errors.loc[(9, "talks"), "lower"] == pytest.approx(5.0 - 1.6448536 * se)
    assert errors.loc[(9, "talks"), "upper"] == pytest.approx(5.0 + 1.6448536 * se)
    assert errors.loc[(9, "talks"), "lower"] > 0 > errors.loc[(9, "continue"), "upper"]
    assert errors.loc[(0, "talks"), "lower"] < 0 < errors.loc[(0, "talks"), "upper"]
    # The rows of the horizon a projection is read at, and each horizon's span of targets.
    assert calibration.errors_at(4.2)["horizon_months"].tolist() == [9, 9]
    table = calibration.table.set_index("horizon_months")
    assert (table.loc[9, "first_target"], table.loc[9, "last_target"]) == (
        pd.Timestamp("2025-01-01"),
        pd.Timestamp("2025-09-01"),
    )


def test_a_backtest_without_per_answer_predictions_has_no_errors(tmp_path):
    calibration = backtest_calibration(write_backtest(tmp_path, "validate-20260101T000000Z"))
    assert calibration.errors is None and calibration.errors_at(9).empty
    folder = write_backtest(
        tmp_path, "validate-20260102T000000Z", answers=answer_rows().drop(columns="median")
    )
    with pytest.raises(ValueError, match=r"backtest_answers\.csv: no column median"):
        backtest_calibration(folder)


def test_a_missing_column_is_named_with_the_file(tmp_path):
    folder = write_backtest(
        tmp_path, "validate-20260101T000000Z", targets=target_rows().drop(columns="field_start")
    )
    with pytest.raises(ValueError, match=r"backtest_targets\.csv: no column field_start"):
        backtest_calibration(folder)


def test_the_newey_west_error_is_the_iid_one_without_lags_and_follows_autocorrelation():
    rng = np.random.default_rng(4)
    x = rng.normal(size=60)
    assert newey_west_se(x, lags=0) == pytest.approx(x.std(ddof=1) / np.sqrt(60))
    assert np.isnan(newey_west_se(x[:1]))
    # A slowly wandering series (AR(1), phi 0.8) has a larger error of its mean than i.i.d.
    # draws suggest; an alternating one a smaller.
    ar = np.zeros(400)
    for t in range(1, 400):
        ar[t] = 0.8 * ar[t - 1] + rng.normal()
    assert newey_west_se(ar) > 1.5 * ar.std(ddof=1) / np.sqrt(400)
    alternating = np.tile([1.0, -1.0], 50) + rng.normal(scale=0.1, size=100)
    assert newey_west_se(alternating) < 0.5 * alternating.std(ddof=1) / np.sqrt(100)
    # The lag rule: floor(4 (n/100)^(2/9)): 2 lags at n = 20, 3 at n = 60.
    assert newey_west_se(x) == pytest.approx(newey_west_se(x, lags=3))
    assert newey_west_se(x[:20]) == pytest.approx(newey_west_se(x[:20], lags=2))
