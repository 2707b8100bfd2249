"""Turn a validated poll table and a config into the arrays the model needs.

Nothing here samples or touches PyMC: it selects the readings, lays the time grid, maps each
reading's field period onto grid cells, and writes each reading's reported shares as observed
*components* (each reported answer on its own, plus one merged "rest" for the answers it did not
report).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.aggregator.names import (
    ANSWER,
    COMPONENT,
    EVENT,
    POLL,
    POLLSTER,
    QUESTION,
    TIME,
)
from model.config import ANCHORS, DAYS_PER_MONTH, ZERO_SUM, Config, ConfigError
from model.data.polls import DATAFRAME_SOURCE, PollDataError, Problem, spelt_almost

#: Half of the rounding unit of published shares (whole percents): the smallest share a
#: component can take in the likelihood. A reported 0% is read as "under 0.5%" and enters as 0.25%.
MIN_COMPONENT_PCT = 0.25

#: Letters (changed, added or removed) by which a question id of the table not in
#: ``config.questions`` may differ from a configured one and still be refused as a misspelling of it
#: (:func:`model.data.polls.alike_names`; at most one letter in four of the shorter id).
QUESTION_ID_EDITS = 2

#: Readings per house (question) from which house (question) effects are sampled centred.
CENTRED_MIN_READINGS = 10

#: How much more precise than the walk's prior the readings must make a segment's change before
#: the change is sampled centred (:func:`walk_knots`): 16, the data's sd at most a quarter of the
#: prior's (how it was chosen: docs/performance.md, "Figures that stood in the code's comments").
KNOT_PRECISION_RATIO = 16.0

#: Segments between knots from which ``sampler.knots = "auto"`` samples the knots centred: each
#: pinned change informs the walk scale, and with fewer the scale's posterior reaches near zero,
#: where the centred knots make a funnel with it. Measured on the backtest's refits of the
#: shipped data (docs/validation.md, "Choosing the knots' form per table").
CENTRED_MIN_SEGMENTS = 9


@dataclass(frozen=True)
class PollDesign:
    """Arrays and coordinates for one fit.

    Attributes
    ----------
    polls : pandas.DataFrame
        The readings used, in model order (one row per ``poll``), with their original columns.
    time : pandas.DatetimeIndex
        Start date of each grid cell.
    data_end : pandas.Timestamp
        The last field end among the readings: the curve after it is a projection.
    through : pandas.Timestamp
        The date the curve runs through (``config.through``; ``data_end`` when not set). The grid's
        last cell holds it.
    cell_days : float
        Length of a grid cell in days (:data:`model.config.DAYS_PER_MONTH` for months).
    first_cell, last_cell : numpy.ndarray
        Per reading, the first and last grid cell its field period covers (inclusive).
    pollster_idx, question_idx : numpy.ndarray
        Per reading, index into ``pollsters`` and ``questions``.
    pollsters, questions, answers : tuple of str
        Coordinate labels; ``questions[0]`` is the reference question.
    reference_pollster : str or None
        The pollster whose effect is zero (None with zero-sum or anchors).
    zero_sum_houses : bool
        Whether the house effects are zero-sum over pollsters (``house_effects = "zero_sum"``).
    paired_pollsters, paired_questions : tuple of int
        Confounded pairs (not with zero-sum house effects): a non-reference question asked by one
        non-reference house alone, which asks no other question. The data identify only the sum
        of the pair's two effects.
    confounded : tuple of (str, str)
        (pollster, question) pairs whose two effects the data identify only as a sum, whatever the
        identification mode: a non-reference question asked by one non-reference house alone,
        which asks nothing else.
    joint_groups : tuple of (pollsters, questions)
        Groups of houses and questions linked by readings (a connected part of the pollster-question
        graph) that hold neither the reference question nor the reference pollster: the data fix
        their house and question effects only up to one shared shift, which the priors split.
        A confounded pair is the smallest such group.
    centred_houses, centred_questions : bool
        Whether the (unpaired, free) house and question effects are sampled centred
        (``config.sampler.house_form`` and ``.question_form``; with ``"auto"``, when every one of them has
        at least :data:`CENTRED_MIN_READINGS` readings).
    walk_knots : numpy.ndarray
        Grid cells at which the readings pin the trend (:func:`walk_knots`), ascending. The walk's
        change between two consecutive knots is sampled centred, the path in between and before
        the first / after the last knot non-centred (:class:`model.aggregator.graph.PollAggregator`).
        The first is cell 0. Empty or a single knot: the whole walk non-centred. A parameterisation
        only: the model is the same.
    centred_knots : bool
        Whether the changes between knots are sampled through the trend's values at the knots
        (centred) or on the walk's standardised scale (``config.sampler.knots``; with ``"auto"``,
        centred from :data:`CENTRED_MIN_SEGMENTS` segments on).
    membership : numpy.ndarray
        (poll, answer, component) 0/1: which answers make up each observed component.
    component_used : numpy.ndarray
        (poll, component) bool: which components a reading has.
    observed : numpy.ndarray
        (poll, component) observed component shares as proportions (1 where unused).
    component_label : numpy.ndarray
        (poll, component) str: the answer name, ``rest`` (merged unreported answers) or ``""``.
    n_known : numpy.ndarray
        (poll,) bool: whether the reading's sample size is known.
    n : numpy.ndarray
        (poll,) sample size, NaN where unknown.
    unknown_n_median : float
        Median of the prior of an unknown sample size (the table's median known size, or
        ``priors.unknown_n_median``).
    house_n_medians : dict of str to float
        With ``config.unknown_n = "by_house"``: each house's median known size (the table's for a
        house that states none); empty otherwise.
    event_cell : numpy.ndarray
        Per event, the first grid cell it applies to.
    event_labels : tuple of str
    anchor_cell, anchor_answer, anchor_value, anchor_sd : numpy.ndarray
        Anchors (house_effects = "anchors"): grid cell, answer index, share and sd as proportions.
    """

    polls: pd.DataFrame
    time: pd.DatetimeIndex
    data_end: pd.Timestamp
    through: pd.Timestamp
    cell_days: float
    first_cell: np.ndarray
    last_cell: np.ndarray
    pollster_idx: np.ndarray
    question_idx: np.ndarray
    pollsters: tuple[str, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    reference_pollster: str | None
    zero_sum_houses: bool
    paired_pollsters: tuple[int, ...]
    paired_questions: tuple[int, ...]
    confounded: tuple[tuple[str, str], ...]
    joint_groups: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    centred_houses: bool
    centred_questions: bool
    walk_knots: np.ndarray
    centred_knots: bool
    membership: np.ndarray
    component_used: np.ndarray
    observed: np.ndarray
    component_label: np.ndarray
    n_known: np.ndarray
    n: np.ndarray
    unknown_n_median: float
    house_n_medians: dict[str, float]
    event_cell: np.ndarray
    event_labels: tuple[str, ...]
    anchor_cell: np.ndarray
    anchor_answer: np.ndarray
    anchor_value: np.ndarray
    anchor_sd: np.ndarray

    @property
    def coords(self) -> dict[str, list]:
        """Coordinates of every named dim."""
        return {
            TIME: self.time.values,  # datetime64: compares equal to the stored trace coords
            POLLSTER: list(self.pollsters),
            QUESTION: list(self.questions),
            ANSWER: list(self.answers),
            POLL: list(self.polls["poll_id"]),
            COMPONENT: [f"c{j}" for j in range(len(self.answers))],
            EVENT: list(self.event_labels),
        }

    @property
    def free_pollsters(self) -> list[int]:
        """The pollsters whose house effects are sampled as free effects: all but the reference
        pollster and those in confounded pairs. With zero-sum houses there are neither, and one
        pollster alone has no house effect (a table zero-sum over one pollster is zero)."""
        if self.zero_sum_houses and len(self.pollsters) < 2:
            return []
        reference = (
            self.pollsters.index(self.reference_pollster) if self.reference_pollster else None
        )
        return unpaired_effects(len(self.pollsters), set(self.paired_pollsters), reference)

    @property
    def free_questions(self) -> list[int]:
        """The questions whose effects are sampled as free effects: all but the reference
        question (the first) and those in confounded pairs."""
        return unpaired_effects(len(self.questions), set(self.paired_questions), 0)

    @property
    def projected(self) -> np.ndarray:
        """(time,) bool: cells starting after the last reading's field end, where no reading informs the curve."""
        return np.asarray(self.time > self.data_end)

    def unknown_n_prior_median(self, pollster: str) -> float:
        """The median of the prior of an unknown sample size of a reading by ``pollster``."""
        return self.house_n_medians.get(pollster, self.unknown_n_median)

    @property
    def first_data_cell(self) -> int:
        """The grid cell holding the first reading's field start (an anchor may start the grid
        earlier)."""
        return int(self.first_cell.min())

    @property
    def readings_span(self) -> slice:
        """The grid cells from the first reading's to the last reading's (:attr:`first_data_cell`
        to :attr:`last_data_cell`, both in): where readings inform the curve."""
        return slice(self.first_data_cell, self.last_data_cell + 1)

    @property
    def last_data_cell(self) -> int:
        """The grid cell holding the last reading's field end (the last cell a reading informs)."""
        return int(np.flatnonzero(~self.projected)[-1])

    @property
    def identified_only_with_wording(self) -> frozenset[tuple[str, str]]:
        """(pollster, question) pairs whose house effect the data identify only together with the
        question's: the confounded pairs and every pair of a :attr:`joint_groups` group."""
        grouped = {
            (p, q) for houses, questions in self.joint_groups for p in houses for q in questions
        }
        return frozenset(set(self.confounded) | grouped)

    @property
    def level_from_priors(self) -> tuple[str, ...]:
        """The houses that leave the curve's level partly to the priors (empty where the data fix it).

        With zero-sum house effects (no reference pollster, no anchors) the curve is the average
        house's, and a house whose effect the data identify only together with its wording's
        (:attr:`identified_only_with_wording`) enters that average with a split the priors make.
        Then the curve's level, every house's effect and every difference from the curve (a
        house and wording's sum among them) rest partly on the priors too.
        """
        if self.reference_pollster is not None or len(self.anchor_cell):
            return ()
        return tuple(sorted({p for p, _ in self.identified_only_with_wording}))

    @property
    def last_reading(self) -> pd.Series:
        """The reading with the latest field end (the first in model order among ties)."""
        return self.polls.iloc[int(np.argmax(self.polls["field_end"].to_numpy()))]

    @property
    def pollster_question_pairs(self) -> pd.DataFrame:
        """Which pollsters ask which questions (readings per pair)."""
        return self.polls.groupby(["pollster", "question"]).size().rename("readings").reset_index()


