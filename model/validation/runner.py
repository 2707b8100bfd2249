"""``python -m model validate``: the backtest and calibration, as independent refits on Dask.

Every refit is one Dask task. A worker compiles each model it meets once (a
:class:`~model.sampling.engine.CompiledAggregator` in its refit form, cached per process) and
refits it by swapping data, so a worker
pays the compile cost once per model, not once per refit. By default the tasks run on a
``LocalCluster`` started for the run (``workers`` processes, one task at a time each, the
machine's cores shared between them); ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``) sends them to
an existing cluster instead, whose workers need this package installed.

A task that fails is reported with what it was (method and cut-off, or SBC dataset) and the
error; every other result is kept. The run folder ``runs/validate-<timestamp>/`` appears only
when everything is written (see :func:`write_validation`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.aggregator.design import PollDesign, build_design
from model.config import FORM_FIELDS, Config, ConfigError, Sampler, ValidateSettings
from model.data.polls import table_checksum
from model.fitting import sample_judged
from model.provenance import code_version
from model.results.calibration import (
    REFERENCE_TARGETS,
    SETTINGS_FILE,
    TARGETS_FILE,
    VALIDATE_PREFIX,
)
from model.results.diagnostics import convergence, gate, sampling_attempts
from model.sampling.engine import CompiledAggregator
from model.threads import cpu_budget
from model.validation import backtest, sbc

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


# -- worker side ------------------------------------------------------------------------------

_REFITTERS: dict[str, CompiledAggregator] = {}


#: The refits' whole-number columns of ``backtest_targets.csv`` (blank on the baselines' rows).
REFIT_COUNTS = (
    "divergences",
    "first_attempt_divergences",
    "attempts",
    "longer_draws",
    "training_readings",
    "knots",
    "events",
    "worker_pid",
    "seed",
)


def task_seed(seed: int, *task: object) -> int:
    """The seed of one piece of a validate run, from the run's ``seed`` and what the piece is
    (``task``: say ``("backtest", method, training_rows)``), not from its place in the plan.

    Adding a candidate's refits, or SBC beside the backtest, leaves every other refit's seed, and
    so its figures, as they were.
    """
    # numpy scalars as the Python numbers they hold (repr(np.int64(3)) is not repr(3)); the digest
    # read little-endian, so the seed is the same on every machine
    text = repr(_plain(task)).encode()
    words = np.frombuffer(hashlib.sha256(text).digest(), dtype="<u4")
    return int(np.random.SeedSequence([seed, *words.tolist()]).generate_state(1)[0]) % 2**31


def _plain(value: object) -> object:
    """``value`` with every numpy scalar, at any depth of tuples and lists, as its Python number.

    Raises
    ------
    TypeError
        For anything else than strings, numbers, None, tuples and lists (a repr that could differ
        between library versions or runs would change the seed).
    """
    if isinstance(value, np.generic):
        return value.item()
    if type(value) in (tuple, list):
        return type(value)(_plain(v) for v in value)
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"a task is described by strings, numbers and tuples of them, not {value!r}")


def _refitter(key: str, polls: pd.DataFrame, config: Config) -> tuple[CompiledAggregator, bool]:
    """This process's compiled model for ``key`` (compiled on first use); whether it was compiled now."""
    if key not in _REFITTERS:
        _REFITTERS[key] = CompiledAggregator(build_design(polls, config), config, refit=True)
        return _REFITTERS[key], True
    return _REFITTERS[key], False


def _gate_summary(idata, conv: dict[str, Any]) -> dict[str, Any]:
    failures = gate(conv)
    return {
        "gate_passed": not failures,
        "gate_failures": "; ".join(failures),
        "max_rhat": conv["max_rhat"],
        "min_ess_bulk": conv["min_ess_bulk"],
        "divergences": conv["divergences"],
        **_attempt_columns(idata),
    }


