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

from model.aggregator.design import build_design
from model.config import Config, ConfigError, Sampler, ValidateSettings
from model.data.polls import table_checksum
from model.results.diagnostics import convergence, gate
from model.sampling.engine import CompiledAggregator
from model.validation import backtest, sbc

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


# -- worker side ------------------------------------------------------------------------------

_REFITTERS: dict[str, CompiledAggregator] = {}


def _refitter(key: str, polls: pd.DataFrame, config: Config) -> tuple[CompiledAggregator, bool]:
    """This process's compiled model for ``key`` (compiled on first use); whether it was compiled now."""
    if key not in _REFITTERS:
        _REFITTERS[key] = CompiledAggregator(build_design(polls, config), config, refit=True)
        return _REFITTERS[key], True
    return _REFITTERS[key], False


def _gate_summary(idata) -> dict[str, Any]:
    conv = convergence(idata)
    failures = gate(conv)
    return {
        "gate_passed": not failures,
        "gate_failures": "; ".join(failures),
        "max_rhat": conv["max_rhat"],
        "min_ess_bulk": conv["min_ess_bulk"],
        "divergences": conv["divergences"],
    }


def backtest_task(
    key: str,
    polls: pd.DataFrame,
    config: Config,
    target: backtest.Target,
    sampler: Sampler,
    seed: int,
    cores: int,
) -> dict[str, Any]:
    """Refit without the readings after ``target``'s start and score the prediction of ``target``."""
    refitter, compiled_now = _refitter(key, polls, config)
    design = refitter.design
    weights = backtest.training_weights(design, target)
    idata, sample_s = refitter.sample(sampler, seed=seed, cores=cores, in_likelihood=weights)
    i = backtest.poll_index(design, target.source_row)
    alpha = backtest.model_alpha(idata.posterior.to_dataset(), design, i)
    result = backtest.score(alpha, design, i, np.random.default_rng(seed))
    result.update(_gate_summary(idata))
    result.update(
        sample_s=sample_s,
        compile_s=refitter.compile_s if compiled_now else 0.0,
        training_readings=int(weights.sum()),
        worker_pid=os.getpid(),
    )
    return result


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
    """Fit one prior-simulated table and rank the truth among the posterior draws."""
    refitter, compiled_now = _refitter(key, polls, config)
    idata, sample_s = refitter.sample(sampler, seed=seed, cores=cores, observed=observed)
    table = sbc.ranks(sbc.posterior_values(idata.posterior.to_dataset(), refitter.design), truth)
    return {
        "ranks": table,
        **_gate_summary(idata),
        "sample_s": sample_s,
        "compile_s": refitter.compile_s if compiled_now else 0.0,
        "worker_pid": os.getpid(),
    }


# -- client side ------------------------------------------------------------------------------


@dataclass
class Validation:
    """Everything a validate run produced (written by :func:`write_validation`)."""

    settings: ValidateSettings
    config: Config
    backtest: pd.DataFrame  # backtest.csv: one row per method
    backtest_targets: pd.DataFrame  # per method and target
    backtest_answers: pd.DataFrame  # per method, target and reported answer
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


