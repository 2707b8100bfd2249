"""The headline numbers of a fit: support on a date, how sure, whether it changed.

Everything here is computed from the posterior draws of the curve (``share``, percent) and the
design it was fitted on; nothing is re-estimated. Every figure says what it is conditional on:
the date, whether the curve there is projected past the last reading, and which house and
question the curve is expressed as (the identification).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from model.aggregator.design import PollDesign, cell_of
from model.config import DAYS_PER_MONTH
from model.data.polls import alike_names
from model.results.diagnostics import gate_warning
from model.results.summaries import interval_of


def _date(value) -> str:
    return f"{pd.Timestamp(value):%Y-%m-%d}"


def _cell(design: PollDesign, when: pd.Timestamp) -> int:
    return int(cell_of(pd.DatetimeIndex([when]), design.time)[0])


#: How the curve moves and widens past the last reading under each ``Config.trend``, in words:
#: a clause for the headline's caveat and the report, and a phrase for a figure's caption.
PROJECTION_RULE = {
    "walk": (
        "the model's random walk continued with no data, so its median stays where the data left "
        "it (no trend is extrapolated), and its band widens with the walk's estimated step size",
        "the model's random walk run on with no readings (no trend extrapolated)",
    ),
    "drift": (
        "the model's random walk continued with no data plus the constant drift it estimated over "
        "the whole period, which the median follows; its band widens with the walk's estimated "
        "step size and the drift's uncertainty",
        "the model's random walk run on with no readings, plus its constant drift",
    ),
    "damped": (
        "the model's random walk continued with no data plus its damped local slope, so the median "
        "continues the recent slope as it decays; its band widens with the walk's estimated step "
        "size and the slope's uncertainty and fresh shocks",
        "the model's random walk run on with no readings, plus its recent slope as it decays",
    ),
    "momentum": (
        "the model's random walk continued with no data plus the trend's slope between its last "
        "two knots (a stretch that can end before the last reading), decaying from the middle of "
        "that stretch; its band widens with the walk's estimated step size and that slope's "
        "uncertainty",
        "the model's random walk run on with no readings, plus the slope between its last two "
        "knots as it decays",
    ),
}


def headline(
    posterior: xr.Dataset,
    design: PollDesign,
    *,
    interval: float,
    identification: str,
    trend: str = "walk",
) -> dict[str, Any]:
    """The headline numbers, as written to ``headline.json``.

    Parameters
    ----------
    posterior : xarray.Dataset
        Holds ``share`` (chain, draw, time, answer), in percent.
    design : PollDesign
        The design of the fit (its grid, readings, events and ``through``).
    interval : float
        Central interval width (0.9).
    identification : str
        What the curve is, in words (e.g. "as Levada Center would measure it").
    trend : str
        The fitted model's trend (:attr:`model.FitResult.trend`): how the projection moves
        (:data:`PROJECTION_RULE`).

    Returns
    -------
    dict
        ``as_of`` (the date the curve runs through; its grid cell ``as_of_cell``), ``projected``
        and ``days_past_last_reading``, ``last_reading`` (house, question, field dates), ``curve``
        (what the curve is: house and question), ``conditional_on`` (that and the projection, in
        words), ``interval``, ``draws``, ``answers`` (for every
        answer the ``median``, ``lower``, ``upper`` at ``as_of`` and at the last reading),
        ``probabilities`` (a list of ``{statement, probability}``), ``changes`` (the change of
        every answer since twelve months before ``as_of`` and since just before each event, with
        its interval), ``event_jumps`` (each event's jump with its interval) and ``caveats``.
        The first answer is the one the statements are about (talks), compared with the second
        (continue).
    """
    share = posterior["share"].transpose("chain", "draw", "time", "answer")
    values = share.values
    answers = [str(a) for a in share["answer"].values]
    time = design.time
    as_of_cell = len(time) - 1
    last_cell = design.last_data_cell
    last = design.last_reading
    first, second = answers[0], answers[1] if len(answers) > 1 else None
    draws = values.shape[0] * values.shape[1]

    def at(cell: int) -> dict[str, dict[str, float]]:
        stats = interval_of(values[:, :, cell, :], interval)
        return {
            a: {k: float(stats[k][j]) for k in ("median", "lower", "upper")}
            for j, a in enumerate(answers)
        }

    def probability(statement: str, event: np.ndarray) -> dict[str, Any]:
        return {"statement": statement, "probability": float(np.mean(event))}

    now, before = at(as_of_cell), at(last_cell)
    as_of = design.through
    projected = bool(design.projected[as_of_cell])
    on = f"{as_of:%d %b %Y}" + (" (projected)" if projected else "")
    probabilities = []
    if second is not None:
        probabilities.append(
            probability(
                f"the {first} share is above the {second} share on {on}",
                values[:, :, as_of_cell, 0] > values[:, :, as_of_cell, 1],
            )
        )
    changes = []
    comparisons = []
    year_before = as_of - pd.DateOffset(years=1)
    if year_before >= time[0]:
        comparisons.append(("twelve months before", year_before, _cell(design, year_before), None))
    for label, cell in zip(design.event_labels, design.event_cell):
        comparisons.append((f"just before {label}", time[int(cell) - 1], int(cell) - 1, label))
    for name, when, cell, event in comparisons:
        probabilities.append(
            probability(
                f"the {first} share is higher on {on} than {name} ({when:%d %b %Y})",
                values[:, :, as_of_cell, 0] > values[:, :, cell, 0],
            )
        )
        stats = interval_of(values[:, :, as_of_cell, :] - values[:, :, cell, :], interval)
        for j, answer in enumerate(answers):
            changes.append(
                {
                    "since": name,
                    "event": event,
                    "from_date": _date(when),
                    "from_cell_start": _date(time[cell]),
                    "to_date": _date(as_of),
                    "answer": answer,
                    **{k: float(stats[k][j]) for k in ("median", "lower", "upper")},
                    "probability_higher": float(
                        np.mean(values[:, :, as_of_cell, j] > values[:, :, cell, j])
                    ),
                }
            )
    jumps = []
    brackets = event_brackets(design)
    if "jump" in posterior:
        from model.results.summaries import event_jumps

        table = event_jumps(posterior, list(design.event_cell), interval)
        dates = dict(zip(design.event_labels, [_date(time[int(c)]) for c in design.event_cell]))
        for _, row in table.iterrows():
            jumps.append(
                {
                    "event": row["event"],
                    "cell_start": dates.get(row["event"]),
                    "bracket": brackets.get(row["event"]),
                    "answer": row["answer"],
                    "median": float(row["median"]),
                    "lower": float(row["lower"]),
                    "upper": float(row["upper"]),
                }
            )
    days = int((as_of - design.data_end).days)
    caveats = [
        f"Every share is the curve {identification}, asking {design.questions[0]}: other houses and wordings "
        "differ from it by their estimated offsets (offsets.csv).",
    ]
    if design.level_from_priors:
        caveats.append(
            f"The average house includes {_unsplit_houses(design)}: the priors split them, so "
            "the curve's level, that of the average house, rests partly on the priors. Naming a "
            "reference house (house_effects = '<pollster>') fixes the level by the data."
        )
    reference = design.polls[
        (design.polls["pollster"] == design.reference_pollster)
        & (design.polls["question"] == design.questions[0])
    ]
    if design.reference_pollster is not None and len(reference):
        first_reference = pd.Timestamp(reference["field_start"].min())
        if (design.polls["field_start"] < first_reference).any():
            caveats.append(
                f"Before {field_span(first_reference, first_reference)} (the first reading of {design.reference_pollster} asking "
                f"{design.questions[0]}) the curve rests on other houses' readings, moved by their estimated "
                "offsets, which are learned where their readings and the reference house's overlap."
            )
    caveats += alike_houses(design)
    for event, bracket in brackets.items():
        caveats.append(event_caveat(event, bracket, _grid_name(design)))
    if projected:
        caveats.append(
            f"The curve after {design.data_end:%d %b %Y} (the last reading's field end) is a projection: "
            f"{PROJECTION_RULE[trend][0]}. It cannot anticipate events after the last reading."
        )
    return {
        "as_of": _date(as_of),
        "as_of_cell": _date(time[as_of_cell]),
        "grid": _grid_name(design),
        "projected": projected,
        "days_past_last_reading": days,
        "last_reading": {
            "pollster": str(last["pollster"]),
            "question": str(last["question"]),
            "field_start": _date(last["field_start"]),
            "field_end": _date(last["field_end"]),
            "poll_id": str(last["poll_id"]),
            "cell_start": _date(time[last_cell]),
        },
        "curve": {"identification": identification, "question": design.questions[0]},
        "conditional_on": (
            f"the curve {identification}, asking {design.questions[0]}; "
            + (
                f"projected {how_far(days)} past the last reading's field end ({design.data_end:%Y-%m-%d})"
                if projected
                else "not projected"
            )
        ),
        "interval": interval,
        "draws": draws,
        "answers": {a: {"as_of": now[a], "last_reading": before[a]} for a in answers},
        "probabilities": probabilities,
        "changes": changes,
        "event_jumps": jumps,
        "caveats": caveats,
    }


def event_brackets(design: PollDesign) -> dict[str, dict[str, Any]]:
    """For each event, the readings on either side of its jump: what the data can tell of it.

    The jump acts from the event's grid cell on. The readings that end in an earlier cell and
    start in it or later pin the change across the event; how much of that change is the jump and
    how much the walk's own movement between them, the data cannot tell (the model's assumptions
    split it: :func:`event_caveat`).

    Returns
    -------
    dict
        Per event label: ``cell_start`` (the first cell of the jump), ``before`` and ``after``
        (the last reading wholly before the event's cell and the first wholly from it on:
        ``pollster``, ``field_start``, ``field_end``; None where there is none), ``days_between``
        (from the one's field end to the other's field start; None unless both exist) and
        ``spanning`` (how many readings' field periods cover cells on both sides).
    """
    polls = design.polls
    out = {}
    ends, starts = polls["field_end"].to_numpy(), polls["field_start"].to_numpy()
    for label, cell in zip(design.event_labels, design.event_cell):
        cell = int(cell)
        before = np.flatnonzero(design.last_cell < cell)
        after = np.flatnonzero(design.first_cell >= cell)
        spanning = int(np.sum((design.first_cell < cell) & (design.last_cell >= cell)))
        last = _reading(polls, before[ends[before].argmax()]) if before.size else None
        first = _reading(polls, after[starts[after].argmin()]) if after.size else None
        days = (
            int((pd.Timestamp(first["field_start"]) - pd.Timestamp(last["field_end"])).days)
            if last and first
            else None
        )
        out[label] = {
            "cell_start": _date(design.time[cell]),
            "before": last,
            "after": first,
            "days_between": days,
            "spanning": spanning,
        }
    return out


def _reading(polls: pd.DataFrame, i: int) -> dict[str, str]:
    return {
        "pollster": str(polls["pollster"].iloc[i]),
        "field_start": _date(polls["field_start"].iloc[i]),
        "field_end": _date(polls["field_end"].iloc[i]),
    }


def event_caveat(event: str, bracket: dict[str, Any], grid: str = "week") -> str:
    """What the data can tell of an event's jump, in words (:func:`event_brackets`; ``grid``: the
    grid's cell, "week").

    Within the walk's segment that holds the event, the model splits the segment's change between
    the jump and the walk's steps by their variances: the jump's prior scale against the walk's
    step size (estimated from the whole series) over the segment's cells. The readings around
    the event pin the change across it; only readings that span it tell anything of the split.
    """
    before, after = bracket["before"], bracket["after"]
    week = field_span(bracket["cell_start"], bracket["cell_start"])
    name = f"The jump at {event} (from the {grid} starting {week})"
    spanning = bracket["spanning"]
    across = (
        f"{spanning} reading{'s' if spanning != 1 else ''} whose field period spans it"
        if spanning
        else ""
    )
    if before is None or after is None:
        side = "before" if before is None else "after"
        told = f"; only {across} tells of it" if spanning else ""
        return (
            f"{name} has no reading wholly {side} it, so the data cannot tell it from the level "
            f"there{told}: it rests on the model's assumptions (the jump's prior scale)."
        )
    return (
        f"{name}: the data pin the change between the last reading before it ({before['pollster']}, "
        f"ending {field_span(before['field_end'], before['field_end'])}) and the first after it "
        f"({after['pollster']}, starting {field_span(after['field_start'], after['field_start'])}), "
        f"{bracket['days_between']} days apart"
        + (f", and {across}" if spanning else "")
        + ". How that change splits between the jump and the walk's ordinary movement is the "
        "model's assumption, not the data's: the jump's prior scale against the walk's step size "
        "(estimated from the whole series) over the days between them."
    )


def _grid_name(design: PollDesign) -> str:
    return {1.0: "day", 7.0: "week"}.get(design.cell_days, "month")


def averaged_over(design: PollDesign) -> str:
    """The period an effect in points is averaged over (the grid's cells of the readings' span,
    :attr:`~model.aggregator.design.PollDesign.readings_span`;
    :func:`model.results.summaries.effect_in_points`), in words: "averaged over the weeks from 30
    May 2022 to 23 Feb 2026, the readings' span, not the projection" (no brackets, as the
    phrase sits inside brackets in the summary and the report)."""
    start, end = design.time[design.first_data_cell], design.time[design.last_data_cell]
    projected = ", the readings' span, not the projection" if design.projected.any() else ""
    return f"averaged over the {_grid_name(design)}s from {start:%d %b %Y} to {end:%d %b %Y}{projected}"


def _pct(value: float) -> str:
    return f"{value:.0f}"


def format_probability(p: float) -> str:
    """A probability as text, to two decimals, and never 0 or 1: ``> 0.99`` and ``< 0.01`` at the ends,
    where a few thousand draws cannot tell further."""
    if p > 0.99:
        return "> 0.99"
    if p < 0.01:
        return "< 0.01"
    return f"{p:.2f}"


def field_span(start, end, dash: str = "-") -> str:
    """A field period in words: "18-25 Feb 2026", "30 Nov - 3 Dec 2025", "1 Jun 2022".

    Parameters
    ----------
    start, end : date-like
    dash : str
        The dash between the dates ("-" in plain text, "–" in figures and pages).
    """
    a, b = pd.Timestamp(start), pd.Timestamp(end)
    if a == b:
        return f"{a.day} {a:%b %Y}"
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day}{dash}{b.day} {b:%b %Y}"
    return f"{a.day} {a:%b %Y} {dash} {b.day} {b:%b %Y}"


def how_far(days: int) -> str:
    """A projection's length in words: "9 months (276 days)", or "40 days" under a month and a half."""
    if days < 1.5 * DAYS_PER_MONTH:
        return f"{days} day{'s' if days != 1 else ''}"
    months = round(days / DAYS_PER_MONTH)
    return f"{months} months ({days} days)"


