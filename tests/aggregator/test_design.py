"""Design: the grid, field periods, observed components, selection. No sampling."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import model
from model.aggregator.design import build_design, make_grid

ROOT = model.__path__[0] + "/.."


def table(rows):
    base = {
        "pollster": "A",
        "question": "Q",
        "n": 1000,
        "talks": 50,
        "continue": 40,
        "undecided": 10,
    }
    return model.load_polls(pd.DataFrame([{**base, **row} for row in rows]))


def test_weekly_grid_starts_on_monday_and_covers_every_reading():
    polls = table(
        [
            {"field_start": "2024-01-03", "field_end": "2024-01-05"},
            {"field_start": "2024-02", "field_end": "2024-02"},
        ]
    )
    design = build_design(polls, model.Config())
    assert design.time[0] == pd.Timestamp("2024-01-01") and all(
        t.weekday() == 0 for t in design.time
    )
    # the month-only reading spans all of February: from the week of Feb 1 to the week of Feb 29
    feb = design.polls.index[design.polls["date_precision"] == "month"][0]
    assert design.time[design.first_cell[feb]] == pd.Timestamp("2024-01-29")
    assert design.time[design.last_cell[feb]] == pd.Timestamp("2024-02-26")
    assert design.last_cell.max() == len(design.time) - 1


@pytest.mark.parametrize(("grid", "cells"), [("day", 366), ("week", 53), ("month", 12)])
def test_grid_sizes(grid, cells):
    assert len(make_grid(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31"), grid)) == cells


def test_partial_report_enters_as_reported_plus_rest():
    polls = table(
        [
            {"field_start": "2024-01-01", "field_end": "2024-01-02", "undecided": None},
            {
                "field_start": "2024-01-08",
                "field_end": "2024-01-09",
                "continue": None,
                "undecided": None,
                "talks": 61,
            },
            {
                "field_start": "2024-01-15",
                "field_end": "2024-01-16",
                "talks": 53,
                "continue": 41,
                "undecided": 7,
            },
        ]
    )
    d = build_design(polls, model.Config())
    # talks + continue reported: components talks, continue, rest (= undecided)
    assert list(d.component_label[0]) == ["talks", "continue", "rest"]
    np.testing.assert_allclose(d.observed[0], [0.5, 0.4, 0.1])
    # talks only: talks, rest (= continue + undecided), unused slot
    assert list(d.component_label[1]) == ["talks", "rest", ""]
    np.testing.assert_allclose(d.observed[1][:2], [0.61, 0.39])
    np.testing.assert_array_equal(d.membership[1][:, 1], [0, 1, 1])
    assert list(d.component_used[1]) == [True, True, False]
    # all three reported, summing to 101 after rounding: divided by their sum
    np.testing.assert_allclose(d.observed[2], np.array([53, 41, 7]) / 101)


def test_unknown_sample_sizes_are_flagged_and_given_a_prior_median():
    polls = table(
        [
            {"field_start": "2024-01-01", "field_end": "2024-01-02", "n": 1600},
            {"field_start": "2024-01-08", "field_end": "2024-01-09", "n": None},
            {"field_start": "2024-01-15", "field_end": "2024-01-16", "n": 800},
        ]
    )
    d = build_design(polls, model.Config())
    assert list(d.n_known) == [True, False, True]
    assert d.unknown_n_median == 1200


def test_reference_question_defaults_to_the_most_frequent():
    polls = table(
        [
            {"field_start": "2024-01-01", "field_end": "2024-01-02", "question": "RARE"},
            {"field_start": "2024-01-08", "field_end": "2024-01-09", "question": "COMMON"},
            {"field_start": "2024-01-15", "field_end": "2024-01-16", "question": "COMMON"},
        ]
    )
    assert build_design(polls, model.Config()).questions == ("COMMON", "RARE")
    assert build_design(polls, model.Config(reference_question="RARE")).questions == (
        "RARE",
        "COMMON",
    )


def test_reference_pollster_comes_first_and_must_exist():
    polls = table(
        [{"field_start": "2024-01-01", "field_end": "2024-01-02", "pollster": p} for p in "AB"]
    )
    assert build_design(polls, model.Config(house_effects="B")).pollsters == ("B", "A")
    with pytest.raises(model.ConfigError, match="reference pollster 'C'"):
        build_design(polls, model.Config(house_effects="C"))


def test_which_houses_have_a_free_effect_under_each_identification():
    """Zero-sum: every pollster, but one pollster alone has none (a table zero-sum over one row is
    zero); a reference house: all but it; anchors: every pollster, even one alone (the anchors
    identify its effect)."""
    rows = [
        {"pollster": p, "field_start": f"2024-0{m}-01", "field_end": f"2024-0{m}-05"}
        for m, p in enumerate("ABAB", start=1)
    ]
    one, two = table(rows[:1] + rows[2:3]), table(rows)
    anchors = {"house_effects": "anchors", "anchors": (model.Anchor("2024-02-01", "talks", 50),)}
    cases = [
        (two, {}, [0, 1], True),
        (one, {}, [], True),
        (two, {"house_effects": "A"}, [1], False),
        (one, {"house_effects": "A"}, [], False),
        (two, anchors, [0, 1], False),
        (one, anchors, [0], False),
    ]
    for polls, settings, free, zero_sum in cases:
        design = build_design(polls, model.Config(**settings))
        assert design.free_pollsters == free and design.zero_sum_houses == zero_sum, settings


def test_shipped_data_never_counts_one_survey_twice():
    polls = model.load_polls(f"{ROOT}/data/polls.csv")
    both = model.Config(
        questions=("FSO_CLOSED_TALKS_VS_CONTINUE", "VTSIOM_CLOSED_STOP_ASAP_VS_NOT_NOW")
    )
    with pytest.raises(model.PollDataError, match="same_survey_as") as err:
        build_design(polls, both)
    assert "row " in str(err.value)
    # the project config leaves the disputed FSO reading out, so its default fit is accepted
    project = model.Config.from_toml(f"{ROOT}/config/fit.toml")
    design = build_design(polls, project)
    assert "fso-2022-07" not in set(design.polls["survey_id"])
    assert set(design.polls["question"]) == set(project.questions)


def test_exclusion_reasons_cover_every_left_out_reading():
    from model.aggregator.design import exclusion_reasons

    polls = model.load_polls(f"{ROOT}/data/polls.csv")
    project = model.Config.from_toml(f"{ROOT}/config/fit.toml")
    reasons = exclusion_reasons(polls, project)
    used = build_design(polls, project).polls
    assert (reasons == "").sum() == len(used)
    assert reasons[polls["survey_id"] == "fso-2022-07"].str.contains("disputed").all()


def test_an_event_outside_the_readings_is_refused(sim_polls):
    for date in ("2022-06-01", "2023-01-01"):  # before, in the first cell
        with pytest.raises(model.ConfigError, match="not inside the readings' span"):
            build_design(sim_polls, model.Config(events=(model.Event(date, "e"),)))
    for through in (None, "2025-12-31"):  # after the readings, with or without a projection there
        with pytest.raises(
            model.ConfigError,
            match="after the last reading's field end .*no reading could identify its jump",
        ):
            build_design(
                sim_polls, model.Config(through=through, events=(model.Event("2025-06-01", "e"),))
            )
    assert (
        len(
            build_design(
                sim_polls, model.Config(events=(model.Event("2024-01-15", "e"),))
            ).event_cell
        )
        == 1
    )


def test_the_grid_runs_through_the_configured_date_and_marks_the_projection(sim_polls):
    plain = build_design(sim_polls, model.Config())
    data_end = sim_polls["field_end"].max()
    assert plain.data_end == data_end and plain.through == data_end and not plain.projected.any()
    ahead = build_design(sim_polls, model.Config(through="2025-06-30"))
    assert ahead.through == pd.Timestamp("2025-06-30") and ahead.time[
        -1
    ] <= ahead.through < ahead.time[-1] + pd.Timedelta(days=7)
    assert (ahead.time[: len(plain.time)] == plain.time).all()  # the same cells, then more
    np.testing.assert_array_equal(ahead.projected, ahead.time > data_end)
    assert ahead.projected.sum() == len(ahead.time) - len(plain.time) > 20
    # the readings' own layout (and so the walk's knots) does not depend on the projection
    np.testing.assert_array_equal(ahead.walk_knots, plain.walk_knots)
    np.testing.assert_array_equal(ahead.last_cell, plain.last_cell)
    # "today" resolves to the date of the fit
    today = build_design(sim_polls, model.Config(through="today"))
    assert today.through == pd.Timestamp(datetime.date.today())


def test_a_through_date_before_the_last_reading_is_refused(sim_polls):
    data_end = sim_polls["field_end"].max()
    with pytest.raises(
        model.ConfigError,
        match=f"through 2024-06-30 is before the last reading's field end, {data_end:%Y-%m-%d}",
    ):
        build_design(sim_polls, model.Config(through="2024-06-30"))
    build_design(
        sim_polls, model.Config(through=f"{data_end:%Y-%m-%d}")
    )  # the last field end itself is fine


def test_an_anchor_in_the_projected_stretch_is_refused(sim_polls):
    anchor = model.Anchor(date="2025-03-01", answer="talks", value=45.0)
    with pytest.raises(
        model.ConfigError,
        match="anchor talks = 45.0 on 2025-03-01 is after the last reading's field end",
    ):
        build_design(
            sim_polls,
            model.Config(house_effects="anchors", anchors=(anchor,), through="2025-06-30"),
        )


def test_a_question_id_spelt_almost_as_a_configured_one_is_refused(tmp_path):
    """A mistyped id is not a question left out on purpose: refused naming file, row and column,
    the id and the configured id it is spelt almost as. Ids unlike every configured one are left
    out as before, and without config.questions a table's own ids are all fitted."""
    lines = Path(f"{ROOT}/data/polls.csv").read_text(encoding="utf-8").splitlines()
    assert lines[4].startswith("Russian Field,RF_CONTINUE_VS_TALKS,2022-07-28,")  # row 5
    lines[4] = lines[4].replace("RF_CONTINUE_VS_TALKS", "RF_CONTINUE_VS_TALKZ")
    path = tmp_path / "polls.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    polls = model.load_polls(path)
    project = model.Config.from_toml(f"{ROOT}/config/fit.toml")
    with pytest.raises(model.PollDataError) as err:
        build_design(polls, project)
    assert str(err.value) == (
        f"{path} row 5, column 'question': 'RF_CONTINUE_VS_TALKZ' is not in config.questions, yet "
        "spelt almost as 'RF_CONTINUE_VS_TALKS', which is (a misspelt id would leave the reading "
        "out of the fit unnoticed); expected 'RF_CONTINUE_VS_TALKS' if it is that question; if it "
        "is another question, add it to config.questions to fit it, or give it an id less like "
        "'RF_CONTINUE_VS_TALKS'"
    )
    swapped = polls.replace({"question": {"RF_CONTINUE_VS_TALKZ": "RF_CONTINUE_VS_TLAKS"}})
    with pytest.raises(
        model.PollDataError, match="row 5, column 'question': 'RF_CONTINUE_VS_TLAKS'"
    ):
        build_design(swapped, project)
    # configured, it is fitted
    both = project.replace(questions=(*project.questions, "RF_CONTINUE_VS_TALKZ"))
    assert "RF_CONTINUE_VS_TALKZ" in set(build_design(polls, both).polls["question"])
    # the shipped table's unconfigured questions are still left out as meant
    shipped = model.load_polls(f"{ROOT}/data/polls.csv")
    assert set(build_design(shipped, project).polls["question"]) == set(project.questions)
    # without config.questions, a table's own questions are all fitted, however alike
    own = table(
        [
            {"question": "TRUST_IN_TALKS", "field_start": "2024-01-03", "field_end": "2024-01-05"},
            {"question": "TRUST_IN_TALKZ", "field_start": "2024-02-03", "field_end": "2024-02-05"},
        ]
    )
    assert len(build_design(own, model.Config()).polls) == 2
    # numbered questions are not misspellings: one configured, the other left out as meant
    numbered = shipped.replace({"question": {"RF_CONTINUE_VS_TALKS": "RF_TALKS_2023"}})
    numbered.loc[numbered.index[numbered["question"] == "RF_TALKS_2023"][:3], "question"] = (
        "RF_TALKS_2022"
    )
    chosen = project.replace(questions=("LEVADA_CONTINUE_VS_TALKS", "RF_TALKS_2023"))
    assert set(build_design(numbered, chosen).polls["question"]) == set(chosen.questions)
    # ids that differ only in case are one id spelt two ways, numbers or not
    cased = polls.replace({"question": {"RF_CONTINUE_VS_TALKZ": "rf_continue_vs_talks"}})
    with pytest.raises(
        model.PollDataError, match="row 5, column 'question': 'rf_continue_vs_talks'"
    ):
        build_design(cased, project)
    # a misspelt configured id is the config's error, not the table's rows'
    typo = project.replace(
        questions=tuple(q.replace("VS_TALKS", "VS_TALK") for q in project.questions)
    )
    with pytest.raises(model.ConfigError, match="not in the poll table") as info:
        build_design(shipped, typo)
    # and it names the ids of the table spelt almost so
    assert (
        "(the table has 'LEVADA_CONTINUE_VS_TALKS', spelt almost as 'LEVADA_CONTINUE_VS_TALK'; "
        in str(info.value)
    )
    numbers = project.replace(questions=("LEVADA_CONTINUE_VS_TALKS", "RF_TALKS_2031"))
    with pytest.raises(model.ConfigError) as info:
        build_design(numbered, numbers)  # a numbered id is not offered as the one meant
    assert str(info.value).endswith(f"are not in the poll table {numbered.attrs['source']}")