def _attempt_columns(idata) -> dict[str, Any]:
    """The kept fit's target acceptance, the first attempt's divergent transitions (the same
    fit unless ``Sampler.retry_target_accept`` or ``retry_draws`` sampled again), the number of
    attempts and the draws a chain of a longer attempt (0: none)."""
    attempts = sampling_attempts(idata)
    return {
        "target_accept": attempts[-1]["target_accept"] if attempts else float("nan"),
        "first_attempt_divergences": attempts[0]["divergences"] if attempts else -1,
        "attempts": len(attempts),
        "longer_draws": max((a["draws"] for a in attempts if "after" in a), default=0),
    }


def backtest_task(
    table: pd.DataFrame,
    config: Config,
    refit: backtest.Refit,
    full: PollDesign,
    sampler: Sampler,
    seed: int,
    cores: int,
) -> list[dict[str, Any]]:
    """Fit one training set, designed from its own readings, and score every target it serves.

    ``table`` and ``config`` come from :func:`model.validation.backtest.refit_table`; ``full`` is
    the design of every reading (where the targets' reported shares are). The compiled model is
    loaded from the disk cache when its structure was compiled before (sizes are data). The refit
    is sampled as a fit is: up the divergence ladder, then longer when R-hat or ESS alone miss
    the gate (``Sampler.retry_draws``); ``sample_s`` counts every attempt.

    Returns
    -------
    list of dict
        One row per target: its scores, the refit's gate verdict and timings, and ``answers``.
    """
    with cpu_budget(cores):  # the worker's share of the machine, for the gate's threads too
        started = time.perf_counter()
        design = build_design(table, config)
        engine = CompiledAggregator(design, config)
        idata, sample_s, conv = sample_judged(engine, sampler, seed=seed, cores=cores)
        if conv is None:  # the kept trace's gate figures, where sample_judged did not compute them
            conv = convergence(idata)
        posterior = idata.posterior.to_dataset()
        checks = _gate_summary(idata, conv)
        rng = np.random.default_rng(seed)
        rows = []
        for target in refit.targets:
            placed = backtest.place(
                full,
                backtest.poll_index(full, target.source_row),
                design,
                pooled=refit.method == backtest.NO_EFFECTS,
            )
            alpha = backtest.model_alpha(
                posterior, design, placed, rng, unknown_n_log_sd=config.priors.unknown_n_log_sd
            )
            rows.append(
                {
                    **backtest.score(alpha, placed, rng),
                    **checks,
                    "sample_s": sample_s,
                    "compile_s": engine.compile_s,
                    "task_s": time.perf_counter() - started,
                    "compile_cache": engine.callbacks,
                    "log_density": engine.log_density,
                    "training_readings": len(design.polls),
                    "knots": len(design.walk_knots),
                    "events": len(design.event_labels),
                    "worker_pid": os.getpid(),
                    "seed": seed,
                }
            )
        return rows


