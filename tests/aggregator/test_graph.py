"""The PyMC model's structure: dims, coords, identification, log density, prior predictive. No MCMC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest

import model
from model.aggregator.design import build_design
from model.aggregator.graph import PollAggregator

NAMED_DIMS = {
    "time",
    "pollster",
    "question",
    "answer",
    "poll",
    "component",
    "event",
    "step",
    "pollster_unpaired",
    "question_unpaired",
    "pair",
    "poll_unknown_n",
    "walk_segment",
    "event_paired",
    "event_unpaired",
    "known_share",
}


#: PyTensor's default mode (numba), for the tests that draw many prior samples.
COMPILED_MODE = pytensor.config.mode


@pytest.fixture(autouse=True, scope="module")
def python_mode():
    """These tests build graphs and evaluate small functions of them (prior draws, log densities)
    and never sample: PyTensor's Python mode runs them with no compiling, where numba compiles
    each first (docs/performance.md). The fused operations run their numba kernels either way;
    the numba backend's graphs of the model are tested where it samples."""
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield


@pytest.fixture
def compiled_mode():
    """The default mode for a test that draws thousands of prior samples, where compiled draws
    outrun Python's (docs/performance.md)."""
    with pytensor.config.change_flags(mode=COMPILED_MODE):
        yield


def build(polls, **config):
    config = model.Config(**config)
    design = build_design(polls, config)
    return design, PollAggregator(design, config).build()


@pytest.mark.parametrize("identification", ["zero_sum", "reference", "anchors"])
def test_every_variable_has_named_dims_with_real_labels(sim_polls, identification):
    identified = {
        "zero_sum": {},
        "reference": {"house_effects": sorted(sim_polls["pollster"].unique())[0]},
        "anchors": {
            "house_effects": "anchors",
            "anchors": (
                model.Anchor("2024-06-01", "talks", 45.0),
                model.Anchor("2024-06-01", "continue", 40.0),
            ),
        },
    }[identification]
    design, m = build(sim_polls, events=(model.Event("2024-01-15", "event"),), **identified)
    for var in m.free_RVs + m.deterministics + m.observed_RVs + m.data_vars:
        if var.ndim == 0:
            continue
        dims = m.named_vars_to_dims.get(var.name)
        assert dims, f"{var.name} has no dims"
        assert set(dims) <= NAMED_DIMS, f"{var.name}: {dims}"
    if identification == "anchors":
        assert list(m.coords["known_share"]) == ["talks on 2024-06-01", "continue on 2024-06-01"]
    assert list(m.coords["pollster"]) == sorted(sim_polls["pollster"].unique())
    assert pd.Timestamp(m.coords["time"][0]) == design.time[0]
    assert np.issubdtype(np.asarray(m.coords["time"]).dtype, np.datetime64)
    assert list(m.coords["answer"]) == ["talks", "continue", "undecided"]
    assert m.coords["poll"][0].startswith(design.polls["pollster"].iloc[0])
    assert m.named_vars_to_dims["share"] == ("time", "answer")


def test_log_density_is_finite_at_the_initial_point(sim_polls):
    _, m = build(sim_polls)
    logps = m.point_logps()
    assert all(np.isfinite(v) for v in logps.values()), logps


def test_zero_sum_house_effects_sum_to_zero(sim_polls):
    _, m = build(sim_polls)
    draws = pm.draw(m["house_effect"], draws=20, random_seed=1)
    np.testing.assert_allclose(draws.sum(axis=1), 0, atol=1e-9)  # over pollsters
    np.testing.assert_allclose(draws.sum(axis=2), 0, atol=1e-9)  # over answers


def test_reference_pollster_effect_is_zero(sim_polls):
    design, m = build(sim_polls, house_effects="House B")
    draws = pm.draw(m["house_effect"], draws=20, random_seed=1)
    assert design.pollsters[0] == "House B"
    np.testing.assert_array_equal(draws[:, 0], 0)
    assert np.abs(draws[:, 1:]).max() > 0


def test_reference_question_effect_is_zero(sim_polls):
    _, m = build(sim_polls, reference_question="Q_MAIN")
    draws = pm.draw(m["question_effect"], draws=20, random_seed=1)
    assert list(m.coords["question"]) == ["Q_MAIN", "Q_ALT"]
    np.testing.assert_array_equal(draws[:, 0], 0)