def _grid_start(date: pd.Timestamp, grid: str) -> pd.Timestamp:
    if grid == "day":
        return date.normalize()
    if grid == "week":
        return (date - pd.Timedelta(days=date.weekday())).normalize()
    return date.normalize().replace(day=1)


def make_grid(start: pd.Timestamp, end: pd.Timestamp, grid: str) -> pd.DatetimeIndex:
    """Grid cells (their start dates) from the cell holding ``start`` to the one holding ``end``."""
    freq = {"day": "D", "week": "W-MON", "month": "MS"}[grid]
    return pd.date_range(_grid_start(start, grid), _grid_start(end, grid), freq=freq)


def cell_of(dates: pd.Series | pd.DatetimeIndex, time: pd.DatetimeIndex) -> np.ndarray:
    """Index of the grid cell holding each date (dates before the grid map to -1)."""
    return np.searchsorted(time.values, pd.DatetimeIndex(dates).values, side="right") - 1


def exclusion_reasons(polls: pd.DataFrame, config: Config) -> pd.Series:
    """Why each reading is left out of a fit ("" for readings the fit uses)."""
    reasons = pd.Series("", index=polls.index, dtype=object)
    if config.questions is not None:
        reasons[~polls["question"].isin(config.questions)] = "question not in config.questions"
    if config.exclude_flags:
        if "flags" not in polls:
            raise ConfigError(
                f"exclude_flags {list(config.exclude_flags)} given but the poll table has no 'flags' column"
            )
        tokens = polls["flags"].fillna("").astype(str).str.split(";")
        hit = tokens.map(lambda ts: sorted(set(t.strip() for t in ts) & set(config.exclude_flags)))
        flagged = hit.map(bool) & (reasons == "")
        reasons[flagged] = hit[flagged].map(
            lambda ts: "flagged " + ", ".join(ts) + " (config.exclude_flags)"
        )
    return reasons


