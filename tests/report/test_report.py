"""Figures, report and ``plots`` command on a small fake posterior (no sampling).

The fake (``tests/report/fakes.py``): 10 simulated readings by two houses (``House A`` the reference, asking ``Q_MAIN``;
``House B`` asking only ``Q_ALT``, so the two effects are identified only as their sum),
three answers, a weekly grid of about 20 cells and one event; a posterior of 2 chains x 60 draws
built directly with xarray.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from model import cli
from model.data.polls import PollDataError
from model.report import html as report
from model.report import plots
from model.results import headline
from model.results.diagnostics import gate_warning
from model.results.headline import against_average_house
from model.results.run_folder import write_run
from model.results.text import summary_text
from tests.report.fakes import (
    ANSWERS,
    CHAINS,
    EVENT,
    HOUSE_A,
    PNG_SIGNATURE,
    fake_result,
    passed,
    with_trend,
)
from tests.results.test_calibration import (
    answer_rows,
    backtest_beside,
    target_rows,
    with_latest,
)


@pytest.fixture(scope="module")
def result():
    return fake_result()


@pytest.fixture(autouse=True)
def close_new_figures():
    """Close the figures a test opens (the module's shared figures stay open)."""
    before = set(plt.get_fignums())
    yield
    for number in set(plt.get_fignums()) - before:
        plt.close(number)


@pytest.fixture(scope="module")
def figures(result):
    figs = plots.make_figures(result, questions=None, run_id="run-test")
    yield figs
    for fig in figs.values():
        plt.close(fig)


@pytest.fixture(scope="module")
def saved(figures, tmp_path_factory):
    """The figures written once by save_figures: (folder, files written)."""
    folder = tmp_path_factory.mktemp("run") / "figures"
    return folder, plots.save_figures(figures, folder)


@pytest.fixture(scope="module")
def pngs(saved):
    return {path.stem: path.read_bytes() for path in saved[1] if path.suffix == ".png"}


def reading_points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if c.get_gid() == "readings")


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


@pytest.fixture(scope="module")
def projected():
    return fake_result(through="2023-08-31")


def test_fake_has_what_the_figures_must_show(result):
    polls = result.polls
    assert (
        len(polls) == 10 and polls["pollster"].nunique() == 2 and polls["question"].nunique() == 2
    )
    assert polls["n"].isna().any() and polls["n"].notna().any()
    assert polls["undecided"].isna().any()
    assert 15 <= result.posterior.sizes["time"] <= 22
    assert list(result.confounded) == [("House B", "Q_ALT")]


# -- support curve -------------------------------------------------------------------------------
def test_support_curve_has_one_panel_per_answer_with_every_reported_reading(result, figures):
    fig = figures["support_curve"]
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == list(ANSWERS)
    polls = result.polls
    for ax, answer in zip(axes, ANSWERS):
        assert reading_points(ax) == polls[answer].notna().sum()
        hollow = [
            c for c in ax.collections if c.get_gid() == "readings" and len(c.get_facecolors()) == 0
        ]
        assert (
            sum(len(c.get_offsets()) for c in hollow)
            == (polls[answer].notna() & polls["n"].isna()).sum()
        )
        assert answer in ax.get_ylabel()
        assert len([line for line in ax.lines if line.get_gid() == "median"]) == 1
        assert {c.get_gid() for c in ax.collections} >= {"band50", "band90", "readings"}
        assert len([line for line in ax.lines if line.get_gid() == "event"]) == 1
        assert [t.get_text() for t in ax.texts] == [EVENT.label]
    assert axes[-1].get_xlabel().startswith("date")


def test_support_curve_title_gives_latest_estimate_and_caption_the_run(result, figures):
    fig = figures["support_curve"]
    title = fig.get_suptitle()
    last = result.latest_estimate(0.9)
    assert "Latest estimate" in title and "90% intervals" in title
    for _, row in last.iterrows():
        assert (
            f"{row['answer']} {row['median']:.1f}% [{row['lower']:.1f}–{row['upper']:.1f}]" in title
        )
    caption = fig.get_supxlabel()
    assert "run-test" in caption
    assert f"{result.polls['field_end'].max():%d %b %Y}" in caption
    assert f"as {HOUSE_A} would measure it" in caption.replace("\n", " ")


def band_colours_match_legend(fig) -> bool:
    """Each band's colour in the panels is the colour of its legend entry."""
    from matplotlib.colors import to_hex

    drawn = {
        c.get_gid(): to_hex(c.get_facecolor()[0])
        for c in fig.axes[0].collections
        if str(c.get_gid()).startswith("band")
    }
    legend = fig.legends[0]
    shown = {
        f"band{t.get_text().split('%')[0]}": to_hex(h.get_facecolor())
        for t, h in zip(legend.get_texts(), legend.legend_handles)
        if t.get_text().endswith("% interval")
    }
    return bool(drawn) and drawn == shown


def test_band_colours_match_their_legend_entries(figures):
    assert band_colours_match_legend(figures["support_curve"])
    assert band_colours_match_legend(figures["adjusted"])


def test_support_curve_legend_names_houses_families_and_unknown_n(figures):
    texts = legend_texts(figures["support_curve"])
    for expected in (
        HOUSE_A,
        "House B",
        "Q_MAIN",
        "Q_ALT",
        "n not published (hollow)",
        "50% interval",
        "90% interval",
        "event",
        "posterior median",
    ):
        assert expected in texts
    assert any(t.startswith("n = ") for t in texts)


def test_support_curve_for_one_answer_and_families_from_the_codebook(result, tmp_path):
    codebook = tmp_path / "questions.csv"
    pd.DataFrame(
        {"question_id": ["Q_MAIN", "Q_ALT"], "family": ["main_family", "alt_family"]}
    ).to_csv(codebook, index=False)
    fig = plots.plot_support(result, answer="talks", questions=codebook)
    assert len(fig.axes) == 1 and fig.axes[0].get_title(loc="left") == "talks"
    assert reading_points(fig.axes[0]) == result.polls["talks"].notna().sum()
    assert "continue" not in fig.get_suptitle()
    texts = legend_texts(fig)
    assert "main_family" in texts and "alt_family" in texts and "Q_MAIN" not in texts
    shapes = {
        tuple(map(tuple, c.get_paths()[0].vertices.round(3)))
        for c in fig.axes[0].collections
        if c.get_gid() == "readings"
    }
    assert len(shapes) == 2


def test_missing_codebook_falls_back_to_question_ids(result, tmp_path):
    families = plots.family_of(result, tmp_path / "no-such.csv")
    assert list(families) == list(result.polls["question"])