def test_anchors_add_an_observation_of_the_true_curve(sim_polls):
    anchor = model.Anchor(date="2024-06-01", answer="talks", value=45.0, sd_pp=0.5)
    _, m = build(sim_polls, house_effects="anchors", anchors=(anchor,))
    assert "anchor" in [v.name for v in m.observed_RVs]
    draws = pm.draw(m["house_effect"], draws=20, random_seed=1)
    assert np.abs(draws.sum(axis=1)).max() > 1e-6  # no longer zero-sum over pollsters


def test_unknown_sample_sizes_are_parameters(sim_polls):
    design, m = build(sim_polls)
    assert (~design.n_known).sum() > 0
    assert "log_n_z" in [v.name for v in m.free_RVs]
    assert len(m.coords["poll_unknown_n"]) == (~design.n_known).sum()


def test_prior_predictive_readings_look_like_polls(sim_polls):
    design, m = build(sim_polls)
    with m:
        prior = pm.sample_prior_predictive(
            draws=300, random_seed=3, var_names=["obs_share", "share"]
        )
    shares = 100 * prior.prior_predictive["obs_share"].values  # chain, draw, poll, component
    used = np.broadcast_to(design.component_used, shares.shape[2:])
    values = shares[..., used]
    assert np.isfinite(values).all()
    assert (values >= 0).all() and (values <= 100).all()
    # plausible, not degenerate: most readings are far from 0 and 100, and they vary
    assert np.mean((values > 1) & (values < 99)) > 0.9
    assert 5 < np.std(values) < 40
    # per reading, the used components sum to one
    np.testing.assert_allclose((shares * used).sum(axis=-1), 100)


def test_a_single_house_and_question_builds(sim_polls):
    one = sim_polls[(sim_polls["pollster"] == "House A") & (sim_polls["question"] == "Q_MAIN")]
    _, m = build(model.load_polls(one))
    names = [v.name for v in m.free_RVs]
    assert "house_raw" not in names and "question_raw" not in names
    assert np.isfinite(m.point_logps()["obs_share"])


def test_two_answer_table_builds():
    sim = model.simulate_polls(
        answers=("yes", "no"),
        pollsters=("A", "B", "C", "D", "E"),
        questions=("VOTE",),
        n_readings=40,
        seed=2,
    )
    polls = model.load_polls(sim.polls, answers=["yes", "no"])
    design, m = build(polls, answers=("yes", "no"), grid="day")
    assert list(m.coords["answer"]) == ["yes", "no"]
    assert len(m.coords["time"]) == len(design.time) > 300


def test_confounded_pairs_in_the_project_data():
    from pathlib import Path

    root = Path(model.__path__[0]).parent
    config = model.Config.from_toml(root / "config" / "fit.toml")
    design = build_design(model.load_polls(root / "data" / "polls.csv"), config)
    pairs = {
        (design.pollsters[h], design.questions[q])
        for h, q in zip(design.paired_pollsters, design.paired_questions)
    }
    assert pairs == {
        ("Russian Field", "RF_CONTINUE_VS_TALKS"),
        ("FSO", "FSO_CLOSED_TALKS_VS_CONTINUE"),
        ("VTsIOM", "VTSIOM_CLOSED_TALKS_VS_CONTINUE"),
    }


def test_pair_reparameterisation_keeps_the_independent_priors(compiled_mode):
    """A confounded house/question pair is sampled as (sum, split); the prior must be unchanged."""
    rows = [
        {
            "pollster": "REF",
            "question": "Q0",
            "field_start": "2024-01-01",
            "field_end": "2024-01-03",
        },
        {"pollster": "P", "question": "Q1", "field_start": "2024-01-08", "field_end": "2024-01-10"},
        {
            "pollster": "P2",
            "question": "Q0",
            "field_start": "2024-01-15",
            "field_end": "2024-01-17",
        },
        {
            "pollster": "P2",
            "question": "Q2",
            "field_start": "2024-01-22",
            "field_end": "2024-01-24",
        },
        {
            "pollster": "REF",
            "question": "Q2",
            "field_start": "2024-01-29",
            "field_end": "2024-01-31",
        },
    ]
    polls = model.load_polls(
        pd.DataFrame([{**r, "n": 1000, "talks": 50, "continue": 40, "undecided": 10} for r in rows])
    )
    design, m = build(polls, house_effects="REF", reference_question="Q0")
    assert [design.pollsters[h] for h in design.paired_pollsters] == ["P"]
    house, question = pm.draw([m["house_effect"], m["question_effect"]], draws=20000, random_seed=7)
    p, p2 = design.pollsters.index("P"), design.pollsters.index("P2")
    q1, q2 = design.questions.index("Q1"), design.questions.index("Q2")
    # paired (P, Q1) against unpaired (P2, Q2): same marginal priors, and independent
    for paired, unpaired in (
        (house[:, p, 0], house[:, p2, 0]),
        (question[:, q1, 0], question[:, q2, 0]),
    ):
        np.testing.assert_allclose(
            np.quantile(paired, [0.1, 0.25, 0.5, 0.75, 0.9]),
            np.quantile(unpaired, [0.1, 0.25, 0.5, 0.75, 0.9]),
            atol=0.02,
        )
    assert abs(np.corrcoef(house[:, p, 0], question[:, q1, 0])[0, 1]) < 0.03


