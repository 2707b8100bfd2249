r"""Simulation-based calibration (Talts et al. 2018) of the shipped model's structure.

Draw :math:`N` parameter sets :math:`\theta^{(j)}` and tables :math:`y^{(j)}` from the model's prior
on one design, fit each table with the fit's own sampler, and for every ranked quantity find the
rank of :math:`\theta^{(j)}` among :data:`RANK_DRAWS` posterior draws, thinned evenly. If the
computation is right, each quantity's ranks are uniform on ``0..RANK_DRAWS`` and its central
50% / 90% intervals hold the truth in 50% / 90% of datasets. SBC tests the computation (sampler
and parameterisation), not whether the model fits real polls.

**The design** (:func:`sbc_design`) has the structure the project's config gives the shipped data:
a reference house asking the reference question (two years of readings), two houses that each ask
only a question nobody else asks (so both are confounded house-question pairs, sampled as pair sums
and prior-only splits), and one event whose jump is sampled with its walk segment; some readings
without ``n``, some leaving the last answer unreported.

**Ranked quantities** (:func:`quantities`): those the data identify: the walk's step size
``walk_sd``, the non-sampling error ``nonsampling_sd``, the event's jump and each pair's sum
(house plus question effect) on the first answer, and the first answer's share at four dates.

**Acceptance.** Ranks need roughly independent draws of the ranked quantities only: a fit is
*accepted* when every ranked quantity has a bulk ESS of at least :data:`ACCEPT_ESS` (the full
diagnostics gate, R-hat and ESS on hundreds of latent quantities, is recorded too). Every fit is
kept in the statistics; the acceptance count says how many met the ESS criterion. As a fit that
misses the gate's R-hat or ESS alone is sampled again with ``Sampler.retry_draws`` draws a
chain (climbing the rest of the ladder if that attempt has divergent transitions), so is an SBC
fit that misses acceptance with no divergent transition left (:func:`longer_sampling_reasons`);
the ranks are then those of the last attempt.

**Uniformity** is judged by the rank ECDF against a :data:`BAND_PROB` simultaneous band of the
uniform ECDF (Säilynoja, Bürkner and Vehtari 2022, via ``arviz_stats``): a quantity whose ECDF
leaves the band fails at the 1% level. A chi-square test of the rank histogram is given beside it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from model.aggregator.design import PollDesign
from model.aggregator.names import CALIBRATED
from model.config import MODEL_FORMS, Config, Event, Sampler
from model.data.polls import load_polls
from model.results.diagnostics import may_sample_longer
from model.sampling.compiled import exact_arithmetic

#: Posterior draws each truth is ranked among (thinned evenly from all draws).
RANK_DRAWS = 99
#: Bins of the rank histograms and of the chi-square test.
RANK_BINS = 10
#: Bulk ESS every ranked quantity of an accepted fit has (about the number of ranked draws).
ACCEPT_ESS = 100
#: Probability of the simultaneous band of the rank ECDF (1 - the test's level).
BAND_PROB = 0.99
#: Simulations behind the simultaneous band.
BAND_SIMULATIONS = 2000
#: The design's houses and questions: the reference, and two confounded pairs.
REFERENCE, PAIRS = ("House A", "Q_MAIN"), (("House B", "Q_B"), ("House C", "Q_C"))
#: The fit config's model choices the SBC design keeps (its data's houses, questions and events
#: are the design's own).
MODEL_CHOICES = ("grid", *MODEL_FORMS)


def sbc_design(
    fitted: Config | None = None,
    *,
    n_readings: int = 40,
    seed: int = 0,
    sampler: Sampler | None = None,
) -> tuple[pd.DataFrame, Config]:
    """The calibration design (its shares are replaced by prior draws) and its config.

    Two years (2023-2024) on ``fitted``'s grid: about 70% of ``n_readings`` by ``House A`` on
    ``Q_MAIN`` (the reference), the rest split between ``House B`` (``Q_B`` only) and ``House C``
    (``Q_C`` only), so both are confounded pairs; one event on 2024-01-15; a fifth of readings
    without ``n``, a fifth without the last answer. The model is ``fitted``'s (default: the
    library's): its answers, priors and :data:`MODEL_CHOICES`, so what is calibrated is the model
    the fit runs; the houses, questions and event are the design's own. Fitted with ``sampler``
    (default: ``fitted``'s; validation passes the fit config's or ``--sbc-draws``/``--sbc-tune``'s).

    Returns
    -------
    (pandas.DataFrame, Config)
    """
    fitted = fitted or Config()
    answers = fitted.answers
    rng = np.random.default_rng(seed)
    days = pd.date_range("2023-01-01", "2024-12-31", freq="D")
    counts = {
        REFERENCE: max(int(round(0.7 * n_readings)), 6),
        PAIRS[0]: max(int(round(0.2 * n_readings)), 3),
    }
    counts[PAIRS[1]] = max(n_readings - sum(counts.values()), 2)
    rows = []
    for (pollster, question), count in counts.items():
        # spread over the two years, so every house has readings on both sides of the event
        starts = np.sort(rng.choice(len(days) - 10, size=count, replace=False))
        for start in starts:
            length = int(rng.integers(3, 9))
            row = {
                "pollster": pollster,
                "question": question,
                "field_start": f"{days[start]:%Y-%m-%d}",
                "field_end": f"{days[start + length - 1]:%Y-%m-%d}",
                "n": np.nan if rng.random() < 0.2 else float(rng.integers(800, 2001)),
            }
            row.update({a: 100.0 / len(answers) for a in answers})  # placeholders: replaced
            if rng.random() < 0.2:
                row[answers[-1]] = np.nan
            rows.append(row)
    table = pd.DataFrame(rows).sort_values(["field_start", "pollster"], kind="stable")
    config = Config(
        answers=answers,
        reference_question=REFERENCE[1],
        house_effects=REFERENCE[0],
        events=(Event("2024-01-15", "event"),),
        priors=fitted.priors,
        sampler=sampler or fitted.sampler,
        **{field: getattr(fitted, field) for field in MODEL_CHOICES},
    )
    return load_polls(table.reset_index(drop=True), answers=answers), config


def quantities(values: dict[str, np.ndarray], design: PollDesign) -> dict[str, np.ndarray]:
    """The ranked quantities, from arrays with a leading sample dim.

    ``values`` maps ``walk_sd``, ``nonsampling_sd`` to (S,), ``jump`` to (S, event, answer),
    ``house_effect`` (S, pollster, answer), ``question_effect`` (S, question, answer) and
    ``share`` (S, time, answer).
    """
    answer = design.answers[0]
    out = {name: np.asarray(values[name]) for name in ("walk_sd", "nonsampling_sd")}
    for e, label in enumerate(design.event_labels):
        out[f"jump[{label}, {answer}]"] = np.asarray(values["jump"])[:, e, 0]
    for pollster, question in design.confounded:
        h, q = design.pollsters.index(pollster), design.questions.index(question)
        out[f"pair_sum[{pollster} + {question}, {answer}]"] = (
            values["house_effect"][:, h, 0] + values["question_effect"][:, q, 0]
        )
    n_time = len(design.time)
    for t in sorted({0, n_time // 3, (2 * n_time) // 3, n_time - 1}):
        out[f"share[{design.time[t]:%Y-%m-%d}, {answer}]"] = values["share"][:, t, 0]
    return out


def _stacked(dataset, name: str) -> np.ndarray:
    return dataset[name].stack(sample=("chain", "draw")).transpose("sample", ...).values


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
    pymc_log = logging.getLogger("pymc")
    level = pymc_log.level
    pymc_log.setLevel(logging.WARNING)  # its "Sampling: [every variable]" note, in every run
    try:
        with exact_arithmetic():  # the same tables for a seed, whatever numba had cached
            prior = pm.sample_prior_predictive(draws=n, model=model, random_seed=seed)
    finally:
        pymc_log.setLevel(level)
    post = prior.prior.to_dataset()
    truths = quantities({name: _stacked(post, name) for name in CALIBRATED}, design)
    table = [{name: float(v[j]) for name, v in truths.items()} for j in range(n)]
    observed = _stacked(prior.prior_predictive, "obs_share")
    observed = np.where(design.component_used[None], observed, 1.0)
    return table, observed


def posterior_values(posterior, design: PollDesign) -> dict[str, np.ndarray]:
    """The ranked quantities' posterior draws, flattened over chains (chain-major)."""
    return quantities({name: _stacked(posterior, name) for name in CALIBRATED}, design)


def ranked_mixing(posterior, design: PollDesign) -> pd.DataFrame:
    """Bulk ESS and rank-normalised R-hat of each ranked quantity (acceptance looks at the ESS).

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity``, ``ess_bulk``, ``rhat``.
    """
    import arviz_stats as azs

    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    rows = []
    for name, values in posterior_values(posterior, design).items():
        by_chain = np.asarray(values).reshape(chains, draws)
        rows.append(
            {
                "quantity": name,
                "ess_bulk": float(azs.ess(by_chain, method="bulk")),
                "rhat": float(azs.rhat(by_chain)),
            }
        )
    return pd.DataFrame(rows)


def acceptance_failure(min_ranked_ess: float) -> str:
    """Why an SBC fit is not accepted, in words ("" when every ranked quantity has a bulk ESS of
    at least :data:`ACCEPT_ESS`)."""
    if min_ranked_ess >= ACCEPT_ESS:
        return ""
    return f"min ranked bulk ESS {min_ranked_ess:.0f} < {ACCEPT_ESS}"


def longer_sampling_reasons(sampler: Sampler, idata, min_ranked_ess: float) -> list[str]:
    """Why an SBC fit is to be sampled again with ``sampler.retry_draws`` draws a chain: the fit's
    own rule (:func:`model.results.diagnostics.may_sample_longer`: set, fewer draws so far, no
    divergent transition in the last attempt) with acceptance in place of the gate
    (:func:`acceptance_failure`). Empty: not sampled again."""
    failure = acceptance_failure(min_ranked_ess)
    return [failure] if failure and may_sample_longer(sampler, idata) else []


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


def rank_ecdf(ranks_: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The ranks' ECDF (as fractional ranks) and the :data:`BAND_PROB` simultaneous band of a uniform one.

    Ranks are made continuous by a uniform jitter within their bin, ``(rank + u) / (RANK_DRAWS + 1)``.

    Returns
    -------
    dict
        ``x`` (evaluation points), ``ecdf``, ``lower``, ``upper``.
    """
    from arviz_stats.ecdf_utils import ecdf_pit

    rng = np.random.default_rng(seed)
    fractional = (np.asarray(ranks_) + rng.uniform(size=len(ranks_))) / (RANK_DRAWS + 1)
    x, ecdf, lower, upper = ecdf_pit(fractional, BAND_PROB, BAND_SIMULATIONS, rng=rng)
    return {
        "x": np.asarray(x),
        "ecdf": np.asarray(ecdf),
        "lower": np.asarray(lower),
        "upper": np.asarray(upper),
    }


def summarise(table: pd.DataFrame, fits: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per quantity: datasets, coverage of the 50% / 90% intervals with 90% Wilson intervals, and uniformity.

    ``ecdf_in_band`` says whether the rank ECDF stays inside the :data:`BAND_PROB` simultaneous
    band of a uniform ECDF (False: non-uniform at the 1% level); ``uniformity_p`` is the chi-square
    test of the :data:`RANK_BINS`-bin histogram. ``accepted`` counts the datasets whose fit met the
    ESS criterion (when ``fits`` has an ``accepted`` column).
    """
    from model.validation.backtest import wilson

    rows = []
    accepted = None
    if fits is not None and "accepted" in fits:
        accepted = set(fits.loc[fits["accepted"].astype(bool), "dataset"])
    for name, group in table.groupby("quantity", sort=False):
        rank_values = group["rank"].to_numpy()
        counts = np.bincount((rank_values * RANK_BINS) // (RANK_DRAWS + 1), minlength=RANK_BINS)
        band = rank_ecdf(rank_values, seed=len(rank_values))
        n = len(group)
        row = {
            "quantity": name,
            "datasets": n,
            "accepted": len(set(group["dataset"]) & accepted)
            if accepted is not None and "dataset" in group
            else np.nan,
            "coverage50": float(group["covered50"].mean()),
            "coverage90": float(group["covered90"].mean()),
            "mean_rank": float(rank_values.mean() / RANK_DRAWS),
            "ecdf_in_band": bool(
                np.all((band["ecdf"] >= band["lower"]) & (band["ecdf"] <= band["upper"]))
            ),
            "uniformity_p": float(stats.chisquare(counts).pvalue),
        }
        for level in (50, 90):
            lo, hi = wilson(float(group[f"covered{level}"].sum()), n)
            row[f"coverage{level}_lower"], row[f"coverage{level}_upper"] = lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
