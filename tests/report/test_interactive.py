"""The interactive chart of ``report.html`` (Plotly), built from the fake fit (no sampling, no browser).

What a reader does with it is checked in a real browser by ``test_browser.py``; here, that the
figure holds what it must: every reading with its tooltip, the bands and the projection, a legend
entry per house, the raw/adjusted switch, escaped strings and an offline page.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from model.report import html as report
from model.report import interactive, plots
from tests.report.fakes import ANSWERS, EVENT, HOUSE_A, fake_result

SOURCES = {
    "sim-00": {
        "url": "https://example.org/poll/0?a=1&b=<2>",
        "excerpt": "",
        "pollster_as_reported": "",
    },
    "sim-01": {"url": "javascript:alert(1)", "excerpt": "", "pollster_as_reported": ""},
    "sim-04": {"url": "https://example.org/house-a", "excerpt": "", "pollster_as_reported": ""},
}


@pytest.fixture(scope="module")
def result():
    return fake_result()


@pytest.fixture(scope="module")
def projected():
    return fake_result(through="2023-08-31")


@pytest.fixture(scope="module")
def figure(result):
    return interactive.support_figure(result, sources=SOURCES)


@pytest.fixture(scope="module")
def projected_figure(projected):
    return interactive.support_figure(projected, sources=SOURCES)


def traces(fig, kind, answer=None):
    return [
        t
        for t in fig.data
        if t.meta["kind"] == kind and (answer is None or t.meta["answer"] == answer)
    ]


def test_every_reported_reading_is_a_point_in_its_answers_panel(result, figure):
    polls = result.polls
    for row, answer in enumerate(ANSWERS, start=1):
        points = traces(figure, "readings", answer)
        assert sum(len(t.y) for t in points) == polls[answer].notna().sum()
        assert {t.yaxis for t in points} == {"y" if row == 1 else f"y{row}"}
        for t in points:
            part = polls[(polls["pollster"] == t.meta["pollster"]) & polls[answer].notna()]
            assert sorted(t.y) == sorted(part[answer])
            # hollow symbols exactly for the readings whose sample size is not published
            assert sum(s.endswith("-open") for s in t.marker.symbol) == part["n"].isna().sum()


def test_the_tooltip_gives_house_dates_n_shares_and_source(result, figure):
    talks = {t.meta["pollster"]: t for t in traces(figure, "readings", "talks")}
    house_b = talks["House B"]
    first = house_b.text[0]  # the closed reading of 4-10 Jan 2023, n not published, source sim-00
    assert first.startswith("<b>House B</b><br>question Q_ALT (closed poll, known from a leak)")
    assert "field 4–10 Jan 2023" in first and "n not published" in first
    assert "published: talks 64% · continue 20% · undecided 16%" in first
    offset = result.adjusted_readings().iloc[0]
    assert (
        f"talks adjusted to House &lt;A&gt; &amp; Co asking Q_MAIN: {offset['adjusted']:.1f}% "
        f"(house + question offset {offset['offset']:+.1f} points)"
    ) in first
    # the source address, escaped for Plotly's text markup
    assert "source sim-00: example.org/poll/0?a=1&amp;b=&lt;2&gt;" in first
    second = house_b.text[
        1
    ]  # n = 1,225; two source rows: one with a javascript: address, one unknown
    assert "n = 1,225 respondents" in second
    assert "source sim-01: no address in the sourced table" in second
    assert "source sim-99: no address in the sourced table" in second
    # click data: heading and (label, address) pairs; only http(s) addresses are kept
    assert house_b.customdata[0][0] == "House B, Q_ALT, field 4–10 Jan 2023"
    assert [list(p) for p in house_b.customdata[0][1]] == [
        ["sim-00", "https://example.org/poll/0?a=1&b=<2>"]
    ]
    assert [list(p) for p in house_b.customdata[1][1]] == [["sim-01", ""], ["sim-99", ""]]
    reference = talks[HOUSE_A].text[0]
    assert reference.startswith("<b>House &lt;A&gt; &amp; Co</b>")
    assert "talks: no adjustment (the curve's own house and question)" in reference
    assert "published: talks 54% · continue 32% · undecided 14%" in reference


def test_a_reading_that_leaves_an_answer_out_says_not_reported(figure):
    texts = [text for t in traces(figure, "readings", "talks") for text in t.text]
    assert sum("undecided not reported" in text for text in texts) == 3


def test_each_house_has_one_legend_entry_toggling_it_in_every_panel(result, figure):
    points = traces(figure, "readings")
    shown = [t.meta["pollster"] for t in points if t.showlegend]
    assert sorted(shown) == sorted(result.polls["pollster"].unique())
    assert {t.legendgroup for t in points if t.meta["pollster"] == HOUSE_A} == {f"house:{HOUSE_A}"}
    assert {t.name for t in points if t.meta["pollster"] == HOUSE_A} == {"House &lt;A&gt; &amp; Co"}
    assert not [t for t in figure.data if t.meta["kind"] != "readings" and t.showlegend]
    assert figure.layout.legend.groupclick == "togglegroup"


def test_the_buttons_switch_the_points_between_raw_and_adjusted(result, figure):
    (menu,) = figure.layout.updatemenus
    raw, adjusted = menu.buttons
    assert (raw.label, adjusted.label) == (
        "Readings as published",
        "Adjusted for house and question effects",
    )
    points = traces(figure, "readings")
    indices = [i for i, t in enumerate(figure.data) if t.meta["kind"] == "readings"]
    assert raw.method == adjusted.method == "restyle"
    assert list(raw.args[1]) == list(adjusted.args[1]) == indices
    table = result.adjusted_readings()
    for t, y_raw, y_adjusted in zip(points, raw.args[0]["y"], adjusted.args[0]["y"]):
        part = table[
            (table["pollster"] == t.meta["pollster"]) & (table["answer"] == t.meta["answer"])
        ]
        assert list(y_raw) == list(t.y) == list(part["raw"])
        assert np.allclose(y_adjusted, part["adjusted"])
    assert menu.active == 0


def test_bands_and_median_follow_the_curve(result, figure):
    curve90, curve50 = result.support_curve(0.9), result.support_curve(0.5)
    for answer in ANSWERS:
        (median,) = traces(figure, "median", answer)
        part = curve90[curve90["answer"] == answer]
        assert np.allclose(median.y, part["median"])
        (band90,) = traces(figure, "band90", answer)
        (band50,) = traces(figure, "band50", answer)
        inner = curve50[curve50["answer"] == answer]
        assert np.allclose(band90.y, [*part["upper"], *part["lower"][::-1]])
        assert np.allclose(band50.y, [*inner["upper"], *inner["lower"][::-1]])
        assert band90.fill == "toself" and band90.hoverinfo == "skip"
        assert "estimated from the readings" in median.text[-1]
        assert "as House &lt;A&gt; &amp; Co would measure it, asking Q_MAIN" in median.text[-1]
    assert not traces(figure, "projected_median") and not traces(figure, "projected_band90")
    assert not [a for a in figure.layout.annotations if a.text.startswith("projection")]
    assert [a.text for a in figure.layout.annotations if a.text == EVENT.label] == [EVENT.label]


def test_the_projection_is_paler_dashed_and_labelled(projected, projected_figure):
    data_end = projected.design.data_end
    label = f"projection: no reading since {data_end:%d %b %Y}"
    labels = [a for a in projected_figure.layout.annotations if a.text == label]
    assert len(labels) == len(ANSWERS)
    for answer in ANSWERS:
        (median,) = traces(projected_figure, "median", answer)
        (ahead,) = traces(projected_figure, "projected_median", answer)
        assert ahead.line.dash == "dash" and median.line.dash == "solid"
        assert ahead.x[0] == median.x[-1]  # the dashed part starts where the solid one ends
        assert ahead.x[-1].startswith(f"{projected.design.time[-1]:%Y-%m-%d}")
        assert all(f"projected: no reading since {data_end:%d %b %Y}" in t for t in ahead.text[1:])
        (band,) = traces(projected_figure, "band90", answer)
        (paler,) = traces(projected_figure, "projected_band90", answer)
        alpha = float(re.search(r",([\d.]+)\)$", paler.fillcolor).group(1))
        assert alpha == pytest.approx(plots.PROJECTED_ALPHA) and band.fillcolor.endswith(",1)")


def test_text_escape_shows_any_string_as_written():
    assert interactive.text_escape("<b>x</b> & 'y' \"z\"") == (
        "&lt;b&gt;x&lt;/b&gt; &amp; &#39;y&#39; &#34;z&#34;"
    )
    assert interactive.text_escape(None) == "" and interactive.text_escape(float("nan")) == ""
    assert interactive.is_web_address("https://example.org/x")
    assert not interactive.is_web_address("javascript:alert(1)")
    assert not interactive.is_web_address("https://")


def test_chart_html_is_offline_and_no_data_string_closes_the_script(result):
    hostile = {**SOURCES, "sim-02": {"url": "https://example.org/x?q=</script><script>alert(1)//"}}
    fragment = interactive.chart_html(result, sources=hostile)
    assert "plotly.js v" in fragment  # inlined, not fetched
    assert not re.findall(r"""src\s*=\s*["']?https?:""", fragment)
    assert fragment.count("<script") == fragment.count("</script>")
    assert "</script><script>alert(1)" not in fragment
    assert 'id="interactive-curve"' in fragment and 'id="interactive-curve-sources"' in fragment
    assert "plotly_click" in fragment  # the click lists a reading's sources


def test_report_holds_the_chart_in_its_own_section(result):
    page = report.build_report(result, {}, run_id="run-test", sourced=None)
    section = page[page.index('<section id="interactive">') :]
    section = section[: section.index("</section>")]
    assert "Explore the curve and the readings" in section and "Plotly.newPlot" in section
    assert f"as {report.esc(HOUSE_A)} would measure it" in section
    assert page.count("plotly.js v") == 1
    assert not re.findall(r"""src\s*=\s*["']?https?:""", page)
