"""Shared fixtures: small simulated tables, and one small fit shared by the sampling tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import model  # noqa: E402


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