def test_a_codebook_or_sourced_table_that_does_not_read_as_one_is_named(tmp_path):
    """Not an empty mapping (a report quietly without the codebook it was given), nor a pandas
    traceback: the file, and its row or column, with what was expected."""
    misnamed = tmp_path / "questions.csv"
    misnamed.write_text("question,family,wording\nQ_MAIN,f,'Talks?'\n", encoding="utf-8")
    with pytest.raises(PollDataError) as info:
        plots.question_wordings(misnamed)
    assert str(info.value) == (
        f"{misnamed}, column 'question_id': is missing; expected a column named 'question_id', "
        "as in a question codebook (data/questions.csv)"
    )
    # a codebook without families is a codebook: each question is its own family
    no_family = tmp_path / "no_family.csv"
    no_family.write_text("question_id,wording\nQ_MAIN,'Talks?'\n", encoding="utf-8")
    assert plots.question_families(no_family) == {}
    # a codebook of families alone is a codebook: the report says it has no wordings
    families = tmp_path / "families.csv"
    families.write_text("question_id,family\nQ_MAIN,f\n", encoding="utf-8")
    assert plots.question_wordings(families) == {} and plots.question_families(families) == {
        "Q_MAIN": "f"
    }
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("question_id,family\nQ_MAIN,f,extra\n", encoding="utf-8")
    with pytest.raises(PollDataError, match=f"{ragged} row 2: has 3 fields"):
        plots.question_families(ragged)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("question_id,family\nQ_MAIN,caf\xe9\n".encode("latin-1"))
    with pytest.raises(
        PollDataError, match=f"{latin} row 2, column 'family': .* is not valid UTF-8"
    ):
        plots.question_families(latin)
    sources = tmp_path / "sourced.csv"
    sources.write_text("src_row,url\nsim-00,https://example.org\n", encoding="utf-8")
    with pytest.raises(PollDataError, match=f"{sources}, column 'source_url': is missing"):
        report.load_sources(sources)


def test_the_report_says_what_each_question_in_the_fit_asks(result, tmp_path):
    codebook = tmp_path / "questions.csv"
    book = pd.DataFrame(
        {
            "question_id": ["Q_MAIN", "Q_ALT", "Q_UNUSED"],
            "family": ["f", "f", "f"],
            "wording": ["'Talks or war?' <as reported>", "'Stop now?'", "'Never fitted?'"],
            "talks_means": ["talks", "stop now", "x"],
            "continue_means": ["war", "not now", "y"],
        }
    )
    book.to_csv(codebook, index=False)
    page = html.unescape(report.build_report(result, {}, run_id="run-test", questions=codebook))
    section = page.split('<section id="question-effects">')[1].split("</section>")[0]
    # after the house + question sums, which the effects table's paragraph points to as below
    assert section.count("<h3") == 2 and "sums" in section.split("<h3")[1]
    wordings = '<h3 id="question-wordings">What each question asks</h3>'
    assert section.rindex("<h3") == section.index(wordings)
    part = section.split(wordings)[1].split("</table>")[0]
    headline = page.split('<section id="headline">')[1].split("</section>")[0]
    assert 'What Q_MAIN and the other questions ask: <a href="#question-wordings">the wordings' in (
        headline
    )
    alone = SimpleNamespace(
        reference_question="Q_MAIN", design=SimpleNamespace(questions=["Q_MAIN"])
    )
    assert report._wordings_link(alone, plots.question_wordings(codebook)) == (
        '<p>What Q_MAIN asks: <a href="#question-wordings">its wording</a>.</p>'
    )
    readings = result.polls["question"].value_counts()
    main = (
        f'<td><code>Q_MAIN</code></td><td>{HOUSE_A}</td><td class="num">{readings["Q_MAIN"]}</td>'
    )
    assert main + "<td>'Talks or war?' <as reported></td><td>talks</td><td>war</td>" in part
    assert "<td>'Stop now?'</td><td>stop now</td><td>not now</td>" in part
    assert "Never fitted" not in part  # only the questions in the fit
    assert "Undecided is the share answering" in part  # the fake's answers include it
    raw = report.build_report(result, {}, run_id="run-test", questions=codebook)
    assert "&lt;as reported&gt;" in raw  # the codebook's text is escaped
    book[book.question_id != "Q_ALT"].to_csv(codebook, index=False)
    page = html.unescape(report.build_report(result, {}, run_id="run-test", questions=codebook))
    assert "<td><code>Q_ALT</code></td>" in page and "<td>not in the codebook</td>" in page
    families = tmp_path / "families.csv"
    book[["question_id", "family"]].to_csv(families, index=False)
    for families_only in (None, {"Q_MAIN": "f"}, tmp_path / "no-such.csv", families):
        page = report.build_report(result, {}, run_id="run-test", questions=families_only)
        assert "What each question asks" not in page and "#question-wordings" not in page
        assert "No question codebook with wordings was given" in page


def test_unknown_answer_is_refused(result):
    with pytest.raises(ValueError, match=r"answer 'peace' is not one of the fitted answers"):
        plots.plot_support(result, answer="peace")


# -- what the pooling did ------------------------------------------------------------------------
def test_adjusted_readings_subtract_the_pair_offset(result):
    table = result.adjusted_readings()
    offsets = result.reading_offsets().set_index(["pollster", "question", "answer"])["mean"]
    assert len(table) == sum(result.polls[a].notna().sum() for a in ANSWERS)
    for _, row in table.iterrows():
        assert row["adjusted"] == pytest.approx(
            row["raw"] - offsets[(row["pollster"], row["question"], row["answer"])]
        )
    reference = table[table["pollster"] == HOUSE_A]
    reference = reference[reference["question"] == "Q_MAIN"]
    assert np.allclose(reference["adjusted"], reference["raw"])


def test_adjusted_figure_shows_raw_beside_adjusted(result, figures):
    fig = figures["adjusted"]
    axes = np.array(fig.axes).reshape(len(ANSWERS), 2)
    assert axes[0, 0].get_title(loc="left").startswith("As published")
    assert axes[0, 1].get_title(loc="left").startswith(f"Adjusted to {HOUSE_A} asking Q_MAIN")
    table = result.adjusted_readings()
    for row, answer in enumerate(ANSWERS):
        part = table[table["answer"] == answer]
        for col, column in enumerate(("raw", "adjusted")):
            ax = axes[row, col]
            assert reading_points(ax) == len(part)
            shown = np.sort(
                np.concatenate(
                    [c.get_offsets()[:, 1] for c in ax.collections if c.get_gid() == "readings"]
                )
            )
            assert np.allclose(shown, np.sort(part[column]))
            assert "RMS distance from the curve" in ax.get_title(loc="left")
        assert answer in axes[row, 0].get_ylabel()
    assert "house + question offset" in fig.get_supxlabel()
    assert f"event ({EVENT.label})" in legend_texts(fig)