def _cores(settings: ValidateSettings, local: bool) -> int:
    if settings.cores_per_task:
        return settings.cores_per_task
    if local:
        return max(1, (os.cpu_count() or 1) // settings.workers)
    return settings.sampler.chains if settings.sampler else 4


def gather(tasks: dict[Any, dict[str, Any]], log: Callable[[str], None]):
    """Collect finished tasks as they complete, logging each; a failed task is recorded, not raised.

    ``tasks`` maps each Dask future to what it is (``kind`` "backtest" with ``method`` and
    ``target``, or "sbc" with ``dataset``). Returns the backtest rows, per-answer tables, SBC rank
    tables, SBC fit rows and failures.
    """
    from distributed import as_completed

    refit_rows, answer_rows, rank_rows, sbc_rows, failures = [], [], [], [], []
    for done, future in enumerate(as_completed(list(tasks)), start=1):
        info = tasks[future]
        what = (
            f"backtest {info['method']}, cut-off {info['target'].field_start:%Y-%m-%d} ({info['target'].poll_id})"
            if info["kind"] == "backtest"
            else f"SBC dataset {info['dataset']}"
        )
        try:
            result = future.result()
        except Exception as err:  # a failed refit is reported; the others' results are kept
            failures.append(
                {"task": what, "kind": info["kind"], "error": f"{type(err).__name__}: {err}"}
            )
            if info["kind"] == "backtest":
                refit_rows.append(
                    {"method": info["method"], "source_row": info["target"].source_row, "poll_id": info["target"].poll_id,
                     "cutoff": info["target"].field_start, "error": f"{type(err).__name__}: {err}"}
                )  # fmt: skip
            log(f"[{done}/{len(tasks)}] FAILED {what}: {type(err).__name__}: {err}")
            continue
        if info["kind"] == "backtest":
            target = info["target"]
            answers = result.pop("answers")
            refit_rows.append(
                {
                    "method": info["method"],
                    "source_row": target.source_row,
                    "poll_id": target.poll_id,
                    "cutoff": target.field_start,
                    **result,
                    "error": "",
                }
            )
            answer_rows.append(
                answers.assign(
                    method=info["method"],
                    source_row=target.source_row,
                    poll_id=target.poll_id,
                    cutoff=target.field_start,
                )
            )
            detail = f"log score {result['log_score']:.2f}, error {result['abs_error']:.1f} pts"
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
    seeds = iter(np.random.SeedSequence(settings.seed).generate_state(100_000))
    tasks: dict[Any, dict[str, Any]] = {}
    baseline_targets, baseline_answers = pd.DataFrame(), pd.DataFrame()
    targets: list[backtest.Target] = []
    sbc_truths: list[dict[str, float]] = []

    config = config.replace(through=None)
    design = build_design(polls, config)
    if settings.backtest:
        targets = backtest.backtest_targets(design, settings.since)
        if not targets:
            raise ConfigError(
                f"no reference reading from {settings.since} on has an earlier one to learn from"
            )
        backtest.check_events(config, targets)
        baseline_targets, baseline_answers = backtest.baseline_predictions(
            design, targets, np.random.default_rng(next(seeds))
        )
        pooled, pooled_config = backtest.pooled_variant(design, config)
    if settings.sbc:
        sbc_polls, sbc_config = sbc.sbc_design(
            config.priors, n_readings=settings.sbc_readings, seed=int(next(seeds)) % 2**31
        )
        sbc_design = build_design(sbc_polls, sbc_config)
        from model.aggregator.graph import PollAggregator

        sbc_truths, sbc_observed = sbc.prior_draws(
            PollAggregator(sbc_design, sbc_config, refit=True).build(),
            sbc_design,
            settings.sbc,
            int(next(seeds)) % 2**31,
        )

    with _Client(settings) as dask:
        cores = _cores(settings, local=dask.cluster is not None)
        workers = len(dask.client.scheduler_info()["workers"])
        log(
            f"validate: {workers} Dask worker(s) at {dask.client.scheduler.address}, {cores} core(s) per refit"
        )
        checksum = table_checksum(design.polls)
        sampler = settings.sampler or config.sampler
        for variant, table, variant_config in (
            ((backtest.MODEL, design.polls, config), (backtest.NO_EFFECTS, pooled, pooled_config))
            if targets
            else ()
        ):
            key = f"{variant}:{checksum}:{variant_config.hash()}"
            for target in targets:
                future = dask.client.submit(
                    backtest_task, key, table, variant_config, target, sampler, int(next(seeds)) % 2**31, cores,
                    key=f"backtest-{variant}-{target.source_row}", pure=False,
                )  # fmt: skip
                tasks[future] = {"kind": "backtest", "method": variant, "target": target}
        if settings.sbc:
            key = f"sbc:{table_checksum(sbc_design.polls)}:{sbc_config.hash()}"
            for j in range(settings.sbc):
                future = dask.client.submit(
                    sbc_task, key, sbc_polls, sbc_config, sbc_observed[j], sbc_truths[j], settings.sbc_sampler,
                    int(next(seeds)) % 2**31, cores, key=f"sbc-{j}", pure=False,
                )  # fmt: skip
                tasks[future] = {"kind": "sbc", "dataset": j}

        refit_rows, answer_rows, rank_rows, sbc_rows, failures = gather(tasks, log)

    per_target = (
        pd.concat([pd.DataFrame(refit_rows), baseline_targets], ignore_index=True)
        if targets
        else pd.DataFrame()
    )
    if len(per_target):
        order = {m: k for k, m in enumerate(backtest.METHODS)}
        per_target = per_target.sort_values(
            ["method", "cutoff"],
            key=lambda s: s.map(order) if s.name == "method" else s,
            kind="stable",
        ).reset_index(drop=True)
    answers = (
        pd.concat([*answer_rows, baseline_answers], ignore_index=True)
        if targets
        else pd.DataFrame()
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
        sbc=sbc.summarise(ranks) if len(ranks) else pd.DataFrame(),
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
            "backtest_sampler": dataclasses.asdict(settings.sampler or config.sampler),
            "targets": len(targets),
            "sbc_datasets": settings.sbc,
            "data_checksum": table_checksum(design.polls),
            "package_version": __version__,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )


def summary_text(v: Validation) -> str:
    """Plain-text summary of a validate run."""
    lines = [
        f"Validation ({v.info['workers']} worker(s), {v.info['scheduler']}, wall time {v.info['wall_s']:.0f} s)",
    ]
    if len(v.backtest):
        lines.append(
            f"Backtest: {v.info['targets']} reference readings from {v.settings.since}, each predicted from the readings before it"
        )
        lines.append(
            f"  {'method':<18} {'n':>3} {'log score':>10} {'MAE':>6} {'cov50':>6} {'cov90':>6} {'failed':>6} {'gate fail':>9}"
        )
        for _, r in v.backtest.iterrows():
            lines.append(
                f"  {r['method']:<18} {r['n']:>3} {r['mean_log_score']:>10.2f} {r['mae']:>6.2f} {r['coverage50']:>6.0%} "
                f"{r['coverage90']:>6.0%} {r['failed']:>6} {r['gate_failures']:>9}"
            )
    if len(v.sbc):
        passed = int(v.sbc_fits["gate_passed"].sum()) if len(v.sbc_fits) else 0
        lines.append(
            f"SBC: {v.settings.sbc} prior datasets, {len(v.sbc_fits)} fitted ({passed} passed the gate); ranks among {sbc.RANK_DRAWS} draws"
        )
        lines.append(f"  {'quantity':<40} {'cov50':>6} {'cov90':>6} {'mean rank':>9} {'unif p':>7}")
        for _, r in v.sbc.iterrows():
            lines.append(
                f"  {r['quantity']:<40} {r['coverage50']:>6.0%} {r['coverage90']:>6.0%} {r['mean_rank']:>9.2f} {r['uniformity_p']:>7.3f}"
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
    with staged_folder(Path(runs_dir) / f"validate-{stamp}", unique=True) as (tmp, final):
        settings = {"settings": v.settings.to_dict(), "config": v.config.to_dict(), **v.info}
        (tmp / "settings.json").write_text(
            json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n"
        )
        tables = {
            "backtest.csv": v.backtest,
            "backtest_targets.csv": v.backtest_targets,
            "backtest_answers.csv": v.backtest_answers,
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
