"""The library is not tied to these houses or answers: a two-option vote-intention series from five
houses over three years, on a daily grid, fits and recovers its truth."""

from __future__ import annotations

import pandas as pd
import pytest

import model

pytestmark = pytest.mark.sampling


@pytest.fixture(scope="module")
def vote():
    sim = model.simulate_polls(
        pollsters=("Alpha", "Beta", "Gamma", "Delta", "Epsilon"),
        questions=("VOTE_INTENTION",),
        answers=("yes", "no"),
        start="2021-01-01",
        end="2023-12-31",
        n_readings=120,
        level=(0.3, -0.3),
        walk_sd_per_day=0.004,
        house_sd=0.15,
        partial_fraction=0.0,
        seed=21,
    )
    polls = model.load_polls(sim.polls, answers=["yes", "no"])
    config = model.Config(
        answers=("yes", "no"), grid="day", sampler=model.Sampler(draws=300, tune=500, chains=2)
    )
    return sim, model.fit(polls, config=config, seed=3, progressbar=False)


def test_daily_grid_over_three_years(vote):
    _, result = vote
    curve = result.support_curve()
    assert set(curve["answer"]) == {"yes", "no"}
    assert curve["date"].nunique() >= 3 * 365 - 20
    assert (curve["date"].diff().dropna().dt.days.isin([1, -(curve["date"].nunique() - 1)])).all()


def test_recovers_the_daily_curve_and_the_houses(vote):
    sim, result = vote
    curve = result.support_curve(interval=0.9)
    truth = sim.curve_on_grid(pd.DatetimeIndex(sorted(curve["date"].unique())))
    merged = curve.merge(truth, on=["date", "answer"])
    covered = (merged["lower"] <= merged["share"]) & (merged["share"] <= merged["upper"])
    # tolerance: 90% intervals cover the true daily share on at least 80% of days
    assert covered.mean() >= 0.8
    post = result.posterior["house_effect"].sel(answer="yes")
    lo, hi = post.quantile([0.05, 0.95], dim=("chain", "draw")).values
    truth_h = (
        sim.house_effects.query("answer == 'yes'")
        .set_index("pollster")
        .loc[list(post["pollster"].values), "logit"]
        .to_numpy()
    )
    assert ((lo <= truth_h) & (truth_h <= hi)).sum() >= 4  # at most one of five houses missed
    # a tiny run (2 x 300 draws) on the hard case (a daily walk): no gross non-convergence
    assert result.diagnostics()["max_rhat"] < 1.1