# -- effects -------------------------------------------------------------------------------------
def _forest_rows(fig) -> list[str]:
    """Row labels of a forest figure (the panels share the y axis; the first one shows them)."""
    assert all(len(ax.get_yticks()) == len(fig.axes[0].get_yticks()) for ax in fig.axes)
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_house_effects_forest_marks_reference_and_identified_sum(figures):
    fig = figures["house_effects"]
    assert fig.get_suptitle().startswith("House effects (percentage points")
    # what the data identify (the sum) first, the prior-driven split after it
    assert _forest_rows(fig) == [
        f"{HOUSE_A} (reference)",
        "House B + Q_ALT",
        "House B: house part (prior split)",
    ]
    for ax, answer in zip(fig.axes, ANSWERS):
        assert ax.get_title() == answer
        assert ax.get_xlabel() == "percentage points"
        assert len([line for line in ax.lines if line.get_gid() == "reference"]) == 1
        assert len([line for line in ax.lines if line.get_gid() == "interval"]) == 2
        assert len([line for line in ax.lines if line.get_gid() == "offset"]) == 1
    assert "house + question (identified sum)" in legend_texts(fig)
    caption = fig.get_supxlabel().replace("\n", " ")
    assert (
        "House B asks only Q_ALT, which no other house asks" in caption
        and "identify only" in caption
    )


def test_house_effect_intervals_match_the_summary(result, figures):
    ax = figures["house_effects"].axes[0]
    effect = result.house_effects().set_index(["pollster", "answer"]).loc[("House B", "talks")]
    offset = result.reading_offsets().set_index(["pollster", "answer"]).loc[("House B", "talks")]
    first, second = [line for line in ax.lines if line.get_gid() == "interval"]
    assert np.allclose(first.get_xdata(), [offset["lower"], offset["upper"]])  # the identified sum
    assert np.allclose(second.get_xdata(), [effect["lower"], effect["upper"]])  # the split


def test_question_effects_forest(figures):
    fig = figures["question_effects"]
    assert fig.get_suptitle().startswith("Question-wording effects")
    assert _forest_rows(fig) == [
        "Q_MAIN (reference)",
        "House B + Q_ALT",
        "Q_ALT: wording part (prior split)",
    ]
    for ax in fig.axes:
        assert len([line for line in ax.lines if line.get_gid() == "interval"]) == 2
    assert "Q_ALT is asked only by House B" in fig.get_supxlabel().replace("\n", " ")


def test_zero_sum_fit_has_no_reference_row(result):
    tree = result.idata.copy()
    tree.attrs = {**result.idata.attrs, "reference_pollster": ""}
    zero_sum = dataclasses.replace(
        result, idata=tree, config=result.config.replace(house_effects="zero_sum"), _design=None
    )
    # House B alone asks Q_ALT and asks nothing else: confounded whatever the identification
    assert list(zero_sum.confounded) == [("House B", "Q_ALT")]
    fig = plots.plot_house_effects(zero_sum)
    assert _forest_rows(fig) == [HOUSE_A, "House B + Q_ALT", "House B: house part (prior split)"]
    assert not [line for ax in fig.axes for line in ax.lines if line.get_gid() == "reference"]
    assert "average house" in fig.get_supxlabel()


# -- diagnostics ---------------------------------------------------------------------------------
def test_rank_plot_has_one_panel_per_hyperparameter_and_a_line_per_chain(figures):
    fig = figures["rank"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "walk_sd",
        "house_sd",
        "question_sd",
        "nonsampling_sd",
    ]
    for ax in panels:
        styles = {line.get_linestyle() for line in ax.lines}
        assert len(ax.lines) == CHAINS and len(styles) == CHAINS
    assert "Rank plots" in fig.get_suptitle()
    assert legend_texts(fig) == ["0", "1"]


def test_energy_plot(figures):
    fig = figures["energy"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["E-BFMI", "energy (centred)"]
    bfmi = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in bfmi.collections) == CHAINS
    assert sorted(legend_texts(fig)) == ["marginal", "transition"]


def test_ppc_has_an_interval_and_the_observed_share_per_reported_reading(result, figures):
    fig = figures["ppc"]
    polls = result.polls
    for ax, answer in zip(fig.axes, ANSWERS):
        reported = polls[answer].notna().sum()
        assert ax.get_ylabel() == f"{answer} (%)"
        assert len(ax.get_xticklabels()) == reported
        assert (
            f"of {reported} observed shares outside their 90% predictive interval"
            in ax.get_title(loc="left")
        )
        observed = result.predictive_by_answer().observed_data[answer].values
        points = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
        assert all(np.isclose(points, value).any() for value in observed)
    assert fig.axes[-1].get_xlabel().startswith("reading")


def test_save_figures_writes_png_and_svg_for_the_curve(saved):
    folder, written = saved
    names = sorted(p.name for p in written)
    assert names == sorted([f"{n}.png" for n in plots.FIGURE_NAMES] + ["support_curve.svg"])
    assert sorted(p.name for p in folder.iterdir()) == names  # no temporary files left
    assert all((folder / n).read_bytes()[:8] == PNG_SIGNATURE for n in names if n.endswith(".png"))
    svg = (folder / "support_curve.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


# -- report --------------------------------------------------------------------------------------
class PageParser(HTMLParser):
    """Collects section ids, images, links, scripts (with their section), table cells and text of a page.

    The text of scripts and style sheets is not page text: it is left out of ``text``.
    """

    def __init__(self):
        super().__init__()
        self.ids, self.images, self.links, self.tags, self.text = [], [], [], [], []
        self.scripts = []
        self._href = None
        self._code = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs)
        if tag == "script":
            self.scripts.append({"section": self.ids[-1] if self.ids else None, **attrs})
        if tag in ("script", "style"):
            self._code = tag
        if tag == "a":
            self._href = attrs.get("href")
            self.links.append({"href": self._href, "title": attrs.get("title"), "text": ""})

    def handle_endtag(self, tag):
        if tag == "a":
            self._href = None
        if tag == self._code:
            self._code = None

    def handle_data(self, data):
        if self._code:
            return
        self.text.append(data)
        if self._href is not None:
            self.links[-1]["text"] += data


