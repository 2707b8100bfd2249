"""Headline numbers and the closed-poll comparison on hand-made posteriors (no sampling).

Each posterior is built with xarray on a real design, with house and question effects chosen so
that the answer is known: what the functions must find is set by construction, not by a fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import model
from model.aggregator.design import build_design
from model.results import closed_polls, headline
from model.results.diagnostics import gate_warning

CHAINS, DRAWS = 2, 200


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def table(rows, answers=("talks", "continue", "undecided")):
    base = {"n": 1000, **{a: 100 / len(answers) for a in answers}, "closed": "false"}
    return model.load_polls(pd.DataFrame([{**base, **row} for row in rows]), answers=answers)


def posterior_for(design, *, house=None, question=None, seed=0):
    """A posterior on ``design``'s grid: a gently wandering curve and the given effects (logits;
    dict name -> per-answer array, the same in every draw plus a little noise)."""
    rng = np.random.default_rng(seed)
    k, t = len(design.answers), len(design.time)
    trend = np.cumsum(rng.normal(0, 0.02, size=(CHAINS, DRAWS, t, k)), axis=2) + np.linspace(
        0.3, -0.3, k
    )
    trend += rng.normal(0, 0.05, size=(CHAINS, DRAWS, 1, k))
    effects = {}
    for var, dim, names, given in (
        ("house_effect", "pollster", design.pollsters, house or {}),
        ("question_effect", "question", design.questions, question or {}),
    ):
        values = np.zeros((CHAINS, DRAWS, len(names), k))
        for j, name in enumerate(names):
            if name in given:
                values[:, :, j] = np.asarray(given[name]) + rng.normal(
                    0, 0.02, size=(CHAINS, DRAWS, k)
                )
        effects[var] = ((("chain", "draw", dim, "answer")), values)
    coords = {
        "chain": np.arange(CHAINS),
        "draw": np.arange(DRAWS),
        "time": design.time,
        "answer": list(design.answers),
        "pollster": list(design.pollsters),
        "question": list(design.questions),
    }
    return xr.Dataset(
        {"share": (("chain", "draw", "time", "answer"), 100 * _softmax(trend)), **effects},
        coords=coords,
    )


def monthly(pollster, question, months, **extra):
    return [
        {"pollster": pollster, "question": question, "field_start": m, "field_end": m, **extra}
        for m in months
    ]


MONTHS = [f"2023-{m:02d}" for m in range(1, 13)]


def test_a_gap_shared_by_closed_houses_identified_apart_from_wording_is_established():
    # House B and C ask the reference question too (their effects are identified apart from the
    # wording); each has one closed reading; both report far fewer for continue than the curve.
    rows = (
        monthly("A", "Q_MAIN", MONTHS)
        + monthly("B", "Q_MAIN", MONTHS[:6])
        + monthly("C", "Q_MAIN", MONTHS[6:])
    )
    rows[13]["closed"] = rows[20]["closed"] = "true"
    config = model.Config(house_effects="A", reference_question="Q_MAIN")
    design = build_design(table(rows), config)
    post = posterior_for(design, house={"B": [0.1, -0.8, 0.7], "C": [0.0, -0.6, 0.6]})
    gap = closed_polls.systematic_gap(post, design)
    assert (
        gap["readings"] == 2
        and gap["separable"]
        and gap["answers"] == ["talks", "continue", "undecided"]
    )
    assert gap["best"][:2] == ("continue", "below") and gap["best"][2] > 0.99 and gap["established"]
    words = closed_polls.conclusion(
        closed_polls.closed_polls(post, design, None, interval=0.9),
        gap,
        reference="the curve",
        interval=0.9,
    )
    assert (
        "A systematic closed-poll gap is established" in words
        and "continue difference of both closed readings in the fit below zero" in words
    )


def test_agreement_of_houses_confounded_with_their_wording_establishes_nothing():
    # The same shifts, but each closed house asks only a question nobody else asks.
    rows = (
        monthly("A", "Q_MAIN", MONTHS)
        + monthly("B", "Q_B", MONTHS[:1], closed="true")
        + monthly("C", "Q_C", MONTHS[6:7], closed="true")
    )
    config = model.Config(house_effects="A", reference_question="Q_MAIN")
    design = build_design(table(rows), config)
    assert design.identified_only_with_wording == {("B", "Q_B"), ("C", "Q_C")}
    post = posterior_for(design, house={"B": [0.1, -0.8, 0.7], "C": [0.0, -0.6, 0.6]})
    gap = closed_polls.systematic_gap(post, design)
    assert gap["best"][2] > 0.99 and not gap["separable"] and not gap["established"]
    table_ = closed_polls.closed_polls(post, design, None, interval=0.9)
    assert not table_["identified_apart_from_wording"].any()
    assert table_["identification"].str.startswith("only together with the wording: ").all()
    words = closed_polls.conclusion(table_, gap, reference="the curve", interval=0.9)
    assert "but that does not establish a closed-poll gap" in words
    assert "Each closed house asks only a wording no other house asks" in words


def test_only_published_answers_count_towards_a_gap():
    # Neither closed reading publishes "undecided", whose shift is the one both share.
    rows = (
        monthly("A", "Q_MAIN", MONTHS)
        + monthly("B", "Q_MAIN", MONTHS[:6])
        + monthly("C", "Q_MAIN", MONTHS[6:])
    )
    rows[13].update(closed="true", undecided=None)
    rows[20].update(closed="true", undecided=None)
    design = build_design(table(rows), model.Config(house_effects="A", reference_question="Q_MAIN"))
    post = posterior_for(design, house={"B": [-0.5, -0.5, 1.0], "C": [0.5, 0.5, -1.0]})
    gap = closed_polls.systematic_gap(post, design)
    assert gap["answers"] == ["talks", "continue"] and "undecided" not in gap["by_answer"]
    assert not gap["established"]


def test_closed_readings_outside_or_across_the_curve_are_said_to_be_so():
    rows = monthly("A", "Q_MAIN", MONTHS)
    config = model.Config(
        house_effects="A", reference_question="Q_MAIN", questions=("Q_MAIN",), through="2024-02-15"
    )
    polls = table(
        rows
        + [
            {
                "pollster": "K",
                "question": "Q_K",
                "field_start": "2024-06-01",
                "field_end": "2024-06-10",
                "closed": "true",
            },  # after the curve
            {
                "pollster": "K",
                "question": "Q_K",
                "field_start": "2022-05-01",
                "field_end": "2022-05-10",
                "closed": "true",
            },  # before it
            {
                "pollster": "K",
                "question": "Q_K",
                "field_start": "2024-02-10",
                "field_end": "2024-02-25",
                "closed": "true",
            },  # across its end
            {
                "pollster": "K",
                "question": "Q_K",
                "field_start": "2023-06-05",
                "field_end": "2023-06-10",
                "closed": "true",
            },  # inside
        ]
    )
    excluded = polls[polls["question"] == "Q_K"].assign(
        excluded_because="question not in config.questions"
    )
    design = build_design(polls, config)
    post = posterior_for(design)
    out = closed_polls.closed_polls(post, design, excluded, interval=0.9).set_index("field_start")
    for outside in ("2024-06-01", "2022-05-01"):
        assert out.loc[outside, "difference_is"].startswith(
            "outside the curve's span (2022-12-26 to 2024-02-15)"
        )
        assert out.loc[outside, ["curve_talks", "difference_talks"]].isna().all()
    across = out.loc["2024-02-10", "difference_is"]
    assert (
        "only the part of the field period inside the curve's span" in across
        and "is a projection" in across
    )
    inside = out.loc["2023-06-05"]
    assert (
        inside["difference_is"].startswith("published share minus the curve")
        and "projection" not in inside["difference_is"]
    )
    assert inside["difference_talks"] == pytest.approx(inside["talks"] - inside["curve_talks"])


def test_a_two_answer_headline():
    answers = ("yes", "no")
    rows = [
        {"pollster": "A", "question": "Q", "field_start": m, "field_end": m, "yes": 55, "no": 45}
        for m in MONTHS + ["2024-01", "2024-02"]
    ]
    design = build_design(table(rows, answers), model.Config(answers=answers, through="2024-12-31"))
    head = headline.headline(
        posterior_for(design),
        design,
        interval=0.9,
        identification="as the average house would measure it",
    )
    assert list(head["answers"]) == ["yes", "no"]
    assert [p["statement"] for p in head["probabilities"]] == [
        "the yes share is above the no share on 31 Dec 2024 (projected)",
        "the yes share is higher on 31 Dec 2024 (projected) than twelve months before (31 Dec 2023)",
    ]
    first = headline.sentences(head)[0]
    assert (
        first.startswith("Support for yes on 31 Dec 2024: ")
        and "projected 10 months (306 days) past the last reading (A, 1-29 Feb 2024)" in first
    )


def test_the_sentences_of_a_run_the_gate_refused_open_with_its_warning():
    # Whoever copies the headline's words (a notebook's headline_sentences()) copies the warning.
    design = build_design(table(monthly("A", "Q", MONTHS)), model.Config(through="2023-12-31"))
    head = headline.headline(
        posterior_for(design),
        design,
        interval=0.9,
        identification="as the average house would measure it",
    )
    words = headline.sentences(head)  # headline() alone records no gate
    failed = {"passed": False, "failures": ["3 divergent transitions (expected none)"]}
    assert headline.sentences({**head, "gate": failed}) == [gate_warning(failed), *words]
    assert headline.sentences({**head, "gate": {"passed": True, "failures": []}}) == words
    assert words[0].startswith("Support for talks on 31 Dec 2023: ")


def test_a_through_date_in_the_last_readings_cell_is_not_called_the_last_reading():
    rows = monthly("A", "Q", MONTHS)
    design = build_design(
        table(rows), model.Config(grid="month", through="2024-01-03")
    )  # a cell after December's
    assert design.projected.sum() == 1
    design = build_design(table(rows), model.Config(grid="month", through="2023-12-31"))
    head = headline.headline(
        posterior_for(design),
        design,
        interval=0.9,
        identification="as the average house would measure it",
    )
    assert not head["projected"] and head["days_past_last_reading"] == 0
    assert "the last reading's field end" in headline.sentences(head)[0]
    weekly = build_design(
        table(
            monthly("A", "Q", MONTHS[:-1])
            + [
                {
                    "pollster": "A",
                    "question": "Q",
                    "field_start": "2023-12-04",
                    "field_end": "2023-12-05",
                }
            ]
        ),
        model.Config(through="2023-12-08"),
    )
    head = headline.headline(
        posterior_for(weekly),
        weekly,
        interval=0.9,
        identification="as the average house would measure it",
    )
    assert not head["projected"] and head["days_past_last_reading"] == 3
    assert (
        "3 days after the last reading (A, 4-5 Dec 2023), in the same grid cell"
        in headline.sentences(head)[0]
    )


@pytest.mark.parametrize(
    ("days", "words"),
    [
        (0, "0 days"),
        (1, "1 day"),
        (16, "16 days"),
        (45, "45 days"),
        (46, "2 months (46 days)"),
        (276, "9 months (276 days)"),
    ],
)
def test_how_far_a_projection_runs_in_words(days, words):
    assert headline.how_far(days) == words


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (1.0, "> 0.99"),
        (0.995, "> 0.99"),
        (0.99, "0.99"),
        (0.584, "0.58"),
        (0.004, "< 0.01"),
        (0.0, "< 0.01"),
    ],
)
def test_probabilities_never_claim_certainty(p, text):
    assert headline.format_probability(p) == text


def test_every_trend_has_its_projection_wording():
    from typing import get_args

    from model.config import Trend
    from model.results.headline import PROJECTION_RULE

    assert set(PROJECTION_RULE) == set(get_args(Trend))


def test_a_signed_difference_never_reads_as_zero_unless_it_is():
    assert [headline.signed_points(x) for x in (-0.04, 0.03, 0.0, -0.0, -1.26, 2.0, -0.004)] == [
        "-0.04",
        "+0.03",
        "+0.0",
        "+0.0",
        "-1.3",
        "+2.0",
        "-0.004",
    ]
    assert headline.signed_interval(-0.04, -2.1, 1.94) == "-0.04 [-2.1, +1.9]"


def test_an_events_jump_says_which_readings_pin_it_and_that_the_model_splits_it():
    # A's monthly readings; B's one reading before A's first, and one across the event's week.
    rows = (
        monthly("B", "Q_B", ["2022-12"])
        + monthly("A", "Q_MAIN", MONTHS)
        + [
            {
                "pollster": "B",
                "question": "Q_B",
                "field_start": "2023-06-10",
                "field_end": "2023-06-20",
            }
        ]
    )
    config = model.Config(
        house_effects="A",
        reference_question="Q_MAIN",
        events=(model.Event(date="2023-06-15", label="the event"),),
        through="2024-03-31",
    )
    design = build_design(table(rows), config)
    bracket = headline.event_brackets(design)["the event"]
    # The jump acts from the week of 12 Jun 2023: A's May reading is the last wholly before it,
    # A's July reading the first wholly after; A's June and B's 10-20 June readings span it.
    assert bracket == {
        "cell_start": "2023-06-12",
        "before": {"pollster": "A", "field_start": "2023-05-01", "field_end": "2023-05-31"},
        "after": {"pollster": "A", "field_start": "2023-07-01", "field_end": "2023-07-31"},
        "days_between": 31,
        "spanning": 2,
    }
    posterior = posterior_for(design)
    posterior["jump"] = xr.DataArray(
        np.full((CHAINS, DRAWS, 1, 3), 0.1),
        dims=("chain", "draw", "event", "answer"),
        coords={"event": ["the event"], "answer": list(design.answers)},
    )
    head = headline.headline(
        posterior, design, interval=0.9, identification="as A would measure it"
    )
    assert [j["bracket"] for j in head["event_jumps"]] == [bracket] * 3  # one row per answer
    assert "Jump in talks at the event (week starting 12 Jun 2023): " in " ".join(
        headline.sentences(head)
    )
    assert (
        "The jump at the event (from the week starting 12 Jun 2023): the data pin the change "
        "between the last reading before it (A, ending 31 May 2023) and the first after it (A, "
        "starting 1 Jul 2023), 31 days apart, and 2 readings whose field period spans it. How that "
        "change splits between the jump and the walk's ordinary movement is the model's "
        "assumption, not the data's"
    ) in " ".join(head["caveats"])
    # B's December reading comes before the reference house's first: the curve there is B's, moved.
    assert (
        "Before 1 Jan 2023 (the first reading of A asking Q_MAIN) the curve rests on other "
        "houses' readings"
    ) in " ".join(head["caveats"])
    assert headline.averaged_over(design) == (
        "averaged over the weeks from 28 Nov 2022 to 25 Dec 2023, the readings' span, not the projection"
    )


def test_an_event_with_no_reading_on_one_side_rests_on_the_models_assumptions():
    bracket = {
        "cell_start": "2023-01-02",
        "before": None,
        "after": {"pollster": "A", "field_start": "2023-01-01", "field_end": "2023-01-31"},
        "days_between": None,
        "spanning": 0,
    }
    assert headline.event_caveat("e", bracket) == (
        "The jump at e (from the week starting 2 Jan 2023) has no reading wholly before it, so the "
        "data cannot tell it from the level there: it rests on the model's assumptions (the "
        "jump's prior scale)."
    )
    # A reading across the event's week tells of it, and says so.
    assert "there; only 1 reading whose field period spans it tells of it: it rests" in (
        headline.event_caveat("e", {**bracket, "spanning": 1})
    )
    assert headline.signed_points(float("nan")) == "–"
    assert headline.signed_points(-1e-5) == "-0.00001"


def test_an_average_house_with_a_house_only_its_wording_tells_apart_says_its_level_leans_on_priors():
    rows = (
        monthly("A", "Q_MAIN", MONTHS)
        + monthly("B", "Q_MAIN", MONTHS[::2])
        + monthly("C", "Q_C", MONTHS[1::2])  # C alone asks Q_C, and asks nothing else
    )

    def caveats(config):
        design = build_design(table(rows), config)
        return " ".join(
            headline.headline(posterior_for(design), design, interval=0.9, identification="x")[
                "caveats"
            ]
        )

    words = "The average house includes C, whose house effect the data cannot tell apart from its"
    assert words in caveats(model.Config(reference_question="Q_MAIN"))
    assert "average house includes" not in caveats(
        model.Config(reference_question="Q_MAIN", house_effects="A")
    )
    # Every house asking the reference question: the average house is the data's.
    rows = monthly("A", "Q_MAIN", MONTHS) + monthly("B", "Q_MAIN", MONTHS[::2])
    assert "average house includes" not in caveats(model.Config(reference_question="Q_MAIN"))


def test_pollsters_whose_names_are_one_letter_apart_are_named_in_the_caveats():
    """A misspelt house ("Russian Feld") is fitted as a house of its own: the caveats name the
    pair with their readings; houses told apart by a one-letter label are not named."""
    rows = [
        *monthly("Russian Field", "Q", MONTHS[:-1]),
        *monthly("Russian Feld", "Q", MONTHS[-1:]),
        *monthly("House A", "Q", MONTHS[:3]),
        *monthly("House B", "Q", MONTHS[:3]),
    ]
    design = build_design(table(rows), model.Config(house_effects="Russian Field"))
    head = headline.headline(
        posterior_for(design), design, interval=0.9, identification="as Russian Field would"
    )
    alike = [c for c in head["caveats"] if "one letter apart" in c]
    assert alike == [
        "Russian Feld (1 reading) and Russian Field (11 readings) are fitted as two houses, their "
        "names one letter apart: if they are one house, spell its name alike in the table."
    ]
