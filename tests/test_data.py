"""Hold the data honest: ``data/polls.csv`` is exactly what the sourced table says, nothing more."""

from __future__ import annotations

import csv
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from model.build_data import (
    FIELD_DATES,
    FAMILIES,
    POLLS_COLUMNS,
    QUESTIONS,
    QUESTIONS_COLUMNS,
    SAME_SURVEY_AS,
    SHARE_COLUMNS,
    build,
    family_table,
)
from model.polls import PollDataError, load_polls

DATA = Path(__file__).resolve().parents[1] / "data"
SOURCED = DATA / "readings_sourced.csv"
POLLS = DATA / "polls.csv"
QUESTIONS_CSV = DATA / "questions.csv"


def read_text_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def sourced() -> pd.DataFrame:
    return read_text_table(SOURCED).set_index("src_row", drop=False)


@pytest.fixture(scope="module")
def polls() -> pd.DataFrame:
    return read_text_table(POLLS)


@pytest.fixture(scope="module")
def questions() -> pd.DataFrame:
    return read_text_table(QUESTIONS_CSV)


def exact(text: str) -> Decimal | None:
    return Decimal(text) if text.strip() else None


def test_polls_csv_loads_with_the_loader() -> None:
    loaded = load_polls(POLLS)
    assert len(loaded) > 0
    assert loaded.attrs["source"] == str(POLLS)


def test_files_have_their_documented_columns(polls: pd.DataFrame, questions: pd.DataFrame) -> None:
    assert tuple(polls.columns) == POLLS_COLUMNS
    assert tuple(questions.columns) == QUESTIONS_COLUMNS


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    written = build(SOURCED, tmp_path)
    assert written == [tmp_path / "polls.csv", tmp_path / "questions.csv"]
    assert (tmp_path / "polls.csv").read_bytes() == POLLS.read_bytes()
    assert (tmp_path / "questions.csv").read_bytes() == QUESTIONS_CSV.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "polls.csv",
        "questions.csv",
    ]  # no temp files left


def test_every_reading_comes_from_sourced_primary_rows_with_provenance(
    polls: pd.DataFrame, sourced: pd.DataFrame
) -> None:
    for reading in polls.itertuples(index=False):
        ids = reading.src_rows.split(";")
        assert ids == sorted(ids), reading.src_rows
        for src in ids:
            assert src in sourced.index, src
            row = sourced.loc[src]
            assert row["status"] == "primary", src
            assert row["source_url"].strip(), src
            assert row["excerpt"].strip(), src
            assert row["survey_id"] == reading.survey_id, src
            assert row["question_id"] == reading.question, src
            assert row["pollster"] == reading.pollster, src


def test_figures_equal_the_source_figures_exactly(
    polls: pd.DataFrame, sourced: pd.DataFrame
) -> None:
    for reading in polls.to_dict("records"):
        rows = [sourced.loc[src] for src in reading["src_rows"].split(";")]
        for answer, column in (*SHARE_COLUMNS.items(), ("n", "n")):
            given = {exact(row[column]) for row in rows} - {None}
            assert len(given) <= 1, (reading["src_rows"], column)
            assert exact(reading[answer]) == (given.pop() if given else None), (
                reading["src_rows"],
                column,
            )
            # no spurious ".0": whole figures are written as whole numbers
            assert not reading[answer].endswith(".0"), (reading["src_rows"], answer)


def test_field_dates_come_from_the_source(polls: pd.DataFrame, sourced: pd.DataFrame) -> None:
    for reading in polls.itertuples(index=False):
        given = {
            (sourced.loc[s, "field_start"], sourced.loc[s, "field_end"])
            for s in reading.src_rows.split(";")
        }
        coded = {(FIELD_DATES[s].start, FIELD_DATES[s].end) for s in reading.src_rows.split(";") if s in FIELD_DATES}
        assert (reading.field_start, reading.field_end) in (coded or given)
        assert ("dates_from_wave" in reading.flags.split(";")) == bool(coded)


def test_coded_field_dates_lie_inside_the_source_month_and_cite_sources(sourced: pd.DataFrame) -> None:
    for src, coded in FIELD_DATES.items():
        row = sourced.loc[src]
        assert row["date_precision"] == "month"
        assert row["field_start"] <= coded.start[:7] and coded.end[:7] <= row["field_end"]
        assert coded.sources and all(url.startswith("https://") and excerpt.strip() for url, excerpt in coded.sources)


