"""Hold the data honest: ``data/polls.csv`` is exactly what the sourced table says, nothing more."""

from __future__ import annotations

import csv
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from model.data.build import (
    FAMILIES,
    POLLS_COLUMNS,
    QUESTIONS_COLUMNS,
    SHARE_COLUMNS,
    Codebook,
    build,
    family_table,
    load_codebook,
)
from model.data.polls import PollDataError, load_polls

DATA = Path(__file__).resolve().parents[2] / "data"
SOURCED = DATA / "readings_sourced.csv"
CODEBOOK = DATA / "codebook.toml"
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


@pytest.fixture(scope="module")
def codebook() -> Codebook:
    return load_codebook(CODEBOOK)


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


def test_field_dates_come_from_the_source(
    polls: pd.DataFrame, sourced: pd.DataFrame, codebook: Codebook
) -> None:
    field_dates = codebook.field_dates
    for reading in polls.itertuples(index=False):
        given = {
            (sourced.loc[s, "field_start"], sourced.loc[s, "field_end"])
            for s in reading.src_rows.split(";")
        }
        coded = {
            (field_dates[s].start, field_dates[s].end)
            for s in reading.src_rows.split(";")
            if s in field_dates
        }
        assert (reading.field_start, reading.field_end) in (coded or given)
        assert ("dates_from_wave" in reading.flags.split(";")) == bool(coded)


def test_coded_field_dates_lie_inside_the_source_month_and_cite_sources(
    sourced: pd.DataFrame, codebook: Codebook
) -> None:
    for src, coded in codebook.field_dates.items():
        row = sourced.loc[src]
        assert row["date_precision"] == "month"
        assert row["field_start"] <= coded.start[:7] and coded.end[:7] <= row["field_end"]
        assert coded.sources and all(
            url.startswith("https://") and excerpt.strip() for url, excerpt in coded.sources
        )


def test_levada_september_2022_no_longer_straddles_the_mobilisation(polls: pd.DataFrame) -> None:
    """levada-01's fieldwork was after the 21 September 2022 announcement (its own note): coded so."""
    reading = polls[polls["src_rows"] == "levada-01"].iloc[0]
    assert reading["field_start"] > "2022-09-21" and reading["date_precision"] == "day"


def test_closed_polls_are_marked_from_the_source_rows(
    polls: pd.DataFrame, sourced: pd.DataFrame
) -> None:
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


def test_same_survey_pairs_point_at_each_other(polls: pd.DataFrame, codebook: Codebook) -> None:
    pairs = polls[polls["same_survey_as"] != ""]
    assert set(pairs["survey_id"]) == set(codebook.same_survey_as)
    for reading in pairs.itertuples(index=False):
        # a survey may have several readings (questions); each names the other survey
        others = polls[polls["survey_id"] == reading.same_survey_as]
        assert len(others) and (others["same_survey_as"] == reading.survey_id).all()
    # the codebook gives the pair once; the build links both ways
    assert codebook.same_survey_as["fso-2022-07"] == "vtsiom-2022-06"
    assert codebook.same_survey_as["vtsiom-2022-06"] == "fso-2022-07"


def test_questions_codebook_covers_the_data(
    polls: pd.DataFrame, questions: pd.DataFrame, sourced: pd.DataFrame, codebook: Codebook
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
    assert main == {q for q, info in codebook.questions.items() if info.main_curve}


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
    build(write_sourced(tmp_path / "s.csv", rows), tmp_path, codebook=CODEBOOK)
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
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path / "out", codebook=CODEBOOK)
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
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path, codebook=CODEBOOK)


def test_a_figure_the_loader_refuses_is_told_at_its_sourced_row(tmp_path: Path) -> None:
    # A share over 100 in the second of two sourced rows merged into one reading, and an n of 0
    # in a reading of its own: each is named at its row and column of the sourced table.
    rows = sourced_rows(
        {"src_row": "a-1", "continue_pct": "41"},
        {"src_row": "a-2", "talks_pct": "150"},
        {
            "src_row": "b-1",
            "survey_id": "lev-2024-09",
            "field_start": "2024-09",
            "field_end": "2024-09",
            "talks_pct": "50",
            "n": "0",
        },
    )
    sourced = write_sourced(tmp_path / "s.csv", rows)
    with pytest.raises(PollDataError) as info:
        build(sourced, tmp_path / "out", codebook=CODEBOOK)
    message = str(info.value)
    assert (
        f"{sourced} row 3, column 'talks_pct': '150' is outside 0-100 (in the reading merged "
        "from src_rows a-1, a-2)"
    ) in message
    assert f"{sourced} row 4, column 'n': '0' is not a sample size" in message
    assert "out/polls.csv" not in message and not (tmp_path / "out").exists()


