"""Validation without MCMC: the refit form of the model, backtest targets, baselines, scoring, SBC ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import model
from model.aggregator.design import build_design
from model.aggregator.graph import PollAggregator
from model.validation import backtest, sbc

CONFIG = model.Config(reference_question="Q_MAIN", house_effects="House A")
PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "fit.toml"


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


def test_backtest_targets_train_only_on_readings_that_ended_before_their_cutoff(design):
    targets = backtest.backtest_targets(design, "2024-01-01")
    polls = design.polls
    assert targets and {t.horizon for t in targets} <= set(backtest.HORIZONS)
    for target in targets:
        i = backtest.poll_index(design, target.source_row)
        assert polls["field_start"].iloc[i] >= pd.Timestamp("2024-01-01")
        assert target.cutoff == target.field_start - pd.DateOffset(months=target.horizon)
        train = polls[polls["source_row"].isin(target.training_rows)]
        assert (train["field_end"] < target.cutoff).all()
        later = polls[~polls["source_row"].isin(target.training_rows)]
        assert (later["field_end"] >= target.cutoff).all()  # nothing that ended before is left out
        if target.reference:
            assert (polls["pollster"].iloc[i], polls["question"].iloc[i]) == ("House A", "Q_MAIN")
        else:  # another series, with enough earlier readings of its own to learn its offset
            own = train[train["pollster"] + " | " + train["question"] == target.series]
            assert len(own) >= backtest.MIN_SERIES_READINGS
    reference = [t for t in targets if t.reference and t.horizon == 0]
    confirmation = sorted({t.field_start for t in reference})[-backtest.CONFIRMATION_TARGETS :]
    assert {t.field_start for t in reference if t.confirmation} == set(confirmation)
    assert any(not t.reference for t in targets)  # House D's readings are targets too


def test_refits_share_training_sets_and_reference_only_predicts_the_reference(design):
    targets = backtest.backtest_targets(design, "2024-01-01")
    refits = backtest.plan_refits(targets)
    assert {r.method for r in refits} == set(backtest.REFITTED)
    model_refits = [r for r in refits if r.method == backtest.MODEL]
    assert len(model_refits) == len({t.training_rows for t in targets}) < len(targets)
    assert sorted((t.source_row, t.horizon) for r in model_refits for t in r.targets) == sorted(
        (t.source_row, t.horizon) for t in targets
    )
    assert all(
        t.reference for r in refits if r.method == backtest.REFERENCE_ONLY for t in r.targets
    )


def test_a_refit_is_designed_from_its_own_training_readings(design):
    """Knots and the unknown-n median come from the training readings; the grid runs through the
    refit's last target; events the training readings cannot identify are left out."""
    config = CONFIG.replace(
        events=(model.Event("2023-06-01", "early"), model.Event("2024-10-01", "late"))
    )
    targets = backtest.backtest_targets(design, "2024-09-01")
    refit = next(
        r
        for r in backtest.plan_refits(targets)
        if r.method == backtest.MODEL and r.cutoff <= pd.Timestamp("2024-09-30")
    )
    table, refit_config = backtest.refit_table(design, config, refit)
    assert set(table["source_row"]) == set(refit.training_rows)
    assert refit_config.through == f"{max(t.field_end for t in refit.targets):%Y-%m-%d}"
    assert [e.label for e in refit_config.events] == [
        "early"
    ]  # 'late' comes after the training readings
    own = build_design(table, refit_config)
    training_only = build_design(table, refit_config.replace(through=None))
    np.testing.assert_array_equal(own.walk_knots, training_only.walk_knots)
    assert own.walk_knots.max() <= own.last_cell.max()  # no knot where no training reading is
    known = table["n"].dropna()
    assert own.unknown_n_median == float(np.median(known))
    for target in refit.targets:  # every target lies on the refit's grid, projected past its data
        placed = backtest.place(design, backtest.poll_index(design, target.source_row), own)
        assert own.projected[placed.first_cell]
    reference_table, reference_config = backtest.refit_table(
        design, config, backtest.Refit(backtest.REFERENCE_ONLY, refit.training_rows, refit.targets)
    )
    assert set(reference_table["pollster"]) == {"House A"} and reference_config.questions == (
        "Q_MAIN",
    )
    pooled_table, pooled_config = backtest.refit_table(
        design, config, backtest.Refit(backtest.NO_EFFECTS, refit.training_rows, refit.targets)
    )
    assert set(pooled_table["pollster"]) == {"House A"} and set(pooled_table["question"]) == {
        "Q_MAIN"
    }
    assert len(pooled_table) == len(table)


