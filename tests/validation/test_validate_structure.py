"""Validation without MCMC: the refit form of the model, backtest targets, baselines, scoring, SBC ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import model
from model.aggregator.design import build_design
from model.aggregator.graph import PollAggregator
from model.validation import backtest, sbc

CONFIG = model.Config(reference_question="Q_MAIN", house_effects="House A")


@pytest.fixture(scope="module")
def design(sim_polls):
    return build_design(sim_polls, CONFIG)


def test_refit_form_has_the_ordinary_log_density_and_weight_zero_removes_one_reading(design):
    ordinary = PollAggregator(design, CONFIG).build()
    refit = PollAggregator(design, CONFIG, refit=True).build()
    point = ordinary.initial_point(random_seed=3)
    full = refit.compile_logp()(point)
    np.testing.assert_allclose(full, ordinary.compile_logp()(point), rtol=1e-12)
    per_reading = refit.compile_logp(vars=[refit["obs_share"]], sum=False)(point)[0]
    assert per_reading.shape == (len(design.polls),)
    k = 5
    weights = np.ones(len(design.polls))
    weights[k] = 0.0
    refit.set_data("in_likelihood", weights)
    np.testing.assert_allclose(full - refit.compile_logp()(point), per_reading[k], rtol=1e-10)


def test_the_backtests_numpy_likelihood_is_the_models(design):
    """backtest.model_alpha and dirichlet_logpdf score a reading as the PyMC model's likelihood does:
    the same log density for every reading at a point of the parameters."""
    import xarray as xr

    pymc_model = PollAggregator(design, CONFIG).build()
    point = pymc_model.initial_point(random_seed=5)
    names = ["share", "house_effect", "question_effect", "nonsampling_sd", "n_unknown"]
    outputs = pymc_model.replace_rvs_by_values(
        [pymc_model[n] for n in names]
    )  # functions of the point, not draws
    values = pymc_model.compile_fn(outputs, inputs=pymc_model.value_vars, on_unused_input="ignore")(
        point
    )
    dims = {n: pymc_model.named_vars_to_dims.get(n, ()) for n in names}
    coords = {d: list(pymc_model.coords[d]) for dd in dims.values() for d in dd}
    posterior = xr.Dataset(
        {
            n: (("chain", "draw", *dims[n]), np.asarray(v)[None, None])
            for n, v in zip(names, values)
        },
        coords={"chain": [0], "draw": [0], **coords},
    )
    expected = pymc_model.compile_logp(vars=[pymc_model["obs_share"]], sum=False)(point)[0]
    got = [
        backtest.dirichlet_logpdf(
            design.observed[i, design.component_used[i]], backtest.model_alpha(posterior, design, i)
        )[0]
        for i in range(len(design.polls))
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_refit_form_swaps_observed_shares(design):
    refit = PollAggregator(design, CONFIG, refit=True).build()
    point = refit.initial_point(random_seed=3)
    before = refit.compile_logp()(point)
    observed = design.observed.copy()
    used = design.component_used
    observed[0, used[0]] = np.full(used[0].sum(), 1.0 / used[0].sum())
    refit.set_data("observed_share", observed)
    assert refit.compile_logp()(point) != before


def test_backtest_targets_train_only_on_readings_that_ended_before(design):
    targets = backtest.backtest_targets(design, "2024-01-01")
    polls = design.polls
    assert targets
    for target in targets:
        i = backtest.poll_index(design, target.source_row)
        assert polls["pollster"].iloc[i] == "House A" and polls["question"].iloc[i] == "Q_MAIN"
        assert polls["field_start"].iloc[i] >= pd.Timestamp("2024-01-01")
        train = polls[polls["source_row"].isin(target.training_rows)]
        assert (train["field_end"] < target.field_start).all()
        later = polls[~polls["source_row"].isin(target.training_rows)]
        assert (
            later["field_end"] >= target.field_start
        ).all()  # nothing that ended before is left out
        weights = backtest.training_weights(design, target)
        assert weights.sum() == len(train) and weights[i] == 0


def test_pooled_variant_has_no_house_or_question_effects(design):
    listed = CONFIG.replace(
        questions=("Q_MAIN", "Q_ALT")
    )  # a config naming every question, like the project's
    pooled = build_design(
        *backtest.pooled_variant(build_design(design.polls.drop(columns="poll_id"), listed), listed)
    )
    assert pooled.pollsters == ("House A",) and pooled.questions == ("Q_MAIN",)
    assert sorted(pooled.polls["source_row"]) == sorted(design.polls["source_row"])
    m = PollAggregator(pooled, backtest.pooled_variant(design, listed)[1]).build()
    names = {v.name for v in m.free_RVs}
    assert not names & {"house_raw", "question_raw", "pair_sum", "pair_split"}


def test_events_after_the_first_target_are_refused(design):
    targets = backtest.backtest_targets(design, "2024-01-01")
    late = CONFIG.replace(events=(model.Event("2024-08-01", "later"),))
    with pytest.raises(model.ConfigError, match="'later' \\(2024-08-01\\)"):
        backtest.check_events(late, targets)
    backtest.check_events(CONFIG.replace(events=(model.Event("2023-06-01", "earlier"),)), targets)


def _table(rows):
    df = pd.DataFrame(
        rows, columns=["pollster", "question", "field_start", "field_end", "n", "talks", "continue"]
    )
    df["field_start"] = pd.to_datetime(df["field_start"])
    df["field_end"] = pd.to_datetime(df["field_end"])
    return df


def test_baselines_follow_their_definitions():
    train = _table(
        [
            ("Ref", "Q", "2024-01-01", "2024-01-05", 1600, 50, 40),
            ("Ref", "Q", "2024-02-01", "2024-02-05", 1600, 54, np.nan),
            ("Other", "Q2", "2024-02-10", "2024-02-12", 800, 40, 50),
            ("Other", "Q2", "2024-02-20", "2024-02-22", np.nan, 44, 46),
        ]
    )
    start = pd.Timestamp("2024-03-01")
    args = (train, start, ("talks", "continue"), ("Ref", "Q"), 1600.0)
    # last reading of the reference series, answer by answer (continue from the one reporting it)
    assert backtest.baseline_answers("last_reading", *args) == {"talks": 54.0, "continue": 40.0}
    # any house, latest three reporting each answer
    assert backtest.baseline_answers("last3_mean", *args) == pytest.approx(
        {"talks": (54 + 40 + 44) / 3, "continue": (40 + 50 + 46) / 3}
    )
    mid = train["field_start"] + (train["field_end"] - train["field_start"]) / 2
    age = (start - mid).dt.total_seconds() / 86400
    weight = np.sqrt(train["n"].fillna(1600) / 1600) * 0.5 ** (age / backtest.HALF_LIFE_DAYS)
    expected = (weight * train["talks"]).sum() / weight.sum()
    assert backtest.baseline_answers("weighted_average", *args)["talks"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown baseline"):
        backtest.baseline_answers("median", *args)


def test_score_is_the_dirichlet_mixture_density_and_coverage_is_per_answer(design):
    i = int(np.flatnonzero(design.component_used.sum(axis=1) == 3)[0])
    used = design.component_used[i]
    y = design.observed[i][used]
    rng = np.random.default_rng(0)
    alpha = rng.uniform(50, 500, size=(7, used.sum()))
    got = backtest.score(alpha, design, i, np.random.default_rng(1))
    expected = np.log(np.mean([stats.dirichlet.pdf(y, a) for a in alpha]))
    assert got["log_score"] == pytest.approx(expected, rel=1e-10)
    sharp = backtest.score(1e7 * y[None, :], design, i, np.random.default_rng(1))
    assert sharp["covered90"] == 1.0 and sharp["abs_error"] < 0.05
    shifted = np.roll(y, 1)
    wrong = backtest.score(1e6 * shifted[None, :], design, i, np.random.default_rng(1))
    assert wrong["covered50"] == 0.0 and wrong["log_score"] < sharp["log_score"]
    assert set(got["answers"]["answer"]) <= set(design.answers)


def test_baseline_predictions_cover_every_target_with_a_track_record(design):
    targets = backtest.backtest_targets(design, "2024-01-01")
    per_target, per_answer = backtest.baseline_predictions(
        design, targets, np.random.default_rng(0)
    )
    assert set(per_target["method"]) == set(backtest.BASELINES)
    assert len(per_target) == len(targets) * len(backtest.BASELINES)
    scored = per_target[per_target["error"] == ""]
    assert len(scored) and np.isfinite(scored["log_score"]).all() and (scored["tau_pp"] >= 0).all()
    assert set(per_answer["method"]) <= set(backtest.BASELINES)


def test_backtest_table_has_one_row_per_method_with_the_issue_columns():
    per_target = pd.DataFrame(
        [
            {
                "method": "model",
                "log_score": 3.0,
                "abs_error": 1.0,
                "covered50": 1.0,
                "covered90": 1.0,
                "gate_passed": True,
                "error": "",
            },
            {
                "method": "model",
                "log_score": 1.0,
                "abs_error": 3.0,
                "covered50": 0.0,
                "covered90": 0.5,
                "gate_passed": False,
                "error": "",
            },
            {"method": "model", "error": "RuntimeError: boom"},
            {
                "method": "last_reading",
                "log_score": 2.0,
                "abs_error": 2.0,
                "covered50": 0.5,
                "covered90": 1.0,
                "error": "",
            },
        ]
    )
    table = backtest.summarise(per_target)
    assert list(table["method"]) == list(backtest.METHODS)
    assert {"method", "n", "mean_log_score", "mae", "coverage50", "coverage90"} <= set(
        table.columns
    )
    row = table.set_index("method").loc["model"]
    assert (row["n"], row["failed"], row["gate_failures"]) == (2, 1, 1)
    assert (row["mean_log_score"], row["mae"], row["coverage50"], row["coverage90"]) == (
        2.0,
        2.0,
        0.5,
        0.75,
    )
    assert table.set_index("method").loc["weighted_average", "n"] == 0


def test_sbc_ranks_and_coverage():
    draws = {
        "low": np.linspace(1, 2, 400),
        "high": np.linspace(1, 2, 400),
        "mid": np.linspace(1, 2, 400),
    }
    table = sbc.ranks(draws, {"low": 0.0, "high": 3.0, "mid": 1.5}).set_index("quantity")
    assert table.loc["low", "rank"] == 0 and table.loc["high", "rank"] == sbc.RANK_DRAWS
    assert table.loc["mid", "covered50"] and not table.loc["low", "covered90"]
    rng = np.random.default_rng(0)
    uniform = pd.DataFrame(
        {
            "quantity": "u",
            "rank": rng.integers(0, sbc.RANK_DRAWS + 1, 400),
            "covered50": True,
            "covered90": True,
        }
    )
    skewed = pd.DataFrame(
        {"quantity": "s", "rank": np.zeros(400, int), "covered50": False, "covered90": False}
    )
    summary = sbc.summarise(pd.concat([uniform, skewed])).set_index("quantity")
    assert summary.loc["u", "uniformity_p"] > 1e-3 and summary.loc["s", "uniformity_p"] < 1e-10
    assert summary.loc["s", "datasets"] == 400


def test_sbc_prior_draws_are_valid_tables():
    polls, config = sbc.sbc_design(n_readings=20, seed=1)
    design = build_design(polls, config)
    m = PollAggregator(design, config, refit=True).build()
    truths, observed = sbc.prior_draws(m, design, 3, seed=2)
    assert len(truths) == 3 and observed.shape == (3, *design.observed.shape)
    assert {"walk_sd", "nonsampling_sd", "house_sd", "question_sd"} <= set(truths[0])
    assert any(name.startswith("share[") for name in truths[0])
    used = np.broadcast_to(design.component_used, observed.shape)
    assert np.all(observed[~used] == 1.0)
    np.testing.assert_allclose(np.where(used, observed, 0).sum(axis=-1), 1.0, atol=1e-9)