def test_levada_september_2022_no_longer_straddles_the_mobilisation(polls: pd.DataFrame) -> None:
    """levada-01's fieldwork was after the 21 September 2022 announcement (its own note): coded so."""
    reading = polls[polls["src_rows"] == "levada-01"].iloc[0]
    assert reading["field_start"] > "2022-09-21" and reading["date_precision"] == "day"


def test_closed_polls_are_marked_from_the_source_rows(polls: pd.DataFrame, sourced: pd.DataFrame) -> None:
    assert set(polls["closed"]) <= {"true", "false"}
    # the readings the notes describe as closed (leaked, commissioned) polls, and no others
    closed = polls[polls["closed"] == "true"]
    assert set(closed["pollster"]) == {"FSO", "VTsIOM", "Kremlin (pollster not named)"}
    assert set(closed["src_rows"]) == {"other-00", "other-01", "other-03", "other-04", "other-39"}


def test_no_survey_and_question_twice(polls: pd.DataFrame) -> None:
    assert not polls.duplicated(["survey_id", "question"]).any()


def test_every_primary_row_is_used_exactly_once(polls: pd.DataFrame, sourced: pd.DataFrame) -> None:
    used = [src for ids in polls["src_rows"] for src in ids.split(";")]
    assert len(used) == len(set(used))
    primary = set(sourced.index[sourced["status"] == "primary"])
    assert set(used) == primary  # nothing silently dropped, nothing non-primary used


def test_merged_readings_are_flagged(polls: pd.DataFrame) -> None:
    for reading in polls.itertuples(index=False):
        merged = ";" in reading.src_rows
        assert ("merged_sources" in reading.flags.split(";")) == merged


def test_disputed_primary_rows_are_flagged(polls: pd.DataFrame, sourced: pd.DataFrame) -> None:
    for reading in polls.itertuples(index=False):
        disputed = any(sourced.loc[s, "status_reason"].strip() for s in reading.src_rows.split(";"))
        assert ("disputed" in reading.flags.split(";")) == disputed
    fso_july = polls[polls["src_rows"] == "other-01"].iloc[0]
    assert "disputed" in fso_july["flags"].split(";")


def test_same_survey_pairs_point_at_each_other(polls: pd.DataFrame) -> None:
    pairs = polls[polls["same_survey_as"] != ""]
    assert set(pairs["survey_id"]) == set(SAME_SURVEY_AS)
    for reading in pairs.itertuples(index=False):
        # a survey may have several readings (questions); each names the other survey
        others = polls[polls["survey_id"] == reading.same_survey_as]
        assert len(others) and (others["same_survey_as"] == reading.survey_id).all()
    assert SAME_SURVEY_AS["fso-2022-07"] == "vtsiom-2022-06"


def test_questions_codebook_covers_the_data(
    polls: pd.DataFrame, questions: pd.DataFrame, sourced: pd.DataFrame
) -> None:
    assert set(polls["question"]) <= set(questions["question_id"])
    assert set(questions["question_id"]) == set(sourced["question_id"])
    assert set(questions["family"]) <= set(FAMILIES)
    assert set(questions["main_curve"]) <= {"true", "false"}
    counts = polls["question"].value_counts()
    for q in questions.itertuples(index=False):
        assert int(q.readings) == counts.get(q.question_id, 0)
        assert q.wording.strip() and q.talks_means.strip() and q.continue_means.strip()
    main = set(questions.loc[questions["main_curve"] == "true", "question_id"])
    assert main == {
        "LEVADA_CONTINUE_VS_TALKS",
        "RF_CONTINUE_VS_TALKS",
        "FSO_CLOSED_TALKS_VS_CONTINUE",
        "VTSIOM_CLOSED_TALKS_VS_CONTINUE",
    }
    assert main == {q for q, info in QUESTIONS.items() if info.main_curve}


def test_polls_are_sorted_by_start_pollster_question(polls: pd.DataFrame) -> None:
    loaded = load_polls(POLLS)
    key = list(zip(loaded["field_start"], loaded["pollster"], loaded["question"], strict=True))
    assert key == sorted(key)