def select_polls(polls: pd.DataFrame, config: Config) -> pd.DataFrame:
    """The readings a fit uses: config.questions only, no excluded flags, never one survey twice.

    Raises
    ------
    ConfigError
        A configured question is not in the table, or nothing is left.
    PollDataError
        A question id of the table is not in config.questions but alike a configured one
        (:func:`misspelt_questions`); two selected readings are marked (column
        ``same_survey_as``) as the same survey.
    """
    if config.questions is not None:
        misspelt = misspelt_questions(polls, config.questions)
        if misspelt:
            raise PollDataError(misspelt)
        missing = sorted(set(config.questions) - set(polls["question"]))
        if missing:
            in_table = sorted(set(polls["question"]) - set(config.questions))
            alike = {m: question_spelt_almost(m, in_table) for m in missing}
            hints = "; ".join(
                f"the table has {' and '.join(map(repr, near))}, spelt almost as {m!r}"
                for m, near in alike.items()
                if near
            )
            raise ConfigError(
                f"questions {missing} are not in the poll table {polls.attrs.get('source', '')}"
                + (f" ({hints})" if hints else "")
            )
    polls = polls[exclusion_reasons(polls, config) == ""]
    if polls.empty:
        raise ConfigError(
            "no readings left after applying config.questions and config.exclude_flags"
        )
    if "same_survey_as" in polls and "survey_id" in polls:
        selected = set(polls["survey_id"].dropna())
        problems = []
        for _, row in polls.iterrows():
            other = row.get("same_survey_as")
            if isinstance(other, str) and other and other in selected:
                problems.append(
                    Problem(
                        polls.attrs.get("source", "<DataFrame>"),
                        int(row["source_row"]),
                        "same_survey_as",
                        other,
                        "this reading or the other, not both: the two are probably one survey, "
                        "which must not be counted twice (drop one of their questions from config.questions)",
                        "names a survey that is also in the fit",
                    )
                )
        if problems:
            raise PollDataError(problems)
    return polls.reset_index(drop=True)


