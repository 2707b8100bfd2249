"""Checks of :func:`model.data.polls.load_polls`: every kind of bad input is named by row and column."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.data.polls import PollDataError, Problem, load_polls

HEADER = "pollster,question,field_start,field_end,n,talks,continue,undecided,survey_id,note"
GOOD = "Levada,Q1,2024-02-20,2024-02-27,1612,50,40,10,lev-2024-02,ok"


def write(tmp_path: Path, *lines: str, name: str = "polls.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_error(path: Path | pd.DataFrame, **kwargs) -> PollDataError:
    with pytest.raises(PollDataError) as info:
        load_polls(path, **kwargs)
    return info.value


def where(path: Path, row: int, column: str) -> str:
    """The start of a problem line naming the file, row and column."""
    return re.escape(f"{path} row {row}, column {column!r}:")


# --- a good table --------------------------------------------------------------------------


def test_good_table_is_typed_and_keeps_order_nans_and_metadata(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER,
        GOOD,
        "Russian Field,Q2,2024-02,2024-02,,44,,,rf-2024-02,month only",
        "Chronicles,Q3,2023-12-30,2024-01,1600.0,,35,,chr-2024-01,",
    )
    polls = load_polls(path)

    assert list(polls["pollster"]) == ["Levada", "Russian Field", "Chronicles"]
    assert list(polls.columns) == [*HEADER.split(","), "date_precision", "source_row"]
    assert pd.api.types.is_datetime64_any_dtype(polls["field_start"])
    assert pd.api.types.is_datetime64_any_dtype(polls["field_end"])
    # a month-only reading spans its whole month (2024 is a leap year)
    assert polls.loc[1, "field_start"] == pd.Timestamp("2024-02-01")
    assert polls.loc[1, "field_end"] == pd.Timestamp("2024-02-29")
    assert polls.loc[2, "field_end"] == pd.Timestamp("2024-01-31")
    assert list(polls["date_precision"]) == ["day", "month", "month"]
    # not reported stays NaN, never zero; n is float with NaN for unknown
    assert polls["n"].dtype == np.float64
    assert polls.loc[0, "n"] == 1612 and np.isnan(polls.loc[1, "n"]) and polls.loc[2, "n"] == 1600
    assert np.isnan(polls.loc[1, "continue"]) and np.isnan(polls.loc[1, "undecided"])
    assert np.isnan(polls.loc[2, "talks"]) and polls.loc[2, "continue"] == 35
    for answer in ("talks", "continue", "undecided"):
        assert polls[answer].dtype == np.float64
    # metadata kept as written
    assert list(polls["note"]) == ["ok", "month only", ""]
    assert list(polls["survey_id"]) == ["lev-2024-02", "rf-2024-02", "chr-2024-01"]
    assert list(polls["source_row"]) == [2, 3, 4]
    assert polls.attrs["source"] == str(path)


def test_dataframe_input_and_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, "Russian Field,Q2,2024-02,2024-02,,44,,,rf-2024-02,x")
    polls = load_polls(path)
    again = load_polls(polls)
    pd.testing.assert_frame_equal(again, polls)
    assert again.attrs["source"] == str(path)

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    from_frame = load_polls(frame)
    assert from_frame.attrs["source"] == "<DataFrame>"
    assert list(from_frame["source_row"]) == [2, 3]
    pd.testing.assert_frame_equal(from_frame, polls, check_dtype=False)


def test_blank_lines_are_skipped_and_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, "", "Levada,Q1,2024-03,2024-03,-5,50,40,,lev-2024-03,")
    error = load_error(path)
    assert re.search(where(path, 4, "n"), str(error))


def test_two_answer_vote_intention_table_from_other_houses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "house,pollster,question,field_start,field_end,n,yes,no,region",
        "x,Gallup,REFERENDUM,2019-05-02,2019-05-06,1004,52,48,national",
        "y,Ipsos,REFERENDUM,2019-05,2019-05,,49.5,50.5,national",
        "z,YouGov,REFERENDUM,2019-05-03,2019-05-03,2011,,47,",
    )
    polls = load_polls(path, answers=["yes", "no"])
    assert list(polls["pollster"]) == ["Gallup", "Ipsos", "YouGov"]
    assert list(polls.columns) == [
        "house",
        "pollster",
        "question",
        "field_start",
        "field_end",
        "n",
        "yes",
        "no",
        "region",
        "date_precision",
        "source_row",
    ]
    assert polls.loc[1, "yes"] == 49.5 and np.isnan(polls.loc[2, "yes"])
    assert "talks" not in polls.columns

    # the default answers do not fit this table, and the error says which columns are missing
    error = load_error(path)
    assert re.search(re.escape(f"{path}, column 'talks': is missing"), str(error))


def test_answers_that_do_not_cover_every_respondent_are_refused(tmp_path: Path) -> None:
    # Yes 52, no 41: 7% answered neither. Read as the whole sample, the shares would be rescaled
    # (yes would become 56%), while a row with "no" blank keeps its yes as a share of everyone.
    header = "pollster,question,field_start,field_end,n,yes,no"
    path = write(tmp_path, header, "Gallup,REF,2019-05-02,2019-05-06,1004,52,41")
    assert (
        f"{path} row 2, columns 'yes', 'no': every answer is reported but the shares sum to 93, "
        "less than rounding allows (98): the answers ['yes', 'no'] do not cover every respondent"
    ) in str(load_error(path, answers=["yes", "no"]))
    # Listed among the row's problems in the order of its cells: before a bad "closed" cell.
    closed = write(
        tmp_path, header + ",closed", "Gallup,REF,2019-05-02,2019-05-06,1004,52,41,maybe"
    )
    problems = load_error(closed, answers=["yes", "no"]).problems
    assert [p.column for p in problems] == [("yes", "no"), "closed"]
    # Rounding (a share may be two rounded parts) leaves 98 alone; a row with an answer blank
    # is not checked so, nor a table of one answer.
    ok = write(tmp_path, header, "G,REF,2019-05-02,2019-05-06,,49,49", "G,REF,2019-06,2019-06,,,41")
    assert len(load_polls(ok, answers=["yes", "no"])) == 2
    assert len(load_polls(ok, answers=["no"])) == 2


def test_bad_answers_argument_is_a_programming_error(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD)
    for answers in ([], ["talks", "talks"], ["talks", "n"]):
        with pytest.raises(ValueError) as info:
            load_polls(path, answers=answers)
        assert not isinstance(info.value, PollDataError)


# --- file-level problems -------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    with pytest.raises(PollDataError, match=re.escape(f"{path}: cannot be read")):
        load_polls(path)


def test_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "a_folder.csv"
    folder.mkdir()
    with pytest.raises(PollDataError, match=re.escape(f"{folder}: cannot be read")):
        load_polls(folder)


def test_not_utf8_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "polls.csv"
    text = f"{HEADER}\n{GOOD}\nLev\xe1da,Q1,2024-03,2024-03,,50,40,,lev-2024-03,\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(PollDataError, match=where(path, 3, "pollster")) as info:
        load_polls(path)
    assert "is not valid UTF-8" in str(info.value)
    assert "b'Lev\\xe1da'" in str(info.value)
    assert len(info.value.problems) == 1


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "polls.csv"
    path.write_bytes(f"{HEADER}\n{GOOD}\n".encode("utf-8-sig"))
    assert list(load_polls(path)["pollster"]) == ["Levada"]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "polls.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(PollDataError, match=re.escape(f"{path}: is empty")):
        load_polls(path)


def test_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER)
    with pytest.raises(PollDataError, match=re.escape(f"{path}: has no data rows")):
        load_polls(path)


def test_no_rows_in_a_dataframe() -> None:
    frame = pd.DataFrame(columns=HEADER.split(","))
    with pytest.raises(PollDataError, match="<DataFrame>: has no data rows"):
        load_polls(frame)


def test_missing_required_and_answer_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pollster,question,field_start,field_end,talks,continue",
        "Levada,Q1,2024-02,2024-02,50,40",
    )
    error = load_error(path)
    assert re.search(re.escape(f"{path}, column 'n': is missing"), str(error))
    assert re.search(re.escape(f"{path}, column 'undecided': is missing"), str(error))
    assert [(p.row, p.column) for p in error.problems] == [(None, "n"), (None, "undecided")]


def test_a_missing_column_names_the_tables_column_spelt_almost_so(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pollster,question,Field Start,field_end,n,talks,continue,undecdied,date",
        "Levada,Q1,2024-02,2024-02,1600,50,40,10,2024-02",
    )
    error = str(load_error(path))
    assert (
        f"{path}, column 'field_start': is missing (the table has 'Field Start', spelt almost so); "
        "expected a column named 'field_start'"
    ) in error
    assert (
        f"{path}, column 'undecided': is missing (the table has 'undecdied', spelt almost so)"
        in (error)
    )


@pytest.mark.parametrize(("separator", "called"), [(";", "semicolons"), ("\t", "tabs")])
def test_a_table_separated_by_semicolons_or_tabs_is_named_as_such(
    tmp_path: Path, separator: str, called: str
) -> None:
    """One column whose header holds the separator: the first problem says what the file is."""
    path = write(
        tmp_path,
        separator.join(["pollster", "question", "field_start", "field_end", "n", "talks"]),
        separator.join(["Levada", "Q1", "2024-02", "2024-02", "1600", "50"]),
    )
    (first,) = load_error(path).problems  # not one "column missing" per column besides
    assert (first.row, first.column) == (None, None)
    assert str(first) == (
        f"{path}: has one column, its header separated by {called}; expected comma-separated "
        f"values (some spreadsheets export {called}: save the table as CSV with commas)"
    )


def test_ragged_row(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, "Levada,Q1,2024-03,2024-03,,50")
    with pytest.raises(PollDataError, match=re.escape(f"{path} row 3: has 6 fields")):
        load_polls(path)


def test_column_named_twice(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + ",note", GOOD + ",again")
    with pytest.raises(PollDataError, match=where(path, 1, "note") + " is named twice"):
        load_polls(path)


# --- cell problems -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["2024-13-01", "2024/02/01", "Feb 2024", "2023-02-30", "2024-00"])
@pytest.mark.parametrize("column", ["field_start", "field_end"])
def test_unparseable_dates(tmp_path: Path, column: str, bad: str) -> None:
    cells = dict(zip(HEADER.split(","), GOOD.split(","), strict=True))
    cells[column] = bad
    path = write(tmp_path, HEADER, GOOD.replace("lev-2024-02", "other"), ",".join(cells.values()))
    with pytest.raises(PollDataError, match=where(path, 3, column) + " .* is not a date"):
        load_polls(path)


def test_blank_date(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, "Levada,Q1,,2024-02,,50,40,,lev,")
    with pytest.raises(PollDataError, match=where(path, 2, "field_start") + " '' is blank"):
        load_polls(path)


def test_field_end_before_field_start(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, "Levada,Q1,2024-03-10,2024-03-02,,50,40,,lev,")
    with pytest.raises(
        PollDataError, match=where(path, 2, "field_end") + " '2024-03-02' is before"
    ):
        load_polls(path)


def test_month_end_is_not_before_a_day_start_in_the_same_month(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, "Levada,Q1,2024-03-10,2024-03,,50,40,,lev,")
    polls = load_polls(path)
    assert polls.loc[0, "field_end"] == pd.Timestamp("2024-03-31")
    assert polls.loc[0, "date_precision"] == "month"


def test_date_precision_column_must_agree(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pollster,question,field_start,field_end,n,talks,continue,undecided,date_precision",
        "Levada,Q1,2024-02,2024-02,,50,40,,month",
        "Levada,Q2,2024-02,2024-02,,50,40,,day",
    )
    with pytest.raises(PollDataError, match=where(path, 3, "date_precision")) as info:
        load_polls(path)
    assert len(info.value.problems) == 1


@pytest.mark.parametrize("bad", ["101", "-1", "100.5"])
def test_share_outside_0_100(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, HEADER, f"Levada,Q1,2024-02,2024-02,,{bad},,,lev,")
    with pytest.raises(PollDataError, match=where(path, 2, "talks") + f" '{bad}' is outside 0-100"):
        load_polls(path)


@pytest.mark.parametrize("bad", ["abc", "44%", "44,5", "nan", "inf"])
def test_share_not_a_number(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, HEADER, f'Levada,Q1,2024-02,2024-02,,50,"{bad}",,lev,')
    with pytest.raises(PollDataError, match=where(path, 2, "continue") + " .* is not a number"):
        load_polls(path)


@pytest.mark.parametrize(
    ("shares", "ok"),
    [
        ("51,50,", True),  # two rounded shares: at most 101
        ("51,51,", False),
        ("34,34,33.5", True),  # three shares: at most 101.5
        ("60,40,3", False),
        ("100,,", True),
    ],
)
def test_shares_summing_over_100_beyond_rounding(tmp_path: Path, shares: str, ok: bool) -> None:
    path = write(tmp_path, HEADER, f"Levada,Q1,2024-02,2024-02,,{shares},lev,")
    if ok:
        load_polls(path)
        return
    columns = re.escape(f"{path} row 2, columns 'talks', 'continue', 'undecided':")
    with pytest.raises(PollDataError, match=columns + " the reported shares sum to"):
        load_polls(path)


def test_row_with_no_share_reported(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, "Levada,Q1,2024-03,2024-03,1600,,,,lev-2024-03,")
    columns = re.escape(f"{path} row 3, columns 'talks', 'continue', 'undecided':")
    with pytest.raises(PollDataError, match=columns + " no share is reported"):
        load_polls(path)


@pytest.mark.parametrize("bad", ["0", "-5", "12.5", "abc", "1,612", "1e3"])
def test_n_not_a_positive_whole_number(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, HEADER, f'Levada,Q1,2024-02,2024-02,"{bad}",50,40,,lev,')
    with pytest.raises(
        PollDataError, match=where(path, 2, "n") + re.escape(f" '{bad}' is not a sample size")
    ):
        load_polls(path)


@pytest.mark.parametrize("good", ["1612", "1612.0", " 1612 ", ""])
def test_n_whole_or_blank_is_fine(tmp_path: Path, good: str) -> None:
    path = write(tmp_path, HEADER, f'Levada,Q1,2024-02,2024-02,"{good}",50,40,,lev,')
    n = load_polls(path).loc[0, "n"]
    assert (np.isnan(n) and not good) or n == 1612


def test_message_format_matches_the_style_guide(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, "Levada,Q1,2024-02,2024-02,-5,50,40,,lev,")
    error = load_error(path)
    assert str(error) == (
        f"{path} row 2, column 'n': '-5' is not a sample size; "
        "expected a positive whole number or blank"
    )
    assert error.problems == [
        Problem(
            source=str(path),
            row=2,
            column="n",
            value="-5",
            expected="a positive whole number or blank",
            issue="is not a sample size",
        )
    ]
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("column", ["pollster", "question"])
def test_blank_pollster_or_question(tmp_path: Path, column: str) -> None:
    cells = dict(zip(HEADER.split(","), GOOD.split(","), strict=True))
    cells[column] = "  "
    path = write(tmp_path, HEADER, ",".join(cells.values()))
    with pytest.raises(PollDataError, match=where(path, 2, column) + " '  ' is blank"):
        load_polls(path)


def test_same_survey_and_question_twice_with_different_figures(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, GOOD.replace(",50,40,", ",51,39,"))
    columns = re.escape(f"{path} row 3, columns 'survey_id', 'question':")
    with pytest.raises(
        PollDataError, match=columns + r" .*row 2 is given twice \(with different figures\)"
    ):
        load_polls(path)


def test_same_survey_and_question_twice_with_the_same_figures(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, GOOD.replace(",ok", ",copied from another article"))
    with pytest.raises(
        PollDataError,
        match=r"row 3, columns 'survey_id', 'question': .*given twice \(with the same figures\)",
    ):
        load_polls(path)


def test_same_survey_without_survey_id_is_pollster_and_dates(tmp_path: Path) -> None:
    header = "pollster,question,field_start,field_end,n,talks,continue,undecided"
    path = write(
        tmp_path,
        header,
        "Levada,Q1,2024-02-20,2024-02-27,1612,50,40,10",
        "Levada,Q2,2024-02-20,2024-02-27,1612,50,40,10",  # another question: fine
        "Ipsos,Q1,2024-02-20,2024-02-27,1612,50,40,10",  # another house: fine
        "Levada,Q1,2024-02-20,2024-02-27,1612,50,40,10",
    )
    columns = re.escape(
        f"{path} row 5, columns 'pollster', 'field_start', 'field_end', 'question':"
    )
    with pytest.raises(PollDataError, match=columns + " .*row 2 is given twice") as info:
        load_polls(path)
    assert len(info.value.problems) == 1


def test_the_same_survey_message_says_how_to_keep_two_samples(tmp_path: Path) -> None:
    """Two samples of one house fielded together (phone and online) are two surveys: the message
    says how to keep both as well as how to merge or drop."""
    path = write(tmp_path, HEADER, GOOD, GOOD.replace(",50,40,", ",47,43,"))
    with pytest.raises(PollDataError) as info:
        load_polls(path)
    message = str(info.value)
    assert "merge the rows, or drop one" in message
    assert "two samples fielded together" in message and "giving each its own survey_id" in message
    header = "pollster,question,field_start,field_end,n,talks,continue,undecided"
    row = "Levada,Q1,2024-02-20,2024-02-27,1612,50,40,10"
    path = write(tmp_path, header, row, row.replace(",50,40,", ",47,43,"))
    with pytest.raises(
        PollDataError, match="adding a survey_id column with a distinct id for each sample"
    ):
        load_polls(path)
    # and doing so keeps both
    path = write(
        tmp_path,
        header + ",survey_id",
        row + ",lev-phone",
        row.replace(",50,40,", ",47,43,") + ",lev-online",
    )
    assert len(load_polls(path)) == 2


def test_closed_column_is_checked_and_read(tmp_path: Path) -> None:
    from model.data.polls import closed_readings

    header = "pollster,question,field_start,field_end,n,talks,continue,undecided,closed"
    path = write(
        tmp_path,
        header,
        "FSO,Q1,2022-11,2022-11,,55,25,,true",
        "Levada,Q1,2022-11,2022-11,,53,41,6,false",
        "Levada,Q1,2022-12,2022-12,,50,40,,",
        "Levada,Q1,2023-01,2023-01,,50,40,,TRUE",
    )
    polls = load_polls(path)
    assert closed_readings(polls).tolist() == [True, False, False, True]
    assert polls["closed"].tolist() == ["true", "false", "", "TRUE"]  # kept as given
    bad = write(tmp_path, header, "FSO,Q1,2022-11,2022-11,,55,25,,leaked")
    with pytest.raises(
        PollDataError,
        match=re.escape(f"{bad} row 2, column 'closed': 'leaked' is not true, false or blank"),
    ):
        load_polls(bad)
    no_column = load_polls(
        write(tmp_path, header.rsplit(",", 1)[0], "FSO,Q1,2022-11,2022-11,,55,25,")
    )
    assert closed_readings(no_column).tolist() == [False]


def test_same_question_in_different_surveys_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("lev-2024-02", "lev-2024-02b"))
    assert len(load_polls(path)) == 2


def test_every_problem_is_collected_in_one_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER,
        GOOD,
        ",Q1,2024-03,2024-03,,50,40,,a,",  # row 3: blank pollster
        "Levada,Q1,2024-04,2024-04,abc,50,40,,b,",  # row 4: bad n
        "Levada,Q1,2024-05-09,2024-05-01,,50,40,,c,",  # row 5: end before start
        "Levada,Q1,2024-06,2024-06,,150,,,d,",  # row 6: share over 100
        "Levada,Q1,June,2024-06,0,,,,e,",  # row 7: bad date, bad n, no share
    )
    error = load_error(path)
    found = [(p.row, p.column) for p in error.problems]
    assert found == [
        (3, "pollster"),
        (4, "n"),
        (5, "field_end"),
        (6, "talks"),
        (7, "field_start"),
        (7, "n"),
        (7, ("talks", "continue", "undecided")),
    ]
    lines = str(error).splitlines()
    assert len(lines) == len(found)
    for line, (row, _) in zip(lines, found, strict=True):
        assert line.startswith(f"{path} row {row}, column")


def test_dataframe_problems_name_dataframe_rows() -> None:
    frame = pd.DataFrame(
        {
            "pollster": ["Levada", "Levada"],
            "question": ["Q1", "Q1"],
            "field_start": ["2024-02", pd.Timestamp("2024-03-04")],
            "field_end": ["2024-02", pd.Timestamp("2024-03-09")],
            "n": [1600, -5],
            "talks": [50.0, 50.0],
            "continue": [40.0, np.nan],
            "undecided": [np.nan, np.nan],
        }
    )
    with pytest.raises(
        PollDataError, match=re.escape("<DataFrame> row 3, column 'n': -5 is not a sample size")
    ):
        load_polls(frame)
    frame.loc[1, "n"] = 1600
    polls = load_polls(frame)
    assert list(polls["date_precision"]) == ["month", "day"]
    assert polls.loc[1, "field_start"] == pd.Timestamp("2024-03-04")


def test_a_copy_without_a_survey_id_is_the_same_survey_as_one_with_it(tmp_path: Path) -> None:
    # The same pollster, dates and question: an id on one copy does not make it another survey.
    blank_id = GOOD.replace("lev-2024-02", "")
    for first, second, columns in ((GOOD, blank_id, 3), (blank_id, GOOD, 3)):
        path = write(tmp_path, HEADER, first, second)
        message = str(load_error(path))
        assert (
            f"{path} row {columns}, columns 'pollster', 'field_start', 'field_end', 'question': "
            "the same survey and question as row 2 is given twice (with the same figures)"
        ) in message
    # Two samples fielded together, each with its own id, stay two readings.
    other = GOOD.replace("lev-2024-02", "lev-2024-02-online").replace(",50,40,", ",47,43,")
    assert len(load_polls(write(tmp_path, HEADER, GOOD, other))) == 2


def test_a_month_only_copy_of_a_day_range_is_the_same_survey(tmp_path: Path) -> None:
    """A source that gives only the month of a survey another gives to the day: the day range
    inside the month-only row's month is one survey (as the data build merges them), refused in
    either order; distinct day ranges, or another question, house or month, are not."""
    days = "Russian Field,Q1,2022-07-28,2022-07-31,1609,38,52,,rf-2022-07,"
    month_only = "Russian Field,Q1,2022-07,2022-07,1609,38,52,,,month only"
    for first, second, rows in ((days, month_only, (2, 3)), (month_only, days, (3, 2))):
        path = write(tmp_path, HEADER, first, second)
        error = load_error(path)
        assert len(error.problems) == 1
        assert str(error).startswith(
            f"{path} row 3, columns 'pollster', 'field_start', 'field_end', 'question': the same "
            "survey and question as row 2 is given twice (with the same figures; "
            f"row {rows[0]}'s field dates 2022-07-28 to 2022-07-31 lie inside row {rows[1]}'s "
            "month-only 2022-07); expected each survey's answer to a question once"
        )
    # a month-only row of two months holds a day range in either month
    two_months = "Russian Field,Q1,2022-06,2022-07,1609,38,52,,,months only"
    error = load_error(write(tmp_path, HEADER, days, two_months))
    assert "row 2's field dates 2022-07-28 to 2022-07-31 lie inside row 3's month-only " in str(
        error
    ) and "2022-06 to 2022-07)" in str(error)
    kept = [
        days,
        "Russian Field,Q1,2022-07-14,2022-07-17,1610,40,50,,rf-2022-07-mid,another that month",
        "Russian Field,Q1,2022-06-29,2022-07-02,1611,40,50,,rf-2022-06-end,across the month's start",
        "Russian Field,Q1,2022-06,2022-06,,41,49,,,the month before",
        "Russian Field,Q2,2022-07,2022-07,,41,49,,,another question",
        "Levada,Q1,2022-07,2022-07,,41,49,,,another house",
        "Russian Field,Q1,2022-07,2022-07,,41,49,,rf-2022-07-b,ids on both: two surveys",
    ]
    assert len(load_polls(write(tmp_path, HEADER, *kept))) == len(kept)


def test_a_named_index_is_kept_as_its_column() -> None:
    frame = pd.read_csv(io.StringIO("\n".join([HEADER, GOOD, GOOD])), dtype=str)  # one survey twice
    # survey_id as the index still names the survey: the repeated one is refused, not dropped.
    error = load_error(frame.set_index("survey_id"))
    assert "columns 'survey_id', 'question': the same survey and question as row 2" in str(error)
    polls = load_polls(frame.iloc[:1].set_index("survey_id"))
    assert polls.loc[0, "survey_id"] == "lev-2024-02" and polls.loc[0, "note"] == "ok"
    # Of a MultiIndex, the named levels become columns and the unnamed ones go.
    two = load_polls(frame.iloc[:1].set_index(["survey_id", pd.Index([7], name=None)]))
    assert "survey_id" in two and not any(str(c).startswith("level_") for c in two.columns)
    # An index of the same name as a column is named, not silently dropped.
    both = frame.iloc[:1].set_index(frame["survey_id"].iloc[:1].rename("survey_id"))
    assert "column 'survey_id': is both a column and the name of the table's index" in str(
        load_error(both)
    )


def test_a_table_of_proportions_is_refused(tmp_path: Path) -> None:
    """Said once for the table: each row's shares summing to 1, not about 100, follow from it and
    are not said too."""
    path = write(tmp_path, HEADER, GOOD.replace(",50,40,10,", ",0.5,0.4,0.1,"))
    error = load_error(path)
    assert (
        f"{path}, columns 'talks', 'continue', 'undecided': every share is at most 1 (the largest "
        "is 0.5): these look like proportions; expected shares in percent"
    ) in str(error)
    assert len(error.problems) == 1


@pytest.mark.parametrize(
    ("start", "end", "column"),
    [("2024-02-20", "2202-02-27", "field_end"), ("2099-01", "2099-01", "field_start")],
)
def test_a_field_date_after_today_is_refused(tmp_path: Path, start, end, column) -> None:
    path = write(tmp_path, HEADER, GOOD.replace("2024-02-20,2024-02-27", f"{start},{end}"))
    assert re.search(
        where(path, 2, column) + r" '\d{4}-\d{2}(-\d{2})?' is after today", str(load_error(path))
    )


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [("1924-02-20", "2024-02-27", 36533), ("2023-01", "2024-01", 396)],
)
def test_a_field_period_over_a_year_is_refused(tmp_path: Path, start, end, days) -> None:
    """A mistyped year makes one reading span decades, which would stretch the grid: refused."""
    path = write(tmp_path, HEADER, GOOD.replace("2024-02-20,2024-02-27", f"{start},{end}"))
    assert (
        f"{path} row 2, column 'field_end': '{end}' makes a field period of {days} days from "
        f"field_start '{start}'; "
        "expected a field period of at most 366 days (a mistyped year?)"
    ) in str(load_error(path))
    # a whole year, by days or by months, is a field period still
    for start, end in (("2023-01-01", "2023-12-31"), ("2023-01", "2023-12")):
        polls = load_polls(
            write(tmp_path, HEADER, GOOD.replace("2024-02-20,2024-02-27", f"{start},{end}"))
        )
        assert (polls["field_end"] - polls["field_start"]).dt.days.iloc[0] == 364


def test_a_month_reading_of_this_month_is_not_in_the_future(tmp_path: Path) -> None:
    month = pd.Timestamp.today().strftime("%Y-%m")
    path = write(tmp_path, HEADER, GOOD.replace("2024-02-20,2024-02-27", f"{month},{month}"))
    polls = load_polls(path)
    assert len(polls) == 1
    # A curve run through "today" runs to the month's end, the reading's field end.
    from model import Config
    from model.aggregator.design import build_design

    design = build_design(polls, Config(through="today"))
    assert design.data_end == polls.loc[0, "field_end"] and not design.projected.any()


def test_poll_id_and_source_row_are_the_loaders_and_the_models_own(tmp_path: Path) -> None:
    header = HEADER + ",poll_id"
    ok = GOOD + ",Levada | Q1 | 2024-02-20"
    assert (
        len(
            load_polls(
                write(
                    tmp_path, header, ok, GOOD.replace("Q1", "Q2") + ",Levada | Q2 | 2024-02-20 #2"
                )
            )
        )
        == 2
    )
    path = write(tmp_path, header, GOOD + ",my-id-7")
    expected = " 'my-id-7' is not this reading's id; expected 'Levada | Q1 | 2024-02-20'"
    assert re.search(where(path, 2, "poll_id") + re.escape(expected), str(load_error(path)))
    # A file's own source_row (the original rows, as a run's polls.csv keeps them) is kept;
    # its problems are still named by their lines in this file.
    path = write(tmp_path, HEADER + ",source_row", GOOD + ",7", GOOD.replace("Q1", "Q2") + ",14")
    assert load_polls(path)["source_row"].tolist() == [7, 14]
    path = write(
        tmp_path, HEADER + ",source_row", GOOD + ",7", GOOD.replace(",1612,", ",-5,") + ",x"
    )
    message = str(load_error(path))
    assert re.search(where(path, 3, "source_row") + " 'x' is not a row number", message)
    assert re.search(where(path, 3, "n") + " '-5' is not a sample size", message)


def test_a_runs_polls_csv_loads_back_as_the_readings_it_holds(tmp_path: Path) -> None:
    from model import Config
    from model.aggregator.design import build_design

    month = "Russian Field,Q2,2024-02,2024-02,,44,,,rf-2024-02,month only"
    polls = load_polls(write(tmp_path, HEADER, GOOD, month, name="original.csv"))
    design = build_design(polls, Config())  # model order, with each reading's poll_id
    design.polls.to_csv(tmp_path / "run.csv", index=False, date_format="%Y-%m-%d")
    again = load_polls(tmp_path / "run.csv")
    columns = ["pollster", "question", "field_start", "field_end", "n", "talks", "source_row"]
    pd.testing.assert_frame_equal(again[columns], design.polls[columns], check_dtype=False)
    assert again["poll_id"].tolist() == design.polls["poll_id"].tolist()
    assert again["date_precision"].tolist() == design.polls["date_precision"].tolist()


def test_names_one_letter_apart_are_found_but_not_labels_or_abbreviations() -> None:
    from model.data.polls import alike_names

    names = [
        "Russian Field",
        "Russian Feld",
        "Levada Center",
        "Levada-Center",
        "Levada Centre",
        "House A",
        "House B",
        "Poll 1",
        "Poll 2",
        "FOM",
        "FSO",
        "VTsIOM",
        "Chronicles",
    ]
    assert alike_names(names) == [
        ("Levada Center", "Levada-Center"),
        ("Russian Feld", "Russian Field"),
    ]
    shipped = pd.read_csv(Path(__file__).parents[2] / "data" / "polls.csv")["pollster"].unique()
    assert alike_names(shipped) == []


@pytest.mark.parametrize(
    "lines",
    [
        # an opening quote never closed: the rows after it would be read as that cell's text
        (GOOD.replace(",ok", ',"said ""hi'), GOOD.replace("2024-02", "2024-03")),
        # one closed in a later row, before text: that row would be read into this one's cell
        (GOOD.replace(",ok", ',"a note, with a comma'), GOOD.replace(",ok", ',"ok"')),
    ],
)
def test_an_unclosed_quote_is_refused_not_read_as_text_of_the_rows_after_it(
    tmp_path: Path, lines
) -> None:
    path = write(tmp_path, HEADER, GOOD.replace("2024-02", "2024-01"), *lines)
    (problem,) = load_error(path).problems
    assert problem.row == 3
    assert str(problem).startswith(f"{path} row 3: cannot be parsed as CSV from this row on: ")
    assert 'a quote inside a quoted cell is written twice ("")' in str(problem)
    # at the first data row: one problem, not "has no data rows" besides (the rows are unread)
    first = write(tmp_path, HEADER, *lines, name="first.csv")
    (problem,) = load_error(first).problems
    assert problem.row == 2
    # a quote inside an unquoted cell, and a doubled one inside a quoted cell, are cells' text
    fine = write(
        tmp_path,
        HEADER,
        GOOD.replace(",ok", ',said "hi"'),
        GOOD.replace("2024-02", "2024-03").replace(",ok", ',"a ""quoted"" note, with a comma"'),
    )
    assert load_polls(fine)["note"].tolist() == ['said "hi"', 'a "quoted" note, with a comma']


def test_text_after_a_closing_quote_is_refused_with_its_cause(tmp_path: Path) -> None:
    """Strict CSV: a cell's closing quote is followed by the comma or line end, nothing else, not
    even a space; read loosely, the quote would vanish from the cell without a word."""
    path = write(tmp_path, HEADER, GOOD.replace(",ok", ',"ok" (see note)'))
    (problem,) = load_error(path).problems
    assert str(problem) == (
        f'{path} row 2: cannot be parsed as CSV from this row on: text follows a quote (") that '
        "closes a cell, in this row or, where a quote opened in this row is not closed, in a row "
        'after it; expected well-formed CSV: a quote (") that opens a cell closes it, with '
        "nothing (not even a space) between the closing quote and the comma or line end after "
        'it, and a quote inside a quoted cell is written twice ("")'
    )
    unclosed = write(tmp_path, HEADER, GOOD.replace(",ok", ',"ok'), name="unclosed.csv")
    assert (
        'row 2: cannot be parsed as CSV from this row on: a quote (") opened in this row is '
        in (str(load_error(unclosed)))
    )


@pytest.mark.parametrize(
    ("start", "what"),
    [
        (b"PK\x03\x04\x14\x00", "is a zip archive (an Excel .xlsx or OpenDocument .ods workbook?)"),
        ("\ufeff".encode("utf-16-le"), "is UTF-16 text (its byte-order mark says so)"),
        ("\ufeff".encode("utf-16-be"), "is UTF-16 text (its byte-order mark says so)"),
        ("\ufeff".encode("utf-32-le"), "is UTF-32 text (its byte-order mark says so)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "is an Excel 97-2003 workbook (.xls)"),
        (b"", "has NUL bytes in its first line (UTF-16 or UTF-32 text without a byte-order mark?)"),
    ],
)
def test_a_workbook_or_utf16_file_is_named_as_such(tmp_path: Path, start: bytes, what) -> None:
    """Said alone: not one "column missing" per column or one "not UTF-8" per cell besides."""
    path = tmp_path / "polls.csv"
    path.write_bytes(start + f"{HEADER}\n{GOOD}\n".encode("utf-16-le"))
    (problem,) = load_error(path).problems
    assert (problem.row, problem.column) == (None, None)
    assert str(problem).startswith(f"{path}: {what}; expected ")


@pytest.mark.parametrize("year", ["1024", "1899", "0001"])
def test_a_field_date_before_1900_is_refused_as_a_mistyped_year(tmp_path: Path, year) -> None:
    """A date no ``datetime64[ns]`` column holds, or one before survey polling: a clear problem,
    not a traceback from pandas, nor a grid over centuries."""
    path = write(tmp_path, HEADER, GOOD.replace("2024-02-20", f"{year}-02-20"))
    assert (
        f"{path} row 2, column 'field_start': '{year}-02-20' is before 1900 (a mistyped year?); "
        "expected the date a survey was fielded, in 1900 or later"
    ) in str(load_error(path))
    months = write(tmp_path, HEADER, GOOD.replace("2024-02-20,2024-02-27", f"{year}-12,{year}-12"))
    problems = load_error(months).problems
    assert [(p.column, p.issue) for p in problems] == [
        (column, "is before 1900 (a mistyped year?)") for column in ("field_start", "field_end")
    ]
    frame = load_polls(write(tmp_path, HEADER, GOOD)).drop(columns=["date_precision", "source_row"])
    frame["field_start"] = [pd.Timestamp(f"{year}-02-20").to_pydatetime().date()]
    assert "column 'field_start': " in str(load_error(frame))
    assert "is before 1900 (a mistyped year?)" in str(load_error(frame))


@pytest.mark.parametrize(("first", "second"), [("FSO", "Fso"), ("Levada-Center", "Levada Center")])
def test_one_house_spelt_two_ways_is_refused(tmp_path: Path, first: str, second: str) -> None:
    """Names that are one but for case, spaces or punctuation would be fitted as two houses, and
    one survey given under both would be counted twice: refused, at the second spelling's first
    row, whatever the name's length."""
    survey = GOOD.replace("lev-2024-02", "")  # no survey id: known by house, dates and question
    path = write(
        tmp_path,
        HEADER,
        survey.replace("Levada", first),
        survey.replace("Levada", second),  # the same survey, the same figures
        survey.replace("Levada", second).replace("2024-02", "2024-03"),
    )
    (problem,) = load_error(path).problems
    assert str(problem) == (
        f"{path} row 3, column 'pollster': '{second}' is '{first}' (row 2) spelt another way: a "
        "fit would take them for two houses; expected one spelling of each house's name (case, "
        "spaces and punctuation included)"
    )
    # houses one letter apart that are two houses stay two (FOM and FSO)
    two = write(tmp_path, HEADER, survey.replace("Levada", "FOM"), survey.replace("Levada", "FSO"))
    assert load_polls(two)["pollster"].tolist() == ["FOM", "FSO"]


