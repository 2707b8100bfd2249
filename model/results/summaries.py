"""Tidy summaries of a posterior: the support curve, house and question effects, event jumps.

All shares and effects are in percent / percentage points. Intervals are central (equal-tailed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import softmax

from model.aggregator.design import cell_of
from model.data.polls import reading_midpoints

SAMPLE_DIMS = ("chain", "draw")
#: Draws per block in :func:`effect_in_points`.
_EFFECT_BLOCK = 256


def _softmax(x: xr.DataArray, dim: str = "answer") -> xr.DataArray:
    return xr.apply_ufunc(
        softmax, x, input_core_dims=[[dim]], output_core_dims=[[dim]], kwargs={"axis": -1}
    ).transpose(*x.dims)


def trend_logit(posterior: xr.Dataset) -> xr.DataArray:
    """The trend's answer logits, centred over answers, recovered from the curve (``share``)."""
    log_share = np.log(posterior["share"])
    return log_share - log_share.mean("answer")


def _interval(da: xr.DataArray, interval: float) -> dict[str, xr.DataArray]:
    """The mean, median and central interval of a DataArray's (chain, draw) draws, each a DataArray
    of its other dims in their order (as ``DataArray.mean`` and ``DataArray.quantile`` give them:
    the same numbers for finite draws, :func:`quantiles`; a draw that is NaN makes its column's
    quantiles NaN, where ``DataArray.quantile`` would skip it)."""
    other = [d for d in da.dims if d not in SAMPLE_DIMS]
    draws = da.transpose(*SAMPLE_DIMS, *other)
    coords = {k: v for k, v in draws.coords.items() if v.dims and set(v.dims) <= set(other)}
    tail = (1 - interval) / 2
    flat = draws.values.reshape(-1, *draws.shape[2:])
    lower, median, upper = (
        xr.DataArray(values, dims=other, coords=coords, name=da.name, attrs=da.attrs)
        for values in quantiles(flat, [tail, 0.5, 1 - tail])
    )
    return {"mean": da.mean(SAMPLE_DIMS), "median": median, "lower": lower, "upper": upper}


def _tidy(stats: dict[str, xr.DataArray], index: list[str]) -> pd.DataFrame:
    frame = xr.Dataset(stats).to_dataframe().reset_index()
    return frame[[*index, *stats]]


def support_curve(
    posterior: xr.Dataset,
    interval: float = 0.9,
    projected: Sequence[bool] | None = None,
    *,
    house: str | None = None,
    question: str | None = None,
) -> pd.DataFrame:
    """Estimated shares over time for the reference house and question.

    Parameters
    ----------
    posterior : xarray.Dataset
        Holds ``share`` (chain, draw, time, answer).
    interval : float
        Central interval width.
    projected : sequence of bool, optional
        Per grid cell, whether it lies after the last reading (:attr:`model.aggregator.design.PollDesign.projected`);
        all False when not given.
    house, question : str, optional
        Whose measurement the curve is: the house (the reference pollster, or the average house or
        anchored level that fixes the curve's level) and the question it asks; each written into
        every row as ``house`` and ``question`` when given.

    Returns
    -------
    pandas.DataFrame
        Columns ``date`` (the grid cell's first day), ``answer``, ``mean``, ``median``, ``lower``,
        ``upper`` (percent), ``projected`` (no reading informs the cell: the curve there is the
        random walk run on from the data), then ``house`` and ``question`` when given.
        (:meth:`model.FitResult.support_curve` adds ``interval``, the width of ``lower`` to
        ``upper``, after ``upper``.)
    """
    frame = _tidy(_interval(posterior["share"], interval), ["time", "answer"])
    flags = (
        np.zeros(posterior.sizes["time"], dtype=bool)
        if projected is None
        else np.asarray(projected, dtype=bool)
    )
    frame["projected"] = flags[pd.Index(posterior["time"].values).get_indexer(frame["time"])]
    order = {a: i for i, a in enumerate(posterior["answer"].values)}  # the config's, not A-Z
    frame = (
        frame.rename(columns={"time": "date"})
        .sort_values(
            ["answer", "date"],
            key=lambda column: column.map(order) if column.name == "answer" else column,
            kind="stable",
        )
        .reset_index(drop=True)
    )
    for name, value in (("house", house), ("question", question)):
        if value is not None:
            frame[name] = value
    return frame


