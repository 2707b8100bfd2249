"""The interactive support curve of ``report.html``, drawn with Plotly.

One panel per answer, sharing the time axis (zooming one zooms all): the curve's posterior median
and its 50% and 90% bands, the projection past the last reading drawn paler with a dashed median
and the words "projection: no reading since <date>", configured events, and every reading as a
point (colour: house; shape: question family; size: sample size; hollow: sample size not
published). Hovering a point shows its house, question, field dates, sample size, every published
share, the share adjusted for the house and question offset, and its source addresses; clicking it
lists its source links under the chart. Clicking a house in the legend hides or shows it in every
panel; two buttons switch the points between the shares as published and as adjusted
(:meth:`model.FitResult.adjusted_readings`).

The page stays self-contained: :func:`chart_html` inlines plotly.js (``include_plotlyjs=True``),
so nothing is loaded from the network. Plotly writes the figure's JSON with ``<``, ``>`` and ``/``
escaped, so no data string can close the script; strings shown as text (names in the legend, hover
text, annotations) are escaped for Plotly's HTML-like text markup by :func:`text_escape`.
Everything here reads the fit through :class:`model.FitResult` methods only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from model.report import plots
from model.results.headline import field_span

if TYPE_CHECKING:
    from model.results.fit_result import FitResult

#: The chart's element id in the page (the sources box is ``<id>-sources``).
PLOT_ID = "interactive-curve"
#: One Plotly marker symbol per question family, in order of first appearance (as the static figure).
FAMILY_SYMBOLS = (
    "circle",
    "square",
    "triangle-up",
    "diamond",
    "triangle-down",
    "cross",
    "x",
    "triangle-left",
    "triangle-right",
    "hexagon",
)
#: Band fills: the static figure's greys (90% band palest), and their opacity past the last reading.
BAND_FILLS = {0.9: (217, 217, 217), 0.5: (158, 158, 158)}
PANEL_HEIGHT = 290
#: Room above the panels (the buttons) and below them (the date axis and the legend), in pixels.
TOP_MARGIN, BOTTOM_MARGIN = 95, 130
#: Which points the buttons show: the shares as published, or adjusted for house and question.
MODES = {"raw": "Readings as published", "adjusted": "Adjusted for house and question effects"}
#: Source addresses shown in a tooltip (the click lists them all).
TOOLTIP_SOURCES = 3

#: Runs after the plot is drawn: a click on a reading lists its source links under the chart.
#: Each point's ``customdata`` is ``[heading, [[label, url], ...]]``; only http(s) addresses become
#: links, and every string goes in as text (``textContent``), never as markup.
_CLICK_SCRIPT = """
(function () {
  var gd = document.getElementById('{plot_id}');
  if (!gd || !gd.on) { return; }
  gd.on('plotly_click', function (event) {
    var box = document.getElementById('{plot_id}-sources');  // after the chart in the page
    var point = event && event.points && event.points[0];
    if (!box || !point || !Array.isArray(point.customdata)) { return; }
    var links = Array.isArray(point.customdata[1]) ? point.customdata[1] : [];
    box.textContent = String(point.customdata[0]) + ': ';
    if (!links.length) { box.appendChild(document.createTextNode('no source listed')); }
    links.forEach(function (link, i) {
      if (i) { box.appendChild(document.createTextNode(' · ')); }
      var label = String(link[0]), url = String(link[1] || '');
      if (/^https?:\\/\\/[^\\s]+$/i.test(url)) {
        var a = document.createElement('a');
        a.href = url;
        a.rel = 'noopener noreferrer';
        a.target = '_blank';
        a.textContent = label + ' (' + url + ')';
        box.appendChild(a);
      } else {
        box.appendChild(document.createTextNode(label));
      }
    });
  });
})();
"""


def text_escape(value: Any) -> str:
    """Escape a string for Plotly's text markup (legend names, hover text, annotations).

    Plotly reads ``<br>``, ``<b>`` and a few other tags in these strings, and decodes ``&amp;``,
    ``&lt;``, ``&gt;`` and numeric entities; escaping ``& < > " '`` makes any data string show as
    written. Missing values become an empty string.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return (
        str(value)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def is_web_address(url: str) -> bool:
    """Whether ``url`` is an ``http``/``https`` address with a host (the only kind made a link)."""
    parts = urlsplit(str(url).strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _short_address(url: str, width: int = 60) -> str:
    parts = urlsplit(url.strip())
    text = parts.netloc + parts.path + (f"?{parts.query}" if parts.query else "")
    return text if len(text) <= width else text[: width - 1] + "…"


def source_ids(src_rows: Any) -> list[str]:
    """The ``src_row`` ids of one reading: its ``src_row`` field split at ``;`` (none when empty)."""
    return [s.strip() for s in str(src_rows or "").split(";") if s.strip()]


def reading_sources(
    src_rows: Any, sources: Mapping[str, Mapping[str, str]] | None
) -> list[tuple[str, str]]:
    """``(src_row, address)`` for each ``src_row`` of a reading; the address is ``""`` when the
    sourced table lacks the row or its address is not http(s)."""
    out = []
    for src in source_ids(src_rows):
        url = str((sources or {}).get(src, {}).get("url", "") or "").strip()
        out.append((src, url if is_web_address(url) else ""))
    return out


def _rgba(rgb: tuple[int, int, int], alpha: float) -> str:
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:g})"


