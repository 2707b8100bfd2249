"""The diagnostics gate: convergence (R-hat, ESS, divergences, E-BFMI, tree depth) and fit checks.

Thresholds are Stan's published recommendations and are not configurable: a run that misses one
is marked failed, is still written, and the command line exits with status 3.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from arviz_base import rcParams
from scipy import special
from scipy.fftpack import next_fast_len  # as ArviZ pads its FFTs

from model.aggregator.design import PollDesign
from model.config import Sampler
from model.imports import ABSENT, module_entry
from model.results.summaries import quantile_of_sorted
from model.threads import in_background, thread_map

MAX_RHAT = 1.01
MIN_ESS = 400
MIN_BFMI = 0.3
MAX_DIVERGENCES = 0
#: Pareto k above which a reading's PSIS-LOO estimate is unreliable (the reading is influential).
PARETO_K_THRESHOLD = 0.7
#: Fraction of draws at the maximum tree depth above which saturation is reported as a warning.
TREEDEPTH_WARN_FRACTION = 0.01


def arviz_stats() -> ModuleType:
    """ArviZ's statistics, ``arviz_stats`` (not ``arviz`` itself: it imports ``arviz_plots`` and
    with it matplotlib), imported when first needed. Its import (SciPy's statistics among it) is
    about a second of a process's start-up, for steps that come after sampling: a fit imports it
    while it waits for the gate's R-hat and ESS (:func:`model.fit`)."""
    import arviz_stats

    return arviz_stats


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def _split_chains(values: np.ndarray) -> np.ndarray:
    """(entry, chain, draw) -> (entry, 2 chain, draw // 2): each chain's first and last halves."""
    half = values.shape[2] // 2
    return np.concatenate([values[:, :, :half], values[:, :, -half:]], axis=1)


def _blom_scores(ranks: np.ndarray, n: int) -> np.ndarray:
    """The normal quantiles of Blom's plotting positions of ``ranks`` among ``n`` draws (ArviZ's
    rank normalisation)."""
    return special.ndtri((ranks - 3 / 8) / (n - 2 * 3 / 8 + 1))


def _take_rows(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``rows[i, index[i]]`` for every row (``np.take_along_axis``, by one flat take: faster)."""
    return np.take(rows.ravel(), index + (np.arange(len(rows)) * rows.shape[1])[:, None])


def _sort_rows(rows: np.ndarray, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's sorting permutation and its values in that order (``rows[i, order[i]]``)."""
    order = np.argsort(rows, axis=1, kind=kind)
    return order, _take_rows(rows, order)


def _scores_in_place(order: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Rank-normalised draws from each row's sorting permutation ``order`` and its sorted values
    ``ordered``: the Blom score of each draw's rank at the draw's place, a run of equal values
    sharing the run's average rank (as ArviZ's ``rankdata``)."""
    n = order.shape[1]
    z = np.empty(order.shape)
    np.put_along_axis(z, order, _blom_scores(np.arange(1.0, n + 1), n), axis=1)  # rank = place
    row, place = np.nonzero(ordered[:, 1:] == ordered[:, :-1])  # place and place + 1 are tied
    if len(row):  # e.g. folded draws: the two around the median are equally far from it
        # consecutive tied pairs of a row form one run of equal values, from start to end
        first = np.ones(len(row), dtype=bool)
        first[1:] = (row[1:] != row[:-1]) | (place[1:] != place[:-1] + 1)
        last = np.ones(len(row), dtype=bool)
        last[:-1] = first[1:]
        start, end, run_row = place[first], place[last] + 1, row[first]
        length = end - start + 1
        member = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
        rows_ = np.repeat(run_row, length)
        places = np.repeat(start, length) + member
        z[rows_, order[rows_, places]] = _blom_scores(np.repeat((start + end + 2) / 2, length), n)
    return z


def _sorted_median(ordered: np.ndarray) -> np.ndarray:
    """``np.median`` of each row, to the last bit for finite draws, from the row's sorted values."""
    n = ordered.shape[1]
    if n % 2:
        return ordered[:, n // 2].copy()
    return (ordered[:, n // 2 - 1] + ordered[:, n // 2]) / 2


def _folded_z_scale(order: np.ndarray, ordered: np.ndarray, median: np.ndarray) -> np.ndarray:
    """The rank normalisation (:func:`_scores_in_place`) of the rows' distances from their medians,
    ``|x - median|``, from the rows' sorting (``order``, ``ordered``): the draws below the median,
    nearest first, and those above are two sorted runs, which a stable sort merges."""
    n = ordered.shape[1]
    below = n // 2  # every draw before this place is at most the median, every one after at least
    distance = np.empty(ordered.shape)
    # median - x is |x - median| to the last bit where x <= median (rounding is symmetric)
    np.subtract(median[:, None], ordered[:, :below][:, ::-1], out=distance[:, :below])
    np.subtract(ordered[:, below:], median[:, None], out=distance[:, below:])
    merged, distance_ordered = _sort_rows(distance, kind="stable")  # merges the two runs
    place = np.where(merged < below, below - 1 - merged, merged)  # its place in ``ordered``
    return _scores_in_place(_take_rows(order, place), distance_ordered)


def _rhat(values: np.ndarray) -> np.ndarray:
    """Split-chain R-hat of each entry of an (entry, chain, draw) array."""
    n = values.shape[2]
    between = n * np.var(np.mean(values, axis=2), axis=1, ddof=1)
    within = np.mean(np.var(values, axis=2, ddof=1), axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _ess(values: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Effective sample size of each entry of an (entry, chain, draw) array (Geyer's initial
    monotone sequence over the autocorrelations, as in ArviZ)."""
    n_chain, n_draw = values.shape[1:]
    m = next_fast_len(2 * n_draw)
    out = np.empty(len(values))
    for start in range(0, len(values), chunk):
        x = np.asarray(values[start : start + chunk], dtype=float)
        centred = x - x.mean(axis=2, keepdims=True)
        spectrum = np.fft.rfft(centred, n=m, axis=2)
        spectrum *= np.conjugate(spectrum)
        acov = np.fft.irfft(spectrum, n=m, axis=2)[:, :, :n_draw]
        acov /= n_draw
        # means over chains of each lag, reduced along a contiguous last axis
        mean_acov = np.ascontiguousarray(acov.transpose(0, 2, 1)).mean(axis=2)
        mean_var = mean_acov[:, 0] * n_draw / (n_draw - 1.0)
        var_plus = mean_var * (n_draw - 1.0) / n_draw
        if n_chain > 1:
            var_plus = var_plus + np.var(x.mean(axis=2), axis=1, ddof=1)
        rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]
        constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
        for i, row in enumerate(rho):
            size = n_chain * n_draw
            out[start + i] = size if constant[i] else _geyer_ess(row.tolist(), size)
    return out


def _geyer_ess(rho_lag: list[float], size: int) -> float:
    """ESS from one entry's autocorrelations by lag (ArviZ's ``ess``: initial positive, then
    monotone sequence)."""
    n_draw = len(rho_lag)
    rho = np.zeros(n_draw)
    even, odd = 1.0, rho_lag[1]
    rho[0], rho[1] = even, odd
    t = 1
    while t < (n_draw - 3) and (even + odd) > 0.0:
        even, odd = rho_lag[t + 1], rho_lag[t + 2]
        if (even + odd) >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if (rho[t + 1] + rho[t + 2]) > (rho[t - 1] + rho[t]):
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1 : max_t + 2])
    tau = max(tau, 1 / np.log10(size))
    return np.nan if np.isnan(rho).any() else size / tau


def _entries(posterior: xr.Dataset) -> tuple[np.ndarray, list[tuple[str, np.ndarray]], bool]:
    """Every varying scalar of the posterior as one (entry, chain, draw) array, in order, with each
    variable's name and mask of the entries kept, and whether any entry had missing draws.
    Structurally constant entries (a reference house's zero effect) and entries with missing
    draws are left out.

    Each variable is read as a (chain x draw, entry) view, its spread reduced along the draws,
    and its kept entries copied once into the result: no other array of the posterior's size is
    made (each one cost page faults on its first use in a process; docs/performance.md).
    """
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    flats, variables, missing = [], [], False
    for name, da in posterior.data_vars.items():
        flat = da.transpose("chain", "draw", ...).values.reshape(n_chain * n_draw, -1)
        spread = flat.max(axis=0) - flat.min(axis=0)
        keep = spread > 0
        missing = missing or bool(np.isnan(spread).any())
        flats.append(flat)
        variables.append((name, keep))
    stacked = np.empty((sum(int(keep.sum()) for _, keep in variables), n_chain * n_draw))
    at = 0
    for flat, (_, keep) in zip(flats, variables):
        count = int(keep.sum())
        stacked[at : at + count] = (flat if count == len(keep) else flat[:, keep]).T
        at += count
    return stacked.reshape(len(stacked), n_chain, n_draw), variables, missing


def _entry_figures_serial(
    values: np.ndarray, prob: float, mean_ess: bool
) -> tuple[np.ndarray, ...]:
    n_chain, n_draw = values.shape[1:]
    nan = np.full(len(values), np.nan)
    rhat, bulk, tail, mean = nan, nan, nan, nan
    if n_draw >= 4 and len(values):
        split = _split_chains(values)
        if mean_ess:
            mean = _ess(split)
        # one sort of each entry's split draws serves the bulk and folded rank normalisations,
        # the median and (with every draw in the split chains) the tail quantiles
        order, ordered = _sort_rows(split.reshape(len(split), -1))
        z = _scores_in_place(order, ordered).reshape(split.shape)
        bulk = _ess(z)
        if n_chain >= 2:
            folded = _folded_z_scale(order, ordered, _sorted_median(ordered))
            rhat = np.maximum(_rhat(z), _rhat(folded.reshape(split.shape)))
        tails = []
        for q in sorted((prob, 1 - prob)):
            if n_draw % 2 == 0:  # the split chains hold every draw
                cut = quantile_of_sorted(ordered, q, axis=1)
            else:
                cut = np.quantile(values.reshape(len(values), -1), q, axis=1)
            tails.append(_ess(_split_chains(values <= cut[:, None, None])))
        tail = np.minimum(*tails)
    return rhat, bulk, tail, mean


def _entry_figures(
    values: np.ndarray, threads: int | None = None, block_rows: int = 32, mean_ess: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS, tail ESS and, with ``mean_ess``, the ESS of the mean
    (split chains, no rank normalisation) of each entry of an (entry, chain, draw) array (NaN
    where too few draws, or not asked for).

    Every figure is computed from its entry's draws alone, so the entries are cut into blocks of
    ``block_rows`` and the blocks computed in ``threads`` threads (default: one per CPU this process
    may use): the sorts, FFTs and array arithmetic release the GIL, and the figures are the same to
    the last bit as in one block (tests/results/test_diagnostics.py). Small blocks keep each one's
    arrays in the CPU's cache (the timings: docs/performance.md).
    """
    prob = float(rcParams["stats.ci_prob"])  # ArviZ's tail: the quantiles of its ci_prob
    step = max(int(block_rows), 1)
    # no entries: one empty block, whose figures are empty
    parts = [values[a : a + step] for a in range(0, len(values), step)] or [values]
    figures = thread_map(lambda part: _entry_figures_serial(part, prob, mean_ess), parts, threads)
    return tuple(np.concatenate(column) for column in zip(*figures))


def mixing(posterior: xr.Dataset, relative_efficiency: bool = False) -> dict[str, Any]:
    """Max rank-normalised R-hat and min bulk/tail ESS over a posterior's variables, with where.

    Structurally constant entries (a reference house's zero effect) are left out. The figures are
    ArviZ's (``arviz_stats.rhat``, ``ess`` with ``method="bulk"`` and ``"tail"``), to the last
    bit for finite draws (tests/results/test_diagnostics.py), computed for every entry at once:
    one sort of each entry's split chains gives the rank normalisations R-hat and bulk ESS share,
    the median and the tail quantiles, and blocks of entries are computed in parallel threads
    (:func:`_entry_figures`). With
    ``relative_efficiency``, the figures include PSIS-LOO's ``reff`` from the same blocks
    (:func:`_relative_efficiency`; one more ESS pass).
    """
    values, variables, missing = _entries(posterior)
    rhat, bulk, tail, mean = _entry_figures(values, mean_ess=relative_efficiency)

    def worst(per_entry: np.ndarray, fn) -> tuple[float, str]:
        best_value, best_name, start = None, "", 0
        for name, keep in variables:
            count = int(keep.sum())
            finite = _finite(per_entry[start : start + count])
            start += count
            if finite.size == 0:
                continue
            value = float(fn(finite))
            if best_value is None or fn([value, best_value]) == value:
                best_value, best_name = value, name
        return (best_value if best_value is not None else float("nan")), best_name

    max_rhat, rhat_var = worst(rhat, np.max)
    min_bulk, bulk_var = worst(bulk, np.min)
    min_tail, tail_var = worst(tail, np.min)
    figures = {
        "max_rhat": max_rhat,
        "max_rhat_variable": rhat_var,
        "min_ess_bulk": min_bulk,
        "min_ess_bulk_variable": bulk_var,
        "min_ess_tail": min_tail,
        "min_ess_tail_variable": tail_var,
    }
    if relative_efficiency:
        n_chain, n_draw = values.shape[1:]
        kept = np.concatenate([keep for _, keep in variables]) if variables else np.empty(0, bool)
        figures["relative_efficiency"] = _relative_efficiency(mean, kept, missing, n_chain, n_draw)
    return figures


def _relative_efficiency(
    mean_ess: np.ndarray, kept: np.ndarray, missing: bool, n_chain: int, n_draw: int
) -> float | None:
    """PSIS-LOO's relative efficiency ``r_eff`` as ArviZ computes it when not given one (its
    ``loo_helper._get_r_eff``): the mean over every posterior entry of its ESS for the mean, over
    the number of draws; a structurally constant entry counts its split draws. ``kept`` marks,
    over every entry in order, the ones ``mean_ess`` holds (:func:`_entries`). The same float to
    the last bit (tests/results/test_diagnostics.py), summed in ArviZ's order, from the blocks
    :func:`mixing` computes anyway. None (ArviZ computes it) where an entry has missing draws or
    there are too few draws."""
    if n_chain == 1:
        return 1.0
    if missing or n_draw < 4:
        return None
    # every entry, in the posterior's order (``kept``: the entries ``mean_ess`` is of)
    ess = np.full(kept.shape, float(2 * n_chain * (n_draw // 2)))
    ess[kept] = mean_ess
    return float(ess.mean() / (n_chain * n_draw))


def sampling_attempts(idata) -> list[dict[str, Any]]:
    """The trace's sampling attempts (target acceptance, divergent transitions, seconds), first
    to last; the trace is the last one's (``Sampler.retry_target_accept``). Empty when the trace
    does not record them (one sampled outside :class:`model.sampling.engine.CompiledAggregator`)."""
    recorded = idata.attrs.get("sampling_attempts")
    return json.loads(recorded) if recorded else []


def gate_warning(diag: dict[str, Any]) -> str | None:
    """The warning a result opens with when the gate failed (None when it passed): its numbers are
    not to be published, and why (``diag``: :func:`diagnose`'s, or ``headline.json``'s ``gate``)."""
    if diag["passed"]:
        return None
    return (
        "NOT FOR PUBLICATION: the diagnostics gate failed, so the sampler's draws do not support "
        "the numbers below. What failed: " + "; ".join(diag["failures"]) + ". Sample longer or "
        "at a higher target acceptance (config [sampler]) and fit again."
    )


def retry_note(attempts: list[dict[str, Any]]) -> str:
    """A sentence on a retried fit ("" for one attempt), e.g. "Sampled again at target_accept
    0.99 after 3 divergent transition(s) at 0.95", or with a ladder "Sampled again at
    target_accept 0.999 after 3 divergent transition(s) at 0.95, then 1 at 0.99"; a longer
    attempt (``Sampler.retry_draws``; its record has ``draws`` and ``after``) adds "then with
    4000 draws a chain at target_accept 0.99 after max R-hat 1.012 > 1.01 (walk_sd)"; a longer
    attempt that climbed the ladder adds "; then with 4000 draws a chain at target_accept 0.999
    after 1 divergent transition(s) at 0.99" (each attempt's divergent transitions said once:
    by the next attempt's reason, or, for the last, after it)."""
    if len(attempts) < 2:
        return ""
    ladder = [a for a in attempts if "after" not in a]
    longer = [a for a in attempts if "after" in a]
    parts = []
    if len(ladder) > 1:
        first, *between, last = ladder
        parts.append(
            f"at target_accept {last['target_accept']:g} after "
            f"{first['divergences']} divergent transition(s) at {first['target_accept']:g}"
            + "".join(f", then {a['divergences']} at {a['target_accept']:g}" for a in between)
        )
    parts += [
        f"with {a['draws']} draws a chain at target_accept {a['target_accept']:g} after "
        + " and ".join(a["after"])
        + (
            f", with {a['divergences']} divergent transition(s)"
            if a["divergences"] and a is attempts[-1]
            else ""
        )
        for a in longer
    ]
    return "Sampled again " + "; then ".join(parts)


def convergence(idata, relative_efficiency: bool = False) -> dict[str, Any]:
    """R-hat, bulk/tail ESS over every posterior variable; divergences, E-BFMI, tree depth (and,
    with ``relative_efficiency``, PSIS-LOO's ``reff``: :func:`mixing`)."""
    stats = idata.sample_stats
    figures = mixing(idata.posterior.to_dataset(), relative_efficiency)
    # after the mixing figures: a fit imports ArviZ's statistics while they are computed
    bfmi = np.atleast_1d(arviz_stats().bfmi(idata)["energy"].values)  # one value per chain
    depth_var = next((v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None)
    saturation = float(stats[depth_var].mean()) if depth_var else float("nan")
    return {
        **figures,
        "sampling_attempts": sampling_attempts(idata),
        "divergences": int(stats["diverging"].sum()),
        "bfmi_per_chain": [float(b) for b in bfmi],
        "min_bfmi": float(np.min(bfmi)),
        "treedepth_saturation": saturation,
        "draws": int(idata.posterior.sizes["draw"]),
        "chains": int(idata.posterior.sizes["chain"]),
    }


def without_empty_variables(dataset: xr.Dataset) -> xr.Dataset:
    """``dataset`` without its variables that have no entries (``log_n_z`` and ``n_unknown`` when
    every sample size is stated): a fit leaves them out of its trace, as ArviZ's plots of a whole
    posterior refuse empty variables, and the gate has nothing to check in them."""
    empty = [name for name, values in dataset.data_vars.items() if values.size == 0]
    return dataset.drop_vars(empty) if empty else dataset


def convergence_in_background(idata) -> Future[dict[str, Any]]:
    """:func:`convergence` of a trace (with ``relative_efficiency``, as :func:`diagnose` needs it),
    computed in a thread of its own while the caller goes on (:func:`model.threads.in_background`).

    The thread reads a snapshot taken now of the trace's ``posterior`` (without its empty
    variables: :func:`without_empty_variables`), ``sample_stats`` and attributes: the same
    arrays, not copies, so the caller may add groups to the trace or replace its posterior group
    meanwhile, but must not change the arrays. ArviZ's ``stats.ci_prob`` (the tail ESS's
    quantiles) is read in the thread. Pass the future's result to :func:`diagnose`.
    """
    snapshot = xr.DataTree.from_dict(
        {
            "posterior": without_empty_variables(idata.posterior.to_dataset()),
            "sample_stats": idata.sample_stats.to_dataset(),
        }
    )
    snapshot.attrs = dict(idata.attrs)
    return in_background(lambda: convergence(snapshot, relative_efficiency=True))


@contextmanager
def _lazy_jax_hidden() -> Iterator[None]:
    """Within the block, ``sys.modules`` does not hold the lazy, not yet loaded ``jax`` module that
    ``arviz_base`` registers when imported (``lazy_loader.load`` in ``arviz_base.io_numpyro``).

    SciPy's array-API checks (``logsumexp``, which the Pareto fits of PSIS-LOO and power-scaling
    call) take a ``jax`` found in ``sys.modules`` as imported and read a class from it, which loads
    the whole of JAX (0.4-0.5 s) into a process that does not use it. SciPy caches the answer per
    array type (``functools.lru_cache`` in its ``_issubclass_fast``), so a check made here answers
    later ones too, and one made elsewhere first may still load JAX. The stub is put back when the
    block ends, unless the real module was imported meanwhile: ``sys.modules`` is the process's,
    so another thread importing JAX during the block gets the real module, and
    ``arviz_base.io_numpyro`` keeps its stub (it would then load JAX again if used).
    """
    lazy = getattr(importlib.util, "_LazyModule", ())  # private: where absent, nothing is hidden
    if not isinstance(sys.modules.get("jax"), lazy):
        yield
        return
    with module_entry("jax", ABSENT):
        yield


def predictive_checks(
    idata, design: PollDesign, relative_efficiency: float | None = None
) -> dict[str, Any]:
    """Posterior predictive coverage of the reported shares, and the PSIS-LOO outlier report.

    Coverage counts every reported answer share (not the merged rest, which the others determine)
    inside the central 50% and 90% posterior predictive intervals of its reading. LOO-PIT (the
    leave-one-out predictive probability of a share at or below the reported one, by PSIS weights)
    is given for every reported answer share of each reading, and per answer the number of
    readings whose LOO-PIT falls outside 0.05-0.95 (about a tenth where the predictive is
    calibrated; many more, or far fewer, say it is too narrow or too wide). PSIS-LOO uses
    ``relative_efficiency`` as its ``reff`` (:func:`mixing` gives ArviZ's own figure); None: ArviZ
    computes it.
    """
    pred = idata.posterior_predictive["obs_share"].values  # chain, draw, poll, component
    pred = pred.reshape(-1, *pred.shape[2:])
    observed = design.observed
    labels = design.component_label
    reported = (labels != "") & (labels != "rest")
    lo50, hi50 = np.quantile(pred, [0.25, 0.75], axis=0)
    lo90, hi90 = np.quantile(pred, [0.05, 0.95], axis=0)
    in50 = (observed >= lo50) & (observed <= hi50)
    in90 = (observed >= lo90) & (observed <= hi90)

    n_poll = observed.shape[0]
    pareto_k = np.full(n_poll, np.nan)
    pit = np.full(observed.shape, np.nan)
    loo_summary: dict[str, Any] = {
        "elpd_loo": None,
        "elpd_loo_se": None,
        "p_loo": None,
        "loo_error": None,
    }
    try:
        with warnings.catch_warnings():
            # High Pareto k is not hidden: every reading's k is reported, those over 0.7 listed.
            warnings.filterwarnings(
                "ignore", message="Estimated shape parameter of Pareto", category=UserWarning
            )
            with _lazy_jax_hidden():
                loo = arviz_stats().loo(
                    idata, pointwise=True, var_name="obs_share", reff=relative_efficiency
                )
    except ValueError as err:  # e.g. too few draws for Pareto smoothing
        loo_summary["loo_error"] = f"PSIS-LOO not computed: {err}"
    else:
        pareto_k = np.asarray(loo.pareto_k).ravel()
        log_weights = np.asarray(loo.log_weights.transpose("chain", "draw", "poll").values).reshape(
            -1, n_poll
        )
        weights = np.exp(log_weights - log_weights.max(axis=0))
        weights /= weights.sum(axis=0)
        pit = np.einsum("sp,spc->pc", weights, (pred <= observed[None]).astype(float))
        loo_summary.update(elpd_loo=float(loo.elpd), elpd_loo_se=float(loo.se), p_loo=float(loo.p))

    polls = design.polls
    readings = []
    for i in range(len(polls)):
        readings.append(
            {
                "poll": polls["poll_id"].iloc[i],
                "pollster": polls["pollster"].iloc[i],
                "question": polls["question"].iloc[i],
                "field_start": f"{polls['field_start'].iloc[i]:%Y-%m-%d}",
                "field_end": f"{polls['field_end'].iloc[i]:%Y-%m-%d}",
                "pareto_k": float(pareto_k[i]),
                "loo_pit": {
                    str(labels[i, c]): float(pit[i, c]) for c in np.flatnonzero(reported[i])
                },
                "in_50": bool(in50[i][reported[i]].all()),
                "in_90": bool(in90[i][reported[i]].all()),
                "n_known": bool(design.n_known[i]),
            }
        )
    high_k = [r for r in readings if r["pareto_k"] > PARETO_K_THRESHOLD]
    outside = {}
    for answer in design.answers:
        values = np.array([r["loo_pit"][answer] for r in readings if answer in r["loo_pit"]])
        if values.size and not np.isnan(values).any():
            outside[answer] = {
                "readings": int(values.size),
                "outside_05_95": int(((values < 0.05) | (values > 0.95)).sum()),
            }
    return {
        "coverage50": float(in50[reported].mean()),
        "coverage90": float(in90[reported].mean()),
        "shares_checked": int(reported.sum()),
        **loo_summary,
        "pareto_k_threshold": PARETO_K_THRESHOLD,
        "loo_pit_outside": outside,
        "high_pareto_k": [
            {k: r[k] for k in ("pollster", "question", "field_start", "field_end", "pareto_k")}
            for r in high_k
        ],
        "readings": readings,
    }


def prior_sensitivity(idata, cells: list[int] | None = None) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity (ArviZ ``psense``) of the main quantities.

    The scales, the event jumps and the curve's shares at ``cells`` (default: the last cell; a fit
    passes the last reading's cell and the curve's last, projected, cell). Needs the ``log_prior`` group
    (of :data:`model.aggregator.names.SENSITIVITY_PRIORS`) and ``log_likelihood``. Columns ``quantity``, ``prior``,
    ``likelihood`` (the sensitivity statistics; above 0.05 counts as sensitive) and ``diagnosis``.
    """
    if "log_prior" not in idata.children:
        raise ValueError("the posterior has no log_prior group; refit to get prior sensitivity")
    post = idata.posterior
    names = [
        v
        for v in ("walk_sd", "nonsampling_sd", "house_sd", "question_sd", "jump", "share")
        if v in post
    ]
    psense_log = logging.getLogger("arviz_stats.psense")
    level = psense_log.level
    psense_log.setLevel(logging.ERROR)  # its "potential issues" note is the diagnosis column here
    try:
        times = post["time"].values[-1:] if cells is None else post["time"].values[cells]
        with _lazy_jax_hidden():  # its Pareto smoothing calls SciPy's logsumexp
            table = arviz_stats().psense_summary(idata, var_names=names, coords={"time": times})
    finally:
        psense_log.setLevel(level)
    table = table.rename_axis("quantity").reset_index()
    # a share's date as a day ("share[2026-02-23, talks]"), not a nanosecond timestamp
    table["quantity"] = table["quantity"].str.replace("T00:00:00.000000000", "", regex=False)
    return table


def flagged_sensitivity(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`prior_sensitivity` with a diagnosis (not "✓")."""
    return table[table["diagnosis"] != "✓"]


def mixing_failures(conv: dict[str, Any]) -> list[str]:
    """The failed R-hat, ESS and divergence criteria of the gate, as sentences (see :func:`gate`)."""
    failures = slow_mixing(conv)
    if conv["divergences"] > MAX_DIVERGENCES:
        failures.append(f"{conv['divergences']} divergent transitions (expected none)")
    return failures


def slow_mixing(conv: dict[str, Any]) -> list[str]:
    """The failed R-hat and ESS criteria of the gate, as sentences (empty: the chains mixed)."""
    failures = []
    if math.isnan(conv["max_rhat"]):  # no quantity has a finite R-hat
        failures.append(
            "R-hat could not be computed for any quantity (too few chains or draws, or chains "
            "that did not move)"
        )
    elif not conv["max_rhat"] <= MAX_RHAT:
        failures.append(
            f"max R-hat {conv['max_rhat']:.3f} > {MAX_RHAT} ({conv['max_rhat_variable']})"
        )
    if not conv["min_ess_bulk"] >= MIN_ESS:
        failures.append(
            f"min bulk ESS {conv['min_ess_bulk']:.0f} < {MIN_ESS} ({conv['min_ess_bulk_variable']})"
        )
    if not conv["min_ess_tail"] >= MIN_ESS:
        failures.append(
            f"min tail ESS {conv['min_ess_tail']:.0f} < {MIN_ESS} ({conv['min_ess_tail_variable']})"
        )
    return failures


def may_sample_longer(sampler: Sampler, idata) -> bool:
    """Whether a fit missing the gate's R-hat or ESS alone would be sampled longer
    (``Sampler.retry_draws``): it is set, the trace has fewer draws a chain, and its last
    attempt had no divergent transition (more draws do not mend those)."""
    attempts = sampling_attempts(idata)
    return (
        sampler.retry_draws is not None
        and idata.posterior.sizes["draw"] < sampler.retry_draws
        and not (
            attempts[-1]["divergences"] if attempts else int(idata.sample_stats["diverging"].sum())
        )
    )


def longer_sampling_reasons(sampler: Sampler, idata, conv: dict[str, Any]) -> list[str]:
    """Why the fit (``idata``, whose :func:`convergence` is ``conv``) is to be sampled again with
    ``sampler.retry_draws`` draws a chain: the gate's R-hat and ESS criteria it misses, when
    :func:`may_sample_longer`; empty otherwise."""
    return slow_mixing(conv) if may_sample_longer(sampler, idata) else []


def gate(conv: dict[str, Any]) -> list[str]:
    """The failed criteria, each as a sentence with the measured figure (empty: passed)."""
    failures = mixing_failures(conv)
    if not conv["min_bfmi"] >= MIN_BFMI:
        failures.append(f"min E-BFMI {conv['min_bfmi']:.2f} < {MIN_BFMI}")
    return failures


#: The gate's figures: numbers, NaN where they cannot be computed (``diagnostics.json`` stores
#: NaN as null, which :func:`model.load_run` reads back as NaN).
GATE_FIGURES = ("max_rhat", "min_ess_bulk", "min_ess_tail", "min_bfmi", "coverage50", "coverage90")


def diagnose(idata, design: PollDesign, conv: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``diagnostics.json`` holds; ``passed`` is the gate's verdict.

    ``conv``: the trace's :func:`convergence` with ``relative_efficiency``, if already computed
    (:func:`convergence_in_background`); default: computed here.
    """
    if conv is None:
        conv = convergence(idata, relative_efficiency=True)
    failures = gate(conv)
    notes = []
    if conv["treedepth_saturation"] > TREEDEPTH_WARN_FRACTION:
        notes.append(
            f"{100 * conv['treedepth_saturation']:.1f}% of draws hit the maximum tree depth"
        )
    checks = predictive_checks(idata, design, conv["relative_efficiency"])
    if checks["loo_error"]:
        notes.append(checks["loo_error"])
    if checks["high_pareto_k"]:
        notes.append(
            f"{len(checks['high_pareto_k'])} reading(s) with Pareto k > {PARETO_K_THRESHOLD}"
        )
    return {
        "passed": not failures,
        "failures": failures,
        "warnings": notes,
        "thresholds": {
            "max_rhat": MAX_RHAT,
            "min_ess": MIN_ESS,
            "max_divergences": MAX_DIVERGENCES,
            "min_bfmi": MIN_BFMI,
        },
        **conv,
        **checks,
    }
