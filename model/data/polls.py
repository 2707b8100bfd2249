"""Read and check a tidy table of poll readings.

A poll table has one row per poll reading: one house's answer shares to one question in one
survey. :func:`load_polls` reads such a table from a CSV file or a :class:`pandas.DataFrame`,
checks every row, and either returns a clean, typed table or raises one :class:`PollDataError`
that lists every problem it found.

Row numbers
-----------
Problems name rows the way a user sees them in the CSV file: the header line is row 1, so the
first data row is row 2. Precisely, a row's number is the line of the file on which its record
starts, which is also the row number a spreadsheet shows (unless a quoted field spans several
lines). A :class:`pandas.DataFrame` is numbered as if it had been written with
``to_csv(index=False)``: its first row is row 2, unless it has a ``source_row`` column (as a table
returned by :func:`load_polls` has), whose numbers are then used, so problems in a filtered table
still point at the original file.
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_ANSWERS",
    "REQUIRED_COLUMNS",
    "PollDataError",
    "Problem",
    "alike_names",
    "closed_readings",
    "inside_month_only",
    "load_polls",
    "parse_field_date",
    "table_checksum",
    "reading_midpoints",
    "read_csv_text",
]

#: Columns every poll table must have, besides one column per answer.
REQUIRED_COLUMNS: tuple[str, ...] = ("pollster", "question", "field_start", "field_end", "n")
#: The answers of this project's table: move to peace talks, continue the war, undecided.
DEFAULT_ANSWERS: tuple[str, ...] = ("talks", "continue", "undecided")
#: Source name used in problems when the table was given as a DataFrame.
DATAFRAME_SOURCE = "<DataFrame>"
#: Row number of the first data row (the header line is row 1).
FIRST_DATA_ROW = 2
#: Columns that :func:`load_polls` adds (``date_precision`` only when the input lacks it).
ADDED_COLUMNS: tuple[str, ...] = ("date_precision", "source_row")

DatePrecision = Literal["day", "month"]
Column = str | tuple[str, ...] | None

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_NO_VALUE = object()  # a cell that cannot be checked: its column is missing or it is not UTF-8
#: The longest field period a reading may have, in days (first and last day counted): fieldwork
#: takes days to weeks, two months where only the months are known; a year is no one moment's
#: opinion, and a longer span is most likely a mistyped year.
MAX_FIELD_DAYS = 366
#: The earliest year a field date may have: survey polling by sampling began in the 1930s, so an
#: earlier date is a mistyped year (and one before 1677 no ``datetime64[ns]`` column can hold).
EARLIEST_FIELD_YEAR = 1900
#: Letters changed, added or removed that still make a column name alike an expected one
#: (:func:`alike_names`): ``field_strat`` is ``field_start`` with two letters swapped.
COLUMN_NAME_EDITS = 2

_EXPECT_SHARE = "a number from 0 to 100 (percent) or blank for not reported"
_EXPECT_N = "a positive whole number or blank"
_EXPECT_DATE = "a date as YYYY-MM-DD, or YYYY-MM when only the month is known"
_EXPECT_CLOSED = "true (a closed poll: commissioned, not published by the house, known from a leak), false, or blank"
#: Spellings of the ``closed`` column's values.
_CLOSED_VALUES = {"true": True, "false": False, "": False}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a poll table.

    Parameters
    ----------
    source : str
        File name as given, or ``"<DataFrame>"``.
    row : int or None
        Row number as the user sees it in the CSV (header = row 1, first data row = row 2);
        ``None`` for problems about the whole file or a whole column.
    column : str, tuple of str, or None
        The column (or columns) at fault; ``None`` when no column applies.
    value : object
        The offending value as given (``None`` when there is no single value to show).
    expected : str
        What would have been accepted.
    issue : str
        What is wrong, phrased to follow the value, e.g. ``"is not a sample size"``.
    """

    source: str
    row: int | None
    column: Column
    value: object
    expected: str
    issue: str

    def __str__(self) -> str:
        where = self.source if self.row is None else f"{self.source} row {self.row}"
        if isinstance(self.column, tuple):
            where += ", columns " + ", ".join(repr(c) for c in self.column)
        elif self.column is not None:
            where += f", column {self.column!r}"
        what = self.issue if self.value is None else f"{_show(self.value)} {self.issue}"
        return f"{where}: {what}; expected {self.expected}"


class PollDataError(ValueError):
    """A poll table failed its checks; ``problems`` lists every problem found.

    ``str(error)`` gives one problem per line, each naming the file, row, column, value and what
    was expected.

    Parameters
    ----------
    problems : sequence of Problem
        Every problem found (at least one).
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("PollDataError needs at least one problem")
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def _show(value: object) -> str:
    """Render a cell value for a message: strings and bytes quoted, numbers as written, pandas'
    missing values (``<NA>``, ``NaT``) unquoted, as no text."""
    if isinstance(value, (str, bytes)):
        return repr(value)
    if value is pd.NA or value is pd.NaT or isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return repr(value.item() if isinstance(value, np.generic) else value)
    return repr(str(value))


def _is_blank(value: object) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _as_number(value: object) -> float | None:
    """The value as a finite float, or None if it is not a plain number.

    A float of less than double precision (``float32``, ``float16``) is read as the shortest
    decimal that it rounds from (``np.float32(50.1)`` as 50.1, not 50.099998...): the figure as
    written, before a column's type rounded it."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        value = float(str(value))
    if isinstance(value, (int, float, np.integer, np.floating, Decimal)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value.strip())
    return None