def test_effects_identified_only_jointly_are_found_from_the_reading_graph():
    polls = model.load_polls(f"{ROOT}/data/polls.csv")
    project = model.Config.from_toml(f"{ROOT}/config/fit.toml")
    design = build_design(polls, project)
    assert design.joint_groups == (
        (("FSO",), ("FSO_CLOSED_TALKS_VS_CONTINUE",)),
        (("Russian Field",), ("RF_CONTINUE_VS_TALKS",)),
        (("VTsIOM",), ("VTSIOM_CLOSED_TALKS_VS_CONTINUE",)),
    )
    # two houses sharing a question nobody else asks: not a pair, but still one shared shift
    relabelled = polls.copy()
    relabelled.loc[relabelled["question"] == "FSO_CLOSED_TALKS_VS_CONTINUE", "question"] = (
        "RF_CONTINUE_VS_TALKS"
    )
    config = project.replace(questions=("LEVADA_CONTINUE_VS_TALKS", "RF_CONTINUE_VS_TALKS"))
    design = build_design(relabelled, config)
    assert design.confounded == ()
    assert design.joint_groups == ((("FSO", "Russian Field"), ("RF_CONTINUE_VS_TALKS",)),)


def test_a_reference_pollster_unlinked_to_the_reference_question_is_refused():
    polls = model.load_polls(f"{ROOT}/data/polls.csv")
    config = model.Config.from_toml(f"{ROOT}/config/fit.toml").replace(
        reference_question="RF_CONTINUE_VS_TALKS"
    )
    with pytest.raises(model.ConfigError, match="not linked to the reference question"):
        build_design(polls, config)