def alike_houses(design: PollDesign) -> list[str]:
    """A caveat for each pair of fitted pollsters whose names are one letter apart
    (:func:`model.data.polls.alike_names`): likely one house spelt two ways, fitted as two."""
    counts = design.polls["pollster"].value_counts()

    def readings(name: str) -> str:
        return f"{counts[name]} reading{'' if counts[name] == 1 else 's'}"

    return [
        f"{a} ({readings(a)}) and {b} ({readings(b)}) are fitted as two houses, their names one "
        "letter apart: if they are one house, spell its name alike in the table."
        for a, b in alike_names(design.pollsters)
    ]


def signed_points(x: float) -> str:
    """A signed difference in points to one decimal, or as many more as it takes to show a
    non-zero value as non-zero: an interval's end just short of zero must not read as reaching
    it, nor a small negative median as "-0.0". Exactly zero is "+0.0"; a missing value "–"."""
    if pd.isna(x):
        return "–"
    if x == 0:
        return "+0.0"
    digits = 1
    while round(x, digits) == 0:
        digits += 1
    return f"{x:+.{digits}f}"


def signed_interval(median: float, lower: float, upper: float) -> str:
    """A signed median with its interval in points: ``"+3.9 [-1.3, +9.1]"`` (:func:`signed_points`)."""
    return f"{signed_points(median)} [{signed_points(lower)}, {signed_points(upper)}]"