@pytest.mark.parametrize("form", ["centred", "non_centred"])
@pytest.mark.parametrize("knots", ["design", "every_other_cell"])
def test_segmented_walk_keeps_the_prior(sim_polls, knots, form, compiled_mode):
    """The walk by segments (values at knots centred or standardised, bridge and jump split
    non-centred) has the plain non-centred walk's prior: increments independent
    ZeroSumNormal(walk_sd), jumps ZeroSumNormal(jump_sd). (The plain walk itself, no knots, is
    checked against the NumPyro reference's log density.)"""
    import dataclasses

    config = model.Config(events=(model.Event("2024-01-15", "event"),)).replace(
        sampler={"knots": form}
    )
    design = build_design(sim_polls, config)
    chosen = {"design": design.walk_knots, "every_other_cell": np.arange(0, len(design.time), 2)}[
        knots
    ]
    design = dataclasses.replace(design, walk_knots=chosen)
    m = PollAggregator(design, config).build()
    knot_values = {"centred": "trend_at_knot", "non_centred": "knot_value_std"}[form]
    assert (
        knot_values in m.named_vars and "jump_split" in m.named_vars
    )  # the event sits in a segment
    share, walk_sd, jump = pm.draw(
        [m["share"], m["walk_sd"], m["jump"]], draws=20000, random_seed=3
    )
    log_ratio = np.log(share[:, :, 1] / share[:, :, 0])
    jump_diff = jump[:, 0, 1] - jump[:, 0, 0]
    step = np.diff(log_ratio, axis=1)
    step[:, design.event_cell[0] - 1] -= jump_diff
    standardised = step / walk_sd[:, None]
    # z_1 - z_0 of a 3-answer ZeroSumNormal(1) has sd sqrt(2); the jump's the same times jump_sd
    quantiles = np.quantile(standardised, [0.1, 0.5, 0.9], axis=0) / np.sqrt(2)
    np.testing.assert_allclose(
        quantiles,
        np.broadcast_to(np.array([[-1.2816], [0.0], [1.2816]]), quantiles.shape),
        atol=0.07,
    )
    np.testing.assert_allclose(jump_diff.std() / np.sqrt(2), config.priors.jump_sd, rtol=0.03)
    corr = np.corrcoef(np.column_stack([standardised[:, :12], jump_diff]).T)
    assert np.abs(corr[np.triu_indices_from(corr, k=1)]).max() < 0.05


def damped_path_by_recursion(sd, rho, z, months_per_cell):
    """The damped slope's running sum (time, answer) as its docstring writes the AR(1) recursion:
    ``g_0 = sd z_0``, ``g_t = phi g_{t-1} + sd sqrt(1 - phi^2) z_t``, ``phi = rho ** months``,
    summed from 0 at the first cell."""
    phi = rho**months_per_cell
    slope = np.empty_like(z)
    slope[0] = sd * z[0]
    for t in range(1, len(z)):
        slope[t] = phi * slope[t - 1] + sd * np.sqrt(1 - phi**2) * z[t]
    return np.vstack([np.zeros((1, z.shape[1])), np.cumsum(slope, axis=0)[:-1] * months_per_cell])


