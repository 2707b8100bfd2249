"""Figures of a fit: the support curve, what the pooling did, house and question effects, diagnostics.

Every ``plot_*`` function takes a :class:`model.FitResult` and returns matplotlib figure(s), so a
user can restyle or save them::

    result = model.load_run("runs/latest")
    fig = plots.plot_support(result, answer="talks")
    fig.axes[0].set_ylim(30, 70)
    fig.savefig("talks.png")

The figures use the Okabe-Ito palette (readable by colour-blind readers) and add a second,
colour-free cue wherever colour carries meaning: marker shape (question family, effect vs. identified
sum), fill (sample size unknown), line style (MCMC chains, energy distributions) or grey bands
(posterior intervals), so they also read in greyscale. Dates use matplotlib's concise formatter;
every figure uses the constrained layout.

The diagnostic figures (:func:`plot_rank`, :func:`plot_energy`, :func:`plot_ppc`) are drawn with
ArviZ (``arviz.plot_rank``, ``arviz.plot_energy``, ``arviz.plot_ppc_interval``, arviz-plots with
the matplotlib backend).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from model.data.polls import read_csv_text, reading_midpoints
from model.files import atomic_write
from model.results.headline import (
    PROJECTION_RULE,
    against_average_house,
    averaged_over,
    field_span,
)

if TYPE_CHECKING:
    from model.results.fit_result import FitResult

#: Okabe & Ito (2008) colour-blind-safe palette, ordered so that the first three differ clearly in
#: lightness too (blue L* 46, orange 71, black 0) and stay apart in greyscale.
OKABE_ITO = ("#0072B2", "#E69F00", "#000000", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442")
#: One marker shape per question family, in order of first appearance.
FAMILY_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
#: Line styles of MCMC chains (with the colours above), so chains differ in greyscale too.
CHAIN_LINESTYLES = ("-", "--", ":", "-.")
#: The posterior curve: median line and interval bands (the widest band palest).
CURVE_COLOUR = "#000000"
BAND_GREYS = ("0.85", "0.62")
#: Opacity of the bands past the last reading (the projection is drawn paler, its median dashed).
PROJECTED_ALPHA = 0.45
EVENT_COLOUR = "0.25"
#: Marker area (points^2) per respondent, and the area of a reading whose n is unknown.
AREA_PER_RESPONDENT = 0.05
UNKNOWN_N_AREA = 60.0
#: Names of the figures :func:`make_figures` draws; the support curve is also written as SVG.
FIGURE_NAMES = (
    "support_curve",
    "adjusted",
    "house_effects",
    "question_effects",
    "rank",
    "energy",
    "ppc",
)
SVG_FIGURES = ("support_curve",)
#: The article chart (:func:`plot_headline`): 1200 x 675 pixels (16:9), as PNG at 96 dpi and as SVG
#: (900 x 506.25 pt, which is 1200 x 675 CSS pixels).
HEADLINE_NAME = "headline"
HEADLINE_PIXELS = (1200, 675)
HEADLINE_DPI = 96
#: What the article chart's source line names as the model's author when the caller does not say.
DEFAULT_CREDIT = "this project"
#: The question codebook's columns that say what a question asks and what its answers count as.
WORDING_COLUMNS = ("wording", "talks_means", "continue_means")


# -- shared pieces -------------------------------------------------------------------------------
def question_families(questions: str | Path | Mapping[str, str] | None = None) -> dict[str, str]:
    """Question id -> question family, from the question codebook.

    Parameters
    ----------
    questions : path, mapping or None
        A ``questions.csv`` with columns ``question_id`` and ``family`` (the project's is
        ``data/questions.csv``), or a ready mapping. A missing file, a codebook without
        ``family`` (or a blank family) or None gives an empty mapping (that id's): callers then use
        each question id as its own family.

    Returns
    -------
    dict of str to str

    Raises
    ------
    model.data.polls.PollDataError
        The file is not a CSV table in UTF-8, or lacks ``question_id``.
    """
    if isinstance(questions, Mapping):
        return {str(k): str(v) for k, v in questions.items()}
    table = _codebook(questions)
    if table is None or "family" not in table.columns:
        return {}
    return {q: f for q, f in zip(table["question_id"], table["family"]) if f}


def question_wordings(
    questions: str | Path | Mapping[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """Question id -> what it asks: its ``wording`` and what counts as ``talks`` and ``continue``.

    Parameters
    ----------
    questions : path, mapping or None
        A ``questions.csv`` with columns ``question_id`` and :data:`WORDING_COLUMNS` (the
        project's is ``data/questions.csv``). A mapping (families only), a missing file, a
        codebook without the wording columns or None gives an empty mapping.

    Returns
    -------
    dict of str to dict of str to str

    Raises
    ------
    model.data.polls.PollDataError
        The file is not a CSV table in UTF-8, or lacks ``question_id``.
    """
    if isinstance(questions, Mapping):
        return {}
    table = _codebook(questions)
    if table is None or not set(WORDING_COLUMNS) <= set(table.columns):
        return {}
    return {
        row["question_id"]: {c: row[c] for c in WORDING_COLUMNS} for row in table.to_dict("records")
    }


def _codebook(questions: str | Path | None) -> pd.DataFrame | None:
    """The question codebook's table (every cell a string), or None where there is no file.

    Raises
    ------
    PollDataError
        The file is not a CSV table in UTF-8 (naming the row), or has no ``question_id`` column:
        it is not a question codebook, and a report must not quietly go without the one it was
        given.
    """
    if questions is None or not Path(questions).is_file():
        return None
    return read_csv_text(
        questions, required=["question_id"], kind="a question codebook (data/questions.csv)"
    )


def family_of(
    result: FitResult, questions: str | Path | Mapping[str, str] | None = None
) -> pd.Series:
    """Question family of each reading of ``result.polls`` (the question id where unknown)."""
    families = question_families(questions)
    return result.polls["question"].map(lambda q: families.get(q, q))


def house_colours(result: FitResult) -> dict[str, str]:
    """Pollster -> colour, in the posterior's pollster order (the reference house first)."""
    names = [str(p) for p in result.posterior["house_effect"].coords["pollster"].values]
    names += [p for p in result.polls["pollster"].unique() if p not in names]
    return {p: OKABE_ITO[i % len(OKABE_ITO)] for i, p in enumerate(names)}


def family_markers(families: pd.Series) -> dict[str, str]:
    """Question family -> marker shape, in order of first appearance."""
    return {f: FAMILY_MARKERS[i % len(FAMILY_MARKERS)] for i, f in enumerate(pd.unique(families))}


def default_run_id(result: FitResult) -> str:
    """A name for a fit that has no run folder: creation time and config hash."""
    attrs = result.idata.attrs
    return f"{attrs.get('created', 'unsaved fit')} (config {attrs.get('config_hash', result.config.hash())})"


def _answers(result: FitResult, answer: str | None) -> list[str]:
    answers = list(result.config.answers)
    if answer is None:
        return answers
    if answer not in answers:
        raise ValueError(f"answer {answer!r} is not one of the fitted answers {answers}")
    return [answer]


def _as_dates(values) -> np.ndarray:
    return pd.DatetimeIndex(values).to_numpy(dtype="datetime64[s]")


def date_axis(ax) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def add_caption(fig: Figure, text: str, width: int = 160) -> None:
    """A left-aligned caption under the panels (constrained layout keeps room for it)."""
    fig.supxlabel("\n".join(textwrap.wrap(text, width)), x=0.01, ha="left", fontsize=8, color="0.2")


def _pct(value: float) -> str:
    return f"{value:.1f}"


def _interval_label(interval: float) -> str:
    return f"{round(100 * interval)}%"


def _latest_title(result: FitResult, interval: float, answers: list[str]) -> str:
    last = result.latest_estimate(interval)
    through = result.design.through
    when = {
        "day": f"{through:%d %b %Y}",
        "week": f"{through:%d %b %Y}",
        "month": f"{through:%b %Y}",
    }[result.config.grid]
    parts = [
        f"{row['answer']} {_pct(row['median'])}% [{_pct(row['lower'])}–{_pct(row['upper'])}]"
        for _, row in last.iterrows()
        if row["answer"] in answers
    ]
    if bool(last["projected"].iloc[0]):
        from model.results.headline import how_far

        days = int((through - result.design.data_end).days)
        what = f"Estimate for {when}, projected {how_far(days)} past the last reading ({_interval_label(interval)} intervals)"
    else:
        what = f"Latest estimate ({when}, {_interval_label(interval)} intervals)"
    return what + "\n" + " · ".join(parts)


def _band_greys(bands: Mapping[float, pd.DataFrame]) -> dict[float, str]:
    """Interval width -> grey, the widest palest."""
    return dict(zip(sorted(bands, reverse=True), BAND_GREYS))


def split_projection(part: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The curve where readings inform it, and the projected stretch after them (starting at the
    last informed cell, so the two pieces join)."""
    projected = (
        part["projected"].to_numpy(dtype=bool)
        if "projected" in part
        else np.zeros(len(part), dtype=bool)
    )
    if not projected.any():
        return part, part.iloc[:0]
    first = int(np.argmax(projected))
    return part.iloc[:first], part.iloc[max(first - 1, 0) :]


def _draw_curve(
    ax,
    answer: str,
    bands: dict[float, pd.DataFrame],
    *,
    data_end: pd.Timestamp | None = None,
    label: bool = False,
) -> None:
    """Posterior median and interval bands of one answer (the widest band first).

    The projected stretch (cells after the last reading, ``projected`` in the curve) is drawn
    apart: paler bands (``gid="projected_band<width>"``) and a dashed median
    (``gid="projected_median"``); with ``label``, a note "projection: no reading since <date>".
    """
    greys = _band_greys(bands)
    for interval in sorted(bands, reverse=True):
        part = bands[interval]
        _draw_band(ax, part[part["answer"] == answer], interval, colour=greys[interval])
    part = next(iter(bands.values()))
    ahead = _draw_median(
        ax, part[part["answer"] == answer], colour=CURVE_COLOUR, width=1.8, zorder=2
    )
    if len(ahead):
        if label and data_end is not None:
            ax.annotate(
                projection_label(data_end).replace(": ", ":\n", 1),
                xy=(_as_dates(ahead["date"].iloc[-1:])[0], 0.97),
                xycoords=("data", "axes fraction"),
                xytext=(0, 0),
                textcoords="offset points",
                ha="right",
                va="top",
                fontsize=8,
                color="0.25",
                bbox={
                    "boxstyle": "round,pad=0.2",
                    "facecolor": "white",
                    "edgecolor": "none",
                    "alpha": 0.8,
                },
                gid="projection_label",
            )


def _draw_band(
    ax, rows: pd.DataFrame, interval: float, *, colour, alpha: float | None = None
) -> None:
    """One answer's interval band (``gid="band<width>"``), its projected stretch paler apart
    (``gid="projected_band<width>"``, drawn only when there is one)."""
    data, ahead = split_projection(rows)
    width = round(100 * interval)
    projected_alpha = (1.0 if alpha is None else alpha) * PROJECTED_ALPHA
    for piece, piece_alpha, gid in (
        (data, alpha, f"band{width}"),
        (ahead, projected_alpha, f"projected_band{width}"),
    ):
        if piece is data or len(piece):  # the observed band always (tests find it by gid)
            ax.fill_between(
                _as_dates(piece["date"]),
                piece["lower"],
                piece["upper"],
                color=colour,
                alpha=piece_alpha,
                linewidth=0,
                zorder=1,
                gid=gid,
            )


def _draw_median(
    ax, part: pd.DataFrame, *, colour: str, width: float, zorder: float
) -> pd.DataFrame:
    """The median of one answer's curve: solid where readings inform it (``gid="median"``), dashed
    and a little thinner past the last reading (``gid="projected_median"``). Returns the projected
    part (empty when there is none)."""
    data, ahead = split_projection(part)
    ax.plot(
        _as_dates(data["date"]),
        data["median"],
        color=colour,
        linewidth=width,
        zorder=zorder,
        gid="median",
    )
    if len(ahead):
        ax.plot(
            _as_dates(ahead["date"]),
            ahead["median"],
            color=colour,
            linewidth=width - 0.2,
            linestyle="--",
            zorder=zorder,
            gid="projected_median",
        )
    return ahead


def projection_label(data_end: pd.Timestamp) -> str:
    """The words marking a projected stretch."""
    return f"projection: no reading since {pd.Timestamp(data_end):%d %b %Y}"


def _draw_events(ax, result: FitResult, *, label: bool) -> None:
    for event in result.config.events:
        when = _as_dates([event.date])[0]
        ax.axvline(when, color=EVENT_COLOUR, linestyle="--", linewidth=1, zorder=1.5, gid="event")
        if label:
            ax.annotate(
                event.label,
                xy=(when, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize=8,
                color=EVENT_COLOUR,
                bbox={
                    "boxstyle": "round,pad=0.2",
                    "facecolor": "white",
                    "edgecolor": "none",
                    "alpha": 0.8,
                },
                gid="event_label",
            )


def _band_handles(bands: dict[float, pd.DataFrame]) -> list:
    handles = [Line2D([], [], color=CURVE_COLOUR, linewidth=1.8, label="posterior median")]
    for interval, grey in sorted(_band_greys(bands).items()):
        handles.append(
            Patch(facecolor=grey, edgecolor="none", label=f"{_interval_label(interval)} interval")
        )
    if any(frame["projected"].any() for frame in bands.values() if "projected" in frame):
        handles.append(
            Line2D(
                [],
                [],
                color=CURVE_COLOUR,
                linewidth=1.6,
                linestyle="--",
                label="projection (no readings; paler bands)",
            )
        )
    return handles


def _heading(text: str) -> Line2D:
    """An invisible legend entry used as a section heading inside one legend."""
    return Line2D([], [], linestyle="none", marker="none", label=text)


def _legend(fig: Figure, handles: list) -> None:
    legend = fig.legend(
        handles=handles, loc="outside right upper", fontsize=8, frameon=False, handlelength=1.6
    )
    for text, handle in zip(legend.get_texts(), handles):
        if (
            isinstance(handle, Line2D)
            and handle.get_marker() in ("none", "None", None)
            and handle.get_linestyle() in ("none", "None")
        ):
            text.set_fontweight("bold")


def _size_examples(n: pd.Series) -> list[int]:
    known = n.dropna()
    if known.empty:
        return []
    lo, hi = float(known.min()), float(known.max())
    values = sorted({int(round(v, -2)) or 100 for v in (lo, hi)})
    return values


# -- support curve -------------------------------------------------------------------------------
def plot_support(
    result: FitResult,
    *,
    answer: str | None = None,
    questions: str | Path | Mapping[str, str] | None = None,
    run_id: str | None = None,
    intervals: tuple[float, float] = (0.5, 0.9),
) -> Figure:
    """The support curve with the readings it pools.

    One panel per answer (or ``answer`` alone): the posterior median and two central intervals of
    the curve over time, the published readings as points (colour: pollster; shape: question
    family; area: sample size; hollow: sample size not published), configured events as dashed
    lines. The title gives the latest estimate; the caption gives the run, the date of the latest
    data and how the curve's level is identified.

    Parameters
    ----------
    result : FitResult
    answer : str, optional
        Draw this answer only (default: every answer, one panel each).
    questions : path, mapping or None
        Question codebook giving each question's family (the project's ``data/questions.csv``); the
        question id stands in for an unknown family.
    run_id : str, optional
        Name of the run shown in the caption (default: creation time and config hash).
    intervals : tuple of float
        The two band widths (default 50% and 90%); the title quotes the wider one.

    Returns
    -------
    matplotlib.figure.Figure
        Reading markers carry ``gid="readings"``; the median line ``gid="median"``.

    Raises
    ------
    ValueError
        If ``answer`` is not a fitted answer.
    """
    answers = _answers(result, answer)
    polls = result.polls
    families = family_of(result, questions)
    markers = family_markers(families)
    colours = house_colours(result)
    bands = {interval: result.support_curve(interval) for interval in sorted(intervals)}
    when = _as_dates(reading_midpoints(polls))
    known = polls["n"].notna().to_numpy()

    fig = plt.figure(figsize=(12, 1.2 + 3.1 * len(answers)), layout="constrained")
    axes = fig.subplots(len(answers), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, answers):
        _draw_curve(ax, name, bands, data_end=result.design.data_end, label=True)
        _draw_events(ax, result, label=True)
        reported = polls[name].notna().to_numpy()
        for (pollster, family, is_known), idx in polls.groupby(
            [polls["pollster"], families, known]
        ).indices.items():
            idx = idx[reported[idx]]
            if idx.size == 0:
                continue
            colour = colours[pollster]
            if is_known:
                sizes = AREA_PER_RESPONDENT * polls["n"].to_numpy()[idx]
                style = {"facecolors": colour, "edgecolors": "black", "linewidths": 0.5}
            else:
                sizes = np.full(idx.size, UNKNOWN_N_AREA)
                style = {"facecolors": "none", "edgecolors": colour, "linewidths": 1.6}
            ax.scatter(
                when[idx],
                polls[name].to_numpy()[idx],
                s=sizes,
                marker=markers[family],
                alpha=0.9,
                zorder=3,
                gid="readings",
                **style,
            )
        ax.set_title(name, loc="left", fontsize=11, fontweight="bold")
        ax.set_ylabel(f"{name} (% of respondents)")
        ax.grid(axis="y", color="0.9", linewidth=0.8)
        date_axis(ax)
    axes[-1].set_xlabel("date (readings at the middle of their field period)")

    outer = max(intervals)
    fig.suptitle(_latest_title(result, outer, answers), x=0.01, ha="left", fontsize=12)
    handles = [_heading("Curve"), *_band_handles(bands)]
    if result.config.events:
        handles.append(
            Line2D([], [], color=EVENT_COLOUR, linestyle="--", linewidth=1, label="event")
        )
    handles.append(_heading("Pollster (colour)"))
    handles += [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=8,
            markerfacecolor=c,
            markeredgecolor="black",
            markeredgewidth=0.5,
            label=p,
        )
        for p, c in colours.items()
        if p in set(polls["pollster"])
    ]
    handles.append(_heading("Question family (shape)"))
    handles += [
        Line2D(
            [],
            [],
            linestyle="none",
            marker=m,
            markersize=8,
            markerfacecolor="0.5",
            markeredgecolor="black",
            markeredgewidth=0.5,
            label=f,
        )
        for f, m in markers.items()
    ]
    handles.append(_heading("Sample size (area)"))
    handles += [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=np.sqrt(AREA_PER_RESPONDENT * v),
            markerfacecolor="0.5",
            markeredgecolor="black",
            markeredgewidth=0.5,
            label=f"n = {v:,}",
        )
        for v in _size_examples(polls["n"])
    ]
    if (~known).any():
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markersize=np.sqrt(UNKNOWN_N_AREA),
                markerfacecolor="none",
                markeredgecolor="0.3",
                markeredgewidth=1.6,
                label="n not published (hollow)",
            )
        )
    _legend(fig, handles)
    add_caption(
        fig,
        f"Run {run_id or default_run_id(result)}. Data to {result.design.data_end:%d %b %Y} (latest field end; "
        f"{len(polls)} readings, {polls['pollster'].nunique()} pollsters). Curve: {result.identification}, asking "
        f"{result.reference_question}; line: posterior median; bands: "
        f"{' and '.join(_interval_label(i) for i in sorted(intervals))} intervals"
        + (
            f"; dashed line and paler bands after {result.design.data_end:%d %b %Y}: projection, "
            f"{PROJECTION_RULE[result.trend][1]}"
            if result.design.projected.any()
            else ""
        )
        + ". Points: the published shares, not adjusted for house or question effects (see the adjusted figure).",
    )
    return fig


# -- what the pooling did ------------------------------------------------------------------------
def _rms(values: pd.Series) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else float("nan")


def plot_adjusted(
    result: FitResult,
    *,
    answer: str | None = None,
    questions: str | Path | Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> Figure:
    """Readings as published beside the same readings adjusted for house and question effects.

    Left column: the published shares around the curve. Right column: each share minus its
    pollster-and-question offset (see :func:`adjusted_readings`). Each panel states the
    root-mean-square distance of its points from the curve, so a reader sees how much of the
    readings' spread the house and question effects explain.

    Parameters
    ----------
    result : FitResult
    answer : str, optional
        Draw this answer only (default: every answer, one row each).
    questions : path, mapping or None
        Question codebook giving each question's family (marker shape).
    run_id : str, optional
        Name of the run shown in the caption.

    Returns
    -------
    matplotlib.figure.Figure
        Reading markers carry ``gid="readings"``.
    """
    answers = _answers(result, answer)
    table = result.adjusted_readings()
    families_by_question = dict(zip(result.polls["question"], family_of(result, questions)))
    markers = family_markers(pd.Series(list(families_by_question.values())))
    colours = house_colours(result)
    bands = {result.config.interval: result.support_curve()}
    reference = result.curve_house

    fig = plt.figure(figsize=(13, 1.4 + 3.0 * len(answers)), layout="constrained")
    axes = fig.subplots(len(answers), 2, sharex=True, sharey="row", squeeze=False)
    for row, name in enumerate(answers):
        part = table[table["answer"] == name]
        for col, column in enumerate(("raw", "adjusted")):
            ax = axes[row, col]
            _draw_curve(
                ax, name, bands, data_end=result.design.data_end, label=row == 0 and col == 0
            )
            _draw_events(ax, result, label=False)
            for (pollster, question), group in part.groupby(["pollster", "question"], sort=False):
                ax.scatter(
                    _as_dates(group["midpoint"]),
                    group[column],
                    s=36,
                    marker=markers[families_by_question[question]],
                    facecolors=colours[pollster],
                    edgecolors="black",
                    linewidths=0.5,
                    alpha=0.9,
                    zorder=3,
                    gid="readings",
                )
            distance = _rms(part[column] - part["curve"])
            heading = (
                "As published"
                if column == "raw"
                else f"Adjusted to {reference} asking {result.reference_question}"
            )
            spread = (
                f"{name}: RMS distance from the curve {distance:.1f} points ({len(part)} readings)"
            )
            ax.set_title(f"{heading}\n{spread}" if row == 0 else spread, loc="left", fontsize=9)
            ax.grid(axis="y", color="0.9", linewidth=0.8)
            date_axis(ax)
        axes[row, 0].set_ylabel(f"{name} (%)")
    for ax in axes[-1]:
        ax.set_xlabel("date (middle of the field period)")
    fig.suptitle(
        "What the pooling did: readings before and after removing house and question effects",
        fontsize=12,
    )
    handles = [_heading("Curve"), *_band_handles(bands)]
    if result.config.events:
        handles.append(
            Line2D(
                [],
                [],
                color=EVENT_COLOUR,
                linestyle="--",
                linewidth=1,
                label="event (" + "; ".join(e.label for e in result.config.events) + ")",
            )
        )
    handles.append(_heading("Pollster (colour)"))
    handles += [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=7,
            markerfacecolor=c,
            markeredgecolor="black",
            markeredgewidth=0.5,
            label=p,
        )
        for p, c in colours.items()
        if p in set(table["pollster"])
    ]
    handles.append(_heading("Question family (shape)"))
    handles += [
        Line2D(
            [],
            [],
            linestyle="none",
            marker=m,
            markersize=7,
            markerfacecolor="0.5",
            markeredgecolor="black",
            markeredgewidth=0.5,
            label=f,
        )
        for f, m in markers.items()
    ]
    _legend(fig, handles)
    add_caption(
        fig,
        f"Run {run_id or default_run_id(result)}. Adjusted share = published share minus the posterior mean of the "
        "reading's house + question offset (percentage points at that house and wording's own readings, so the adjustment is "
        f"approximate where shares moved far). The curve is {result.identification}. Points nearer the curve after "
        "adjustment: the house and question effects explain that part of the spread; what remains is sampling and "
        "non-sampling error.",
    )
    return fig


# -- house and question effects ------------------------------------------------------------------
def _forest(ax, rows: pd.DataFrame, answer: str) -> None:
    """One answer's effects as a forest: point at the median, line over the interval."""
    part = rows[rows["answer"] == answer].reset_index(drop=True)
    y = np.arange(len(part))[::-1]
    ax.axvline(0, color="0.55", linewidth=0.8, linestyle=":", zorder=0)
    for yi, (_, row) in zip(y, part.iterrows()):
        if row["kind"] == "reference":
            ax.plot(
                [0],
                [yi],
                linestyle="none",
                marker="D",
                markersize=8,
                markerfacecolor="white",
                markeredgecolor=row["colour"],
                markeredgewidth=1.6,
                gid="reference",
            )
            continue
        marker = "s" if row["kind"] == "offset" else "o"
        ax.plot(
            [row["lower"], row["upper"]],
            [yi, yi],
            color=row["colour"],
            linewidth=2.2,
            solid_capstyle="butt",
            gid="interval",
        )
        ax.plot(
            [row["median"]],
            [yi],
            linestyle="none",
            marker=marker,
            markersize=7,
            markerfacecolor=row["colour"],
            markeredgecolor="black",
            markeredgewidth=0.6,
            gid=row["kind"],
        )
    ax.set_yticks(y, part["label"])
    ax.set_ylim(-0.7, len(part) - 0.3)
    ax.set_title(answer, fontsize=11, fontweight="bold")
    ax.set_xlabel("percentage points")
    ax.grid(axis="x", color="0.92", linewidth=0.8)


def _forest_figure(
    result: FitResult, rows: pd.DataFrame, title: str, caption: str, *, has_offsets: bool
) -> Figure:
    answers = list(result.config.answers)
    n_rows = rows["label"].nunique()
    fig = plt.figure(figsize=(13, 1.8 + 0.42 * n_rows), layout="constrained")
    axes = fig.subplots(1, len(answers), sharey=True, squeeze=False)[0]
    for ax, answer in zip(axes, answers):
        _forest(ax, rows, answer)
    fig.suptitle(title, fontsize=12)
    handles = [
        Line2D(
            [],
            [],
            linestyle="-",
            marker="o",
            color="0.4",
            markerfacecolor="0.4",
            markeredgecolor="black",
            label="effect, median and interval",
        ),
    ]
    if (rows["kind"] == "reference").any():
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="D",
                markerfacecolor="white",
                markeredgecolor="0.3",
                markeredgewidth=1.6,
                label="reference (fixed at 0)",
            )
        )
    if has_offsets:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="-",
                marker="s",
                color="0.4",
                markerfacecolor="0.4",
                markeredgecolor="black",
                label="house + question (their sum)"
                if result.design.level_from_priors  # zero-sum houses, the level from the priors
                else "house + question (identified sum)",
            )
        )
    _legend(fig, handles)
    add_caption(fig, caption)
    return fig