def test_model_candidates_refit_the_models_training_sets_with_their_option(design):
    targets = backtest.backtest_targets(design, "2024-06-01")
    methods = (backtest.MODEL, *(backtest.candidate_method(c) for c in backtest.CANDIDATES))
    refits = backtest.plan_refits(targets, methods)
    by_method = {m: [r for r in refits if r.method == m] for m in methods}
    assert all(len(v) == len(by_method[backtest.MODEL]) for v in by_method.values())
    options, walk_prior, nonsampling_prior = {}, {}, {}
    for name, changes in backtest.CANDIDATES.items():
        refit = by_method[f"model+{name}"][0]
        table, candidate_config = backtest.refit_table(design, CONFIG, refit)
        for key, value in changes.items():
            field = getattr(candidate_config, key)
            if isinstance(value, dict):  # a partial change of the priors (or sampler)
                assert all(getattr(field, k) == v for k, v in value.items())
            else:
                assert field == value
        built = PollAggregator(build_design(table, candidate_config), candidate_config).build()
        options[name] = {v.name for v in built.free_RVs}
        walk_prior[name] = type(built["walk_sd"].owner.op).__name__
        nonsampling_prior[name] = type(built["nonsampling_sd"].owner.op).__name__
    assert "drift" in options["drift"] and "nonsampling_house_z" in options["house_tau"]
    assert {"slope_sd", "slope_persistence", "slope_innovation"} <= options["damped"]
    assert options["momentum"] - options["walk_gamma"] == {"slope_persistence"}
    assert options["momentum_fixed"] == options["walk_gamma"]  # the persistence is a constant
    assert walk_prior["walk_gamma"] == "GammaRV" and walk_prior["drift"] == "HalfNormalRV"
    assert nonsampling_prior["tau_gamma"] == "GammaRV" and walk_prior["tau_gamma"] == "HalfNormalRV"
    assert {n for n, op in nonsampling_prior.items() if op == "GammaRV"} == {"tau_gamma"}
    with pytest.raises(model.ConfigError, match="unknown model candidate 'slope'"):
        backtest.candidate_method("slope")


def test_a_held_out_readings_prediction_is_the_likelihood_at_its_place(design):
    """model_alpha of a Placement equals that of the same reading inside the design (known n)."""
    import xarray as xr

    rng = np.random.default_rng(4)
    k, t = len(design.answers), len(design.time)
    posterior = xr.Dataset(
        {
            "share": (
                ("chain", "draw", "time", "answer"),
                100 * stats_softmax(rng.normal(size=(1, 5, t, k))),
            ),
            "house_effect": (
                ("chain", "draw", "pollster", "answer"),
                rng.normal(0, 0.2, size=(1, 5, len(design.pollsters), k)),
            ),
            "question_effect": (
                ("chain", "draw", "question", "answer"),
                rng.normal(0, 0.2, size=(1, 5, len(design.questions), k)),
            ),
            "nonsampling_sd": (("chain", "draw"), np.full((1, 5), 2.0)),
        },
        coords={
            "time": design.time,
            "answer": list(design.answers),
            "pollster": list(design.pollsters),
            "question": list(design.questions),
        },
    )
    i = int(np.flatnonzero(design.n_known)[3])
    placed = backtest.place(design, i, design)
    np.testing.assert_allclose(
        backtest.model_alpha(posterior, design, placed), backtest.model_alpha(posterior, design, i)
    )
    unknown = int(np.flatnonzero(~design.n_known)[0])
    alpha = backtest.model_alpha(
        posterior, design, backtest.place(design, unknown, design), np.random.default_rng(1)
    )
    assert alpha.shape == (5, design.component_used[unknown].sum()) and np.all(alpha > 0)


def stats_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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
    args = (train, start, ("talks", "continue"), "Ref | Q", 1600.0)
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


