"""The hand-written log density and gradient against PyTensor's, on every structure it covers. No MCMC."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import model
from model.aggregator import log_density
from model.aggregator.design import build_design
from model.aggregator.graph import PollAggregator
from model.config import Event
from model.validation.sbc import sbc_design

#: Agreement asked of the two: relative to the log density's size, and to the gradient's largest entry.
TOLERANCE = 1e-9


@pytest.fixture(autouse=True, scope="module")
def python_mode():
    """PyTensor's reference runs in Python mode (no compiling); the hand-written side is numba's."""
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        yield


def hand_written_arguments(design, config, pymc_model, refit):
    """The structure, constants and data the hand-written function reads for this model, as the
    sampler's callback passes them, and the free values in nutpie's order."""
    from model.sampling.compiled import _free_values

    spec = log_density.hand_written_structure(design, config, refit=refit)
    assert not isinstance(spec, str), spec
    values = _free_values(pymc_model)
    point = pymc_model.initial_point()
    free, start = [], 0
    for v in values:
        free.append((v.name, start))
        start += point[v.name].size
    shared = {
        name: var.get_value()
        for name, var in pymc_model.named_vars.items()
        if hasattr(var, "get_value")
    }
    data = [
        np.asarray(shared[name]) if name in shared else np.zeros(0, log_density.ABSENT_DTYPES[name])
        for name in log_density.DATA_ARGUMENTS
    ]
    # Data a model has are of the type that stands for them where a model lacks them: one
    # signature of the numba function for models with and without them.
    for name, dtype in log_density.ABSENT_DTYPES.items():
        if name in shared:
            assert np.asarray(shared[name]).dtype == dtype, (name, np.asarray(shared[name]).dtype)
    return (log_density.with_offsets(spec.structure, free), spec.constants, *data), values, start


def compare(polls, config, *, refit, points=4, seed=0, knots=None):
    """Largest relative difference between the two at random points (and with readings held out
    in the refit form); also returns the design, to check which structure was covered. ``knots``
    replaces the design's walk knots."""
    design = build_design(polls, config)
    if knots is not None:
        design = dataclasses.replace(design, walk_knots=np.asarray(knots))
    pymc_model = PollAggregator(design, config, refit=refit).build()
    arguments, values, size = hand_written_arguments(design, config, pymc_model, refit)
    logp = pymc_model.logp()
    reference = pytensor.function(values, [logp, *pt.grad(logp, values)])
    point = pymc_model.initial_point()
    shapes = [point[v.name].shape for v in values]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for trial in range(points):
        x = rng.normal(scale=0.7, size=size)
        if refit and trial % 2:
            weight = (rng.random(len(design.polls)) < 0.6).astype(float)
            pymc_model["in_likelihood"].set_value(weight)
            position = log_density.DATA_ARGUMENTS.index("in_likelihood") + 2
            arguments = (*arguments[:position], weight, *arguments[position + 1 :])
        got_logp, got_grad = log_density.logp_and_gradient(x, *arguments)
        parts, at = [], 0
        for shape in shapes:
            parts.append(x[at : at + int(np.prod(shape))].reshape(shape))
            at += int(np.prod(shape))
        want_logp, *want_grads = reference(*parts)
        want_grad = np.concatenate([np.ravel(g) for g in want_grads])
        worst = max(
            worst,
            abs(got_logp - want_logp) / max(1.0, abs(want_logp)),
            np.max(np.abs(got_grad - want_grad)) / max(1.0, np.max(np.abs(want_grad))),
        )
    return worst, design


def test_calibration_design_refit_form():
    """SBC's design: non-centred knots, two confounded pairs, an event paired with its segment,
    unknown sizes, per-reading weights."""
    fitted = model.Config.from_toml("config/fit.toml")
    table, config = sbc_design(fitted, seed=5)
    worst, design = compare(table, config, refit=True)
    assert not design.centred_knots and len(design.paired_pollsters) == 2
    assert worst < TOLERANCE


def test_shipped_table_both_forms():
    """The shipped data and config (centred knots, three pairs, the mobilisation's jump paired)."""
    fitted = model.Config.from_toml("config/fit.toml")
    polls = model.load_polls("data/polls.csv", answers=fitted.answers)
    config = fitted.replace(through=None)  # the curve's end does not change the structure
    for refit in (False, True):
        worst, design = compare(polls, config, refit=refit, points=2)
        assert design.centred_knots and len(design.paired_pollsters) == 3
        assert worst < TOLERANCE