def curve_wide(
    curve: pd.DataFrame, answers: Sequence[str] | None = None, *, interval: float | None = None
) -> pd.DataFrame:
    """The support curve with one row per date: the shape newsroom charting tools import.

    Parameters
    ----------
    curve : pandas.DataFrame
        :func:`support_curve` (columns ``date``, ``answer``, ``median``, ``lower``, ``upper``,
        ``projected``).
    answers : sequence of str, optional
        The answers, in the order of the columns (default: their order of first appearance).
    interval : float, optional
        The width of the curve's interval, written into the column names (``talks_lower_90``);
        without it the columns are ``<answer>_lower`` and ``<answer>_upper``.

    Returns
    -------
    pandas.DataFrame
        Columns ``date`` (the grid cell's first day), then for every answer ``<answer>_median``,
        ``<answer>_lower[_<width>]``, ``<answer>_upper[_<width>]`` (percent), then ``projected``
        (no reading informs the cell: the model's random walk run on past the last reading), then
        ``house`` and ``question`` (whose measurement the curve is) where ``curve`` has them.

    Raises
    ------
    ValueError
        If ``curve`` lacks a column, an answer is not in it, or a date lacks an answer.
    """
    needed = {"date", "answer", "median", "lower", "upper", "projected"}
    missing = sorted(needed - set(curve.columns))
    if missing:
        raise ValueError(f"the curve lacks column(s) {missing}; expected support_curve()'s table")
    present = list(pd.unique(curve["answer"]))
    answers = present if answers is None else list(answers)
    unknown = [a for a in answers if a not in present]
    if unknown:
        raise ValueError(f"answer(s) {unknown} are not in the curve (it has {present})")
    suffix = "" if interval is None else f"_{round(100 * interval)}"
    dates = pd.DatetimeIndex(sorted(pd.unique(curve["date"])))
    wide = pd.DataFrame({"date": dates})
    for answer in answers:
        part = curve[curve["answer"] == answer].set_index("date").reindex(dates)
        if part["median"].isna().any():
            raise ValueError(f"answer {answer!r} has no value on some dates of the curve")
        wide[f"{answer}_median"] = part["median"].to_numpy(dtype=float)
        wide[f"{answer}_lower{suffix}"] = part["lower"].to_numpy(dtype=float)
        wide[f"{answer}_upper{suffix}"] = part["upper"].to_numpy(dtype=float)
    projected = curve.groupby("date")["projected"].any().reindex(dates)
    wide["projected"] = projected.to_numpy(dtype=bool)
    for name in ("house", "question"):
        if name in curve.columns:
            wide[name] = curve.groupby("date")[name].first().reindex(dates).to_numpy()
    return wide


class FieldPeriods:
    """The trend's logits averaged over field periods, as the model averages them.

    The running sums over time of the curve's log shares, which every average differences, are
    computed once and serve every field period asked for.

    Parameters
    ----------
    posterior : xarray.Dataset
        Holds ``share`` (chain, draw, time, answer); its log is the trend's logits up to a constant
        per cell, which the average carries as a constant per reading and the softmax ignores.
    """

    def __init__(self, posterior: xr.Dataset) -> None:
        trend = np.log(posterior["share"].transpose("chain", "draw", "time", "answer").values)
        self.running = np.concatenate(
            [np.zeros_like(trend[:, :, :1]), np.cumsum(trend, axis=2)], axis=2
        )

    def logits(self, first_cell: Sequence[int], last_cell: Sequence[int]) -> np.ndarray:
        """(chain, draw, reading, answer) logits averaged over each reading's first to last grid
        cell (inclusive), centred over answers."""
        first, last = np.asarray(first_cell, dtype=int), np.asarray(last_cell, dtype=int)
        running = self.running
        mean = (running[:, :, last + 1] - running[:, :, first]) / (last - first + 1)[
            None, None, :, None
        ]
        return mean - mean.mean(axis=-1, keepdims=True)


