r"""Leave-future-out backtest: refit on the past, predict readings up to nine months ahead, score.

**Targets.** Every reading by the reference house on the reference question (Levada Center on its
own question, in the project config) whose field period starts on or after ``since``, and every
reading of another house and question that has at least :data:`MIN_SERIES_READINGS` earlier
readings (Russian Field's, on the shipped data: predicted as the curve plus that house's offset,
the only test of the house-effect machinery). Each target is predicted from cut-offs
:data:`HORIZONS` months before its field start: the refit sees exactly the readings whose field
period ended before the cut-off, so a 6-month horizon tests the projection past the last reading
that users read today. The last :data:`CONFIRMATION_TARGETS` reference targets form a confirmation
set, reported on its own (not looked at while choosing a model).

**Refits.** Every distinct training set is fitted once per refitted method and predicts every
target it serves (a refit's grid runs through its last target's field end, ``Config.through``).
Its design is built from its own training readings only: the walk's knots, the median known
sample size and every other data-derived choice, so no refit inherits knots placed where later
readings pin the trend; events dated after its last training reading are unknown to it and left
out. Refits of one structure share one compiled model (the sizes are data).

Every method is scored from a predictive distribution over the target's observed components (its
reported answers plus the merged rest, as in the model's likelihood):

* ``log_score``: the log predictive density of the observed components,
  :math:`\log \frac{1}{S}\sum_s \mathrm{Dirichlet}(y \mid \alpha_s)` (higher is better);
* ``abs_error`` / ``signed_error``: the (absolute) error of the predictive median of each reported
  answer, in points (median minus observed);
* ``covered50`` / ``covered90``: whether the central 50% / 90% predictive interval of each reported
  answer holds the observed share.

Methods (the ``method`` column):

``model``
    The project's model, as configured.
``reference_only``
    The same model fitted to the reference house's readings on the reference question alone (the
    strong yardstick: does pooling other houses help?). Predicts reference targets only.
``no_house_effects``
    The same model with every reading treated as the reference house asking the reference
    question: no house or question effects (what pooling without adjustment gives).
``last_reading``
    The target series' latest reading (each answer from the latest reading reporting it).
``last3_mean``
    The mean of the latest three readings of any house (per answer, over readings reporting it).
``weighted_average``
    A sample-size-weighted, exponentially time-decayed average of every house's readings, without
    house effects: weight :math:`\sqrt{n_i / \tilde n} \cdot 2^{-a_i / h}` with :math:`\tilde n`
    the median known sample size (unknown :math:`n_i` take it), :math:`a_i` the days from the
    reading's mid-field date to the cut-off and half-life :data:`HALF_LIFE_DAYS`.

The three baselines give a point estimate; their predictive distribution is a Dirichlet around it
with concentration :math:`1/c = 1/n + \tau_b^2`, where :math:`\tau_b^2` is the baseline's own excess
error at the same horizon, estimated by moments from its errors on the earlier readings of the
target's series in the same training set. So every method is scored on the same density scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln, logsumexp, softmax

from model.aggregator.design import PollDesign, cell_of
from model.aggregator.graph import dirichlet_concentration, nonsampling_tau
from model.config import BACKTEST_HORIZONS, CANDIDATES, Config, ConfigError
from model.data.polls import reading_midpoints
from model.results.calibration import MODEL_METHOD as MODEL
from model.results.calibration import REFERENCE_TARGETS, gate_failures, newey_west_se

REFERENCE_ONLY = "reference_only"
NO_EFFECTS = "no_house_effects"
#: The methods refitted with the model (each refit a Dask task).
REFITTED = (MODEL, REFERENCE_ONLY, NO_EFFECTS)
BASELINES = ("last_reading", "last3_mean", "weighted_average")
#: Every method, in the order the tables list them.
METHODS = (*REFITTED, *BASELINES)


def candidate_method(name: str) -> str:
    """The method name of a model candidate (``model+drift``)."""
    if name not in CANDIDATES:
        raise ConfigError(
            f"unknown model candidate {name!r}; expected some of {sorted(CANDIDATES)}"
        )
    return f"{MODEL}+{name}"


def methods_of(table: pd.DataFrame) -> list[str]:
    """The methods present in ``table``, the model first, then its candidates, then the rest in
    :data:`METHODS` order."""
    present = list(dict.fromkeys(table["method"])) if len(table) else []
    candidates = sorted(m for m in present if m.startswith(f"{MODEL}+"))
    ordered = [MODEL, *candidates, *[m for m in METHODS if m != MODEL]]
    return [m for m in ordered if m in present or m in METHODS]


#: Months between a cut-off and its target's field start.
HORIZONS = BACKTEST_HORIZONS
#: Reference readings a training set needs (the baselines' track record needs as many).
MIN_TRAINING_REFERENCE = 3
#: Earlier readings a non-reference house and question need for their readings to be targets.
MIN_SERIES_READINGS = 3
#: The last reference targets, kept apart as a confirmation set.
CONFIRMATION_TARGETS = 6
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
    """One prediction: a reading, the horizon it is predicted at, and the training set before it.

    Attributes
    ----------
    source_row, poll_id : int, str
        The reading (``source_row`` identifies it in the poll table).
    series : str
        ``"<pollster> | <question>"``.
    reference : bool
        The reference house asking the reference question.
    confirmation : bool
        One of the last :data:`CONFIRMATION_TARGETS` reference targets.
    field_start, field_end : pandas.Timestamp
    horizon : int
        Months between the cut-off and the field start.
    cutoff : pandas.Timestamp
        ``field_start`` minus ``horizon`` months; the training readings ended before it.
    training_rows : tuple of int
        ``source_row`` of every training reading.
    """

    source_row: int
    poll_id: str
    series: str
    reference: bool
    confirmation: bool
    field_start: pd.Timestamp
    field_end: pd.Timestamp
    horizon: int
    cutoff: pd.Timestamp
    training_rows: tuple[int, ...]


@dataclass(frozen=True)
class Refit:
    """One refit: a method, a training set and the targets it predicts (one Dask task)."""

    method: str
    training_rows: tuple[int, ...]
    targets: tuple[Target, ...]

    @property
    def cutoff(self) -> pd.Timestamp:
        """The latest cut-off among its targets (they share the training set)."""
        return max(t.cutoff for t in self.targets)


def _series(polls: pd.DataFrame) -> pd.Series:
    return polls["pollster"] + " | " + polls["question"]


def _reference_series(design: PollDesign) -> str:
    if design.reference_pollster is None:
        raise ConfigError(
            "the backtest needs a reference pollster (config house_effects = '<pollster>')"
        )
    return f"{design.reference_pollster} | {design.questions[0]}"


def backtest_targets(
    design: PollDesign, since: str | pd.Timestamp, horizons: tuple[int, ...] = HORIZONS
) -> list[Target]:
    """Every (reading, horizon) the backtest predicts, with its training set.

    A reading from ``since`` on is a target at horizon ``h`` when the readings that ended before
    its field start minus ``h`` months include :data:`MIN_TRAINING_REFERENCE` reference readings
    and, for a non-reference series, :data:`MIN_SERIES_READINGS` readings of its own series.

    Raises
    ------
    ConfigError
        Without a reference pollster.
    """
    reference = _reference_series(design)
    polls = design.polls
    series = _series(polls)
    candidates = np.flatnonzero(
        polls["field_start"].to_numpy() >= np.datetime64(pd.Timestamp(since))
    )
    reference_starts = sorted(
        polls["field_start"].iloc[i] for i in candidates if series.iloc[i] == reference
    )
    confirmation = set(reference_starts[-CONFIRMATION_TARGETS:])
    targets = []
    for i in candidates:
        start = polls["field_start"].iloc[i]
        own = series.iloc[i]
        for horizon in horizons:
            cutoff = start - pd.DateOffset(months=horizon)
            before = (polls["field_end"] < cutoff).to_numpy()
            if (before & (series == reference).to_numpy()).sum() < MIN_TRAINING_REFERENCE:
                continue
            if (
                own != reference
                and (before & (series == own).to_numpy()).sum() < MIN_SERIES_READINGS
            ):
                continue
            targets.append(
                Target(
                    source_row=int(polls["source_row"].iloc[i]),
                    poll_id=str(polls["poll_id"].iloc[i]),
                    series=own,
                    reference=own == reference,
                    confirmation=own == reference and start in confirmation,
                    field_start=start,
                    field_end=polls["field_end"].iloc[i],
                    horizon=int(horizon),
                    cutoff=pd.Timestamp(cutoff),
                    training_rows=tuple(int(r) for r in polls.loc[before, "source_row"]),
                )
            )
    return targets


def plan_refits(targets: list[Target], methods: tuple[str, ...] = REFITTED) -> list[Refit]:
    """One refit per method and distinct training set, predicting every target that set serves
    (``reference_only`` only the reference targets)."""
    by_training: dict[tuple[int, ...], list[Target]] = {}
    for target in targets:
        by_training.setdefault(target.training_rows, []).append(target)
    refits = []
    for method in methods:
        for training, group in by_training.items():
            served = tuple(t for t in group if method != REFERENCE_ONLY or t.reference)
            if served:
                refits.append(Refit(method=method, training_rows=training, targets=served))
    return refits


def refit_table(design: PollDesign, config: Config, refit: Refit) -> tuple[pd.DataFrame, Config]:
    """A refit's training readings (as its method sees them) and config.

    The config runs the grid through the refit's last target and keeps only the events its
    training readings can identify (dated inside them): a forecaster at the cut-off would not know
    of a later one. ``reference_only`` keeps the reference series alone; ``no_house_effects``
    relabels every reading as the reference series.
    """
    polls = design.polls
    table = polls[polls["source_row"].isin(refit.training_rows)].drop(columns=["poll_id"])
    reference = _reference_series(design)
    questions = config.questions
    if refit.method.startswith(f"{MODEL}+"):
        config = config.replace(**CANDIDATES[refit.method.split("+", 1)[1]])
    elif refit.method == REFERENCE_ONLY:
        table = table[_series(table) == reference]
        questions = (design.questions[0],)
    elif refit.method == NO_EFFECTS:
        table = table.assign(pollster=design.reference_pollster, question=design.questions[0])
        questions = (design.questions[0],)
    elif refit.method != MODEL:
        raise ValueError(
            f"unknown refitted method {refit.method!r}; expected one of {REFITTED} or a candidate"
        )
    if (
        questions is not None
    ):  # the questions the training readings ask (a later one is unknown yet)
        questions = tuple(q for q in questions if q in set(table["question"]))
    first, last = table["field_start"].min(), table["field_end"].max()
    events = tuple(e for e in config.events if first < pd.Timestamp(e.date) <= last)
    through = max(t.field_end for t in refit.targets)
    return table.reset_index(drop=True), config.replace(
        questions=questions, events=events, through=f"{through:%Y-%m-%d}"
    )


def poll_index(design: PollDesign, source_row: int) -> int:
    """Position in ``design`` of the reading with this ``source_row``."""
    (where,) = np.flatnonzero(design.polls["source_row"].to_numpy() == source_row)
    return int(where)


# -- the model's prediction -------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a reading sits in a fit's design, and what it reported (possibly not in that fit)."""

    first_cell: int
    last_cell: int
    pollster: str
    pollster_idx: int
    question_idx: int
    n: float  # NaN when unknown
    membership: np.ndarray  # (answer, component)
    component_used: np.ndarray  # (component,)
    observed: np.ndarray  # (component,)
    component_label: np.ndarray  # (component,)