def _offset_rows(
    result: FitResult, pairs: list[tuple[str, str]], colours: dict[str, str]
) -> list[dict]:
    offsets = result.reading_offsets()
    rows = []
    for pollster, question in pairs:
        part = offsets[(offsets["pollster"] == pollster) & (offsets["question"] == question)]
        for _, row in part.iterrows():
            rows.append(
                {
                    "label": f"{pollster} + {question}",
                    "kind": "offset",
                    "colour": colours.get(pollster, "0.3"),
                    "answer": row["answer"],
                    "median": row["median"],
                    "lower": row["lower"],
                    "upper": row["upper"],
                }
            )
    return rows


def _effect_rows(part: pd.DataFrame, name: str, colour: str) -> list[dict]:
    """Forest rows (one per answer) of one house's or question's effect; the reference is marked."""
    return [
        {
            "label": f"{name} (reference)" if row["reference"] else name,
            "kind": "reference" if row["reference"] else "effect",
            "colour": colour,
            "answer": row["answer"],
            "median": row["median"],
            "lower": row["lower"],
            "upper": row["upper"],
        }
        for _, row in part.iterrows()
    ]


def plot_house_effects(result: FitResult) -> Figure:
    """Forest plot of house effects in percentage points, one panel per answer.

    Each house's effect (its average shift of each answer's share against the curve) with its
    interval; the reference house (when there is one) as a hollow diamond at zero. For each
    confounded pair (:attr:`FitResult.confounded`), the identified sum of the house and question
    effects is added as a square, and the caption says that the house effect alone rests on the
    priors.

    Returns
    -------
    matplotlib.figure.Figure
        Interval lines carry ``gid="interval"``; the reference marker ``gid="reference"``.
    """
    colours = house_colours(result)
    effects = result.house_effects()
    pairs = list(result.confounded)
    rows = []
    for pollster in colours:
        own = [pq for pq in pairs if pq[0] == pollster]
        if own:  # what the data identify first; the prior-driven split after it
            rows += _offset_rows(result, own, colours)
            rows += _effect_rows(
                effects[effects["pollster"] == pollster],
                f"{pollster}: house part (prior split)",
                colours[pollster],
            )
        else:
            rows += _effect_rows(
                effects[effects["pollster"] == pollster], pollster, colours[pollster]
            )
    width = _interval_label(result.config.interval)
    caption = (
        f"Shift of each answer's share that a house's readings show against the curve ({result.identification}), "
        f"{averaged_over(result.design)}; {width} intervals."
    )
    if pairs:
        caption += (
            " Squares: "
            + "; ".join(f"{p} asks only {q}, which no other house asks" for p, q in pairs)
            + ". For these, the "
            "data identify only house + question effect together (the square, evaluated at that house's readings); the circle "
            "below it, the house part alone, is split from it by the priors."
        )
    if against := against_average_house(result.design):
        caption += f" {against}"
    return _forest_figure(
        result,
        pd.DataFrame(rows),
        f"House effects (percentage points, {width} intervals)",
        caption,
        has_offsets=bool(pairs),
    )