def test_baselines_order_ties_by_field_start_then_table_order_whatever_the_index():
    """ "Latest" is by field end, then field start, then the table's own order (a stable sort);
    the table's index labels play no part."""
    tied = _table(
        [
            ("Ref", "Q", "2024-02-03", "2024-02-05", 1600, 56, 38),  # same end, later start
            ("Ref", "Q", "2024-02-01", "2024-02-05", 1600, 54, 40),
            ("Ref", "Q", "2024-01-01", "2024-01-05", 1600, 50, 44),
            (
                "Ref",
                "Q",
                "2024-01-01",
                "2024-01-05",
                1600,
                52,
                42,
            ),  # a full tie: after the one above
        ]
    ).set_index(pd.Index([7, 3, 9, 0]))
    args = (pd.Timestamp("2024-03-01"), ("talks", "continue"), "Ref | Q", 1600.0)
    assert backtest.baseline_answers("last_reading", tied, *args) == {"talks": 56, "continue": 38}
    assert backtest.baseline_answers("last3_mean", tied, *args) == pytest.approx(
        {"talks": (52 + 54 + 56) / 3, "continue": (42 + 40 + 38) / 3}
    )
    earlier = tied.iloc[2:]
    assert backtest.baseline_answers("last_reading", earlier, *args) == {
        "talks": 52,
        "continue": 42,
    }
    assert backtest.baseline_answers("last_reading", earlier.iloc[::-1], *args) == {
        "talks": 50,
        "continue": 44,
    }


def test_score_is_the_dirichlet_mixture_density_and_coverage_is_per_answer(design):
    i = int(np.flatnonzero(design.component_used.sum(axis=1) == 3)[0])
    used = design.component_used[i]
    y = design.observed[i][used]
    rng = np.random.default_rng(0)
    alpha = rng.uniform(50, 500, size=(7, used.sum()))
    got = backtest.score(alpha, (design, i), np.random.default_rng(1))
    expected = np.log(np.mean([stats.dirichlet.pdf(y, a) for a in alpha]))
    assert got["log_score"] == pytest.approx(expected, rel=1e-10)
    sharp = backtest.score(1e7 * y[None, :], (design, i), np.random.default_rng(1))
    assert (
        sharp["covered90"] == 1.0
        and sharp["abs_error"] < 0.05
        and abs(sharp["signed_error"]) < 0.05
    )
    shifted = np.roll(y, 1)
    wrong = backtest.score(1e6 * shifted[None, :], (design, i), np.random.default_rng(1))
    assert wrong["covered50"] == 0.0 and wrong["log_score"] < sharp["log_score"]
    assert set(got["answers"]["answer"]) <= set(design.answers)


def test_baseline_predictions_cover_every_target_with_a_track_record(design):
    targets = backtest.backtest_targets(design, "2024-01-01")
    per_target, per_answer = backtest.baseline_predictions(
        design, targets, np.random.default_rng(0)
    )
    assert set(per_target["method"]) == set(backtest.BASELINES)
    assert len(per_target) == len(targets) * len(backtest.BASELINES)
    assert set(per_target["horizon_months"]) == {t.horizon for t in targets}
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
    per_target = per_target.assign(horizon_months=0, reference=True)
    later = per_target.iloc[[0]].assign(
        horizon_months=3, log_score=-50.0
    )  # another horizon: not in backtest.csv
    table = backtest.summarise(pd.concat([per_target, later], ignore_index=True))
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
    assert {"coverage50_lower", "coverage90_upper"} <= set(table.columns)
    lo, hi = backtest.wilson(9, 10)
    assert lo < 0.9 < hi and hi < 1


