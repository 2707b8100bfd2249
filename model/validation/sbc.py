r"""Simulation-based calibration (Talts et al. 2018): is the posterior calibrated on its own prior?

Draw :math:`N` parameter sets :math:`\theta^{(j)}` and tables :math:`y^{(j)}` from the model's prior
(the same design: houses, questions, dates, sample sizes, reported answers), fit each table with
the same sampler, and for every scalar quantity find the rank of :math:`\theta^{(j)}` among
:data:`RANK_DRAWS` posterior draws, thinned evenly. If the fit is right, each quantity's ranks are
uniform on ``0..RANK_DRAWS`` and its central 50% / 90% intervals hold the truth in 50% / 90% of
datasets. A rank histogram bunched in the middle means the posterior is too wide (over-covers);
U-shaped, too narrow; slanted, biased.

The design is a small simulated table (:func:`sbc_design`) shaped like the project's: one
reference house asking the reference question, other houses, one question asked by one house alone
(a confounded pair), some readings without ``n`` and some reporting only some answers.

Quantities (:func:`quantities`): the scales ``walk_sd``, ``nonsampling_sd``, ``house_sd``,
``question_sd``; every free house effect and question effect on the first answer (logit scale);
the first answer's share at the first, middle and last grid cells (the trend).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from model.aggregator.design import PollDesign
from model.aggregator.names import CALIBRATED
from model.config import Config, Priors
from model.data.polls import load_polls
from model.data.simulate import simulate_polls
from model.sampling.compiled import exact_arithmetic

#: Posterior draws each truth is ranked among (thinned evenly from all draws).
RANK_DRAWS = 99
#: Bins of the rank histograms and of the uniformity test.
RANK_BINS = 10


def sbc_design(
    priors: Priors | None = None, *, n_readings: int = 40, seed: int = 0
) -> tuple[pd.DataFrame, Config]:
    """A small project-shaped table (its shares are replaced by prior draws) and its config.

    Three houses over one year on a weekly grid; ``House A`` is the reference house, ``Q_MAIN`` the
    reference question; ``Q_ALT`` is asked by one house alone. Only the table's layout is used.
    """
    simulation = simulate_polls(
        pollsters=("House A", "House B", "House C"),
        questions=("Q_MAIN", "Q_ALT"),
        start="2024-01-01",
        end="2024-12-31",
        n_readings=n_readings,
        seed=seed,
    )
    config = Config(reference_question="Q_MAIN", house_effects="House A", priors=priors or Priors())
    return load_polls(simulation.polls, answers=config.answers), config


def quantities(values: dict[str, np.ndarray], design: PollDesign) -> dict[str, np.ndarray]:
    """Scalar quantities checked by SBC, from arrays with leading sample dims.

    ``values`` maps ``walk_sd``, ``nonsampling_sd``, ``house_sd``, ``question_sd`` to arrays (S,)
    and ``house_effect`` (S, pollster, answer), ``question_effect`` (S, question, answer),
    ``share`` (S, time, answer).
    """
    out = {
        name: np.asarray(values[name])
        for name in ("walk_sd", "nonsampling_sd", "house_sd", "question_sd")
        if name in values
    }
    answer = design.answers[0]
    for h, pollster in enumerate(design.pollsters):
        if pollster != design.reference_pollster:
            out[f"house_effect[{pollster}, {answer}]"] = values["house_effect"][:, h, 0]
    for q, question in enumerate(design.questions[1:], start=1):
        out[f"question_effect[{question}, {answer}]"] = values["question_effect"][:, q, 0]
    n_time = len(design.time)
    for t in sorted({0, n_time // 2, n_time - 1}):
        out[f"share[{design.time[t]:%Y-%m-%d}, {answer}]"] = values["share"][:, t, 0]
    return out


def prior_draws(
    model: pm.Model, design: PollDesign, n: int, seed: int
) -> tuple[list[dict[str, float]], np.ndarray]:
    """``n`` draws from the prior: the true quantities and the simulated observed components.

    Returns
    -------
    (list of dict, ndarray)
        Per draw, quantity name to true value; observed shares (draw, poll, component), with the
        design's unused components left at 1 as in :attr:`PollDesign.observed`.
    """
    with (
        exact_arithmetic()
    ):  # the same tables for a seed, whatever numba had cached (model.sampling.compiled)
        prior = pm.sample_prior_predictive(draws=n, model=model, random_seed=seed)
    post = prior.prior.to_dataset()
    values = {
        name: post[name].stack(sample=("chain", "draw")).transpose("sample", ...).values
        for name in CALIBRATED
        if name in post
    }
    truths = quantities(values, design)
    table = [{name: float(v[j]) for name, v in truths.items()} for j in range(n)]
    observed = (
        prior.prior_predictive["obs_share"]
        .stack(sample=("chain", "draw"))
        .transpose("sample", ...)
        .values
    )
    observed = np.where(design.component_used[None], observed, 1.0)
    return table, observed


def posterior_values(posterior, design: PollDesign) -> dict[str, np.ndarray]:
    """The SBC quantities' posterior draws (flattened over chains)."""
    values = {
        name: posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...).values
        for name in CALIBRATED
        if name in posterior
    }
    return quantities(values, design)


def ranks(draws: dict[str, np.ndarray], truth: dict[str, float]) -> pd.DataFrame:
    """Rank of each true value among :data:`RANK_DRAWS` evenly thinned draws, and interval coverage."""
    rows = []
    for name, values in draws.items():
        values = np.asarray(values)
        thinned = values[np.linspace(0, values.size - 1, RANK_DRAWS).round().astype(int)]
        true = truth[name]
        lo90, lo50, hi50, hi90 = np.quantile(values, [0.05, 0.25, 0.75, 0.95])
        rows.append(
            {
                "quantity": name,
                "rank": int(np.sum(thinned < true)),
                "covered50": bool(lo50 <= true <= hi50),
                "covered90": bool(lo90 <= true <= hi90),
            }
        )
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per quantity: datasets, coverage of the 50% / 90% intervals, and a uniformity test of ranks.

    ``uniformity_p`` is the chi-square test of the rank histogram (:data:`RANK_BINS` equal bins over
    ``0..RANK_DRAWS``) against uniform; with few datasets it has little power, and over many
    quantities some small p-values are expected by chance.
    """
    rows = []
    for name, group in table.groupby("quantity", sort=False):
        counts = np.bincount(
            (group["rank"].to_numpy() * RANK_BINS) // (RANK_DRAWS + 1), minlength=RANK_BINS
        )
        rows.append(
            {
                "quantity": name,
                "datasets": len(group),
                "coverage50": float(group["covered50"].mean()),
                "coverage90": float(group["covered90"].mean()),
                "mean_rank": float(group["rank"].mean() / RANK_DRAWS),
                "uniformity_p": float(stats.chisquare(counts).pvalue),
            }
        )
    return pd.DataFrame(rows)