def _iso(values) -> list[str]:
    return [f"{pd.Timestamp(v):%Y-%m-%d %H:%M}" for v in values]


def _share_text(value) -> str:
    return "not reported" if pd.isna(value) else f"{float(value):g}%"


def _points(result: FitResult, questions, sources) -> pd.DataFrame:
    """One row per (reading, reported answer): where it is drawn, its hover text, its click data."""
    table = result.adjusted_readings()
    if table.empty:
        return table.assign(hover=[], custom=[], family=[])
    polls = result.polls.set_index("poll_id")
    families = dict(zip(result.polls["question"], plots.family_of(result, questions)))
    answers = list(result.config.answers)
    reference = (result.reference_pollster, result.reference_question)
    hover, custom = [], []
    for _, row in table.iterrows():
        poll = polls.loc[row["poll_id"]]
        span = field_span(poll["field_start"], poll["field_end"], dash="–")
        n = (
            "n not published"
            if pd.isna(poll.get("n"))
            else f"n = {float(poll['n']):,.0f} respondents"
        )
        closed = str(poll.get("closed", "")).strip().lower() == "true"
        if (row["pollster"], row["question"]) == reference:
            adjustment = ": no adjustment (the curve's own house and question)"
        else:
            adjustment = (
                f" adjusted to {text_escape(result.compared_with)}: {row['adjusted']:.1f}% "
                f"(house + question offset {row['offset']:+.1f} points)"
            )
        links = reading_sources(poll.get("src_rows", ""), sources)
        lines = [
            f"<b>{text_escape(row['pollster'])}</b>",
            f"question {text_escape(row['question'])}"
            + (" (closed poll, known from a leak)" if closed else ""),
            f"field {text_escape(span)}",
            text_escape(n),
            "published: " + " · ".join(f"{text_escape(a)} {_share_text(poll[a])}" for a in answers),
            f"{text_escape(row['answer'])}{adjustment}",
        ]
        for src, url in links[:TOOLTIP_SOURCES]:
            where = _short_address(url) if url else "no address in the sourced table"
            lines.append(f"source {text_escape(src)}: {text_escape(where)}")
        if len(links) > TOOLTIP_SOURCES:
            lines.append(f"and {len(links) - TOOLTIP_SOURCES} more sources")
        lines.append("click the point to list its source links under the chart")
        hover.append("<br>".join(lines))
        heading = f"{row['pollster']}, {row['question']}, field {span}"
        custom.append([heading, [[src, url] for src, url in links]])
    return table.assign(
        hover=hover,
        custom=custom,
        family=[families.get(q, q) for q in table["question"]],
    )


def _curve_hover(result: FitResult, answer: str, bands: Mapping[float, pd.DataFrame]) -> list:
    """Hover text of every grid cell of one answer's curve: median, both intervals, what it is."""
    inner, outer = sorted(bands)
    a = bands[inner][bands[inner]["answer"] == answer].reset_index(drop=True)
    b = bands[outer][bands[outer]["answer"] == answer].reset_index(drop=True)
    grid = result.config.grid
    what = text_escape(f"the curve {result.identification}, asking {result.reference_question}")
    since = f"{result.design.data_end:%d %b %Y}"
    out = []
    for i in range(len(a)):
        note = (
            f"projected: no reading since {since} (the model's random walk, no data)"
            if bool(a["projected"].iloc[i])
            else "estimated from the readings"
        )
        out.append(
            f"<b>{text_escape(answer)}</b>, {grid} from {pd.Timestamp(a['date'].iloc[i]):%d %b %Y}<br>"
            f"median {a['median'].iloc[i]:.1f}%<br>"
            f"{round(100 * inner)}% interval {a['lower'].iloc[i]:.1f}–{a['upper'].iloc[i]:.1f}<br>"
            f"{round(100 * outer)}% interval {b['lower'].iloc[i]:.1f}–{b['upper'].iloc[i]:.1f}<br>"
            f"{note}<br>{what}"
        )
    return out


def _vertical_line(fig, when: str, xref: str, yref: str, *, colour: str, dash: str) -> None:
    """A vertical line at ``when`` across one panel (``yref`` its y domain)."""
    fig.add_shape(
        type="line",
        x0=when,
        x1=when,
        y0=0,
        y1=1,
        xref=xref,
        yref=yref,
        line={"color": colour, "width": 1, "dash": dash},
    )


