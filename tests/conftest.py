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

#: The small fit's config (tests/sampling/test_compiled.py fits the same structure).
SMALL_CONFIG = model.Config(reference_question="Q_MAIN", sampler=SMALL_SAMPLER)


def every_size_stated(polls):
    """``polls`` with every unknown sample size stated (1,000): no unknown-size parameters."""
    return polls.assign(n=polls["n"].fillna(1000.0))


@pytest.fixture(scope="session")
def small_fit(sim_polls):
    """One small fit of the simulated table (weekly grid, zero-sum houses), shared by many tests."""
    return model.fit(sim_polls, config=SMALL_CONFIG, seed=20261126, progressbar=False)