@pytest.fixture(scope="module")
def sourced(tmp_path_factory, result):
    path = tmp_path_factory.mktemp("data") / "readings_sourced.csv"
    rows = [
        {
            "src_row": f"sim-{i:02d}",
            "source_url": f"https://example.org/poll/{i}?a=1&b=2",
            "excerpt": f"excerpt {i}",
        }
        for i in range(len(result.polls))
    ]
    rows[0]["excerpt"] = '<script>alert("x")</script> 44% "quoted"'
    rows[2]["source_url"] = "javascript:alert(1)"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def page(result, pngs, sourced):
    text = report.build_report(result, pngs, run_id="run-test", sourced=sourced)
    parser = PageParser()
    parser.feed(text)
    parser.close()
    return text, parser


def test_report_has_every_section_in_order(page):
    _, parsed = page
    assert parsed.ids == list(report.SECTIONS)
    assert parsed.tags.count("html") == 1
    # scripts only in the interactive chart's section, all inline: nothing loaded from elsewhere
    assert parsed.scripts and {s["section"] for s in parsed.scripts} == {"interactive"}
    assert not [s for s in parsed.scripts if "src" in s]


def test_report_embeds_every_figure_as_png(page, pngs):
    _, parsed = page
    assert len(parsed.images) == len(plots.FIGURE_NAMES)
    prefix = "data:image/png;base64,"
    embedded = [base64.b64decode(image["src"][len(prefix) :]) for image in parsed.images]
    assert all(image["src"].startswith(prefix) and image["alt"] for image in parsed.images)
    assert embedded == [
        pngs[name]
        for name in (
            "support_curve",
            "adjusted",
            "house_effects",
            "question_effects",
            "rank",
            "energy",
            "ppc",
        )
    ]


def test_report_renders_figures_it_is_given(result, figures):
    parsed = PageParser()
    parsed.feed(
        report.build_report(
            result, {"house_effects": figures["house_effects"]}, run_id="run-test", sourced=None
        )
    )
    (image,) = parsed.images
    assert base64.b64decode(image["src"].split(",", 1)[1])[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="expected PNG bytes"):
        report.build_report(result, {"rank": b"GIF89a"}, run_id="run-test", sourced=None)


def test_report_links_each_reading_to_its_sources(page, result):
    _, parsed = page
    links = {
        link["text"]: link
        for link in parsed.links
        if link["href"] and link["href"].startswith("http")
    }
    src_rows = [s for rows in result.polls["src_rows"] for s in rows.split(";")]
    for src in src_rows:
        i = int(src.split("-")[1])
        if src == "sim-02" or i >= len(result.polls):
            assert (
                src not in links
            )  # a javascript: address, or a row the table lacks: shown, not linked
            assert src in "".join(parsed.text)
        else:
            assert links[src]["href"] == f"https://example.org/poll/{i}?a=1&b=2"
    assert links["sim-00"]["title"] == '<script>alert("x")</script> 44% "quoted"'


def test_report_escapes_data_strings(page):
    text, parsed = page
    assert HOUSE_A not in text and html.escape(HOUSE_A) in text
    assert HOUSE_A in "".join(parsed.text)
    assert '<script>alert("x")' not in text and "alert(&quot;x&quot;)" in text


def test_report_states_the_numbers_and_the_verdict(page, result):
    text, parsed = page
    words = " ".join(parsed.text)
    last = result.latest_estimate(0.9)
    for _, row in last.iterrows():
        assert f"{row['median']:.1f}%" in words
        assert f"{row['lower']:.1f} – {row['upper']:.1f}" in words
    assert "Diagnostics gate FAILED" in words
    assert "3 divergent transitions (expected none)" in words
    assert "Sampled again at target_accept 0.99 after 5 divergent transition(s) at 0.9" in words
    assert "1.004 (trend_logit)" in words
    assert "test event" in words and "2023-03-01" in words
    assert "only jointly" in words and "House B + Q_ALT" in words
    assert "random walk" in words and "Dirichlet" in words
    assert parsed.tags.count("tr") >= len(result.polls)


def test_report_says_what_each_effect_and_jump_rests_on(page, result):
    words = " ".join(page[1].text)
    # The event's section says which readings pin the jump (the same words as the headline's).
    bracket = headline.event_brackets(result.design)[EVENT.label]
    caveat = headline.event_caveat(EVENT.label, bracket)
    assert bracket["before"] and bracket["after"] and words.count(caveat) == 2
    # Effects in points name the weeks they are averaged over.
    period = headline.averaged_over(result.design)
    assert period.startswith("averaged over the weeks from ") and period in words
    assert "On the share scale the parts do not add up to the sum" in words
    # The split of a house-and-wording sum is said to be the priors' in the wording table's lead.
    assert "the split shown here comes from the priors, not the data" in words
    # The power-scaling check is in the diagnostics, with every flagged quantity.
    sensitivity = result.prior_sensitivity()
    flagged = sensitivity[sensitivity["diagnosis"] != "✓"]
    assert f"How much each of {len(sensitivity)} main quantities" in words
    for quantity in flagged["quantity"]:
        assert quantity in words and "T00:00" not in quantity
    # The pooled readings are what the curve's house and question would have published.
    assert f"roughly what {result.config.house_effects} asking Q_MAIN would have published" in words
    # Closed readings outside the fit: their intervals are the curve's alone.
    assert "its interval holds the curve's uncertainty alone" in words


def test_report_without_sourced_table_shows_src_rows_unlinked(result, pngs, tmp_path):
    text = report.build_report(result, pngs, run_id="run-test", sourced=tmp_path / "missing.csv")
    parsed = PageParser()
    parsed.feed(text)
    assert not [link for link in parsed.links if link["href"] and link["href"].startswith("http")]
    words = "".join(parsed.text)
    assert "was not found" in words and "sim-00" in words and "sim-99" in words


# -- command line --------------------------------------------------------------------------------
def report_beside(
    result, tmp_path, backtest: bool, targets=None, sampler=None, answers=None
) -> str:
    """``write_report`` into a run folder under ``runs/``, with (or without) a backtest of the same
    readings and config beside it; the page, unescaped."""
    runs = tmp_path / "runs"
    folder = runs / "20260101T000000Z-fake"
    folder.mkdir(parents=True)
    if backtest:
        backtest_beside(result, runs, targets=targets, sampler=sampler, answers=answers)
    return html.unescape(report.write_report(result, folder, figures={}).read_text())


