"""Summaries equal their definitions (no sampling): effects in points, computed by matrix products
over the curve, and intervals, computed from one sort of the draws."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import model
from model.report import html
from model.results import summaries
from tests.report.fakes import fake_result


def test_effect_in_points_is_the_mean_shift_of_the_softmax_over_time():
    post = fake_result().posterior
    trend = summaries.trend_logit(post)
    for name in ("house_effect", "question_effect", "jump"):
        effect = post[name]
        groups = [d for d in effect.dims if d not in ("chain", "draw", "answer")]
        definition = 100 * (summaries._softmax(trend + effect) - summaries._softmax(trend)).mean(
            "time"
        )
        definition = definition.transpose("chain", "draw", "answer", *groups)
        ours = summaries.effect_in_points(post, effect)
        assert ours.dims == definition.dims, name
        # in percentage points: the same to rounding
        np.testing.assert_allclose(ours.values, definition.values, rtol=0, atol=1e-10)
        xr.testing.assert_allclose(ours, definition, rtol=0, atol=1e-10)
        assert ours.coords.keys() == definition.coords.keys(), name


def test_effect_in_points_of_a_zero_effect_is_zero_and_of_one_answer_moves_shares_toward_it():
    post = fake_result().posterior
    effect = xr.zeros_like(post["house_effect"])
    assert (summaries.effect_in_points(post, effect).values == 0).all()  # exactly: a reference's
    shifted = effect + 0.7  # the same shift on every answer moves no share either
    assert (summaries.effect_in_points(post, shifted).values == 0).all()
    boost = effect.copy()
    boost[..., 0] = 1.0  # the first answer's logit up by one in every house
    points = summaries.effect_in_points(post, boost)
    assert (points.isel(answer=0) > 0).all()
    assert (points.isel(answer=slice(1, None)) < 0).all()
    # shares still sum to 100
    np.testing.assert_allclose(points.sum("answer").values, 0, atol=1e-10)


def test_effect_in_points_pairs_answers_by_label_not_by_position():
    post = fake_result().posterior
    effect = post["house_effect"]
    reordered = effect.isel(answer=list(range(effect.sizes["answer"]))[::-1])
    xr.testing.assert_identical(
        summaries.effect_in_points(post, reordered), summaries.effect_in_points(post, effect)
    )


def test_field_periods_average_the_curves_logits_over_each_period_from_one_pass():
    """One pass over the curve serves every field period: each reading's logits are the centred
    mean of the log shares over its cells, and the same bits alone as among others."""
    post = fake_result().posterior
    periods = summaries.FieldPeriods(post)
    first, last = np.array([0, 3, 5, 0]), np.array([0, 7, 5, len(post["time"]) - 1])
    together = periods.logits(first, last)
    log_share = np.log(post["share"].transpose("chain", "draw", "time", "answer").values)
    for k, (a, b) in enumerate(zip(first, last)):
        mean = log_share[:, :, a : b + 1].mean(axis=2)
        np.testing.assert_allclose(
            together[:, :, k], mean - mean.mean(axis=-1, keepdims=True), rtol=0, atol=1e-12
        )
        np.testing.assert_array_equal(periods.logits([a], [b])[:, :, 0], together[:, :, k])


@pytest.mark.parametrize("shape", [(8000,), (301, 4), (4, 7, 3), (1, 2)])
def test_quantiles_are_numpys_to_the_last_bit(shape):
    """One sort of the draws gives NumPy's "linear" quantiles exactly, ties and NaN included."""
    rng = np.random.default_rng(len(shape))
    draws = rng.normal(size=shape)
    if draws.ndim == 1:
        draws[: len(draws) // 2] = np.round(draws[: len(draws) // 2], 1)  # many ties
    else:
        draws[:, 0] = np.round(draws[:, 0], 1)  # many ties
        draws[0, -1] = np.nan  # a column with a NaN gives NaN, as in NumPy
    probs = [0.0, 0.05, 0.25, 0.5, 1 / 3, 0.95, 1.0, min(3 / max(len(draws) - 1, 1), 1.0)]
    np.testing.assert_array_equal(
        summaries.quantiles(draws, probs), np.quantile(draws, probs, axis=0)
    )


def test_interval_is_xarrays_quantile_and_mean_whatever_the_order_of_dims():
    post = fake_result().posterior
    share = post["share"].transpose("answer", "chain", "time", "draw")  # sample dims not first
    share = share.assign_coords(reference="Q_MAIN")  # a scalar coord, which quantile drops
    share.attrs["units"] = "percent"
    stats = summaries._interval(share, 0.8)
    tail = (1 - 0.8) / 2  # as the interval's ends are computed (not quite 0.1)
    q = share.quantile([tail, 0.5, 1 - tail], dim=("chain", "draw"))
    for name, at in (("lower", 0), ("median", 1), ("upper", 2)):
        assert stats[name].dims == ("answer", "time")
        xr.testing.assert_identical(stats[name], q.isel(quantile=at, drop=True))
    xr.testing.assert_identical(stats["mean"], share.mean(("chain", "draw")))


def test_effects_in_points_are_the_same_in_blocks_of_any_size(monkeypatch):
    result = fake_result()
    post = result.posterior  # 120 draws: one block of the default size
    whole = summaries.effect_in_points(post, post["house_effect"])
    assert (whole.sel(pollster=result.reference_pollster) == 0).all()  # the reference: exactly 0
    monkeypatch.setattr(summaries, "_EFFECT_BLOCK", 7)  # blocks that do not divide the draws
    xr.testing.assert_identical(summaries.effect_in_points(post, post["house_effect"]), whole)


def test_a_result_builds_its_field_periods_once_per_trace():
    """The house offsets and the closed polls share one FieldPeriods; a new trace gets its own, and
    a pickled result carries none."""
    import pickle

    result = fake_result()
    periods = result._field_periods()
    assert result._field_periods() is periods
    result.idata = result.idata.copy()
    assert result._field_periods() is not periods
    assert pickle.loads(pickle.dumps(result))._periods is None


def test_the_curve_keeps_the_configs_order_of_answers():
    rng = np.random.default_rng(0)
    answers = ["support", "oppose", "dont_know"]  # not in A-Z order
    share = 100 * rng.dirichlet([5, 4, 1], size=(2, 10, 4))
    posterior = xr.Dataset(
        {"share": (("chain", "draw", "time", "answer"), share)},
        coords={"time": pd.date_range("2024-01-01", periods=4, freq="W-MON"), "answer": answers},
    )
    curve = summaries.support_curve(posterior, 0.9)
    assert list(pd.unique(curve["answer"])) == answers
    assert (
        curve.groupby("answer", sort=False)["date"].apply(lambda d: d.is_monotonic_increasing)
    ).all()


@pytest.mark.parametrize("house_effects", ["House <A> & Co", "zero_sum"])
def test_the_curve_says_its_interval_and_whose_measurement_it_is(house_effects):
    """Every row of curve.csv and curve_wide.csv names the interval's width and the house and
    question the curve is expressed as."""
    result = fake_result(house_effects=house_effects)
    house = "House <A> & Co" if house_effects != "zero_sum" else "the average house"
    curve = result.support_curve(0.5)
    assert list(curve.columns) == [
        "date", "answer", "mean", "median", "lower", "upper", "interval", "projected", "house",
        "question",
    ]  # fmt: skip
    assert (curve["interval"] == 0.5).all()
    assert (curve["house"] == house).all() and (curve["question"] == "Q_MAIN").all()
    assert result.curve_house == house
    wide = result.curve_wide()
    assert list(wide.columns[-3:]) == ["projected", "house", "question"]
    assert (wide["house"] == house).all() and (wide["question"] == "Q_MAIN").all()


def test_the_anchored_level_is_named_one_way():
    """With anchors, the curve's ``house`` column, what effects are differences from and the
    report's reader of the curve name the level in the same words."""
    result = fake_result()
    result.config = dataclasses.replace(
        result.config,
        house_effects="anchors",
        anchors=(model.Anchor(date="2023-03-06", answer="talks", value=50.0),),
    )
    assert result.curve_house == "the anchored true level"
    assert result.compared_with == "the anchored true level (asking Q_MAIN)"
    assert html._publisher(result) == "a house at the anchored true level asking Q_MAIN"


def test_house_and_question_effects_in_points_do_not_depend_on_the_projection():
    """Put in points over the readings' span: the curve past the last reading, however it runs,
    leaves them as they are."""
    result, moved = fake_result(through="2023-09-30"), fake_result(through="2023-09-30")
    projected = np.asarray(moved.design.projected)
    assert projected.any()
    share = moved.idata["posterior"]["share"].copy()
    share[:, :, projected] = share[:, :, projected].values[..., ::-1]  # the answers swapped
    moved.idata["posterior/share"] = share
    assert not moved.support_curve().equals(result.support_curve())
    for table in ("house_effects", "question_effects"):
        pd.testing.assert_frame_equal(getattr(moved, table)(), getattr(result, table)())
    cut = result.posterior.isel(time=~projected)
    pp = summaries.effect_in_points(cut, cut["house_effect"]).median(("chain", "draw"))
    houses = result.house_effects().set_index(["pollster", "answer"])["median"]
    np.testing.assert_allclose(
        houses.loc[[(p, a) for p in pp["pollster"].values for a in pp["answer"].values]],
        pp.transpose("pollster", "answer").values.ravel(),
    )


def test_every_table_with_intervals_names_their_width():
    result = fake_result(through="2023-09-30")
    for table in ("house_effects", "question_effects", "event_jumps", "reading_offsets"):
        frame = getattr(result, table)(0.8)
        columns = list(frame.columns)
        assert columns[columns.index("upper") + 1] == "interval", table
        assert (frame["interval"] == 0.8).all(), table
    closed = result.closed_polls(0.8)
    assert closed.columns[-1] == "interval" and (closed["interval"] == 0.8).all()
    assert (result.closed_polls()["interval"] == result.config.interval).all()
    assert "interval" not in result.prior_sensitivity()  # no intervals
