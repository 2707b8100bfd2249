"""Fitting: ``model.fit(polls, config=..., seed=...)`` and the :class:`FitResult` it returns."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm

from model.aggregator.design import build_design, exclusion_reasons
from model.config import Config, Sampler
from model.data.polls import load_polls, table_checksum
from model.provenance import code_version
from model.results.diagnostics import (
    arviz_stats,
    convergence,
    convergence_in_background,
    longer_sampling_reasons,
    may_sample_longer,
    without_empty_variables,
)
from model.results.fit_result import FitResult
from model.sampling.engine import CompiledAggregator
from model.timing import READING, Phases

__all__ = ["FitResult", "compile_fit", "fit"]

#: The phase that adds the log likelihood, predictive draws and log prior to the trace (the sampler
#: computed each draw's log likelihood and log prior with the draw: "sampling" holds their time).
EXTENDING = "predictive draws; log likelihood, log prior groups"


def sample_judged(
    engine: CompiledAggregator, sampler: Sampler, *, seed: int, cores: int
) -> tuple[Any, float, dict[str, Any] | None]:
    """Sample as :func:`fit` does, deciding on the spot: up the divergence ladder, then with
    ``sampler.retry_draws`` draws a chain (up the rest of the ladder if that has divergent
    transitions) when R-hat or ESS alone miss the gate (the
    backtest's refits and the bench's project fits; :func:`fit` decides the same way, with the
    gate's figures computed alongside its other steps).

    Returns
    -------
    (DataTree, float, dict or None)
        The kept trace, the seconds of every attempt, and the kept trace's
        :func:`~model.results.diagnostics.convergence` when it was computed here (None otherwise).
    """
    idata, seconds = engine.sample(sampler, seed=seed, cores=cores)
    if not may_sample_longer(sampler, idata):
        return idata, seconds, None
    conv = convergence(idata)
    if reasons := longer_sampling_reasons(sampler, idata, conv):
        idata, longer_s = engine.sample_longer(
            idata, sampler, seed=seed, reasons=reasons, cores=cores
        )
        return idata, seconds + longer_s, None
    return idata, seconds, conv


def _seeds(seed: int) -> tuple[int, int]:
    sample_seed, predictive_seed = np.random.SeedSequence(seed).generate_state(2)
    return int(sample_seed), int(predictive_seed)


def _resolved(config: Config, polls: pd.DataFrame, reasons: pd.Series) -> Config:
    """``config`` with ``through = "today"`` as the date (``config.json`` records it), or the last
    used reading's field end where that is later (a reading known only by its month ends with
    the month, which may not be over yet)."""
    data_end = polls.loc[reasons == "", "field_end"].max()
    return config.resolved(data_end=None if pd.isna(data_end) else data_end)


def fit(
    polls: pd.DataFrame | str | Path,
    *,
    config: Config | None = None,
    seed: int | None = None,
    progressbar: bool | None = None,
    phases: Phases | None = None,
) -> FitResult:
    """Fit the aggregation model.

    Parameters
    ----------
    polls : DataFrame or path
        A poll table (validated with :func:`model.load_polls` if not already).
    config : Config, optional
        Defaults to ``Config()``: every question, the most frequent as reference, zero-sum house
        effects, no events, the curve ending with the last reading. ``through = "today"`` is
        resolved to the date (:meth:`Config.resolved`), and the result's config holds that date.
    seed : int, optional
        Seed of every random step; drawn from the OS and recorded when not given.
    progressbar : bool, optional
        Show sampling progress; default: when stderr is a terminal.
    phases : Phases, optional
        Where to record the wall time of the fit's phases (reading the data, loading the compiled
        model, sampling, the log likelihood and predictive draws, and with
        ``config.sampler.retry_draws`` waiting for the gate's R-hat and ESS); default: a new record, counting
        from the call. The result keeps it as ``phases``, and its run folder adds its own.

    Returns
    -------
    FitResult

    Notes
    -----
    A fit with divergent transitions is sampled again up ``config.sampler.retry_target_accept``'s
    ladder; then one whose kept attempt has none but misses the gate's R-hat or ESS is sampled
    again with ``config.sampler.retry_draws`` draws a chain, when that is set, climbing the rest
    of the ladder if the longer fit has divergent transitions (the fit then waits for the gate's
    figures before it returns). The trace's ``sampling_attempts`` records
    every attempt, and the gate judges the last.
    """
    phases = Phases() if phases is None else phases
    with phases.phase(READING):
        code = code_version()  # read as the fit starts: the trace records the code that ran
        config = config or Config()
        polls = load_polls(polls, answers=config.answers)
        reasons = exclusion_reasons(polls, config)
        config = _resolved(config, polls, reasons)
        excluded = (
            polls[reasons != ""]
            .assign(excluded_because=reasons[reasons != ""])
            .reset_index(drop=True)
        )
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if progressbar is None:
            progressbar = sys.stderr.isatty()
        design = build_design(polls, config)
    sample_seed, predictive_seed = _seeds(seed)
    with phases.phase("loading the compiled model (compiling it first if new)"):
        engine = CompiledAggregator(design, config)
    with phases.phase("sampling"):
        idata = engine.sample_as_pymc(config.sampler, seed=sample_seed, progress_bar=progressbar)
    # The gate's R-hat and ESS (the longest step after sampling, on every CPU) need the posterior
    # and the sampling statistics only: they run alongside the steps below, whose Python the GIL
    # keeps to one CPU.
    convergence = convergence_in_background(idata)
    phases.alongside("the gate's R-hat and ESS, from the end of sampling")
    with phases.phase(EXTENDING):
        idata = engine.extend(idata, seed=predictive_seed)
    if may_sample_longer(config.sampler, idata):
        # A fit that mixed too slowly (R-hat or ESS alone) is sampled again with more draws:
        # decided once the gate's figures are in, and paid only by such a fit.
        with phases.phase("waiting for the gate's R-hat and ESS"):
            arviz_stats()  # imported meanwhile, for the steps after it (its ~1 s off start-up)
            reasons = longer_sampling_reasons(config.sampler, idata, convergence.result())
        if reasons:
            with phases.phase("sampling"):
                idata = engine.sample_longer(
                    idata,
                    config.sampler,
                    seed=sample_seed,
                    reasons=reasons,
                    progress_bar=progressbar,
                    as_pymc=True,
                )[0]
            convergence = convergence_in_background(idata)
            with phases.phase(EXTENDING):
                idata = engine.extend(idata, seed=predictive_seed)
    # Variables with no entries are left out of the trace (ArviZ's plots of a whole posterior
    # refuse them); the sampler stores them, as free variables.
    posterior = idata.posterior.to_dataset()
    if (kept := without_empty_variables(posterior)) is not posterior:
        idata["posterior"] = kept
    from model import __version__

    idata.attrs.update(
        {
            "config": json.dumps(config.to_dict(), sort_keys=True),
            "config_hash": config.hash(),
            "package": "model",
            "package_version": __version__,
            "code_source_sha256": code["source_sha256"],
            "code_git_commit": code["git_commit"] or "",
            "pymc_version": pm.__version__,
            "data_checksum": table_checksum(design.polls),
            "data_source": str(polls.attrs.get("source", "")),
            "seed": seed,
            "reference_pollster": design.reference_pollster or "",
            "house_effects_parameterisation": "centred" if design.centred_houses else "non-centred",
            "question_effects_parameterisation": "centred"
            if design.centred_questions
            else "non-centred",
            "walk_knots_parameterisation": "centred" if design.centred_knots else "non-centred",
            "data_end": f"{design.data_end:%Y-%m-%d}",
            "through": f"{design.through:%Y-%m-%d}",
            "walk_knots": json.dumps([f"{design.time[k]:%Y-%m-%d}" for k in design.walk_knots]),
            "confounded_pairs": json.dumps(
                [
                    [design.pollsters[h], design.questions[q]]
                    for h, q in zip(design.paired_pollsters, design.paired_questions)
                ]
            ),
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    result = FitResult(
        idata=idata,
        config=config,
        polls=design.polls,
        seed=seed,
        excluded=excluded,
        phases=phases,
    )
    result.computing_convergence(convergence)
    return result


def compile_fit(
    polls: pd.DataFrame | str | Path, *, config: Config | None = None
) -> dict[str, Any]:
    """Compile everything a fit of ``polls`` runs, so that fits of this model's structure start at once.

    Builds the model and goes through a fit's compiled steps with a minimal sampler (one chain,
    two warm-up and two kept draws, seed 0; nothing is kept or written): the sampler's callbacks
    (:func:`model.sampling.compiled.compile_model`, cached on disk; they compute each draw's log
    likelihood and log prior too), and the function that draws the predictive readings
    (PyTensor's numba cache).
    The compiled code depends on the model's structure, not on its data sizes
    (:mod:`model.sampling.compiled`), so later fits of this table, or of it with more readings,
    load it instead of compiling. ``make install`` runs it on the shipped data
    (``python -m model compile``).

    Parameters
    ----------
    polls : DataFrame or path
        A poll table.
    config : Config, optional
        As for :func:`fit`.

    Returns
    -------
    dict
        ``seconds`` (wall time) and ``callbacks`` (``"hit"`` if the sampler's callbacks came from
        the disk cache, ``"miss"`` if they were compiled).
    """
    import time

    start = time.perf_counter()
    config = config or Config()
    polls = load_polls(polls, answers=config.answers)
    config = _resolved(config, polls, exclusion_reasons(polls, config))
    engine = CompiledAggregator(build_design(polls, config), config)
    minimal = config.replace(sampler={"chains": 1, "tune": 2, "draws": 2}).sampler
    engine.extend(engine.sample_as_pymc(minimal, seed=0), seed=0)
    return {"seconds": time.perf_counter() - start, "callbacks": engine.callbacks}
