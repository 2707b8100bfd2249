r"""``make bench``: time to a trustworthy posterior, the project's fit against a NumPyro reference.

Each *case* is a poll table: the shipped data (``shipped``) or a table simulated with
:func:`model.simulate_polls` over four years (2022-2025) with a given number of readings, houses and
time grid (``sim-r1000-h8-week``: about 1,000 readings, 8 houses, a weekly grid). For each case the
project's fit and the reference (:mod:`bench.reference`, NumPyro NUTS at its defaults) are run
alternately, ``repeats`` times each, every fit in a fresh child process, as a user's ``make fit``
would run: the child's peak resident memory is the fit's own, and on-disk compile caches are warm
after the first fit, as they are for a user refitting. The project's nutpie callbacks
(:mod:`model.sampling.compiled`) are cached under a tag of the bench run's own, so each case's first project
fit compiles them as the first fit of a model structure does (a fit of new readings of a structure
compiled before loads them; PyTensor's per-operation kernels may already be cached, as they are on
a machine that has fitted before); ``compile_cache`` records which fits loaded them.

A fair reference. NUTS's defaults are not what a careful NumPyro user would stop at when the fits
do not pass the diagnostics gate, so the reference also climbs a ladder of target acceptance
(:data:`model.bench.REFERENCE_LADDER`: 0.8, which is NUTS's default and is labelled ``defaults``, then 0.9,
0.95, 0.99). After a case's alternating project and ``defaults`` fits, while the last setting
tried has not passed, the next setting runs ``repeats`` times (same seeds), and the ladder stops
at the first setting that passes. A setting *passes* on a case when every one of its repeats ran
and passed the gate (:func:`setting_passed`): strict, so a setting that passes three repeats in
five is not the one a user could rely on. Every setting tried keeps its fits and its row, passed or
not. The *gate-passing setting* of a case is the lowest that passed; when none did, the tables say
``none passed`` and there is no ratio against it.

Per fit the bench records

``compile_s``
    The project: building the PyMC model and compiling it for nutpie (numba) as ``model.fit`` does
    (:func:`model.sampling.compiled.compile_model`). The reference: the time JAX spent
    tracing, lowering and compiling (:attr:`bench.reference.ReferenceResult.compile_s`). Neither
    counts importing its libraries (nutpie and ``arviz_base``; JAX and NumPyro).
``sample_s``
    Warm-up plus sampling. ``wall_s = compile_s + sample_s``. Laying out the data
    (:func:`model.aggregator.design.build_design`, shared by both) is not counted.
``min_ess_bulk``, ``max_rhat``
    Over the quantities both implementations report (:data:`COMPARED`: the curve on every grid
    cell, house and question effects, level, event jumps and the four scales), structurally
    constant entries (a reference house's zero effect) left out. The parameterisations differ, so
    the raw parameters are not comparable; these are the numbers a user reads.
``ess_per_s``
    ``min_ess_bulk / wall_s``: effective draws of the worst-mixing reported quantity per second
    of the whole fit, compile included (a user waits for both).
``divergences``, ``min_bfmi``, ``gate_passed``
    Divergent transitions after warm-up, the lowest chain's E-BFMI, and whether the fit passes
    the project's diagnostics gate (:func:`model.results.diagnostics.gate`: R-hat <= 1.01, bulk
    and tail ESS >= 400, no divergences, E-BFMI >= 0.3) on the compared quantities;
    ``gate_failures`` says what failed.
``peak_mem_mb``
    Peak resident memory of the child process (interpreter and imports included).

``results.csv`` has one row per case, implementation and ``setting`` (the project's is its
config's, ``target_accept=0.95, retry 0.99``; the reference's ``defaults``, ``target_accept=0.9``, ...): the
median over repeats of each figure (``repeats`` says how many; ``failed`` how many fits raised;
``gate_passes`` how many passed the gate; ``passed_every_repeat`` the ladder's verdict), and the
first repeat's compile, wall time and ESS per second on their own (``first_compile_s``,
``first_wall_s``, ``first_ess_per_s``: for the project, the fit that compiled its callbacks) with
every repeat's ``compile_cache`` in order (``hit``, ``miss``; empty for the reference).
``repeats.csv`` has every fit, with its ``setting``. ``ratios.csv`` has the project/reference ratio
of each figure per case twice: against the reference's ``defaults`` and against its gate-passing
setting (``against`` says which, ``reference_setting`` names the setting, or ``none passed``).
``scaling.csv`` has the exponent :math:`b` of :math:`\mathrm{wall\_s} \propto \mathrm{readings}^b`
fitted by least squares on the log scale per implementation, setting, grid and house count (where
at least two sizes ran).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import platform
import resource
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.aggregator.names import COMPARED
from model.bench import REFERENCE_LADDER
from model.config import ZERO_SUM, Config, ConfigError

SHIPPED = "shipped"
IMPLEMENTATIONS = ("project", "reference")
#: NumPyro NUTS's default ``target_accept_prob``.
NUTS_DEFAULT_TARGET_ACCEPT = 0.8
#: Setting label of the reference at NUTS's defaults.
DEFAULTS = "defaults"
#: ``reference_setting`` in ratios.csv (and the summary) when no setting passed the gate.
NONE_PASSED = "none passed"
#: ``against`` in ratios.csv: the reference's defaults, or its lowest setting that passed the gate.
AGAINST = ("defaults", "gate-passing")
#: Simulated case sizes: readings, houses, grid (every combination).
CASE_READINGS = (100, 1000, 10000)
CASE_HOUSES = (8, 40)
CASE_GRIDS = ("week", "day")
#: The four years the simulated tables span.
SIM_START, SIM_END = "2022-01-01", "2025-12-31"
SIM_ANSWERS = ("talks", "continue", "undecided")
SIM_QUESTIONS = ("Q_MAIN", "Q_ALT")
#: Posterior quantities both implementations report; ESS and R-hat are taken over these.
RESULT_COLUMNS = [
    "case",
    "implementation",
    "setting",
    "readings",
    "grid_cells",
    "compile_s",
    "sample_s",
    "wall_s",
    "min_ess_bulk",
    "ess_per_s",
    "divergences",
    "max_rhat",
    "peak_mem_mb",
]
#: Further columns of results.csv and repeats.csv, after :data:`RESULT_COLUMNS`.
EXTRA_COLUMNS = [
    "houses",
    "grid",
    "min_ess_tail",
    "min_bfmi",
    "gate_passed",
    "gate_passes",
    "passed_every_repeat",
    "target_accept",
    "repeats",
    "failed",
    "draws",
    "tune",
    "chains",
    "first_compile_s",
    "first_wall_s",
    "first_ess_per_s",
    "compile_cache",
]
#: Figures compared as project/reference in ratios.csv.
RATIO_COLUMNS = [
    "compile_s",
    "sample_s",
    "wall_s",
    "min_ess_bulk",
    "ess_per_s",
    "peak_mem_mb",
    "first_wall_s",
    "first_ess_per_s",
]


@dataclass(frozen=True)
class BenchCase:
    """One poll table to fit.

    Attributes
    ----------
    name : str
        ``"shipped"`` or ``"sim-r<readings>-h<houses>-<grid>"``.
    readings : int or None
        Readings asked of the simulator (a few may merge: one survey per house, question and
        field period); None for the shipped data.
    houses : int or None
        Pollsters in the simulated table.
    grid : str or None
        Time grid of a simulated case (the shipped case uses its config's).
    """

    name: str
    readings: int | None = None
    houses: int | None = None
    grid: str | None = None

    @classmethod
    def simulated(cls, readings: int, houses: int, grid: str) -> BenchCase:
        return cls(f"sim-r{readings}-h{houses}-{grid}", readings, houses, grid)


def all_cases() -> tuple[BenchCase, ...]:
    """The shipped data, then every simulated size (smallest first)."""
    sims = [
        BenchCase.simulated(r, h, g) for r in CASE_READINGS for h in CASE_HOUSES for g in CASE_GRIDS
    ]
    return (BenchCase(SHIPPED), *sims)


def select_cases(names: Sequence[str] | None) -> tuple[BenchCase, ...]:
    """The cases named (in the order of :func:`all_cases`), all of them for None.

    A name may end in ``*`` to match a prefix (``sim-r100-*``). Raises ConfigError for a name that
    matches nothing.
    """
    cases = all_cases()
    if not names:
        return cases
    chosen = []
    for name in names:
        hits = [
            c
            for c in cases
            if (c.name.startswith(name[:-1]) if name.endswith("*") else c.name == name)
        ]
        if not hits:
            known = ", ".join(c.name for c in cases)
            raise ConfigError(f"bench case {name!r} is not one of: {known}")
        chosen.extend(h for h in hits if h not in chosen)
    return tuple(c for c in cases if c in chosen)


def case_table(case: BenchCase, data: str | Path, config: Config) -> tuple[pd.DataFrame, Config]:
    """The poll table and config of a case.

    The shipped case is ``data`` with ``config``, its ``through`` dropped: the curve ends with the
    last reading, so the case is the same whatever day the bench runs. A simulated case draws its table from a seed
    derived from the case name (the same table every run) and fits it with the library's default
    model (every question, zero-sum house effects, default priors) on the case's grid, with
    ``config``'s sampler settings.
    """
    from model.data.polls import load_polls
    from model.data.simulate import simulate_polls

    if case.name == SHIPPED:
        return load_polls(data, answers=config.answers), config.replace(through=None)
    sim = simulate_polls(
        pollsters=[f"House {i + 1:02d}" for i in range(case.houses)],
        questions=SIM_QUESTIONS,
        answers=SIM_ANSWERS,
        start=SIM_START,
        end=SIM_END,
        n_readings=case.readings,
        seed=zlib.crc32(case.name.encode()),
    )
    sim_config = Config(
        answers=SIM_ANSWERS,
        questions=SIM_QUESTIONS,
        reference_question=SIM_QUESTIONS[0],
        house_effects=ZERO_SUM,
        grid=case.grid,
        sampler=config.sampler,
    )
    return load_polls(sim.polls, answers=SIM_ANSWERS), sim_config


def setting_label(target_accept: float | None) -> str:
    """A fit's ``setting``: ``defaults`` for None or NUTS's default, else ``target_accept=<value>``."""
    if target_accept is None or target_accept == NUTS_DEFAULT_TARGET_ACCEPT:
        return DEFAULTS
    return f"target_accept={target_accept:g}"


def setting_label_project(config: Config) -> str:
    """The project's ``setting``: its config's target acceptance, and the later attempts' when
    a fit with divergent transitions is sampled again (``target_accept=0.95, retry 0.99``; a
    ladder ``target_accept=0.95, retry 0.99 then 0.999``), and the draws a chain of a fit that
    mixed too slowly (``..., longer 4000``: ``Sampler.retry_draws``)."""
    label = f"target_accept={config.sampler.target_accept:g}"
    ladder = config.sampler.retry_ladder
    if ladder:
        label += ", retry " + " then ".join(f"{v:g}" for v in ladder)
    if config.sampler.retry_draws:
        label += f", longer {config.sampler.retry_draws}"
    return label


def compared_diagnostics(posterior, divergences: int, energy) -> dict[str, Any]:
    """The diagnostics gate on the compared quantities.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with dims ``(chain, draw, ...)``; R-hat and ESS are taken over :data:`COMPARED`.
    divergences : int
        Divergent transitions after warm-up.
    energy : xarray.DataArray
        The sampler's Hamiltonian per draw, dims ``(chain, draw)``, for E-BFMI.

    Returns
    -------
    dict
        Min bulk/tail ESS and max R-hat with the quantity named
        (:func:`model.results.diagnostics.mixing`), ``divergences``, ``min_bfmi`` (the lowest
        chain's, computed as :func:`model.results.diagnostics.convergence` does), ``gate_passed``
        (:func:`model.results.diagnostics.gate`, the project's gate) and ``gate_failures`` (its
        sentences joined by ``; ``, empty when it passed).
    """
    import arviz_stats as azs

    from model.results.diagnostics import gate, mixing

    figures = mixing(posterior[[v for v in COMPARED if v in posterior.data_vars]])
    figures["divergences"] = int(divergences)
    figures["min_bfmi"] = float(np.min(np.atleast_1d(azs.bfmi(energy).values)))
    failures = gate(figures)
    figures["gate_passed"] = not failures
    figures["gate_failures"] = "; ".join(failures)
    return figures


def setting_passed(fits: pd.DataFrame) -> bool:
    """Whether a setting passed the gate on a case: every one of its fits ran and passed.

    ``fits`` are one case's fits of one implementation and setting (columns ``error`` and
    ``gate_passed``). Strict: one failed repeat, or one fit that raised, and the setting has not
    passed; no fits, nor has it.
    """
    if not len(fits):
        return False
    ran = fits["error"].fillna("") == ""
    return bool(ran.all() and fits["gate_passed"].fillna(False).astype(bool).all())


def fit_project(design, config: Config, *, seed: int, cores: int | None = None) -> dict[str, Any]:
    """The project's fit as ``model.fit`` samples it (nutpie on the PyMC model), timed.

    The same model (:class:`model.aggregator.graph.PollAggregator`), compiled by
    :func:`model.sampling.compiled.compile_model` and sampled with nutpie (``cores = min(4, cpu count)``);
    its sampling includes what the sampler computes with each draw for ``model.fit``'s
    extension (log likelihood, log prior, the readings' concentrations); the predictive draws
    after sampling are not counted,
    nor is importing the libraries (nutpie, as the fit imports it), as the reference's clock starts
    after JAX and NumPyro are imported. A fit the project samples longer (``Sampler.retry_draws``,
    decided on the gate's R-hat and ESS over every variable, as ``model.fit`` decides) counts every
    attempt; the decision's own time is not counted.
    """
    from model.fitting import sample_judged
    from model.results.diagnostics import sampling_attempts
    from model.sampling.compiled import import_nutpie
    from model.sampling.engine import CompiledAggregator

    import_nutpie()  # before the clock, as the reference imports JAX and NumPyro

    engine = CompiledAggregator(design, config)
    cores = cores or min(4, os.cpu_count() or 1)
    idata, sample_s, _ = sample_judged(engine, config.sampler, seed=seed, cores=cores)
    return {
        "compile_s": engine.compile_s,
        "sample_s": sample_s,
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "target_accept": sampling_attempts(idata)[-1]["target_accept"],
        "energy": idata.sample_stats["energy"],
        "posterior": idata.posterior.to_dataset(),
        "compile_cache": engine.callbacks,
    }


def fit_reference_timed(
    design, config: Config, *, seed: int, target_accept: float | None = None
) -> dict[str, Any]:
    """The NumPyro reference (:func:`bench.reference.fit_reference`), timed.

    ``target_accept`` None samples at NUTS's defaults (0.8), as the ``defaults`` setting does.
    """
    from model.bench.reference import fit_reference

    result = fit_reference(design, config, seed=seed, target_accept=target_accept)
    return {
        "compile_s": result.compile_s,
        "sample_s": result.sample_s,
        "divergences": result.divergences,
        "energy": result.idata["sample_stats"]["energy"],
        "posterior": result.posterior,
        "note": result.chain_method_note,
    }


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One timed fit (meant to run in a fresh child process); returns a row of figures.

    ``job`` holds ``case`` (a :class:`BenchCase` as a dict), ``implementation``, ``setting``,
    ``target_accept`` (the reference's; None for NUTS's defaults and for the project, which
    samples at its config's), ``data``, ``config`` (a :class:`Config` as a dict), ``seed`` and
    ``repeat``.
    """
    from model.aggregator.design import build_design

    case = BenchCase(**job["case"])
    config = Config.from_dict(job["config"])
    polls, case_config = case_table(case, job["data"], config)
    design = build_design(polls, case_config)
    if job["implementation"] == "project":
        fitted = fit_project(design, case_config, seed=job["seed"])
        target_accept = fitted["target_accept"]  # the kept attempt's (retry_target_accept)
    else:
        target_accept = job.get("target_accept")
        fitted = fit_reference_timed(
            design, case_config, seed=job["seed"], target_accept=target_accept
        )
        target_accept = NUTS_DEFAULT_TARGET_ACCEPT if target_accept is None else target_accept
    figures = compared_diagnostics(fitted["posterior"], fitted["divergences"], fitted["energy"])
    wall = fitted["compile_s"] + fitted["sample_s"]
    s = case_config.sampler
    return {
        "case": case.name,
        "implementation": job["implementation"],
        "setting": job["setting"],
        "target_accept": target_accept,
        "repeat": job["repeat"],
        "readings": len(design.polls),
        "grid_cells": len(design.time),
        "houses": len(design.pollsters),
        "grid": case_config.grid,
        "compile_s": fitted["compile_s"],
        "sample_s": fitted["sample_s"],
        "wall_s": wall,
        **figures,
        "ess_per_s": figures["min_ess_bulk"] / wall,
        "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "draws": fitted["posterior"].sizes.get("draw", s.draws),  # the kept fit's (retry_draws)
        "tune": s.tune,
        "chains": s.chains,
        "compile_cache": fitted.get("compile_cache", ""),
        "note": fitted.get("note", ""),
        "error": "",
    }


def _failed_row(job: dict[str, Any], err: BaseException) -> dict[str, Any]:
    detail = " ".join("".join(traceback.format_exception_only(err)).split())
    return {
        "case": job["case"]["name"],
        "implementation": job["implementation"],
        "setting": job.get("setting", ""),
        "repeat": job["repeat"],
        "error": detail,
    }


def _run_one_reporting_errors(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_one`, with an exception turned into a failed row in the child (exceptions such as
    :class:`model.data.polls.PollDataError` do not survive pickling whole)."""
    try:
        return run_one(job)
    except Exception as err:
        return _failed_row(job, err)


def _in_fresh_process(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_one` in a new (spawned) Python process; an error comes back as a failed row."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_run_one_reporting_errors, job)
        try:
            return future.result()
        except Exception as err:  # the child died (BrokenProcessPool: killed, out of memory)
            return _failed_row(job, err)


@dataclass(frozen=True)
class Bench:
    """What a bench run measured.

    Attributes
    ----------
    fits : DataFrame
        Every fit (one row per case, implementation, setting and repeat; ``error`` non-empty if
        it failed).
    results : DataFrame
        Median over the successful repeats per case, implementation and setting
        (:data:`RESULT_COLUMNS`, then :data:`EXTRA_COLUMNS`).
    ratios : DataFrame
        Project / reference per case for :data:`RATIO_COLUMNS`, against the reference's
        ``defaults`` and against its gate-passing setting (:func:`ratios`).
    scaling : DataFrame
        Fitted exponents of wall time against readings.
    settings : dict
        Cases, repeats, sampler, the reference's ladder and the setting that passed the gate per
        case, seed, machine.
    """

    fits: pd.DataFrame
    results: pd.DataFrame
    ratios: pd.DataFrame
    scaling: pd.DataFrame
    settings: dict[str, Any]


def run_bench(
    cases: Sequence[BenchCase],
    *,
    data: str | Path,
    config: Config,
    repeats: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = print,
    runner: Callable[[dict[str, Any]], dict[str, Any]] = _in_fresh_process,
    implementations: Sequence[str] = IMPLEMENTATIONS,
    reference_ladder: Sequence[float] = REFERENCE_LADDER,
) -> Bench:
    """Fit every case with both implementations, alternating, ``repeats`` times each, then climb
    the reference's ladder of target acceptance until a setting passes the gate.

    Per case and repeat the order is project then reference (at NUTS's defaults) on even repeats
    and the reverse on odd ones, so neither implementation always runs on a machine the other has
    just warmed. Then, unless the reference's defaults passed the gate in every repeat
    (:func:`setting_passed`), the reference runs ``repeats`` times (seeds as before) at each next
    target acceptance of ``reference_ladder`` in turn, and stops at the first that passes. Each
    fit runs in a fresh process (``runner``); one that fails is recorded and the others go on.
    ``implementations`` may name one of the two alone (for cases where the other would take
    hours); ratios then need both.

    Parameters
    ----------
    reference_ladder : sequence of float
        Target acceptances to try, increasing, each below 1; the first must be NUTS's default
        (0.8, the ``defaults`` setting). Default :data:`model.bench.REFERENCE_LADDER`; ``(0.8,)`` runs the
        defaults alone.

    Raises
    ------
    ConfigError
        For unknown implementations, a ladder that does not start at 0.8 and increase, or a
        shipped case whose config the reference does not implement
        (:func:`model.bench.reference.check_reference_model`).
    """
    unknown = sorted(set(implementations) - set(IMPLEMENTATIONS))
    if unknown or not implementations:
        raise ConfigError(
            f"implementations must be among {list(IMPLEMENTATIONS)}, got {list(implementations)}"
        )
    ladder = tuple(float(t) for t in reference_ladder)
    if (
        not ladder
        or ladder[0] != NUTS_DEFAULT_TARGET_ACCEPT
        or any(b <= a for a, b in zip(ladder, ladder[1:]))
        or ladder[-1] >= 1
    ):
        raise ConfigError(
            f"the reference's target acceptances must start at NUTS's default "
            f"{NUTS_DEFAULT_TARGET_ACCEPT} and increase, each below 1; got {list(reference_ladder)}"
        )
    implementations = tuple(i for i in IMPLEMENTATIONS if i in implementations)
    if "reference" in implementations and any(c.name == SHIPPED for c in cases):
        # before any fit: each reference fit would fail in its own process, up the whole ladder
        from model.bench.reference import check_reference_model

        check_reference_model(config)
    started = datetime.now(UTC)
    # A cache tag of this bench run's own: each case's first project fit compiles its callbacks as the
    # first fit of a model structure does; later repeats load them from the disk cache, as a refit
    # (or a fit with new readings) does.
    from model.sampling.compiled import CACHE_TAG_ENV

    previous_tag = os.environ.get(CACHE_TAG_ENV)
    os.environ[CACHE_TAG_ENV] = f"bench-{started:%Y%m%dT%H%M%S.%f}"
    try:
        rows = _run_fits(cases, data, config, repeats, seed, implementations, ladder, runner, log)
    finally:
        if previous_tag is None:
            os.environ.pop(CACHE_TAG_ENV, None)
        else:
            os.environ[CACHE_TAG_ENV] = previous_tag
    fits = pd.DataFrame(rows)
    text_columns = ("setting", "note", "error", "compile_cache", "gate_failures")
    for column in RESULT_COLUMNS + EXTRA_COLUMNS + ["repeat", "note", "error", "gate_failures"]:
        if column not in fits:
            fits[column] = "" if column in text_columns else np.nan
    for column in text_columns:
        fits[column] = fits[column].fillna("")
    results = summarise(fits)
    settings = {
        "cases": [c.name for c in cases],
        "repeats": repeats,
        "implementations": list(implementations),
        "seed": seed,
        "sampler": dataclasses.asdict(config.sampler),
        "project_setting": setting_label_project(config),
        "reference_sampler": "numpyro NUTS at its defaults (target_accept_prob 0.8, max_tree_depth 10), "
        "then at higher target_accept_prob (reference_ladder) until a setting passes the gate in "
        "every repeat; same draws, tune, chains",
        "reference_ladder": list(ladder),
        "reference_gate_passing": {
            case: setting or NONE_PASSED for case, setting in gate_passing_settings(results).items()
        },
        "data": str(data),
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "compile_cache_tag": f"{CACHE_TAG_ENV}=bench-{started:%Y%m%dT%H%M%S.%f}",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    return Bench(
        fits=fits,
        results=results,
        ratios=ratios(results),
        scaling=scaling(results),
        settings=settings,
    )


def _run_fits(
    cases, data, config, repeats, seed, implementations, ladder, runner, log
) -> list[dict[str, Any]]:
    """The fits of :func:`run_bench`, in its order: per case the alternating fits, then the ladder."""
    rows = []
    planned = len(cases) * repeats * len(implementations)

    def run(case, implementation, repeat, target_accept):
        nonlocal planned
        if implementation == "project":
            setting, job_target = setting_label_project(config), None
            fitted_at = config.sampler.target_accept
        else:
            setting = setting_label(target_accept)
            job_target = None if setting == DEFAULTS else target_accept
            fitted_at = target_accept
        job = {
            "case": dataclasses.asdict(case),
            "implementation": implementation,
            "setting": setting,
            "target_accept": job_target,
            "data": str(data),
            "config": config.to_dict(),
            "seed": seed + repeat,
            "repeat": repeat,
        }
        row = runner(job)
        row.setdefault("setting", setting)
        row.setdefault("target_accept", fitted_at)
        rows.append(row)
        log(f"[{len(rows)}/{planned}] {_describe(row)}")
        return row

    for case in cases:
        for repeat in range(repeats):
            order = implementations if repeat % 2 == 0 else implementations[::-1]
            for implementation in order:
                run(case, implementation, repeat, ladder[0])
        if "reference" not in implementations:
            continue
        tried = [r for r in rows if r["case"] == case.name and r["implementation"] == "reference"]
        for target_accept in ladder[1:]:
            if setting_passed(pd.DataFrame(tried)):
                break
            planned += repeats
            tried = [run(case, "reference", repeat, target_accept) for repeat in range(repeats)]
        if not setting_passed(pd.DataFrame(tried)):
            log(f"{case.name}: no reference setting passed the gate in every repeat")
    return rows


def _describe(row: dict[str, Any]) -> str:
    head = (
        f"{row['case']} {row['implementation']} {row.get('setting', '')} (repeat {row['repeat']})"
    )
    if row.get("error"):
        return f"{head}: FAILED: {row['error']}"
    return (
        f"{head}: {row['readings']} readings, {row['grid_cells']} cells; compile {row['compile_s']:.1f} s, "
        f"sample {row['sample_s']:.1f} s, min ESS {row['min_ess_bulk']:.0f} ({row['ess_per_s']:.2f}/s), "
        f"R-hat {row['max_rhat']:.3f}, {row['divergences']} divergences, "
        f"gate {'passed' if row.get('gate_passed') else 'failed'}, {row['peak_mem_mb']:.0f} MB"
        + (f", callbacks {row['compile_cache']}" if row.get("compile_cache") else "")
    )


def summarise(fits: pd.DataFrame) -> pd.DataFrame:
    """Median over successful repeats per case, implementation and setting (order of first appearance).

    ``gate_passed`` says whether every fit that ran passed the gate; ``passed_every_repeat`` is
    stricter (:func:`setting_passed`: a fit that raised counts against it too).
    """
    out = []
    keys = fits[["case", "implementation", "setting"]].drop_duplicates()
    for case, implementation, setting in keys.itertuples(index=False):
        group = fits[
            (fits["case"] == case)
            & (fits["implementation"] == implementation)
            & (fits["setting"] == setting)
        ]
        ok = group[group["error"] == ""]
        row: dict[str, Any] = {"case": case, "implementation": implementation, "setting": setting}
        for column in ("readings", "grid_cells", "houses", "grid", "draws", "tune", "chains"):
            row[column] = ok[column].iloc[0] if len(ok) else np.nan
        row["target_accept"] = group["target_accept"].iloc[0]
        for column in (
            "compile_s",
            "sample_s",
            "wall_s",
            "min_ess_bulk",
            "min_ess_tail",
            "min_bfmi",
            "ess_per_s",
            "divergences",
            "max_rhat",
            "peak_mem_mb",
        ):
            row[column] = float(ok[column].astype(float).median()) if len(ok) else np.nan
        row["gate_passed"] = bool(len(ok)) and bool(ok["gate_passed"].astype(bool).all())
        row["gate_passes"] = int(ok["gate_passed"].fillna(False).astype(bool).sum())
        row["passed_every_repeat"] = setting_passed(group)
        row["repeats"] = len(ok)
        row["failed"] = len(group) - len(ok)
        first = ok[
            ok["repeat"] == 0
        ]  # NaN when the first repeat failed (a later one may have found the cache)
        for column in ("compile_s", "wall_s", "ess_per_s"):
            row[f"first_{column}"] = float(first[column].iloc[0]) if len(first) else np.nan
        states = (
            [str(c) for c in ok.sort_values("repeat")["compile_cache"]]
            if "compile_cache" in ok
            else []
        )
        row["compile_cache"] = ",".join(states) if any(states) else ""
        out.append(row)
    return pd.DataFrame(out, columns=RESULT_COLUMNS + EXTRA_COLUMNS)


def gate_passing_settings(results: pd.DataFrame) -> dict[str, str | None]:
    """Per case with reference fits, the reference's lowest setting that passed the gate in every
    repeat (``passed_every_repeat``), or None when none did.

    Settings are taken in the order they ran, which is the ladder's (lowest target acceptance
    first); the ladder stops at the first that passes, so this is also the only one that passed.
    """
    reference = results[results["implementation"] == "reference"]
    passing: dict[str, str | None] = {}
    for case in reference["case"].unique():
        rows = reference[reference["case"] == case]
        passed = rows[rows["passed_every_repeat"].astype(bool)]
        passing[case] = str(passed["setting"].iloc[0]) if len(passed) else None
    return passing


def ratios(results: pd.DataFrame) -> pd.DataFrame:
    """Project / reference of :data:`RATIO_COLUMNS` per case where both ran, two rows per case.

    ``against`` is ``defaults`` (the reference at NUTS's defaults) or ``gate-passing`` (its lowest
    setting that passed the gate in every repeat, :func:`gate_passing_settings`);
    ``reference_setting`` names that setting, or is ``none passed``, with no ratios, when no
    setting passed. ``project_setting`` is the project's; the ``*_gate_passed`` columns are the
    two rows' ``passed_every_repeat``.
    """
    passing = gate_passing_settings(results)
    rows = []
    for case in results["case"].unique():
        here = results[results["case"] == case]
        project = here[here["implementation"] == "project"]
        reference = here[here["implementation"] == "reference"].set_index("setting")
        if project.empty or DEFAULTS not in reference.index:
            continue
        project = project.iloc[0]
        for against, setting in zip(AGAINST, (DEFAULTS, passing.get(case))):
            row = {
                "case": case,
                "against": against,
                "reference_setting": setting or NONE_PASSED,
                "project_setting": project["setting"],
            }
            for column in RATIO_COLUMNS:
                ref = reference.loc[setting, column] if setting else np.nan
                row[f"{column}_ratio"] = (
                    float(project[column]) / float(ref) if ref and np.isfinite(ref) else np.nan
                )
            row["project_gate_passed"] = bool(project["passed_every_repeat"])
            row["reference_gate_passed"] = (
                bool(reference.loc[setting, "passed_every_repeat"]) if setting else False
            )
            rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "case",
            "against",
            "reference_setting",
            "project_setting",
            *(f"{c}_ratio" for c in RATIO_COLUMNS),
            "project_gate_passed",
            "reference_gate_passed",
        ],
    )


def scaling(results: pd.DataFrame) -> pd.DataFrame:
    """Least-squares exponent of wall time (and sampling time) against readings, per implementation,
    setting, grid and house count (where at least two sizes ran at that setting)."""
    sims = results[(results["case"] != SHIPPED) & results["wall_s"].notna()]
    rows = []
    for (implementation, setting, grid, houses), group in sims.groupby(
        ["implementation", "setting", "grid", "houses"], sort=True
    ):
        if group["readings"].nunique() < 2:
            continue
        x = np.log(group["readings"].astype(float))
        rows.append(
            {
                "implementation": implementation,
                "setting": setting,
                "grid": grid,
                "houses": int(houses),
                "sizes": int(group["readings"].nunique()),
                "wall_exponent": float(np.polyfit(x, np.log(group["wall_s"].astype(float)), 1)[0]),
                "sample_exponent": float(
                    np.polyfit(x, np.log(group["sample_s"].astype(float)), 1)[0]
                ),
                "min_readings": int(group["readings"].min()),
                "max_readings": int(group["readings"].max()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "implementation",
            "setting",
            "grid",
            "houses",
            "sizes",
            "wall_exponent",
            "sample_exponent",
            "min_readings",
            "max_readings",
        ],
    )


def summary_text(bench: Bench) -> str:
    """The results and ratios as a plain-text table, with the reference setting that passed the gate."""
    r = bench.results
    lines = [
        f"Bench: {len(r['case'].unique())} case(s), {bench.settings['repeats']} repeat(s) each; medians"
    ]
    lines.append(
        f"  {'case':24} {'impl':9} {'setting':19} {'reads':>6} {'cells':>6} {'compile':>8} {'sample':>8} "
        f"{'wall':>8} {'minESS':>7} {'ESS/s':>7} {'div':>5} {'R-hat':>6} {'MB':>6} gate"
    )
    for row in r.itertuples(index=False):
        head = f"  {row.case:24} {row.implementation:9} {row.setting:19}"
        if row.repeats == 0:
            lines.append(f"{head} all {row.failed} fit(s) failed")
            continue
        lines.append(
            f"{head} {int(row.readings):6d} {int(row.grid_cells):6d} {row.compile_s:8.1f} "
            f"{row.sample_s:8.1f} {row.wall_s:8.1f} {row.min_ess_bulk:7.0f} {row.ess_per_s:7.2f} {row.divergences:5.0f} "
            f"{row.max_rhat:6.3f} {row.peak_mem_mb:6.0f} "
            + (
                "pass"
                if row.passed_every_repeat
                else f"FAIL ({row.gate_passes} of {row.repeats + row.failed} passed)"
            )
            + (f" ({row.failed} failed)" if row.failed else "")
        )
    passing = gate_passing_settings(r)
    if passing:
        lines.append(
            "Reference setting that passed the gate in every repeat (lowest target acceptance):"
        )
        for case, setting in passing.items():
            lines.append(f"  {case:24} {setting or NONE_PASSED}")
    if len(bench.ratios):
        lines.append("Project / reference:")
        lines.append(f"  {'case':24} {'against':34} {'wall':>6} {'ESS/s':>6} {'memory':>6}")
        for row in bench.ratios.itertuples(index=False):
            against = (
                row.against
                if row.against == row.reference_setting
                else f"{row.against} ({row.reference_setting})"
            )
            if row.reference_setting == NONE_PASSED:
                lines.append(f"  {row.case:24} {against:34} no ratio: no setting passed the gate")
                continue
            lines.append(
                f"  {row.case:24} {against:34} {row.wall_s_ratio:6.2f} {row.ess_per_s_ratio:6.2f} "
                f"{row.peak_mem_mb_ratio:6.2f}"
            )
    if len(bench.scaling):
        lines.append("Wall time ~ readings^b:")
        for row in bench.scaling.itertuples(index=False):
            lines.append(
                f"  {row.implementation:9} {row.setting:19} {row.grid:4} {row.houses:2d} houses: b = {row.wall_exponent:.2f} "
                f"(sampling {row.sample_exponent:.2f}; {row.sizes} sizes, {row.min_readings}-{row.max_readings} readings)"
            )
    return "\n".join(lines)


def write_bench(bench: Bench, runs_dir: str | Path = "runs") -> Path:
    """Write ``runs/bench-<timestamp>/`` whole (or nothing): CSVs, settings, summary, plot."""
    import matplotlib

    matplotlib.use("Agg")
    from model.files import staged_folder

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with staged_folder(Path(runs_dir) / f"bench-{stamp}", unique=True) as (tmp, final):
        bench.results.to_csv(tmp / "results.csv", index=False)
        bench.fits.to_csv(tmp / "repeats.csv", index=False)
        bench.ratios.to_csv(tmp / "ratios.csv", index=False)
        bench.scaling.to_csv(tmp / "scaling.csv", index=False)
        (tmp / "settings.json").write_text(json.dumps(bench.settings, indent=2) + "\n")
        (tmp / "summary.txt").write_text(summary_text(bench) + "\n")
        figure = plot_scaling(bench.results)
        figure.savefig(tmp / "time_vs_size.png", dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
    return final.path


def plot_series(results: pd.DataFrame) -> pd.DataFrame:
    """The rows :func:`plot_scaling` draws, with a ``series`` label: the project, the reference at
    its defaults, and the reference at its gate-passing setting where that is not the defaults
    (settings tried and failed are in results.csv, not in the plot)."""
    passing = gate_passing_settings(results)
    series = pd.Series(pd.NA, index=results.index, dtype=object)
    series[results["implementation"] == "project"] = "project"
    reference = results["implementation"] == "reference"
    series[reference & (results["setting"] == DEFAULTS)] = "reference, defaults"
    lowest = results.apply(
        lambda row: row["setting"] != DEFAULTS and passing.get(row["case"]) == row["setting"],
        axis=1,
    ).astype(bool)
    series[reference & lowest] = "reference, gate-passing"
    return results.assign(series=series)[series.notna()]


def plot_scaling(results: pd.DataFrame):
    """Wall time (compile + sampling) against readings, log-log, one line per series
    (:func:`plot_series`), grid and houses."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    ok = plot_series(results[results["wall_s"].notna()])
    colours = {
        "project": "tab:blue",
        "reference, defaults": "tab:orange",
        "reference, gate-passing": "tab:red",
    }
    styles = {"week": "-", "day": "--"}
    markers = {8: "o", 40: "s"}
    sims = ok[ok["case"] != SHIPPED]
    for (name, grid, houses), group in sims.groupby(["series", "grid", "houses"], sort=True):
        group = group.sort_values("readings")
        kwargs = dict(
            color=colours.get(name),
            linestyle=styles.get(grid, ":"),
            marker=markers.get(int(houses), "^"),
        )
        label = f"{name}, {grid}, {int(houses)} houses"
        axes[0].plot(group["readings"], group["wall_s"], label=label, **kwargs)
        axes[1].plot(group["readings"], group["ess_per_s"], label=label, **kwargs)
    shipped = ok[ok["case"] == SHIPPED]
    for row in shipped.itertuples(index=False):
        axes[0].scatter(
            [row.readings],
            [row.wall_s],
            color=colours.get(row.series),
            marker="*",
            s=150,
            zorder=3,
            label=f"{row.series}, shipped data",
        )
        axes[1].scatter(
            [row.readings],
            [row.ess_per_s],
            color=colours.get(row.series),
            marker="*",
            s=150,
            zorder=3,
        )
    for ax, ylabel in zip(axes, ("wall time, compile + sampling (s)", "min bulk ESS per second")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("readings")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("Time to a posterior (median over repeats)")
    axes[1].set_title("Efficiency of the worst-mixing reported quantity")
    return fig