def test_paired_differences_and_signed_errors():
    rows = []
    for source_row, (model_score, other_score) in enumerate([(3.0, 2.0), (2.0, 2.5), (4.0, 2.5)]):
        for method, score in (("model", model_score), ("reference_only", other_score)):
            rows.append(
                {"method": method, "source_row": source_row, "horizon_months": 0, "series": "A | Q", "reference": True,
                 "confirmation": source_row == 2, "log_score": score, "abs_error": 1.0, "error": "",
                 "field_start": pd.Timestamp("2025-03-01") - pd.DateOffset(months=[0, 2, 1][source_row])}
            )  # fmt: skip
    paired = backtest.paired_differences(pd.DataFrame(rows)).set_index(["method", "targets"])
    row = paired.loc[("reference_only", "reference")]
    d = np.array([1.0, -0.5, 1.5])
    assert row["n"] == 3 and row["mean_difference"] == pytest.approx(d.mean())
    assert row["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    # The HAC error takes the targets in field-start order: here rows 1, 2, 0.
    assert row["se_hac"] == pytest.approx(backtest.newey_west_se(d[[1, 2, 0]]))
    assert row["se_hac"] != pytest.approx(backtest.newey_west_se(d))
    assert paired.loc[("reference_only", "confirmation"), "n"] == 1
    development = paired.loc[("reference_only", "development")]  # rows 0 and 1
    assert development["n"] == 2 and development["mean_difference"] == pytest.approx(0.25)
    answers = pd.DataFrame(
        {"method": "model", "horizon_months": 0, "answer": ["talks", "talks", "continue"], "reference": True,
         "signed_error": [2.0, 4.0, -1.0]}
    )  # fmt: skip
    bias = backtest.signed_errors(answers).set_index("answer")
    assert bias.loc["talks", "mean_signed_error"] == 3.0 and bias.loc["continue", "n"] == 1


def test_horizons_have_one_row_per_method_and_horizon_and_groups_hold_the_rest():
    rows = []
    for source_row, (series, reference, confirmation) in enumerate(
        [
            ("Levada | Q", True, False),
            ("Levada | Q", True, True),
            ("Russian Field | R", False, False),
        ]
    ):
        for horizon in (0, 3):
            for method, score in (("model", 2.0 + source_row), ("reference_only", 1.0)):
                if method == "reference_only" and not reference:
                    continue
                rows.append(
                    {"method": method, "source_row": source_row, "horizon_months": horizon, "series": series,
                     "reference": reference, "confirmation": confirmation, "log_score": score + horizon,
                     "abs_error": 1.0, "covered50": 1.0, "covered90": 1.0, "error": ""}
                )  # fmt: skip
    per_target = pd.DataFrame(rows)
    horizons = backtest.by_horizon(per_target)
    assert "targets" not in horizons
    assert {"method", "horizon_months", "n", "mean_log_score", "mae", "coverage50", "coverage90"} <= set(
        horizons.columns
    )  # fmt: skip
    assert sorted(zip(horizons["method"], horizons["horizon_months"])) == [
        ("model", 0), ("model", 3), ("reference_only", 0), ("reference_only", 3)
    ]  # fmt: skip
    row = horizons.set_index(["method", "horizon_months"]).loc[("model", 3)]
    assert row["n"] == 2 and row["mean_log_score"] == pytest.approx(3.0 + 2.5)  # rows 0, 1 only
    groups = backtest.by_group(per_target).set_index(["method", "horizon_months", "targets"])
    assert set(groups.index.get_level_values("targets")) == {
        "development",
        "confirmation",
        "Russian Field | R",
    }
    assert groups.loc[("model", 0, "confirmation"), "mean_log_score"] == 3.0
    assert groups.loc[("model", 3, "Russian Field | R"), "mean_log_score"] == 7.0
    assert ("reference_only", 0, "Russian Field | R") not in groups.index
    # no targets of a table: its columns alone, so that its file is written with its header
    only_series = per_target[~per_target["reference"]]
    assert list(horizons.columns) == ["method", "horizon_months", *backtest.SUMMARY_COLUMNS]
    group_columns = list(groups.reset_index().columns)
    assert group_columns == ["method", "horizon_months", "targets", *backtest.SUMMARY_COLUMNS]
    for table, columns in (
        (backtest.by_horizon(only_series), list(horizons.columns)),
        (backtest.by_horizon(pd.DataFrame()), list(horizons.columns)),
        (backtest.by_group(pd.DataFrame()), group_columns),
    ):
        assert table.empty and list(table.columns) == columns


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
    assert summary.loc["u", "ecdf_in_band"] and not summary.loc["s", "ecdf_in_band"]
    assert summary.loc["s", "datasets"] == 400
    assert (
        summary.loc["u", "coverage90_lower"] <= 1.0 <= summary.loc["u", "coverage90_upper"] + 1e-12
    )


def test_the_sbc_design_has_the_shipped_structure():
    """A reference house, two houses each asking only their own question (confounded pairs, sampled
    as pair sums), and an event paired with its walk segment, as the project's fit has; its knots
    sampled in the form the fit's sampler says (the project's: non-centred)."""
    shipped = model.Config.from_toml(PROJECT_CONFIG).sampler
    polls, config = sbc.sbc_design(n_readings=40, seed=1, sampler=shipped)
    design = build_design(polls, config)
    assert design.reference_pollster == "House A" and design.questions[0] == "Q_MAIN"
    assert set(design.confounded) == {("House B", "Q_B"), ("House C", "Q_C")}
    m = PollAggregator(design, config, refit=True).build()
    names = {v.name for v in m.free_RVs}
    assert {"pair_sum", "pair_split", "jump_split", "knot_value_std"} <= names
    assert (~design.n_known).any() and (design.component_label == "rest").any()


def test_the_sbc_design_calibrates_the_fitted_model_not_the_librarys():
    """The fit config's answers, priors and model choices carry over to the SBC design (its
    houses, questions and event stay the design's own); with none given, the library's."""
    fitted = model.Config(
        answers=("yes", "no"),
        trend="momentum",
        walk_prior="gamma",
        nonsampling="by_house",
        nonsampling_prior="gamma",
        unknown_n="by_house",
        grid="month",
        priors=model.Priors(walk_sd_per_month=0.1),
        sampler=model.Sampler(draws=123),
    )
    polls, config = sbc.sbc_design(fitted, n_readings=20, seed=1)
    assert config.answers == ("yes", "no") and {"yes", "no"} <= set(polls.columns)
    assert all(getattr(config, f) == getattr(fitted, f) for f in sbc.MODEL_CHOICES)
    assert config.priors == fitted.priors and config.sampler.draws == 123
    assert config.house_effects == "House A" and config.events[0].date == "2024-01-15"
    library = sbc.sbc_design(n_readings=20, seed=1)[1]
    assert all(getattr(library, f) == getattr(model.Config(), f) for f in sbc.MODEL_CHOICES)
    # every model form carries over (MODEL_FORMS is complete: tests/test_config.py)
    from model.config import MODEL_FORMS

    assert set(MODEL_FORMS) < set(sbc.MODEL_CHOICES)


def test_sbc_prior_draws_are_valid_tables():
    polls, config = sbc.sbc_design(n_readings=20, seed=1)
    design = build_design(polls, config)
    m = PollAggregator(design, config, refit=True).build()
    truths, observed = sbc.prior_draws(m, design, 3, seed=2)
    assert len(truths) == 3 and observed.shape == (3, *design.observed.shape)
    assert {"walk_sd", "nonsampling_sd", "jump[event, talks]"} <= set(truths[0])
    assert {"pair_sum[House B + Q_B, talks]", "pair_sum[House C + Q_C, talks]"} <= set(truths[0])
    assert sum(name.startswith("share[") for name in truths[0]) == 4
    used = np.broadcast_to(design.component_used, observed.shape)
    assert np.all(observed[~used] == 1.0)
    np.testing.assert_allclose(np.where(used, observed, 0).sum(axis=-1), 1.0, atol=1e-9)


def test_retried_refits_are_counted_per_refit_not_per_target():
    """A refit serving three targets counts once; a second attempt that still failed is counted
    among the retried ones; a method with no second attempt is not named."""
    from model.validation.runner import _retried_refits

    rows = [
        # method, training readings, attempts, gate passed (one row per target)
        ("model", 9, 2, False),
        ("model", 9, 2, False),
        ("model", 9, 2, False),
        ("model", 12, 2, True),
        ("model", 30, 1, True),
        ("reference_only", 9, 1, True),
        ("last_reading", np.nan, 0, np.nan),  # baselines have no refit
    ]
    table = pd.DataFrame(rows, columns=["method", "training_readings", "attempts", "gate_passed"])
    assert _retried_refits(table) == "model 2 of 3 (1)"
    assert _retried_refits(table.drop(columns="attempts")) == ""
    # Sampled longer (retry_draws) is counted apart: the 12-reading refit's second attempt was a
    # longer one, and a refit that climbed the ladder and was then sampled longer counts in both.
    longer = table.assign(
        longer_draws=[0, 0, 0, 4000, 0, 4000, np.nan],
        attempts=[2, 2, 2, 2, 1, 3, 0],
    )
    assert _retried_refits(longer) == "model 1 of 3 (1), reference_only 1 of 1 (0)"
    assert _retried_refits(longer, longer=True) == "model 1 of 3 (0), reference_only 1 of 1 (0)"


class _Stop(Exception):
    pass


def _submitted_seeds(monkeypatch, settings, priorities=None) -> dict[str, int]:
    """The seed each task of a validate run would be submitted with (nothing is sampled), and
    into ``priorities``, its Dask priority."""
    from model.validation import runner

    submitted = {}
    priorities = {} if priorities is None else priorities

    class FakeClient:
        def __init__(self, settings):
            self.cluster = None
            self.client = self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def scheduler_info(self):
            return {"workers": {"w": {"host": "h", "nthreads": 1}}}

        def run(self, fn, on_error):
            return {"w": 2}

        scheduler = type("Scheduler", (), {"address": "fake"})()

        def submit(self, fn, *args, key, pure, priority):
            submitted[key] = args[5] if fn is runner.backtest_task else args[6]
            priorities[key] = priority
            return key

    def stop(tasks, log):
        raise _Stop

    monkeypatch.setattr(runner, "_Client", FakeClient)
    monkeypatch.setattr(runner, "gather", stop)
    polls = model.load_polls(model.simulate_polls(n_readings=50, seed=3).polls)
    config = model.Config(reference_question="Q_MAIN", house_effects="House A")
    with pytest.raises(_Stop):
        runner.run_validation(polls, config, settings, log=lambda line: None)
    return submitted


def test_the_longest_refits_go_first_and_the_sbc_fits_last(monkeypatch):
    """Dask runs the higher priority first: the refits' priorities fall with their training
    readings, and every SBC fit's (a few seconds each) is below every refit's, so the last tasks
    on the workers are short."""
    priorities = {}
    settings = model.ValidateSettings(since="2024-08-01", horizons=(0, 3), sbc=3, sbc_readings=12)
    _submitted_seeds(monkeypatch, settings, priorities)
    in_order = sorted(priorities, key=priorities.get, reverse=True)
    assert len(set(priorities.values())) == len(priorities)
    assert in_order[-3:] == ["sbc-0", "sbc-1", "sbc-2"]
    readings = [int(k.rsplit("-", 1)[1]) for k in in_order[:-3]]
    assert len(readings) > 3 and readings == sorted(readings, reverse=True)


def test_a_task_seed_is_the_same_for_numpy_and_python_numbers_and_across_releases():
    """A training set's rows as numpy integers (read from a table) give the seed the same rows as
    Python integers give; and the seed of a task does not change between releases, so a recorded
    run's command reproduces it (the value is SBC dataset 0's seed in a ``--seed 1`` run)."""
    from model.validation.runner import task_seed

    rows = (3, 5, 8)
    as_numpy = tuple(np.array(rows, dtype=np.int64))
    assert task_seed(1, "backtest", "model", as_numpy) == task_seed(1, "backtest", "model", rows)
    assert task_seed(1, "sbc", np.int32(0)) == task_seed(1, "sbc", 0) == 2141488743
    assert task_seed(2, "sbc", 0) != task_seed(1, "sbc", 0) != task_seed(1, "sbc", 1)
    with pytest.raises(TypeError, match="strings, numbers and tuples"):
        task_seed(1, "backtest", np.array(rows))  # its repr varies with numpy's print options


def test_a_task_seed_follows_what_the_task_is_not_what_else_runs(monkeypatch):
    from model.validation.runner import task_seed

    base = dict(since="2024-08-01", horizons=(0, 3), seed=5, cores_per_task=1)
    alone = _submitted_seeds(monkeypatch, model.ValidateSettings(backtest=True, sbc=0, **base))
    more = _submitted_seeds(
        monkeypatch,
        model.ValidateSettings(
            backtest=True, candidates=("drift",), sbc=3, sbc_readings=12, **base
        ),
    )
    model_refits = {k: v for k, v in alone.items() if k.startswith("backtest-model-")}
    assert model_refits and all(k.startswith("backtest-") for k in alone)
    # a candidate's refits and SBC's fits added: every refit of the first run keeps its seed
    assert {k: more[k] for k in alone} == alone
    assert any(k.startswith("backtest-model+drift-") for k in more)
    assert {k for k in more if k.startswith("sbc-")} == {"sbc-0", "sbc-1", "sbc-2"}
    # and the tasks' seeds differ from each other
    assert len(set(more.values())) == len(more)
    assert task_seed(5, "sbc", 0) == more["sbc-0"] != task_seed(6, "sbc", 0)


def test_an_sbc_fit_missing_acceptance_without_divergences_is_sampled_longer():
    """The fit's rule for sampling longer (retry_draws set, fewer draws so far, no divergent
    transition in the last attempt), with SBC's acceptance (ranked bulk ESS) in place of the gate."""
    import json

    import xarray as xr

    from model.validation.sbc import ACCEPT_ESS, longer_sampling_reasons

    def trace(draws: int, divergences: int):
        idata = xr.DataTree.from_dict(
            {
                "posterior": xr.Dataset({"x": (("chain", "draw"), np.zeros((2, draws)))}),
                "sample_stats": xr.Dataset(
                    {"diverging": (("chain", "draw"), np.zeros((2, draws), dtype=bool))}
                ),
            }
        )
        attempt = {"target_accept": 0.95, "divergences": divergences, "seconds": 1.0}
        idata.attrs["sampling_attempts"] = json.dumps([attempt])
        return idata

    longer = model.Sampler(draws=100, retry_draws=400)
    assert longer_sampling_reasons(longer, trace(100, 0), ACCEPT_ESS - 1) == [
        f"min ranked bulk ESS {ACCEPT_ESS - 1} < {ACCEPT_ESS}"
    ]
    assert longer_sampling_reasons(longer, trace(100, 0), ACCEPT_ESS) == []  # accepted
    assert (
        longer_sampling_reasons(longer, trace(100, 2), 20.0) == []
    )  # divergent: more draws do not mend
    assert longer_sampling_reasons(longer, trace(400, 0), 20.0) == []  # already the longer attempt
    assert longer_sampling_reasons(model.Sampler(draws=100), trace(100, 0), 20.0) == []  # not set


def _validation(**tables):
    """A :class:`Validation` with the given fields; every other table empty, no failures."""
    import dataclasses

    from model.validation.runner import Validation

    fields = {
        "settings": model.ValidateSettings(sbc=0),
        "config": model.Config(),
        "failures": pd.DataFrame(columns=["task", "error"]),
        **{
            field.name: pd.DataFrame()
            for field in dataclasses.fields(Validation)
            if field.name not in ("settings", "config", "failures", "info")
        },
    }
    return Validation(**{**fields, **tables})


def test_the_summary_lists_the_models_rows_by_horizon_then_by_group():
    from model.validation.runner import summary_text

    def rows(targets=None):
        row = {"method": "model", "horizon_months": 3, "n": 4, "mean_log_score": 3.5, "mae": 4.25,
               "coverage50": 0.5, "coverage90": 1.0, "failed": 0, "gate_failures": 1}  # fmt: skip
        return pd.DataFrame([row if targets is None else {**row, "targets": targets}])

    empty = pd.DataFrame()
    backtest_row = pd.DataFrame(
        [{"method": "model", "n": 4, "mean_log_score": 3.5, "mae": 4.25, "coverage50": 0.5,
          "coverage90": 1.0, "failed": 0, "gate_failures": 1}]
    )  # fmt: skip

    def text(horizons, groups):
        v = _validation(
            backtest=backtest_row,
            backtest_horizons=horizons,
            backtest_groups=groups,
            info={"workers": 1, "scheduler": "LocalCluster", "wall_s": 1.0, "target_readings": 4,
                  "targets": 8, "refits": 8},
        )  # fmt: skip
        return summary_text(v).splitlines()

    lines = text(rows(), rows("Russian Field | R"))
    listed = [line.split()[0] for line in lines if " mo  n=" in line]
    assert listed == ["reference", "Russian"]
    assert any(line.split()[:4] == ["reference", "3", "mo", "n=4"] for line in lines)
    # no reference targets (a cut-off after the last of them): the groups' rows alone, whole
    # numbers still printed as such
    lines = text(empty, rows("Russian Field | R"))
    (line,) = [line for line in lines if " mo  n=" in line]
    assert " 3 mo  n=4 " in line and line.endswith("gate fail 1")


def test_the_summary_counts_sbc_fits_sampled_longer_apart_from_the_ladder():
    from model.validation.runner import summary_text

    fits = pd.DataFrame(
        {
            # a ladder retry; a longer attempt; both (ladder then longer); a first-attempt fit
            "attempts": [2, 2, 3, 1],
            "longer_draws": [0, 4000, 4000, 0],
            "divergences": [1, 0, 0, 0],
            "accepted": [True, False, True, True],
        }
    )
    quantity = {
        "quantity": "walk_sd",
        "coverage50": 0.5,
        "coverage90": 0.9,
        "mean_rank": 0.5,
        "ecdf_in_band": True,
        "uniformity_p": 0.5,
    }
    v = _validation(
        settings=model.ValidateSettings(sbc=4),
        sbc=pd.DataFrame([quantity]),
        sbc_fits=fits,
        info={"workers": 1, "scheduler": "LocalCluster", "wall_s": 1.0},
    )
    text = summary_text(v)
    assert (
        "2 of 4 fits sampled again at a higher target acceptance after divergent transitions "
        "(1 of them still with some)" in text
    )
    assert (
        "2 of 4 fits sampled again with 4000 draws a chain after missing acceptance with no divergent "
        "transition (1 of them still not accepted)" in text
    )


def test_a_longer_attempt_that_climbed_the_ladder_is_counted_once_as_longer_and_as_climbed():
    """A refit sampled longer whose longer attempt then climbed the ladder (three attempts, two
    of them with ``retry_draws``): its row records the draws of the longer attempts once, the
    last attempt's target acceptance, and the summary counts it both ways."""
    import json

    import xarray as xr

    from model.validation.runner import _attempt_columns, _sampled_again

    idata = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"x": (("chain", "draw"), np.zeros((2, 4)))})}
    )
    idata.attrs["sampling_attempts"] = json.dumps(
        [
            {"target_accept": 0.95, "divergences": 0, "seconds": 1.0},
            {
                "target_accept": 0.95,
                "divergences": 1,
                "seconds": 2.0,
                "draws": 4000,
                "after": ["r"],
            },
            {
                "target_accept": 0.99,
                "divergences": 0,
                "seconds": 3.0,
                "draws": 4000,
                "after": ["d"],
            },
        ]
    )
    row = _attempt_columns(idata)
    assert row == {
        "target_accept": 0.99,
        "first_attempt_divergences": 0,
        "attempts": 3,
        "longer_draws": 4000,
    }
    climbed, lengthened = _sampled_again(pd.DataFrame([row]))
    assert bool(climbed.iloc[0]) and bool(lengthened.iloc[0])


