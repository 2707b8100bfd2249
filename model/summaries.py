"""Tidy summaries of a posterior: the support curve, house and question effects, event jumps.

All shares and effects are in percent / percentage points. Intervals are central (equal-tailed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

SAMPLE_DIMS = ("chain", "draw")


def _softmax(x: xr.DataArray, dim: str = "answer") -> xr.DataArray:
    e = np.exp(x - x.max(dim))
    return e / e.sum(dim)


def trend_logit(posterior: xr.Dataset) -> xr.DataArray:
    """The trend's answer logits, centred over answers, recovered from the curve (``share``)."""
    log_share = np.log(posterior["share"])
    return log_share - log_share.mean("answer")


def _interval(da: xr.DataArray, interval: float) -> dict[str, xr.DataArray]:
    tail = (1 - interval) / 2
    q = da.quantile([tail, 0.5, 1 - tail], dim=SAMPLE_DIMS)
    return {
        "mean": da.mean(SAMPLE_DIMS),
        "median": q.isel(quantile=1, drop=True),
        "lower": q.isel(quantile=0, drop=True),
        "upper": q.isel(quantile=2, drop=True),
    }


def _tidy(stats: dict[str, xr.DataArray], index: list[str]) -> pd.DataFrame:
    frame = xr.Dataset(stats).to_dataframe().reset_index()
    return frame[[*index, *stats]]


def support_curve(posterior: xr.Dataset, interval: float = 0.9) -> pd.DataFrame:
    """Estimated shares over time for the reference house and question.

    Columns ``date``, ``answer``, ``mean``, ``median``, ``lower``, ``upper`` (percent).
    """
    frame = _tidy(_interval(posterior["share"], interval), ["time", "answer"])
    return frame.rename(columns={"time": "date"}).sort_values(["answer", "date"], kind="stable").reset_index(drop=True)


def effect_in_points(posterior: xr.Dataset, effect: xr.DataArray) -> xr.DataArray:
    """An effect on the logit scale expressed in percentage points.

    The shift it causes in each answer's share, averaged over the fitted period:
    ``mean_t [softmax(trend_t + effect) - softmax(trend_t)] * 100``, per posterior draw.
    """
    trend = trend_logit(posterior)
    shifted = _softmax(trend + effect) - _softmax(trend)
    return 100 * shifted.mean("time")


def house_effects(
    posterior: xr.Dataset,
    pairs: pd.DataFrame,
    reference: str | None,
    joint_groups: Sequence[tuple[Sequence[str], Sequence[str]]] = (),
    interval: float = 0.9,
) -> pd.DataFrame:
    """House effects in percentage points (columns ``pollster``, ``answer``, ``mean``, ``lower``, ``upper``, ...).

    ``reference`` marks the pollster fixed at zero; ``questions`` lists what each house asked, and
    ``confounded_with_question`` names the questions whose effects this house's effect is identified
    only jointly with (``joint_groups`` of the design).
    """
    pp = effect_in_points(posterior, posterior["house_effect"])
    stats = _interval(pp, interval)
    stats["mean_logit"] = posterior["house_effect"].mean(SAMPLE_DIMS)
    frame = _tidy(stats, ["pollster", "answer"]).drop(columns="median")
    asked = pairs.groupby("pollster")["question"].apply(lambda s: "; ".join(sorted(s)))
    alone = {p: "; ".join(qs) for ps, qs in joint_groups for p in ps}
    frame["reference"] = frame["pollster"] == reference
    frame["questions"] = frame["pollster"].map(lambda p: asked.get(p, ""))
    frame["confounded_with_question"] = frame["pollster"].map(lambda p: alone.get(p, ""))
    return frame


def question_effects(
    posterior: xr.Dataset,
    pairs: pd.DataFrame,
    reference: str,
    joint_groups: Sequence[tuple[Sequence[str], Sequence[str]]] = (),
    interval: float = 0.9,
) -> pd.DataFrame:
    """Question effects in percentage points against the reference question.

    ``asked_by`` lists the houses asking it; ``identified`` says whether the data identify it on
    its own or only jointly with house effects (``joint_groups`` of the design).
    """
    pp = effect_in_points(posterior, posterior["question_effect"])
    stats = _interval(pp, interval)
    stats["mean_logit"] = posterior["question_effect"].mean(SAMPLE_DIMS)
    frame = _tidy(stats, ["question", "answer"]).drop(columns="median")
    askers = pairs.groupby("question")["pollster"].apply(lambda s: sorted(set(s)))
    jointly = {q: ps for ps, qs in joint_groups for q in qs}
    frame["reference"] = frame["question"] == reference
    frame["asked_by"] = frame["question"].map(lambda q: "; ".join(askers.get(q, [])))

    def identified(q: str) -> str:
        if q == reference:
            return "reference (fixed at 0)"
        if q in jointly:
            return f"only jointly with the house effect of {' and '.join(jointly[q])} (no reading links it to the reference)"
        return "separately from house effects"

    frame["identified"] = frame["question"].map(identified)
    return frame


def event_jumps(posterior: xr.Dataset, event_cells: list[int], interval: float = 0.9) -> pd.DataFrame:
    """Each event's jump, in percentage points of each answer's share at the event.

    The change in the curve at the event's cell that the jump alone causes:
    ``softmax(trend_before + jump) - softmax(trend_before)``, where ``trend_before`` is the trend in
    the cell before the event.
    """
    if "jump" not in posterior:
        return pd.DataFrame(columns=["event", "answer", "mean", "lower", "upper", "mean_logit"])
    frames = []
    for e, label in enumerate(posterior["jump"].coords["event"].values):
        jump = posterior["jump"].sel(event=label)
        before = trend_logit(posterior).isel(time=max(int(event_cells[e]) - 1, 0))
        pp = 100 * (_softmax(before + jump) - _softmax(before))
        stats = _interval(pp, interval)
        stats["mean_logit"] = jump.mean(SAMPLE_DIMS)
        frame = _tidy(stats, ["answer"]).drop(columns="median")
        frame.insert(0, "event", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def reading_offsets(posterior: xr.Dataset, pairs: pd.DataFrame, interval: float = 0.9) -> pd.DataFrame:
    """What each house, asking each of its questions, reports relative to the curve (points).

    The sum of the house and question effects, averaged over the period like
    :func:`effect_in_points`. Unlike its two parts, this is always identified by the data.
    Columns ``pollster``, ``question``, ``answer``, ``mean``, ``lower``, ``upper``, ``readings``.
    """
    frames = []
    for _, pair in pairs.iterrows():
        effect = posterior["house_effect"].sel(pollster=pair["pollster"]) + posterior["question_effect"].sel(question=pair["question"])
        stats = _interval(effect_in_points(posterior, effect), interval)
        frame = _tidy(stats, ["answer"]).drop(columns="median")
        frame.insert(0, "question", pair["question"])
        frame.insert(0, "pollster", pair["pollster"])
        frame["readings"] = int(pair["readings"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