def place(full: PollDesign, i: int, fit: PollDesign, *, pooled: bool = False) -> Placement:
    """Reading ``i`` of ``full`` placed in ``fit`` (its grid cells, house and question there).

    With ``pooled`` (``no_house_effects``) the reading counts as the reference house asking the
    reference question.

    Raises
    ------
    ValueError
        The reading is outside ``fit``'s grid, or its house or question is not in ``fit``.
    """
    polls = full.polls
    first, last = cell_of(
        pd.DatetimeIndex([polls["field_start"].iloc[i], polls["field_end"].iloc[i]]), fit.time
    )
    if first < 0 or polls["field_end"].iloc[i] > fit.through:
        raise ValueError(f"{polls['poll_id'].iloc[i]} lies outside the refit's grid")
    pollster = fit.reference_pollster if pooled else polls["pollster"].iloc[i]
    question = fit.questions[0] if pooled else polls["question"].iloc[i]
    if pollster not in fit.pollsters or question not in fit.questions:
        raise ValueError(
            f"{polls['poll_id'].iloc[i]}: {pollster!r} or {question!r} is not in the refit"
        )
    return Placement(
        first_cell=int(first),
        last_cell=int(last),
        pollster=pollster,
        pollster_idx=fit.pollsters.index(pollster),
        question_idx=fit.questions.index(question),
        n=float(full.n[i]),
        membership=full.membership[i],
        component_used=full.component_used[i],
        observed=full.observed[i],
        component_label=full.component_label[i],
    )


