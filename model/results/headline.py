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
    if "jump" in posterior:
        from model.results.summaries import event_jumps

        table = event_jumps(posterior, list(design.event_cell), interval)
        dates = dict(zip(design.event_labels, [_date(time[int(c)]) for c in design.event_cell]))
        for _, row in table.iterrows():
            jumps.append(
                {
                    "event": row["event"],
                    "cell_start": dates.get(row["event"]),
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


def _grid_name(design: PollDesign) -> str:
    return {1.0: "day", 7.0: "week"}.get(design.cell_days, "month")


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


def _points(value: float) -> str:
    return f"{value:+.0f} point{'' if round(abs(value)) == 1 else 's'}"


def sentences(head: dict[str, Any]) -> list[str]:
    """The headline in plain words, first sentence first (the summary and the report open with them).

    Parameters
    ----------
    head : dict
        :func:`headline`'s result (or ``headline.json`` read back).

    Returns
    -------
    list of str
        The first answer's share on ``as_of`` with its interval, how far it is projected and what
        the curve is; every answer's share on ``as_of`` and at the last reading (one decimal); the
        probabilities; the first answer's changes and event jumps.
    """
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
            f"{_points(change['median'])} ({width}% interval {change['lower']:+.0f} to {change['upper']:+.0f})."
        )
    for jump in head["event_jumps"]:
        if jump["answer"] != first:
            continue
        lines.append(
            f"Jump in {first} at {jump['event']}: {jump['median']:+.1f} points ({width}% interval "
            f"{jump['lower']:+.1f} to {jump['upper']:+.1f})."
        )
    return lines