def parse_field_date(value: object, *, end: bool) -> tuple[pd.Timestamp, DatePrecision] | None:
    """Resolve a field date: ``YYYY-MM-DD``, or ``YYYY-MM`` (a month resolves to its first day for a
    start, its last day for an end), or a date object.

    Parameters
    ----------
    value : str or date-like
        The cell.
    end : bool
        Whether it is a field end.

    Returns
    -------
    (pandas.Timestamp, {"day", "month"}) or None
        The day and the precision given; None when the value is not a field date.
    """
    if isinstance(value, pd.Period):  # a pandas period of a month or a day is a field date
        if value.freqstr not in ("M", "D"):
            return None
        stamp = (value.end_time if end else value.start_time).normalize()
        return pd.Timestamp(stamp.date()), "month" if value.freqstr == "M" else "day"
    if isinstance(value, (datetime, date, np.datetime64)):
        stamp = pd.Timestamp(value)
        if stamp.tz is not None or stamp != stamp.normalize():
            return None
        return stamp, "day"
    if not isinstance(value, str):
        return None
    text = value.strip()
    if match := _DAY.fullmatch(text):
        try:
            return pd.Timestamp(date(*map(int, match.groups()))), "day"
        except ValueError:
            return None
    if match := _MONTH.fullmatch(text):
        year, month = map(int, match.groups())
        if not 1 <= month <= 12 or year < 1:
            return None
        day = calendar.monthrange(year, month)[1] if end else 1
        return pd.Timestamp(date(year, month, day)), "month"
    return None


def _not_a_date(value: object) -> str:
    """Why a cell :func:`parse_field_date` does not read is not a field date, for a message."""
    if isinstance(value, pd.Period):
        return f"is a period of frequency {value.freqstr!r}, not a month ('M') or a day ('D')"
    if isinstance(value, (datetime, np.datetime64)):
        stamp = pd.Timestamp(value)
        if stamp.tz is not None:
            return (
                "has a time zone (a field date is a calendar day: drop the zone, say with "
                "df[column].dt.tz_localize(None))"
            )
        return "has a time of day (a field date is a calendar day: say df[column].dt.normalize())"
    return "is not a date"


def _spans_whole_months(start: pd.Timestamp, end: pd.Timestamp) -> bool:
    return start.day == 1 and end.day == calendar.monthrange(end.year, end.month)[1]


def inside_month_only[Day: (str, pd.Timestamp)](
    days: tuple[Day, Day, str], month_only: tuple[Day, Day, str]
) -> bool:
    """Whether a field period given to the day lies inside a month-only field period: one
    survey's dates as a source that gives the days and another that gives only the month report
    them. :func:`model.data.build.build` merges two such rows of one survey into one reading;
    :func:`load_polls` refuses them as one survey given twice.

    Parameters
    ----------
    days, month_only : (start, end, precision)
        Each period's first and last day (both ``pandas.Timestamp`` or both ISO ``YYYY-MM-DD``
        strings) and its precision, ``"day"`` or ``"month"`` (as in ``date_precision``).

    Returns
    -------
    bool
        True when `days` has day precision, `month_only` month precision, and `days` lies within
        `month_only`'s month(s).
    """
    start, end, precision = days
    month_start, month_end, month_precision = month_only
    return (
        precision == "day"
        and month_precision == "month"
        and month_start <= start <= end <= month_end
    )


def _period_text(start: pd.Timestamp, end: pd.Timestamp, precision: DatePrecision) -> str:
    """A field period for a message: its months (``2022-07``, ``2024-02 to 2024-03``) when it is
    month-only and spans whole months, else its days (``2022-07-28 to 2022-07-31``)."""
    form = "%Y-%m" if precision == "month" and _spans_whole_months(start, end) else "%Y-%m-%d"
    first, last = f"{start:{form}}", f"{end:{form}}"
    return first if first == last else f"{first} to {last}"


# --------------------------------------------------------------------------------------------
# Reading a CSV file as text
# --------------------------------------------------------------------------------------------


def read_csv_text(
    path: str | os.PathLike[str], *, required: Sequence[str] = (), kind: str | None = None
) -> pd.DataFrame:
    """Read a UTF-8 CSV file as text, every cell a string, blanks as ``""``.

    Nothing is converted: numbers and dates stay exactly as written. A ``source_row`` column is
    added holding each row's number (header = row 1, first data row = row 2).

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    required : sequence of str, default ()
        Columns the table must have.
    kind : str, optional
        What table the file should be, for the message of a missing required column ("a column
        named 'x', as in <kind>").

    Returns
    -------
    pandas.DataFrame
        One column per header field (as ``str``), plus ``source_row``; ``attrs["source"]`` holds
        the file name.

    Raises
    ------
    PollDataError
        If the file cannot be read, lacks a `required` column, is a workbook or UTF-16/32 text,
        is not UTF-8, is empty, has
        a title line above its header, has a header naming a column twice, has rows with the
        wrong number of fields, or does not parse as CSV from a row on (a quote opened and never
        closed, or text after a closing quote).
    """
    source = os.fspath(path)
    header, records, problems = _read_records(source)
    if header is not None:
        for row, cells in records:
            for column, cell in zip(header, cells, strict=True):
                if _has_undecodable(cell):
                    problems.append(_encoding_problem(source, row, column, cell))
    for column in required if header is not None and not problems else ():
        if column not in header:
            expected = f"a column named {column!r}" + (f", as in {kind}" if kind else "")
            problems.append(Problem(source, None, column, None, expected, "is missing"))
    if problems:
        raise PollDataError(problems)
    assert header is not None
    frame = pd.DataFrame([cells for _, cells in records], columns=header, dtype="str")
    if not records:
        frame = pd.DataFrame({column: pd.Series([], dtype="str") for column in header})
    frame["source_row"] = [row for row, _ in records]
    frame.attrs["source"] = source
    return frame