def _draws(posterior, name: str, *dims: str) -> np.ndarray:
    return posterior[name].stack(sample=("chain", "draw")).transpose("sample", *dims).values


def model_alpha(
    posterior,
    design: PollDesign,
    reading: int | Placement,
    rng: np.random.Generator | None = None,
    *,
    unknown_n_log_sd: float = 0.5,
) -> np.ndarray:
    """Dirichlet parameters (draw, used component) of a reading's predictive, per posterior draw.

    Follows the likelihood exactly: the trend's logits averaged over the reading's cells (the log
    of the ``share`` curve differs from the logits by a per-cell constant, which softmax ignores),
    plus its house and question effects; the concentration from its ``n`` and the non-sampling
    error. ``reading`` is a reading of ``design`` (its unknown ``n`` then has posterior draws) or
    a :class:`Placement` of a held-out one, whose unknown ``n`` is drawn from the model's prior
    (log-normal around the design's median known size, its house's with ``unknown_n =
    "by_house"``, sd ``unknown_n_log_sd``) with ``rng``. With ``nonsampling = "by_house"`` the
    reading's house's non-sampling error is used.
    """
    if isinstance(reading, Placement):
        placed = reading
    else:
        placed = Placement(
            first_cell=int(design.first_cell[reading]),
            last_cell=int(design.last_cell[reading]),
            pollster=str(design.polls["pollster"].iloc[reading]),
            pollster_idx=int(design.pollster_idx[reading]),
            question_idx=int(design.question_idx[reading]),
            n=float(design.n[reading]),
            membership=design.membership[reading],
            component_used=design.component_used[reading],
            observed=design.observed[reading],
            component_label=design.component_label[reading],
        )
    share = _draws(posterior, "share", "time", "answer") / 100.0
    eta = np.log(share[:, placed.first_cell : placed.last_cell + 1, :]).mean(axis=1)
    house = _draws(posterior, "house_effect", "pollster", "answer")
    question = _draws(posterior, "question_effect", "question", "answer")
    p = softmax(eta + house[:, placed.pollster_idx] + question[:, placed.question_idx], axis=-1)
    if np.isfinite(placed.n):
        n = np.full(p.shape[0], placed.n)
    elif isinstance(reading, Placement):
        rng = rng or np.random.default_rng(0)
        median = design.unknown_n_prior_median(placed.pollster)
        n = np.exp(np.log(median) + unknown_n_log_sd * rng.standard_normal(p.shape[0]))
    else:
        n = _draws(posterior, "n_unknown", "poll_unknown_n")[
            :,
            list(design.polls["poll_id"][~design.n_known]).index(
                design.polls["poll_id"].iloc[reading]
            ),
        ]
    if "nonsampling_sd_house" in posterior:  # config nonsampling = "by_house"
        nonsampling_sd = _draws(posterior, "nonsampling_sd_house", "pollster")[
            :, placed.pollster_idx
        ]
    else:
        nonsampling_sd = _draws(posterior, "nonsampling_sd")
    return (
        dirichlet_concentration(n, nonsampling_tau(nonsampling_sd))[:, None]
        * (p @ placed.membership)[:, placed.component_used]
    )