def question_spelt_almost(question: str, others: Sequence[str]) -> list[str]:
    """The ids of ``others`` spelt almost as ``question`` (:func:`model.data.polls.spelt_almost`
    at :data:`QUESTION_ID_EDITS` letters), less those that differ from it only in their numbers
    (``Q10`` and ``Q11``, ``TALKS_2022`` and ``TALKS_2023``: numbered questions, not
    misspellings)."""

    def numbered(other: str) -> bool:
        return re.sub(r"\d+", "#", question) == re.sub(r"\d+", "#", other) and re.findall(
            r"\d+", question
        ) != re.findall(r"\d+", other)

    return [
        other
        for other in spelt_almost(question, others, edits=QUESTION_ID_EDITS)
        if not numbered(other)
    ]


def misspelt_questions(polls: pd.DataFrame, questions: Sequence[str]) -> list[Problem]:
    """A problem for each reading whose question id is not one of `questions` (the configured
    ones) but is alike one of them that the table has (:func:`model.data.polls.alike_names` at
    :data:`QUESTION_ID_EDITS` letters): most likely a misspelling, which the fit would leave out
    unnoticed as an unconfigured question. Ids unlike every configured one are left out as
    meant, and so are ids that differ from one only in digits (``Q10`` and ``Q11``,
    ``TALKS_2022`` and ``TALKS_2023``: numbered questions). A configured id the table lacks is
    the config's error, not the table's (:func:`select_polls` says so).

    Parameters
    ----------
    polls : pandas.DataFrame
        A table from :func:`model.load_polls` (with ``source_row``).
    questions : sequence of str
        The configured question ids (``config.questions``).

    Returns
    -------
    list of Problem
        One per such reading, naming its row, the ``question`` column, the id and the configured
        id(s) it is alike; empty when there are none.
    """
    in_table = set(polls["question"])
    configured = sorted(set(questions) & in_table)
    near = {
        unknown: alike
        for unknown in sorted(in_table - set(configured))
        if (alike := question_spelt_almost(unknown, configured))
    }
    source = str(polls.attrs.get("source", DATAFRAME_SOURCE))
    problems = []
    misspelt = polls[polls["question"].isin(near)]
    for row, question in zip(misspelt["source_row"], misspelt["question"], strict=True):
        known = " or ".join(repr(q) for q in near[question])
        problems.append(
            Problem(
                source,
                int(row),
                "question",
                question,
                f"{known} if it is that question; if it is another question, add it to "
                f"config.questions to fit it, or give it an id less like {known}",
                f"is not in config.questions, yet spelt almost as {known}, which is (a misspelt "
                "id would leave the reading out of the fit unnoticed)",
            )
        )
    return problems