def test_walk_knots_follow_the_precision_the_readings_give():
    """A knot closes a segment once the readings credited since the last knot pin its change to a
    quarter of the prior sd (KNOT_PRECISION_RATIO 16): sparse readings, far-apart knots; dense, close ones."""
    from model.aggregator.design import KNOT_PRECISION_RATIO, walk_knots

    step_sd, tau = 0.1, 0.06
    info = (1 / (1 / 1000 + tau**2)) * (1 - 1 / 3) / 3  # one reading of n = 1000, three answers
    # one reading per cell: the segment of m cells closes when m * m * info * step_sd**2 >= 16
    cells = np.arange(60)
    knots = walk_knots(
        cells, cells, np.full(60, 1000.0), n_answers=3, step_sd=step_sd, nonsampling_sd=tau
    )
    m = int(np.ceil(np.sqrt(KNOT_PRECISION_RATIO / (info * step_sd**2))))
    assert knots[0] == 0 and set(np.diff(knots)) == {m}, (knots, m)
    # the same readings at ten per cell: shorter segments
    dense = walk_knots(
        np.repeat(cells, 10),
        np.repeat(cells, 10),
        np.full(600, 1000.0),
        n_answers=3,
        step_sd=step_sd,
        nonsampling_sd=tau,
    )
    assert np.diff(dense).max() < m and len(dense) > len(knots)
    # a field period counts at its middle cell (here 7: one reading alone is too little after 7 cells,
    # a hundred are enough); the first knot is always cell 0, where the trend is the level
    assert list(
        walk_knots([4], [10], [1000.0], n_answers=3, step_sd=step_sd, nonsampling_sd=tau)
    ) == [0]
    assert list(
        walk_knots(
            [4] * 100, [10] * 100, [1000.0] * 100, n_answers=3, step_sd=step_sd, nonsampling_sd=tau
        )
    ) == [0, 7]