# -- scoring ----------------------------------------------------------------------------------


def dirichlet_logpdf(y: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Log density of ``y`` (components) under each row of ``alpha``."""
    return (
        gammaln(alpha.sum(axis=-1))
        - gammaln(alpha).sum(axis=-1)
        + ((alpha - 1.0) * np.log(y)).sum(axis=-1)
    )


def score(
    alpha: np.ndarray, reading: Placement | tuple[PollDesign, int], rng: np.random.Generator
) -> dict:
    """Score a predictive mixture of Dirichlets (rows of ``alpha``) against a reading.

    ``reading`` is a :class:`Placement` or ``(design, i)``. Returns ``log_score``, ``abs_error``
    and ``signed_error`` (means over reported answers, points), ``covered50`` and ``covered90``
    (fractions of reported answers), and per answer the observed share, median, intervals and
    errors (``answers``).
    """
    if not isinstance(reading, Placement):
        design, i = reading
        used, observed, labels = (
            design.component_used[i],
            design.observed[i],
            design.component_label[i],
        )
    else:
        used, observed, labels = reading.component_used, reading.observed, reading.component_label
    alpha = np.atleast_2d(alpha)
    y = observed[used]
    log_score = float(logsumexp(dirichlet_logpdf(y, alpha)) - np.log(alpha.shape[0]))
    rows = rng.integers(0, alpha.shape[0], size=PREDICTIVE_DRAWS)
    gamma = rng.gamma(alpha[rows])
    predictive = 100.0 * gamma / gamma.sum(axis=-1, keepdims=True)
    answers = []
    for j, label in enumerate(labels[used]):
        if label == "rest":
            continue
        draws = predictive[:, j]
        lo90, lo50, median, hi50, hi90 = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95])
        observed_pp = 100.0 * y[j]
        answers.append(
            {
                "answer": str(label),
                "observed": observed_pp,
                "median": median,
                "lower50": lo50,
                "upper50": hi50,
                "lower90": lo90,
                "upper90": hi90,
                "signed_error": median - observed_pp,
                "abs_error": abs(median - observed_pp),
                "covered50": bool(lo50 <= observed_pp <= hi50),
                "covered90": bool(lo90 <= observed_pp <= hi90),
            }
        )
    table = pd.DataFrame(answers)
    return {
        "log_score": log_score,
        "abs_error": float(table["abs_error"].mean()),
        "signed_error": float(table["signed_error"].mean()),
        "covered50": float(table["covered50"].mean()),
        "covered90": float(table["covered90"].mean()),
        "answers": table,
    }


# -- baselines --------------------------------------------------------------------------------


class _BaselineReadings:
    """A poll table's columns as arrays, with the order baselines read it in (field end, then
    field start, stably), so that each training set or past is a boolean mask, not a new table."""

    def __init__(self, polls: pd.DataFrame, answers) -> None:
        polls = polls.reset_index(drop=True)
        self.order = polls.sort_values(["field_end", "field_start"], kind="stable").index.to_numpy()
        self.series = _series(polls).to_numpy()
        self.field_end = polls["field_end"].to_numpy()
        self.midpoint = reading_midpoints(polls).to_numpy()
        self.n = polls["n"].to_numpy(dtype=float, na_value=np.nan)
        self.shares = {a: polls[a].to_numpy(dtype=float, na_value=np.nan) for a in answers}

    def estimate(
        self, method: str, rows: np.ndarray, start: pd.Timestamp, series: str, median_n: float
    ) -> dict[str, float]:
        """:func:`baseline_answers` from the readings where the mask ``rows`` is true."""
        if method not in BASELINES:
            raise ValueError(f"unknown baseline {method!r}; expected one of {BASELINES}")
        ordered = self.order[rows[self.order]]
        if method == "last_reading":
            ordered = ordered[self.series[ordered] == series]
        estimate = {}
        for answer, values in self.shares.items():
            reporting = ordered[np.isfinite(values[ordered])]
            if not len(reporting):
                continue
            if method == "last_reading":
                estimate[answer] = float(values[reporting[-1]])
            elif method == "last3_mean":
                estimate[answer] = float(np.mean(values[reporting[-3:]]))
            else:  # weighted_average
                n = np.where(np.isnan(self.n[reporting]), median_n, self.n[reporting])
                age = (np.datetime64(start, "ns") - self.midpoint[reporting]) / np.timedelta64(
                    1, "D"
                )
                weight = np.sqrt(n / median_n) * 0.5 ** (age / HALF_LIFE_DAYS)
                estimate[answer] = float(np.sum(weight * values[reporting]) / np.sum(weight))
        return estimate


def baseline_answers(
    method: str, train: pd.DataFrame, start: pd.Timestamp, answers, series: str, median_n: float
) -> dict[str, float]:
    """A baseline's estimate (percent) of each answer, from the readings in ``train`` (the module
    docstring defines the baselines; "latest" orders by field end, then field start).

    ``series`` is the target's ``"<pollster> | <question>"`` (``last_reading`` follows it). Answers
    the readings never report are left out (the caller gives them the remainder).
    """
    readings = _BaselineReadings(train, answers)
    return readings.estimate(method, np.ones(len(train), dtype=bool), start, series, median_n)


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


def _target_row(target: Target, method: str) -> dict:
    return {
        "method": method,
        "source_row": target.source_row,
        "poll_id": target.poll_id,
        "series": target.series,
        "reference": target.reference,
        "confirmation": target.confirmation,
        "horizon_months": target.horizon,
        "cutoff": target.cutoff,
        "field_start": target.field_start,
    }


def baseline_predictions(
    design: PollDesign, targets: list[Target], rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every baseline on every target; returns (per-target rows, per-answer rows)."""
    polls = design.polls
    readings = _BaselineReadings(polls, design.answers)
    source_rows = polls["source_row"].to_numpy()
    known = design.n[design.n_known]
    median_n = float(np.median(known)) if known.size else float(design.unknown_n_median)
    per_target, per_answer = [], []
    for target in targets:
        i = poll_index(design, target.source_row)
        train = np.isin(source_rows, np.asarray(target.training_rows, dtype=source_rows.dtype))
        n_target = float(design.n[i]) if design.n_known[i] else float(design.unknown_n_median)
        months = pd.DateOffset(months=target.horizon)
        # Its track record: each baseline's errors on the earlier readings of the target's series
        # in this training set, each predicted at the same horizon from the readings before it.
        track = []
        for j in np.flatnonzero((readings.series == target.series) & train):
            cut = polls["field_start"].iloc[j] - months
            past = train & (readings.field_end < np.datetime64(cut, "ns"))
            if past.any():
                track.append((j, cut, past))
        for method in BASELINES:
            z2, inv_n = [], []
            for j, cut, past in track:
                estimate = readings.estimate(method, past, cut, target.series, median_n)
                if not estimate:
                    continue
                p = baseline_components(estimate, design, j)
                y = design.observed[j][design.component_used[j]]
                z2.extend((y - p) ** 2 / (p * (1 - p)))
                inv_n.append(1.0 / (design.n[j] if design.n_known[j] else design.unknown_n_median))
            row = _target_row(target, method)
            estimate = readings.estimate(method, train, target.cutoff, target.series, median_n)
            if len(inv_n) < MIN_TRACK_RECORD or not estimate:
                row.update(
                    error=f"fewer than {MIN_TRACK_RECORD} earlier readings of its series to judge its spread by"
                )
                per_target.append(row)
                continue
            tau2 = max(float(np.mean(z2)) - float(np.mean(inv_n)), 0.0)
            concentration = 1.0 / (1.0 / n_target + tau2)
            result = score(
                concentration * baseline_components(estimate, design, i), (design, i), rng
            )
            answers = result.pop("answers")
            row.update(result, tau_pp=50.0 * np.sqrt(tau2), error="")
            per_target.append(row)
            per_answer.append(
                answers.assign(**{k: v for k, v in _target_row(target, method).items()})
            )
    return pd.DataFrame(per_target), (
        pd.concat(per_answer, ignore_index=True) if per_answer else pd.DataFrame()
    )