def test_a_projected_curve_is_shown_with_how_the_backtests_bands_held(projected, tmp_path):
    page = report_beside(projected, tmp_path, backtest=True)
    months = projected.headline()["days_past_last_reading"] / 30.44
    assert 3 < months < 9  # so the 9-month row is the one quoted
    # In the headline's caveats and in the curve's section, with every horizon in a table.
    assert page.count("(run validate-20260102T000000Z)") == 1
    figures = (
        "the model's 90% bands for a new reading 9 months past the data covered 47% of the "
        "reported shares of 5 held-out readings (too narrow) and its 50% bands 50% (consistent "
        "with 50% at 5 readings)"
    )
    assert (
        f"The projection runs {months:.1f} months past the last reading. In a backtest of these "
        f"readings (run validate-20260102T000000Z), {figures}; a reading's band is wider than the "
        "curve's own."
    ) in page
    assert "in the backtest validate-20260102T000000Z (the same readings and model" in page
    assert f"at the backtest's shortest horizon at or past that, {figures}." in page
    assert "horizon (months from cut-off to field start)" in page and "47% (" in page
    assert "has not been measured" not in page
    assert (
        "Each refit sampled 4 chains of 1000 draws after 1000 tuning steps with nutpie at target "
        "acceptance 0.9, as this fit was set to." in page
    )


def test_a_projected_curve_gives_the_latest_held_out_readings_apart(projected, tmp_path):
    page = report_beside(projected, tmp_path, backtest=True, targets=with_latest(target_rows()))
    latest = (
        "; of the 2 latest held-out readings (fielded July 2025 to September 2025), the 90% bands "
        "covered 17% and the 50% bands 50%"
    )
    # In the headline's caveats and in the curve's section.
    assert page.count(latest) == 2
    # A backtest without its latest targets marked says nothing of them.
    assert "latest held-out" not in report_beside(projected, tmp_path / "b", backtest=True)


FIT_SAMPLING = {"nuts_sampler": "nutpie", "chains": 4, "draws": 1000, "tune": 1000}


@pytest.mark.parametrize(
    ("sampler", "words"),
    [
        (
            {**FIT_SAMPLING, "chains": 2, "draws": 100, "tune": 100, "target_accept": 0.9},
            "Each refit sampled 2 chains of 100 draws after 100 tuning steps with nutpie at "
            "target acceptance 0.9, where this fit sampled 4 chains of 1000 draws after 1000 "
            "tuning steps with nutpie at target acceptance 0.9.",
        ),
        (
            {**FIT_SAMPLING, "target_accept": 0.99},
            "Each refit sampled 4 chains of 1000 draws after 1000 tuning steps with nutpie at "
            "target acceptance 0.99, where this fit",
        ),
        (
            {**FIT_SAMPLING, "target_accept": 0.9, "retry_target_accept": [0.99, 0.999]},
            "Each refit sampled 4 chains of 1000 draws after 1000 tuning steps with nutpie at "
            "target acceptance 0.9 (again at 0.99, then 0.999 while divergent transitions "
            "remained), where this fit sampled 4 chains of 1000 draws after 1000 tuning steps "
            "with nutpie at target acceptance 0.9.",
        ),
        (
            {**FIT_SAMPLING, "target_accept": 0.9, "retry_draws": 4000},
            "Each refit sampled 4 chains of 1000 draws after 1000 tuning steps with nutpie at "
            "target acceptance 0.9 (with 4000 draws a chain if R-hat or ESS alone then missed "
            "the gate), where this fit sampled 4 chains of 1000 draws after 1000 tuning steps "
            "with nutpie at target acceptance 0.9.",
        ),
        (
            FIT_SAMPLING,
            "The backtest's settings.json does not record its refits' target_accept.",
        ),
        (
            {},
            "The backtest's settings.json does not record its refits' nuts_sampler, chains, "
            "draws, tune, target_accept.",
        ),
    ],
)
def test_a_backtest_sampled_otherwise_than_the_fit_says_so_where_it_is_quoted(
    projected, tmp_path, sampler, words
):
    # The match ignores the sampler, so a quick validate --draws 100 must not read as a full one.
    page = report_beside(projected, tmp_path, backtest=True, sampler=sampler)
    assert page.count(words) == 2  # in the headline's caveat and in the curve's section


def test_a_projected_curve_says_where_the_backtests_readings_fell_against_its_median(
    projected, tmp_path
):
    answers = list(projected.config.answers)
    page = report_beside(projected, tmp_path, backtest=True, answers=answer_rows(answers[:2]))
    first, second = answers[:2]
    # At the 9-month horizon quoted, both answers' readings sat on one side of the median beyond
    # their interval: said in the headline's caveat and in the curve's section.
    said = (
        f"At that horizon the readings came out, on average, {first} 5.0 points above the "
        f"predicted median (90% interval +"
    )
    assert page.count(said) == 2
    assert f"; {second} 5.0 points below the predicted median (90% interval -" in page
    assert "5 readings)" in page
    assert (
        "The held-out readings at that horizon were fielded from January 2025 to September 2025."
        in page
    )
    # Every horizon in a table, the 0-month errors (within their interval) among them.
    assert "Where the held-out readings fell against the predicted median" in page
    assert "+0.2 (" in page and "-0.2 (" in page
    # Without the per-answer file, none of it.
    plain = report_beside(projected, tmp_path / "plain", backtest=True)
    assert "At that horizon" not in plain and "Where the held-out readings fell" not in plain


def test_readings_within_their_interval_of_the_median_are_said_to_be(projected, tmp_path):
    rows = answer_rows(list(projected.config.answers)[:2])
    for answer in projected.config.answers[:2]:  # each answer's errors straddle zero
        at_9 = (rows["horizon_months"] == 9) & (rows["answer"] == answer)
        rows.loc[at_9, "observed"] = 50.0 + np.array([1.0, -1.0, 2.0, -2.0, 0.5])
    page = report_beside(projected, tmp_path, backtest=True, answers=rows)
    assert "At that horizon the readings came out" not in page
    assert (
        "At that horizon no answer's readings came out on one side of the predicted median "
        "beyond their 90% interval." in page
    )


def test_a_projection_past_the_longest_horizon_says_so(projected, tmp_path):
    rows = target_rows()
    page = report_beside(projected, tmp_path, backtest=True, targets=rows[rows.horizon_months < 3])
    assert "longer than the backtest's longest horizon (0 months): the model's 90% bands" in page
    assert "predicted the held-out readings of the curve's reference house and question 0-0" in page


