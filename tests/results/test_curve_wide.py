"""``curve_wide``: the support curve with one row per date, from a hand-made curve table."""

from __future__ import annotations

import pandas as pd
import pytest

from model.results.summaries import curve_wide


def long_curve() -> pd.DataFrame:
    dates = pd.to_datetime(["2024-01-01", "2024-01-08", "2024-01-15"])
    rows = []
    for answer, base in (("no", 40.0), ("yes", 60.0)):
        for i, date in enumerate(dates):
            rows.append(
                {
                    "date": date,
                    "answer": answer,
                    "mean": base + i,
                    "median": base + i,
                    "lower": base + i - 5,
                    "upper": base + i + 5,
                    "projected": i == 2,
                }
            )
    return pd.DataFrame(rows)


def test_one_row_per_date_columns_in_the_answers_order():
    wide = curve_wide(long_curve(), ["yes", "no"], interval=0.9)
    assert list(wide.columns) == [
        "date",
        "yes_median",
        "yes_lower_90",
        "yes_upper_90",
        "no_median",
        "no_lower_90",
        "no_upper_90",
        "projected",
    ]
    assert list(wide["yes_median"]) == [60.0, 61.0, 62.0]
    assert list(wide["no_lower_90"]) == [35.0, 36.0, 37.0]
    assert list(wide["projected"]) == [False, False, True]
    assert list(curve_wide(long_curve()).columns)[1:4] == ["no_median", "no_lower", "no_upper"]


def test_bad_curves_are_refused_with_a_reason():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['projected'\]"):
        curve_wide(long_curve().drop(columns="projected"))
    with pytest.raises(ValueError, match=r"answer\(s\) \['maybe'\] are not in the curve"):
        curve_wide(long_curve(), ["yes", "maybe"])
    gappy = long_curve().drop(index=1)
    with pytest.raises(ValueError, match=r"answer 'no' has no value on some dates"):
        curve_wide(gappy, ["yes", "no"])