def test_a_missing_value_in_a_nullable_boolean_closed_column_is_blank(tmp_path: Path) -> None:
    from model.data.polls import closed_readings

    frame = load_polls(write(tmp_path, HEADER, GOOD, GOOD.replace("2024-02", "2024-03")))
    frame["closed"] = pd.array([True, pd.NA], dtype="boolean")
    polls = load_polls(frame.drop(columns=["date_precision", "source_row"]))
    assert closed_readings(polls).tolist() == [True, False]


def test_a_title_line_above_the_header_is_named_as_such(tmp_path: Path) -> None:
    """Said alone: not one "has 10 fields; expected 1" per row besides."""
    path = write(tmp_path, "Russian polls 2024", HEADER, GOOD)
    (problem,) = load_error(path).problems
    assert str(problem) == (
        f"{path} row 1: 'Russian polls 2024' is one field, and row 2 after it has 10: a title "
        "line?; expected the column names on the first line (delete any title or note above them)"
    )


def a_frame(tmp_path: Path) -> pd.DataFrame:
    """Two good readings as a notebook's DataFrame, as load_polls takes it."""
    polls = load_polls(write(tmp_path, HEADER, GOOD, GOOD.replace("2024-02", "2024-03")))
    frame = polls.drop(columns=["date_precision", "source_row"])
    frame.attrs = {}  # a table of the notebook's own, not the file's
    return frame