def _axis(row: int, kind: str) -> str:
    return kind if row == 1 else f"{kind}{row}"


def support_figure(
    result: FitResult,
    *,
    questions: str | Path | Mapping[str, str] | None = None,
    sources: Mapping[str, Mapping[str, str]] | None = None,
    intervals: tuple[float, float] = (0.5, 0.9),
) -> go.Figure:
    """The interactive support curve, one panel per answer.

    Parameters
    ----------
    result : FitResult
    questions : path, mapping or None
        Question codebook giving each question's family (marker shape); see
        :func:`model.report.plots.question_families`.
    sources : mapping or None
        ``src_row`` -> ``{"url": ...}``, as :func:`model.report.html.load_sources` reads the
        sourced table; without it the tooltips name the source rows without addresses.
    intervals : tuple of float
        The two band widths (default 50% and 90%).

    Returns
    -------
    plotly.graph_objects.Figure
        Reading traces carry ``meta`` ``{"kind": "readings", "pollster": ..., "answer": ...}``,
        curve traces ``{"kind": "median" | "projected_median" | "band<width>" | "projected_band<width>", ...}``.
    """
    answers = list(result.config.answers)
    design = result.design
    bands = {interval: result.support_curve(interval) for interval in sorted(intervals)}
    colours = plots.house_colours(result)
    points = _points(result, questions, sources)
    symbols = {
        f: FAMILY_SYMBOLS[i % len(FAMILY_SYMBOLS)]
        for i, f in enumerate(pd.unique(plots.family_of(result, questions)))
    }
    projected = bool(design.projected.any())

    fig = make_subplots(
        rows=len(answers),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06 if len(answers) > 1 else 0.0,
        subplot_titles=[f"<b>{text_escape(a)}</b>" for a in answers],
    )
    reading_traces: list[int] = []
    raw_y: list[list[float]] = []
    adjusted_y: list[list[float]] = []
    shown_in_legend: set[str] = set()
    for row, answer in enumerate(answers, start=1):
        for interval in sorted(intervals, reverse=True):
            part = bands[interval]
            data, ahead = plots.split_projection(part[part["answer"] == answer])
            width = round(100 * interval)
            for piece, alpha, kind in (
                (data, 1.0, f"band{width}"),
                (ahead, plots.PROJECTED_ALPHA, f"projected_band{width}"),
            ):
                if not len(piece):
                    continue
                dates = _iso(piece["date"])
                fig.add_trace(
                    go.Scatter(
                        x=dates + dates[::-1],
                        y=list(piece["upper"]) + list(piece["lower"])[::-1],
                        fill="toself",
                        fillcolor=_rgba(BAND_FILLS.get(interval, (190, 190, 190)), alpha),
                        line={"width": 0},
                        mode="lines",
                        hoverinfo="skip",
                        showlegend=False,
                        name=f"{width}% interval",
                        meta={"kind": kind, "answer": answer},
                    ),
                    row=row,
                    col=1,
                )
        part = bands[max(intervals)]
        texts = _curve_hover(result, answer, bands)
        series = part[part["answer"] == answer].reset_index(drop=True)
        data, ahead = plots.split_projection(series)
        for piece, dash, kind in ((data, "solid", "median"), (ahead, "dash", "projected_median")):
            if not len(piece):
                continue
            fig.add_trace(
                go.Scatter(
                    x=_iso(piece["date"]),
                    y=list(piece["median"]),
                    mode="lines",
                    line={"color": "black", "width": 2, "dash": dash},
                    text=[texts[i] for i in piece.index],
                    hovertemplate="%{text}<extra></extra>",
                    showlegend=False,
                    name="median" if kind == "median" else "median (projection)",
                    meta={"kind": kind, "answer": answer},
                ),
                row=row,
                col=1,
            )
        part = points[points["answer"] == answer] if len(points) else points
        for pollster in colours:
            group = part[part["pollster"] == pollster] if len(part) else part
            if not len(group):
                continue
            known = group["n"].notna().to_numpy()
            sizes = np.where(
                known, 5 + np.sqrt(pd.to_numeric(group["n"], errors="coerce").fillna(0)) / 6, 10
            )
            marker_symbols = [
                symbols.get(f, "circle") + ("" if k else "-open")
                for f, k in zip(group["family"], known)
            ]
            fig.add_trace(
                go.Scatter(
                    x=_iso(group["midpoint"]),
                    y=list(group["raw"]),
                    mode="markers",
                    marker={
                        "color": colours[pollster],
                        "size": [float(s) for s in sizes],
                        "symbol": marker_symbols,
                        "line": {"color": "black", "width": 0.6},
                        "opacity": 0.9,
                    },
                    text=list(group["hover"]),
                    customdata=list(group["custom"]),
                    hovertemplate="%{text}<extra></extra>",
                    name=text_escape(pollster),
                    legendgroup=f"house:{pollster}",
                    showlegend=pollster not in shown_in_legend,
                    meta={"kind": "readings", "pollster": pollster, "answer": answer},
                ),
                row=row,
                col=1,
            )
            shown_in_legend.add(pollster)
            reading_traces.append(len(fig.data) - 1)
            raw_y.append(list(group["raw"]))
            adjusted_y.append(list(group["adjusted"]))
        fig.update_yaxes(title_text=f"{text_escape(answer)} (%)", row=row, col=1)

    for row in range(1, len(answers) + 1):
        xref, yref = _axis(row, "x"), f"{_axis(row, 'y')} domain"
        for event in result.config.events:
            when = f"{pd.Timestamp(event.date):%Y-%m-%d}"
            _vertical_line(fig, when, xref, yref, colour="rgb(64,64,64)", dash="dash")
            if row == 1:
                fig.add_annotation(
                    x=when,
                    y=1,
                    xref=xref,
                    yref=yref,
                    text=text_escape(event.label),
                    showarrow=False,
                    xanchor="left",
                    yanchor="top",
                    font={"size": 11, "color": "rgb(64,64,64)"},
                    bgcolor="rgba(255,255,255,0.8)",
                )
        if projected:
            when = f"{design.data_end:%Y-%m-%d}"
            _vertical_line(fig, when, xref, yref, colour="rgb(115,115,115)", dash="dot")
            fig.add_annotation(
                x=f"{design.time[-1]:%Y-%m-%d}",
                y=1,
                xref=xref,
                yref=yref,
                text=text_escape(plots.projection_label(design.data_end)),
                showarrow=False,
                xanchor="right",
                yanchor="top",
                font={"size": 11, "color": "rgb(64,64,64)"},
                bgcolor="rgba(255,255,255,0.8)",
                name="projection_label",
            )

    height = TOP_MARGIN + BOTTOM_MARGIN + PANEL_HEIGHT * len(answers)
    plot_px = height - TOP_MARGIN - BOTTOM_MARGIN
    fig.update_layout(
        template="simple_white",
        height=height,
        margin={"l": 70, "r": 20, "t": TOP_MARGIN, "b": BOTTOM_MARGIN},
        hovermode="closest",
        hoverlabel={"align": "left", "bgcolor": "white", "font": {"size": 12}},
        legend={
            "title": {"text": "Pollster (click to hide or show; double-click: only this one)"},
            "orientation": "h",
            "x": 0,
            "y": -70 / plot_px,
            "yanchor": "top",
            "groupclick": "togglegroup",
        },
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "x": 0,
                "y": 1 + 45 / plot_px,
                "xanchor": "left",
                "yanchor": "bottom",
                "showactive": True,
                "active": 0,
                "buttons": [
                    {
                        "label": MODES["raw"],
                        "method": "restyle",
                        "args": [{"y": raw_y}, reading_traces],
                    },
                    {
                        "label": MODES["adjusted"],
                        "method": "restyle",
                        "args": [{"y": adjusted_y}, reading_traces],
                    },
                ],
            }
        ],
    )
    fig.update_xaxes(showgrid=False)
    fig.update_yaxes(showgrid=True, gridcolor="rgb(235,235,235)")
    fig.update_xaxes(
        title_text="date (readings at the middle of their field period)", row=len(answers), col=1
    )
    return fig


