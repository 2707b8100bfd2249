"""model.results.calibration: a backtest of the same readings and config, read for the report (no sampling)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import model
from model.results.calibration import HORIZONS_FILE, backtest_calibration, find_backtest

CONFIG = model.Config(reference_question="Q_MAIN", house_effects="House A", through="today")
CHECKSUM = "a" * 64


def horizon_rows() -> pd.DataFrame:
    """Rows as ``backtest.by_horizon`` writes them: the model's reference targets out of order,
    another group, another method and a horizon without scored targets."""
    rows = []
    for method, targets, horizon, n, cov90 in [
        ("model", "reference", 9, 25, 0.79),
        ("model", "reference", 0, 25, 0.91),
        ("model", "reference", 3, 25, 0.91),
        ("model", "confirmation", 9, 6, 0.39),
        ("reference_only", "reference", 0, 25, 0.91),
        ("model", "reference", 12, 0, float("nan")),
    ]:
        rows.append(
            {
                "method": method,
                "horizon_months": horizon,
                "targets": targets,
                "n": n,
                "mean_log_score": 4.1,
                "mae": 3.2 + horizon / 10,
                "coverage50": 0.4,
                "coverage90": cov90,
                "failed": 0,
                "gate_failures": 0,
                "coverage50_lower": 0.3,
                "coverage50_upper": 0.5,
                "coverage90_lower": cov90 - 0.1,
                "coverage90_upper": min(cov90 + 0.08, 1.0),
            }
        )
    return pd.DataFrame(rows)


def write_backtest(runs, name, checksum=CHECKSUM, config=CONFIG, horizons=True):
    folder = runs / name
    folder.mkdir(parents=True)
    settings = {
        "settings": {},
        "config": config.replace(through=None).to_dict(),
        "data_checksum": checksum,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    if horizons:
        horizon_rows().to_csv(folder / HORIZONS_FILE, index=False)
    return folder


def test_the_newest_backtest_of_the_same_readings_and_config_is_found(tmp_path):
    write_backtest(tmp_path, "validate-20260101T000000Z")
    newest = write_backtest(tmp_path, "validate-20260103T000000Z")
    write_backtest(tmp_path, "validate-20260104T000000Z", checksum="b" * 64)
    write_backtest(tmp_path, "validate-20260105T000000Z", config=CONFIG.replace(grid="month"))
    write_backtest(tmp_path, "validate-20260106T000000Z", horizons=False)  # SBC only
    (tmp_path / "validate-20260107T000000Z").mkdir()  # no settings.json
    (tmp_path / "validate-20260108T000000Z").mkdir()
    (tmp_path / "validate-20260108T000000Z" / "settings.json").write_text("{not json")
    (tmp_path / "20260109T000000Z-fit").mkdir()
    assert find_backtest(tmp_path, CHECKSUM, CONFIG) == newest
    # The fit's own date does not matter: a backtest's refits end at their cut-offs.
    assert find_backtest(tmp_path, CHECKSUM, CONFIG.replace(through="2026-11-28")) == newest
    assert find_backtest(tmp_path, "c" * 64, CONFIG) is None
    assert find_backtest(tmp_path / "absent", CHECKSUM, CONFIG) is None


def test_the_models_reference_targets_are_read_by_horizon(tmp_path):
    calibration = backtest_calibration(write_backtest(tmp_path, "validate-20260101T000000Z"))
    assert calibration.created == "20260101T000000Z"
    table = calibration.table
    assert table["horizon_months"].tolist() == [0, 3, 9]  # sorted; the unscored horizon left out
    assert table["coverage90"].tolist() == [0.91, 0.91, 0.79]  # not the other group's or method's
    # A projection is read at the shortest horizon as long as it or longer, else the longest.
    assert [int(calibration.at(m)["horizon_months"]) for m in (0, 0.4, 3, 4.2, 9, 20)] == [
        0,
        3,
        3,
        9,
        9,
        9,
    ]


def test_a_backtest_without_the_models_reference_rows_has_no_calibration(tmp_path):
    folder = write_backtest(tmp_path, "validate-20260101T000000Z")
    rows = horizon_rows()
    rows[rows["method"] != "model"].to_csv(folder / HORIZONS_FILE, index=False)
    assert backtest_calibration(folder) is None


def test_a_missing_column_is_named_with_the_file(tmp_path):
    folder = write_backtest(tmp_path, "validate-20260101T000000Z")
    horizon_rows().drop(columns="coverage90_upper").to_csv(folder / HORIZONS_FILE, index=False)
    with pytest.raises(ValueError, match=r"backtest_horizons\.csv: no column coverage90_upper"):
        backtest_calibration(folder)
