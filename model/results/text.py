"""The plain-text summary of a fit (``summary.txt``, printed by ``python -m model fit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from model.results.diagnostics import flagged_sensitivity, retry_note
from model.results.headline import (
    against_average_house,
    averaged_over,
    signed_interval,
    signed_points,
)
from model.results.projection_notes import projection_calibration

if TYPE_CHECKING:
    from model.results.calibration import BacktestCalibration
    from model.results.fit_result import FitResult


def readings_used(result: FitResult) -> str:
    """How many readings the fit used, from how many pollsters, and how many of the table it left
    out and why (``excluded.csv``), in a sentence: a reading left out by a misspelt question id
    shows here, not only in the report's table."""
    polls = result.polls
    houses = polls["pollster"].nunique()
    used = f"Readings: {len(polls)} in the fit, from {houses} pollster{'s' if houses != 1 else ''}"
    excluded = result.excluded
    if excluded is None or excluded.empty:
        return used + "; every reading of the table was used."
    reasons = excluded["excluded_because"].value_counts(sort=True)
    why = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
    return f"{used}; {len(excluded)} of the table left out (excluded.csv): {why}."


def summary_text(
    result: FitResult, calibration: BacktestCalibration | None = None, *, searched: bool = False
) -> str:
    """A plain-text summary: the headline and what it is conditional on, closed polls, each house's
    difference, events, diagnostics.

    Parameters
    ----------
    result : FitResult
    calibration : BacktestCalibration, optional
        A backtest of the same readings and model (:func:`~model.results.calibration.find_backtest`):
        for a projected curve, the headline's caveats then give its figures at the projection's
        horizon.
    searched : bool
        Whether a backtest was looked for (a run folder's siblings, as writing the folder does):
        then, with none found, the caveats say the band past the data is not measured; otherwise
        they say nothing of a backtest not looked for.

    Returns
    -------
    str
        Lines opening with the headline in words (:meth:`FitResult.headline_sentences`, which
        open with :func:`~model.results.diagnostics.gate_warning` where the gate failed), then its caveats
        (``headline.json``'s, as the report gives them).
    """
    width = round(100 * result.config.interval)
    answers = list(result.config.answers)
    lines = result.headline_sentences()  # opening with the gate's warning where it failed
    caveats = [
        *result.headline()["caveats"],
        *(
            projection_calibration(result, calibration, short=True)
            if searched or calibration is not None
            else []
        ),
    ]
    if caveats:
        lines.append("What these numbers are conditional on:")
        lines.extend(f"  - {caveat}" for caveat in caveats)
    lines.append(readings_used(result))

    closed = result.closed_polls()
    if len(closed):
        lines.append("")
        lines.append(
            "Closed polls against the curve over their own field periods (published share, the curve's median, and the "
            f"difference: median [{width}% interval] in points; closed_polls.csv):"
        )
        for _, row in closed.iterrows():
            if row["in_fit"]:
                what = "in the fit; difference = the model's house + wording offset"
            else:
                what = (
                    f"not in the fit: {row['excluded_because']}; difference = published minus curve"
                )
            lines.append(
                f"  {row['pollster']} {row['field_start']} to {row['field_end']}, {row['question']} ({what}):"
            )
            parts = []
            for a in answers:
                if pd.isna(row[f"difference_{a}"]):
                    continue
                published = "not published" if pd.isna(row[a]) else f"{row[a]:g}"
                parts.append(
                    f"{a} {published}, curve {row[f'curve_{a}']:.1f}: "
                    + signed_interval(
                        row[f"difference_{a}"],
                        row[f"difference_{a}_lower"],
                        row[f"difference_{a}_upper"],
                    )
                )
            lines.append("    " + "; ".join(parts) if parts else f"    {row['difference_is']}")
        lines.append("  " + result.closed_polls_conclusion())

    pairs = []
    offsets = result.reading_offsets()
    reference_pair = (result.reference_pollster, result.reference_question)
    alone = result.design.identified_only_with_wording
    for (pollster, question), part in offsets.groupby(["pollster", "question"], sort=False):
        if (pollster, question) == reference_pair:
            continue
        part = part.set_index("answer")
        count = int(part["readings"].iloc[0])
        mark = " *" if (pollster, question) in alone else ""
        pairs.append(
            f"  {pollster} asking {question} ({count} reading{'s' if count != 1 else ''}){mark}"
        )
        pairs.append(
            "    "
            + "; ".join(
                f"{a} {signed_interval(*part.loc[a, ['median', 'lower', 'upper']])}"
                for a in answers
            )
        )
    if pairs:  # none where one house asks one question: nothing differs from the curve
        lines.append("")
        lines.append(
            f"Differences from {result.compared_with} (house + wording, at each pair's own readings; "
            f"median [{width}% interval] in points; offsets.csv):"
        )
        if against := against_average_house(result.design):
            lines.append(f"  {against}")
        lines += pairs
    houses = result.house_effects()
    split = sorted({p for p, _ in alone})
    sampled = {result.design.pollsters[h] for h in result.design.free_pollsters}
    free = houses[houses["pollster"].isin(sampled) & ~houses["pollster"].isin(split)]
    if len(free):
        lines.append(
            f"House effects apart from the wording ({averaged_over(result.design)}; median [{width}% interval]; "
            "each measured against the average house, whose level rests partly on the priors, as the "
            "caveats above say):"
            if result.design.level_from_priors
            else f"House effects identified apart from the wording ({averaged_over(result.design)}; median [{width}% interval]):"
        )
        for pollster, part in free.groupby("pollster", sort=False):
            part = part.set_index("answer")
            lines.append(
                f"  {pollster}: "
                + "; ".join(
                    f"{a} {signed_interval(*part.loc[a, ['median', 'lower', 'upper']])}"
                    for a in answers
                )
            )
    if split:
        questions = result.question_effects().set_index(["question", "answer"])
        lines.append(
            "  * identified only as house and wording together: the data cannot split it. The split in "
            "house_effects.csv and question_effects.csv rests on the priors:"
        )
        for pollster, question in sorted(p for p in alone if p[0] in split):
            part = houses[houses["pollster"] == pollster].set_index("answer")
            lines.append(
                f"    {pollster} house part "
                + "; ".join(
                    f"{a} {signed_interval(*part.loc[a, ['median', 'lower', 'upper']])}"
                    for a in answers
                )
                + f" / {question} wording part "
                + "; ".join(
                    f"{a} {signed_interval(*questions.loc[(question, a), ['median', 'lower', 'upper']])}"
                    for a in answers
                )
            )
    jumps = result.event_jumps()
    if len(jumps):
        lines.append(f"Event jumps (percentage points at the event; median [{width}% interval]):")
        for _, row in jumps.iterrows():
            lines.append(
                f"  {row['event']:<28} {row['answer']:<10} {signed_points(row['median']):>6}  "
                f"[{signed_points(row['lower'])}, {signed_points(row['upper'])}]"
            )
    diag = result.diagnostics()
    verdict = "PASSED" if diag["passed"] else "FAILED: " + "; ".join(diag["failures"])
    lines.append(
        f"Diagnostics {verdict} (max R-hat {diag['max_rhat']:.3f}, min ESS bulk {diag['min_ess_bulk']:.0f} / "
        f"tail {diag['min_ess_tail']:.0f}, {diag['divergences']} divergences, min E-BFMI {diag['min_bfmi']:.2f}; "
        f"in-sample predictive coverage 50%: {diag['coverage50']:.0%}, 90%: {diag['coverage90']:.0%})"
    )
    retried = retry_note(diag.get("sampling_attempts", []))
    if retried:
        lines.append(f"  {retried}; the gate judges the last fit")
    for warning in diag["warnings"]:
        lines.append(f"  warning: {warning}")
    flagged = flagged_sensitivity(result.prior_sensitivity())
    if len(flagged):
        lines.append("Prior sensitivity (power-scaling, prior_sensitivity.csv) flags:")
        for _, row in flagged.iterrows():
            lines.append(
                f"  {row['quantity']:<40} {row['diagnosis']} (prior {row['prior']:.3f}, likelihood {row['likelihood']:.3f})"
            )
    return "\n".join(lines)