def test_a_notebooks_decimal_float32_and_period_cells_are_read_as_written(tmp_path: Path) -> None:
    from decimal import Decimal

    frame = a_frame(tmp_path)
    frame["n"] = [Decimal("1612"), Decimal("1600")]
    frame["talks"] = np.array([50.1, 49.9], dtype=np.float32)  # 50.099998... once stored so
    frame["field_start"] = pd.PeriodIndex(["2024-02", "2024-03-05"], freq="M")
    frame["field_end"] = pd.PeriodIndex(["2024-02-27", "2024-03-12"], freq="D")
    before = frame.copy(deep=True)
    polls = load_polls(frame)
    pd.testing.assert_frame_equal(frame, before)  # the caller's table is left as it was
    assert polls["n"].tolist() == [1612.0, 1600.0]
    assert polls["talks"].tolist() == [50.1, 49.9]
    assert polls["field_start"].tolist() == [pd.Timestamp("2024-02-01"), pd.Timestamp("2024-03-01")]
    assert polls["field_end"].tolist() == [pd.Timestamp("2024-02-27"), pd.Timestamp("2024-03-12")]
    assert polls["date_precision"].tolist() == ["month", "month"]


def test_a_notebooks_dates_with_a_zone_or_a_time_say_so(tmp_path: Path) -> None:
    frame = a_frame(tmp_path)
    frame["field_start"] = pd.to_datetime(["2024-02-20", "2024-03-20"]).tz_localize("Europe/Moscow")
    frame["field_end"] = pd.to_datetime(["2024-02-27 12:00", "2024-03-27 00:00"])
    frame["pollster"] = pd.array(["Levada", pd.NA], dtype="string")
    problems = {(p.row, p.column): str(p) for p in load_error(frame).problems}
    assert problems[(2, "field_start")].startswith(
        "<DataFrame> row 2, column 'field_start': '2024-02-20 00:00:00+03:00' has a time zone"
    )
    assert (
        "column 'field_end': '2024-02-27 12:00:00' has a time of day" in problems[(2, "field_end")]
    )
    assert problems[(3, "pollster")].startswith(
        "<DataFrame> row 3, column 'pollster': <NA> is blank; "
    )
    frame = a_frame(tmp_path)
    frame["field_start"] = pd.PeriodIndex(["2024", "2024"], freq="Y")
    assert "'2024' is a period of frequency 'Y-DEC', not a month ('M') or a day ('D')" in str(
        load_error(frame)
    )


def test_a_notebooks_table_with_two_levels_of_column_names_is_named_as_such(
    tmp_path: Path,
) -> None:
    frame = a_frame(tmp_path)
    frame.columns = pd.MultiIndex.from_tuples([(c, "") for c in frame.columns])
    (problem,) = load_error(frame).problems
    assert str(problem).startswith("<DataFrame>: has column names on 2 levels; expected one row")