def test_unknown_question_id_is_refused(tmp_path: Path) -> None:
    rows = sourced_rows({"src_row": "a", "talks_pct": "50", "question_id": "NEW_ITEM"})
    with pytest.raises(
        PollDataError, match=r"row 2, column 'question_id': 'NEW_ITEM' is not in the question table"
    ):
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path, codebook=CODEBOOK)


def test_failed_rebuild_leaves_existing_files_alone(tmp_path: Path) -> None:
    shutil.copy(POLLS, tmp_path / "polls.csv")
    rows = sourced_rows({"src_row": "a", "talks_pct": "50", "question_id": "NEW_ITEM"})
    with pytest.raises(PollDataError):
        build(write_sourced(tmp_path / "s.csv", rows), tmp_path, codebook=CODEBOOK)
    assert (tmp_path / "polls.csv").read_bytes() == POLLS.read_bytes()


def test_codebook_table_matches_the_data(polls: pd.DataFrame, questions: pd.DataFrame) -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    table = family_table(polls, questions)
    header = "| pollster | " + " | ".join(table.columns) + " |"
    assert header in readme
    for house, counts in table.iterrows():
        assert f"| {house} | " + " | ".join(str(c) for c in counts) + " |" in readme, house


# --- data/codebook.toml ---------------------------------------------------------------------


def test_shipped_codebook_is_consistent(
    codebook: Codebook, questions: pd.DataFrame, sourced: pd.DataFrame
) -> None:
    # questions.csv lists the codebook's questions that have source rows, in codebook order
    used = set(sourced["question_id"])
    assert list(questions["question_id"]) == [q for q in codebook.questions if q in used]
    assert {info.family for info in codebook.questions.values()} <= set(FAMILIES)
    for survey, other in codebook.same_survey_as.items():
        assert codebook.same_survey_as[other] == survey
    assert set(codebook.low_confidence) | set(codebook.field_dates) <= set(sourced.index)


def edited_codebook(folder: Path, old: str, new: str) -> Path:
    """A copy of the shipped codebook in `folder` with `old` (found exactly once) replaced."""
    text = CODEBOOK.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = folder / "codebook.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'family = "withdrawal"',
            'family = "withdrawal"\nfamly = "withdrawal"',
            (
                r"column 'questions\.CHR_WITHDRAW_AND_NEGOTIATE_WITHOUT_GOALS\.famly': "
                r"is not a known key"
            ),
        ),
        (
            'family = "withdrawal"',
            'family = "withdrawl"',
            (
                r"column 'questions\.CHR_WITHDRAW_AND_NEGOTIATE_WITHOUT_GOALS\.family': "
                r"'withdrawl' is not a question family; expected one of talks_vs_continue"
            ),
        ),
        (
            'main_curve = true\nwording = """\\\n    Exact',
            'main_curve = "yes"\nwording = """\\\n    Exact',
            (
                r"column 'questions\.LEVADA_CONTINUE_VS_TALKS\.main_curve': 'yes' is a string; "
                r"expected true or false"
            ),
        ),
        (
            'talks_means = "prefers peace"\n',
            "",
            r"column 'questions\.CHR_PEACE_VS_NEW_MOBILIZATION\.talks_means': is missing",
        ),
        (
            'same_as = "vtsiom-2022-06"',
            'same_as = "fso-2022-07"',
            r"column 'same_survey\.fso-2022-07\.same_as': 'fso-2022-07' names its own survey",
        ),
        (
            "[low_confidence]\n",
            (
                '[same_survey."vtsiom-2022-06"]\nsame_as = "other-2099"\nwhy = "x"\n\n'
                "[low_confidence]\n"
            ),
            (
                r"column 'same_survey\.vtsiom-2022-06': 'vtsiom-2022-06' is already paired in "
                r"same_survey\.fso-2022-07"
            ),
        ),
        (
            "start = 2022-09-22",
            'start = "2022-09-31"',
            r"column 'field_dates\.levada-01\.start': '2022-09-31' is not a date",
        ),
        (
            "start = 2022-09-22",
            "start = 2022-09-29",
            r"column 'field_dates\.levada-01\.end': '2022-09-28' is before start '2022-09-29'",
        ),
        (
            "[low_confidence]\n",
            "[low_confidense]\n",
            r"column 'low_confidense': is not a codebook table",
        ),
        (
            'reason = "Russian Field Feb 2025: a single secondary source"',
            'reason = "Russian Field Feb 2025: a single secondary source"\nreason = "again"',
            (
                r"codebook\.toml: is not valid TOML: .*\(at line \d+, column \d+\); "
                r"expected the codebook, a TOML file"
            ),
        ),
        (
            'main_curve = true\nwording = """\\\n    Exact',
            'main_curve = yes\nwording = """\\\n    Exact',
            r"codebook\.toml: is not valid TOML: Invalid value \(at line \d+, column \d+\)",
        ),
    ],
    ids=[
        "unknown-key",
        "unknown-family",
        "wrong-type",
        "missing-key",
        "pair-names-itself",
        "survey-in-two-pairs",
        "not-a-date",
        "end-before-start",
        "unknown-table",
        "duplicate-key",
        "invalid-toml",
    ],
)
def test_bad_codebook_is_refused_naming_the_file_and_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    bad = edited_codebook(tmp_path, old, new)
    out = tmp_path / "out"
    with pytest.raises(PollDataError, match=message) as info:
        build(SOURCED, out, codebook=bad)
    assert all(p.source == str(bad) and p.row is None for p in info.value.problems)
    assert str(info.value).startswith(f"{bad}")
    assert not out.exists()  # nothing written


