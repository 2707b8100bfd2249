"""Derive the model input, ``data/polls.csv`` and ``data/questions.csv``, from the sourced table.

``data/readings_sourced.csv`` holds one row per figure read in a published source, with its
address and excerpt (see ``data/README.md`` and ``data/notes/``). :func:`build` turns it into

``polls.csv``
    One row per poll reading (one survey's answer to one question): only ``primary`` source rows,
    rows sharing ``survey_id`` and ``question_id`` merged into one reading. Figures are copied,
    never rounded or chosen: two source rows giving different figures for the same reading are an
    error.
``questions.csv``
    The question codebook: family, wording, what the ``talks`` and ``continue`` columns mean for
    the question, and whether it feeds the main support-for-talks curve by default.

Both files are written deterministically (fixed columns, sort order and number formatting), so a
rebuild is byte-for-byte identical, and atomically (a temporary file, then a rename).

What a person decided rather than read in a source is data too, kept in the hand-edited
``data/codebook.toml`` and read by :func:`load_codebook`: each question's family, wording,
polarity and ``main_curve`` (``[questions]``), survey ids that are probably one survey
(``[same_survey]``), source rows the notes grade low confidence (``[low_confidence]``), and day
dates coded for a month-only row from other reports of its wave (``[field_dates]``). Adding any of
these never means editing code; the family vocabulary, :data:`FAMILIES`, stays here.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import pandas as pd

from model.data.polls import (
    FIRST_DATA_ROW,
    PollDataError,
    Problem,
    inside_month_only,
    load_polls,
    parse_field_date,
    read_csv_text,
)
from model.files import atomic_write_text

__all__ = [
    "CODEBOOK_NAME",
    "FAMILIES",
    "POLLS_COLUMNS",
    "QUESTIONS_COLUMNS",
    "Codebook",
    "FieldDates",
    "QuestionInfo",
    "build",
    "family_table",
    "load_codebook",
]

Family = Literal[
    "talks_vs_continue",
    "stop_vs_continue",
    "withdrawal",
    "leader_cue",
    "conditional_scenario",
    "compromise_treaty",
]
#: Question families, in the order the codebook lists them.
FAMILIES: tuple[Family, ...] = (
    "talks_vs_continue",
    "stop_vs_continue",
    "withdrawal",
    "leader_cue",
    "conditional_scenario",
    "compromise_treaty",
)

#: Columns of ``polls.csv``, in order.
POLLS_COLUMNS: tuple[str, ...] = (
    "pollster",
    "question",
    "field_start",
    "field_end",
    "n",
    "talks",
    "continue",
    "undecided",
    "survey_id",
    "src_rows",
    "date_precision",
    "mode",
    "flags",
    "same_survey_as",
    "closed",
)
#: Columns of ``questions.csv``, in order.
QUESTIONS_COLUMNS: tuple[str, ...] = (
    "question_id",
    "pollster",
    "family",
    "wording",
    "talks_means",
    "continue_means",
    "main_curve",
    "readings",
)
#: Answer column of ``polls.csv`` -> share column of the sourced table.
SHARE_COLUMNS: dict[str, str] = {
    "talks": "talks_pct",
    "continue": "continue_pct",
    "undecided": "dk_pct",
}
#: Columns the sourced table must have.
SOURCED_COLUMNS: tuple[str, ...] = (
    "src_row",
    "survey_id",
    "status",
    "status_reason",
    "pollster",
    "pollster_as_reported",
    "field_start",
    "field_end",
    "date_precision",
    "question_id",
    "talks_pct",
    "continue_pct",
    "dk_pct",
    "n",
    "mode",
    "wording",
    "source_url",
    "excerpt",
    "note",
)
STATUSES = ("primary", "superseded", "no_figures")


@dataclass(frozen=True)
class QuestionInfo:
    """What one question asks and how the model uses it by default.

    Parameters
    ----------
    family : Family
        The question family (a question effect, or a separate curve, in the model).
    wording : str
        The wording as far as it is known; ``"unpublished"`` where it never was published.
    talks_means, continue_means : str
        What the ``talks`` and ``continue`` columns of ``polls.csv`` hold for this question.
    main_curve : bool
        Whether the question feeds the main support-for-talks curve by default.
    """

    family: Family
    wording: str
    talks_means: str
    continue_means: str
    main_curve: bool


@dataclass(frozen=True)
class FieldDates:
    """Day dates of a month-only source row, coded from other reports of the same survey wave.

    Parameters
    ----------
    start, end : str
        ISO dates; they must lie inside the row's own month-only field period.
    why : str
        Why the sources describe the same wave as the row.
    sources : tuple of (str, str)
        (address, verbatim excerpt giving the dates) of each source.
    """

    start: str
    end: str
    why: str
    sources: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Codebook:
    """The curated research codes of ``data/codebook.toml``, as :func:`load_codebook` checked them.

    Parameters
    ----------
    path : str
        The file the codebook was read from, as given; problems name it.
    questions : dict of str to QuestionInfo
        Every question id the sourced table may use, in file order (the order of
        ``questions.csv``). :func:`build` refuses a question id not listed here, so a new question
        is classified by a person, not by a default.
    same_survey_as : dict of str to str
        survey_id -> the survey_id of another reading that is probably the same survey. The model
        must never count one survey twice, so a fit that includes both readings of a pair is
        refused. Symmetric, so either side finds the other (the file gives each pair once).
    low_confidence : dict of str to str
        src_row -> why the notes grade the row "Low" confidence; its reading carries the
        ``low_confidence`` flag.
    field_dates : dict of str to FieldDates
        Month-only src_row -> day dates coded from other reports of the same survey wave; the
        reading takes these dates and the ``dates_from_wave`` flag.
    """

    path: str
    questions: dict[str, QuestionInfo]
    same_survey_as: dict[str, str]
    low_confidence: dict[str, str]
    field_dates: dict[str, FieldDates]


#: File name of the codebook; :func:`build` reads the one next to the sourced table by default.
CODEBOOK_NAME = "codebook.toml"

_TEXT = "a non-blank string"
_ID = "a non-blank id without surrounding spaces"
#: Keys of each codebook table's entries -> what each key must hold.
_QUESTION_KEYS = {
    "family": f"one of {', '.join(FAMILIES)}",
    "main_curve": "true or false",
    "wording": _TEXT,
    "talks_means": _TEXT,
    "continue_means": _TEXT,
    "source": f"{_TEXT}: the note or src_row the entry comes from, and why",
}
_SAME_SURVEY_KEYS = {
    "same_as": "the survey_id of another survey",
    "why": f"{_TEXT}: why the two are probably one survey",
}
_LOW_CONFIDENCE_KEYS = {
    "reason": _TEXT,
    "source": f"{_TEXT}: the note that grades the row low confidence",
}
_FIELD_DATES_KEYS = {
    "start": "a date, YYYY-MM-DD",
    "end": "a date, YYYY-MM-DD",
    "why": _TEXT,
    "sources": "an array of tables with keys url and excerpt",
}
_SOURCE_KEYS = {"url": "an address, https://...", "excerpt": f"{_TEXT}: a verbatim excerpt"}
_TABLES = {
    "questions": "[questions.<QUESTION_ID>] tables",
    "same_survey": "[same_survey.<survey_id>] tables",
    "low_confidence": "[low_confidence.<src_row>] tables",
    "field_dates": "[field_dates.<src_row>] tables",
}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def load_codebook(path: str | Path) -> Codebook:
    """Read and check the codebook, ``data/codebook.toml``.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        The codebook file (the project's is ``data/codebook.toml``).

    Returns
    -------
    Codebook
        Its tables, with ``same_survey_as`` made symmetric and field dates as ISO strings.

    Raises
    ------
    PollDataError
        Listing every problem found, each naming the file and, in ``column``, the key path
        (e.g. ``questions.LEVADA_CONTINUE_VS_TALKS.family``): a file that cannot be read or is not
        valid TOML (with the parser's message); an unknown or missing key; a value of the wrong
        type or blank; a family not in :data:`FAMILIES`; a ``same_survey`` entry naming its own
        survey, or a survey named in more than one pair (each pair is written once); field dates
        that are not dates, an end before the start, or no sources.

    Notes
    -----
    The file's tables (its header comment says the same):

    ``[questions.<QUESTION_ID>]``
        ``family``, ``main_curve``, ``wording``, ``talks_means``, ``continue_means`` and
        ``source`` (the note the entry comes from), in the order of ``questions.csv``.
    ``[same_survey.<survey_id>]``
        ``same_as`` (the other survey_id) and ``why``.
    ``[low_confidence.<src_row>]``
        ``reason`` and ``source``.
    ``[field_dates.<src_row>]``
        ``start``, ``end`` (TOML dates or ``"YYYY-MM-DD"`` strings), ``why`` and ``sources``, an
        array of ``{url, excerpt}`` tables.
    """
    check = _CodebookCheck(str(path))
    doc = check.parse(Path(path))
    if doc is None:
        raise PollDataError(check.problems)
    for name in doc:
        if name not in _TABLES:
            check.add(
                _key(None, name),
                None,
                "is not a codebook table",
                f"only the tables {', '.join(_TABLES)}",
            )
    if "questions" not in doc:
        check.add("questions", None, "is missing", _TABLES["questions"])
    tables = {
        name: check.table(doc.get(name, {}), _key(None, name), expected)
        for name, expected in _TABLES.items()
    }

    questions: dict[str, QuestionInfo] = {}
    for question_id, entry in tables["questions"].items():
        at = _key("questions", question_id)
        if check.entry(entry, at, _QUESTION_KEYS) is None or not check.id(question_id, at):
            continue
        family = entry.get("family")
        if isinstance(family, str) and family not in FAMILIES:
            check.add(
                _key(at, "family"), family, "is not a question family", _QUESTION_KEYS["family"]
            )
        elif "family" in entry:
            check.text(entry, at, "family", _QUESTION_KEYS["family"])
        main_curve = entry.get("main_curve")
        if "main_curve" in entry and not isinstance(main_curve, bool):
            check.add(
                _key(at, "main_curve"),
                _scalar(main_curve),
                f"is {_kind(main_curve)}",
                _QUESTION_KEYS["main_curve"],
            )
        texts = {
            name: check.text(entry, at, name, _QUESTION_KEYS[name])
            for name in ("wording", "talks_means", "continue_means", "source")
        }
        if not check.problems:
            questions[question_id] = QuestionInfo(
                family=family,
                wording=texts["wording"],
                talks_means=texts["talks_means"],
                continue_means=texts["continue_means"],
                main_curve=main_curve,
            )

    same_survey_as: dict[str, str] = {}
    paired: dict[str, str] = {}  # survey_id -> the entry that names it
    for survey_id, entry in tables["same_survey"].items():
        at = _key("same_survey", survey_id)
        if check.entry(entry, at, _SAME_SURVEY_KEYS) is None or not check.id(survey_id, at):
            continue
        check.text(entry, at, "why", _SAME_SURVEY_KEYS["why"])
        other = check.text(entry, at, "same_as", _SAME_SURVEY_KEYS["same_as"])
        if other is None:
            continue
        if other == survey_id:
            check.add(_key(at, "same_as"), other, "names its own survey", "another survey_id")
            continue
        clash = [survey for survey in (survey_id, other) if survey in paired]
        if clash:
            check.add(
                at,
                clash[0],
                f"is already paired in {paired[clash[0]]}",
                "each survey in one pair, written once (the build links both ways)",
            )
            continue
        paired[survey_id] = paired[other] = at
        same_survey_as[survey_id] = other
        same_survey_as[other] = survey_id

    low_confidence: dict[str, str] = {}
    for src_row, entry in tables["low_confidence"].items():
        at = _key("low_confidence", src_row)
        if check.entry(entry, at, _LOW_CONFIDENCE_KEYS) is None or not check.id(src_row, at):
            continue
        reason = check.text(entry, at, "reason", _LOW_CONFIDENCE_KEYS["reason"])
        check.text(entry, at, "source", _LOW_CONFIDENCE_KEYS["source"])
        if reason is not None:
            low_confidence[src_row] = reason

    field_dates: dict[str, FieldDates] = {}
    for src_row, entry in tables["field_dates"].items():
        at = _key("field_dates", src_row)
        if check.entry(entry, at, _FIELD_DATES_KEYS) is None or not check.id(src_row, at):
            continue
        start, end = check.day(entry, at, "start"), check.day(entry, at, "end")
        if start is not None and end is not None and start > end:
            check.add(_key(at, "end"), end, f"is before start {start!r}", "end on or after start")
        why = check.text(entry, at, "why", _FIELD_DATES_KEYS["why"])
        sources = check.sources(entry.get("sources", []), _key(at, "sources"))
        if start and end and why and sources:
            field_dates[src_row] = FieldDates(start=start, end=end, why=why, sources=sources)

    if check.problems:
        raise PollDataError(check.problems)
    return Codebook(
        path=str(path),
        questions=questions,
        same_survey_as=same_survey_as,
        low_confidence=low_confidence,
        field_dates=field_dates,
    )


def _key(path: str | None, name: str) -> str:
    """The key path of `name` under `path`, for messages: ``questions.X.family``.

    A key that TOML would need quoted (not letters, digits, ``_`` and ``-``) is quoted.
    """
    quoted = name if _BARE_KEY.fullmatch(name) else f'"{name}"'
    return quoted if path is None else f"{path}.{quoted}"


def _kind(value: object) -> str:
    """The TOML type of a parsed value, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a time"


def _scalar(value: object) -> object:
    """A value to show in a problem: scalars as given, None for tables and arrays."""
    return None if isinstance(value, (dict, list)) else value


class _CodebookCheck:
    """Collects the problems of one codebook file (``column`` = the TOML key path)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, key: str | None, value: object, issue: str, expected: str) -> None:
        self.problems.append(
            Problem(
                source=self.source,
                row=None,
                column=key,
                value=value,
                expected=expected,
                issue=issue,
            )
        )

    def parse(self, path: Path) -> dict | None:
        expected = "the codebook, a TOML file (see data/README.md)"
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as err:
            self.add(None, None, f"cannot be read ({err.strerror or err})", expected)
            return None
        except UnicodeDecodeError as err:
            self.add(None, None, f"is not UTF-8 text ({err.reason} at byte {err.start})", expected)
            return None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            self.add(None, None, f"is not valid TOML: {err}", expected)
            return None

    def table(self, value: object, key: str, expected: str) -> dict:
        """`value` if it is a table, else an empty one (and a problem)."""
        if isinstance(value, dict):
            return value
        self.add(key, _scalar(value), f"is {_kind(value)}, not a table", expected)
        return {}

    def entry(self, value: object, key: str, keys: dict[str, str]) -> dict | None:
        """An entry's table, its unknown and missing keys reported; None if not a table."""
        if not isinstance(value, dict):
            expected = "a table with the keys " + ", ".join(keys)
            self.add(key, _scalar(value), f"is {_kind(value)}, not a table", expected)
            return None
        for name in value:
            if name not in keys:
                self.add(
                    _key(key, name), None, "is not a known key", "only the keys " + ", ".join(keys)
                )
        for name, expected in keys.items():
            if name not in value:
                self.add(_key(key, name), None, "is missing", expected)
        return value

    def id(self, name: str, key: str) -> bool:
        if name and name.strip() == name:
            return True
        self.add(key, name, "is not an id", _ID)
        return False

    def text(self, entry: dict, key: str, name: str, expected: str) -> str | None:
        """A non-blank string value; None (with a problem unless missing) otherwise."""
        if name not in entry:
            return None
        value = entry[name]
        if isinstance(value, str) and value.strip():
            return value
        issue = "is blank" if isinstance(value, str) else f"is {_kind(value)}"
        self.add(_key(key, name), _scalar(value), issue, expected)
        return None

    def day(self, entry: dict, key: str, name: str) -> str | None:
        """A date (TOML date or ``YYYY-MM-DD`` string) as an ISO string; None if not one."""
        if name not in entry:
            return None
        value = entry[name]
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        parsed = parse_field_date(value, end=False) if isinstance(value, str) else None
        if parsed is not None and parsed[1] == "day":
            return f"{parsed[0]:%Y-%m-%d}"
        self.add(_key(key, name), _scalar(value), "is not a date", _FIELD_DATES_KEYS[name])
        return None

    def sources(self, value: object, key: str) -> tuple[tuple[str, str], ...] | None:
        """The ``sources`` array of a field-dates entry as (url, excerpt) pairs."""
        expected = _FIELD_DATES_KEYS["sources"]
        if not isinstance(value, list) or not value:
            issue = "is empty" if isinstance(value, list) else f"is {_kind(value)}"
            self.add(key, _scalar(value), issue, f"{expected}, at least one")
            return None
        pairs = []
        for number, item in enumerate(value):
            at = f"{key}[{number}]"
            if self.entry(item, at, _SOURCE_KEYS) is None:
                continue
            url = self.text(item, at, "url", _SOURCE_KEYS["url"])
            if url is not None and not url.startswith(("https://", "http://")):
                self.add(_key(at, "url"), url, "is not an address", _SOURCE_KEYS["url"])
                url = None
            excerpt = self.text(item, at, "excerpt", _SOURCE_KEYS["excerpt"])
            if url is not None and excerpt is not None:
                pairs.append((url, excerpt))
        return tuple(pairs) if len(pairs) == len(value) else None


#: Flag tokens of ``polls.csv``, in the order they are written.
FLAGS: dict[str, str] = {
    "merged_sources": "the reading's figures come from more than one source row",
    "disputed": "a source row is primary but has a status_reason (e.g. disputed attribution)",
    "low_confidence": (
        "the notes grade a source row's figures low confidence (codebook [low_confidence])"
    ),
    "dates_from_wave": (
        "the field dates come from other reports of the same survey wave (codebook "
        "[field_dates]), not the row's own source"
    ),
}
#: Words of a source row's ``pollster_as_reported`` that mark a closed poll (commissioned by the
#: Kremlin, not published by the house, known from a leak): every such row says "closed".
CLOSED_MARK = re.compile(r"\bclosed\b", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def build(sourced: Path, out_dir: Path, codebook: Path | None = None) -> list[Path]:
    """Derive ``polls.csv`` and ``questions.csv`` from the sourced table and write them.

    Parameters
    ----------
    sourced : pathlib.Path
        The sourced table (``data/readings_sourced.csv``).
    out_dir : pathlib.Path
        Folder to write into (created if missing).
    codebook : pathlib.Path, optional
        The codebook (:func:`load_codebook`); by default ``codebook.toml`` next to `sourced`
        (``data/codebook.toml``).

    Returns
    -------
    list of pathlib.Path
        The written files: ``out_dir / "polls.csv"`` and ``out_dir / "questions.csv"``.

    Raises
    ------
    PollDataError
        Listing every problem found, before anything is written: any problem of the codebook
        (:func:`load_codebook`); a missing column; a blank or repeated ``src_row``; an unknown
        ``status``; a ``question_id`` not in the codebook's ``[questions]``; a figure that is not
        a number; rows of one reading (same ``survey_id`` and ``question_id``) that give
        different figures, pollsters or field dates; a ``date_precision`` that disagrees with the
        dates; coded ``[field_dates]`` outside the row's months; a ``[same_survey]`` pair one of
        whose surveys has no reading; or a derived table that fails
        :func:`model.data.polls.load_polls`.

    Notes
    -----
    Merge rule: a reading takes, for each share and for ``n``, the one non-missing value its
    source rows give (never a choice between two). Field dates are the most precise given: a day
    range inside the month(s) of a month-only row agrees with it; any other difference is an
    error.
    """
    sourced = Path(sourced)
    out_dir = Path(out_dir)
    problems: list[Problem] = []  # a missing table and a missing codebook are told together
    try:
        book = load_codebook(sourced.with_name(CODEBOOK_NAME) if codebook is None else codebook)
    except PollDataError as err:
        problems += err.problems
    try:
        table = read_csv_text(sourced)
    except PollDataError as err:
        problems += err.problems
    if problems:
        raise PollDataError(problems)
    source = str(sourced)
    _check_sourced(table, source, book)

    readings = _merge_readings(table, source, book)
    polls = _polls_frame(readings, book.same_survey_as)
    polls_path = out_dir / "polls.csv"
    checked = polls.copy()
    checked.attrs["source"] = str(polls_path)
    try:
        load_polls(checked)  # the derived table must pass the loader's checks
    except PollDataError as err:  # told at the sourced rows each reading came from
        raise PollDataError(
            [_at_sourced_rows(p, polls, table, source) for p in err.problems]
        ) from None

    questions = _questions_frame(table, polls, source, book.questions)
    texts = {polls_path: _to_csv(polls), out_dir / "questions.csv": _to_csv(questions)}
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        atomic_write_text(path, text, newline="")
    return list(texts)


def _at_sourced_rows(
    problem: Problem, polls: pd.DataFrame, table: pd.DataFrame, source: str
) -> Problem:
    """A problem the loader found in a derived reading, told at the first sourced row it merges
    (the others named in the issue) and in the sourced table's column; a problem of the whole
    derived table is told as it is."""
    if problem.row is None:
        return problem
    ids = polls.at[problem.row - FIRST_DATA_ROW, "src_rows"].split(";")
    rows = table[table["src_row"].str.strip().isin(ids)]
    column = problem.column
    if isinstance(column, tuple):
        column = tuple(SHARE_COLUMNS.get(c, c) for c in column)
    elif column is not None:
        column = SHARE_COLUMNS.get(column, column)
        given = rows[rows[column].str.strip() != ""] if column in rows else rows.iloc[:0]
        if len(given) == 1:  # the row whose figure it is (a merged reading takes each from one)
            rows = given
    merged = f" (in the reading merged from src_rows {', '.join(ids)})" if len(ids) > 1 else ""
    return replace(
        problem,
        source=source,
        row=int(rows["source_row"].astype(int).min()),
        column=column,
        issue=problem.issue + merged,
    )


def _problem(
    source: str,
    row: int | None,
    column: str | tuple[str, ...] | None,
    value: object,
    issue: str,
    expected: str,
) -> Problem:
    return Problem(
        source=source, row=row, column=column, value=value, expected=expected, issue=issue
    )


def _check_sourced(table: pd.DataFrame, source: str, book: Codebook) -> None:
    """Problems that make the sourced table unusable as a whole, raised at once."""
    problems: list[Problem] = []
    for column in SOURCED_COLUMNS:
        if column not in table.columns:
            problems.append(
                _problem(source, None, column, None, "is missing", f"a column named {column!r}")
            )
    if problems:
        raise PollDataError(problems)
    seen: dict[str, int] = {}
    for row in table.itertuples(index=False):
        at = int(row.source_row)
        src = row.src_row.strip()
        if not src:
            problems.append(_problem(source, at, "src_row", row.src_row, "is blank", "a row id"))
        elif src in seen:
            problems.append(
                _problem(source, at, "src_row", src, f"repeats row {seen[src]}", "a unique row id")
            )
        else:
            seen[src] = at
        if row.status not in STATUSES:
            problems.append(
                _problem(source, at, "status", row.status, "is not a status", f"one of {STATUSES}")
            )
        if row.question_id not in book.questions:
            problems.append(
                _problem(
                    source,
                    at,
                    "question_id",
                    row.question_id,
                    f"is not in the question table ([questions] of {book.path})",
                    f"a known question id; classify a new question as a [questions.<id>] table "
                    f"in {book.path} first",
                )
            )
        if row.status == "primary" and not row.survey_id.strip():
            problems.append(
                _problem(source, at, "survey_id", row.survey_id, "is blank", "a survey id")
            )
    if problems:
        raise PollDataError(problems)


def _figure(text: str) -> Decimal | None:
    """A figure of the sourced table as an exact decimal; None when blank."""
    text = text.strip()
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not number.is_finite():
        raise ValueError(text)
    return number


def _format_figure(number: Decimal | None) -> str:
    """Write a figure exactly, without a spurious ``.0``: 44.0 -> ``44``, 44.5 -> ``44.5``."""
    if number is None:
        return ""
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _span(start: str, end: str) -> tuple[str, str, str] | None:
    """(first day, last day, precision) as ISO strings (:func:`model.data.polls.parse_field_date`);
    None if a date is malformed."""
    first, last = parse_field_date(start, end=False), parse_field_date(end, end=True)
    if first is None or last is None:
        return None
    precision = "day" if first[1] == last[1] == "day" else "month"
    return f"{first[0]:%Y-%m-%d}", f"{last[0]:%Y-%m-%d}", precision


@dataclass
class _Reading:
    survey_id: str
    question: str
    pollster: str
    field_start: str
    field_end: str
    date_precision: str
    sort_start: str
    figures: dict[str, Decimal | None]
    src_rows: list[str]
    modes: list[str]
    flags: list[str]
    closed: bool


def _merge_readings(table: pd.DataFrame, source: str, book: Codebook) -> list[_Reading]:
    problems: list[Problem] = []
    primary = table[table["status"] == "primary"]
    groups: dict[tuple[str, str], list[pd.Series]] = {}
    for _, row in primary.iterrows():
        groups.setdefault((row["survey_id"].strip(), row["question_id"]), []).append(row)

    readings: list[_Reading] = []
    for (survey_id, question), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["src_row"])
        ids = ";".join(r["src_row"] for r in rows)
        context = f"(survey_id {survey_id!r}, question_id {question!r}; src_rows {ids})"
        before = len(problems)

        figures: dict[str, Decimal | None] = {}
        for name, column in (*SHARE_COLUMNS.items(), ("n", "n")):
            figures[name] = None
            given_by: tuple[pd.Series, Decimal] | None = None
            for r in rows:
                try:
                    value = _figure(r[column])
                except ValueError:
                    problems.append(
                        _problem(
                            source,
                            int(r["source_row"]),
                            column,
                            r[column],
                            "is not a number",
                            "a number or blank",
                        )
                    )
                    continue
                if value is None:
                    continue
                if given_by is None:
                    given_by = (r, value)
                    figures[name] = value
                elif value != given_by[1]:
                    problems.append(
                        _problem(
                            source,
                            int(r["source_row"]),
                            column,
                            r[column],
                            f"(src_row {r['src_row']}) conflicts with {given_by[0][column]!r} "
                            f"(src_row {given_by[0]['src_row']}) for the same reading {context}",
                            "one figure per survey and question: correct one row or mark it "
                            "superseded with a status_reason",
                        )
                    )

        pollsters = sorted({r["pollster"] for r in rows})
        if len(pollsters) > 1:
            problems.append(
                _problem(
                    source,
                    int(rows[-1]["source_row"]),
                    "pollster",
                    rows[-1]["pollster"],
                    f"differs between the rows of one reading {context}: {pollsters}",
                    "one pollster per survey",
                )
            )

        dates = _merge_dates(rows, source, context, problems, book)
        if len(problems) > before or dates is None:
            continue
        start, end, precision, sort_start = dates
        flags = []
        if len(rows) > 1:
            flags.append("merged_sources")
        if any(r["status_reason"].strip() for r in rows):
            flags.append("disputed")
        if any(r["src_row"] in book.low_confidence for r in rows):
            flags.append("low_confidence")
        if any(r["src_row"] in book.field_dates for r in rows):
            flags.append("dates_from_wave")
        modes = list(dict.fromkeys(r["mode"].strip() for r in rows if r["mode"].strip()))
        readings.append(
            _Reading(
                survey_id=survey_id,
                question=question,
                pollster=pollsters[0],
                field_start=start,
                field_end=end,
                date_precision=precision,
                sort_start=sort_start,
                figures=figures,
                src_rows=[r["src_row"] for r in rows],
                modes=modes,
                flags=flags,
                closed=any(CLOSED_MARK.search(r["pollster_as_reported"]) for r in rows),
            )
        )

    # A pair whose one side has lost its reading means [same_survey] is out of date.
    surveys = {reading.survey_id for reading in readings}
    for survey_id, other in book.same_survey_as.items():
        if survey_id in surveys and other not in surveys:
            problems.append(
                _problem(
                    source,
                    None,
                    "survey_id",
                    other,
                    f"is named in [same_survey] of {book.path} as the same survey as "
                    f"{survey_id!r} but has no primary row",
                    f"[same_survey] in {book.path} to pair surveys that both have readings",
                )
            )
    if problems:
        raise PollDataError(sorted(problems, key=lambda p: -1 if p.row is None else p.row))
    return readings


def _merge_dates(
    rows: Sequence[pd.Series],
    source: str,
    context: str,
    problems: list[Problem],
    book: Codebook,
) -> tuple[str, str, str, str] | None:
    """Field dates of a reading: (field_start, field_end, date_precision, first day)."""
    spans = []
    for r in rows:
        start, end = r["field_start"].strip(), r["field_end"].strip()
        span = _span(start, end)
        at = int(r["source_row"])
        coded = book.field_dates.get(r["src_row"])
        if coded is not None and span is not None:
            if not inside_month_only((coded.start, coded.end, "day"), span):
                problems.append(
                    _problem(
                        source,
                        at,
                        ("field_start", "field_end"),
                        f"{start}..{end}",
                        f"(src_row {r['src_row']}) do not contain the dates [field_dates] of "
                        f"{book.path} codes for it, {coded.start}..{coded.end}",
                        "[field_dates] only for month-only rows, with day dates inside the "
                        "row's months",
                    )
                )
                continue
            start, end = coded.start, coded.end
            span = (coded.start, coded.end, "day")
            r = r.copy()
            r["date_precision"] = "day"
        if span is None:
            problems.append(
                _problem(
                    source,
                    at,
                    ("field_start", "field_end"),
                    f"{start}..{end}",
                    "are not dates",
                    "YYYY-MM-DD, or YYYY-MM when only the month is known",
                )
            )
        elif span[0] > span[1]:
            problems.append(
                _problem(
                    source,
                    at,
                    "field_end",
                    end,
                    f"is before field_start {start!r}",
                    "field_end on or after field_start",
                )
            )
        elif r["date_precision"].strip() != span[2]:
            problems.append(
                _problem(
                    source,
                    at,
                    "date_precision",
                    r["date_precision"],
                    "disagrees with the field dates",
                    f"{span[2]!r}",
                )
            )
        else:
            spans.append(((start, end), r, span))
    if len(spans) < len(rows):
        return None

    # The most precise row gives the dates; every other row must give the same dates, or a
    # month-only span that contains them.
    best_dates, best_row, best = min(
        spans, key=lambda item: (item[2][2] != "day", item[1]["src_row"])
    )
    agree = True
    for dates, r, span in spans:
        if not (dates == best_dates or inside_month_only(best, span)):
            agree = False
            problems.append(
                _problem(
                    source,
                    int(r["source_row"]),
                    ("field_start", "field_end"),
                    "..".join(dates),
                    f"(src_row {r['src_row']}) disagrees with {'..'.join(best_dates)} "
                    f"(src_row {best_row['src_row']}) for the same reading {context}",
                    "the same field dates, or a day range inside a month-only row's month",
                )
            )
    if not agree:
        return None
    return best_dates[0], best_dates[1], best[2], best[0]


def _polls_frame(readings: list[_Reading], same_survey_as: dict[str, str]) -> pd.DataFrame:
    ordered = sorted(readings, key=lambda r: (r.sort_start, r.pollster, r.question, r.survey_id))
    records = [
        {
            "pollster": r.pollster,
            "question": r.question,
            "field_start": r.field_start,
            "field_end": r.field_end,
            "n": _format_figure(r.figures["n"]),
            **{name: _format_figure(r.figures[name]) for name in SHARE_COLUMNS},
            "survey_id": r.survey_id,
            "src_rows": ";".join(r.src_rows),
            "date_precision": r.date_precision,
            "mode": " | ".join(r.modes),
            "flags": ";".join(token for token in FLAGS if token in r.flags),
            "same_survey_as": same_survey_as.get(r.survey_id, ""),
            "closed": "true" if r.closed else "false",
        }
        for r in ordered
    ]
    return pd.DataFrame(records, columns=list(POLLS_COLUMNS), dtype="str")


def _questions_frame(
    table: pd.DataFrame,
    polls: pd.DataFrame,
    source: str,
    questions: dict[str, QuestionInfo],
) -> pd.DataFrame:
    problems: list[Problem] = []
    counts = polls["question"].value_counts()
    records = []
    for question_id, info in questions.items():
        rows = table[table["question_id"] == question_id]
        if rows.empty:
            continue
        pollsters = sorted(set(rows["pollster"]))
        if len(pollsters) > 1:
            problems.append(
                _problem(
                    source,
                    None,
                    "pollster",
                    None,
                    f"differs between rows of question {question_id!r}: {pollsters}",
                    "one house per question id",
                )
            )
            continue
        records.append(
            {
                "question_id": question_id,
                "pollster": pollsters[0],
                "family": info.family,
                "wording": info.wording,
                "talks_means": info.talks_means,
                "continue_means": info.continue_means,
                "main_curve": "true" if info.main_curve else "false",
                "readings": str(int(counts.get(question_id, 0))),
            }
        )
    if problems:
        raise PollDataError(problems)
    return pd.DataFrame(records, columns=list(QUESTIONS_COLUMNS), dtype="str")


def _to_csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(frame.columns)
    writer.writerows(frame.itertuples(index=False, name=None))
    return buffer.getvalue()


def family_table(polls: pd.DataFrame, questions: pd.DataFrame) -> pd.DataFrame:
    """Readings per house (rows) and question family (columns), with totals.

    Parameters
    ----------
    polls, questions : pandas.DataFrame
        ``polls.csv`` and ``questions.csv`` as read (any dtypes).

    Returns
    -------
    pandas.DataFrame
        Counts; families in :data:`FAMILIES` order, houses sorted, a ``total`` row and column.
    """
    family = dict(zip(questions["question_id"], questions["family"], strict=True))
    counts = pd.crosstab(polls["pollster"], polls["question"].map(family))
    counts = counts.reindex(columns=[f for f in FAMILIES if f in counts.columns], fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum(axis=0)
    counts.index.name = "pollster"
    counts.columns.name = None
    return counts
