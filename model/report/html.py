"""``report.html``: one self-contained page per run folder.

The page holds the support curve, the latest estimate, an interactive chart of the curve and the
readings (:mod:`model.report.interactive`, Plotly), house and question effects, event jumps, the
diagnostics verdict with its table and figures, the model in a few sentences, and every reading
used (and left out) with links to its sources. Figures are embedded as base64 PNG and plotly.js is
inlined, so the file can be mailed or archived alone and opens offline. Every string that comes
from data is HTML-escaped; only ``http``/``https`` source addresses become links.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from model.config import ANCHORS, ZERO_SUM
from model.data.polls import read_csv_text
from model.files import atomic_write_text
from model.report import interactive, plots
from model.results.calibration import BacktestCalibration
from model.results.diagnostics import (
    flagged_sensitivity,
    gate_warning,
    retry_note,
    sampling_attempts,
)
from model.results.headline import (
    PROJECTION_RULE,
    against_average_house,
    averaged_over,
    event_brackets,
    event_caveat,
    signed_interval,
    signed_points,
)
from model.results.projection_notes import projection_calibration, sampling_words
from model.results.run_folder import backtest_for

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from model.results.fit_result import FitResult

REPORT_NAME = "report.html"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Section ids of the page, in order (tests and links rely on them).
SECTIONS = (
    "headline",
    "estimate",
    "interactive",
    "closed-polls",
    "pooling",
    "house-effects",
    "question-effects",
    "events",
    "diagnostics",
    "model",
    "data",
    "excluded",
    "provenance",
)

_FIGURE_ALT = {
    "support_curve": "Support curve: posterior median and intervals of each answer over time, with the published readings",
    "adjusted": "Readings as published beside the same readings adjusted for house and question effects",
    "house_effects": "Forest plot of house effects in percentage points",
    "question_effects": "Forest plot of question-wording effects in percentage points",
    "rank": "Rank plots of the hyperparameters, one line per chain",
    "energy": "Energy plot: marginal and transition energy, E-BFMI per chain",
    "ppc": "Posterior predictive check: each reading's observed share against its predictive interval",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a;
       max-width: 1280px; margin: 0 auto; padding: 1.5rem 2rem 4rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.5rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
.meta { color: #444; margin-top: 0; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { font-size: 0.9rem; color: #444; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d4d4d4; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
td a { overflow-wrap: anywhere; }
.table-wrap { max-width: 100%; overflow-x: auto; }
.verdict { display: inline-block; padding: 0.3rem 0.8rem; border-radius: 4px; font-weight: bold; }
.verdict.passed { background: #d9f0e3; border: 2px solid #009E73; }
.verdict.failed { background: #fbe3d6; border: 2px solid #D55E00; }
.ok { color: #006d50; } .bad { color: #a33f00; font-weight: bold; }
.data-table { font-size: 0.82rem; }
.note { background: #f7f7f7; border-left: 4px solid #999; padding: 0.4rem 0.8rem; }
.lead { font-size: 1.15rem; font-weight: 600; }
.gate-failed { background: #fbe3d6; border: 2px solid #D55E00; padding: 0.5rem 0.8rem; font-weight: bold; }
ul.caveats { font-size: 0.9rem; color: #333; }
table.footnote { font-size: 0.82rem; color: #444; }
table.closed { font-size: 0.85rem; }
table.closed td.why { font-size: 0.8rem; max-width: 22rem; }
table.closed td:first-child { overflow-wrap: anywhere; max-width: 15rem; }
.chart-sources { font-size: 0.85rem; color: #333; min-height: 1.4em; overflow-wrap: anywhere; }
@media print { #interactive .interactive-chart, .chart-sources { display: none; } }
"""


# -- helpers -------------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escape any value (quotes included); missing values become an empty string."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


def png_base64(image: Figure | bytes, *, dpi: int = 110) -> str:
    """A figure (rendered as PNG) or ready PNG bytes, base64-encoded."""
    if isinstance(image, bytes):
        if not image.startswith(PNG_SIGNATURE):
            raise ValueError("expected PNG bytes (they do not start with the PNG signature)")
        return base64.b64encode(image).decode("ascii")
    buffer = io.BytesIO()
    image.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(name: str, figures: Mapping[str, Figure | bytes], caption: str = "") -> str:
    if name not in figures:
        return ""
    data = png_base64(figures[name])
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure id="fig-{esc(name)}"><img src="data:image/png;base64,{data}" alt="{esc(_FIGURE_ALT.get(name, name))}">{cap}</figure>'