def test_codebook_problems_are_listed_together(tmp_path: Path) -> None:
    bad = edited_codebook(tmp_path, 'family = "withdrawal"', 'family = "withdrawl"\nsource2 = 1')
    bad.write_text(
        bad.read_text(encoding="utf-8").replace("start = 2022-09-22", "start = 2022-10-01"),
        encoding="utf-8",
    )
    with pytest.raises(PollDataError) as info:
        load_codebook(bad)
    at = "questions.CHR_WITHDRAW_AND_NEGOTIATE_WITHOUT_GOALS"
    assert [p.column for p in info.value.problems] == [
        f"{at}.source2",
        f"{at}.family",
        "field_dates.levada-01.end",
    ]


def test_missing_codebook_is_named(tmp_path: Path) -> None:
    sourced = tmp_path / "readings_sourced.csv"
    shutil.copy(SOURCED, sourced)
    with pytest.raises(PollDataError, match=r"codebook\.toml: cannot be read"):
        build(sourced, tmp_path / "out")  # the default: codebook.toml next to the sourced table
    assert not (tmp_path / "out").exists()


def test_a_missing_table_and_a_missing_codebook_are_told_together(tmp_path: Path) -> None:
    with pytest.raises(PollDataError) as info:
        build(tmp_path / "readings_sourced.csv", tmp_path / "out")
    sources = [Path(p.source).name for p in info.value.problems]
    assert sources == ["codebook.toml", "readings_sourced.csv"]
    assert not (tmp_path / "out").exists()


def test_a_new_question_needs_only_the_codebook(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    with (data / "codebook.toml").open("a", encoding="utf-8") as handle:
        handle.write(
            "\n[questions.NEW_TALKS_ITEM]\n"
            'family = "talks_vs_continue"\n'
            "main_curve = false\n"
            'wording = "A new talks item"\n'
            'talks_means = "for talks"\n'
            'continue_means = "for the war"\n'
            'source = "a test"\n'
        )
    with (data / "readings_sourced.csv").open("a", encoding="utf-8", newline="") as handle:
        row = sourced_rows(
            {
                "src_row": "new-01",
                "survey_id": "new-2025-01",
                "pollster": "New House",
                "pollster_as_reported": "New House",
                "field_start": "2025-01",
                "field_end": "2025-01",
                "question_id": "NEW_TALKS_ITEM",
                "talks_pct": "51",
                "continue_pct": "39",
            }
        )[0]
        csv.DictWriter(handle, fieldnames=list(row), lineterminator="\n").writerow(row)
    build(data / "readings_sourced.csv", tmp_path / "out")  # the codebook next to it
    questions = read_text_table(tmp_path / "out" / "questions.csv")
    assert questions.iloc[-1].to_dict() == {
        "question_id": "NEW_TALKS_ITEM",
        "pollster": "New House",
        "family": "talks_vs_continue",
        "wording": "A new talks item",
        "talks_means": "for talks",
        "continue_means": "for the war",
        "main_curve": "false",
        "readings": "1",
    }
    assert questions.iloc[:-1].equals(read_text_table(QUESTIONS_CSV))
    polls = read_text_table(tmp_path / "out" / "polls.csv")
    assert polls[polls["question"] == "NEW_TALKS_ITEM"]["src_rows"].tolist() == ["new-01"]
    assert len(polls) == len(read_text_table(POLLS)) + 1