def sbc_task(
    key: str,
    polls: pd.DataFrame,
    config: Config,
    observed: np.ndarray,
    truth: dict[str, float],
    sampler: Sampler,
    seed: int,
    cores: int,
) -> dict[str, Any]:
    """Fit one prior-simulated table and rank the truth among the posterior draws.

    The fit is *accepted* when every ranked quantity has a bulk ESS of at least
    :data:`model.validation.sbc.ACCEPT_ESS`; every fit is kept either way. It is sampled as a fit
    is: up the divergence ladder, then longer when it misses acceptance with no divergent
    transition left (:func:`model.validation.sbc.longer_sampling_reasons`); ``sample_s`` counts
    every attempt. What calibration needs is recorded (the ranked quantities' ESS and R-hat,
    divergent transitions), not the full gate over every latent quantity.
    """
    with cpu_budget(cores):
        refitter, compiled_now = _refitter(key, polls, config)
        idata, sample_s = refitter.sample(sampler, seed=seed, cores=cores, observed=observed)

        def judged(idata):
            posterior = idata.posterior.to_dataset()
            mixing = sbc.ranked_mixing(posterior, refitter.design).set_index("quantity")
            return posterior, mixing, float(mixing["ess_bulk"].min())

        posterior, mixing, min_ess = judged(idata)
        if reasons := sbc.longer_sampling_reasons(sampler, idata, min_ess):
            idata, longer_s = refitter.sample_longer(
                idata, sampler, seed=seed, reasons=reasons, cores=cores, observed=observed
            )
            sample_s += longer_s
            posterior, mixing, min_ess = judged(idata)
        table = sbc.ranks(sbc.posterior_values(posterior, refitter.design), truth)
        divergences = int(idata.sample_stats["diverging"].sum())
        failure = sbc.acceptance_failure(min_ess)
        accepted = not failure
        return {
            "ranks": table,
            "min_ranked_ess": min_ess,
            "min_ranked_ess_quantity": str(mixing["ess_bulk"].idxmin()),
            "max_ranked_rhat": float(mixing["rhat"].max()),
            "divergences": divergences,
            **_attempt_columns(idata),
            "accepted": accepted,
            "gate_passed": accepted,
            "gate_failures": failure,
            "sample_s": sample_s,
            "compile_s": refitter.compile_s if compiled_now else 0.0,
            "log_density": refitter.log_density,
            "worker_pid": os.getpid(),
            "seed": seed,
            **{f"true_{name}": truth[name] for name in ("walk_sd", "nonsampling_sd")},
        }


# -- client side ------------------------------------------------------------------------------


@dataclass
class Validation:
    """Everything a validate run produced (written by :func:`write_validation`)."""

    settings: ValidateSettings
    config: Config
    backtest: pd.DataFrame  # backtest.csv: one row per method (reference targets, horizon 0)
    backtest_targets: pd.DataFrame  # per method, target and horizon
    backtest_answers: pd.DataFrame  # per method, target, horizon and reported answer
    backtest_horizons: pd.DataFrame  # per method and horizon (reference targets)
    backtest_groups: pd.DataFrame  # per method, horizon and other group of targets
    backtest_paired: pd.DataFrame  # the model's log score minus each method's, with its SE
    backtest_bias: pd.DataFrame  # mean signed error per method, horizon and answer
    sbc: pd.DataFrame  # per quantity
    sbc_ranks: pd.DataFrame  # per dataset and quantity
    sbc_fits: pd.DataFrame  # per dataset: diagnostics, timing
    failures: pd.DataFrame  # tasks that raised
    info: dict[str, Any]  # wall time, workers, scheduler, versions