def _points(value: float) -> str:
    text = signed_points(value)
    return f"{text} point{'' if text in ('+1.0', '-1.0') else 's'}"


def _unsplit_houses(design: PollDesign) -> str:
    """The houses of :attr:`~model.aggregator.design.PollDesign.level_from_priors` and why, in
    words: "A, whose house effect the data cannot tell apart from its own wording's"."""
    alone = design.level_from_priors
    return (
        f"{', '.join(alone)}, whose house effect{'s' if len(alone) > 1 else ''} the data cannot "
        f"tell apart from {'their' if len(alone) > 1 else 'its'} own wording's"
    )


def against_average_house(design: PollDesign) -> str:
    """Why differences from the curve rest partly on the priors, as a sentence ("" where they do not).

    With zero-sum house effects and a house the data identify only with its wording
    (:attr:`~model.aggregator.design.PollDesign.level_from_priors`), the summary and the report
    say this beside each house's difference from the curve and each house effect.
    """
    if not design.level_from_priors:
        return ""
    return (
        f"Each is measured against the average house, which includes {_unsplit_houses(design)}, "
        "so each rests partly on the priors (naming a reference house, house_effects = "
        "'<pollster>', measures them by the data)."
    )


def sentences(head: dict[str, Any]) -> list[str]:
    """The headline in plain words, first sentence first (the summary and the report open with them).

    Parameters
    ----------
    head : dict
        :func:`headline`'s result (or ``headline.json`` read back).

    Returns
    -------
    list of str
        Where the diagnostics gate failed (``head["gate"]``), first its warning that the numbers
        are not for publication (:func:`~model.results.diagnostics.gate_warning`), so no sentence
        is read without it; then the first answer's share on ``as_of`` with its interval, how far
        it is projected and what the curve is; every answer's share on ``as_of`` and at the last
        reading (one decimal); the probabilities; the first answer's changes and event jumps.
    """
    warning = gate_warning(head["gate"]) if "gate" in head else None
    answers = list(head["answers"])
    first = answers[0]
    width = round(100 * head["interval"])
    last = head["last_reading"]
    now = head["answers"][first]["as_of"]
    as_of = pd.Timestamp(head["as_of"])
    reading = f"{last['pollster']}, {field_span(last['field_start'], last['field_end'])}"
    if head["projected"]:
        where = (
            f"projected {how_far(head['days_past_last_reading'])} past the last reading ({reading})"
        )
    elif head["days_past_last_reading"] > 0:
        where = f"{how_far(head['days_past_last_reading'])} after the last reading ({reading}), in the same grid cell"
    else:
        where = f"the last reading's field end ({reading})"
    lines = [
        f"Support for {first} on {as_of:%d %b %Y}: {_pct(now['median'])}% ({width}% interval "
        f"{_pct(now['lower'])}-{_pct(now['upper'])}), {where}; the curve is {head['curve']['identification']}, "
        f"asking {head['curve']['question']}."
    ]
    on = f"{as_of:%d %b %Y}" + (" (projected)" if head["projected"] else "")
    parts = [
        f"{a} {v['as_of']['median']:.1f}% ({v['as_of']['lower']:.1f}-{v['as_of']['upper']:.1f})"
        for a, v in head["answers"].items()
    ]
    lines.append(f"On {on}: " + ", ".join(parts) + f" (medians, {width}% intervals).")
    if head["projected"]:
        parts = [
            f"{a} {v['last_reading']['median']:.1f}% ({v['last_reading']['lower']:.1f}-{v['last_reading']['upper']:.1f})"
            for a, v in head["answers"].items()
        ]
        lines.append(
            f"At the last reading ({pd.Timestamp(last['field_end']):%d %b %Y}): "
            + ", ".join(parts)
            + "."
        )
    for item in head["probabilities"]:
        lines.append(
            f"Probability that {item['statement']}: {format_probability(item['probability'])}."
        )
    for change in head["changes"]:
        if change["answer"] != first:
            continue
        lines.append(
            f"Change in {first} from {change['since']} ({pd.Timestamp(change['from_date']):%d %b %Y}) to {on}: "
            f"{_points(change['median'])} ({width}% interval {signed_points(change['lower'])} to "
            f"{signed_points(change['upper'])})."
        )
    for jump in head["event_jumps"]:
        if jump["answer"] != first:
            continue
        week = (
            f" ({head.get('grid', 'week')} starting {field_span(jump['cell_start'], jump['cell_start'])})"
            if jump.get("cell_start")
            else ""
        )
        lines.append(
            f"Jump in {first} at {jump['event']}{week}: {_points(jump['median'])} ({width}% interval "
            f"{signed_points(jump['lower'])} to {signed_points(jump['upper'])})."
        )
    return [warning, *lines] if warning else lines
