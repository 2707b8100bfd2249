r"""Leave-future-out backtest: refit on the past, predict the next reference reading, score it.

For every reading by the reference house on the reference question (Levada Center on its own
question, in the project config) whose field period starts on or after ``since``, the model is
refitted on the readings whose field period *ended before that reading's began*, and the reading is
predicted: the posterior predictive distribution of its reported shares, sampling noise included.

Every method is scored the same way, from a predictive distribution over the reading's observed
components (its reported answers plus the merged rest, as in the model's likelihood):

* ``log_score``: the log predictive density of the observed components,
  :math:`\log \frac{1}{S}\sum_s \mathrm{Dirichlet}(y \mid \alpha_s)` (higher is better);
* ``abs_error``: the absolute error of the predictive median of each reported answer, in points;
* ``covered50`` / ``covered90``: whether the central 50% / 90% predictive interval of each reported
  answer holds the observed share.

Methods (the ``method`` column of ``backtest.csv``):

``model``
    The project's model, as configured.
``no_house_effects``
    The same model with every reading treated as the reference house asking the reference
    question: no house or question effects (what pooling without adjustment gives).
``last_reading``
    The reference house's latest reading (each answer from the latest reading reporting it).
``last3_mean``
    The mean of the latest three readings of any house (per answer, over readings reporting it).
``weighted_average``
    A sample-size-weighted, exponentially time-decayed average of every house's readings, without
    house effects (a FiveThirtyEight-style average): weight :math:`\sqrt{n_i / \tilde n} \cdot
    2^{-a_i / h}` with :math:`\tilde n` the median known sample size (unknown :math:`n_i` take it),
    :math:`a_i` the days from the reading's mid-field date to the target's start and half-life
    :data:`HALF_LIFE_DAYS`.

The three baselines give a point estimate; their predictive distribution is a Dirichlet around it
with concentration :math:`1/c = 1/n + \tau_b^2`, where :math:`\tau_b^2` is the baseline's own excess
error, estimated by moments from its errors on the earlier reference readings of the same training
set (a user would judge a simple average by its track record). So every method is scored on the same
density scale and the comparison is about the centre *and* the honesty of the spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln, logsumexp, softmax

from model.aggregator.design import PollDesign
from model.config import Config, ConfigError
from model.data.polls import reading_midpoints

MODEL = "model"
NO_EFFECTS = "no_house_effects"
BASELINES = ("last_reading", "last3_mean", "weighted_average")
#: The refitted variants and the baselines, in the order ``backtest.csv`` lists them.
METHODS = (MODEL, NO_EFFECTS, *BASELINES)
#: Half-life of the weighted average's time decay, in days.
HALF_LIFE_DAYS = 30.0
#: Fewest earlier errors a baseline's spread is estimated from.
MIN_TRACK_RECORD = 3
#: Predictive draws used for medians and intervals.
PREDICTIVE_DRAWS = 4000
#: Floor of a baseline's component share (proportion), as the data's own floor for a reported 0.
MIN_SHARE = 0.005


@dataclass(frozen=True)
class Target:
    """One backtest target: a reference reading and the training set before it."""

    source_row: int
    poll_id: str
    field_start: pd.Timestamp
    training_rows: tuple[int, ...]  # source_row of every training reading


def pooled_variant(design: PollDesign, config: Config) -> tuple[pd.DataFrame, Config]:
    """The ``no_house_effects`` variant: every reading relabelled as the reference house asking the
    reference question, so the model has neither house nor question effects; and its config."""
    if design.reference_pollster is None:
        raise ConfigError(
            "the backtest needs a reference pollster (config house_effects = '<pollster>')"
        )
    pooled = design.polls.drop(columns=["poll_id"]).copy()
    pooled["pollster"] = design.reference_pollster
    pooled["question"] = design.questions[0]
    return pooled, config.replace(questions=(design.questions[0],))


def backtest_targets(design: PollDesign, since: str | pd.Timestamp) -> list[Target]:
    """Reference-house readings on the reference question from ``since`` on, with their training sets.

    A target's training set is every selected reading whose field period ended before the target's
    began. Targets with no earlier reference reading (nothing to compare the baselines with) are
    left out.
    """
    if design.reference_pollster is None:
        raise ConfigError(
            "the backtest needs a reference pollster (config house_effects = '<pollster>')"
        )
    polls = design.polls
    is_reference = (polls["pollster"] == design.reference_pollster) & (
        polls["question"] == design.questions[0]
    )
    targets = []
    for i in np.flatnonzero(is_reference & (polls["field_start"] >= pd.Timestamp(since))):
        before = polls["field_end"] < polls["field_start"].iloc[i]
        if not (before & is_reference).any():
            continue
        targets.append(
            Target(
                source_row=int(polls["source_row"].iloc[i]),
                poll_id=str(polls["poll_id"].iloc[i]),
                field_start=polls["field_start"].iloc[i],
                training_rows=tuple(int(r) for r in polls.loc[before, "source_row"]),
            )
        )
    return targets


def training_weights(design: PollDesign, target: Target) -> np.ndarray:
    """1 for the target's training readings, 0 for every other reading of ``design``."""
    return design.polls["source_row"].isin(target.training_rows).to_numpy().astype(float)


