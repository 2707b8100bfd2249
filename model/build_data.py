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
"""

from __future__ import annotations

import calendar
import csv
import io
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import pandas as pd

from model.polls import PollDataError, Problem, load_polls, read_csv_text

__all__ = [
    "FAMILIES",
    "LOW_CONFIDENCE",
    "FIELD_DATES",
    "POLLS_COLUMNS",
    "QUESTIONS",
    "QUESTIONS_COLUMNS",
    "SAME_SURVEY_AS",
    "QuestionInfo",
    "build",
    "family_table",
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

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"\d{4}-\d{2}")


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


_NOT_REPORTED = " (not reported)"

#: Every question id the sourced table may use. ``build`` refuses a question id not listed here,
#: so a new question is classified by a person, not by a default. Wordings come from the sourced
#: ``wording`` column and ``data/notes/``; ``main_curve`` is true exactly for the binary "move to
#: peace talks vs continue the war" items (see data/README.md for the reasons).
QUESTIONS: dict[str, QuestionInfo] = {
    # Levada's monthly omnibus item (notes/levada.md, "The question"): the exact Russian text was
    # not retrieved; paraphrases agree on "continue military actions or move to peace talks".
    "LEVADA_CONTINUE_VS_TALKS": QuestionInfo(
        family="talks_vs_continue",
        wording=(
            "Exact questionnaire text not retrieved; paraphrased in sources as: 'Do you think it "
            "is necessary now to continue military actions or to move to peace negotiations?' "
            "Answers: definitely / rather continue, rather / definitely move to peace "
            "negotiations, difficult to answer."
        ),
        talks_means="move to peace negotiations (definitely + rather)",
        continue_means="continue military actions (definitely + rather)",
        main_curve=True,
    ),
    # FSO closed polls leaked to Meduza (notes/other-houses.md, family 1): text never published;
    # reported as "for peace talks" vs "for continuing the war". Least comparable, but binary.
    "FSO_CLOSED_TALKS_VS_CONTINUE": QuestionInfo(
        family="talks_vs_continue",
        wording=(
            "unpublished (closed FSO survey; reported as the share 'for peace talks with "
            "Ukraine' vs 'for continuing the war')"
        ),
        talks_means="for peace talks with Ukraine (as reported)",
        continue_means="for continuing the war (as reported)",
        main_curve=True,
    ),
    # A July 2022 closed-poll figure known only from a superseded row (other-02); probably the
    # closed VTsIOM stop-ASAP figure (notes/other-houses.md, "FSO July 2022"). No readings.
    "KREMLIN_CLOSED_TALKS_VS_CONTINUE": QuestionInfo(
        family="talks_vs_continue",
        wording=(
            "unpublished (a July 2022 closed poll; reported only as the share that 'advocated "
            "the negotiations')"
        ),
        talks_means="advocated negotiations (as reported)",
        continue_means="not reported",
        main_curve=False,
    ),
    # The same closed VTsIOM survey's other item (other-39, added 2026-11-28; the shared README,
    # "Houses and question families"): "continue military operations in Ukraine or conduct peace
    # negotiations" is the binary choice Levada and the FSO report, so it feeds the main curve
    # (data/README.md says why). Its own id: VTsIOM's wording and closed sample, not Levada's.
    "VTSIOM_CLOSED_TALKS_VS_CONTINUE": QuestionInfo(
        family="talks_vs_continue",
        wording=(
            "'What is more important for Russia now: to continue military operations in Ukraine "
            "or to conduct peace negotiations?' (closed VTsIOM survey for the Presidential "
            "Administration, as rendered in English reports; Russian original not retrieved)"
        ),
        talks_means="conduct peace negotiations",
        continue_means="continue military operations",
        main_curve=True,
    ),
    # Closed VTsIOM poll for the Presidential Administration, late June 2022 (other-houses.md,
    # family 2): about stopping as soon as possible, not about negotiating.
    "VTSIOM_CLOSED_STOP_ASAP_VS_NOT_NOW": QuestionInfo(
        family="stop_vs_continue",
        wording=(
            "'Some people say the military activity in Ukraine should be brought to an end as "
            "soon as possible. Others believe it's not time to end it yet. Which view do you "
            "agree with more - the first or the second?'"
        ),
        talks_means="the military activity should be brought to an end as soon as possible",
        continue_means="it is not time to end it yet",
        main_curve=False,
    ),
    # Kremlin-commissioned closed poll, Oct 2022, pollster not named (other-houses.md, family 1):
    # continue hostilities vs stop the "special operation".
    "KREMLIN_CLOSED_CONTINUE_VS_STOP": QuestionInfo(
        family="stop_vs_continue",
        wording="unpublished (reported as continue hostilities vs stop the 'special operation')",
        talks_means="the 'special operation' should be stopped",
        continue_means="hostilities should continue",
        main_curve=False,
    ),
    # Russian Field's binary item, the closest match to Levada's (other-houses.md, family 3).
    "RF_CONTINUE_VS_TALKS": QuestionInfo(
        family="talks_vs_continue",
        wording=(
            "Continue the 'special military operation' or move to peace negotiations? (binary; "
            "as rendered by media: «продолжение военной операции» / «переход к мирным "
            "переговорам»)"
        ),
        talks_means="move to peace negotiations",
        continue_means="continue the military operation",
        main_curve=True,
    ),
    # The same choice under a condition (other-houses.md, family 3): not to be pooled with it.
    "RF_CONTINUE_VS_TALKS_IF_NEW_MOBILIZATION": QuestionInfo(
        family="conditional_scenario",
        wording=(
            "Continue the war or move to peace negotiations, if continuing it required a new "
            "mobilisation"
        ),
        talks_means="peace negotiations, if a new mobilisation were needed to continue",
        continue_means="continue the war even with a new mobilisation",
        main_curve=False,
    ),
    # Leader cue (other-houses.md, family 4): runs far above the unconditional talks share.
    "RF_SUPPORT_PUTIN_SIGNS_PEACE_TOMORROW": QuestionInfo(
        family="leader_cue",
        wording=(
            "'If tomorrow Vladimir Putin signed a peace agreement and stopped the military "
            "operation, would you support this decision?' (support / not support)"
        ),
        talks_means="would support Putin signing a peace agreement and stopping the operation",
        continue_means="would not support it",
        main_curve=False,
    ),
    # The mirror-image leader cue (other-houses.md, family 5). Polarity: talks = does NOT
    # support the offensive; continue = supports it.
    "RF_SUPPORT_NEW_KYIV_OFFENSIVE": QuestionInfo(
        family="leader_cue",
        wording=(
            "'If tomorrow Vladimir Putin decided to launch a new offensive on Kyiv, would you "
            "support this decision?' (support / not support)"
        ),
        talks_means="does not support a new offensive on Kyiv",
        continue_means="supports a new offensive on Kyiv",
        main_curve=False,
    ),
    # A specific settlement scenario (other-houses.md, family 6).
    "RF_CEASEFIRE_CURRENT_LINE_NO_PRECONDITIONS": QuestionInfo(
        family="conditional_scenario",
        wording=(
            "Support signing a ceasefire agreement along the current front line without "
            "preconditions (followed by negotiations)? (support / oppose)"
        ),
        talks_means="supports a ceasefire on the current front line without preconditions",
        continue_means="opposes it",
        main_curve=False,
    ),
    # Chronicles (other-houses.md, family 7): withdrawal AND failure to reach the war's goals,
    # with an explicit "don't know": asks far more than talks.
    "CHR_WITHDRAW_AND_NEGOTIATE_WITHOUT_GOALS": QuestionInfo(
        family="withdrawal",
        wording=(
            "'Would you support or not support a decision by Vladimir Putin to withdraw troops "
            "from Ukraine and begin peace negotiations without achieving the goals of the "
            "special military operation?' (support / not support / don't know)"
        ),
        talks_means="would support withdrawal and peace talks without achieving the war's goals",
        continue_means="would not support it",
        main_curve=False,
    ),
    # Chronicles + ExtremeScan, Sep 2024 (other-houses.md, family 8): wish for a compromise treaty.
    "CHR_COMPROMISE_PEACE_TREATY_WITHIN_YEAR": QuestionInfo(
        family="compromise_treaty",
        wording=(
            "Would like a peace treaty between Russia and Ukraine based on mutual concessions "
            "to be concluded within the next year (exact text not retrieved)"
        ),
        talks_means="would like a compromise peace treaty within the next year",
        continue_means="would not" + _NOT_REPORTED,
        main_curve=False,
    ),
    # Chronicles, Oct 2025 (other-houses.md, family 8): one item of a split-sample battery of
    # desired changes whose answers are not mutually exclusive.
    "CHR_DESIRE_COMPROMISE_PEACE_TREATY_SPLIT_SAMPLE": QuestionInfo(
        family="compromise_treaty",
        wording=(
            "Half sample, asked which changes they would like to see: 'the Kremlin ends the war "
            "and signs a peace agreement with Ukraine with mutual concessions' (one item of a "
            "battery; answers not mutually exclusive)"
        ),
        talks_means="would like the Kremlin to end the war with a compromise peace agreement",
        continue_means="would not" + _NOT_REPORTED,
        main_curve=False,
    ),
    # Chronicles + ExtremeScan, Sep 2024 (other-houses.md, family 9): forced choice, peace vs a
    # new wave of mobilisation.
    "CHR_PEACE_VS_NEW_MOBILIZATION": QuestionInfo(
        family="conditional_scenario",
        wording=(
            "Forced choice between peace and a new wave of mobilisation (exact text not retrieved)"
        ),
        talks_means="prefers peace",
        continue_means="prefers a new wave of mobilisation",
        main_curve=False,
    ),
    # ExtremeScan, Aug-Sep 2025 (other-houses.md, family 10): conditional on Trump's stance.
    "XS_IMMEDIATE_CEASEFIRE_IF_TRUMP_PRO_RUSSIA": QuestionInfo(
        family="conditional_scenario",
        wording=(
            "Support an immediate ceasefire if Trump takes a pro-Russian position (exact text "
            "not retrieved)"
        ),
        talks_means="would support an immediate ceasefire if Trump takes a pro-Russian position",
        continue_means="would not" + _NOT_REPORTED,
        main_curve=False,
    ),
    "XS_IMMEDIATE_CEASEFIRE_IF_TRUMP_PRO_UKRAINE": QuestionInfo(
        family="conditional_scenario",
        wording=(
            "Support an immediate ceasefire even if Trump takes Ukraine's side (exact text "
            "not retrieved)"
        ),
        talks_means="would support an immediate ceasefire even if Trump takes Ukraine's side",
        continue_means="would not" + _NOT_REPORTED,
        main_curve=False,
    ),
}

#: Readings that are probably the same survey as a reading under another ``survey_id``
#: (survey_id -> the other survey_id). The model must never count one survey twice, so a fit
#: that includes both readings of a pair is refused. Kept symmetric so either side finds the other.
SAME_SURVEY_AS: dict[str, str] = {
    # notes/other-houses.md, "Where sources disagree: FSO July 2022", and the status_reason and
    # note of other-01: Business Insider's "FSO poll in July" (32/57) matches the closed VTsIOM
    # poll of late June 2022 (30/57/13, other-03) that Meduza published in July 2022; the FSO
    # label is probably a misattribution. other-02 (30%, superseded) is a third report of it.
    "fso-2022-07": "vtsiom-2022-06",
    "vtsiom-2022-06": "fso-2022-07",
}

#: Source rows that the notes grade "Low" confidence (src_row -> why); their readings carry the
#: ``low_confidence`` flag.
LOW_CONFIDENCE: dict[str, str] = {
    # notes/levada.md, "Confidence": Low: Jul 2025 (figures internally inconsistent).
    "levada-31": "Levada Jul 2025: the same article contradicts May 2025's figures",
    # notes/other-houses.md, "Confidence": Low: FSO July 2022 (32%).
    "other-01": "FSO Jul 2022: disputed attribution, probably the VTsIOM closed poll",
    # notes/other-houses.md, "Confidence": Low: Russian Field early-2024 (dates).
    "other-11": "Russian Field early 2024: field dates not in the source",
    # notes/other-houses.md, "Confidence": Low: Russian Field Feb 2025 (single secondary source).
    "other-14": "Russian Field Feb 2025: a single secondary source",
    # levada-41's own note (added 2026-11-28): "Low confidence: one secondary source", field month
    # ambiguous (December 2023 or January 2024).
    "levada-41": "Levada Dec 2023 - Jan 2024: one secondary source; the release confirms the fall only in words",
}


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


#: Month-only source rows whose day dates are coded from other reports of the same survey wave
#: (src_row -> FieldDates). The reading takes these dates and the ``dates_from_wave`` flag.
FIELD_DATES: dict[str, FieldDates] = {
    # Levada's September 2022 omnibus (48 talks / 44 continue): the row's own source says fieldwork
    # was at the "end of September (after 21 Sep mobilisation)"; coded month-only, it would straddle
    # the partial mobilisation of 21 September, the event the curve's jump sits on. The wave's
    # other releases (Putin's approval 77%, "right direction" 60%: Levada's own 2022-10-06 release
    # calls them "the end of September") give its dates; re-russia.net/en/review/110 (cited by the
    # row) reports the 48/44 item from the same "large monthly poll ... in late September".
    "levada-01": FieldDates(
        start="2022-09-22",
        end="2022-09-28",
        why=(
            "the same late-September 2022 Levada omnibus: the approval-ratings release of that wave "
            "states the field dates; the row's note places its fieldwork at the end of September, "
            "after the 21 September mobilisation"
        ),
        sources=(
            (
                "https://www.yahoo.com/news/poll-shows-russians-trust-putin-133505456.html",
                "The poll was conducted on 22-28 September 2022 and surveyed 1,631 people aged over 18 in 137 "
                "settlements in 50 constituent entities of the Russian Federation.",
            ),
            (
                "https://kyivindependent.com/poll-putins-approval-rating-fell-after-mobilization-began/",
                "according to a survey conducted by polling agency Levada Center on Sept. 22-28.",
            ),
        ),
    ),
}

#: Flag tokens of ``polls.csv``, in the order they are written.
FLAGS: dict[str, str] = {
    "merged_sources": "the reading's figures come from more than one source row",
    "disputed": "a source row is primary but has a status_reason (e.g. disputed attribution)",
    "low_confidence": "the notes grade a source row's figures low confidence (LOW_CONFIDENCE)",
    "dates_from_wave": "the field dates come from other reports of the same survey wave (FIELD_DATES), not the row's own source",
}
#: Words of a source row's ``pollster_as_reported`` that mark a closed poll (commissioned by the
#: Kremlin, not published by the house, known from a leak): every such row says "closed".
CLOSED_MARK = re.compile(r"\bclosed\b", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def build(sourced: Path, out_dir: Path) -> list[Path]:
    """Derive ``polls.csv`` and ``questions.csv`` from the sourced table and write them.

    Parameters
    ----------
    sourced : pathlib.Path
        The sourced table (``data/readings_sourced.csv``).
    out_dir : pathlib.Path
        Folder to write into (created if missing).

    Returns
    -------
    list of pathlib.Path
        The written files: ``out_dir / "polls.csv"`` and ``out_dir / "questions.csv"``.

    Raises
    ------
    PollDataError
        Listing every problem found, before anything is written: a missing column; a blank or
        repeated ``src_row``; an unknown ``status``; a ``question_id`` not in :data:`QUESTIONS`;
        a figure that is not a number; rows of one reading (same ``survey_id`` and
        ``question_id``) that give different figures, pollsters or field dates; a
        ``date_precision`` that disagrees with the dates; a :data:`SAME_SURVEY_AS` entry whose
        surveys have no reading; or a derived table that fails :func:`model.polls.load_polls`.

    Notes
    -----
    Merge rule: a reading takes, for each share and for ``n``, the one non-missing value its
    source rows give (never a choice between two). Field dates are the most precise given: a day
    range inside the month(s) of a month-only row agrees with it; any other difference is an
    error.
    """
    sourced = Path(sourced)
    out_dir = Path(out_dir)
    table = read_csv_text(sourced)
    source = str(sourced)
    _check_sourced(table, source)

    readings = _merge_readings(table, source)
    polls = _polls_frame(readings)
    polls_path = out_dir / "polls.csv"
    checked = polls.copy()
    checked.attrs["source"] = str(polls_path)
    load_polls(checked)  # the derived table must pass the loader's checks

    questions = _questions_frame(table, polls, source)
    texts = {polls_path: _to_csv(polls), out_dir / "questions.csv": _to_csv(questions)}
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        _write_atomic(path, text)
    return list(texts)


def _problem(
    source: str,
    row: int | None,
    column: str | tuple[str, ...] | None,
    value: object,
    issue: str,
    expected: str,
) -> Problem:
    return Problem(source, row, column, value, expected, issue)


def _check_sourced(table: pd.DataFrame, source: str) -> None:
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
        if row.question_id not in QUESTIONS:
            problems.append(
                _problem(
                    source,
                    at,
                    "question_id",
                    row.question_id,
                    "is not in the question table (model/build_data.py QUESTIONS)",
                    "a known question id; classify a new question in QUESTIONS first",
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
    """(first day, last day, precision) as ISO strings; None if a date is malformed."""
    bounds = []
    for text, is_end in ((start, False), (end, True)):
        try:
            if _DAY.fullmatch(text):
                bounds.append((date.fromisoformat(text).isoformat(), "day"))
            elif _MONTH.fullmatch(text):
                year, month = int(text[:4]), int(text[5:])
                day = calendar.monthrange(year, month)[1] if is_end else 1
                bounds.append((date(year, month, day).isoformat(), "month"))
            else:
                return None
        except ValueError:
            return None
    precision = "day" if bounds[0][1] == bounds[1][1] == "day" else "month"
    return bounds[0][0], bounds[1][0], precision


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


def _merge_readings(table: pd.DataFrame, source: str) -> list[_Reading]:
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

        dates = _merge_dates(rows, source, context, problems)
        if len(problems) > before or dates is None:
            continue
        start, end, precision, sort_start = dates
        flags = []
        if len(rows) > 1:
            flags.append("merged_sources")
        if any(r["status_reason"].strip() for r in rows):
            flags.append("disputed")
        if any(r["src_row"] in LOW_CONFIDENCE for r in rows):
            flags.append("low_confidence")
        if any(r["src_row"] in FIELD_DATES for r in rows):
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

    # A pair whose one side has lost its reading means SAME_SURVEY_AS is out of date.
    surveys = {reading.survey_id for reading in readings}
    for survey_id, other in SAME_SURVEY_AS.items():
        if survey_id in surveys and other not in surveys:
            problems.append(
                _problem(
                    source,
                    None,
                    "survey_id",
                    other,
                    f"is named in SAME_SURVEY_AS (model/build_data.py) as the same survey as "
                    f"{survey_id!r} but has no primary row",
                    "SAME_SURVEY_AS to pair surveys that both have readings",
                )
            )
    if problems:
        raise PollDataError(sorted(problems, key=lambda p: -1 if p.row is None else p.row))
    return readings


def _merge_dates(
    rows: Sequence[pd.Series], source: str, context: str, problems: list[Problem]
) -> tuple[str, str, str, str] | None:
    """Field dates of a reading: (field_start, field_end, date_precision, first day)."""
    spans = []
    for r in rows:
        start, end = r["field_start"].strip(), r["field_end"].strip()
        span = _span(start, end)
        at = int(r["source_row"])
        coded = FIELD_DATES.get(r["src_row"])
        if coded is not None and span is not None:
            inside = span[2] == "month" and span[0] <= coded.start <= coded.end <= span[1]
            if not inside:
                problems.append(
                    _problem(
                        source,
                        at,
                        ("field_start", "field_end"),
                        f"{start}..{end}",
                        f"(src_row {r['src_row']}) do not contain the dates FIELD_DATES (model/build_data.py) "
                        f"codes for it, {coded.start}..{coded.end}",
                        "FIELD_DATES only for month-only rows, with day dates inside the row's months",
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
        inside = (
            best[2] == "day" and span[2] == "month" and span[0] <= best[0] <= best[1] <= span[1]
        )
        if not (dates == best_dates or inside):
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


def _polls_frame(readings: list[_Reading]) -> pd.DataFrame:
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
            "same_survey_as": SAME_SURVEY_AS.get(r.survey_id, ""),
            "closed": "true" if r.closed else "false",
        }
        for r in ordered
    ]
    return pd.DataFrame(records, columns=list(POLLS_COLUMNS), dtype="str")


def _questions_frame(table: pd.DataFrame, polls: pd.DataFrame, source: str) -> pd.DataFrame:
    problems: list[Problem] = []
    counts = polls["question"].value_counts()
    records = []
    for question_id, info in QUESTIONS.items():
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


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and a rename."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