@pytest.mark.parametrize("cell_days", [7.0, 30.44])
def test_the_damped_slope_is_the_ar1_recursion_and_its_running_sum(cell_days):
    """trend = "damped": the path the trend gains is the running sum of a stationary AR(1) slope,
    as the docstring writes it, for prior draws of its scale, persistence and innovations."""
    from model.aggregator.graph import _damped_slope_path
    from model.aggregator.names import TIME

    n_time, answers = 40, ["a", "b", "c"]
    with pm.Model(coords={TIME: range(n_time), "answer": answers}):
        path = _damped_slope_path(n_time, cell_days, model.Config().priors)
        m = pm.modelcontext(None)
        draws = pm.draw(
            [m["slope_sd"], m["slope_persistence"], m["slope_innovation"], path],
            draws=3,
            random_seed=5,
        )
    for sd, rho, z, got in zip(*draws):
        expected = damped_path_by_recursion(sd, rho, z, cell_days / 30.44)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.sum(axis=1), 0, atol=1e-12)  # zero-sum over answers
    assert {"slope_sd", "slope_persistence", "slope_innovation"} <= set(m.named_vars)
    assert m.named_vars_to_dims["slope_innovation"] == (TIME, "answer")


def test_the_model_options_add_their_parameters_and_reduce_to_the_model_at_zero(sim_polls):
    """trend = "drift", nonsampling = "by_house", unknown_n = "by_house": each adds its parameters;
    at drift 0 and every house's non-sampling error equal to the shared one the readings' log
    density is the default model's."""
    base_design, base = build(sim_polls, reference_question="Q_MAIN")
    design, options = build(
        sim_polls, reference_question="Q_MAIN", trend="drift", nonsampling="by_house"
    )
    names = {v.name for v in options.free_RVs} - {v.name for v in base.free_RVs}
    assert names == {"drift", "nonsampling_house_spread", "nonsampling_house_z"}
    assert options.named_vars_to_dims["nonsampling_sd_house"] == ("pollster",)
    point = base.initial_point(random_seed=2)
    extended = {**point, "drift_zerosum__": np.zeros(2), "nonsampling_house_spread_log__": np.array(0.0),
                "nonsampling_house_z": np.zeros(len(design.pollsters))}  # fmt: skip
    reading_logp = [m.compile_logp(vars=[m["obs_share"]], sum=False) for m in (base, options)]
    np.testing.assert_allclose(reading_logp[1](extended)[0] - reading_logp[0](point)[0], 0, atol=0)
    # (What a drift does to the trend: test_a_slope_candidate_is_the_walk_plus_its_mean_path_in_both_knot_forms.)
    by_house_n = build(sim_polls, reference_question="Q_MAIN", unknown_n="by_house")[0]
    assert set(by_house_n.house_n_medians) == set(by_house_n.pollsters)
    for pollster, median in by_house_n.house_n_medians.items():
        own = sim_polls.loc[sim_polls["pollster"] == pollster, "n"].dropna()
        assert median == float(np.median(own))


@pytest.mark.parametrize("form", ["centred", "non_centred"])
def test_momentum_carries_each_segments_slope_on_and_past_the_last_knot(sim_polls, form):
    """trend = "momentum", as ``_walk_and_jumps`` writes it: a segment's change less its
    predecessor's slope per cell, decayed over the months between their midpoints and times its
    length, has the walk's prior (none carried into or out of the event's segment); past the last
    knot the trend gains the last segment's slope per cell, decayed. Prior draws of the walk's
    variables, at a persistence of 0.8."""
    from pymc.model.transform.conditioning import remove_value_transforms

    from model.aggregator.graph import event_segments, walk_steps

    end_of_data = pd.to_datetime(sim_polls["field_end"]).max()
    config = model.Config(
        events=(model.Event("2024-01-15", "event"),),
        through=(end_of_data + pd.Timedelta(days=120)).strftime("%Y-%m-%d"),
    ).replace(sampler={"knots": form})
    design = build_design(sim_polls, config)
    base = remove_value_transforms(PollAggregator(design, config).build())
    carried = remove_value_transforms(
        PollAggregator(design, config.replace(trend="momentum")).build()
    )
    assert {v.name for v in carried.free_RVs} - {v.name for v in base.free_RVs} == {
        "slope_persistence"
    }
    knot_name = {"centred": "trend_at_knot", "non_centred": "knot_value_std"}[form]
    names = [v.name for v in base.free_RVs]
    point = dict(zip(names, pm.draw([base[n] for n in names], random_seed=4)))
    rho = 0.8

    knots = np.asarray(design.walk_knots)
    start, end = knots[:-1], knots[1:]
    length, mid = end - start, (start + end) / 2
    carry = np.r_[0.0, rho ** (np.diff(mid) * design.cell_days / 30.44) * length[1:] / length[:-1]]
    (paired,) = event_segments(design, walk_steps(design))[1]
    carry[[paired, paired + 1]] = 0.0
    assert (carry > 0.05).sum() >= 2  # something is carried

    def eta(m, values):
        (share,) = m.replace_rvs_by_values([m["share"]])
        share = m.compile_fn(share, inputs=m.value_vars, on_unused_input="ignore")
        log_share = np.log(share(values))
        return log_share - log_share.mean(axis=1, keepdims=True)

    base_eta = eta(base, point)
    carried_eta = eta(carried, {**point, "slope_persistence": rho})
    base_change = base_eta[end] - base_eta[start]
    carried_change = carried_eta[end] - carried_eta[start]
    if form == "centred":
        # The same knot values: the same changes; their log density is the walk's of the
        # innovations, the changes less what each carries on.
        np.testing.assert_allclose(carried_change, base_change, atol=1e-10)
        innovation = base_change - carry[:, None] * np.vstack([np.zeros(3), base_change[:-1]])
        as_walk = {**point, knot_name: point["level"] + np.cumsum(innovation, axis=0)}
        np.testing.assert_allclose(
            carried.compile_logp(vars=[carried[knot_name]])({**point, "slope_persistence": rho}),
            base.compile_logp(vars=[base[knot_name]])(as_walk),
            rtol=1e-10,
        )
    else:
        # The same standardised innovations: each change is the walk's plus what it carries on.
        expected = base_change.copy()
        for j in range(1, len(expected)):
            expected[j] += carry[j] * expected[j - 1]
        np.testing.assert_allclose(carried_change, expected, atol=1e-10)
    # Past the last knot: the walk's own steps plus the last segment's slope, decayed.
    tail = np.arange(end[-1], len(design.time) - 1)  # step s: cell s to s + 1
    assert len(tail) > 10
    slope = carried_change[-1] / length[-1]
    drift = rho ** ((tail + 0.5 - mid[-1]) * design.cell_days / 30.44)[:, None] * slope
    np.testing.assert_allclose(
        (carried_eta - base_eta)[tail + 1] - (carried_eta - base_eta)[end[-1]],
        np.cumsum(drift, axis=0),
        atol=1e-10,
    )