def unpaired_effects(count: int, paired: set[int], zero: int | None) -> list[int]:
    """Indices of ``count`` houses (questions) whose effects are free: not ``zero`` (the reference,
    whose effect is 0) and not in a confounded pair (sampled as the pair's sum and split)."""
    return [i for i in range(count) if i != zero and i not in paired]


def build_design(polls: pd.DataFrame, config: Config) -> PollDesign:
    """Lay out a validated poll table (see :func:`model.load_polls`) for the model."""
    polls = select_polls(polls, config).copy()
    answers = tuple(config.answers)
    missing_cols = [a for a in answers if a not in polls]
    if missing_cols:
        raise ConfigError(f"answers {missing_cols} are not columns of the poll table")
    order = np.lexsort(
        (polls["question"], polls["pollster"], polls["field_end"], polls["field_start"])
    )
    polls = polls.iloc[order].reset_index(drop=True)
    polls["poll_id"] = [
        f"{p} | {q} | {s:%Y-%m-%d}"
        for p, q, s in zip(polls["pollster"], polls["question"], polls["field_start"])
    ]
    dup = polls["poll_id"].duplicated(keep=False)
    if dup.any():
        polls.loc[dup, "poll_id"] = (
            polls.loc[dup, "poll_id"]
            + " #"
            + polls.loc[dup].groupby("poll_id").cumcount().add(1).astype(str)
        )

    # Time grid over the readings, the events and the anchors, and on to ``through`` (projected).
    last_reading = int(np.argmax(polls["field_end"].to_numpy()))
    data_end = pd.Timestamp(polls["field_end"].iloc[last_reading])
    through = _through(config, data_end, polls.iloc[last_reading])
    _refuse_projected_dates(config, data_end)
    dates = [polls["field_start"].min(), data_end, through]
    dates += [pd.Timestamp(e.date) for e in config.events] + [
        pd.Timestamp(a.date) for a in config.anchors
    ]
    time = make_grid(min(dates), max(dates), config.grid)
    cell_days = {"day": 1.0, "week": 7.0, "month": DAYS_PER_MONTH}[config.grid]
    first_cell = cell_of(polls["field_start"], time)
    last_cell = cell_of(polls["field_end"], time)

    # Questions: the reference first.
    counts = polls["question"].value_counts(sort=False)
    reference_question = config.reference_question
    if reference_question is None:
        reference_question = sorted(counts.index, key=lambda q: (-counts[q], q))[0]
    elif reference_question not in counts:
        raise ConfigError(
            f"reference_question {reference_question!r} is not among the fitted questions {sorted(counts.index)}"
        )
    questions = (reference_question, *sorted(q for q in counts.index if q != reference_question))

    # Pollsters: a named reference first.
    pollster_names = sorted(polls["pollster"].unique())
    reference_pollster = None
    if config.house_effects not in (ZERO_SUM, ANCHORS):
        reference_pollster = config.house_effects
        if reference_pollster not in pollster_names:
            raise ConfigError(
                f"house_effects: reference pollster {reference_pollster!r} is not among the fitted pollsters {pollster_names}"
            )
        pollster_names.remove(reference_pollster)
        pollster_names.insert(0, reference_pollster)
    pollsters = tuple(pollster_names)

    pollster_idx = np.array([pollsters.index(p) for p in polls["pollster"]])
    question_idx = np.array([questions.index(q) for q in polls["question"]])
    confounded = []
    for q in range(1, len(questions)):
        askers = set(pollster_idx[question_idx == q])
        if len(askers) == 1:
            (h,) = askers
            if pollsters[h] != reference_pollster and set(question_idx[pollster_idx == h]) == {q}:
                confounded.append((h, q))
    pairs = confounded if config.house_effects != ZERO_SUM else []
    joint = _unidentified_groups(
        pollster_idx, question_idx, pollsters, questions, reference_pollster
    )
    paired_h = {h for h, _ in pairs}
    paired_q = {q for _, q in pairs}
    reference_index = pollsters.index(reference_pollster) if reference_pollster else None
    free_h = unpaired_effects(len(pollsters), paired_h, reference_index)
    free_q = unpaired_effects(len(questions), paired_q, 0)
    centred_houses = _centred(
        config.sampler.house_form, [(pollster_idx == h).sum() for h in free_h]
    )
    centred_questions = _centred(
        config.sampler.question_form, [(question_idx == q).sum() for q in free_q]
    )
    event_cell = cell_of([pd.Timestamp(e.date) for e in config.events], time).astype(int)
    for event, cell in zip(config.events, event_cell):
        if not first_cell.min() < cell <= last_cell.max():
            raise ConfigError(
                f"event {event.label!r} ({event.date}) is not inside the readings' span "
                f"({time[first_cell.min()]:%Y-%m-%d} to {polls['field_end'].max():%Y-%m-%d} on the {config.grid} grid): "
                "its jump needs readings before and after it, or it cannot be told apart from the level"
            )
    membership, used, observed, label = _components(polls, answers)
    n = polls["n"].to_numpy(dtype=float)
    n_known = np.isfinite(n)
    median = config.priors.unknown_n_median
    if median is None:
        median = float(np.median(n[n_known])) if n_known.any() else 1000.0
    knots = walk_knots(
        first_cell,
        last_cell,
        np.where(n_known, n, median),
        n_answers=len(answers),
        step_sd=config.priors.walk_scale(cell_days),
        nonsampling_sd=config.priors.nonsampling_sd_pp / 50.0,
    )
    house_n_medians = {}
    if config.unknown_n == "by_house":
        for pollster in pollsters:
            own = n[n_known & (polls["pollster"] == pollster).to_numpy()]
            house_n_medians[pollster] = float(np.median(own)) if own.size else median

    return PollDesign(
        polls=polls,
        time=time,
        data_end=data_end,
        through=through,
        cell_days=cell_days,
        first_cell=first_cell,
        last_cell=last_cell,
        pollster_idx=pollster_idx,
        question_idx=question_idx,
        pollsters=pollsters,
        questions=questions,
        answers=answers,
        reference_pollster=reference_pollster,
        zero_sum_houses=config.house_effects == ZERO_SUM,
        paired_pollsters=tuple(h for h, _ in pairs),
        paired_questions=tuple(q for _, q in pairs),
        confounded=tuple((pollsters[h], questions[q]) for h, q in confounded),
        joint_groups=joint,
        centred_houses=centred_houses,
        centred_questions=centred_questions,
        walk_knots=knots,
        centred_knots=config.sampler.knots == "centred"
        or (config.sampler.knots == "auto" and len(knots) - 1 >= CENTRED_MIN_SEGMENTS),
        membership=membership,
        component_used=used,
        observed=observed,
        component_label=label,
        n_known=n_known,
        n=n,
        unknown_n_median=median,
        house_n_medians=house_n_medians,
        event_cell=event_cell,
        event_labels=tuple(e.label for e in config.events),
        anchor_cell=cell_of([pd.Timestamp(a.date) for a in config.anchors], time).astype(int),
        anchor_answer=np.array([answers.index(a.answer) for a in config.anchors], dtype=int),
        anchor_value=np.array([a.value / 100 for a in config.anchors]),
        anchor_sd=np.array([a.sd_pp / 100 for a in config.anchors]),
    )