def poll_index(design: PollDesign, source_row: int) -> int:
    """Position in ``design`` of the reading with this ``source_row``."""
    (where,) = np.flatnonzero(design.polls["source_row"].to_numpy() == source_row)
    return int(where)


# -- the model's prediction -------------------------------------------------------------------


def model_alpha(posterior, design: PollDesign, i: int) -> np.ndarray:
    """Dirichlet parameters (draw, used component) of reading ``i``'s predictive, per posterior draw.

    Follows the likelihood exactly: the trend's logits averaged over the reading's cells (the log
    of the ``share`` curve differs from the logits by a per-cell constant, which softmax ignores),
    plus its house and question effects; the concentration from its ``n`` (its posterior draws
    when unknown) and the non-sampling error.
    """
    share = (
        posterior["share"]
        .stack(sample=("chain", "draw"))
        .transpose("sample", "time", "answer")
        .values
        / 100.0
    )
    a, b = int(design.first_cell[i]), int(design.last_cell[i])
    eta = np.log(share[:, a : b + 1, :]).mean(axis=1)
    house = (
        posterior["house_effect"]
        .stack(sample=("chain", "draw"))
        .transpose("sample", "pollster", "answer")
        .values
    )
    question = (
        posterior["question_effect"]
        .stack(sample=("chain", "draw"))
        .transpose("sample", "question", "answer")
        .values
    )
    p = softmax(
        eta + house[:, design.pollster_idx[i]] + question[:, design.question_idx[i]], axis=-1
    )
    if design.n_known[i]:
        n = np.full(p.shape[0], float(design.n[i]))
    else:
        n = (
            posterior["n_unknown"]
            .sel(poll_unknown_n=design.polls["poll_id"].iloc[i])
            .stack(sample=("chain", "draw"))
            .values
        )
    tau = posterior["nonsampling_sd"].stack(sample=("chain", "draw")).values / 50.0
    concentration = 1.0 / (1.0 / n + tau**2)
    used = design.component_used[i]
    return concentration[:, None] * (p @ design.membership[i])[:, used]


# -- scoring ----------------------------------------------------------------------------------


