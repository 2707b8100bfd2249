"""The NumPyro reference model (model/bench/reference.py) against the project's PyMC model.

Two checks: the two log densities agree at matched points (no sampling), and on a small simulated
table the two posteriors agree (both sampled). The sampling tolerances were set from measured
differences between the two fits (stated per check) and from deliberately broken references tried
once by hand (no house effect, no question effect, tau = sd/100, 1/c = 1/n + tau, 1/c = 1/n): each
broken one fails at least one check (the narrowest, 1/c = 1/n, by walk_sd x1.40 against 15%).
Pieces the posterior barely shows (field-period averaging, the walk prior's cell scaling, the
unknown-n prior, the masking of unused components) are caught by the log-density test instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import model
from model.aggregator.design import build_design
from model.aggregator.graph import PollAggregator
from model.bench.reference import make_potential_energy, request_host_devices
from model.bench.runner import compared_diagnostics, fit_project, fit_reference_timed

# A damaged entry of JAX's cache (a run killed while writing it) is JAX's warning, then a compile:
# shown, not an error that fails every later run.
pytestmark = pytest.mark.filterwarnings(
    "default:Error (reading|writing) persistent compilation cache"
)


@pytest.fixture(scope="module", autouse=True)
def two_host_devices():
    """Two JAX CPU devices for the reference's parallel chains (JAX takes this only before it first
    runs), and JAX's persistent compilation cache for this module's fits: beside PyTensor's compiled
    kernels (an empty ``base_compiledir`` starts both afresh), so a second run of the suite loads the
    reference's sampling loop instead of compiling it again (~10 s here). The setting holds for the
    rest of the test process (no later test compiles with JAX in process). The bench does not
    turn JAX's cache on: its reference fits run in fresh processes and pay the compile a NumPyro
    user pays."""
    import jax
    import pytensor

    request_host_devices(2)
    jax.config.update(
        "jax_compilation_cache_dir", str(Path(pytensor.config.base_compiledir) / "jax_tests")
    )


@pytest.fixture(scope="module")
def small_table():
    """Four houses, two questions, some readings partial or without n; weekly grid over 18 months."""
    return model.load_polls(
        model.simulate_polls(n_readings=50, start="2023-07-01", end="2024-12-31", seed=3).polls
    )


@pytest.mark.parametrize("house_effects", ["House A", "zero_sum", "anchors"])
def test_log_density_matches_the_project_model(house_effects):
    """Same unconstrained point, same log joint density (Jacobians included), in every identification mode."""
    table = model.simulate_polls(n_readings=30, start="2024-01-01", end="2024-06-30", seed=5).polls
    table.loc[0, ["continue", "undecided"]] = np.nan  # one answer reported: an unused component
    polls = model.load_polls(table)
    anchors = (model.Anchor("2024-03-01", "talks", 45.0),) if house_effects == "anchors" else ()
    config = model.Config(
        reference_question="Q_MAIN",
        house_effects=house_effects,
        anchors=anchors,
        events=(model.Event("2024-03-15", "jump"),),
    )
    # The reference samples house and question effects non-centred; so must the project here.
    # The same for the walk (no knots: no centred segments) and the jumps.
    design = dataclasses.replace(
        build_design(polls, config),
        centred_houses=False,
        centred_questions=False,
        walk_knots=np.zeros(0, dtype=int),
    )
    assert not design.paired_pollsters  # the pair reparameterisation is the project's own
    assert not design.component_used.all() and not design.n_known.all()
    pymc_model = PollAggregator(design, config).build()
    logp = pymc_model.compile_logp()
    potential_energy = make_potential_energy(design, config)
    rng = np.random.default_rng(0)
    for _ in range(3):
        point = {
            name: rng.normal(0, 0.5, np.shape(value))
            for name, value in pymc_model.initial_point().items()
        }
        # PyMC names the unconstrained values walk_sd_log__, level_zerosum__, ...; NumPyro by site.
        params = {
            name.removesuffix("_log__").removesuffix("_zerosum__"): value
            for name, value in point.items()
        }
        np.testing.assert_allclose(-potential_energy(params), float(logp(point)), rtol=1e-10)


@pytest.mark.sampling
def test_reference_posterior_matches_the_project_fit(small_table):
    config = model.Config(
        reference_question="Q_MAIN",
        house_effects="House A",
        # non-centred house effects ("auto" chooses it for this table too), pinned so that the
        # tiny validation's refits (tests/validation/test_validate.py) share this compiled model
        sampler=model.Sampler(draws=500, tune=500, chains=2, house_form="non_centred"),
    )
    # Through the bench's timed fits (model.bench.runner), so the bench measures what agrees here.
    design = build_design(small_table, config)
    project_fit = fit_project(design, config, seed=2)
    reference_fit = fit_reference_timed(design, config, seed=1)
    project, reference = project_fit["posterior"], reference_fit["posterior"]
    for fitted in (project_fit, reference_fit):
        assert fitted["compile_s"] > 0 and fitted["sample_s"] > 0
        figures = compared_diagnostics(fitted["posterior"], fitted["divergences"], fitted["energy"])
        assert np.isfinite(
            [figures["min_ess_bulk"], figures["min_ess_tail"], figures["max_rhat"]]
        ).all(), figures
        assert np.isfinite(figures["min_bfmi"]) and figures["min_bfmi"] > 0, figures
        assert 0 < figures["min_ess_bulk"] < 3 * 2 * 500 and figures["max_rhat"] > 0.99, figures
    assert reference["share"].dims == ("chain", "draw", "time", "answer")
    assert reference.sizes == {**reference.sizes, "chain": 2, "draw": 500}
    for dim in ("time", "answer", "pollster", "question"):
        assert list(reference[dim].values) == list(project[dim].values), dim

    draws = ("chain", "draw")
    # Median curves (percent). Measured over three seed pairs: max 0.15-0.32, mean 0.04-0.05
    # points; no house effect gave max 11.9 / mean 5.3, no question effect 3.2 / 0.88, no tau 1.6 / 0.30.
    gap = abs(reference["share"].median(draws) - project["share"].median(draws))
    assert float(gap.max()) < 1.0 and float(gap.mean()) < 0.25, (
        float(gap.max()),
        float(gap.mean()),
    )

    # 90% interval widths. Measured: ratio 0.83-1.16 per cell, 1.00-1.02 on average; no house
    # effect gave 1.9 on average, no question effect 1.6.
    def width(post):
        return post["share"].quantile(0.95, dim=draws) - post["share"].quantile(0.05, dim=draws)

    ratio = width(reference) / width(project)
    assert (
        0.85 < float(ratio.mean()) < 1.15 and 0.6 < float(ratio.min()) and float(ratio.max()) < 1.6
    ), ratio

    # Scales: ratio of posterior medians. Measured within 5% of 1; the broken references moved
    # walk_sd by x1.40 (no tau), nonsampling_sd by x4.8, x2.9, x1.9 and x0.03 (no house effect, no
    # question effect, tau = sd/100, 1/c = 1/n + tau).
    for name, tolerance in (
        ("walk_sd", 0.15),
        ("nonsampling_sd", 0.15),
        ("house_sd", 0.25),
        ("question_sd", 0.25),
    ):
        scale = float(reference[name].median() / project[name].median())
        assert abs(np.log(scale)) < np.log(1 + tolerance), (name, scale)

    # House and question effects (logits). Measured: medians within 0.005; posterior sds about 0.03.
    for name in ("house_effect", "question_effect"):
        gap = abs(reference[name].median(draws) - project[name].median(draws))
        assert float(gap.max()) < 0.03, (name, gap.values)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trend", "momentum"),
        ("walk_prior", "gamma"),
        ("nonsampling", "by_house"),
        ("nonsampling_prior", "gamma"),
        ("unknown_n", "by_house"),
    ],
)
def test_the_reference_refuses_a_model_it_does_not_implement(field, value):
    """A bench of another model than the reference's would compare two different posteriors."""
    from model.bench.reference import REFERENCE_MODEL, model_inputs

    polls = model.load_polls(model.simulate_polls(n_readings=20, seed=2).polls)
    config = model.Config(reference_question="Q_MAIN", **{field: value})
    from model.config import MODEL_FORMS

    assert set(REFERENCE_MODEL) == set(MODEL_FORMS)  # MODEL_FORMS is complete: tests/test_config.py
    with pytest.raises(model.ConfigError, match=f"this config has {field} = '{value}'"):
        model_inputs(build_design(polls, config), config)
    shipped = model.Config(reference_question="Q_MAIN")
    assert model_inputs(build_design(polls, shipped), shipped).n_answer == 3