def test_a_projected_curve_without_a_backtest_says_it_is_not_measured(projected, tmp_path):
    page = report_beside(projected, tmp_path, backtest=False)
    assert (
        "has not been measured for these readings and this model: python -m model validate "
        "--data <this table> --config <this config> --runs-dir <the folder holding this run>"
    ) in page
    assert "validate-2026" not in page and "months past the data" not in page
    # The headline's caveats say so too, beside the figures they qualify.
    months = projected.headline()["days_past_last_reading"] / 30.44
    caveats = page.split('<ul class="caveats">')[1].split("</ul>")[0]
    assert (
        f"How well a band {months:.1f} months past the last reading holds is not measured for "
        "these readings and this model: no backtest of them was found beside this run"
    ) in caveats
    assert "The headline's figures: <code>headline.json</code> in the run folder.</p>" in page


def test_a_curve_that_is_not_projected_shows_no_backtest(result, tmp_path):
    page = report_beside(result, tmp_path, backtest=True)
    assert not result.design.projected.any()
    assert "backtest" not in page and "has not been measured" not in page


@pytest.fixture(scope="module")
def stored_run(result, tmp_path_factory):
    """The fake written once as a run folder; tests work on copies of it."""
    return write_run(result, tmp_path_factory.mktemp("runs") / "stored")


def copy_run(stored_run, tmp_path, name):
    return Path(shutil.copytree(stored_run, tmp_path / name))


def plots_cli(folder, **options) -> int:
    """``python -m model plots FOLDER`` with ``--answer``/``--questions``/``--sourced`` (missing files by default)."""
    values = {
        "questions": Path("no-such-questions.csv"),
        "sourced": Path("no-such-sourced.csv"),
        **options,
    }
    argv = ["plots", str(folder)] + [f"--{k}={v}" for k, v in values.items() if v is not None]
    return cli.main(argv)


def test_cli_refuses_a_codebook_that_is_not_one_before_writing_anything(
    stored_run, tmp_path, capsys
):
    folder = copy_run(stored_run, tmp_path, "20260101T000000Z-fake")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    codebook = tmp_path / "questions.csv"
    codebook.write_text("question,family\nQ_MAIN,f\n", encoding="utf-8")
    assert plots_cli(folder, questions=codebook) == cli.EXIT_BAD_INPUT
    assert f"error: {codebook}, column 'question_id': is missing" in capsys.readouterr().err
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    sources = tmp_path / "sourced.csv"
    sources.write_text("src_row,url\nsim-00,https://example.org\n", encoding="utf-8")
    assert plots_cli(folder, sourced=sources) == cli.EXIT_BAD_INPUT
    assert f"error: {sources}, column 'source_url': is missing" in capsys.readouterr().err
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_cli_parser_defaults():
    args = cli._parser().parse_args(["plots"])
    assert args.run_folder == Path("runs/latest") and args.answer is None
    assert args.questions == Path("data/questions.csv") and args.sourced == Path(
        "data/readings_sourced.csv"
    )


def test_cli_writes_figures_and_report_into_the_run_folder(
    result, stored_run, sourced, tmp_path, capsys
):
    folder = copy_run(stored_run, tmp_path, "20260101T000000Z-fake")
    open_before = set(plt.get_fignums())
    assert plots_cli(folder, answer="talks", sourced=sourced) == 0
    assert set(plt.get_fignums()) == open_before  # the command closes what it drew
    out = capsys.readouterr()
    figures = sorted(p.name for p in (folder / "figures").iterdir())
    assert figures == sorted(
        [f"{n}.png" for n in plots.FIGURE_NAMES]
        + ["support_curve.svg", "headline.png", "headline.svg"]
    )
    assert str(folder / "report.html") in out.out
    assert str(folder / "curve_wide.csv") in out.out
    wide = pd.read_csv(folder / "curve_wide.csv")
    assert list(wide.columns) == [
        "date",
        *[f"{a}_{s}" for a in ANSWERS for s in ("median", "lower_90", "upper_90")],
        "projected",
        "house",
        "question",
    ]
    assert len(wide) == result.posterior.sizes["time"] and not wide["projected"].any()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert "no-such-questions.csv not found" in out.err
    parsed = PageParser()
    parsed.feed((folder / "report.html").read_text())
    assert parsed.ids == list(report.SECTIONS)
    assert "20260101T000000Z-fake" in "".join(parsed.text)


def test_cli_missing_folder_exits_1_with_a_message(tmp_path, capsys):
    assert plots_cli(tmp_path / "nope") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such run folder" in err and "Traceback" not in err


def test_cli_broken_folder_exits_1_naming_what_is_missing(stored_run, tmp_path, capsys):
    folder = copy_run(stored_run, tmp_path, "broken")
    (folder / "posterior.nc").unlink()
    assert plots_cli(folder) == 1
    err = capsys.readouterr().err
    assert (
        "missing posterior.nc" in err
        and not (folder / "figures").exists()
        and not (folder / "report.html").exists()
    )


def test_cli_corrupt_posterior_exits_1(stored_run, tmp_path, capsys):
    folder = copy_run(stored_run, tmp_path, "corrupt")
    (folder / "posterior.nc").write_bytes(b"not a netcdf file")
    assert plots_cli(folder) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_cli_unknown_answer_exits_1(stored_run, tmp_path, capsys):
    folder = copy_run(stored_run, tmp_path, "answer")
    assert plots_cli(folder, answer="peace") == 1
    assert "--answer 'peace' is not one of the run's answers" in capsys.readouterr().err
    assert not (folder / "figures").exists()


# -- projection, headline, closed polls ----------------------------------------------------------
def test_the_projection_is_drawn_apart_and_labelled(projected):
    data_end = projected.polls["field_end"].max()
    fig = plots.plot_support(projected, questions=None, run_id="run-test")
    for ax in fig.axes:
        median = [line for line in ax.lines if line.get_gid() == "median"]
        ahead = [line for line in ax.lines if line.get_gid() == "projected_median"]
        assert len(median) == 1 and len(ahead) == 1 and ahead[0].get_linestyle() == "--"
        # the dashed part starts at the last informed cell and runs to the curve's end
        assert mdates_num(median[0].get_xdata()[-1]) == mdates_num(ahead[0].get_xdata()[0])
        bands = {c.get_gid(): c for c in ax.collections}
        assert {"band90", "band50", "projected_band90", "projected_band50"} <= set(bands)
        assert bands["projected_band90"].get_alpha() < 1 and bands["band90"].get_alpha() in (
            None,
            1,
        )
        labels = [t.get_text() for t in ax.texts if t.get_gid() == "projection_label"]
        assert labels == [f"projection:\nno reading since {data_end:%d %b %Y}"]
    assert "projection (no readings; paler bands)" in legend_texts(fig)
    assert "Estimate for 31 Aug 2023, projected" in fig.get_suptitle()
    assert (
        "projection, the model's random walk run on with no readings"
        in fig.get_supxlabel().replace("\n", " ")
    )
    plt.close(fig)


