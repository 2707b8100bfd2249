"""The diagnostics gate: convergence (R-hat, ESS, divergences, E-BFMI, tree depth) and fit checks.

Thresholds are Stan's published recommendations and are not configurable: a run that misses one
is marked failed, is still written, and the command line exits with status 3.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import arviz_stats as azs  # not arviz itself: it imports arviz_plots and with it matplotlib
import numpy as np
import pandas as pd
import xarray as xr

from model.aggregator.design import PollDesign

MAX_RHAT = 1.01
MIN_ESS = 400
MIN_BFMI = 0.3
MAX_DIVERGENCES = 0
#: Pareto k above which a reading's PSIS-LOO estimate is unreliable (the reading is influential).
PARETO_K_THRESHOLD = 0.7
#: Fraction of draws at the maximum tree depth above which saturation is reported as a warning.
TREEDEPTH_WARN_FRACTION = 0.01


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def _varying(posterior: xr.Dataset) -> xr.Dataset:
    """Posterior variables with their structurally constant entries (e.g. a reference effect) masked."""
    out = {}
    for name, da in posterior.data_vars.items():
        spread = da.max(("chain", "draw")) - da.min(("chain", "draw"))
        out[name] = da.where(spread > 0)
    return xr.Dataset(out)


def mixing(posterior: xr.Dataset) -> dict[str, Any]:
    """Max rank-normalised R-hat and min bulk/tail ESS over a posterior's variables, with where.

    Structurally constant entries (a reference house's zero effect) are left out.
    """
    posterior = _varying(posterior)

    def worst(ds: xr.Dataset, fn) -> tuple[float, str]:
        best_value, best_name = None, ""
        for name, da in ds.data_vars.items():
            values = _finite(da.values)
            if values.size == 0:
                continue
            value = float(fn(values))
            if best_value is None or fn([value, best_value]) == value:
                best_value, best_name = value, name
        return (best_value if best_value is not None else float("nan")), best_name

    max_rhat, rhat_var = worst(azs.rhat(posterior), np.max)
    min_bulk, bulk_var = worst(azs.ess(posterior, method="bulk"), np.min)
    min_tail, tail_var = worst(azs.ess(posterior, method="tail"), np.min)
    return {
        "max_rhat": max_rhat,
        "max_rhat_variable": rhat_var,
        "min_ess_bulk": min_bulk,
        "min_ess_bulk_variable": bulk_var,
        "min_ess_tail": min_tail,
        "min_ess_tail_variable": tail_var,
    }


def convergence(idata) -> dict[str, Any]:
    """R-hat, bulk/tail ESS over every posterior variable; divergences, E-BFMI, tree depth."""
    stats = idata.sample_stats
    bfmi = np.atleast_1d(azs.bfmi(idata)["energy"].values)  # one value per chain
    depth_var = next((v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None)
    saturation = float(stats[depth_var].mean()) if depth_var else float("nan")
    return {
        **mixing(idata.posterior.to_dataset()),
        "divergences": int(stats["diverging"].sum()),
        "bfmi_per_chain": [float(b) for b in bfmi],
        "min_bfmi": float(np.min(bfmi)),
        "treedepth_saturation": saturation,
        "draws": int(idata.posterior.sizes["draw"]),
        "chains": int(idata.posterior.sizes["chain"]),
    }


def predictive_checks(idata, design: PollDesign) -> dict[str, Any]:
    """Posterior predictive coverage of the reported shares, and the PSIS-LOO outlier report.

    Coverage counts every reported answer share (not the merged rest, which the others determine)
    inside the central 50% and 90% posterior predictive intervals of its reading. LOO-PIT is given
    for each reading's first reported answer (talks, in the project's data).
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
    pit = np.full(n_poll, np.nan)
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
            loo = azs.loo(idata, pointwise=True, var_name="obs_share")
    except ValueError as err:  # e.g. too few draws for Pareto smoothing
        loo_summary["loo_error"] = f"PSIS-LOO not computed: {err}"
    else:
        pareto_k = np.asarray(loo.pareto_k).ravel()
        log_weights = np.asarray(loo.log_weights.transpose("chain", "draw", "poll").values).reshape(
            -1, n_poll
        )
        weights = np.exp(log_weights - log_weights.max(axis=0))
        weights /= weights.sum(axis=0)
        pit = np.einsum("sp,sp->p", weights, (pred[:, :, 0] <= observed[None, :, 0]).astype(float))
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
                "loo_pit": float(pit[i]),
                "loo_pit_answer": str(labels[i, 0]),
                "in_50": bool(in50[i][reported[i]].all()),
                "in_90": bool(in90[i][reported[i]].all()),
                "n_known": bool(design.n_known[i]),
            }
        )
    high_k = [r for r in readings if r["pareto_k"] > PARETO_K_THRESHOLD]
    return {
        "coverage50": float(in50[reported].mean()),
        "coverage90": float(in90[reported].mean()),
        "shares_checked": int(reported.sum()),
        **loo_summary,
        "pareto_k_threshold": PARETO_K_THRESHOLD,
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
        table = azs.psense_summary(idata, var_names=names, coords={"time": times})
    finally:
        psense_log.setLevel(level)
    return table.rename_axis("quantity").reset_index()


def mixing_failures(conv: dict[str, Any]) -> list[str]:
    """The failed R-hat, ESS and divergence criteria of the gate, as sentences (see :func:`gate`)."""
    failures = []
    if not conv["max_rhat"] <= MAX_RHAT:
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
    if conv["divergences"] > MAX_DIVERGENCES:
        failures.append(f"{conv['divergences']} divergent transitions (expected none)")
    return failures


def gate(conv: dict[str, Any]) -> list[str]:
    """The failed criteria, each as a sentence with the measured figure (empty: passed)."""
    failures = mixing_failures(conv)
    if not conv["min_bfmi"] >= MIN_BFMI:
        failures.append(f"min E-BFMI {conv['min_bfmi']:.2f} < {MIN_BFMI}")
    return failures


def diagnose(idata, design: PollDesign) -> dict[str, Any]:
    """Everything ``diagnostics.json`` holds; ``passed`` is the gate's verdict."""
    conv = convergence(idata)
    failures = gate(conv)
    notes = []
    if conv["treedepth_saturation"] > TREEDEPTH_WARN_FRACTION:
        notes.append(
            f"{100 * conv['treedepth_saturation']:.1f}% of draws hit the maximum tree depth"
        )
    checks = predictive_checks(idata, design)
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