@pytest.mark.parametrize("form", ["centred", "non_centred"])
def test_free_houses_questions_unpaired_events_and_fixed_steps(sim_polls, form):
    """Houses and a question outside any pair (centred and not), two events in one segment and one
    past the last knot (free jumps beside a paired one), a prior median per reading, and knots one
    step apart (steps with no innovation of their own)."""
    config = model.Config(
        reference_question="Q_MAIN",
        house_effects="House A",
        unknown_n="by_house",
        events=(
            Event("2023-06-01", "one"),
            Event("2023-06-08", "two"),
            Event("2024-02-01", "alone"),
            Event("2024-12-10", "late"),
        ),
        sampler=model.Sampler(knots=form, house_form=form, question_form=form),
    )
    # knots one step apart at 40-41-42, the last knot before the last event
    knots = [0, 11, 18, 31, 40, 41, 42, 56, 67, 76, 88, 97]
    for refit in (False, True):
        worst, design = compare(sim_polls, config, refit=refit, knots=knots)
        assert worst < TOLERANCE
    header = log_density.hand_written_structure(design, config, refit=True).structure
    assert header[log_density.N_FREE_HOUSES] == 3 and header[log_density.N_FREE_QUESTIONS] == 1
    assert header[log_density.N_PAIRED_EVENTS] == 1 and header[log_density.N_UNPAIRED_EVENTS] == 3
    assert header[log_density.SOME_STEPS_FIXED] == 1
    assert header[log_density.MEDIAN_PER_READING] == 1
    assert header[log_density.CENTRED_HOUSES] == (form == "centred")


def test_free_question_with_reference_house():
    """A second question asked by the reference house too: a free question effect, no pair."""
    polls = model.simulate_polls(
        pollsters=("House A", "House B"), questions=("Q_MAIN",), n_readings=40, seed=3
    ).polls
    polls = model.load_polls(polls)
    alternative = polls.index[polls["pollster"] == "House A"][::3]
    polls.loc[alternative, "question"] = "Q_ALT"
    config = model.Config(reference_question="Q_MAIN", house_effects="House A")
    worst, design = compare(polls, config, refit=False)
    spec = log_density.hand_written_structure(design, config, refit=False)
    assert spec.structure[log_density.N_FREE_QUESTIONS] == 1
    assert worst < TOLERANCE


@pytest.mark.parametrize("form", ["centred", "non_centred"])
def test_zero_sum_houses(sim_polls, form):
    """The library's default: house effects zero-sum over pollsters and answers (one table, PyMC's
    transform over two axes), centred and not, in both forms; and a table of one pollster (no
    house effect at all)."""
    config = model.Config(
        reference_question="Q_MAIN",
        unknown_n="by_house",
        sampler=model.Sampler(house_form=form, question_form=form),
    )
    for refit in (False, True):
        worst, design = compare(sim_polls, config, refit=refit)
        assert worst < TOLERANCE
    header = log_density.hand_written_structure(design, config, refit=False).structure
    assert header[log_density.ZERO_SUM_HOUSES] == 1 and not design.paired_pollsters
    assert header[log_density.N_FREE_HOUSES] == len(design.pollsters) == 4
    one_house = sim_polls[sim_polls["pollster"] == "House A"].reset_index(drop=True)
    worst, design = compare(one_house, config, refit=False)
    assert worst < TOLERANCE and len(design.pollsters) == 1
    header = log_density.hand_written_structure(design, config, refit=False).structure
    assert header[log_density.N_FREE_HOUSES] == 0 and header[log_density.X_HOUSE_RAW] == -1


@pytest.mark.parametrize("form", ["centred", "non_centred"])
def test_anchored_houses(sim_polls, form):
    """Anchors: no reference house, so every house not in a pair is free, and known true shares,
    each a Normal around the trend's share of its answer at its cell (event jumps included). On
    the simulated table (no pair; one anchor after the event) and on SBC's design (two confounded
    pairs, a paired event) with anchors at the grid's first and last cells."""
    config = model.Config(
        reference_question="Q_MAIN",
        house_effects="anchors",
        anchors=(
            model.Anchor("2023-09-01", "talks", 45.0),
            model.Anchor("2024-06-01", "continue", 38.0, sd_pp=1.5),
        ),
        events=(Event("2024-02-01", "event"),),
        sampler=model.Sampler(house_form=form, question_form=form),
    )
    for refit in (False, True):
        worst, design = compare(sim_polls, config, refit=refit)
        assert worst < TOLERANCE
    header = log_density.hand_written_structure(design, config, refit=False).structure
    assert header[log_density.N_ANCHORS] == 2 and header[log_density.ZERO_SUM_HOUSES] == 0
    assert design.reference_pollster is None and header[log_density.N_PAIRS] == 0
    assert header[log_density.N_FREE_HOUSES] == len(design.pollsters)

    table, sbc_config = sbc_design(model.Config.from_toml("config/fit.toml"), seed=5)
    first, last = (f"{day:%Y-%m-%d}" for day in (table.field_start.min(), table.field_end.max()))
    edges = sbc_config.replace(
        house_effects="anchors",
        anchors=(  # the first reading's start (cell 0) and the last one's end (the last cell)
            model.Anchor(first, "talks", 40.0),
            model.Anchor(last, sbc_config.answers[-1], 20.0),
        ),
        sampler={"house_form": form},
    )
    worst, design = compare(table, edges, refit=True)
    assert worst < TOLERANCE
    assert list(design.anchor_cell) == [0, len(design.time) - 1]
    header = log_density.hand_written_structure(design, edges, refit=True).structure
    assert header[log_density.N_PAIRS] == 2 and header[log_density.N_FREE_HOUSES] == 1