# -- tables -----------------------------------------------------------------------------------


def _scored(per_target: pd.DataFrame) -> pd.DataFrame:
    if not len(per_target):
        return per_target
    return per_target[per_target["error"].fillna("") == ""]


def wilson(successes: float, n: int, level: float = 0.9) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``level`` central probability)."""
    from scipy import stats

    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return float(centre - half), float(centre + half)


#: The columns :func:`_summary_row` gives, in its order: a table of such rows with no rows has them
#: too, so that its file is written with its header.
SUMMARY_COLUMNS = (
    "n",
    "mean_log_score",
    "mae",
    "coverage50",
    "coverage90",
    "failed",
    "gate_failures",
    "coverage50_lower",
    "coverage50_upper",
    "coverage90_lower",
    "coverage90_upper",
)


def _summary_row(got: pd.DataFrame, ok: pd.DataFrame) -> dict:
    row = {
        "n": len(ok),
        "mean_log_score": float(ok["log_score"].mean()) if len(ok) else np.nan,
        "mae": float(ok["abs_error"].mean()) if len(ok) else np.nan,
        "coverage50": float(ok["covered50"].mean()) if len(ok) else np.nan,
        "coverage90": float(ok["covered90"].mean()) if len(ok) else np.nan,
        "failed": len(got) - len(ok),
        "gate_failures": gate_failures(ok) if "gate_passed" in ok else 0,
    }
    for level in (50, 90):
        lo, hi = wilson(float(ok[f"covered{level}"].sum()) if len(ok) else 0.0, len(ok))
        row[f"coverage{level}_lower"], row[f"coverage{level}_upper"] = lo, hi
    return row


def summarise(per_target: pd.DataFrame) -> pd.DataFrame:
    """``backtest.csv``: the reference targets at horizon 0, one row per method.

    ``n`` counts the targets scored; ``failed`` the targets a method could not score (a refit that
    raised, or a baseline without a track record); ``gate_failures`` the scored refits that missed
    the diagnostics gate. Coverage comes with a 90% Wilson interval (``coverage50_lower`` ...).
    """
    rows = []
    part = per_target
    if len(part) and "horizon_months" in part:
        part = part[(part["horizon_months"] == 0) & part["reference"].astype(bool)]
    for method in methods_of(per_target):
        got = part[part["method"] == method] if len(part) else part
        rows.append({"method": method, **_summary_row(got, _scored(got))})
    return pd.DataFrame(rows)


def target_groups(
    reference: pd.Series, confirmation: pd.Series, series: pd.Series
) -> dict[str, pd.Series]:
    """The groups of targets scored apart, as masks over the rows: ``reference`` (every
    reference target), ``development`` and ``confirmation`` (the reference targets before and
    within the last :data:`CONFIRMATION_TARGETS`), and each non-reference series by its name."""
    reference, confirmation = reference.astype(bool), confirmation.astype(bool)
    groups = {
        REFERENCE_TARGETS: reference,
        "development": reference & ~confirmation,
        "confirmation": confirmation,
    }
    for name in sorted(set(series[~reference])):
        groups[name] = series == name
    return groups


def by_horizon(per_target: pd.DataFrame) -> pd.DataFrame:
    """``backtest_horizons.csv``: one row per method and horizon, over the reference targets
    (the columns of :func:`summarise`'s rows, with ``horizon_months``)."""
    return _by_group(per_target, reference=True).drop(columns="targets")


def by_group(per_target: pd.DataFrame) -> pd.DataFrame:
    """``backtest_groups.csv``: per method, horizon and each group of targets
    (:func:`target_groups`) other than all the reference targets, which
    :func:`by_horizon` gives: the development and confirmation sets and each other series."""
    return _by_group(per_target, reference=False)


def _by_group(per_target: pd.DataFrame, *, reference: bool) -> pd.DataFrame:
    """Rows per method, horizon and group of targets (``targets``): the group of all reference
    targets with ``reference``, every other group without; with no such targets, the columns
    alone."""
    columns = ["method", "horizon_months", "targets", *SUMMARY_COLUMNS]
    rows = []
    if not len(per_target):
        return pd.DataFrame(columns=columns)
    groups = target_groups(
        per_target["reference"], per_target["confirmation"], per_target["series"]
    )
    for group, mask in groups.items():
        if (group == REFERENCE_TARGETS) != reference:
            continue
        for method in methods_of(per_target):
            for horizon in sorted(per_target["horizon_months"].unique()):
                got = per_target[
                    mask
                    & (per_target["method"] == method)
                    & (per_target["horizon_months"] == horizon)
                ]
                if not len(got):
                    continue
                rows.append(
                    {
                        "method": method,
                        "horizon_months": int(horizon),
                        "targets": group,
                        **_summary_row(got, _scored(got)),
                    }
                )
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def paired_differences(per_target: pd.DataFrame, against: str = MODEL) -> pd.DataFrame:
    """``backtest_paired.csv``: the model's log score minus each method's, target by target.

    Per method, horizon and group (:func:`target_groups`: ``reference``, ``development``,
    ``confirmation``, each other series), over the targets both scored: ``n``,
    ``mean_difference`` (positive: the model scores better) and its standard error ``se``
    (sd / sqrt(n)), and the same for the absolute error (``mae_difference``, negative: the model
    errs less). Consecutive targets share most of their training readings and
    the same stretch of the curve, so their differences may be correlated; ``se_hac`` is the
    Newey-West standard error of the mean difference over the targets in field-start order
    (:func:`newey_west_se`), which allows for that.
    """
    scored = _scored(per_target)
    if not len(scored):
        return pd.DataFrame()
    key = ["source_row", "horizon_months"]
    base = scored[scored["method"] == against].set_index(key)
    rows = []
    for method in methods_of(per_target):
        if method == against:
            continue
        other = scored[scored["method"] == method].set_index(key)
        both = base.join(other, how="inner", suffixes=("_model", "_other"))
        if not len(both):
            continue
        both = both.reset_index()
        masks = target_groups(
            both["reference_model"], both["confirmation_model"], both["series_model"]
        )
        for group, mask in masks.items():
            for horizon in sorted(both["horizon_months"].unique()):
                part = both[mask & (both["horizon_months"] == horizon)]
                if not len(part):
                    continue
                part = part.sort_values(["field_start_model", "source_row"], kind="stable")
                d = part["log_score_model"] - part["log_score_other"]
                e = part["abs_error_model"] - part["abs_error_other"]
                n = len(part)
                rows.append(
                    {
                        "method": method,
                        "horizon_months": int(horizon),
                        "targets": group,
                        "n": n,
                        "mean_difference": float(d.mean()),
                        "se": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
                        "se_hac": newey_west_se(d.to_numpy()),
                        "mae_difference": float(e.mean()),
                        "mae_se": float(e.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def signed_errors(per_answer: pd.DataFrame) -> pd.DataFrame:
    """``backtest_bias.csv``: mean signed error (predictive median minus observed, points) per
    method, horizon and answer, on the reference targets, with its standard error."""
    if not len(per_answer):
        return pd.DataFrame()
    part = per_answer[per_answer["reference"].astype(bool)]
    rows = []
    for (method, horizon, answer), group in part.groupby(
        ["method", "horizon_months", "answer"], sort=True
    ):
        n = len(group)
        rows.append(
            {
                "method": method,
                "horizon_months": int(horizon),
                "answer": answer,
                "n": n,
                "mean_signed_error": float(group["signed_error"].mean()),
                "se": float(group["signed_error"].std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan,
            }
        )
    return pd.DataFrame(rows)
