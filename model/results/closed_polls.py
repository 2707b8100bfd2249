"""Closed polls beside the public curve: what each leaked, commissioned reading says against it.

A closed poll (the ``closed`` column of the poll table, :func:`model.data.polls.closed_readings`) is
compared with the curve over its own field period, never with an average over the years:

- a closed reading in the fit: its house and question offset evaluated at its field period,
  ``softmax(trend + house + question) - softmax(trend)`` with the trend averaged over the cells
  the reading covers, per posterior draw (the model's estimate of how far that survey, with its
  wording, stands from the curve);
- a closed reading left out of the fit (another wording, or excluded): its published share minus
  the curve's share over its field period, per draw; that difference holds its wording's effect
  and its own sampling error as well, which the model did not estimate.

Whether a difference is identified apart from the wording follows the design: a house that asks
only a question nobody else asks forms a confounded pair, and its difference is the house and
the wording together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from model.aggregator.design import PollDesign, cell_of
from model.data.polls import closed_readings
from model.results.headline import signed_points
from model.results.summaries import (
    FieldPeriods,
    interval_of,
    offsets_at_readings,
    softmax_points,
)

#: Posterior probability from which every closed reading differing in one direction counts as a
#: systematic closed-poll gap (the same direction in all of them, jointly over the draws).
SYSTEMATIC_PROBABILITY = 0.95


def _identification(
    pollster: str, question: str, design: PollDesign, readings: int
) -> tuple[bool, str]:
    """Whether a fitted reading's house effect is identified apart from its wording, and why, in words.

    Parameters
    ----------
    pollster, question : str
        The reading's house and question.
    design : PollDesign
        The fit's design (:attr:`~model.aggregator.design.PollDesign.identified_only_with_wording`).
    readings : int
        Readings of this house and question in the fit.

    Returns
    -------
    (bool, str)
        Identified apart from the wording; the reason in words.
    """
    if (pollster, question) not in design.identified_only_with_wording:
        if pollster == design.reference_pollster and question == design.questions[0]:
            return True, "the reference house asking the reference question (the curve itself)"
        alone = design.level_from_priors
        return (
            True,
            f"apart from the wording: other readings link {pollster} and {question} to the reference"
            + (
                f", though the curve's level, the average house's, rests partly on the priors "
                f"(it includes {', '.join(alone)}, identified only together with the wording)"
                if alone
                else ""
            ),
        )
    if (pollster, question) in set(design.confounded):
        return False, (
            f"only together with the wording: {pollster} asks only {question}, which no other house asks in this fit, "
            f"so the difference is house and wording together (and, with {readings} reading{'s' if readings != 1 else ''}, "
            "that survey's own error)"
        )
    questions = next(qs for houses, qs in design.joint_groups if pollster in houses)
    return False, (
        f"only together with the wording: {pollster} and {', '.join(questions)} are linked to the reference by no "
        "reading, so the difference is house and wording together"
    )


def closed_polls(
    posterior: xr.Dataset,
    design: PollDesign,
    excluded: pd.DataFrame | None,
    *,
    interval: float,
    periods: FieldPeriods | None = None,
) -> pd.DataFrame:
    """One row per closed reading of the table (fitted or left out), against the curve at its field period.

    Parameters
    ----------
    posterior : xarray.Dataset
        ``share``, ``house_effect`` and ``question_effect`` draws.
    design : PollDesign
        The fit's design (readings used, grid, identification).
    excluded : pandas.DataFrame or None
        Readings of the table left out of the fit, with ``excluded_because``.
    interval : float
        Central interval width.
    periods : FieldPeriods, optional
        The posterior's field periods, when the caller has them.

    Returns
    -------
    pandas.DataFrame
        ``pollster``, ``question``, ``field_start``, ``field_end``, ``n``, ``in_fit``,
        ``excluded_because``, ``readings_of_pair`` (readings of this house and question in the fit);
        per answer ``a``: the published share ``a``, the curve over the field period
        ``curve_a`` (median) with ``curve_a_lower``/``curve_a_upper``, the difference
        ``difference_a`` (median) with ``difference_a_lower``/``difference_a_upper`` and
        ``p_difference_a_above_0``; then ``difference_is`` (what the difference measures),
        ``identified_apart_from_wording`` and ``identification`` (in words), ``src_rows``.
        Empty (with these columns) when the table marks no closed reading.
    """
    answers = [str(a) for a in posterior["share"]["answer"].values]
    columns = _columns(answers)
    polls = design.polls
    fitted = polls[closed_readings(polls).to_numpy()]
    left_out = pd.DataFrame()
    if excluded is not None and len(excluded) and "closed" in excluded:
        left_out = excluded[closed_readings(excluded).to_numpy()]
    if fitted.empty and left_out.empty:
        return pd.DataFrame(columns=columns)

    pair_counts = polls.groupby(["pollster", "question"]).size()
    periods = FieldPeriods(posterior) if periods is None else periods
    rows = []
    for i, reading in fitted.iterrows():
        curve, difference = (
            draws[:, :, 0, :] for draws in offsets_at_readings(posterior, design, [i], periods)
        )
        readings = int(pair_counts[(reading["pollster"], reading["question"])])
        separately, words = _identification(
            reading["pollster"], reading["question"], design, readings
        )
        rows.append(
            _row(
                reading,
                answers,
                curve,
                difference,
                interval,
                in_fit=True,
                excluded_because="",
                readings=readings,
                difference_is="the model's house + wording offset at this reading's field period",
                separately=separately,
                identification=words,
            )
        )
    for _, reading in left_out.iterrows():
        start, end = pd.Timestamp(reading["field_start"]), pd.Timestamp(reading["field_end"])
        published = np.array(
            [pd.to_numeric(reading.get(a), errors="coerce") for a in answers], dtype=float
        )
        outside = end < design.time[0] or start > design.through
        if outside:
            curve = np.full((1, 1, len(answers)), np.nan)
            what = f"outside the curve's span ({design.time[0]:%Y-%m-%d} to {design.through:%Y-%m-%d}): no comparison"
        else:
            first = max(int(cell_of(pd.DatetimeIndex([start]), design.time)[0]), 0)
            last = int(cell_of(pd.DatetimeIndex([min(end, design.through)]), design.time)[0])
            curve = softmax_points(periods.logits([first], [last])[:, :, 0, :])
            what = (
                "published share minus the curve over the field period (not estimated by the model: it holds the "
                f"wording's effect against {design.questions[0]} and the reading's own sampling error)"
            )
            if start < design.time[0] or end > design.through:
                what += f"; only the part of the field period inside the curve's span ({design.time[0]:%Y-%m-%d} to {design.through:%Y-%m-%d})"
            if end > design.data_end:
                what += f"; the curve after {design.data_end:%Y-%m-%d} is a projection, which no reading informs"
        difference = published[None, None, :] - curve
        rows.append(
            _row(
                reading,
                answers,
                curve,
                difference,
                interval,
                in_fit=False,
                excluded_because=str(reading.get("excluded_because", "")),
                readings=0,
                difference_is=what,
                separately=False,
                identification=f"not in the fit ({reading.get('excluded_because', '')}): nothing separates house, wording and sampling error",
            )
        )
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["field_start", "pollster", "question"], kind="stable").reset_index(
        drop=True
    )


def _columns(answers: list[str]) -> list[str]:
    per_answer = []
    for a in answers:
        per_answer += [
            a,
            f"curve_{a}",
            f"curve_{a}_lower",
            f"curve_{a}_upper",
            f"difference_{a}",
            f"difference_{a}_lower",
            f"difference_{a}_upper",
            f"p_difference_{a}_above_0",
        ]
    return [
        "pollster",
        "question",
        "field_start",
        "field_end",
        "n",
        "in_fit",
        "excluded_because",
        "readings_of_pair",
        *per_answer,
        "difference_is",
        "identified_apart_from_wording",
        "identification",
        "src_rows",
    ]


def _row(
    reading,
    answers,
    curve,
    difference,
    interval,
    *,
    in_fit,
    excluded_because,
    readings,
    difference_is,
    separately,
    identification,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "pollster": reading["pollster"],
        "question": reading["question"],
        "field_start": f"{pd.Timestamp(reading['field_start']):%Y-%m-%d}",
        "field_end": f"{pd.Timestamp(reading['field_end']):%Y-%m-%d}",
        "n": pd.to_numeric(reading.get("n"), errors="coerce"),
        "in_fit": in_fit,
        "excluded_because": excluded_because,
        "readings_of_pair": readings,
        "difference_is": difference_is,
        "identified_apart_from_wording": separately,
        "identification": identification,
        "src_rows": str(reading.get("src_rows", "")),
    }
    finite = np.isfinite(curve).all()
    curve_stats = interval_of(curve, interval) if finite else None
    for k, a in enumerate(answers):
        row[a] = pd.to_numeric(reading.get(a), errors="coerce")
        column = difference[:, :, k]
        usable = finite and np.isfinite(column).all()
        stats = interval_of(column, interval) if usable else None
        row[f"curve_{a}"] = float(curve_stats["median"][k]) if finite else np.nan
        row[f"curve_{a}_lower"] = float(curve_stats["lower"][k]) if finite else np.nan
        row[f"curve_{a}_upper"] = float(curve_stats["upper"][k]) if finite else np.nan
        row[f"difference_{a}"] = float(stats["median"]) if usable else np.nan
        row[f"difference_{a}_lower"] = float(stats["lower"]) if usable else np.nan
        row[f"difference_{a}_upper"] = float(stats["upper"]) if usable else np.nan
        row[f"p_difference_{a}_above_0"] = float(np.mean(column > 0)) if usable else np.nan
    return row


def systematic_gap(
    posterior: xr.Dataset, design: PollDesign, periods: FieldPeriods | None = None
) -> dict[str, Any]:
    """How strongly the posterior puts every fitted closed reading's difference on one side of zero.

    Only the answers every closed reading in the fit published count (a share a reading did not
    publish, such as the FSO's "undecided", is only the rest of the others, not a figure of that
    poll). For each, the probability (jointly over the draws) that the offsets of all closed
    readings in the fit are above zero, and that they are all below. The model has no closed-poll
    term: a closed reading's difference is its house and wording offset. So a systematic
    closed-poll gap is established only when (a) at least two closed readings are in the fit,
    (b) one of these probabilities is at least :data:`SYSTEMATIC_PROBABILITY`, and (c) not every
    closed reading's house is identified only together with its wording (if every closed house
    asks a wording no other house asks, being closed cannot be told apart from house and wording,
    whatever the probabilities), and (d) the curve's level is fixed by the data
    (:attr:`~model.aggregator.design.PollDesign.level_from_priors` is empty: with zero-sum houses,
    one known only with its wording leaves every difference from the curve partly to the priors).

    Parameters
    ----------
    posterior : xarray.Dataset
        ``share``, ``house_effect`` and ``question_effect`` draws.
    design : PollDesign
        The fit's design; its readings' ``closed`` column marks the closed polls.
    periods : FieldPeriods, optional
        The posterior's field periods, when the caller has them.

    Returns
    -------
    dict
        ``readings`` (count), ``answers`` (the published answers compared), ``by_answer`` (answer ->
        ``{"all_above": p, "all_below": p}``), ``best`` (answer, direction, probability, or None),
        ``separable`` (some closed house is identified apart from its wording), ``level_from_priors``
        (the houses that leave the curve's level to the priors) and ``established``.
    """
    polls = design.polls
    idx = np.flatnonzero(closed_readings(polls).to_numpy())
    answers = [str(a) for a in posterior["share"]["answer"].values]
    published = [a for a in answers if idx.size and polls[a].iloc[idx].notna().all()]
    separable = any(
        (polls["pollster"].iloc[i], polls["question"].iloc[i])
        not in design.identified_only_with_wording
        for i in idx
    )
    out: dict[str, Any] = {
        "readings": int(idx.size),
        "answers": published,
        "by_answer": {},
        "best": None,
        "separable": bool(separable),
        "level_from_priors": list(design.level_from_priors),
        "established": False,
    }
    if idx.size == 0 or not published:
        return out
    difference = offsets_at_readings(posterior, design, idx, periods)[1]
    best = None
    for a in published:
        k = answers.index(a)
        above = float(np.mean((difference[:, :, :, k] > 0).all(axis=2)))
        below = float(np.mean((difference[:, :, :, k] < 0).all(axis=2)))
        out["by_answer"][a] = {"all_above": above, "all_below": below}
        for direction, p in (("above", above), ("below", below)):
            if best is None or p > best[2]:
                best = (a, direction, p)
    out["best"] = best
    out["established"] = bool(
        idx.size >= 2
        and best[2] >= SYSTEMATIC_PROBABILITY
        and separable
        and not design.level_from_priors
    )
    return out


def conclusion(table: pd.DataFrame, gap: dict[str, Any], *, reference: str, interval: float) -> str:
    """What can and cannot be concluded about closed vs public polls, in a few sentences.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`closed_polls`.
    gap : dict
        :func:`systematic_gap`.
    reference : str
        What the curve is (e.g. "the curve (as Levada Center would measure it, asking ...)").
    interval : float
        The width of the intervals in ``table``.
    """
    if table.empty:
        return (
            "The table marks no closed poll, so there is nothing to compare with the public curve."
        )
    width = f"{round(100 * interval)}%"
    answers = [
        c[len("curve_") :]
        for c in table.columns
        if c.startswith("curve_") and not c.endswith(("_lower", "_upper"))
    ]
    fitted = table[table["in_fit"].astype(bool)]
    left = len(table) - len(fitted)
    outside = (
        f" {left} closed reading{'s' if left != 1 else ''} outside the fit (other wordings, or excluded) "
        f"{'are' if left != 1 else 'is'} compared only as published minus the curve, which mixes wording and sampling error; "
        f"{'their' if left != 1 else 'its'} intervals hold the curve's uncertainty alone, not that error."
        if left
        else ""
    )
    if fitted.empty:
        return (
            "No closed poll is in the fit, so the model estimates no closed-poll difference."
            + outside
        )
    clauses = []
    for _, r in fitted.iterrows():
        name = f"{r['pollster']} {pd.Timestamp(r['field_start']):%b %Y}"
        clear = [
            f"{a} {signed_points(r[f'difference_{a}'])} points ({width} interval "
            f"{signed_points(r[f'difference_{a}_lower'])} to {signed_points(r[f'difference_{a}_upper'])})"
            for a in answers
            if not pd.isna(r[a])
            and (r[f"difference_{a}_lower"] > 0 or r[f"difference_{a}_upper"] < 0)
        ]
        if clear:
            clauses.append(f"{name} differs in " + " and ".join(clear))
        else:
            clauses.append(
                f"{name} differs in no published share (each difference's {width} interval includes zero)"
            )
    sentences = [f"Against {reference}: " + "; ".join(clauses) + "."]
    if gap["readings"] < 2:
        sentences.append(
            "One closed reading cannot establish a systematic gap between closed and public polls."
        )
    elif gap["best"] is None:
        sentences.append(
            "The closed readings share no published answer, so no systematic gap can be assessed."
        )
    else:
        answer, direction, p = gap["best"]
        both = "both" if gap["readings"] == 2 else f"all {gap['readings']}"
        agreement = (
            f"the posterior puts the {answer} difference of {both} closed readings in the fit "
            f"{direction} zero with probability {p:.2f} "
            f"(the strongest agreement over the answers they all published, {', '.join(gap['answers'])})"
        )
        if gap["established"]:
            sentences.append(f"A systematic closed-poll gap is established: {agreement}.")
        elif p < SYSTEMATIC_PROBABILITY:
            sentences.append(
                f"A systematic closed-poll gap is not established: {agreement}; {SYSTEMATIC_PROBABILITY} would be needed."
            )
        else:
            sentences.append(
                f"The closed readings agree in direction ({agreement}), but that does not establish a closed-poll gap."
            )
    if gap.get("level_from_priors"):
        sentences.append(
            "Every difference here is measured against the average house, which includes "
            f"{', '.join(gap['level_from_priors'])}, known only together with "
            f"{'their' if len(gap['level_from_priors']) > 1 else 'its'} wording: the average rests "
            "partly on the priors, so no gap is established against it (naming a reference house, "
            "house_effects = '<pollster>', measures it by the data)."
        )
    if not gap["separable"]:
        sentences.append(
            "Each closed house asks only a wording no other house asks, so the data cannot tell being closed from the "
            "house's and the wording's effects: what differs is that house asking that question."
        )
    return " ".join(sentences) + outside
