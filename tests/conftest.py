"""Shared fixtures: small simulated tables, and one small fit shared by the sampling tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import pytensor  # noqa: E402

import model  # noqa: E402

# The fit compiles without numba's fast-math (model.sampling.compiled.exact_arithmetic); so do the tests that
# compile PyMC functions themselves (log densities, prior draws): the same arithmetic as the fit, and
# one set of PyTensor kernels to compile on an empty cache instead of two (one per setting).
# tests/sampling/test_compiled.py switches fast-math back on where it checks that the fit turns it off.
pytensor.config.numba__fastmath = False


@pytest.fixture(scope="session")
def simulation():
    """Four houses, two questions (the second asked by one house only), three answers, two years."""
    return model.simulate_polls(n_readings=70, seed=11)


@pytest.fixture(scope="session")
def sim_polls(simulation):
    return model.load_polls(simulation.polls)


SMALL_SAMPLER = model.Sampler(draws=300, tune=400, chains=2)


@pytest.fixture(scope="session")
def small_fit(sim_polls):
    """One small fit of the simulated table (weekly grid, zero-sum houses), shared by many tests."""
    config = model.Config(reference_question="Q_MAIN", sampler=SMALL_SAMPLER)
    return model.fit(sim_polls, config=config, seed=20261126, progressbar=False)


#: Modules that compile or sample the most, run first, so that pytest-xdist (``--dist loadfile``
#: hands out whole modules in collection order) does not start the longest one last and leave the
#: other worker idle; tests/test_cli.py after tests/results/test_fit.py, whose small fit compiles
#: the structure the command line's default fit loads. Their cold durations: docs/performance.md.
SLOW_FIRST = (
    "tests/validation/test_validate.py",
    "tests/sampling/test_compiled.py",
    "tests/results/test_fit.py",
    "tests/bench/test_reference.py",
    "tests/aggregator/test_graph.py",
    "tests/aggregator/test_kernels.py",
    "tests/results/test_projection.py",
    "tests/test_examples.py",
    "tests/validation/test_validate_structure.py",
    "tests/results/test_vote_intention.py",
    "tests/test_cli.py",
)


def pytest_collection_modifyitems(config, items):  # noqa: ARG001 - pytest's hook signature
    """Order the modules :data:`SLOW_FIRST`, then the rest as collected (tests keep their order)."""
    rank = {module: i for i, module in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