def dirichlet_logpdf(y: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Log density of ``y`` (components) under each row of ``alpha``."""
    return (
        gammaln(alpha.sum(axis=-1))
        - gammaln(alpha).sum(axis=-1)
        + ((alpha - 1.0) * np.log(y)).sum(axis=-1)
    )


def score(alpha: np.ndarray, design: PollDesign, i: int, rng: np.random.Generator) -> dict:
    """Score a predictive mixture of Dirichlets (rows of ``alpha``) against reading ``i``.

    Returns ``log_score``, ``abs_error`` (mean over reported answers, points), ``covered50`` and
    ``covered90`` (fractions of reported answers), and per answer the observed share, median and
    intervals (``answers``).
    """
    alpha = np.atleast_2d(alpha)
    used = design.component_used[i]
    y = design.observed[i][used]
    log_score = float(logsumexp(dirichlet_logpdf(y, alpha)) - np.log(alpha.shape[0]))
    rows = rng.integers(0, alpha.shape[0], size=PREDICTIVE_DRAWS)
    gamma = rng.gamma(alpha[rows])
    predictive = 100.0 * gamma / gamma.sum(axis=-1, keepdims=True)
    labels = design.component_label[i][used]
    answers = []
    for j, label in enumerate(labels):
        if label == "rest":
            continue
        draws = predictive[:, j]
        lo90, lo50, median, hi50, hi90 = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95])
        observed = 100.0 * y[j]
        answers.append(
            {
                "answer": str(label),
                "observed": observed,
                "median": median,
                "lower50": lo50,
                "upper50": hi50,
                "lower90": lo90,
                "upper90": hi90,
                "abs_error": abs(median - observed),
                "covered50": bool(lo50 <= observed <= hi50),
                "covered90": bool(lo90 <= observed <= hi90),
            }
        )
    table = pd.DataFrame(answers)
    return {
        "log_score": log_score,
        "abs_error": float(table["abs_error"].mean()),
        "covered50": float(table["covered50"].mean()),
        "covered90": float(table["covered90"].mean()),
        "answers": table,
    }


# -- baselines --------------------------------------------------------------------------------


def baseline_answers(
    method: str, train: pd.DataFrame, start: pd.Timestamp, answers, reference, median_n: float
) -> dict[str, float]:
    """A baseline's estimate (percent) of each answer, from the readings in ``train``.

    ``reference`` is the (pollster, question) of the reference series. Answers the readings never
    report are left out (the caller gives them the remainder).
    """
    train = train.sort_values(["field_end", "field_start"], kind="stable")
    estimate = {}
    for answer in answers:
        rows = train[train[answer].notna()]
        if method == "last_reading":
            rows = rows[(rows["pollster"] == reference[0]) & (rows["question"] == reference[1])]
            if len(rows):
                estimate[answer] = float(rows[answer].iloc[-1])
        elif method == "last3_mean":
            if len(rows):
                estimate[answer] = float(rows[answer].iloc[-3:].mean())
        elif method == "weighted_average":
            if len(rows):
                n = rows["n"].fillna(median_n).to_numpy(dtype=float)
                age = (start - reading_midpoints(rows)).dt.total_seconds().to_numpy() / 86400.0
                weight = np.sqrt(n / median_n) * 0.5 ** (age / HALF_LIFE_DAYS)
                estimate[answer] = float(
                    np.sum(weight * rows[answer].to_numpy(dtype=float)) / np.sum(weight)
                )
        else:
            raise ValueError(f"unknown baseline {method!r}; expected one of {BASELINES}")
    return estimate


def baseline_components(estimate: dict[str, float], design: PollDesign, i: int) -> np.ndarray:
    """The estimate laid out on reading ``i``'s components (proportions summing to 1).

    A component with no estimate (the rest, or an answer the baseline's readings never report)
    shares the remainder equally; shares are floored at :data:`MIN_SHARE`.
    """
    labels = list(design.component_label[i][design.component_used[i]])
    values = np.array([estimate.get(label, np.nan) / 100.0 for label in labels])
    missing = ~np.isfinite(values)
    if missing.any():
        values[missing] = max(1.0 - np.nansum(values), 0.0) / missing.sum()
    values = np.maximum(values, MIN_SHARE)
    return values / values.sum()


def baseline_predictions(
    design: PollDesign, targets: list[Target], rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every baseline on every target; returns (per-target rows, per-answer rows)."""
    polls = design.polls
    reference = (design.reference_pollster, design.questions[0])
    known = design.n[design.n_known]
    median_n = float(np.median(known)) if known.size else float(design.unknown_n_median)
    is_reference = (
        (polls["pollster"] == reference[0]) & (polls["question"] == reference[1])
    ).to_numpy()
    per_target, per_answer = [], []
    for target in targets:
        i = poll_index(design, target.source_row)
        train = polls[polls["source_row"].isin(target.training_rows)]
        n_target = float(design.n[i]) if design.n_known[i] else float(design.unknown_n_median)
        for method in BASELINES:
            # The baseline's track record: its errors on the earlier reference readings, each
            # predicted from the readings before it (within this training set).
            z2, inv_n = [], []
            for j in np.flatnonzero(
                is_reference & polls["source_row"].isin(target.training_rows).to_numpy()
            ):
                past = train[train["field_end"] < polls["field_start"].iloc[j]]
                estimate = baseline_answers(
                    method, past, polls["field_start"].iloc[j], design.answers, reference, median_n
                )
                if not estimate or past.empty:
                    continue
                p = baseline_components(estimate, design, j)
                y = design.observed[j][design.component_used[j]]
                z2.extend((y - p) ** 2 / (p * (1 - p)))
                inv_n.append(1.0 / (design.n[j] if design.n_known[j] else design.unknown_n_median))
            row = {
                "method": method,
                "source_row": target.source_row,
                "poll_id": target.poll_id,
                "cutoff": target.field_start,
            }
            estimate = baseline_answers(
                method, train, target.field_start, design.answers, reference, median_n
            )
            if len(inv_n) < MIN_TRACK_RECORD or not estimate:
                row.update(
                    error=f"fewer than {MIN_TRACK_RECORD} earlier reference readings to judge its spread by"
                )
                per_target.append(row)
                continue
            tau2 = max(float(np.mean(z2)) - float(np.mean(inv_n)), 0.0)
            concentration = 1.0 / (1.0 / n_target + tau2)
            result = score(concentration * baseline_components(estimate, design, i), design, i, rng)
            answers = result.pop("answers")
            row.update(result, tau_pp=50.0 * np.sqrt(tau2), error="")
            per_target.append(row)
            per_answer.append(
                answers.assign(
                    method=method,
                    source_row=target.source_row,
                    poll_id=target.poll_id,
                    cutoff=target.field_start,
                )
            )
    return pd.DataFrame(per_target), (
        pd.concat(per_answer, ignore_index=True) if per_answer else pd.DataFrame()
    )


def summarise(per_target: pd.DataFrame) -> pd.DataFrame:
    """``backtest.csv``: one row per method with ``n``, ``mean_log_score``, ``mae``, coverage.

    ``n`` counts the targets the method was scored on; ``failed`` the targets it could not be
    (a refit that raised, or a baseline without a track record); ``gate_failures`` the refits
    that were scored but did not pass the diagnostics gate.
    """
    rows = []
    for method in METHODS:
        got = per_target[per_target["method"] == method] if len(per_target) else per_target
        ok = got[got["error"].fillna("") == ""] if len(got) else got
        rows.append(
            {
                "method": method,
                "n": len(ok),
                "mean_log_score": float(ok["log_score"].mean()) if len(ok) else np.nan,
                "mae": float(ok["abs_error"].mean()) if len(ok) else np.nan,
                "coverage50": float(ok["covered50"].mean()) if len(ok) else np.nan,
                "coverage90": float(ok["covered90"].mean()) if len(ok) else np.nan,
                "failed": len(got) - len(ok),
                "gate_failures": int(ok["gate_passed"].eq(False).sum())
                if "gate_passed" in ok
                else 0,
            }
        )
    return pd.DataFrame(rows)


def check_events(config: Config, targets: list[Target]) -> None:
    """Refuse events on or after the first target's start.

    A refit sees the whole grid (held-out readings only lose their likelihood), so an event after a
    cut-off would hand the refit a jump it could not have known about.
    """
    if not targets:
        return
    first = min(t.field_start for t in targets)
    late = [f"{e.label!r} ({e.date})" for e in config.events if pd.Timestamp(e.date) >= first]
    if late:
        raise ConfigError(
            f"events {', '.join(late)} fall on or after the first backtest target ({first:%Y-%m-%d}); "
            "a leave-future-out backtest cannot know them: start the backtest later (since) or leave them out"
        )