def plot_question_effects(result: FitResult) -> Figure:
    """Forest plot of question-wording effects in percentage points, one panel per answer.

    Each question's effect against the reference question (a hollow diamond at zero). For each
    confounded pair (:attr:`FitResult.confounded`), the identified sum of the house and question
    effects is added as a square coloured by the house, and the caption says so.

    Returns
    -------
    matplotlib.figure.Figure
    """
    colours = house_colours(result)
    effects = result.question_effects()
    pairs = list(result.confounded)
    rows = []
    for question in pd.unique(effects["question"]):
        own = [pq for pq in pairs if pq[1] == question]
        if own:  # what the data identify first; the prior-driven split after it
            rows += _offset_rows(result, own, colours)
            rows += _effect_rows(
                effects[effects["question"] == question],
                f"{question}: wording part (prior split)",
                "0.3",
            )
        else:
            rows += _effect_rows(effects[effects["question"] == question], question, "0.3")
    width = _interval_label(result.config.interval)
    caption = (
        f"Shift of each answer's share that asking a question causes against the reference question "
        f"{result.reference_question}, {averaged_over(result.design)}; {width} intervals."
    )
    if pairs:
        caption += (
            " Squares: "
            + "; ".join(f"{q} is asked only by {p}, which asks nothing else" for p, q in pairs)
            + ". For these, "
            "the data identify only house + question effect together (the square, coloured by the house); the question "
            "effect alone (circle) is split from it by the priors."
        )
        if result.design.level_from_priors:  # said in full on the house effects' figure
            caption += (
                " The squares are measured against the average house, whose level rests partly on "
                "the priors (see the house effects' figure)."
            )
    return _forest_figure(
        result,
        pd.DataFrame(rows),
        f"Question-wording effects (percentage points, {width} intervals)",
        caption,
        has_offsets=bool(pairs),
    )