def _through(config: Config, data_end: pd.Timestamp, last: pd.Series) -> pd.Timestamp:
    """The date the grid runs through: ``config.through`` (``"today"`` resolved), else the last field end.

    Raises
    ------
    ConfigError
        ``through`` is before the last reading's field end.
    """
    through = config.resolved(data_end=data_end).through
    if through is None:
        return data_end
    when = pd.Timestamp(through)
    if when < data_end:
        raise ConfigError(
            f"through {when:%Y-%m-%d} is before the last reading's field end, {data_end:%Y-%m-%d} "
            f"({last['pollster']}, {last['question']}): the curve runs at least to the last reading; "
            "give a later date, 'today', or leave through unset to end the curve at the last reading"
        )
    return when


def _refuse_projected_dates(config: Config, data_end: pd.Timestamp) -> None:
    """Events and anchors dated after the last reading: no reading could identify them."""
    problems = []
    for event in config.events:
        if pd.Timestamp(event.date) > data_end:
            problems.append(
                f"event {event.label!r} ({event.date}) is after the last reading's field end ({data_end:%Y-%m-%d}): "
                "no reading could identify its jump (the curve there is a projection); remove it or add readings after it"
            )
    for anchor in config.anchors:
        if pd.Timestamp(anchor.date) > data_end:
            problems.append(
                f"anchor {anchor.answer} = {anchor.value} on {anchor.date} is after the last reading's field end "
                f"({data_end:%Y-%m-%d}): no reading could be compared with it there (past the last reading the curve "
                "is a projection); anchor a date the readings cover"
            )
    if problems:
        raise ConfigError("\n".join(problems))