def softmax_points(logits: np.ndarray) -> np.ndarray:
    """Shares in percent from logits over the last axis.

    Parameters
    ----------
    logits : numpy.ndarray
        Any shape; the last axis is the answers.

    Returns
    -------
    numpy.ndarray
        The same shape, summing to 100 over the last axis.
    """
    return 100 * softmax(logits, axis=-1)


def interval_of(draws: np.ndarray, interval: float) -> dict[str, np.ndarray]:
    """Summaries of posterior draws over their first two (chain, draw) axes.

    Parameters
    ----------
    draws : numpy.ndarray
        (chain, draw, ...) draws.
    interval : float
        Central interval width.

    Returns
    -------
    dict of str to numpy.ndarray
        ``mean``, ``median``, ``lower`` and ``upper`` (the central interval's ends), each of the
        draws' trailing shape.
    """
    flat = draws.reshape(-1, *draws.shape[2:])
    tail = (1 - interval) / 2
    lower, median, upper = quantiles(flat, [tail, 0.5, 1 - tail])
    return {"mean": flat.mean(axis=0), "median": median, "lower": lower, "upper": upper}


def quantiles(draws: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """``np.quantile(draws, probs, axis=0)`` (NumPy's default "linear" method) to the last bit, from
    one sort of the draws (:func:`quantile_of_sorted`) instead of NumPy's selection for each
    quantile (faster on a fit's curve: docs/performance.md).

    A column holding a NaN gives NaN, as in NumPy (at ``q = 1`` with an infinite largest draw NumPy
    gives NaN, this the draw).

    Parameters
    ----------
    draws : numpy.ndarray
        (draw, ...) values.
    probs : sequence of float
        Probabilities in [0, 1].

    Returns
    -------
    numpy.ndarray
        (len(probs), ...).
    """
    ordered = np.sort(np.asarray(draws, dtype=float), axis=0)  # NaN last
    out = np.stack([quantile_of_sorted(ordered, q) for q in probs])
    return np.where(np.isnan(ordered[-1]), np.nan, out)


def quantile_of_sorted(ordered: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """``np.quantile(values, q, axis=axis)`` (method "linear", ``q`` a float), to the last bit for
    finite values, from the values sorted along ``axis``: NumPy's virtual index, its neighbours and
    its interpolation (at ``q = 1`` with an infinite largest value NumPy gives NaN, this the value)."""
    n = ordered.shape[axis]
    virtual = (n - 1) * float(q)
    previous = int(np.floor(virtual))
    if virtual >= n - 1:
        return np.take(ordered, -1, axis=axis).copy()
    if virtual < 0:
        return np.take(ordered, 0, axis=axis).copy()
    gamma = float(virtual - previous)
    a, b = np.take(ordered, previous, axis=axis), np.take(ordered, previous + 1, axis=axis)
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1 - gamma)
    return a + diff * gamma


def effect_in_points(posterior: xr.Dataset, effect: xr.DataArray) -> xr.DataArray:
    r"""An effect on the logit scale expressed in percentage points.

    The shift it causes in each answer's share, averaged over the curve's time cells in
    ``posterior`` (:class:`model.FitResult` gives the readings' span, not the projection), per
    posterior draw:

    .. math::

        \frac{100}{T} \sum_t \left[\operatorname{softmax}(\eta_t + e) - \operatorname{softmax}(\eta_t)\right]
        = 100 \left[ x \odot \frac{1}{T} \sum_t \frac{p_t}{p_t \cdot x}
          - \frac{1}{T} \sum_t p_t \right],

    with :math:`\eta_t` the trend's logits, :math:`p_t = \operatorname{softmax}(\eta_t)` the
    curve's shares (``share`` normalised over answers) and :math:`x = \exp(e - \max e)`. The
    right-hand side is computed: two matrix products per draw over the time x answers curve and
    the groups x answers effect (houses, questions, events), instead of a softmax of draws x time
    x answers for each group. An effect equal on every answer (a reference's zero) gives exactly 0.

    Parameters
    ----------
    posterior : xarray.Dataset
        Holds ``share`` (chain, draw, time, answer).
    effect : xarray.DataArray
        (chain, draw, answer) or with group dims (e.g. ``pollster``), on the logit scale.

    Returns
    -------
    xarray.DataArray
        (chain, draw, answer, *groups), in percentage points.
    """
    share = posterior["share"].transpose(*SAMPLE_DIMS, "time", "answer")
    groups = [d for d in effect.dims if d not in (*SAMPLE_DIMS, "answer")]
    # the products pair draws and answers by position: line the effect's labels up with the curve's
    effect = effect.sel({d: share[d] for d in (*SAMPLE_DIMS, "answer") if d in effect.indexes})
    e = effect.transpose(*SAMPLE_DIMS, *groups, "answer")
    n_sample = e.shape[0] * e.shape[1]
    e_values = e.values.reshape(n_sample, -1, e.shape[-1])  # (sample, group, answer)
    shares = share.values.reshape(n_sample, *share.shape[2:])  # (sample, time, answer)
    points = np.empty(e_values.shape)
    # Blocks of draws: each draw's products are its own, and small blocks keep the (time x group)
    # intermediates small (faster than every draw at once: docs/performance.md).
    for start in range(0, n_sample, _EFFECT_BLOCK):
        block = slice(start, start + _EFFECT_BLOCK)
        p = shares[block] / shares[block].sum(axis=-1, keepdims=True)
        top = e_values[block].max(axis=-1, keepdims=True)
        x = np.exp(e_values[block] - top)
        norm = p @ np.swapaxes(x, -1, -2)  # (sample, time, group): p_t . x per group
        mean_ratio = np.swapaxes(1.0 / norm, -1, -2) @ p / p.shape[1]  # (sample, group, answer)
        points[block] = 100 * (x * mean_ratio - p.mean(axis=1)[:, None, :])
        # an effect equal on every answer (a reference's zero) moves no share: exactly 0, not rounding
        points[block][(top == e_values[block].min(axis=-1, keepdims=True))[..., 0]] = 0.0
    out = xr.DataArray(
        points.reshape(e.shape),
        dims=e.dims,
        coords={k: v for k, v in e.coords.items() if set(v.dims) <= set(e.dims)},
    )
    return out.transpose(*SAMPLE_DIMS, "answer", *groups)


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
    frame = _tidy(stats, ["pollster", "answer"])
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
    frame = _tidy(stats, ["question", "answer"])
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


def event_jumps(
    posterior: xr.Dataset, event_cells: list[int], interval: float = 0.9
) -> pd.DataFrame:
    """Each event's jump, in percentage points of each answer's share at the event.

    The change in the curve at the event's cell that the jump alone causes:
    ``softmax(trend_before + jump) - softmax(trend_before)``, where ``trend_before`` is the trend in
    the cell before the event.
    """
    if "jump" not in posterior:
        return pd.DataFrame(
            columns=["event", "answer", "mean", "median", "lower", "upper", "mean_logit"]
        )
    frames = []
    for e, label in enumerate(posterior["jump"].coords["event"].values):
        jump = posterior["jump"].sel(event=label)
        cell = max(int(event_cells[e]) - 1, 0)
        before = trend_logit(posterior[["share"]].isel(time=cell))  # that cell's logits alone
        pp = 100 * (_softmax(before + jump) - _softmax(before))
        stats = _interval(pp, interval)
        stats["mean_logit"] = jump.mean(SAMPLE_DIMS)
        frame = _tidy(stats, ["answer"])
        frame.insert(0, "event", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def offsets_at_readings(
    posterior: xr.Dataset, design, readings: Sequence[int], periods: FieldPeriods | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The curve over each reading's field period, and its house + question offset there, per draw.

    Parameters
    ----------
    posterior : xarray.Dataset
        ``share``, ``house_effect`` and ``question_effect`` draws.
    design : PollDesign
        The fit's design.
    readings : sequence of int
        Readings (rows of ``design.polls``).
    periods : FieldPeriods, optional
        The posterior's field periods, when the caller asks for several sets of readings.

    Returns
    -------
    (curve, offset) : numpy.ndarray
        Each (chain, draw, reading, answer), in percent / points: ``curve = softmax(trend)`` with the
        trend's logits averaged over the field period, ``offset = softmax(trend + house + question) - curve``.
    """
    idx = np.asarray(readings, dtype=int)
    periods = FieldPeriods(posterior) if periods is None else periods
    trend = periods.logits(design.first_cell[idx], design.last_cell[idx])
    house = posterior["house_effect"].transpose("chain", "draw", "pollster", "answer")
    question = posterior["question_effect"].transpose("chain", "draw", "question", "answer")
    polls = design.polls
    effect = np.stack(
        [
            house.sel(pollster=polls["pollster"].iloc[i]).values
            + question.sel(question=polls["question"].iloc[i]).values
            for i in idx
        ],
        axis=2,
    )
    curve = softmax_points(trend)
    return curve, softmax_points(trend + effect) - curve


def reading_offsets(
    posterior: xr.Dataset, design, interval: float = 0.9, periods: FieldPeriods | None = None
) -> pd.DataFrame:
    """What each house, asking each of its questions, reports relative to the curve (points).

    The sum of the house and question effects, evaluated where that house asked that question:
    for each of its readings, ``softmax(trend + house + question) - softmax(trend)`` with the trend
    averaged over the reading's field period, then averaged over its readings, per draw. Unlike its
    two parts, this is always identified by the data; for a reference house on the reference
    question it is zero. Columns ``pollster``, ``question``, ``answer``, ``mean``, ``median``,
    ``lower``, ``upper``, ``readings``, ``first_field_start``, ``last_field_end``. ``periods``: the
    posterior's :class:`FieldPeriods`, when the caller has them.
    """
    polls = design.polls
    answers = list(posterior["share"]["answer"].values)
    rows = []
    periods = FieldPeriods(posterior) if periods is None else periods
    for (pollster, asked), idx in polls.groupby(
        ["pollster", "question"], sort=False
    ).indices.items():
        shift = offsets_at_readings(posterior, design, idx, periods)[1].mean(axis=2)
        stats = interval_of(shift, interval)
        for k, answer in enumerate(answers):
            rows.append(
                {
                    "pollster": pollster,
                    "question": asked,
                    "answer": answer,
                    **{name: float(values[k]) for name, values in stats.items()},
                    "readings": int(len(idx)),
                    "first_field_start": polls["field_start"].iloc[idx].min(),
                    "last_field_end": polls["field_end"].iloc[idx].max(),
                }
            )
    frame = pd.DataFrame(rows)
    order = {p: i for i, p in enumerate(design.pollsters)}
    return frame.sort_values(
        ["pollster", "question"],
        key=lambda s: s.map(order) if s.name == "pollster" else s,
        kind="stable",
    ).reset_index(drop=True)


def latest_estimate(curve: pd.DataFrame, answers: Sequence[str], at: str = "end") -> pd.DataFrame:
    """The curve at one grid cell, answers in ``answers``' order.

    Parameters
    ----------
    curve : pandas.DataFrame
        :func:`support_curve`.
    answers : sequence of str
        The answers' order.
    at : {"end", "data"}
        ``"end"``: the curve's last cell (``through``; projected when later than the last reading);
        ``"data"``: the cell of the last reading's field end.

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`support_curve` at that cell.
    """
    if at == "data":
        date = curve.loc[~curve["projected"].astype(bool), "date"].max()
    elif at == "end":
        date = curve["date"].max()
    else:
        raise ValueError(f"at={at!r}; expected 'end' or 'data'")
    last = curve[curve["date"] == date]
    order = {a: i for i, a in enumerate(answers)}
    return last.sort_values("answer", key=lambda s: s.map(order)).reset_index(drop=True)


def adjusted_readings(
    polls: pd.DataFrame, offsets: pd.DataFrame, curve: pd.DataFrame, answers: Sequence[str]
) -> pd.DataFrame:
    """Each reported share, raw and adjusted for its pollster's and question's offset.

    The adjusted share is the published share minus the posterior mean of the reading's house plus
    question offset (:func:`reading_offsets`, in points at that house's readings): roughly what the
    curve's reference house, asking the reference question, would have published.

    Parameters
    ----------
    polls : pandas.DataFrame
        The readings of the fit.
    offsets : pandas.DataFrame
        :func:`reading_offsets`.
    curve : pandas.DataFrame
        :func:`support_curve`.
    answers : sequence of str
        The fitted answers.

    Returns
    -------
    pandas.DataFrame
        One row per (reading, reported answer): ``poll_id``, ``pollster``, ``question``,
        ``midpoint``, ``answer``, ``raw``, ``offset``, ``adjusted``, ``curve`` (the curve's median
        averaged over the reading's field period) and ``n``.
    """
    offset_of = offsets.set_index(["pollster", "question", "answer"])["mean"]
    time = pd.DatetimeIndex(sorted(curve["date"].unique()))
    first = np.clip(cell_of(polls["field_start"], time), 0, len(time) - 1)
    last = np.clip(cell_of(polls["field_end"], time), 0, len(time) - 1)
    midpoints = reading_midpoints(polls)
    rows = []
    for answer in answers:
        median = (
            curve[curve["answer"] == answer].set_index("date")["median"].reindex(time).to_numpy()
        )
        for i, (_, poll) in enumerate(polls.iterrows()):
            if pd.isna(poll[answer]):
                continue
            offset = float(offset_of.get((poll["pollster"], poll["question"], answer), 0.0))
            rows.append(
                {
                    "poll_id": poll["poll_id"],
                    "pollster": poll["pollster"],
                    "question": poll["question"],
                    "midpoint": midpoints.iloc[i],
                    "answer": answer,
                    "raw": float(poll[answer]),
                    "offset": offset,
                    "adjusted": float(poll[answer]) - offset,
                    "curve": float(median[first[i] : last[i] + 1].mean()),
                    "n": poll["n"],
                }
            )
    return pd.DataFrame(rows)


def predictive_by_answer(idata, design) -> xr.DataTree:
    """Posterior predictive and observed share (percent) of every reported answer of every reading.

    One variable per answer, each over its own dim ``reading_<answer>`` (the readings that report
    that answer, in model order, labelled by ``poll_id``), in groups ``posterior_predictive`` and
    ``observed_data``: the layout ``arviz.plot_ppc_interval`` plots one panel per variable from.
    The merged ``rest`` component is left out (the reported ones determine it).

    Parameters
    ----------
    idata : xarray.DataTree
        A fit's trace, with ``posterior_predictive`` and ``observed_data``.
    design : PollDesign
        The fit's design (which component holds which answer).

    Returns
    -------
    xarray.DataTree
    """
    predicted = idata.posterior_predictive["obs_share"].transpose(
        "chain", "draw", "poll", "component"
    )
    observed = idata.observed_data["obs_share"].transpose("poll", "component")
    pred, obs = {}, {}
    for answer in design.answers:
        polls_idx, comp_idx = np.nonzero(design.component_label == answer)
        dim = f"reading_{answer}"
        coords = {dim: design.polls["poll_id"].to_numpy()[polls_idx]}
        pred[answer] = xr.DataArray(
            100 * predicted.values[:, :, polls_idx, comp_idx],
            dims=("chain", "draw", dim),
            coords={"chain": predicted["chain"].values, "draw": predicted["draw"].values, **coords},
        )
        obs[answer] = xr.DataArray(
            100 * observed.values[polls_idx, comp_idx], dims=(dim,), coords=coords
        )
    return xr.DataTree.from_dict(
        {"posterior_predictive": xr.Dataset(pred), "observed_data": xr.Dataset(obs)}
    )
