"""Charts for an article: ``figures/headline.png`` and ``.svg`` and the wide curve table (fake fit, no sampling)."""

from __future__ import annotations

import struct

import matplotlib.pyplot as plt
import numpy as np
import pytest

from model.report import plots
from tests.report.fakes import ANSWERS, HOUSE_A, PNG_SIGNATURE, fake_result, passed


@pytest.fixture(scope="module")
def projected():
    return fake_result(through="2023-08-31")


@pytest.fixture(scope="module")
def article(projected):
    fig = plots.plot_headline(projected, run_id="run-test")
    yield fig
    plt.close(fig)


def texts(fig, gid):
    found = [t.get_text() for t in fig.texts if t.get_gid() == gid]
    return found + [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == gid]


def test_headline_files_are_1200_by_675_pixels(article, tmp_path):
    png, svg = plots.save_headline(article, tmp_path / "figures")
    assert (png.name, svg.name) == ("headline.png", "headline.svg")
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert struct.unpack(">II", data[16:24]) == plots.HEADLINE_PIXELS == (1200, 675)
    head = svg.read_text()[:1500]
    # SVG lengths in points: 900 x 506.25 pt is 1200 x 675 CSS pixels (1 pt = 4/3 px)
    assert 'width="900pt" height="506.25pt"' in head
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "headline.png",
        "headline.svg",
    ]  # no temporary files left


def test_title_states_the_finding_from_the_headline(projected, article):
    head = projected.headline()
    talks = head["answers"]["talks"]["as_of"]
    expected = (
        f"Support for talks: {talks['median']:.0f}% (90% interval {talks['lower']:.0f}–"
        f"{talks['upper']:.0f}) on 31 Aug 2023 (projected)"
    )
    assert plots.headline_title(projected) == expected == article.get_suptitle()


def test_subtitle_gives_the_last_reading_the_projection_and_what_the_curve_is(projected, article):
    (subtitle,) = texts(article, "subtitle")
    subtitle = subtitle.replace("\n", " ")
    last = projected.headline()["last_reading"]
    assert f"Last reading: {last['pollster']}, " in subtitle
    assert "projected" in subtitle and f"{projected.headline()['days_past_last_reading']} days" in (
        subtitle
    )
    assert f"as {HOUSE_A} would measure it, asking Q_MAIN" in subtitle
    assert "50% and 90% intervals" in subtitle


def test_source_line_lists_the_houses_in_the_fit(projected, article):
    (source,) = texts(article, "source")
    source = source.replace("\n", " ")
    # most readings first: House B has 7, House A 3
    assert source.startswith(
        f"Source: House B, {HOUSE_A}; model: Bayesian aggregation with house and wording effects, "
        "this project."
    )
    assert "run-test" in source
    assert plots.headline_source_line(projected, credit="the poll-model repository").endswith(
        "wording effects, the poll-model repository."
    )


def test_the_projection_is_marked_and_each_answer_labelled(projected, article):
    (ax,) = article.axes
    data_end = projected.design.data_end
    assert texts(article, "projection_label") == [
        f"projection:\nno reading since {data_end:%d %b %Y}"
    ]
    assert len([line for line in ax.lines if line.get_gid() == "projected_median"]) == len(ANSWERS)
    assert all(
        line.get_linestyle() == "--" for line in ax.lines if line.get_gid() == "projected_median"
    )
    gids = {c.get_gid() for c in ax.collections}
    assert {"band90", "band50", "projected_band90", "projected_band50", "readings"} <= gids
    latest = projected.latest_estimate(0.9).set_index("answer")["median"]
    assert texts(article, "end_label") == [f"{a} {latest[a]:.0f}%" for a in ANSWERS]


def test_a_chart_of_a_run_the_gate_refused_says_so_on_itself(projected, article):
    """The fake fit failed the gate (3 divergent transitions): the chart for an article carries the
    words across its panel; the same fit with the gate passed does not."""
    assert projected.headline()["gate"] == {
        "passed": False,
        "failures": ["3 divergent transitions (expected none)"],
    }
    assert texts(article, "gate_failed") == ["DIAGNOSTICS FAILED\nnot for publication"]
    passing = passed(projected)
    assert passing.headline()["gate"] == {"passed": True, "failures": []}
    fig = plots.plot_headline(passing)
    try:
        assert not texts(fig, "gate_failed")
    finally:
        plt.close(fig)


def test_an_unprojected_chart_has_no_projection_marks():
    result = fake_result()
    fig = plots.plot_headline(result)
    try:
        assert not texts(fig, "projection_label")
        assert not [line for line in fig.axes[0].lines if line.get_gid() == "projected_median"]
        (subtitle,) = texts(fig, "subtitle")
        assert "the curve ends there" in subtitle
    finally:
        plt.close(fig)


def test_unknown_answer_is_refused(projected):
    with pytest.raises(ValueError, match=r"answer 'peace' is not one of the fitted answers"):
        plots.plot_headline(projected, answers=["peace"])


def test_curve_wide_has_one_row_per_date(projected):
    wide = projected.curve_wide()
    curve = projected.support_curve()
    assert list(wide.columns) == [
        "date",
        *[f"{a}_{s}" for a in ANSWERS for s in ("median", "lower_90", "upper_90")],
        "projected",
        "house",
        "question",
    ]
    assert len(wide) == projected.posterior.sizes["time"] and wide["date"].is_monotonic_increasing
    for answer in ANSWERS:
        part = curve[curve["answer"] == answer].sort_values("date")
        assert np.allclose(wide[f"{answer}_median"], part["median"])
        assert np.allclose(wide[f"{answer}_lower_90"], part["lower"])
        assert np.allclose(wide[f"{answer}_upper_90"], part["upper"])
    assert list(wide["projected"]) == list(projected.design.projected)
    assert wide["projected"].any() and not wide["projected"].all()
    assert list(projected.curve_wide(0.5).columns)[1:4] == [
        "talks_median",
        "talks_lower_50",
        "talks_upper_50",
    ]


def test_every_reading_and_end_label_is_inside_the_chart():
    # A reading far above the curve's band: the axis reaches it; the end labels fit the figure.
    result = fake_result(through="2023-08-31")
    result.polls.loc[0, ANSWERS[0]] = 97.0
    fig = plots.plot_headline(result, run_id="run-test")
    try:
        (ax,) = fig.axes
        assert ax.get_ylim()[1] >= 97.0
        fig.canvas.draw()
        labels = [t for t in ax.texts if t.get_gid() == "end_label"]
        assert len(labels) == len(ANSWERS)
        assert all(t.get_window_extent().x1 <= fig.get_window_extent().x1 for t in labels)
    finally:
        plt.close(fig)