def test_zero_sum_houses_of_two_pollsters(sim_polls):
    """Two pollsters: the zero-sum table has one free row."""
    config = model.Config(reference_question="Q_MAIN")
    two = sim_polls[sim_polls["pollster"].isin(["House A", "House B"])].reset_index(drop=True)
    worst, design = compare(two, config, refit=True)
    assert worst < TOLERANCE and len(design.pollsters) == 2


def test_data_it_cannot_index_are_refused(sim_polls):
    """An anchor outside the grid or the answers, or anchors other than the structure's, raise a
    ValueError (the sampler's callback makes that a fatal error), as for the readings' data."""
    config = model.Config(
        reference_question="Q_MAIN",
        house_effects="anchors",
        anchors=(model.Anchor("2023-09-01", "talks", 45.0),),
    )
    design = build_design(sim_polls, config)
    pymc_model = PollAggregator(design, config).build()
    arguments, _, size = hand_written_arguments(design, config, pymc_model, refit=False)
    x = np.zeros(size)
    log_density.logp_and_gradient(x, *arguments)
    at = {name: i + 2 for i, name in enumerate(log_density.DATA_ARGUMENTS)}
    for name, bad in [
        ("anchor_cell", np.array([len(design.time)])),
        ("anchor_answer", np.array([len(design.answers)])),
        ("anchor_value", np.zeros(2)),
        (
            "last_cell",
            np.where(np.arange(len(design.polls)) == 0, len(design.time), design.last_cell),
        ),
    ]:
        changed = list(arguments)
        changed[at[name]] = bad.astype(np.asarray(arguments[at[name]]).dtype)
        with pytest.raises(ValueError, match="hand-written log density"):
            log_density.logp_and_gradient(x, *changed)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("trend", "drift", "trend 'drift'"),
        ("walk_prior", "gamma", "walk_prior 'gamma'"),
        ("nonsampling_prior", "gamma", "nonsampling_prior 'gamma'"),
        ("nonsampling", "by_house", "nonsampling 'by_house'"),
    ],
)
def test_refuses_what_it_does_not_cover(sim_polls, field, value, named):
    """Every model choice it does not write out is named, so the sampler uses PyTensor's."""
    config = model.Config(reference_question="Q_MAIN", **{"house_effects": "House A", field: value})
    design = build_design(sim_polls, config)
    reason = log_density.hand_written_structure(design, config, refit=False)
    assert isinstance(reason, str) and named in reason


def test_lgamma_and_digamma_agree_with_scipy():
    from scipy import special

    from model.aggregator.log_density import _lgamma_digamma

    for x in [1e-3, 0.1, 0.5, 1.0, 1.5, 2.0, 3.7, 9.99, 10.0, 33.3, 250.0, 1e4, 1e7]:
        lgamma, psi = _lgamma_digamma(x)
        assert lgamma == pytest.approx(special.gammaln(x), rel=1e-14, abs=1e-14)
        assert psi == pytest.approx(special.digamma(x), rel=1e-14, abs=1e-14)


def test_a_scale_underflowed_to_zero_is_not_finite_not_an_error():
    """Far out on the unconstrained scale the scales underflow to 0 and divisions by them are
    infinite or undefined: values the sampler takes for a divergence (as PyTensor's), not an
    error that stops the chain."""
    fitted = model.Config.from_toml("config/fit.toml")
    table, config = sbc_design(fitted, seed=5)
    design = build_design(table, config)
    pymc_model = PollAggregator(design, config, refit=True).build()
    arguments, _, size = hand_written_arguments(design, config, pymc_model, True)
    for value in (-800.0, 800.0):
        logp, grad = log_density.logp_and_gradient(np.full(size, value), *arguments)
        assert not (np.isfinite(logp) and np.isfinite(grad).all())