# -- diagnostics (ArviZ) -------------------------------------------------------------------------
def _arviz():
    import arviz as az

    return az


def hyperparameters(result: FitResult) -> list[str]:
    """The model's scalar hyperparameters present in this posterior (rank-plotted)."""
    from model.aggregator.names import HYPERPARAMETERS

    return [name for name in HYPERPARAMETERS if name in result.idata.posterior]


def plot_rank(result: FitResult) -> Figure:
    """Rank plots (fractional-rank Δ-ECDF per chain) of the hyperparameters, with ``arviz.plot_rank``.

    Chains that sample the same distribution give curves near zero; each panel prints the
    multi-chain uniformity test's p-value (small: the chains disagree), computed on draws thinned
    to be roughly independent, as the test assumes.

    Raises
    ------
    ValueError
        If the posterior holds none of the hyperparameters.
    """
    names = hyperparameters(result)
    if not names:
        raise ValueError(
            "the posterior holds none of the hyperparameters walk_sd, house_sd, question_sd, nonsampling_sd"
        )
    n_chains = result.idata.posterior.sizes["chain"]
    pc = _arviz().plot_rank(
        result.idata,
        var_names=names,
        # The multi-chain uniformity test assumes independent draws: thin each chain by its
        # effective sample size first, or autocorrelation alone drives the p-values to 0.
        thin=True,
        backend="matplotlib",
        aes={"color": ["chain"], "linestyle": ["chain"]},
        color=[OKABE_ITO[c % len(OKABE_ITO)] for c in range(n_chains)],
        linestyle=[CHAIN_LINESTYLES[c % len(CHAIN_LINESTYLES)] for c in range(n_chains)],
        col_wrap=2,
        figure_kwargs={
            "figsize": (11, 2.2 + 2.4 * ((len(names) + 1) // 2)),
            "layout": "constrained",
        },
    )
    pc.add_legend("chain")
    fig = pc.get_viz("figure")
    fig.suptitle(
        "Rank plots of the hyperparameters: each chain's fractional-rank Δ-ECDF (flat near 0 = chains agree)",
        fontsize=11,
    )
    return fig


def plot_energy(result: FitResult) -> Figure:
    """Energy plot with ``arviz.plot_energy``: marginal vs. transition energy, and E-BFMI per chain.

    The two distributions should overlap; an E-BFMI below 0.3 (dashed line) means the sampler
    explored the energy poorly.
    """
    pc = _arviz().plot_energy(
        result.idata,
        backend="matplotlib",
        aes={"color": ["energy"], "linestyle": ["energy"]},
        color=[OKABE_ITO[0], OKABE_ITO[1]],
        linestyle=["-", "--"],
        figure_kwargs={"figsize": (11, 3.6), "layout": "constrained"},
    )
    fig = pc.get_viz("figure")
    fig.axes[0].set_xlabel("E-BFMI")
    fig.axes[1].set_xlabel("energy (centred)")
    fig.suptitle(
        "Energy: marginal and transition distributions should overlap; E-BFMI per chain above 0.3 (dashed)",
        fontsize=11,
    )
    return fig


def _abbreviation(name: str) -> str:
    words = [w for w in str(name).replace("(", " ").replace(")", " ").split() if w[:1].isalpha()]
    if len(words) > 1:
        return "".join(w[0].upper() for w in words[:3])
    return str(name)[:6]


def plot_ppc(result: FitResult) -> Figure:
    """Posterior predictive check per reading with ``arviz.plot_ppc_interval``.

    One panel per answer: for every reading reporting it (in field order, labelled by field month
    and pollster initials), the predictive median with 50% and 90% intervals, and the observed
    share (black diamond). Each panel title counts the readings outside their 90% interval.
    """
    tree = result.predictive_by_answer()
    answers = [a for a in result.config.answers if tree.posterior_predictive[a].size]
    pc = _arviz().plot_ppc_interval(
        tree,
        var_names=answers,
        backend="matplotlib",
        ci_kind="eti",
        ci_probs=(0.5, 0.9),
        point_estimate="median",
        visuals={
            "observed_markers": {
                "marker": "D",
                "color": "black",
                "edgecolor": "white",
                "width": 0.8,
                "size": 30,
                "zorder": 4,
            }
        },
        cols=["__variable__"],
        col_wrap=1,
        figure_kwargs={
            "figsize": (13, 1.5 + 2.9 * len(answers)),
            "layout": "constrained",
            "sharex": False,
        },
    )
    fig = pc.get_viz("figure")
    polls = result.polls.set_index("poll_id")
    short = {
        pid: f"{row['field_end']:%Y-%m} {_abbreviation(row['pollster'])}"
        for pid, row in polls.iterrows()
    }
    for ax, answer in zip(fig.axes, answers):
        draws = tree.posterior_predictive[answer]
        dim = f"reading_{answer}"
        lo, hi = draws.quantile([0.05, 0.95], dim=("chain", "draw")).values
        observed = tree.observed_data[answer].values
        outside = int(np.sum((observed < lo) | (observed > hi)))
        labels = [short[pid] for pid in draws[dim].values]
        ax.set_xticks(np.arange(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_ylabel(f"{answer} (%)")
        ax.set_xlabel("")
        ax.set_title(
            f"{answer}: {outside} of {len(labels)} observed shares outside their 90% predictive interval",
            loc="left",
            fontsize=10,
        )
    fig.axes[len(answers) - 1].set_xlabel("reading (field month and pollster, in field order)")
    fig.suptitle(
        "Posterior predictive check: observed share (black diamond) against its predictive median, 50% and 90% intervals (blue)",
        fontsize=11,
    )
    abbrev = sorted({(_abbreviation(p), p) for p in result.polls["pollster"].unique()})
    add_caption(
        fig,
        "Pollsters: "
        + "; ".join(f"{a} = {p}" for a, p in abbrev)
        + ". Shares of a reading reporting every answer are divided by their sum (published shares are rounded).",
    )
    return fig


def plot_diagnostics(result: FitResult) -> dict[str, Figure]:
    """The three diagnostic figures: ``rank`` (hyperparameters), ``energy`` and ``ppc`` (per reading)."""
    return {"rank": plot_rank(result), "energy": plot_energy(result), "ppc": plot_ppc(result)}


# -- the article chart ---------------------------------------------------------------------------
def headline_title(result: FitResult) -> str:
    """The article chart's title: the finding, stated from :meth:`FitResult.headline`.

    E.g. "Support for talks: 64% (90% interval 57–71) on 28 Nov 2026 (projected)": the first
    answer's median and interval on the date the curve runs through, rounded as the headline
    sentence rounds them, and whether that date is past the last reading (a chart shared alone
    keeps its title).
    """
    head = result.headline()
    first = next(iter(head["answers"]))
    now = head["answers"][first]["as_of"]
    width = round(100 * head["interval"])
    return (
        f"Support for {first}: {now['median']:.0f}% ({width}% interval "
        f"{now['lower']:.0f}–{now['upper']:.0f}) on {pd.Timestamp(head['as_of']):%-d %b %Y}"
        + (" (projected)" if head["projected"] else "")
    )


def houses_in_fit(result: FitResult) -> list[str]:
    """The pollsters of the fit's readings, most readings first (ties in the fit's house order)."""
    order = {p: i for i, p in enumerate(house_colours(result))}
    counts = result.polls["pollster"].value_counts()
    return sorted(counts.index, key=lambda p: (-counts[p], order.get(p, len(order)), p))


def headline_source_line(result: FitResult, *, credit: str = DEFAULT_CREDIT) -> str:
    """The article chart's source line: the houses in the fit, the model and who ran it."""
    return (
        f"Source: {', '.join(houses_in_fit(result))}; model: Bayesian aggregation with house and "
        f"wording effects, {credit}."
    )


def _spread_labels(values: list[float], gap: float) -> list[float]:
    """Label heights near ``values``, at least ``gap`` apart (keeps their order)."""
    order = np.argsort(values)
    placed = np.asarray(values, dtype=float)[order].copy()
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    out = np.empty_like(placed)
    out[order] = placed
    return [float(v) for v in out]


def plot_headline(
    result: FitResult,
    *,
    answers: list[str] | None = None,
    credit: str = DEFAULT_CREDIT,
    run_id: str | None = None,
    intervals: tuple[float, float] = (0.5, 0.9),
) -> Figure:
    """A chart for an article: 1200 x 675 pixels, its title stating the finding.

    The title gives the first answer's share on the date the curve runs through with its interval
    (:func:`headline_title`); under it, the last reading (house and field dates), how far the curve
    is projected past it, and what the curve is (which house and question it is expressed as). One
    panel: each answer's median and 50%/90% bands in its own colour, labelled at its end, the
    published readings as faint dots, configured events, and the projection after the last reading
    drawn dashed and paler with the words "projection: no reading since <date>". A source line at
    the foot names the houses in the fit and the model.

    Parameters
    ----------
    result : FitResult
    answers : list of str, optional
        The answers to draw (default: every answer; the title is always about the first).
    credit : str
        Who ran the model, for the source line (default "this project").
    run_id : str, optional
        The run's name, added to the source line.
    intervals : tuple of float
        The two band widths.

    Returns
    -------
    matplotlib.figure.Figure
        Sized for :data:`HEADLINE_DPI` (save it with :func:`save_headline`). The title is the
        figure's ``suptitle``; texts carry ``gid`` ``"subtitle"``, ``"source"``, ``"end_label"``
        and ``"projection_label"``, and where the diagnostics gate failed ``"gate_failed"`` (the
        words "DIAGNOSTICS FAILED, not for publication" across the panel); the median lines
        ``"median"`` and ``"projected_median"``.

    Raises
    ------
    ValueError
        If an answer is not a fitted answer.
    """
    chosen = list(result.config.answers) if answers is None else list(answers)
    for answer in chosen:
        _answers(result, answer)
    head = result.headline()
    design = result.design
    width_px, height_px = HEADLINE_PIXELS
    fig = plt.figure(figsize=(width_px / HEADLINE_DPI, height_px / HEADLINE_DPI), dpi=HEADLINE_DPI)
    colours = {a: OKABE_ITO[i % len(OKABE_ITO)] for i, a in enumerate(result.config.answers)}

    def y_of(pixels_from_top: float) -> float:
        return 1 - pixels_from_top / height_px

    left = 28 / width_px
    fig.suptitle(
        "\n".join(textwrap.wrap(headline_title(result), 70)),
        x=left,
        y=y_of(18),
        ha="left",
        va="top",
        fontsize=21,
        fontweight="bold",
    )
    title_lines = len(textwrap.wrap(headline_title(result), 70))
    last = head["last_reading"]
    reading = f"{last['pollster']}, {field_span(last['field_start'], last['field_end'], dash='–')}"
    if head["projected"]:
        from model.results.headline import how_far

        when = (
            f"Last reading: {reading}. After it the curve is projected "
            f"{how_far(head['days_past_last_reading'])} with no data (dashed, paler)."
        )
    else:
        when = f"Last reading: {reading}; the curve ends there."
    what = (
        f"Share of respondents, {head['curve']['identification']}, asking {head['curve']['question']}. "
        f"Line: median; bands: {' and '.join(_interval_label(i) for i in sorted(intervals))} "
        "intervals; dots: published readings, not adjusted."
    )
    subtitle = "\n".join([*textwrap.wrap(when, 135), *textwrap.wrap(what, 135)])
    top = 18 + 30 * title_lines + 8
    fig.text(
        left, y_of(top), subtitle, ha="left", va="top", fontsize=11, color="0.25", gid="subtitle"
    )
    top += 17 * (subtitle.count("\n") + 1) + 18
    source = headline_source_line(result, credit=credit)
    if run_id:
        source += f" Run {run_id}."
    fig.text(
        left,
        y_of(height_px - 14),
        "\n".join(textwrap.wrap(source, 150)),
        ha="left",
        va="bottom",
        fontsize=9,
        color="0.35",
        gid="source",
    )
    bottom = 14 + 15 * len(textwrap.wrap(source, 150)) + 34
    latest = result.latest_estimate(max(intervals)).set_index("answer")
    labels = {a: f"{a} {latest.loc[a, 'median']:.0f}%" for a in chosen}
    # room on the right for the end labels (bold 13 pt: up to 13 px a character at 96 dpi, for
    # capitals), at most a third of the chart (a longer label runs past the edge)
    right = min(max(150, 8 + 13 * max(len(label) for label in labels.values()) + 12), width_px // 3)
    ax = fig.add_axes(
        (
            64 / width_px,
            bottom / height_px,
            1 - (64 + right) / width_px,
            1 - (top + bottom) / height_px,
        )
    )

    bands = {interval: result.support_curve(interval) for interval in sorted(intervals)}
    alphas = dict(zip(sorted(intervals, reverse=True), (0.18, 0.32)))
    for answer in chosen:
        colour = colours[answer]
        for interval in sorted(intervals, reverse=True):
            part = bands[interval]
            _draw_band(
                ax,
                part[part["answer"] == answer],
                interval,
                colour=colour,
                alpha=alphas[interval],
            )
        reported = result.polls[answer].notna()
        ax.scatter(
            _as_dates(reading_midpoints(result.polls[reported])),
            result.polls.loc[reported, answer],
            s=14,
            color=colour,
            alpha=0.35,
            linewidths=0,
            zorder=2,
            gid="readings",
        )
        part = bands[max(intervals)]
        _draw_median(ax, part[part["answer"] == answer], colour=colour, width=2.4, zorder=3)
    _draw_events(ax, result, label=True)
    if not head["gate"]["passed"]:  # an article chart of a run the gate refused says so on itself
        ax.text(
            0.5,
            0.5,
            "DIAGNOSTICS FAILED\nnot for publication",
            transform=ax.transAxes,
            ha="center",
            va="center",
            rotation=20,
            fontsize=40,
            fontweight="bold",
            color="#D55E00",
            alpha=0.45,
            zorder=10,
            gid="gate_failed",
        )
    shown = bands[max(intervals)]
    readings = result.polls[chosen].to_numpy(dtype=float)
    upper = max(  # the bands and every reading drawn
        float(shown.loc[shown["answer"].isin(chosen), "upper"].max()),
        float(np.nanmax(readings)) if np.isfinite(readings).any() else 0.0,
        0.0,
    )
    ax.set_ylim(0, min(100.0, 10 * np.ceil((upper + 4) / 10)))
    end = _as_dates([design.time[-1]])[0]
    ax.set_xlim(_as_dates([design.time[0]])[0], end)
    if design.projected.any():
        data_end = _as_dates([design.data_end])[0]
        ax.axvline(data_end, color="0.45", linestyle=":", linewidth=1.2, zorder=1.5, gid="data_end")
        ax.annotate(
            projection_label(design.data_end).replace(": ", ":\n", 1),
            xy=(data_end, 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(5, 0),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=10,
            color="0.25",
            gid="projection_label",
        )
    gap = 0.055 * (ax.get_ylim()[1] - ax.get_ylim()[0])
    heights = _spread_labels([float(latest.loc[a, "median"]) for a in chosen], gap)
    for answer, height in zip(chosen, heights):
        ax.annotate(
            labels[answer],
            xy=(end, height),
            xycoords="data",
            xytext=(8, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=13,
            fontweight="bold",
            color=colours[answer],
            annotation_clip=False,
            gid="end_label",
        )
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.grid(axis="y", color="0.88", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=11)
    date_axis(ax)
    return fig


def save_headline(fig: Figure, folder: str | Path, name: str = HEADLINE_NAME) -> list[Path]:
    """Write the article chart as ``<name>.png`` (1200 x 675 pixels) and ``<name>.svg``, each whole or not at all.

    Returns
    -------
    list of pathlib.Path
        The two files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = atomic_write(folder / f"{name}.png", functools.partial(fig.savefig, dpi=HEADLINE_DPI))
    svg = atomic_write(folder / f"{name}.svg", fig.savefig)
    return [png, svg]


# -- all figures ---------------------------------------------------------------------------------
def make_figures(
    result: FitResult,
    *,
    answer: str | None = None,
    questions: str | Path | Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> dict[str, Figure]:
    """Every figure of a run, keyed by the names in :data:`FIGURE_NAMES`.

    ``answer`` restricts the support curve and the adjusted readings to one answer; effects and
    diagnostics always show every answer.
    """
    figures = {
        "support_curve": plot_support(result, answer=answer, questions=questions, run_id=run_id),
        "adjusted": plot_adjusted(result, answer=answer, questions=questions, run_id=run_id),
        "house_effects": plot_house_effects(result),
        "question_effects": plot_question_effects(result),
    }
    figures.update(plot_diagnostics(result))
    return figures


def save_figures(
    figures: Mapping[str, Figure], folder: str | Path, *, dpi: int = 130
) -> list[Path]:
    """Write each figure as ``<name>.png`` (and ``<name>.svg`` for the support curve) into ``folder``.

    Each file is written under a temporary name and renamed, so a reader never sees half a file.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        atomic_write(path, functools.partial(fig.savefig, dpi=dpi))
        written.append(path)
        if name in SVG_FIGURES:
            path = folder / f"{name}.svg"
            atomic_write(path, fig.savefig)
            written.append(path)
    return written