def test_on_an_existing_cluster_a_task_gets_its_machines_cores_over_the_tasks_run_at_once():
    """Without --cores-per-task: on each machine, its CPUs over its workers' threads (the tasks
    it runs at once), the least over the machines; never fewer than one; a worker without a CPU
    count (joined or left between the two calls) left out; the chains when no worker has both."""
    from dask.system import cpu_count

    from model.validation.runner import _cores, cores_per_task_on

    def worker(host, nthreads):
        return {"host": host, "nthreads": nthreads}

    # two one-thread workers on one 8-core machine, one four-thread worker on a 4-core machine
    workers = {"a1": worker("a", 1), "a2": worker("a", 1), "b": worker("b", 4)}
    assert cores_per_task_on(workers, {"a1": 8, "a2": 8, "b": 4}) == 1
    assert cores_per_task_on({k: workers[k] for k in ("a1", "a2")}, {"a1": 8, "a2": 8}) == 4
    assert cores_per_task_on({"b": worker("b", 8)}, {"b": 4}) == 1  # more threads than cores
    # a2 joined after the CPU counts were taken: left out, not counted as one CPU for machine a
    assert cores_per_task_on({k: workers[k] for k in ("a1", "a2")}, {"a1": 8}) == 8
    assert cores_per_task_on({}, {}) is None
    assert cores_per_task_on({"c": worker("c", 1)}, {}) is None

    class Client:
        def __init__(self, counts):
            self.counts = counts

        def run(self, fn, on_error):
            assert fn is cpu_count and on_error == "ignore"
            return self.counts

    def existing(counts):
        return type("Dask", (), {"cluster": None, "client": Client(counts)})()

    joined = {"x": worker("x", 2)}
    assert _cores(model.ValidateSettings(), existing({"x": 6}), joined, chains=4) == 3
    assert _cores(model.ValidateSettings(), existing({}), {}, chains=4) == 4  # none joined yet
    with_option = model.ValidateSettings(cores_per_task=2)
    assert _cores(with_option, existing({"x": 6}), joined, chains=4) == 2
    local = type("Dask", (), {"cluster": object(), "client": None})()
    assert _cores(model.ValidateSettings(workers=1), local, {}, chains=4) == cpu_count()