def _table(
    header: list[str],
    rows: list[list[str]],
    *,
    numeric: set[int] = frozenset(),
    nowrap: set[int] = frozenset(),
    css: str = "",
) -> str:
    """An HTML table; cells are given already escaped (they may hold links).

    Columns in ``numeric`` are right-aligned and not wrapped; columns in ``nowrap`` are not wrapped.
    """
    cls = f' class="{css}"' if css else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)

    def cell(i: int, content: str) -> str:
        if i in numeric:
            return f'<td class="num">{content}</td>'
        if i in nowrap:
            return f'<td class="nowrap">{content}</td>'
        return f"<td>{content}</td>"

    body = "".join(
        "<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<div class="table-wrap"><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _pp(median: float, lower: float, upper: float) -> str:
    if median == lower == upper == 0:
        return "0 (fixed)"
    return signed_interval(median, lower, upper)


def _share(value: float) -> str:
    return "" if pd.isna(value) else f"{value:g}"


def _effects_pivot(
    frame: pd.DataFrame, key: str, answers: list[str], *, extra: list[str] = ()
) -> tuple[list[str], list[list[str]]]:
    """One row per ``key`` value, one column per answer ("median [lower, upper]")."""
    header = [key, *answers, *extra]
    rows = []
    for name in pd.unique(frame[key]):
        part = frame[frame[key] == name].set_index("answer")
        cells = [esc(name)]
        for answer in answers:
            r = part.loc[answer]
            cells.append(esc(_pp(r["median"], r["lower"], r["upper"])))
        cells += [esc(part[column].iloc[0]) for column in extra]
        rows.append(cells)
    return header, rows


# -- sources -------------------------------------------------------------------------------------
def load_sources(path: str | Path | None = None) -> dict[str, dict[str, str]] | None:
    """``src_row`` -> {"url", "excerpt", "pollster_as_reported"} from the sourced table; None if it is missing.

    Raises
    ------
    model.data.polls.PollDataError
        The file is not a CSV table in UTF-8 (naming the row), or lacks ``src_row`` or
        ``source_url``: a report must not quietly go without the sources it was given.
    """
    if path is None or not Path(path).is_file():
        return None
    table = read_csv_text(
        path,
        required=["src_row", "source_url"],
        kind="the sourced table (data/readings_sourced.csv)",
    )
    return {
        row["src_row"]: {
            "url": row.get("source_url", ""),
            "excerpt": row.get("excerpt", ""),
            "pollster_as_reported": row.get("pollster_as_reported", ""),
        }
        for _, row in table.iterrows()
    }


def source_cell(src_rows: Any, sources: dict[str, dict[str, str]] | None) -> str:
    """The sources of one reading as HTML: a link per ``src_row`` (its id and the site's host).

    Without a sourced table, or for a row it lacks, the ``src_row`` id alone is shown.
    """
    cells = []
    for src in interactive.source_ids(src_rows):
        info = (sources or {}).get(src)
        if info and interactive.is_web_address(info["url"]):
            host = urlsplit(info["url"].strip()).netloc
            title = f' title="{esc(info["excerpt"])}"' if info["excerpt"] else ""
            cells.append(
                f'<a href="{esc(info["url"].strip())}"{title} rel="noopener noreferrer">{esc(src)}</a> ({esc(host)})'
            )
        else:
            cells.append(esc(src))
    return "<br>".join(cells)


# -- sections ------------------------------------------------------------------------------------
def _headline_section(
    result: FitResult,
    calibration: BacktestCalibration | None,
    wordings: Mapping[str, Mapping[str, str]],
) -> str:
    """The page opens with the headline in plain words (:meth:`FitResult.headline_sentences`),
    after :func:`~model.results.diagnostics.gate_warning` where the gate failed; it points to what
    the reference question asks where the codebook says (``wordings``:
    :func:`model.report.plots.question_wordings`)."""
    head = result.headline()
    warning = gate_warning(head["gate"])
    # The sentences open with that warning where the gate failed: here it has its own paragraph.
    first, *rest = result.headline_sentences()[1 if warning else 0 :]
    projected = projection_calibration(result, calibration, short=True)
    caveats = "".join(f"<li>{esc(c)}</li>" for c in [*head["caveats"], *projected])
    return (
        '<section id="headline"><h2>Headline</h2>'
        + (f'<p class="gate-failed">{esc(warning)}</p>' if warning else "")
        + f'<p class="lead">{esc(first)}</p>'
        + ("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in rest) + "</ul>" if rest else "")
        + f'<p class="note">What these numbers are conditional on:</p><ul class="caveats">{caveats}</ul>'
        + "<p>The headline's figures: <code>headline.json</code> in the run folder"
        + (
            f"; the backtest's, in <code>{esc(calibration.folder.name)}</code>."
            if projected and calibration is not None
            else "."
        )
        + "</p>"
        + _wordings_link(result, wordings)
        + "</section>"
    )


def _wordings_link(result: FitResult, wordings: Mapping[str, Mapping[str, str]]) -> str:
    """Where the codebook gives the reference question's wording, a link to the table of them
    (:func:`_wordings_part`)."""
    if result.reference_question not in wordings:
        return ""
    many = len(result.design.questions) > 1
    return (
        f"<p>What {esc(result.reference_question)} "
        + ("and the other questions ask" if many else "asks")
        + ': <a href="#question-wordings">'
        + ("the wordings" if many else "its wording")
        + "</a>.</p>"
    )


#: How each ``Config.trend`` moves the walk, in the model section's words (the walk: nothing added).
TREND_WORDS = {
    "walk": "",
    "drift": " plus a constant drift per answer, estimated over the whole period",
    "damped": " plus a damped local slope per answer (a stationary AR(1) slope whose running sum the "
    "walk gains)",
    "momentum": ", each stretch between knots carrying on part of the previous stretch's slope, "
    "decayed by an estimated monthly persistence",
}


def _trend_words(result: FitResult) -> str:
    """:data:`TREND_WORDS` for the fit's trend, naming a persistence held fixed
    (``priors.slope_persistence``) as such."""
    fixed = result.config.priors.slope_persistence
    if result.trend == "momentum" and fixed is not None:
        return TREND_WORDS["momentum"].replace(
            "an estimated monthly persistence", f"a fixed monthly persistence of {fixed:g}"
        )
    return TREND_WORDS[result.trend]


def _offsets_table(calibration: BacktestCalibration) -> str:
    """Where the held-out readings fell against the predictive median, by horizon and answer."""
    errors = calibration.errors
    if errors is None or not len(errors):
        return ""
    answers = list(dict.fromkeys(errors["answer"]))
    rows = []
    for horizon, group in errors.groupby("horizon_months", sort=True):
        by_answer = group.set_index("answer")
        cells = []
        for answer in answers:
            if answer not in by_answer.index:
                cells.append("")
                continue
            r = by_answer.loc[answer]
            interval = (
                ""
                if np.isnan(r["lower"])
                else f" ({signed_points(r['lower'])} – {signed_points(r['upper'])})"
            )
            cells.append(f"{signed_points(r['mean_error'])}{interval}, n = {int(r['n'])}")
        rows.append([f"{int(horizon)}", *cells])
    return (
        "<p>Where the held-out readings fell against the predicted median: each answer's reported "
        "share less the median, in points, averaged over the readings (positive: the readings came "
        "out above the prediction), with its 90% interval (Newey-West).</p>"
        + _table(
            ["horizon (months)", *answers],
            rows,
            numeric=set(range(len(answers) + 1)),
        )
    )


def _calibration_table(calibration: BacktestCalibration) -> str:
    """The backtest's figures for the model by horizon (:class:`BacktestCalibration`), as a table."""
    rows = [
        [
            f"{int(r['horizon_months'])}",
            f"{int(r['n'])}",
            f"{r['mae']:.1f}",
            f"{r['coverage50']:.0%} ({r['coverage50_lower']:.0%} – {r['coverage50_upper']:.0%})",
            f"{r['coverage90']:.0%} ({r['coverage90_lower']:.0%} – {r['coverage90_upper']:.0%})",
        ]
        for _, r in calibration.table.iterrows()
    ]
    return _table(
        [
            "horizon (months from cut-off to field start)",
            "held-out readings",
            "mean abs. error (points)",
            "shares inside the 50% band (90% interval)",
            "shares inside the 90% band (90% interval)",
        ],
        rows,
        numeric={0, 1, 2},
    )


def _estimate_section(
    result: FitResult, figures, run_id: str, calibration: BacktestCalibration | None
) -> str:
    interval = result.config.interval
    width = f"{round(100 * interval)}%"
    design = result.design
    rows = []
    for at in ("end", "data") if design.projected.any() else ("end",):
        last = result.latest_estimate(interval, at=at)
        inner = result.latest_estimate(0.5, at=at).set_index("answer")
        date = last["date"].iloc[0]
        if at == "end":
            what = (
                f"{design.through:%d %b %Y} (projected)"
                if design.projected.any()
                else f"{design.through:%d %b %Y} (last reading)"
            )
        else:
            what = f"{design.data_end:%d %b %Y} (last reading)"
        rows += [
            [
                esc(what),
                esc(f"{date:%Y-%m-%d}"),
                esc(r["answer"]),
                f"{r['median']:.1f}%",
                f"{inner.loc[r['answer'], 'lower']:.1f} – {inner.loc[r['answer'], 'upper']:.1f}",
                f"{r['lower']:.1f} – {r['upper']:.1f}",
            ]
            for _, r in last.iterrows()
        ]
    table = _table(
        [
            "date",
            f"{result.config.grid} starting",
            "answer",
            "median",
            "50% interval",
            f"{width} interval",
        ],
        rows,
        numeric={3, 4, 5},
        nowrap={0, 1},
    )
    projection = ""
    if design.projected.any():
        projection = (
            f"<p>After {design.data_end:%d %B %Y}, the last reading's field end, the curve runs on to "
            f"{design.through:%d %B %Y} with no readings: dashed and paler in the figure, "
            "<code>projected</code> in <code>curve.csv</code>. It is "
            f"{esc(PROJECTION_RULE[result.trend][0])}.</p>"
        )
    held = "".join(f"<p>{esc(text)}</p>" for text in projection_calibration(result, calibration))
    if held and calibration is not None:
        held += _calibration_table(calibration) + _offsets_table(calibration)
    return (
        f'<section id="estimate"><h2>The curve</h2>'
        f"<p>{esc(result.identification)[0].upper() + esc(result.identification)[1:]}, asking {esc(result.reference_question)}. "
        f"Data to {result.design.data_end:%d %B %Y}.</p>{projection}{table}{held}"
        + _img(
            "support_curve",
            figures,
            "Line: posterior median; bands: 50% and 90% intervals; dashed and paler: projection "
            "past the last reading; points: published readings "
            "(colour: pollster, shape: question family, area: sample size, hollow: sample size not published).",
        )
        + "</section>"
    )


def _interactive_section(result: FitResult, sources, questions) -> str:
    """The curve and every reading in a Plotly chart (plotly.js inlined; see :mod:`model.report.interactive`)."""
    design = result.design
    projection = (
        f" After {design.data_end:%d %B %Y}, the last reading's field end, the curve is a projection: paler "
        f"bands and a dashed median, {PROJECTION_RULE[result.trend][1]}."
        if design.projected.any()
        else ""
    )
    return (
        '<section id="interactive"><h2>Explore the curve and the readings</h2>'
        f"<p>The curve {esc(result.identification)}, asking {esc(result.reference_question)}: line, posterior "
        f"median; bands, 50% and 90% intervals.{esc(projection)} Points: every reading (colour: pollster; shape: "
        "question family; size: sample size; hollow: sample size not published). Hover a point for its house, "
        "field dates, sample size, shares and sources; click it to list its source links under the chart. "
        "Click a pollster in the legend to hide or show its readings. The buttons above the chart switch the "
        f"points between the shares as published and the shares adjusted for house and question effects "
        f"(roughly what {esc(result.compared_with)} would have published). Drag to zoom; double-click to reset. "
        "The chart needs JavaScript; the static figures above and below are the same data for print.</p>"
        '<div class="interactive-chart">'
        + interactive.chart_html(result, questions=questions, sources=sources)
        + "</div></section>"
    )


def _closed_section(result: FitResult) -> str:
    table = result.closed_polls()
    intro = (
        '<section id="closed-polls"><h2>Closed polls beside the public curve</h2>'
        f'<p class="note">{esc(result.closed_polls_conclusion())}</p>'
    )
    if table.empty:
        return intro + "</section>"
    answers = list(result.config.answers)
    width = round(100 * result.config.interval)
    head = "".join(
        f"<th>{esc(h)}</th>"
        for h in (
            "reading",
            "in the fit",
            "answer",
            "published",
            f"curve ({width}% interval)",
            f"difference ({width}% interval)",
            "identified",
        )
    )
    body = []
    for _, r in table.iterrows():
        shown = [a for a in answers if not pd.isna(r[f"curve_{a}"])] or answers[:1]
        span = f' rowspan="{len(shown)}"'
        reading = f"{esc(r['pollster'])}<br>{esc(r['question'])}<br>{esc(r['field_start'])} – {esc(r['field_end'])}"
        in_fit = "yes" if r["in_fit"] else esc(f"no: {r['excluded_because']}")
        for k, a in enumerate(shown):
            curve = (
                ""
                if pd.isna(r[f"curve_{a}"])
                else f"{r[f'curve_{a}']:.0f} [{r[f'curve_{a}_lower']:.0f}, {r[f'curve_{a}_upper']:.0f}]"
            )
            diff = (
                "–"
                if pd.isna(r[f"difference_{a}"])
                else signed_interval(
                    r[f"difference_{a}"], r[f"difference_{a}_lower"], r[f"difference_{a}_upper"]
                )
            )
            published = "not published" if pd.isna(r[a]) else f"{r[a]:g}"
            cells = [f'<td class="num">{esc(v)}</td>' for v in (published, curve, diff)]
            lead = f"<td{span}>{reading}</td><td{span}>{in_fit}</td>" if k == 0 else ""
            tail = f'<td{span} class="why">{esc(r["identification"])}</td>' if k == 0 else ""
            body.append(f'<tr>{lead}<td class="nowrap">{esc(a)}</td>{"".join(cells)}{tail}</tr>')
    return (
        intro
        + "<p>Each closed (leaked, commissioned) reading against the curve over its own field period, in percent and "
        f"percentage points with {width}% intervals. For a reading in the fit the difference is the model's house and wording "
        "offset at that date; for one outside the fit it is the published share minus the curve, which also holds its "
        "wording's effect and its sampling error, while its interval holds the curve's uncertainty alone (so it is "
        "narrower than what the data could tell of that reading). Where a reading in the fit left an answer unpublished, "
        "the data pin its difference on that answer only through the remainder (100 minus the published shares, read "
        "as the unreported answers together) of that house and wording's readings. <code>closed_polls.csv</code> has "
        "every figure.</p>"
        + f'<div class="table-wrap"><table class="closed"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        + "</section>"
    )


def _publisher(result: FitResult) -> str:
    """Who the curve's readings are, in words: the house and question its level is fixed by."""
    question = result.reference_question
    if result.config.house_effects == ZERO_SUM:
        return f"an average house asking {question}"
    if result.config.house_effects == ANCHORS:
        return f"a house at {result.curve_house} asking {question}"
    return f"{result.config.house_effects} asking {question}"


def _pooling_section(result: FitResult, figures) -> str:
    return (
        '<section id="pooling"><h2>What the pooling did</h2>'
        "<p>Left: readings as published. Right: each reading minus its pollster's and question's estimated offset, "
        f"i.e. roughly what {esc(_publisher(result))} would have published. "
        "The RMS distance in each panel shows how much of the spread the house and question effects explain; a house "
        "and wording with one reading has an offset fitted to that reading alone, so its part of the drop is by "
        "construction.</p>" + _img("adjusted", figures) + "</section>"
    )


def _house_section(result: FitResult, figures) -> str:
    """Each house's difference from the curve's house as the data identify it (house + wording at its
    readings), then house effects identified apart from the wording; prior-driven splits as a footnote."""
    answers = list(result.config.answers)
    width = round(100 * result.config.interval)
    effect_columns = set(range(2, 2 + len(answers)))
    offsets = result.reading_offsets()
    reference_pair = (result.reference_pollster, result.reference_question)
    alone = result.design.identified_only_with_wording
    against = against_average_house(result.design)
    rows = []
    for (pollster, question), part in offsets.groupby(["pollster", "question"], sort=False):
        if (pollster, question) == reference_pair:
            continue
        part = part.set_index("answer")
        cells = [esc(pollster), esc(question)]
        cells += [
            esc(_pp(part.loc[a, "median"], part.loc[a, "lower"], part.loc[a, "upper"]))
            for a in answers
        ]
        cells += [
            str(int(part["readings"].iloc[0])),
            "house and wording together *"
            if (pollster, question) in alone
            else "house apart from wording, up to the average house's level"
            if against
            else "house apart from wording",
        ]
        rows.append(cells)
    identified = esc(against) if against else "This is what the data identify."
    parts = [
        f'<section id="house-effects"><h2>Differences between houses</h2>'
        f"<p>Percentage points by which each house, asking its question, reports differently from {esc(result.compared_with)}, "
        f"evaluated at that house's own readings; median and {width}% interval. {identified}</p>",
        _table(
            ["pollster", "question", *answers, "readings", "identified as"],
            rows,
            numeric=effect_columns | {2 + len(answers)},
        ),
    ]
    effects = result.house_effects()
    split = {p for p, _ in alone}
    free = effects[~effects["reference"] & ~effects["pollster"].isin(split)]
    if len(free):
        header, free_rows = _effects_pivot(free, "pollster", answers, extra=["questions"])
        header[-1] = "questions asked"
        parts.append(
            (
                "<h3>House effects apart from the wording, up to the average house's level</h3>"
                f"<p>{esc(_sentence_case(averaged_over(result.design)))}; median and {width}% interval; "
                "as above, each is measured against the average house and rests partly on the priors.</p>"
                if against
                else "<h3>House effects identified apart from the wording</h3>"
                f"<p>{esc(_sentence_case(averaged_over(result.design)))}; median and {width}% interval.</p>"
            )
            + _table(header, free_rows, numeric=set(range(1, 1 + len(answers))))
        )
    if split:
        footnote = effects[effects["pollster"].isin(split)]
        header, split_rows = _effects_pivot(footnote, "pollster", answers)
        parts.append(
            '<p class="note">* For '
            + esc(", ".join(sorted(split)))
            + ": the house asks only a question no other house asks, so the data identify only house and wording together "
            f"(above). The split into a house part (below; {esc(averaged_over(result.design))}) and a wording part "
            "(next section) comes from the priors, not from the data. On the share scale the parts do not add up to "
            "the sum: each is a shift of the softmax, which depends on the level it acts on.</p>"
            + _table(header, split_rows, numeric=set(range(1, 1 + len(answers))), css="footnote")
        )
    parts.append(_img("house_effects", figures))
    parts.append("</section>")
    return "".join(parts)


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _wordings_part(result: FitResult, wordings: Mapping[str, Mapping[str, str]]) -> str:
    """What each question in the fit asks, and what its answers count as, from the codebook."""
    if not wordings:
        return (
            '<p class="note">No question codebook with wordings was given (a <code>questions.csv</code> '
            f"with columns <code>question_id</code>, {', '.join(f'<code>{c}</code>' for c in plots.WORDING_COLUMNS)}), "
            "so the questions are named by their ids only.</p>"
        )
    polls = result.polls
    rows = []
    for question in result.design.questions:
        known = wordings.get(question)
        asking = polls["question"] == question
        houses = ", ".join(dict.fromkeys(polls.loc[asking, "pollster"]))
        rows.append(
            [
                f"<code>{esc(question)}</code>",
                esc(houses),
                str(int(asking.sum())),
                *(
                    [esc(known[c]) for c in plots.WORDING_COLUMNS]
                    if known
                    else ["not in the codebook", "", ""]
                ),
            ]
        )
    header = [
        "question",
        "asked by",
        "readings",
        "wording",
        "counted as talks",
        "counted as continue",
    ]
    undecided = (
        " Undecided is the share answering “difficult to answer” or don’t know where a reading reports it; "
        "where it does not, the reading's unreported answers enter the fit together, as 100 minus its reported "
        "shares, which holds any other answer too."
        if "undecided" in result.config.answers
        else ""
    )
    return (
        '<h3 id="question-wordings">What each question asks</h3>'
        '<p class="note">From the question codebook, as the sources give it; the readings are those in the fit.'
        + undecided
        + "</p>"
        + _table(header, rows, numeric={2})
    )


def _question_section(result: FitResult, figures, wordings) -> str:
    answers = list(result.config.answers)
    effects = result.question_effects()
    pairs = list(result.confounded)
    alone = {q: p for p, q in pairs}

    def identified(row) -> str:
        if row["reference"]:
            return "reference (fixed at 0)"
        if row["question"] in alone:
            return f"only jointly with the house effect of {alone[row['question']]} (which alone asks it, and asks nothing else)"
        return "separately from house effects"

    effects = effects.assign(identified=effects.apply(identified, axis=1))
    header, rows = _effects_pivot(effects, "question", answers, extra=["asked_by", "identified"])
    header[-2] = "asked by"
    effect_columns = set(range(1, 1 + len(answers)))
    html_out = (
        f'<section id="question-effects"><h2>Question-wording effects</h2>'
        f"<p>Percentage points by which asking each question shifts the answers against the reference question "
        f"{esc(result.reference_question)}, {esc(averaged_over(result.design))}; median and "
        f"{round(100 * result.config.interval)}% interval."
        + (
            " Where a house alone asks a question (column <em>identified</em>), the data identify only its sum "
            "with that house's effect (below); the split shown here comes from the priors, not the data."
            if pairs
            else ""
        )
        + "</p>"
        + _table(header, rows, numeric=effect_columns)
    )
    if pairs:
        offsets = result.reading_offsets()
        offsets = offsets[
            [(p, q) in set(pairs) for p, q in zip(offsets["pollster"], offsets["question"])]
        ]
        offsets = offsets.assign(pair=offsets["pollster"] + " + " + offsets["question"])
        header, rows = _effects_pivot(offsets, "pair", answers, extra=["readings"])
        against = against_average_house(result.design)
        html_out += (
            (
                "<h3>House + question sums</h3>"
                if against
                else "<h3>Identified sums (house + question)</h3>"
            )
            + '<p class="note">Where one house alone asks a question, the data identify only the sum of that house\'s and '
            "that question's effects; the split between the two comes from the priors. "
            + (esc(against) if against else "These sums are what the data say.")
            + "</p>"
            + _table(header, rows, numeric=effect_columns | {len(header) - 1})
        )
    return (
        html_out
        + _wordings_part(result, wordings)
        + _img("question_effects", figures)
        + "</section>"
    )


def _events_section(result: FitResult) -> str:
    jumps = result.event_jumps()
    if jumps.empty:
        return '<section id="events"><h2>Events</h2><p>No events configured.</p></section>'
    dates = {e.label: e.date for e in result.config.events}
    grid = result.headline()["grid"]
    header, rows = _effects_pivot(jumps, "event", list(result.config.answers))
    for row, name in zip(rows, pd.unique(jumps["event"])):
        row.insert(1, esc(dates.get(name, "")))
    header.insert(1, "date")
    return (
        '<section id="events"><h2>Events</h2><p>Estimated jump of each answer at each configured event '
        f"(percentage points, {round(100 * result.config.interval)}% interval).</p>"
        + _table(header, rows, numeric=set(range(2, len(header))), nowrap={1})
        + "".join(
            f'<p class="note">{esc(event_caveat(event, bracket, grid))}</p>'
            for event, bracket in event_brackets(result.design).items()
        )
        + "</section>"
    )


def _check(ok: bool) -> str:
    return '<span class="ok">ok</span>' if ok else '<span class="bad">FAILED</span>'


def _diagnostics_section(result: FitResult, figures) -> str:
    d = result.diagnostics()
    t = d.get("thresholds", {})
    max_rhat, min_ess, min_bfmi = (
        t.get("max_rhat", 1.01),
        t.get("min_ess", 400),
        t.get("min_bfmi", 0.3),
    )
    max_div = t.get("max_divergences", 0)
    retried = retry_note(d.get("sampling_attempts", []))
    verdict = "passed" if d["passed"] else "failed"
    rows = [
        [
            "max R-hat",
            f"{d['max_rhat']:.3f} ({esc(d.get('max_rhat_variable', ''))})",
            f"≤ {max_rhat}",
            _check(d["max_rhat"] <= max_rhat),
        ],
        [
            "min bulk ESS",
            f"{d['min_ess_bulk']:.0f} ({esc(d.get('min_ess_bulk_variable', ''))})",
            f"≥ {min_ess}",
            _check(d["min_ess_bulk"] >= min_ess),
        ],
        [
            "min tail ESS",
            f"{d['min_ess_tail']:.0f} ({esc(d.get('min_ess_tail_variable', ''))})",
            f"≥ {min_ess}",
            _check(d["min_ess_tail"] >= min_ess),
        ],
        [
            "divergent transitions",
            f"{d['divergences']}",
            f"≤ {max_div}",
            _check(d["divergences"] <= max_div),
        ],
        *([["sampling attempts", esc(retried), "", ""]] if retried else []),
        ["min E-BFMI", f"{d['min_bfmi']:.2f}", f"≥ {min_bfmi}", _check(d["min_bfmi"] >= min_bfmi)],
        [
            "draws at max tree depth",
            f"{100 * d.get('treedepth_saturation', float('nan')):.1f}%",
            "warning above 1%",
            "",
        ],
        # In-sample: each reading's interval comes from a fit that saw it, so coverage at or
        # above the level is expected; held-out coverage is the backtest's (make validate).
        *(
            [
                f"predictive coverage, {level}% intervals (readings the fit saw)",
                f"{d[f'coverage{level}']:.0%}",
                f"{level}% or more; held-out: make validate",
                "",
            ]
            for level in (50, 90)
        ),
    ]
    if "elpd_loo" in d:
        rows.append(
            [
                "ELPD (PSIS-LOO)",
                f"{d['elpd_loo']:.1f} ± {d.get('elpd_loo_se', float('nan')):.1f}; p_loo {d.get('p_loo', float('nan')):.1f}",
                "",
                "",
            ]
        )
    for answer, counts in d.get("loo_pit_outside", {}).items():
        rows.append(
            [
                f"LOO-PIT outside 0.05-0.95, {answer}",
                f"{counts['outside_05_95']} of {counts['readings']} readings",
                "about a tenth if calibrated",
                "",
            ]
        )
    threshold = d.get("pareto_k_threshold", 0.7)
    rows.append(
        [
            f"readings with Pareto k > {threshold}",
            f"{len(d.get('high_pareto_k', []))}",
            "influential readings (warning)",
            "",
        ]
    )
    parts = [
        '<section id="diagnostics"><h2>Diagnostics</h2>',
        f'<p><span class="verdict {verdict}">Diagnostics gate {verdict.upper()}</span></p>',
    ]
    if d.get("failures"):
        parts.append(
            "<p>Failed criteria:</p><ul>"
            + "".join(f"<li>{esc(f)}</li>" for f in d["failures"])
            + "</ul>"
        )
    if d.get("warnings"):
        parts.append(
            "<p>Warnings:</p><ul>" + "".join(f"<li>{esc(w)}</li>" for w in d["warnings"]) + "</ul>"
        )
    parts.append(_table(["criterion", "value", "threshold", "status"], rows, numeric={1}))
    if d.get("high_pareto_k"):
        counts = result.polls.groupby(["pollster", "question"]).size()
        alone = set(list(result.confounded))

        def why(r) -> str:
            if (r["pollster"], r["question"]) in alone and counts.get(
                (r["pollster"], r["question"]), 0
            ) == 1:
                return "structural: the only reading of its house and wording, so leaving it out leaves their offset to the prior (not a sign of an outlier)"
            return "the fit depends strongly on this reading"

        k_rows = [
            [
                esc(r["pollster"]),
                esc(r["question"]),
                esc(f"{r['field_start']} – {r['field_end']}"),
                f"{r['pareto_k']:.2f}",
                esc(why(r)),
            ]
            for r in d["high_pareto_k"]
        ]
        parts.append(
            "<h3>Influential readings (high Pareto k)</h3>"
            + _table(
                ["pollster", "question", "field period", "Pareto k", "why"], k_rows, numeric={3}
            )
        )
    parts.append(_sensitivity_part(result))
    parts.append(
        _img(
            "rank",
            figures,
            "Rank plots of the hyperparameters: the chains agree when every line stays near zero; p is the multi-chain uniformity test.",
        )
    )
    parts.append(
        _img(
            "energy",
            figures,
            "Energy: the marginal and transition distributions should overlap; E-BFMI per chain should exceed 0.3.",
        )
    )
    parts.append(
        _img(
            "ppc",
            figures,
            "Posterior predictive check per reading: each observed share against its 50% and 90% predictive intervals.",
        )
    )
    parts.append("</section>")
    return "".join(parts)


def _sensitivity_part(result: FitResult) -> str:
    """The power-scaling prior and likelihood sensitivity of the main quantities: the flagged ones
    in a table, with what a flag means (``prior_sensitivity.csv`` has every row)."""
    table = result.prior_sensitivity()
    flagged = flagged_sensitivity(table)
    lead = (
        "<h3>Prior sensitivity (power-scaling)</h3><p>How much each of "
        f"{len(table)} main quantities (the scales, the event jumps, the shares at the last reading and "
        "at the curve's end) moves when the prior or the likelihood is raised to a power near 1 "
        "(ArviZ's <code>psense</code>; above 0.05 counts as sensitive): <em>potential prior-data "
        "conflict</em> where both move it (the data pull against the prior), <em>potential strong "
        "prior / weak likelihood</em> where the prior does and the data little. "
    )
    if flagged.empty:
        return lead + "None is flagged. <code>prior_sensitivity.csv</code> has every figure.</p>"
    rows = [
        [
            esc(r["quantity"]),
            f"{r['prior']:.3f}",
            f"{r['likelihood']:.3f}",
            esc(r["diagnosis"]),
        ]
        for _, r in flagged.iterrows()
    ]
    design = result.design
    houses = len(design.free_pollsters) + len(design.paired_pollsters)  # scaled by house_sd
    questions = len(design.questions) - 1  # the reference question's effect is fixed at zero
    groups = {
        "house_sd": f"{houses} house{'s' if houses != 1 else ''}",
        "question_sd": f"{questions} question{'s' if questions != 1 else ''}",
    }
    scales = [q for q in flagged["quantity"] if q in groups]
    note = (
        " "
        + " and ".join(f"{q} is the spread of the effects of only {groups[q]}" for q in scales)
        + ": a scale of so few effects is told little by any data, so its prior matters; the "
        "house-and-wording sums above are what the data identify, whatever the scales."
        if scales
        else ""
    )
    return (
        lead
        + f"{len(flagged)} {'are' if len(flagged) != 1 else 'is'} flagged (below); "
        + "<code>prior_sensitivity.csv</code> has every figure."
        + note
        + "</p>"
        + _table(["quantity", "prior", "likelihood", "diagnosis"], rows, numeric={1, 2})
    )


def _model_section(result: FitResult) -> str:
    c = result.config
    # The kept trace's target acceptance and draws: a fit with divergent transitions is sampled
    # again higher (Sampler.retry_target_accept), one that mixed too slowly longer
    # (Sampler.retry_draws), and the report describes the draws it shows.
    attempts = sampling_attempts(result.idata)
    sampled = {**dataclasses.asdict(c.sampler), "retry_target_accept": None, "retry_draws": None}
    if attempts:  # the note says how it got there
        sampled["target_accept"] = attempts[-1]["target_accept"]
        sampled["draws"] = attempts[-1].get("draws", c.sampler.draws)
    retried = f" {esc(retry_note(attempts))}." if len(attempts) > 1 else ""
    events = ", ".join(f"{e.label} ({e.date})" for e in c.events) or "none"
    return (
        '<section id="model"><h2>The model</h2>'
        f"<p>The shares of the answers ({esc(', '.join(c.answers))}) follow a random walk on the log-odds (softmax) "
        f"scale on a {esc(c.grid)}ly grid{esc(_trend_words(result))}, so they always sum to 100%; configured events "
        "add a jump to the walk "
        f"(events: {esc(events)}). A reading measures the walk averaged over its field period, shifted by a house "
        "effect for its pollster and a wording effect for its question, both partially pooled. Its published shares "
        "follow a Dirichlet whose spread is sampling error (1/n, with unpublished sample sizes estimated) plus a "
        "non-sampling error estimated from the data; a reading that leaves answers unreported enters through the "
        "shares it does report.</p>"
        + (
            f"<p>The grid runs on to {result.design.through:%d %B %Y}, past the last reading's field end "
            f"({result.design.data_end:%d %B %Y}): there the curve is a projection, "
            f"{esc(PROJECTION_RULE[result.trend][0])}.</p>"
            if result.design.projected.any()
            else ""
        )
        + f"<p>The level of the curve is fixed {esc(result.identification)}, and the question "
        f"{esc(result.reference_question)} is the reference wording. Where one house alone asks a question, the data "
        "identify only the sum of that house's and that question's effects (see above).</p>"
        f"<p>Sampled {esc(sampling_words(sampled))}, seed {result.seed}.{retried}</p></section>"
    )


def _reading_rows(
    frame: pd.DataFrame, answers: list[str], sources, extra: list[str]
) -> list[list[str]]:
    rows = []
    for i, (_, r) in enumerate(frame.iterrows(), start=1):
        n = "" if pd.isna(r.get("n")) or r.get("n") == "" else f"{float(r['n']):,.0f}"
        start, end = pd.Timestamp(r["field_start"]), pd.Timestamp(r["field_end"])
        rows.append(
            [
                str(i),
                esc(r["pollster"]),
                esc(r["question"]),
                esc(f"{start:%Y-%m-%d} – {end:%Y-%m-%d}"),
                esc(n),
                *[esc(_share(pd.to_numeric(r.get(a), errors="coerce"))) for a in answers],
                *[esc(r.get(column, "")) for column in extra],
                source_cell(r.get("src_rows", ""), sources),
            ]
        )
    return rows


def _data_section(result: FitResult, sources, sourced_path) -> str:
    answers = list(result.config.answers)
    note = ""
    if sources is None:
        note = f'<p class="note">The sourced table {esc(sourced_path)} was not found: source rows are shown without links.</p>'
    header = ["#", "pollster", "question", "field period", "n", *answers, "flags", "sources"]
    rows = _reading_rows(result.polls, answers, sources, ["flags"])
    return (
        f'<section id="data"><h2>Data</h2><p>{len(result.polls)} readings used, in model order. Shares in percent as '
        "published (blank: not reported); n blank: sample size not published. Hover a source link for the quoted excerpt.</p>"
        + note
        + _table(
            header, rows, numeric={0, 4, *range(5, 5 + len(answers))}, nowrap={3}, css="data-table"
        )
        + "</section>"
    )


def _excluded_section(result: FitResult, sources) -> str:
    excluded = result.excluded
    if excluded is None or excluded.empty:
        return '<section id="excluded"><h2>Readings left out</h2><p>None: every reading of the table was used.</p></section>'
    answers = [a for a in result.config.answers if a in excluded]
    header = [
        "#",
        "pollster",
        "question",
        "field period",
        "n",
        *answers,
        "left out because",
        "sources",
    ]
    rows = _reading_rows(excluded, answers, sources, ["excluded_because"])
    return (
        f'<section id="excluded"><h2>Readings left out</h2><p>{len(excluded)} readings of the table were not used by this fit.</p>'
        + _table(
            header, rows, numeric={0, 4, *range(5, 5 + len(answers))}, nowrap={3}, css="data-table"
        )
        + "</section>"
    )


def _provenance_section(result: FitResult, run_id: str) -> str:
    attrs = result.idata.attrs
    keys = (
        "package_version",
        "code_source_sha256",
        "code_git_commit",
        "pymc_version",
        "log_density",
        "config_hash",
        "data_checksum",
        "data_source",
        "seed",
        "created",
    )
    rows = [[esc(k), esc(attrs.get(k, ""))] for k in keys if k in attrs]
    rows.insert(0, ["run", esc(run_id)])
    return (
        '<section id="provenance"><h2>Provenance</h2>'
        + _table(["item", "value"], rows)
        + "</section>"
    )


# -- the page ------------------------------------------------------------------------------------
def build_report(
    result: FitResult,
    figures: Mapping[str, Figure | bytes],
    *,
    run_id: str,
    sourced: str | Path | None = None,
    questions: str | Path | Mapping[str, str] | None = None,
    calibration: BacktestCalibration | None = None,
) -> str:
    """The report page as a string.

    Parameters
    ----------
    result : FitResult
    figures : mapping of str to Figure or bytes
        Figures keyed as :func:`model.report.plots.make_figures` names them, as matplotlib figures or as
        PNG bytes already rendered (e.g. the files :func:`model.report.plots.save_figures` wrote); missing
        ones are left out.
    run_id : str
        The run's name (its folder name).
    sourced : path or None
        The sourced table giving each ``src_row``'s address (the project's is
        ``data/readings_sourced.csv``; ``python -m model plots`` passes it); None: no links.
        When it is missing, the data table shows ``src_rows`` without links.
    questions : path, mapping or None
        The question codebook giving each question's family (marker shapes of the interactive chart;
        the project's is ``data/questions.csv``) and, from a file, each question's wording and what
        its answers count as (:func:`model.report.plots.question_wordings`).
    calibration : BacktestCalibration or None
        A backtest of the same readings and model (:func:`model.results.calibration.find_backtest`):
        a projected curve is shown with how the model's bands held at each horizon there. None: the
        page says it has not been measured.

    Returns
    -------
    str
    """
    sources = load_sources(sourced)
    wordings = plots.question_wordings(
        questions
    )  # read once: the headline and the questions' section
    diag = result.diagnostics()
    verdict = "passed" if diag["passed"] else "FAILED"
    title = f"Poll aggregate, run {run_id}"
    body = "".join(
        [
            f"<header><h1>{esc(title)}</h1>",
            f'<p class="meta">Data to {result.design.data_end:%d %B %Y}'
            + (
                f" · curve projected to {result.design.through:%d %B %Y}"
                if result.design.projected.any()
                else ""
            )
            + f" · {len(result.polls)} readings from "
            f"{result.polls['pollster'].nunique()} pollsters · curve {esc(result.identification)} · diagnostics {esc(verdict)}</p>",
            '<nav><a href="#headline">headline</a> · <a href="#estimate">curve</a> · <a href="#interactive">explore</a> · <a href="#closed-polls">closed polls</a> · <a href="#pooling">pooling</a> · <a href="#house-effects">house effects</a> · '
            '<a href="#question-effects">question effects</a> · <a href="#events">events</a> · <a href="#diagnostics">diagnostics</a> · '
            '<a href="#model">model</a> · <a href="#data">data</a> · <a href="#excluded">left out</a></nav></header><main>',
            _headline_section(result, calibration, wordings),
            _estimate_section(result, figures, run_id, calibration),
            _interactive_section(result, sources, questions),
            _closed_section(result),
            _pooling_section(result, figures),
            _house_section(result, figures),
            _question_section(result, figures, wordings),
            _events_section(result),
            _diagnostics_section(result, figures),
            _model_section(result),
            _data_section(result, sources, sourced),
            _excluded_section(result, sources),
            _provenance_section(result, run_id),
            "</main>",
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


#: :func:`write_report`'s default: find the backtest
#: (:func:`model.results.run_folder.backtest_for`).
FIND = object()


def write_report(
    result: FitResult,
    folder: str | Path,
    *,
    figures: Mapping[str, Figure | bytes] | None = None,
    run_id: str | None = None,
    sourced: str | Path | None = None,
    questions: str | Path | Mapping[str, str] | None = None,
    answer: str | None = None,
    calibration: BacktestCalibration | None | object = FIND,
) -> Path:
    """Write ``folder/report.html`` (atomically: a temporary file, then a rename).

    Parameters
    ----------
    result : FitResult
    folder : path
        The run folder.
    figures : mapping, optional
        Figures (or their PNG bytes) to embed; drawn with :func:`model.report.plots.make_figures` when
        not given.
    run_id : str, optional
        Defaults to the folder's name (a ``runs/latest`` link resolves to the run it points at).
    sourced, questions, answer
        Passed on to :func:`build_report` and :func:`model.report.plots.make_figures`.
    calibration : BacktestCalibration or None, optional
        The backtest to show (:func:`build_report`); by default the one
        :func:`model.results.run_folder.backtest_for` finds beside ``folder``.

    Returns
    -------
    pathlib.Path
        The report's path.

    Notes
    -----
    By default the page shows the backtest of the fit's readings and model among the run folder's
    siblings (``runs/validate-*``) that :func:`model.results.calibration.find_backtest` picks, if
    any.
    """
    folder = Path(folder)
    run_id = run_id or folder.resolve().name
    if figures is None:
        figures = plots.make_figures(result, answer=answer, questions=questions, run_id=run_id)
    page = build_report(
        result,
        figures,
        run_id=run_id,
        sourced=sourced,
        questions=questions,
        calibration=backtest_for(result, folder.resolve().parent)
        if calibration is FIND
        else calibration,
    )
    return atomic_write_text(folder / REPORT_NAME, page)