def test_the_shipped_design_samples_its_walk_by_segments():
    config = model.Config.from_toml(f"{ROOT}/config/fit.toml")
    design = build_design(
        model.load_polls(f"{ROOT}/data/polls.csv", answers=config.answers), config
    )
    knots = design.walk_knots
    assert 3 <= len(knots) < len(design.polls) and np.all(np.diff(knots) > 0)
    assert knots[0] == 0 and knots[-1] <= len(design.time) - 1


def test_auto_knots_are_centred_only_where_enough_segments_pin_the_walk_scale(sim_polls):
    """``sampler.knots = "auto"`` (the default) samples the knots centred from CENTRED_MIN_SEGMENTS
    segments between knots on, non-centred below; "centred" and "non_centred" hold whatever the
    table; the choice is recorded on the design and changes nothing else in it."""
    from model.aggregator.design import CENTRED_MIN_SEGMENTS

    config = model.Config(reference_question="Q_MAIN")
    assert config.sampler.knots == "auto"
    tables = {size: sim_polls.sort_values("field_start").head(size) for size in (8, len(sim_polls))}
    designs = {size: build_design(table, config) for size, table in tables.items()}
    segments = {size: len(d.walk_knots) - 1 for size, d in designs.items()}
    assert segments[8] < CENTRED_MIN_SEGMENTS <= segments[len(sim_polls)], segments
    assert not designs[8].centred_knots and designs[len(sim_polls)].centred_knots
    for size, auto in designs.items():
        for form, centred in (("centred", True), ("non_centred", False)):
            fixed = build_design(tables[size], config.replace(sampler={"knots": form}))
            assert fixed.centred_knots is centred
            np.testing.assert_array_equal(fixed.walk_knots, auto.walk_knots)