def _has_undecodable(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _readable(text: str) -> str:
    """Text with undecodable bytes replaced by U+FFFD, for use as a label."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _encoding_problem(source: str, row: int | None, column: Column, text: str) -> Problem:
    raw = text.encode("utf-8", "surrogateescape")
    return Problem(
        source, row, column, raw, "UTF-8 text (save the file as UTF-8)", "is not valid UTF-8"
    )


def _title_above_header(
    header: list[str], records: list[tuple[int, list[str]]], problems: list[Problem]
) -> bool:
    """Whether a first line of one field, followed by a row of more, is a title above the table
    (not a file separated by semicolons or tabs, which the loader names as such)."""
    return len(header) == 1 and not records and not problems and not {";", "\t"} & set(header[0])


#: What Python's CSV reader's errors mean for a table's author: (its message's text, the cause).
_CSV_ERRORS = (
    ("unexpected end of data", 'a quote (") opened in this row is never closed'),
    (
        "expected after",
        'text follows a quote (") that closes a cell, in this row or, where a quote opened in '
        "this row is not closed, in a row after it",
    ),
)

_SAVE_AS_CSV = "a CSV file (save the sheet as CSV UTF-8, comma-separated)"
_SAVE_AS_UTF8 = "UTF-8 text (save the file as CSV UTF-8)"
#: Files that start so are not CSV text in UTF-8: (leading bytes, what the file is, what was
#: expected), the longer marks first (UTF-32's begins as UTF-16's does).
_NOT_CSV_TEXT = (
    (b"PK\x03\x04", "a zip archive (an Excel .xlsx or OpenDocument .ods workbook?)", _SAVE_AS_CSV),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)", _SAVE_AS_CSV),
    (b"\xff\xfe\x00\x00", "UTF-32 text (its byte-order mark says so)", _SAVE_AS_UTF8),
    (b"\x00\x00\xfe\xff", "UTF-32 text (its byte-order mark says so)", _SAVE_AS_UTF8),
    (b"\xff\xfe", "UTF-16 text (its byte-order mark says so)", _SAVE_AS_UTF8),
    (b"\xfe\xff", "UTF-16 text (its byte-order mark says so)", _SAVE_AS_UTF8),
)


def _read_records(
    source: str,
) -> tuple[list[str] | None, list[tuple[int, list[str]]], list[Problem]]:
    """Header, ``(row number, cells)`` records and problems of a CSV file.

    Bytes that are not UTF-8 are kept as surrogate escapes so that the caller can report the
    cell they are in; a leading byte-order mark is dropped. Blank lines (and rows of empty
    fields only) are skipped. Records with the wrong number of fields are reported and left out.
    """
    problems: list[Problem] = []
    try:
        with open(source, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        problems.append(
            Problem(source, None, None, None, "a readable CSV file", f"cannot be read ({reason})")
        )
        return None, [], problems
    for signature, what, expected in _NOT_CSV_TEXT:
        if raw.startswith(signature):  # said alone: every cell would be wrong for this one cause
            problems.append(Problem(source, None, None, None, expected, f"is {what}"))
            return None, [], problems
    if b"\x00" in raw.split(b"\n", 1)[0]:  # no UTF-8 text has a NUL byte; UTF-16's ASCII has
        problems.append(
            Problem(
                source,
                None,
                None,
                None,
                _SAVE_AS_UTF8,
                "has NUL bytes in its first line (UTF-16 or UTF-32 text without a byte-order mark?)",
            )
        )
        return None, [], problems
    text = raw.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    # strict: a quote opened in a cell and never closed is an error, not a cell that swallows the
    # rows after it (which the default reading keeps silently, as text of that cell)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            row, start = start, reader.line_num + 1
            if all(not cell.strip() for cell in cells):
                continue  # a blank line, or a spreadsheet's empty row (commas only)
            if header is None:
                header, header_row = cells, row
                continue
            if len(cells) != len(header) and _title_above_header(header, records, problems):
                # said alone: every row after it would have "the wrong number of fields"
                return (
                    None,
                    [],
                    [
                        Problem(
                            source,
                            header_row,
                            None,
                            header[0],
                            "the column names on the first line (delete any title or note above them)",
                            f"is one field, and row {row} after it has {len(cells)}: a title line?",
                        )
                    ],
                )
            if len(cells) != len(header):
                problems.append(
                    Problem(
                        source,
                        row,
                        None,
                        None,
                        f"{len(header)} fields, one per header column",
                        f"has {len(cells)} fields",
                    )
                )
                continue
            records.append((row, cells))
    except csv.Error as err:
        cause = next((why for text, why in _CSV_ERRORS if text in str(err)), str(err))
        problems.append(
            Problem(
                source,
                start,
                None,
                None,
                'well-formed CSV: a quote (") that opens a cell closes it, with nothing (not even a '
                "space) between the closing quote and the comma or line end after it, and a quote "
                'inside a quoted cell is written twice ("")',
                f"cannot be parsed as CSV from this row on: {cause}",
            )
        )
    if header is None:
        if not problems:
            problems.append(
                Problem(source, None, None, None, "a header line and data rows", "is empty")
            )
        return None, records, problems
    seen: set[str] = set()
    for column in header:
        if _has_undecodable(column):
            problems.append(_encoding_problem(source, 1, None, column))
        elif column in seen:
            problems.append(
                Problem(source, 1, column, None, "each column named once", "is named twice")
            )
        seen.add(column)
    return header, records, problems


# --------------------------------------------------------------------------------------------
# Loading and checking a poll table
# --------------------------------------------------------------------------------------------


def load_polls(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    answers: Sequence[str] = DEFAULT_ANSWERS,
) -> pd.DataFrame:
    """Read a tidy poll table, check every row, and return it typed.

    The table has one row per poll reading and these columns (any order):

    ``pollster``
        House name; must not be blank.
    ``question``
        Question id; must not be blank.
    ``field_start``, ``field_end``
        Fieldwork dates, ``YYYY-MM-DD``, or ``YYYY-MM`` when only the month is known: the reading
        then spans the whole month (``field_start`` resolves to the month's first day,
        ``field_end`` to its last day).
    ``n``
        Sample size, a positive whole number (``1612`` or ``1612.0``), blank when unknown.
    one column per name in `answers`
        That answer's share in percent, 0 to 100; blank when not reported (which is not zero).

    ``closed`` (optional)
        ``true`` for a closed poll (commissioned, not published by the house, known from a leak),
        ``false`` or blank otherwise; kept as given, read with :func:`closed_readings`.

    Any other column is metadata and is kept untouched (read from a CSV file, as text exactly as
    written, blank cells as ``""``). Blank lines are skipped; a byte-order mark is allowed.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A UTF-8 CSV file, or a DataFrame of the same shape (cells may be strings, numbers or, for
        the dates, timestamps).
    answers : sequence of str, default ``("talks", "continue", "undecided")``
        The answer columns. Any answer set works, e.g. ``["yes", "no"]``.

    Returns
    -------
    pandas.DataFrame
        The rows in their original order, with a fresh ``RangeIndex``; ``field_start`` and
        ``field_end`` as ``datetime64`` columns, ``n`` and the answer columns as ``float64``
        with NaN for unknown / not reported, ``pollster`` and ``question`` stripped of
        surrounding spaces; ``date_precision`` (``"day"`` when both dates are days, else
        ``"month"``) and ``source_row`` (the row number used in messages) added at the end.
        ``attrs["source"]`` names the file (or ``"<DataFrame>"``, or the input DataFrame's own
        ``attrs["source"]``).

    Raises
    ------
    PollDataError
        Listing every problem found: unreadable file, a workbook or UTF-16/32 text, or not
        UTF-8; a title line above the header; CSV that does not parse from a row on (a quote
        opened and never closed, or text after a closing quote); missing required or answer
        columns; no data rows; a blank pollster or question; one house's name spelt two ways
        that differ only in case, spaces or punctuation; an unparseable date, or one before
        :data:`EARLIEST_FIELD_YEAR`; ``field_end``
        before ``field_start``; a ``date_precision`` column that disagrees with the dates; a
        share that is not a number or is outside 0-100; a row with no share reported; the
        reported shares of a row summing to more than ``100 + 0.5 * k`` for ``k`` reported shares
        (each share rounded to a whole percent is off by at most 0.5); ``n`` that is not a
        positive whole number; the same survey and question given twice (same ``survey_id`` when
        the table has that column and both cells are filled, else same pollster and
        ``field_start`` and ``field_end``, or a day range inside the month(s) of a month-only
        row, :func:`inside_month_only`), whether or not the figures agree, since one survey must
        not be counted twice; every answer (of two or more) reported with shares summing to less
        than ``100 - k`` (the answers must cover the whole sample; a share may be the sum of
        two rounded parts; not listed for a table of proportions, refused whole); a field date
        after today (a month's reading may end later this month); a table whose every share is
        at most 1 (proportions, not percent); a ``poll_id`` other than the model's id of the
        reading (``pollster | question | field start``, with ``#k`` where readings share it), and
        in a CSV file a ``source_row`` other than the row's line; a DataFrame whose index has the
        name of one of its columns (a named index is otherwise kept as a column).
    ValueError
        If `answers` is empty, repeats a name, or reuses a required or added column name.

    Notes
    -----
    Problems (and ``source_row``) number rows as the user sees them in the CSV file: the header
    line is row 1, the first data row is row 2 (see the module docstring for DataFrames).

    Examples
    --------
    >>> polls = load_polls("data/polls.csv")  # doctest: +SKIP
    >>> votes = load_polls(table, answers=["yes", "no"])  # doctest: +SKIP
    """
    answers = tuple(answers)
    _check_answers(answers)
    if isinstance(source, pd.DataFrame):
        name = str(source.attrs.get("source", DATAFRAME_SOURCE))
        frame, rows, problems = _frame_input(source, name)
        undecodable: set[tuple[int, str]] = set()
        kept = rows
    else:
        name = os.fspath(source)
        frame, rows, problems, undecodable = _file_input(name)
        # A file's rows are named by their lines in it; its own source_row column (a run's
        # polls.csv keeps the original file's rows there) is kept as given.
        kept = None if frame is None else _given_rows(frame, name, rows, problems) or rows
    if frame is None:
        raise PollDataError(problems)

    checker = _Checker(name, frame, rows, answers, undecodable, problems, kept)
    return checker.run()


def _check_answers(answers: tuple[str, ...]) -> None:
    if not answers:
        raise ValueError("answers must name at least one answer column")
    if len(set(answers)) != len(answers):
        raise ValueError(f"answers repeat a name: {answers!r}")
    clash = set(answers) & (set(REQUIRED_COLUMNS) | set(ADDED_COLUMNS) | {"survey_id"})
    if clash:
        raise ValueError(f"answers reuse reserved column names: {sorted(clash)!r}")


def _file_input(
    source: str,
) -> tuple[pd.DataFrame | None, list[int], list[Problem], set[tuple[int, str]]]:
    header, records, problems = _read_records(source)
    if header is None:
        return None, [], problems, set()
    keep = [i for i, column in enumerate(header) if column not in header[:i]]
    columns = [_readable(header[i]) for i in keep]
    data = [[cells[i] for i in keep] for _, cells in records]
    rows = [row for row, _ in records]
    undecodable: set[tuple[int, str]] = set()
    for position, cells in enumerate(data):
        for k, (column, cell) in enumerate(zip(columns, cells, strict=True)):
            if _has_undecodable(cell):
                problems.append(_encoding_problem(source, rows[position], column, cell))
                undecodable.add((position, column))
                cells[k] = _readable(cell)  # never checked further; the problem names it
    frame = pd.DataFrame(data, columns=columns, dtype="str")
    if not records:
        frame = pd.DataFrame({column: pd.Series([], dtype="str") for column in columns})
    return frame, rows, problems, undecodable


def _frame_input(
    source_frame: pd.DataFrame, name: str
) -> tuple[pd.DataFrame | None, list[int], list[Problem]]:
    problems: list[Problem] = []
    if isinstance(source_frame.columns, pd.MultiIndex):  # said alone: every column would be missing
        problems.append(
            Problem(
                name,
                None,
                None,
                None,
                "one row of column names (flatten them, say with df.columns = "
                "df.columns.get_level_values(0), or the level that names them)",
                f"has column names on {source_frame.columns.nlevels} levels",
            )
        )
        return None, [], problems
    # A named index is data (say survey_id set as the index): kept as its column, never dropped.
    named = [n for n in source_frame.index.names if n is not None]
    clash = sorted({str(n) for n in named} & {str(c) for c in source_frame.columns})
    for column in clash:
        problems.append(
            Problem(
                name,
                None,
                column,
                None,
                "one column of that name (reset_index(drop=True) if the index is not data)",
                "is both a column and the name of the table's index",
            )
        )
    if named and not clash:  # the named levels as columns; unnamed ones are positions only
        frame = source_frame.reset_index(level=named).reset_index(drop=True)
    else:
        frame = source_frame.reset_index(drop=True)
    columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for i, c in enumerate(columns) if c in columns[:i]})
    for column in duplicated:
        problems.append(
            Problem(name, None, column, None, "each column named once", "is named twice")
        )
    frame = frame.loc[:, ~pd.Index(columns).duplicated()].copy()
    frame.columns = [str(c) for c in frame.columns]
    rows = list(range(FIRST_DATA_ROW, FIRST_DATA_ROW + len(frame)))
    given = _given_rows(frame, name, rows, problems)
    return frame, rows if given is None else given, problems


def _given_rows(
    frame: pd.DataFrame, name: str, rows: list[int], problems: list[Problem]
) -> list[int] | None:
    """A table's own ``source_row`` column (each reading's row in the file it first came from,
    as :func:`load_polls` returns it and a run's ``polls.csv`` keeps it), or None without one;
    a value that is not a row number is a problem."""
    if "source_row" not in frame.columns:
        return None
    given = [_as_number(v) for v in frame["source_row"]]
    bad = [i for i, v in enumerate(given) if v is None or v < 1 or not v.is_integer()]
    for i in bad:
        problems.append(
            Problem(
                name,
                rows[i],
                "source_row",
                frame.at[i, "source_row"],
                "a positive whole number (the row in the original file)",
                "is not a row number",
            )
        )
    return None if bad else [int(v) for v in given if v is not None]


class _Checker:
    """Checks one poll table row by row, collecting problems; builds the typed result."""

    def __init__(
        self,
        source: str,
        frame: pd.DataFrame,
        rows: list[int],
        answers: tuple[str, ...],
        undecodable: set[tuple[int, str]],
        problems: list[Problem],
        kept_rows: list[int],
    ) -> None:
        self.source = source
        self.frame = frame
        self.rows = rows
        self.kept_rows = kept_rows
        self.answers = answers
        self.undecodable = undecodable
        self.problems = problems
        # Rows whose every answer is reported yet sums short of the whole sample: listed in their
        # place among the row's problems, and taken out again when the table is in proportions
        # (where every row sums short, a consequence, not a cause).
        self.short_sums: list[Problem] = []

    def problem(
        self, position: int | None, column: Column, value: object, issue: str, expected: str
    ) -> None:
        row = None if position is None else self.rows[position]
        self.problems.append(
            Problem(self.source, row, column, value, expected=expected, issue=issue)
        )

    def cell(self, position: int, column: str) -> object:
        """The cell, or ``_NO_VALUE`` if the column is missing or the cell is not UTF-8."""
        if column not in self.frame.columns or (position, column) in self.undecodable:
            return _NO_VALUE
        return self.frame.at[position, column]

    def run(self) -> pd.DataFrame:
        frame = self.frame
        if len(frame.columns) == 1:  # one column: a file separated by something else than commas
            (name,) = frame.columns
            for separator, called in ((";", "semicolons"), ("\t", "tabs")):
                if separator in str(name):  # every column would be missing: say this alone
                    self.problem(
                        None,
                        None,
                        None,
                        f"has one column, its header separated by {called}",
                        f"comma-separated values (some spreadsheets export {called}: save the "
                        "table as CSV with commas)",
                    )
                    raise PollDataError(self.problems)
        expected = (*REQUIRED_COLUMNS, *self.answers)
        unexpected = [str(c) for c in frame.columns if c not in expected]

        def missing(column: str) -> str:
            alike = spelt_almost(column, unexpected, edits=COLUMN_NAME_EDITS)
            if not alike:
                return "is missing"
            return f"is missing (the table has {' and '.join(map(repr, alike))}, spelt almost so)"

        for column in REQUIRED_COLUMNS:
            if column not in frame.columns:
                self.problem(None, column, None, missing(column), f"a column named {column!r}")
        for column in self.answers:
            if column not in frame.columns:
                self.problem(
                    None,
                    column,
                    None,
                    missing(column),
                    f"a column named {column!r}, one of the answers {list(self.answers)} (name "
                    "your table's answers with answers = [...] in the config, or "
                    "load_polls(..., answers=[...]))",
                )
        # Rows that could not be read (the wrong number of fields, or CSV that does not parse from
        # a row on) are problems of a row with no column or value: with one, a table left with no
        # rows has data rows, unread.
        unread = any(
            p.row is not None and p.column is None and p.value is None for p in self.problems
        )
        if len(frame) == 0 and not unread:
            self.problem(None, None, None, "has no data rows", "at least one poll reading")

        size = len(frame)
        text = {c: [""] * size for c in ("pollster", "question")}
        starts: list[pd.Timestamp | None] = [None] * size
        ends: list[pd.Timestamp | None] = [None] * size
        precision: list[DatePrecision | None] = [None] * size
        n = np.full(size, np.nan)
        shares = {a: np.full(size, np.nan) for a in self.answers}
        valid_key = [True] * size

        for i in range(size):
            for column in ("pollster", "question"):
                value = self.cell(i, column)
                if value is _NO_VALUE:
                    valid_key[i] = False
                elif _is_blank(value):
                    valid_key[i] = False
                    what = "house name" if column == "pollster" else "question id"
                    self.problem(i, column, "" if value is None else value, "is blank", f"a {what}")
                else:
                    text[column][i] = str(value).strip()
            starts[i], ends[i], precision[i] = self.dates(i)
            if starts[i] is None:
                valid_key[i] = False
            n[i] = self.sample_size(i)
            self.row_shares(i, shares)
            self.closed_flag(i)

        self.house_spellings(text["pollster"])
        self.duplicates(text, starts, ends, precision, n, shares, valid_key)
        if self.proportions(shares):
            consequences = {id(p) for p in self.short_sums}
            self.problems[:] = [p for p in self.problems if id(p) not in consequences]
        for i in range(size):
            self.reading_id(i, text, starts[i])
        if self.problems:
            # file and column problems first, then by row (stable: a row's cells in order)
            raise PollDataError(sorted(self.problems, key=lambda p: -1 if p.row is None else p.row))

        out = frame.copy()
        out["pollster"] = pd.Series(text["pollster"], dtype="str")
        out["question"] = pd.Series(text["question"], dtype="str")
        out["field_start"] = pd.to_datetime(pd.Series(starts, dtype="object")).astype(
            "datetime64[ns]"
        )
        out["field_end"] = pd.to_datetime(pd.Series(ends, dtype="object")).astype("datetime64[ns]")
        out["n"] = n
        for answer in self.answers:
            out[answer] = shares[answer]
        out["date_precision"] = pd.Series(precision, dtype="str")
        out["source_row"] = np.asarray(self.kept_rows, dtype=np.int64)
        out.attrs["source"] = self.source
        return out

    def dates(
        self, i: int
    ) -> tuple[pd.Timestamp | None, pd.Timestamp | None, DatePrecision | None]:
        parsed: dict[str, tuple[pd.Timestamp, DatePrecision] | None] = {}
        for column in ("field_start", "field_end"):
            value = self.cell(i, column)
            parsed[column] = None
            if value is _NO_VALUE:
                continue
            if _is_blank(value):
                self.problem(i, column, "" if value is None else value, "is blank", _EXPECT_DATE)
                continue
            parsed[column] = parse_field_date(value, end=column == "field_end")
            if parsed[column] is None:
                self.problem(i, column, value, _not_a_date(value), _EXPECT_DATE)
        start, end = parsed["field_start"], parsed["field_end"]
        today = pd.Timestamp(date.today())
        for column, got in (("field_start", start), ("field_end", end)):
            # a month's reading may end later this month; it cannot start after today
            earliest = (
                None if got is None else (got[0].replace(day=1) if got[1] == "month" else got[0])
            )
            if earliest is not None and earliest > today:
                self.problem(
                    i,
                    column,
                    self.cell(i, column),
                    f"is after today ({today:%Y-%m-%d})",
                    "the date a survey was fielded, which cannot be in the future",
                )
                start = end = None
            elif got is not None and got[0].year < EARLIEST_FIELD_YEAR:
                self.problem(
                    i,
                    column,
                    self.cell(i, column),
                    f"is before {EARLIEST_FIELD_YEAR} (a mistyped year?)",
                    f"the date a survey was fielded, in {EARLIEST_FIELD_YEAR} or later",
                )
                start = end = None
        if start is None or end is None:
            return None, None, None
        if end[0] < start[0]:
            self.problem(
                i,
                "field_end",
                self.cell(i, "field_end"),
                f"is before field_start {_show(self.cell(i, 'field_start'))}",
                "field_end on or after field_start",
            )
            return None, None, None
        days = (end[0] - start[0]).days + 1
        if days > MAX_FIELD_DAYS:
            self.problem(
                i,
                "field_end",
                self.cell(i, "field_end"),
                f"makes a field period of {days} days from field_start "
                f"{_show(self.cell(i, 'field_start'))}",
                f"a field period of at most {MAX_FIELD_DAYS} days (a mistyped year?)",
            )
            return None, None, None
        precision: DatePrecision = "day" if start[1] == end[1] == "day" else "month"
        given = self.cell(i, "date_precision")
        if given is not _NO_VALUE:
            stated = "" if _is_blank(given) else str(given).strip()
            if stated == "month" and _spans_whole_months(start[0], end[0]):
                precision = (
                    "month"  # whole months as dates: a table load_polls returned, given back
                )
            elif stated != precision:
                self.problem(
                    i,
                    "date_precision",
                    "" if given is None else given,
                    "disagrees with the field dates",
                    f"{precision!r} (from field_start and field_end), or drop the column",
                )
        return start[0], end[0], precision

    def proportions(self, shares: dict[str, np.ndarray]) -> bool:
        """A table whose every share is at most 1 holds proportions, not percent: refused whole
        (read as percent, every reading would be about no one). Returns whether it is."""
        values = np.concatenate([v[~np.isnan(v)] for v in shares.values()])
        found = bool(values.size and values.max() <= 1 and values.max() > 0)
        if found:
            self.problem(
                None,
                self.answers,
                None,
                f"every share is at most 1 (the largest is {values.max():g}): these look like "
                "proportions",
                "shares in percent, 0 to 100 (44 for 44%, not 0.44)",
            )
        return found

    def reading_id(self, i: int, text: dict[str, list[str]], start: pd.Timestamp | None) -> None:
        """A ``poll_id`` column is the model's name for each reading (pollster | question | field
        start, and ``#k`` for readings that share it), as a run's ``polls.csv`` holds it: a
        table may give it back, but not other values in it, which a fit would replace."""
        value = self.cell(i, "poll_id")
        if value is _NO_VALUE or _is_blank(value) or start is None:
            return
        base = f"{text['pollster'][i]} | {text['question'][i]} | {start:%Y-%m-%d}"
        if re.fullmatch(re.escape(base) + r"( #\d+)?", str(value).strip()):
            return
        self.problem(
            i,
            "poll_id",
            value,
            "is not this reading's id",
            f"{base!r} (the model names each reading pollster | question | field start), or "
            "blank; keep your own ids in a column of another name",
        )

    def closed_flag(self, i: int) -> None:
        value = self.cell(i, "closed")
        if value is _NO_VALUE or _closed_value(value) is not None:
            return
        self.problem(i, "closed", value, "is not true, false or blank", _EXPECT_CLOSED)

    def sample_size(self, i: int) -> float:
        value = self.cell(i, "n")
        if value is _NO_VALUE or _is_blank(value):
            return np.nan
        number = _as_number(value)
        if number is None or number <= 0 or not number.is_integer():
            self.problem(i, "n", value, "is not a sample size", _EXPECT_N)
            return np.nan
        return number

    def row_shares(self, i: int, shares: dict[str, np.ndarray]) -> None:
        reported: list[float] = []
        unusable = False
        for answer in self.answers:
            value = self.cell(i, answer)
            if value is _NO_VALUE:
                unusable = True
                continue
            if _is_blank(value):
                continue
            number = _as_number(value)
            if number is None:
                self.problem(i, answer, value, "is not a number", _EXPECT_SHARE)
                unusable = True
            elif not 0 <= number <= 100:
                self.problem(i, answer, value, "is outside 0-100", _EXPECT_SHARE)
                unusable = True
            else:
                shares[answer][i] = number
                reported.append(number)
        if not reported and not unusable:
            self.problem(
                i,
                self.answers,
                None,
                "no share is reported",
                "at least one answer's share (blank means not reported)",
            )
        limit = 100 + 0.5 * len(reported)
        total = math.fsum(reported)
        if total > limit + 1e-9:
            self.problem(
                i,
                self.answers,
                None,
                f"the reported shares sum to {total:g}, more than rounding allows ({limit:g})",
                "reported shares summing to at most 100 plus 0.5 per reported share "
                "(each share rounded to a whole percent)",
            )
        # Every answer reported (of two or more), yet some respondents in none of them: the
        # answers are not the whole sample, and the model (whose answers are) would rescale the
        # shares. A published share may be the sum of two rounded parts ("definitely" and
        # "rather"), so each share may be a point off.
        floor = 100 - 1.0 * len(reported)
        if (
            not unusable
            and len(self.answers) > 1
            and len(reported) == len(self.answers)
            and total < floor - 1e-9
        ):
            self.problem(
                i,
                self.answers,
                None,
                f"every answer is reported but the shares sum to {total:g}, less than rounding "
                f"allows ({floor:g}): the answers {list(self.answers)} do not cover every respondent",
                "shares that cover the whole sample: leave blank an answer whose share the source "
                "did not give, or add the missing answer (say a don't-know share) as an answer",
            )
            self.short_sums.append(self.problems[-1])

    def house_spellings(self, pollsters: list[str]) -> None:
        # Names that are one once case, spaces and punctuation are set aside ("FSO" and "Fso",
        # "Levada-Center" and "Levada Center") are one house spelt two ways: a fit would take
        # them for two houses, and would count one survey given under both spellings twice.
        seen: set[str] = set()  # spellings met
        by_key: dict[str, int] = {}  # each name's first spelling's first position
        for i, name in enumerate(pollsters):
            key = "".join(_name_words(name))
            if not key or name in seen:
                continue
            seen.add(name)
            j = by_key.setdefault(key, i)
            if j != i:
                self.problem(
                    i,
                    "pollster",
                    name,
                    f"is {pollsters[j]!r} (row {self.rows[j]}) spelt another way: a fit would take "
                    "them for two houses",
                    "one spelling of each house's name (case, spaces and punctuation included)",
                )

    def duplicates(
        self,
        text: dict[str, list[str]],
        starts: list[pd.Timestamp | None],
        ends: list[pd.Timestamp | None],
        precision: list[DatePrecision | None],
        n: np.ndarray,
        shares: dict[str, np.ndarray],
        valid_key: list[bool],
    ) -> None:
        # One survey's answer to a question is one row. Rows that both carry a survey_id are the
        # same survey when their ids are; otherwise (one or both without an id) when their
        # pollster and question are and so are their field dates, or the one's day range lies
        # inside the other's month-only dates (as the data build merges a survey's rows), so
        # neither an id on one copy nor a source that gives only the month hides the other.
        by_survey: dict[tuple[object, ...], int] = {}
        by_fields: dict[tuple[object, ...], list[tuple[int, bool]]] = {}
        by_precision: dict[tuple[object, ...], list[tuple[int, bool]]] = {}
        for i in range(len(self.frame)):
            survey = self.cell(i, "survey_id")
            has_id = survey is not _NO_VALUE and not _is_blank(survey)
            j, columns, nested = None, (), ""
            if has_id and text["question"][i]:
                key: tuple[object, ...] = (str(survey).strip(), text["question"][i])
                if key in by_survey:
                    j, columns = by_survey[key], ("survey_id", "question")
                else:
                    by_survey[key] = i
            if valid_key[i]:
                pollster, question = text["pollster"][i], text["question"][i]
                key = (pollster, starts[i], ends[i], question)
                earlier = by_fields.setdefault(key, [])
                if j is None:
                    j = next((k for k, k_has_id in earlier if not (has_id and k_has_id)), None)
                    columns = ("pollster", "field_start", "field_end", "question")
                if j is None:  # a day range and a month-only row around it, in either order
                    other = "month" if precision[i] == "day" else "day"
                    for k, k_has_id in by_precision.get((pollster, question, other), []):
                        if not (has_id and k_has_id):
                            nested = self.nested_periods(i, k, starts, ends, precision)
                            if nested:
                                j = k
                                break
                earlier.append((i, has_id))
                by_precision.setdefault((pollster, question, precision[i]), []).append((i, has_id))
            if j is None:
                continue
            figures = [n, *shares.values()]
            same = all((np.isnan(f[i]) and np.isnan(f[j])) or f[i] == f[j] for f in figures)
            figures_text = "the same figures" if same else "different figures"
            self.problem(
                i,
                columns,
                None,
                f"the same survey and question as row {self.rows[j]} is given twice "
                f"(with {figures_text}{nested})",
                "each survey's answer to a question once: merge the rows, or drop one; if they are "
                "two samples fielded together (say a house's phone and online samples), keep both by "
                + (
                    "giving each its own survey_id"
                    if "survey_id" in self.frame.columns
                    else "adding a survey_id column with a distinct id for each sample"
                ),
            )

    def nested_periods(
        self,
        i: int,
        k: int,
        starts: list[pd.Timestamp | None],
        ends: list[pd.Timestamp | None],
        precision: list[DatePrecision | None],
    ) -> str:
        """How the field periods of the readings at positions `i` and `k` nest
        (:func:`inside_month_only`: a day range inside a month-only reading's month or months),
        for a message; "" when they do not."""
        periods = {at: (starts[at], ends[at], precision[at]) for at in (i, k)}
        for days, month_only in ((i, k), (k, i)):
            if inside_month_only(periods[days], periods[month_only]):
                return (
                    f"; row {self.rows[days]}'s field dates {_period_text(*periods[days])} lie "
                    f"inside row {self.rows[month_only]}'s month-only "
                    f"{_period_text(*periods[month_only])}"
                )
        return ""


def _closed_value(value: object) -> bool | None:
    """A ``closed`` cell as a bool (blank: False); None if it is not a closed flag."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_blank(value):  # also pandas' missing value in a nullable boolean column
        return False
    return _CLOSED_VALUES.get(str(value).strip().lower())


def closed_readings(polls: pd.DataFrame) -> pd.Series:
    """Which readings are closed polls (the optional ``closed`` column; all False without it).

    Raises
    ------
    PollDataError
        A cell is not ``true``, ``false`` or blank (:func:`load_polls` refuses such a table first).
    """
    if "closed" not in polls:
        return pd.Series(False, index=polls.index, dtype=bool)
    values = [_closed_value(v) for v in polls["closed"]]
    bad = [i for i, v in enumerate(values) if v is None]
    if bad:
        source = str(polls.attrs.get("source", DATAFRAME_SOURCE))
        rows = (
            polls["source_row"].tolist()
            if "source_row" in polls
            else [FIRST_DATA_ROW + i for i in range(len(polls))]
        )
        raise PollDataError(
            [
                Problem(
                    source,
                    int(rows[i]),
                    "closed",
                    polls["closed"].iloc[i],
                    _EXPECT_CLOSED,
                    "is not true, false or blank",
                )
                for i in bad
            ]
        )
    return pd.Series(values, index=polls.index, dtype=bool)


def reading_midpoints(polls: pd.DataFrame) -> pd.Series:
    """The middle of each reading's field period (where a reading sits on a time axis).

    Parameters
    ----------
    polls : pandas.DataFrame
        A table from :func:`load_polls` (``field_start``, ``field_end`` as datetimes).

    Returns
    -------
    pandas.Series
        Timestamps, one per reading.
    """
    return polls["field_start"] + (polls["field_end"] - polls["field_start"]) / 2


def _within_edits(a: str, b: str, edits: int) -> bool:
    """Whether ``a`` becomes ``b`` by at most `edits` letters changed, added or removed."""
    if abs(len(a) - len(b)) > edits:
        return False
    previous = list(range(len(b) + 1))  # edits from a[:i] to each b[:j], row by row
    for i, letter in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (letter != other))
            )
        previous = current
    return previous[-1] <= edits


def _name_words(name: str) -> list[str]:
    """A name's words, case set aside, without spaces or punctuation (``_`` counts as punctuation)."""
    return re.findall(r"[^\W_]+", name.casefold())


def alike_names(names: Iterable[str], *, edits: int = 1) -> list[tuple[str, str]]:
    """Pairs of distinct names that are one letter apart (by default) once case, spaces and
    punctuation are set aside ("Russian Feld" and "Russian Field", "Levada-Center" and "Levada
    Center"): likely one house spelt two ways, which a fit would take for two. Left out: names of
    fewer than four letters (abbreviations differ by one letter by nature: FOM, FSO), and names
    that differ only in a label of one or two characters ("House A" and "House B", "Poll 1" and
    "Poll 2"); and at most one letter in four of the shorter name may differ.

    Parameters
    ----------
    names : iterable of str
        The names (house names, question ids).
    edits : int, default 1
        How many letters changed, added or removed still make two names alike (at most one in
        four of the shorter name's). Question ids, long codes, are compared at two: a swapped
        pair of letters is two.

    Returns
    -------
    list of (str, str)
        The alike pairs, each in sorted order, sorted.
    """
    words = {name: _name_words(name) for name in names}
    keys = {name: "".join(w) for name, w in words.items()}

    def labelled(a: str, b: str) -> bool:
        differ = [(x, y) for x, y in zip(words[a], words[b], strict=False) if x != y]
        return (
            len(words[a]) == len(words[b])
            and len(differ) == 1
            and max(len(differ[0][0]), len(differ[0][1])) <= 2
        )

    def near(a: str, b: str) -> bool:
        allowed = min(edits, min(len(keys[a]), len(keys[b])) // 4)
        return _within_edits(keys[a], keys[b], allowed) and not labelled(a, b)

    named = sorted(name for name, key in keys.items() if len(key) >= 4)
    return [
        (a, b)
        for i, a in enumerate(named)
        for b in named[i + 1 :]
        if keys[a] == keys[b] or near(a, b)
    ]


def spelt_almost(name: str, candidates: Iterable[str], *, edits: int = 1) -> list[str]:
    """The ``candidates`` other than ``name`` that :func:`alike_names` finds alike it at ``edits``
    letters (case, spaces and punctuation set aside), in their order: what a misspelt ``name``
    was most likely meant as, or the other way round.

    Parameters
    ----------
    name : str
    candidates : iterable of str
    edits : int, default 1

    Returns
    -------
    list of str
    """
    return [c for c in candidates if c != name and alike_names((name, c), edits=edits)]


def table_checksum(polls: pd.DataFrame) -> str:
    """SHA-256 of the poll table as used (its CSV form), recorded with every run."""
    return hashlib.sha256(polls.to_csv(index=False, date_format="%Y-%m-%d").encode()).hexdigest()
