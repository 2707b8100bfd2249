"""Simulated poll tables with a known truth, for recovery tests and calibration.

The generator does not reuse the model's likelihood: each reading's shares come from a true
daily trend averaged over its field days, shifted by its house and question effects and by a
per-reading non-sampling error on the logit scale, then a multinomial sample of ``n`` respondents,
published rounded to whole percents. Some readings leave answers unreported, some leave ``n``
blank, as real tables do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import softmax


@dataclass(frozen=True)
class Simulation:
    """A simulated poll table and the truth behind it.

    Attributes
    ----------
    polls : pandas.DataFrame
        Tidy poll table (the :func:`model.load_polls` format; dates as ISO strings).
    curve : pandas.DataFrame
        True daily shares: columns ``date``, ``answer``, ``share`` (percent).
    house_effects, question_effects : pandas.DataFrame
        True effects on the logit scale: columns ``pollster``/``question``, ``answer``, ``logit``.
        House effects sum to zero over pollsters and over answers; the first question's effect is 0.
    """

    polls: pd.DataFrame
    curve: pd.DataFrame
    house_effects: pd.DataFrame
    question_effects: pd.DataFrame

    def curve_on_grid(self, time: Sequence[pd.Timestamp]) -> pd.DataFrame:
        """True shares averaged over each grid cell (cells start at ``time``; the last runs to the end)."""
        curve = self.curve.copy()
        starts = pd.DatetimeIndex(time)
        curve["cell"] = np.searchsorted(starts.values, curve["date"].values, side="right") - 1
        curve = curve[curve["cell"] >= 0]
        out = curve.groupby(["cell", "answer"], sort=True)["share"].mean().reset_index()
        out["date"] = starts[out["cell"].to_numpy()]
        return out[["date", "answer", "share"]]


def simulate_polls(
    *,
    pollsters: Sequence[str] = ("House A", "House B", "House C", "House D"),
    questions: Sequence[str] = ("Q_MAIN", "Q_ALT"),
    answers: Sequence[str] = ("talks", "continue", "undecided"),
    start: str = "2023-01-01",
    end: str = "2024-12-31",
    n_readings: int = 80,
    level: Sequence[float] | None = None,
    walk_sd_per_day: float = 0.01,
    house_sd: float = 0.25,
    question_effect: Sequence[float] | None = None,
    nonsampling_sd: float = 0.05,
    n_range: tuple[int, int] = (800, 2000),
    partial_fraction: float = 0.2,
    unknown_n_fraction: float = 0.2,
    field_days: tuple[int, int] = (3, 8),
    seed: int = 0,
) -> Simulation:
    """Draw a poll table from a known trend, house effects and question effects.

    Parameters
    ----------
    pollsters, questions, answers : sequence of str
        Houses, question ids and answer options. The first question is asked by every house; each
        further question by one house only (the last ones), as in real tables.
    start, end : str
        ISO dates bounding the field periods.
    n_readings : int
        Number of readings.
    level : sequence of float, optional
        True logits at ``start`` (default: zero-sum values making the first answer most popular).
    walk_sd_per_day : float
        Daily step sd of the true random walk on each logit.
    house_sd : float
        Sd of the true house effects (logits; centred to sum to zero over houses and answers).
    question_effect : sequence of float, optional
        Logit shift of every non-reference question on the first answer (the others move to keep the
        sum at zero). Default 0.4.
    nonsampling_sd : float
        Sd of each reading's extra logit-scale error (non-sampling error).
    n_range : tuple of int
        Range of sample sizes (uniform).
    partial_fraction : float
        Share of readings that do not report the last answer.
    unknown_n_fraction : float
        Share of readings published without a sample size.
    field_days : tuple of int
        Range of field-period lengths in days.
    seed : int
        Seed of the generator.
    """
    rng = np.random.default_rng(seed)
    answers = tuple(answers)
    k = len(answers)
    days = pd.date_range(start, end, freq="D")
    if level is None:
        level = np.linspace(0.6, -0.6, k)
    level = np.asarray(level, dtype=float)
    steps = rng.normal(0, walk_sd_per_day, size=(len(days) - 1, k))
    walk = np.vstack([np.zeros(k), np.cumsum(steps, axis=0)])
    walk -= walk.mean(axis=1, keepdims=True)
    truth_logit = level - level.mean() + walk

    house = rng.normal(0, house_sd, size=(len(pollsters), k))
    house -= house.mean(axis=0, keepdims=True)
    house -= house.mean(axis=1, keepdims=True)
    question = np.zeros((len(questions), k))
    shifts = (
        np.full(len(questions) - 1, 0.4)
        if question_effect is None
        else np.asarray(question_effect, dtype=float)
    )
    for j, shift in enumerate(shifts, start=1):
        question[j, 0] = shift
        question[j, 1:] = -shift / (k - 1)

    # Question 0 is asked by everyone; question j >= 1 by the j-th house from the end only.
    asked_by = {0: list(range(len(pollsters)))}
    for j in range(1, len(questions)):
        asked_by[j] = [len(pollsters) - j]
    rows = []
    for _ in range(n_readings):
        j = (
            0
            if len(questions) == 1 or rng.random() < 0.75
            else int(rng.integers(1, len(questions)))
        )
        h = int(rng.choice(asked_by[j]))
        length = int(rng.integers(field_days[0], field_days[1] + 1))
        first = int(rng.integers(0, len(days) - length))
        mean_logit = truth_logit[first : first + length].mean(axis=0)
        logit = mean_logit + house[h] + question[j] + rng.normal(0, nonsampling_sd, size=k)
        n = int(rng.integers(n_range[0], n_range[1] + 1))
        counts = rng.multinomial(n, softmax(logit))
        shares = np.round(100 * counts / n).astype(float)
        if rng.random() < partial_fraction:
            shares[-1] = np.nan
        row = {
            "pollster": pollsters[h],
            "question": questions[j],
            "field_start": f"{days[first]:%Y-%m-%d}",
            "field_end": f"{days[first + length - 1]:%Y-%m-%d}",
            "n": np.nan if rng.random() < unknown_n_fraction else float(n),
        }
        row.update(dict(zip(answers, shares)))
        rows.append(row)
    polls = (
        pd.DataFrame(rows)
        .sort_values(["field_start", "pollster", "question"], kind="stable")
        .reset_index(drop=True)
    )
    # One survey per house, question and field period.
    polls = polls.drop_duplicates(["pollster", "question", "field_start", "field_end"]).reset_index(
        drop=True
    )

    share = 100 * softmax(truth_logit, axis=-1)
    curve = pd.DataFrame(
        {
            "date": np.repeat(days.values, k),
            "answer": np.tile(answers, len(days)),
            "share": share.ravel(),
        }
    )
    house_df = pd.DataFrame(
        {
            "pollster": np.repeat(pollsters, k),
            "answer": np.tile(answers, len(pollsters)),
            "logit": house.ravel(),
        }
    )
    question_df = pd.DataFrame(
        {
            "question": np.repeat(questions, k),
            "answer": np.tile(answers, len(questions)),
            "logit": question.ravel(),
        }
    )
    return Simulation(
        polls=polls, curve=curve, house_effects=house_df, question_effects=question_df
    )