class _Client:
    """A Dask client on an existing scheduler or on a LocalCluster started (and closed) here."""

    def __init__(self, settings: ValidateSettings) -> None:
        from distributed import Client, LocalCluster

        self.address = settings.scheduler or os.environ.get(SCHEDULER_ENV) or None
        self.cluster = None
        if self.address:
            self.client = Client(self.address)
        else:
            # The scheduler's HTTP server (no dashboard without bokeh) on a free local port: the
            # default 8787 may be taken by another cluster, and then distributed warns.
            self.cluster = LocalCluster(
                n_workers=settings.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",
            )
            self.client = Client(self.cluster)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _cores(
    settings: ValidateSettings, dask: _Client, workers: dict[str, dict[str, Any]], *, chains: int
) -> int:
    """A refit's cores: ``--cores-per-task``, else the machine's over the local workers, else
    what the existing cluster's machines allow (:func:`cores_per_task_on`), else ``chains``."""
    from dask.system import cpu_count  # the CPUs this process may use: affinity, cgroup quota

    if settings.cores_per_task:
        return settings.cores_per_task
    if dask.cluster is not None:  # the local cluster: one thread per worker
        return max(1, cpu_count() // settings.workers)
    counts = dask.client.run(cpu_count, on_error="ignore")  # a worker leaving is left out
    return cores_per_task_on(workers, counts) or chains


def cores_per_task_on(workers: dict[str, dict[str, Any]], cpu_counts: dict[str, int]) -> int | None:
    """The cores each task may use on an existing cluster: on each machine, its CPUs over the
    tasks its workers run at once (their threads, summed over the machine's workers); the least
    over the machines, since a task may run on any of them.

    Parameters
    ----------
    workers : dict
        Dask's ``scheduler_info()["workers"]``: each worker's ``host`` and ``nthreads``.
    cpu_counts : dict
        The CPUs each worker's process may use (``dask.system.cpu_count`` through
        ``Client.run``), by worker address. A worker missing here (it joined or left between the
        two calls) is left out.

    Returns
    -------
    int or None
        At least 1; None when no worker has both figures (none has joined yet).
    """
    threads: dict[str, int] = {}
    cpus: dict[str, int] = {}
    for address, worker in workers.items():
        if not cpu_counts.get(address):
            continue
        host = worker["host"]
        threads[host] = threads.get(host, 0) + worker["nthreads"]
        cpus[host] = max(cpus.get(host, 0), cpu_counts[address])
    return min((max(1, cpus[h] // threads[h]) for h in threads), default=None)


def _backtest_row(target: backtest.Target, method: str, error: str = "") -> dict[str, Any]:
    return {**backtest._target_row(target, method), "error": error}


def gather(tasks: dict[Any, dict[str, Any]], log: Callable[[str], None]):
    """Collect finished tasks as they complete, logging each; a failed task is recorded, not raised.

    ``tasks`` maps each Dask future to what it is (``kind`` "backtest" with its ``refit``, or
    "sbc" with ``dataset``). Returns the backtest rows (one per target), per-answer tables, SBC
    rank tables, SBC fit rows and failures.
    """
    from distributed import as_completed

    refit_rows, answer_rows, rank_rows, sbc_rows, failures = [], [], [], [], []
    for done, future in enumerate(as_completed(list(tasks)), start=1):
        info = tasks[future]
        if info["kind"] == "backtest":
            refit = info["refit"]
            what = (
                f"backtest {refit.method}, cut-off {refit.cutoff:%Y-%m-%d} "
                f"({len(refit.training_rows)} readings; {len(refit.targets)} target(s))"
            )
        else:
            what = f"SBC dataset {info['dataset']}"
        try:
            result = future.result()
        except Exception as err:  # a failed refit is reported; the others' results are kept
            message = f"{type(err).__name__}: {err}"
            failures.append({"task": what, "kind": info["kind"], "error": message})
            if info["kind"] == "backtest":
                refit_rows += [
                    _backtest_row(t, info["refit"].method, message) for t in info["refit"].targets
                ]
            log(f"[{done}/{len(tasks)}] FAILED {what}: {message}")
            continue
        if info["kind"] == "backtest":
            for target, row in zip(info["refit"].targets, result, strict=True):
                answers = row.pop("answers")
                refit_rows.append({**_backtest_row(target, info["refit"].method), **row})
                answer_rows.append(
                    answers.assign(**backtest._target_row(target, info["refit"].method))
                )
            scores = ", ".join(f"{r['log_score']:.2f}" for r in result)
            detail = f"log score {scores}"
            result = result[0]  # the refit's gate verdict and timings are the same for each target
        else:
            rank_rows.append(result.pop("ranks").assign(dataset=info["dataset"]))
            sbc_rows.append({"dataset": info["dataset"], **result})
            detail = "ranked"
        gate_word = "" if result["gate_passed"] else f"; gate FAILED ({result['gate_failures']})"
        log(
            f"[{done}/{len(tasks)}] {what}: {detail}, sampled {result['sample_s']:.0f} s{gate_word}"
        )

    return refit_rows, answer_rows, rank_rows, sbc_rows, failures


def run_validation(
    polls: pd.DataFrame,
    config: Config,
    settings: ValidateSettings,
    *,
    log: Callable[[str], None] | None = None,
) -> Validation:
    """Run the backtest and/or SBC on Dask and collect the results (nothing is written here).

    Parameters
    ----------
    polls : DataFrame
        A validated poll table (:func:`model.load_polls`).
    config : Config
        The fit config (its priors, identification and selection are what is validated). Its
        ``through`` is dropped: every refit's grid ends with its readings, and what is scored is the
        prediction of held-out readings.
    settings : ValidateSettings
    log : callable, optional
        Receives one progress line per finished task (default: print to stderr).
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    started = time.perf_counter()
    code = code_version()  # read as the run starts: settings.json records the code that ran
    tasks: dict[Any, dict[str, Any]] = {}
    baseline_targets, baseline_answers = pd.DataFrame(), pd.DataFrame()
    targets: list[backtest.Target] = []
    sbc_truths: list[dict[str, float]] = []

    config = config.replace(through=None)
    design = build_design(polls, config)
    refits: list[backtest.Refit] = []
    if settings.backtest:
        targets = backtest.backtest_targets(design, settings.since, settings.horizons)
        if not targets:
            raise ConfigError(
                f"no reading from {settings.since} on has {backtest.MIN_TRAINING_REFERENCE} earlier "
                "reference readings to learn from"
            )
        methods = (*backtest.REFITTED, *(backtest.candidate_method(c) for c in settings.candidates))
        refits = backtest.plan_refits(targets, methods)
        baseline_targets, baseline_answers = backtest.baseline_predictions(
            design, targets, np.random.default_rng(task_seed(settings.seed, "baselines"))
        )
        log(
            f"backtest: {len(targets)} predictions of {len({t.source_row for t in targets})} readings "
            f"at horizons {', '.join(map(str, settings.horizons))} months, {len(refits)} refits"
        )
    if settings.sbc:
        sbc_polls, sbc_config = sbc.sbc_design(
            config,
            n_readings=settings.sbc_readings,
            seed=task_seed(settings.seed, "sbc design"),
            sampler=settings.sbc_sampler or config.sampler,
        )
        sbc_design = build_design(sbc_polls, sbc_config)
        from model.aggregator.graph import PollAggregator

        sbc_truths, sbc_observed = sbc.prior_draws(
            PollAggregator(sbc_design, sbc_config, refit=True).build(),
            sbc_design,
            settings.sbc,
            task_seed(settings.seed, "sbc prior draws"),
        )

    with _Client(settings) as dask:
        sampler = settings.sampler or config.sampler
        joined = dask.client.scheduler_info()["workers"]
        cores = _cores(settings, dask, joined, chains=sampler.chains)
        workers = len(joined)
        log(
            f"validate: {workers} Dask worker(s) at {dask.client.scheduler.address}, {cores} core(s) per refit"
        )
        # The longest refits first, then the SBC fits (a few seconds each), so the last tasks on
        # the workers are short: Dask runs the higher priority first.
        priority = iter(range(len(refits) + settings.sbc, 0, -1))
        for refit in sorted(refits, key=lambda r: -len(r.training_rows)):
            table, refit_config = backtest.refit_table(design, config, refit)
            future = dask.client.submit(
                backtest_task, table, refit_config, refit, design, sampler,
                task_seed(settings.seed, "backtest", refit.method, refit.training_rows), cores,
                key=f"backtest-{refit.method}-{refit.cutoff:%Y%m%d}-{len(refit.training_rows)}", pure=False,
                priority=next(priority),
            )  # fmt: skip
            tasks[future] = {"kind": "backtest", "refit": refit}
        if settings.sbc:
            key = f"sbc:{table_checksum(sbc_design.polls)}:{sbc_config.hash()}"
            for j in range(settings.sbc):
                future = dask.client.submit(
                    sbc_task, key, sbc_polls, sbc_config, sbc_observed[j], sbc_truths[j], sbc_config.sampler,
                    task_seed(settings.seed, "sbc", j), cores, key=f"sbc-{j}", pure=False,
                    priority=next(priority),
                )  # fmt: skip
                tasks[future] = {"kind": "sbc", "dataset": j}

        refit_rows, answer_rows, rank_rows, sbc_rows, failures = gather(tasks, log)

    per_target = (
        pd.concat([pd.DataFrame(refit_rows), baseline_targets], ignore_index=True)
        if targets
        else pd.DataFrame()
    )
    answers = (
        pd.concat([*answer_rows, baseline_answers], ignore_index=True)
        if targets
        else pd.DataFrame()
    )
    if len(per_target):
        # whole numbers stay whole where the baselines' rows (no refit) leave them blank
        per_target = per_target.astype({c: "Int64" for c in REFIT_COUNTS if c in per_target})
        # in the methods' order, not the order the tasks happened to finish in
        order = {m: k for k, m in enumerate(backtest.methods_of(per_target))}
        per_target, answers = (
            table.sort_values(
                ["method", "horizon_months", "field_start", "series"],
                key=lambda s: s.map(order) if s.name == "method" else s,
                kind="stable",  # a target's answers stay in the design's order
            ).reset_index(drop=True)
            for table in (per_target, answers)
        )
    ranks = (
        pd.concat(rank_rows, ignore_index=True).sort_values(["dataset"], kind="stable")
        if rank_rows
        else pd.DataFrame()
    )
    from model import __version__

    return Validation(
        settings=settings,
        config=config,
        backtest=backtest.summarise(per_target) if targets else pd.DataFrame(),
        backtest_targets=per_target,
        backtest_answers=answers,
        backtest_horizons=backtest.by_horizon(per_target) if targets else pd.DataFrame(),
        backtest_groups=backtest.by_group(per_target) if targets else pd.DataFrame(),
        backtest_paired=backtest.paired_differences(per_target) if targets else pd.DataFrame(),
        backtest_bias=backtest.signed_errors(answers) if targets else pd.DataFrame(),
        sbc=sbc.summarise(ranks, pd.DataFrame(sbc_rows)) if len(ranks) else pd.DataFrame(),
        sbc_ranks=ranks,
        sbc_fits=pd.DataFrame(sbc_rows).sort_values("dataset").reset_index(drop=True)
        if sbc_rows
        else pd.DataFrame(),
        failures=pd.DataFrame(failures, columns=["task", "kind", "error"]),
        info={
            "wall_s": time.perf_counter() - started,
            "workers": workers,
            "scheduler": dask.address or "LocalCluster",
            "cores_per_task": cores,
            # what the refits ran: the sampler's settings, the forms of the fit config their
            # designs come from (ValidateSettings.sampler)
            "backtest_sampler": dataclasses.asdict(
                dataclasses.replace(
                    settings.sampler or config.sampler,
                    **{form: getattr(config.sampler, form) for form in FORM_FIELDS},
                )
            ),
            "targets": len(targets),
            "target_readings": len({t.source_row for t in targets}),
            "refits": len(refits),
            "sbc_datasets": settings.sbc,
            "data_checksum": table_checksum(design.polls),
            "package_version": __version__,
            "code": code,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )


def _rows_where(table: pd.DataFrame, column: str, value) -> pd.DataFrame:
    """The rows of ``table`` whose ``column`` is ``value`` (an empty table, with no columns, as is)."""
    return table[table[column] == value] if len(table) else table


def _retried_refits(per_target: pd.DataFrame, *, longer: bool = False) -> str:
    """Per refitted method, "model 10 of 31 (2)": refits sampled again at a higher target
    acceptance (``retry_target_accept``; with ``longer``, sampled longer: ``retry_draws``) of all,
    and of those the ones whose last fit still missed the gate; "" when none was. A refit is its
    method and training table (training sets are nested in time, so their sizes tell them apart;
    ``reference_only``'s tables, its house's readings alone, can repeat, and count once)."""
    if not len(per_target) or "attempts" not in per_target:
        return ""
    refits = per_target.dropna(subset=["training_readings"]).drop_duplicates(
        ["method", "training_readings"]
    )
    laddered, lengthened = _sampled_again(refits)
    counted = lengthened if longer else laddered
    parts = []
    for method, group in refits.groupby("method", sort=False):
        twice = group[counted.loc[group.index]]
        if len(twice):
            parts.append(
                f"{method} {len(twice)} of {len(group)} ({int((~twice['gate_passed'].astype(bool)).sum())})"
            )
    return ", ".join(parts)


def _sampled_again(fits: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per row of a table with ``attempts`` (and ``longer_draws`` where recorded): whether its fit
    was sampled again at a higher target acceptance (up the divergence ladder, before or after
    it was sampled longer), and whether it was sampled longer (``retry_draws``). A fit that
    climbed the ladder and was then sampled longer is both, as is one whose longer attempt
    climbed it."""
    lengthened = (
        fits["longer_draws"].fillna(0) > 0
        if "longer_draws" in fits
        else pd.Series(False, index=fits.index)
    )
    return fits["attempts"] - lengthened.astype(int) > 1, lengthened


def summary_text(v: Validation) -> str:
    """Plain-text summary of a validate run."""
    lines = [
        f"Validation ({v.info['workers']} worker(s), {v.info['scheduler']}, wall time {v.info['wall_s']:.0f} s)",
    ]
    if len(v.backtest):
        lines.append(
            f"Backtest: {v.info['target_readings']} readings from {v.settings.since} predicted at horizons "
            f"{', '.join(map(str, v.settings.horizons))} months ({v.info['targets']} predictions, {v.info['refits']} refits, "
            "each designed from its own training readings)"
        )
        lines.append("Reference readings, horizon 0:")
        lines.append(
            f"  {'method':<18} {'n':>3} {'log score':>10} {'MAE':>6} {'cov50':>6} {'cov90':>6} {'failed':>6} {'gate fail':>9}"
        )
        for _, r in v.backtest.iterrows():
            lines.append(
                f"  {r['method']:<18} {r['n']:>3} {r['mean_log_score']:>10.2f} {r['mae']:>6.2f} {r['coverage50']:>6.0%} "
                f"{r['coverage90']:>6.0%} {r['failed']:>6} {r['gate_failures']:>9}"
            )
        # The reference targets' rows (no ``targets`` column) and the other groups', in that
        # order; a table without rows is left out, so that the whole-number columns stay whole.
        horizons = _rows_where(v.backtest_horizons, "method", backtest.MODEL)
        groups = _rows_where(v.backtest_groups, "method", backtest.MODEL)
        parts = [t for t in (horizons.assign(targets=REFERENCE_TARGETS), groups) if len(t)]
        if parts:
            model_rows = pd.concat(parts, ignore_index=True)
            lines.append(
                "The model by horizon (log score, MAE, coverage 50% / 90%, gate failures):"
            )
            for _, r in model_rows.iterrows():
                lines.append(
                    f"  {r['targets']:<40} {r['horizon_months']:>2} mo  n={r['n']:<3} {r['mean_log_score']:6.2f} "
                    f"{r['mae']:5.2f} {r['coverage50']:5.0%} {r['coverage90']:5.0%}  gate fail {r['gate_failures']}"
                )
        retried = _retried_refits(v.backtest_targets)
        if retried:
            lines.append(
                "Refits sampled again at a higher target acceptance after divergent transitions "
                "(retried of refits; of those, still missing the gate): " + retried
            )
        lengthened = _retried_refits(v.backtest_targets, longer=True)
        if lengthened:
            lines.append(
                f"Refits sampled again with {int(v.backtest_targets['longer_draws'].max())} draws "
                "a chain after missing the gate's R-hat or ESS alone (lengthened of refits; of those, "
                "still missing the gate): " + lengthened
            )
        paired = _rows_where(v.backtest_paired, "targets", REFERENCE_TARGETS)
        if len(paired):
            lines.append(
                "Model minus method, log score per reference target (positive: the model better; "
                "mean +/- SE, and the Newey-West SE that allows for correlated neighbouring targets):"
            )
            for _, r in paired.iterrows():
                lines.append(
                    f"  {r['method']:<18} {r['horizon_months']:>2} mo  n={r['n']:<3} {r['mean_difference']:+.3f} +/- {r['se']:.3f}"
                    f" (HAC {r['se_hac']:.3f})"
                )
    if len(v.sbc):
        accepted = int(v.sbc_fits["accepted"].sum()) if len(v.sbc_fits) else 0
        divergent = int((v.sbc_fits["divergences"] > 0).sum()) if len(v.sbc_fits) else 0
        lines.append(
            f"SBC: {v.settings.sbc} prior datasets, {len(v.sbc_fits)} fitted, {accepted} accepted (ranked quantities' bulk ESS "
            f">= {sbc.ACCEPT_ESS}), {divergent} with divergent transitions; ranks among {sbc.RANK_DRAWS} draws; every fit kept"
        )
        if "attempts" in v.sbc_fits and len(v.sbc_fits):
            fits = v.sbc_fits
            laddered, lengthened = _sampled_again(fits)
            retried = fits[laddered]
            if len(retried):
                lines.append(
                    f"  {len(retried)} of {len(fits)} fits sampled again at a higher target acceptance after divergent "
                    f"transitions ({int((retried['divergences'] > 0).sum())} of them still with some)"
                )
            if lengthened.any():
                longer = fits[lengthened]
                lines.append(
                    f"  {len(longer)} of {len(fits)} fits sampled again with {int(longer['longer_draws'].max())} "
                    "draws a chain after missing acceptance with no divergent transition "
                    f"({int((~longer['accepted'].astype(bool)).sum())} of them still not accepted)"
                )
        lines.append(
            f"  {'quantity':<44} {'cov50':>6} {'cov90':>6} {'mean rank':>9} {'in 99% band':>11} {'chi2 p':>7}"
        )
        for _, r in v.sbc.iterrows():
            lines.append(
                f"  {r['quantity']:<44} {r['coverage50']:>6.0%} {r['coverage90']:>6.0%} {r['mean_rank']:>9.2f} "
                f"{'yes' if r['ecdf_in_band'] else 'NO':>11} {r['uniformity_p']:>7.3f}"
            )
    for _, r in v.failures.iterrows():
        lines.append(f"FAILED task: {r['task']}: {r['error']}")
    return "\n".join(lines)


def write_validation(v: Validation, runs_dir: str | Path = "runs") -> Path:
    """Write ``runs_dir/validate-<timestamp>/`` whole (staged in a temporary sibling, then renamed)."""
    import matplotlib.pyplot as plt

    from model.files import staged_folder
    from model.validation.plots import validation_figures

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with staged_folder(Path(runs_dir) / f"{VALIDATE_PREFIX}{stamp}", unique=True) as (tmp, final):
        settings = {"settings": v.settings.to_dict(), "config": v.config.to_dict(), **v.info}
        (tmp / SETTINGS_FILE).write_text(
            json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n"
        )
        tables = {
            "backtest.csv": v.backtest,
            TARGETS_FILE: v.backtest_targets,
            "backtest_answers.csv": v.backtest_answers,
            "backtest_horizons.csv": v.backtest_horizons,
            "backtest_groups.csv": v.backtest_groups,
            "backtest_paired.csv": v.backtest_paired,
            "backtest_bias.csv": v.backtest_bias,
            "sbc.csv": v.sbc,
            "sbc_ranks.csv": v.sbc_ranks,
            "sbc_fits.csv": v.sbc_fits,
            "failures.csv": v.failures,
        }
        for name, table in tables.items():
            if len(table.columns):
                table.to_csv(tmp / name, index=False, date_format="%Y-%m-%d")
        (tmp / "summary.txt").write_text(summary_text(v) + "\n")
        figures = tmp / "figures"
        figures.mkdir()
        for name, figure in validation_figures(v).items():
            figure.savefig(figures / f"{name}.png", dpi=120)
            plt.close(figure)
    return final.path