def test_auto_effects_are_centred_only_where_each_has_enough_readings(sim_polls):
    """``sampler.house_form`` / ``.question_form = "auto"`` (the default) sample the free house (question)
    effects centred when each has CENTRED_MIN_READINGS readings, non-centred otherwise;
    "centred" and "non_centred" hold whatever the table, and change nothing else in the design."""
    from model.aggregator.design import CENTRED_MIN_READINGS

    config = model.Config(reference_question="Q_MAIN")
    assert (config.sampler.house_form, config.sampler.question_form) == ("auto", "auto")
    # zero-sum house effects: every house's effect is free
    per_house = sim_polls["pollster"].value_counts()
    sparse_house = per_house.idxmin()
    assert per_house.min() < CENTRED_MIN_READINGS <= per_house.drop(sparse_house).min(), per_house
    tables = {
        "every house": sim_polls,
        "without the sparse house": sim_polls[sim_polls["pollster"] != sparse_house],
    }
    designs = {name: build_design(table, config) for name, table in tables.items()}
    assert not designs["every house"].centred_houses
    assert designs["without the sparse house"].centred_houses
    for name, auto in designs.items():
        table = tables[name]
        for form, centred in (("centred", True), ("non_centred", False)):
            for field, which, other in (
                ("house_form", "houses", "questions"),
                ("question_form", "questions", "houses"),
            ):
                fixed = build_design(table, config.replace(sampler={field: form}))
                assert getattr(fixed, f"centred_{which}") is centred
                assert getattr(fixed, f"centred_{other}") is getattr(auto, f"centred_{other}")
                np.testing.assert_array_equal(fixed.walk_knots, auto.walk_knots)
                assert fixed.centred_knots is auto.centred_knots


def test_the_shipped_fit_samples_its_knots_centred():
    """The shipped data pin ten changes, enough for the centred knots (the backtest's refits on
    fewer readings get the non-centred form from the same config)."""
    config = model.Config.from_toml(f"{ROOT}/config/fit.toml")
    assert config.sampler.knots == "auto"
    design = build_design(
        model.load_polls(f"{ROOT}/data/polls.csv", answers=config.answers), config
    )
    assert design.centred_knots


def test_the_readings_span_leaves_out_an_anchors_cells_before_the_first_reading():
    """An anchor before the first reading starts the grid earlier; the readings' span (over which
    effects are put in points) starts at the first reading's cell all the same."""
    from model.results.headline import averaged_over

    polls = model.load_polls(f"{ROOT}/data/polls.csv")
    project = model.Config.from_toml(f"{ROOT}/config/fit.toml")
    anchored = project.replace(
        house_effects="anchors", anchors=(model.Anchor("2020-06-01", "talks", 40.0),)
    )
    design = build_design(polls, anchored)
    assert design.time[0] <= pd.Timestamp("2020-06-01") and design.first_data_cell > 100
    first = design.time[design.first_data_cell]
    assert first <= design.polls["field_start"].min() < design.time[design.first_data_cell + 1]
    assert design.readings_span == slice(design.first_data_cell, design.last_data_cell + 1)
    assert averaged_over(design).startswith(f"averaged over the weeks from {first:%d %b %Y} to ")
    plain = build_design(polls, project)
    assert plain.first_data_cell == 0 and plain.readings_span.stop == plain.last_data_cell + 1