def _centred(form: str, readings_per_effect: list[int]) -> bool:
    """Whether effects are sampled centred: as ``form`` says, or with ``"auto"`` when each of them
    has at least :data:`CENTRED_MIN_READINGS` readings (``readings_per_effect``)."""
    if form == "auto":
        return all(count >= CENTRED_MIN_READINGS for count in readings_per_effect)
    return form == "centred"


def walk_knots(
    first_cell, last_cell, n, *, n_answers: int, step_sd: float, nonsampling_sd: float
) -> np.ndarray:
    r"""Grid cells where the readings pin the trend tightly enough to sample its changes centred.

    A reading is credited to the middle cell of its field period, with the precision it gives a
    logit near the middle of the simplex, :math:`I_i = c_i \, \frac{1}{K}(1 - \frac{1}{K})`
    for :math:`K` answers and concentration :math:`1/c_i = 1/n_i + \tau^2` (:math:`\tau` at its
    prior scale; unknown :math:`n_i` at the median). The first knot is cell 0 (where the grid
    starts with the first reading; the trend there is the level); each later knot is the first cell :math:`t` at which the precision credited since the previous
    knot :math:`t_0` reaches :data:`KNOT_PRECISION_RATIO` (:math:`F`) times the prior precision of
    the walk's change over those cells,

    .. math::

        (t - t_0) \, \sigma_{step}^2 \sum_{t_0 < \text{mid}_i \le t} I_i \ge F,

    with :math:`\sigma_{step}` the walk scale's prior scale per cell. Between knots the data say
    little about the path (its wiggles keep their prior, where a non-centred walk is right); across
    knots they pin the change (where a centred one is): the heuristic only chooses how each part is
    sampled, never what the model is (but for the candidate ``trend = "momentum"``, whose prior
    carries each segment's slope into the next: there the knots are part of the model). The shipped readings (monthly at best, weekly grid) give a knot
    every four to six months; 1,000 readings over four years one every month or so.
    """
    first_cell, last_cell = np.asarray(first_cell, dtype=int), np.asarray(last_cell, dtype=int)
    if first_cell.size == 0:
        return np.zeros(1, dtype=int)
    concentration = 1.0 / (1.0 / np.asarray(n, dtype=float) + nonsampling_sd**2)
    per_cell = np.bincount(
        (first_cell + last_cell) // 2, weights=concentration * (1 - 1 / n_answers) / n_answers
    )
    knots = [0]
    gathered = 0.0
    for cell in np.flatnonzero(per_cell[1:] > 0) + 1:
        gathered += per_cell[cell]
        if (cell - knots[-1]) * step_sd**2 * gathered >= KNOT_PRECISION_RATIO:
            knots.append(int(cell))
            gathered = 0.0
    return np.asarray(knots, dtype=int)