# --- build() on synthetic sourced tables ---------------------------------------------------


def sourced_rows(*rows: dict[str, str]) -> list[dict[str, str]]:
    """Full sourced rows: defaults for every column, overridden by `rows`."""
    base = {
        "src_row": "",
        "survey_id": "lev-2024-08",
        "status": "primary",
        "status_reason": "",
        "pollster": "Levada Center",
        "pollster_as_reported": "Levada Center",
        "field_start": "2024-08",
        "field_end": "2024-08",
        "date_precision": "month",
        "question_id": "LEVADA_CONTINUE_VS_TALKS",
        "talks_pct": "",
        "continue_pct": "",
        "dk_pct": "",
        "n": "",
        "mode": "",
        "wording": "",
        "source_url": "https://example.org",
        "excerpt": "x",
        "note": "",
    }
    return [base | row for row in rows]


def write_sourced(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_merge_takes_each_rows_figures_and_the_precise_dates(tmp_path: Path) -> None:
    rows = sourced_rows(
        {"src_row": "a-2", "talks_pct": "50.0"},
        {
            "src_row": "a-1",
            "continue_pct": "41.0",
            "field_start": "2024-08-22",
            "field_end": "2024-08-28",
            "date_precision": "day",
            "n": "1600.0",
        },
        {"src_row": "a-3", "talks_pct": "49.0", "status": "superseded", "status_reason": "typo"},
    )
    build(write_sourced(tmp_path / "s.csv", rows), tmp_path)
    polls = read_text_table(tmp_path / "polls.csv")
    assert len(polls) == 1
    reading = polls.iloc[0]
    assert (reading["talks"], reading["continue"], reading["undecided"], reading["n"]) == (
        "50",
        "41",
        "",
        "1600",
    )
    assert (reading["field_start"], reading["field_end"], reading["date_precision"]) == (
        "2024-08-22",
        "2024-08-28",
        "day",
    )
    assert reading["src_rows"] == "a-1;a-2"
    assert reading["flags"] == "merged_sources"


def test_merge_conflict_raises_naming_the_src_rows(tmp_path: Path) -> None:
    rows = sourced_rows(
        {"src_row": "lev-19", "talks_pct": "50", "continue_pct": "41"},
        {"src_row": "lev-20", "talks_pct": "50", "continue_pct": "40"},
    )
    with pytest.raises(
        PollDataError, match=r"row 3, column 'continue_pct': '40'.*lev-20.*'41'.*lev-19"
    ) as info:
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path / "out")
    assert "src_rows lev-19;lev-20" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written


def test_merge_date_conflict_raises(tmp_path: Path) -> None:
    rows = sourced_rows(
        {"src_row": "a", "talks_pct": "50"},
        {
            "src_row": "b",
            "continue_pct": "41",
            "field_start": "2024-09-02",
            "field_end": "2024-09-08",
            "date_precision": "day",
        },
    )
    with pytest.raises(
        PollDataError,
        match=r"columns 'field_start', 'field_end': '2024-08..2024-08' \(src_row a\) disagrees",
    ):
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path)


def test_unknown_question_id_is_refused(tmp_path: Path) -> None:
    rows = sourced_rows({"src_row": "a", "talks_pct": "50", "question_id": "NEW_ITEM"})
    with pytest.raises(
        PollDataError, match=r"row 2, column 'question_id': 'NEW_ITEM' is not in the question table"
    ):
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path)


def test_failed_rebuild_leaves_existing_files_alone(tmp_path: Path) -> None:
    shutil.copy(POLLS, tmp_path / "polls.csv")
    rows = sourced_rows({"src_row": "a", "talks_pct": "50", "question_id": "NEW_ITEM"})
    with pytest.raises(PollDataError):
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path)
    assert (tmp_path / "polls.csv").read_bytes() == POLLS.read_bytes()


def test_codebook_table_matches_the_data(polls: pd.DataFrame, questions: pd.DataFrame) -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    table = family_table(polls, questions)
    header = "| pollster | " + " | ".join(table.columns) + " |"
    assert header in readme
    for house, counts in table.iterrows():
        assert f"| {house} | " + " | ".join(str(c) for c in counts) + " |" in readme, house