def test_a_fixed_persistence_is_the_sampled_model_at_that_value(sim_polls):
    """priors.slope_persistence (candidate ``momentum_fixed``): no persistence is sampled; the
    model is the sampled-persistence one at that value, less the persistence's own prior term,
    and the value is recorded beside the draws as a constant."""
    from pymc.model.transform.conditioning import remove_value_transforms

    config = model.Config(trend="momentum")
    design = build_design(sim_polls, config)
    sampled = remove_value_transforms(PollAggregator(design, config).build())
    fixed = remove_value_transforms(
        PollAggregator(design, config.replace(priors={"slope_persistence": 0.8})).build()
    )
    assert {v.name for v in sampled.free_RVs} - {v.name for v in fixed.free_RVs} == {
        "slope_persistence"
    }
    assert "slope_persistence" in {v.name for v in fixed.deterministics}
    names = [v.name for v in fixed.free_RVs]
    point = dict(zip(names, pm.draw([fixed[n] for n in names], random_seed=5)))
    others = [sampled[n] for n in names] + sampled.observed_RVs  # all but the persistence's
    np.testing.assert_allclose(
        fixed.compile_logp()(point),
        sampled.compile_logp(vars=others)({**point, "slope_persistence": 0.8}),
        rtol=1e-12,
    )
    recorded = fixed.compile_fn(fixed["slope_persistence"], inputs=[], on_unused_input="ignore")
    assert float(recorded({})) == 0.8


def test_momentum_prior_draws_are_the_same_in_both_knot_forms(sim_polls):
    """trend = "momentum": prior draws of the knots' changes (the centred form draws through its
    own random function, the non-centred one through the graph) agree in spread and carry the
    previous segment's change on."""
    draws = {}
    for form in ("centred", "non_centred"):
        config = model.Config(trend="momentum").replace(sampler={"knots": form})
        design = build_design(sim_polls, config)
        m = PollAggregator(design, config).build()
        # Python mode: the centred form draws through a Python function (numba: object mode).
        share = pm.draw(m["share"], draws=1500, random_seed=8, mode="FAST_COMPILE")
        log_ratio = np.log(share[:, :, 1] / share[:, :, 0])
        draws[form] = np.diff(log_ratio[:, np.asarray(design.walk_knots)], axis=1)
    centred, non_centred = draws["centred"], draws["non_centred"]
    assert centred.shape[1] >= 4
    np.testing.assert_allclose(centred.std(axis=0), non_centred.std(axis=0), rtol=0.1)
    for changes in (centred, non_centred):
        lag1 = np.corrcoef(changes[:, 1:3].ravel(), changes[:, 0:2].ravel())[0, 1]
        assert lag1 > 0.2