def _unidentified_groups(pollster_idx, question_idx, pollsters, questions, reference_pollster):
    """Connected parts of the pollster-question graph holding neither reference (see PollDesign).

    Raises
    ------
    ConfigError
        With a reference pollster that no chain of readings links to the reference question: the
        curve (that house asking that question) would then rest on the priors alone.
    """
    parent = {("p", h): ("p", h) for h in range(len(pollsters))} | {
        ("q", q): ("q", q) for q in range(len(questions))
    }

    def root(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for h, q in set(zip(pollster_idx.tolist(), question_idx.tolist())):
        parent[root(("p", h))] = root(("q", q))
    ref_question_root = root(("q", 0))
    if (
        reference_pollster is not None
        and root(("p", pollsters.index(reference_pollster))) != ref_question_root
    ):
        raise ConfigError(
            f"house_effects: reference pollster {reference_pollster!r} is not linked to the reference question "
            f"{questions[0]!r} by any chain of readings, so the curve would rest on the priors alone; "
            "choose a reference question that pollster asks (or one linked to it)"
        )
    ref_pollster_root = (
        root(("p", pollsters.index(reference_pollster))) if reference_pollster is not None else None
    )
    groups: dict = {}
    for node in parent:
        r = root(node)
        if r in (ref_question_root, ref_pollster_root):
            continue
        groups.setdefault(r, ([], []))[0 if node[0] == "p" else 1].append(node[1])
    return tuple(
        (tuple(pollsters[h] for h in sorted(hs)), tuple(questions[q] for q in sorted(qs)))
        for hs, qs in sorted(groups.values(), key=lambda g: (sorted(g[1]), sorted(g[0])))
        if qs
    )


def _components(polls: pd.DataFrame, answers: tuple[str, ...]):
    """Observed components per reading: each reported answer, plus the merged unreported rest.

    A reading reporting every answer has one component per answer; its shares are divided by their
    sum (published shares are rounded, so they sum to 100 +/- a point). A reading reporting some
    answers has one component per reported answer and one "rest" holding 100 minus their sum. Shares
    below :data:`MIN_COMPONENT_PCT` (a reported 0, or a rest that rounding left at or below 0) enter
    as that floor.
    """
    shares = polls[list(answers)].to_numpy(dtype=float)
    n_poll, n_answer = shares.shape
    membership = np.zeros((n_poll, n_answer, n_answer))
    used = np.zeros((n_poll, n_answer), dtype=bool)
    observed = np.ones((n_poll, n_answer))
    label = np.full((n_poll, n_answer), "", dtype=object)
    for i in range(n_poll):
        reported = np.flatnonzero(np.isfinite(shares[i]))
        missing = np.flatnonzero(~np.isfinite(shares[i]))
        values = list(np.maximum(shares[i, reported], MIN_COMPONENT_PCT))
        for j, k in enumerate(reported):
            membership[i, k, j] = 1
            label[i, j] = answers[k]
        if missing.size:
            j = reported.size
            membership[i, missing, j] = 1
            label[i, j] = "rest"
            values.append(max(100.0 - shares[i, reported].sum(), MIN_COMPONENT_PCT))
        values = np.asarray(values)
        used[i, : values.size] = True
        observed[i, : values.size] = values / values.sum()
    return membership, used, observed, label