def chart_html(
    result: FitResult,
    *,
    questions: str | Path | Mapping[str, str] | None = None,
    sources: Mapping[str, Mapping[str, str]] | None = None,
    div_id: str = PLOT_ID,
) -> str:
    """The chart as an HTML fragment with plotly.js inlined, and the box its clicks fill.

    Parameters
    ----------
    result : FitResult
    questions, sources
        See :func:`support_figure`.
    div_id : str
        The chart element's id (the sources box is ``<div_id>-sources``).

    Returns
    -------
    str
        A ``<div>`` holding the plot (plotly.js inlined: the fragment needs nothing from the
        network), followed by the sources box.
    """
    fig = support_figure(result, questions=questions, sources=sources)
    chart = fig.to_html(
        include_plotlyjs=True,
        full_html=False,
        div_id=div_id,
        default_width="100%",
        default_height=f"{fig.layout.height}px",
        post_script=_CLICK_SCRIPT,
        config={
            "displaylogo": False,
            "responsive": True,
            "modeBarButtonsToRemove": ["select2d", "lasso2d"],
            "toImageButtonOptions": {"filename": "support-curve"},
        },
    )
    box = (
        f'<p id="{div_id}-sources" class="chart-sources" aria-live="polite">'
        "Click a reading to list its source links here.</p>"
    )
    return chart + box