def test_a_scale_parameter_of_an_unknown_form_is_refused():
    """Config refuses other forms; a direct caller with a typo gets an error, not a half-normal."""
    from model.aggregator.graph import _scale_parameter

    with pm.Model() as m:
        assert type(_scale_parameter("a", 0.1, "half_normal").owner.op).__name__ == "HalfNormalRV"
        assert type(_scale_parameter("b", 0.1, "gamma").owner.op).__name__ == "GammaRV"
        with pytest.raises(ValueError, match="c: unknown scale prior 'flat'"):
            _scale_parameter("c", 0.1, "flat")
    assert "c" not in m.named_vars


@pytest.mark.parametrize("trend", ["drift", "damped"])
@pytest.mark.parametrize("form", ["centred", "non_centred", "no_segments"])
def test_a_slope_candidate_is_the_walk_plus_its_mean_path_in_both_knot_forms(
    sim_polls, form, trend
):
    """trend = "drift" or "damped", sampled as the mean path M of the walk's steps
    (``_walk_and_jumps``): the trend is the walk's plus M (``m_t d``, or the running sum of the
    damped AR(1) slope, as the recursion writes it), the event's jump is the walk's, and in the
    centred form the knots' log density at the knot values moved by M is the walk's at the plain
    ones (M enters only their prior); also with no segment (one knot: every step plain). Prior
    draws of the walk's variables; a drift of about 8 points a year near 50%, a damped slope of its
    prior's size."""
    import dataclasses

    from pymc.model.transform.conditioning import remove_value_transforms

    end_of_data = pd.to_datetime(sim_polls["field_end"]).max()
    config = model.Config(
        events=(model.Event("2024-01-15", "event"),),
        through=(end_of_data + pd.Timedelta(days=120)).strftime("%Y-%m-%d"),
    ).replace(sampler={"knots": "non_centred" if form == "no_segments" else form})
    design = build_design(sim_polls, config)
    if form == "no_segments":
        design = dataclasses.replace(design, walk_knots=np.array([0]))
    base = remove_value_transforms(PollAggregator(design, config).build())
    candidate = remove_value_transforms(PollAggregator(design, config.replace(trend=trend)).build())
    knot_name = {"centred": "trend_at_knot", "non_centred": "knot_value_std"}.get(form)
    # the event sits in a segment, its jump split from the segment's change; or no segment at all
    assert ("jump_split" in base.named_vars) == (form != "no_segments")
    names = [v.name for v in base.free_RVs]
    point = dict(zip(names, pm.draw([base[n] for n in names], random_seed=6)))
    n_time, months_per_cell = len(design.time), design.cell_days / 30.44
    if trend == "drift":
        d = np.array([0.03, -0.01, -0.02])
        added = {"drift": d}
        path = np.arange(n_time)[:, None] * months_per_cell * d
    else:
        z = np.random.default_rng(6).normal(size=(n_time, 3))
        z -= z.mean(axis=1, keepdims=True)
        sd, rho = 0.02, 0.9
        added = {"slope_sd": sd, "slope_persistence": rho, "slope_innovation": z}
        path = damped_path_by_recursion(sd, rho, z, months_per_cell)
    assert {v.name for v in candidate.free_RVs} - set(names) == set(added)
    knots = np.asarray(design.walk_knots)
    assert n_time - 1 - knots[-1] > 10  # steps past the last knot
    moved = {**point, **added}
    if form == "centred":
        moved[knot_name] = point[knot_name] + path[knots[1:]]
        np.testing.assert_allclose(
            candidate.compile_logp(vars=[candidate[knot_name]])(moved),
            base.compile_logp(vars=[base[knot_name]])(point),
            rtol=1e-12,
        )

    def values(m, name, at):
        (var,) = m.replace_rvs_by_values([m[name]])
        return m.compile_fn(var, inputs=m.value_vars, on_unused_input="ignore")(at)

    def eta(m, at):
        log_share = np.log(values(m, "share", at))
        return log_share - log_share.mean(axis=1, keepdims=True)

    assert np.abs(np.diff(path, axis=0)).max() > 1e-3  # the path moves
    np.testing.assert_allclose(eta(candidate, moved), eta(base, point) + path, atol=1e-10)
    np.testing.assert_allclose(
        values(candidate, "jump", moved), values(base, "jump", point), atol=1e-12
    )