@pytest.mark.parametrize(
    ("trend", "words"),
    [("walk", "(no trend is extrapolated)"), ("momentum", "decaying from the middle of")],
)
def test_a_projection_says_how_the_fits_trend_moves_it(projected, trend, words):
    # The headline's caveat, the report's curve and model sections, the interactive chart's and
    # the figure's captions: one wording each.
    from model.results.headline import PROJECTION_RULE

    result = with_trend(projected, trend)
    (caveat,) = [c for c in result.headline()["caveats"] if "is a projection" in c]
    assert words in caveat and PROJECTION_RULE[trend][0] in caveat
    page = html.unescape(report.build_report(result, {}, run_id="run-test"))
    assert f"there the curve is a projection, {PROJECTION_RULE[trend][0]}.</p>" in page
    assert f"<code>curve.csv</code>. It is {PROJECTION_RULE[trend][0]}.</p>" in page
    assert f"bands and a dashed median, {PROJECTION_RULE[trend][1]}." in page
    fig = plots.plot_support(result, questions=None, run_id="run-test")
    assert PROJECTION_RULE[trend][1] in fig.get_supxlabel().replace("\n", " ")
    plt.close(fig)


def mdates_num(value) -> float:
    import matplotlib.dates as mdates

    return float(mdates.date2num(value))


def test_an_unprojected_curve_has_no_projection_marks(figures):
    fig = figures["support_curve"]
    gids = {
        artist.get_gid() for ax in fig.axes for artist in [*ax.lines, *ax.collections, *ax.texts]
    }
    assert (
        not {g for g in gids if g and g.startswith("projected")} and "projection_label" not in gids
    )


def lead_sentence(result):
    """The headline's first sentence, after the gate's warning (the small test fits may fail it)."""
    sentences = result.headline_sentences()
    warning = gate_warning(result.diagnostics())
    assert (sentences[0] == warning) == (warning is not None)
    return sentences[1] if warning else sentences[0]


def test_headline_numbers_come_from_the_draws(projected):
    head = projected.headline()
    share = projected.posterior["share"]
    last_cell = int(np.flatnonzero(~projected.design.projected)[-1])
    assert head["as_of"] == "2023-08-31" and head["projected"] is True
    assert (
        head["days_past_last_reading"]
        == (pd.Timestamp("2023-08-31") - projected.polls["field_end"].max()).days
    )
    talks_end = share.sel(answer="talks").isel(time=-1)
    assert head["answers"]["talks"]["as_of"]["median"] == pytest.approx(float(talks_end.median()))
    assert head["answers"]["talks"]["last_reading"]["median"] == pytest.approx(
        float(share.sel(answer="talks").isel(time=last_cell).median())
    )
    lower, upper = np.quantile(talks_end.values.ravel(), [0.05, 0.95])
    assert head["answers"]["talks"]["as_of"]["lower"] == pytest.approx(lower) and head["answers"][
        "talks"
    ]["as_of"]["upper"] == pytest.approx(upper)
    # the grid spans less than a year: no twelve-month comparison, and no claim of one
    statements = [p["statement"] for p in head["probabilities"]]
    assert statements == [
        "the talks share is above the continue share on 31 Aug 2023 (projected)",
        "the talks share is higher on 31 Aug 2023 (projected) than just before test event (20 Feb 2023)",
    ]
    event_cell = int(projected.design.event_cell[0])
    expected = float((talks_end > share.sel(answer="talks").isel(time=event_cell - 1)).mean())
    assert head["probabilities"][1]["probability"] == pytest.approx(expected)
    assert [j["event"] for j in head["event_jumps"]] == [EVENT.label] * 3
    assert any("projection" in c for c in head["caveats"])
    first = lead_sentence(projected)
    talks = head["answers"]["talks"]["as_of"]
    assert first.startswith(
        f"Support for talks on 31 Aug 2023: {talks['median']:.0f}% (90% interval {talks['lower']:.0f}-{talks['upper']:.0f}), projected"
    )
    assert f"as {HOUSE_A} would measure it, asking Q_MAIN" in first


def page_words(text: str) -> str:
    """A page's text (:class:`PageParser`'s), joined by spaces."""
    parsed = PageParser()
    parsed.feed(text)
    return " ".join(parsed.text)


def test_with_zero_sum_houses_and_one_known_only_with_its_wording_no_house_is_called_identified(
    result, pngs
):
    # Two houses summing to zero, House B asking only its own question: House A's effect is minus
    # House B's house part, which the priors split from its wording, and so is the curve's level.
    zero_sum = fake_result(house_effects="zero_sum")
    assert zero_sum.design.level_from_priors == ("House B",)
    assert result.design.level_from_priors == ()  # a reference house fixes the level
    against = against_average_house(zero_sum.design)
    assert against.startswith("Each is measured against the average house, which includes House B")
    words = page_words(report.build_report(zero_sum, pngs, run_id="run-test", sourced=None))
    assert "This is what the data identify" not in words
    assert "House effects identified apart from the wording" not in words
    assert "House effects apart from the wording, up to the average house's level" in words
    assert "house apart from wording, up to the average house's level" in words
    assert "These sums are what the data say" not in words
    summary = summary_text(zero_sum)
    assert "House effects identified apart from the wording" not in summary
    lines = summary.splitlines()
    (heading,) = [i for i, line in enumerate(lines) if line.startswith("House effects apart from")]
    assert "whose level rests partly on the priors, as the caveats above say" in lines[heading]
    assert sum(against in line for line in lines) == 1  # in full once, beside the differences
    assert lines[heading + 1].startswith(f"  {HOUSE_A}: talks ")  # the rows follow their heading
    conclusion = zero_sum.closed_polls_conclusion()
    assert "which includes House B, known only together with its wording" in conclusion
    assert "no gap is established against it" in conclusion
    # with the reference house the same tables say what the data identify
    words = page_words(report.build_report(result, pngs, run_id="run-test", sourced=None))
    assert "This is what the data identify" in words and against_average_house(result.design) == ""


def test_closed_polls_table_evaluates_the_offset_at_the_reading(result):
    table = result.closed_polls()
    assert len(table) == 1
    row = table.iloc[0]
    assert (
        row["pollster"] == "House B"
        and bool(row["in_fit"])
        and not bool(row["identified_apart_from_wording"])
    )
    assert "only together with the wording" in row["identification"]
    # the offset at the reading's own field period, draw by draw, from the posterior directly
    i = int(np.flatnonzero(result.polls["closed"] == "true")[0])
    design = result.design
    post = result.posterior
    cells = slice(int(design.first_cell[i]), int(design.last_cell[i]) + 1)
    trend = np.log(post["share"].isel(time=cells)).mean("time")
    effect = post["house_effect"].sel(pollster="House B") + post["question_effect"].sel(
        question="Q_ALT"
    )

    def shares(x):
        e = np.exp(x - x.max("answer"))
        return 100 * e / e.sum("answer")

    difference = (shares(trend + effect) - shares(trend)).sel(answer="continue")
    assert row["difference_continue"] == pytest.approx(float(difference.median()))
    assert row["p_difference_continue_above_0"] == pytest.approx(float((difference > 0).mean()))
    conclusion = result.closed_polls_conclusion()
    assert conclusion.startswith(
        f"Against the curve (as {HOUSE_A} would measure it, asking Q_MAIN) over each reading's field period: House B "
    )
    assert "One closed reading cannot establish a systematic gap" in conclusion
    assert "Each closed house asks only a wording no other house asks" in conclusion


def test_report_opens_with_the_headline_and_shows_closed_polls(page, result):
    text, parsed = page
    assert parsed.ids[:4] == ["headline", "estimate", "interactive", "closed-polls"]
    words = " ".join(parsed.text)
    first = lead_sentence(result)
    assert html.escape(first) in text and words.index(first) < words.index("The curve")
    assert (
        "Closed polls beside the public curve" in words
        and "only together with the wording" in words
    )
    assert result.closed_polls_conclusion() in words


def test_a_run_the_gate_refused_opens_with_that_before_its_headline(page, result, pngs):
    text, parsed = page
    warning = gate_warning(result.diagnostics())
    assert warning == (
        "NOT FOR PUBLICATION: the diagnostics gate failed, so the sampler's draws do not support "
        "the numbers below. What failed: 3 divergent transitions (expected none). Sample longer or "
        "at a higher target acceptance (config [sampler]) and fit again."
    )
    assert text.index(f'<p class="gate-failed">{html.escape(warning)}</p>') < text.index(
        '<p class="lead">'
    )
    passing = report.build_report(passed(result), pngs, run_id="run-test", sourced=None)
    assert "gate-failed" not in passing.split("<section", 1)[1] and '<p class="lead">' in passing


def test_report_of_a_projection_says_so(projected, pngs):
    text = report.build_report(projected, pngs, run_id="run-test", sourced=None)
    parsed = PageParser()
    parsed.feed(text)
    words = " ".join(parsed.text)
    assert "projected" in lead_sentence(projected) and lead_sentence(projected) in words
    assert "31 Aug 2023 (projected)" in words and "curve projected to 31 August 2023" in words


def test_the_model_section_says_what_the_trend_adds_to_the_walk(result, projected):
    from typing import get_args

    from model.config import Trend

    assert set(report.TREND_WORDS) == set(get_args(Trend))
    walk = report._model_section(result)
    assert "follow a random walk on the log-odds (softmax) scale on a weekly grid, so" in walk
    for trend in ("drift", "momentum"):
        words = html.escape(report.TREND_WORDS[trend])
        assert words and f"weekly grid{words}, so" in report._model_section(
            with_trend(result, trend)
        )
    # a persistence held fixed is named as such, with its value
    momentum = with_trend(result, "momentum")
    fixed = dataclasses.replace(
        momentum, config=momentum.config.replace(priors={"slope_persistence": 0.975})
    )
    assert "decayed by a fixed monthly persistence of 0.975, so" in report._model_section(fixed)
    assert "estimated monthly persistence" in report._model_section(momentum)
    # momentum on readings with no walk segment between knots is the walk, and is worded so
    walkish = dataclasses.replace(result, config=result.config.replace(trend="momentum"))
    assert walkish.trend == "walk" and with_trend(result, "momentum").trend == "momentum"
    assert report._model_section(walkish) == walk
    projected_walkish = dataclasses.replace(
        projected, config=projected.config.replace(trend="momentum")
    )
    assert "no trend is extrapolated" in " ".join(projected_walkish.headline()["caveats"])


def test_the_model_section_gives_the_kept_attempts_target_acceptance(result):
    """A fit sampled again after divergent transitions shows the last attempt's draws: the model
    section says so, with that attempt's target acceptance, not the configured first one."""
    import json

    configured = result.config.sampler.target_accept

    def section(*attempts, longer=None):
        idata = result.idata.copy()
        idata.attrs = {
            **idata.attrs,
            "sampling_attempts": json.dumps(
                [{"target_accept": t, "divergences": d, "seconds": 1.0} for t, d in attempts]
                + ([longer] if longer else [])
            ),
        }
        return html.unescape(
            report._model_section(dataclasses.replace(result, idata=idata, _diagnostics=None))
        )

    once = section((configured, 0))
    assert f"at target acceptance {configured}, seed {result.seed}.</p>" in once
    assert "Sampled again" not in once
    ladder = section((configured, 7), (0.99, 2), (0.999, 0))
    assert f"at target acceptance 0.999, seed {result.seed}." in ladder
    assert (
        f"Sampled again at target_accept 0.999 after 7 divergent transition(s) at {configured:g}, "
        "then 2 at 0.99." in ladder
    )
    slow = {"target_accept": 0.99, "divergences": 0, "seconds": 2.0, "draws": 4000}
    slow["after"] = ["max R-hat 1.012 > 1.01 (walk_sd)"]
    longer = section((configured, 3), (0.99, 0), longer=slow)
    assert "chains of 4000 draws" in longer and "at target acceptance 0.99, seed" in longer
    assert (
        f"Sampled again at target_accept 0.99 after 3 divergent transition(s) at {configured:g}; "
        "then with 4000 draws a chain at target_accept 0.99 after max R-hat 1.012 > 1.01 "
        "(walk_sd)." in longer
    )
    only_longer = section((configured, 0), longer={**slow, "target_accept": configured})
    assert (
        f"Sampled again with 4000 draws a chain at target_accept {configured:g} after max R-hat"
        in only_longer
    )


def test_the_diagnostics_give_each_answers_loo_pit_outside_its_outer_tenth(result):
    page = html.unescape(report.build_report(result, {}, run_id="x"))
    diagnostics = page.split('<section id="diagnostics">')[1].split("</section>")[0]
    for answer, count in (("talks", "2 of 10 readings"), ("continue", "0 of 9 readings")):
        assert (
            f'<td>LOO-PIT outside 0.05-0.95, {answer}</td><td class="num">{count}</td>'
            "<td>about a tenth if calibrated</td>"
        ) in diagnostics
