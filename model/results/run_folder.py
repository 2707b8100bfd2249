"""Run folders: written whole or not at all, and read back with :func:`load_run`.

A run folder ``runs/<UTC timestamp>-<config hash>/`` holds:

``posterior.nc``
    The whole ArviZ ``DataTree`` (posterior, sample_stats, posterior_predictive, observed_data,
    constant_data, log_likelihood, log_prior), provenance in its attrs; the draws of
    :data:`DRAW_GROUPS` in float32 when the config's ``stored_precision`` says so (read back in
    float64).
``config.json``
    The config as run (priors and sampler settings included), plus the seed.
``polls.csv``
    The exact poll table used, in model order, with ``poll_id`` and ``n_known``.
``headline.json``
    The headline numbers (:meth:`model.FitResult.headline`): every answer's share on ``as_of``
    (the date the curve runs through, projected past the last reading when later) and at the last
    reading, the probabilities that talks lead, rose over twelve months and since each event, and
    the changes with their intervals.
``curve.csv``, ``house_effects.csv``, ``question_effects.csv``, ``offsets.csv``, ``event_jumps.csv``
    Tidy summaries (percent / percentage points), each row naming its intervals' width
    (``interval``); each row of ``curve.csv`` names the ``house`` and ``question`` the curve is
    expressed as and whether it is ``projected`` (after the last reading's field end); house and
    question effects are put in points over the readings' span; ``offsets.csv`` holds house + question effect per
    (pollster, question) asked, at its own readings' dates: the quantity the data identify when
    one house alone asks a question.
``closed_polls.csv``
    Every closed (leaked, commissioned) reading of the table against the curve over its own field
    period (:meth:`model.FitResult.closed_polls`); only a header when the table marks none.
``prior_sensitivity.csv``
    Power-scaling prior and likelihood sensitivity (ArviZ ``psense``) of the scales, event jumps
    and latest shares.
``excluded.csv``
    Readings of the input table the fit left out, each with its reason.
``diagnostics.json``
    The diagnostics gate and its figures (see :mod:`model.results.diagnostics`).
``summary.txt``
    The summary printed by ``python -m model fit``, ending with where the run's wall time went
    (:class:`model.timing.Phases`: each phase's seconds, the total and its ratio to sampling).

The folder is first written under a hidden temporary name in the same parent and renamed into
place when complete, so an interrupted write leaves no partial run; ``runs/latest`` is then
pointed at it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import xarray as xr

from model.config import Config, config_hash
from model.files import atomic_write_text, json_text, staged_folder
from model.imports import module_entry
from model.results import RunFolderError
from model.results.calibration import BacktestCalibration, find_backtest
from model.results.diagnostics import GATE_FIGURES
from model.results.fit_result import FitResult
from model.timing import PHASES_HEADING, Phases

#: The groups of ``posterior.nc`` whose draws ``Config.stored_precision`` may store as float32.
DRAW_GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "log_prior")

REQUIRED_FILES = (
    "posterior.nc",
    "config.json",
    "polls.csv",
    "curve.csv",
    "house_effects.csv",
    "question_effects.csv",
    "excluded.csv",
    "diagnostics.json",
)
REQUIRED_GROUPS = (
    "posterior",
    "sample_stats",
    "posterior_predictive",
    "observed_data",
    "log_likelihood",
    "log_prior",
)
REQUIRED_VARIABLES = ("share", "house_effect", "question_effect")


def run_name(result) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{result.config.hash()}"


#: The run folder's two phases (:class:`model.timing.Phases`), after the fit's own.
SUMMARISING = "summaries and diagnostics"
WRITING = "writing the run folder"


def _tables(result, runs_dir: Path) -> dict[str, object]:
    """Every table and text the folder holds, computed from the draws (each once: the summary text
    reuses the tables the result caches). The diagnostics, and the headline that carries their
    verdict, come after the other tables, which a fit's R-hat and ESS, computed alongside
    (:func:`model.fit`), then overlap (unless the fit waited for them to decide on sampling longer:
    ``Sampler.retry_draws``). ``runs_dir``: where
    the folder is written, searched for a backtest of the same readings and model
    (:func:`~model.results.calibration.find_backtest`), which ``summary.txt`` quotes."""
    tables = {
        "curve.csv": result.support_curve(),
        "closed_polls.csv": result.closed_polls(),
        "house_effects.csv": result.house_effects(),
        "question_effects.csv": result.question_effects(),
        "event_jumps.csv": result.event_jumps(),
        "offsets.csv": result.reading_offsets(),
        "prior_sensitivity.csv": result.prior_sensitivity(),
        "headline.json": result.headline(),  # last: it carries the gate's verdict
    }
    diagnostics = dict(result.diagnostics())
    diagnostics["unknown_n_readings"] = list(result.polls.loc[result.polls["n"].isna(), "poll_id"])
    return {
        **tables,
        "diagnostics.json": diagnostics,
        "summary.txt": _summary(result, runs_dir),
    }


def backtest_for(result, runs_dir: str | Path) -> BacktestCalibration | None:
    """The backtest in ``runs_dir`` (where ``result``'s run folder is) of its readings and model
    that :func:`~model.results.calibration.find_backtest` picks; None where there is none, or
    where the trace records no table checksum to match it by."""
    checksum = result.idata.attrs.get("data_checksum")
    return find_backtest(runs_dir, checksum, result.config) if checksum else None


def _summary(result, runs_dir: Path) -> str:
    """``summary.txt`` but its phases: a projected curve's caveats quote a backtest of the same
    readings and model in ``runs_dir`` (:func:`backtest_for`)."""
    calibration = backtest_for(result, runs_dir) if result.headline()["projected"] else None
    return result.summary_text(calibration, searched=True)


def rewrite_summary(
    result, folder: str | Path, calibration: BacktestCalibration | None = None
) -> Path:
    """Write ``folder/summary.txt`` again (atomically) from ``result`` (the run read back) and
    ``calibration`` (the backtest beside the folder now, as the report quotes it:
    :func:`backtest_for`), keeping the phases its fit recorded: a
    backtest made after the fit (``make validate``, then ``make plots``) is quoted in the summary
    as in the report."""
    path = Path(folder) / "summary.txt"
    old = path.read_text() if path.is_file() else ""
    at = old.rfind("\n\n" + PHASES_HEADING)
    phases = old[at:] if at >= 0 else "\n\n"  # as written with no phases
    text = result.summary_text(calibration, searched=True)
    return atomic_write_text(path, text + phases)


@contextlib.contextmanager
def _unloaded_distributed_hidden() -> Iterator[None]:
    """Within the block, ``import distributed`` fails, unless Dask's distributed scheduler is
    already imported or Dask's config names a scheduler.

    Before writing, xarray asks whether a ``dask.distributed.Client`` schedules the write
    (``xarray.backends.locks.get_dask_scheduler``, through ``dask.base.get_scheduler``), importing
    ``distributed`` to ask, in a fit that uses no Dask (time: ``docs/performance.md``). No client
    can exist in a process that has not imported it, so the answer is the same: both take the
    failed import as "no client". Nothing is hidden where ``distributed`` is imported (a Dask
    worker, a notebook with a client), nor where ``dask.config`` names a scheduler: Dask then
    remembers for the whole process whether ``distributed`` could be imported
    (``dask.base._distributed_available``). ``sys.modules`` is the process's: another thread
    importing ``distributed`` during the block would fail too (none does in a fit).
    """
    import dask

    if "distributed" in sys.modules or dask.config.get("scheduler", None) is not None:
        yield
        return
    with module_entry("distributed", None):  # None: the import system's "not importable"
        yield


def _write_contents(result, folder: Path) -> None:
    """Compute the tables, then write them and the trace; ``summary.txt`` last, ending with the phases."""
    phases = result.phases
    with phases.phase(SUMMARISING):
        tables = _tables(result, folder.parent)
    with phases.phase(WRITING):
        # Not compressed: the draws are noise to zlib, and compressing them slowed the fit and
        # every read (docs/performance.md).
        with _unloaded_distributed_hidden():
            result.idata.to_netcdf(
                folder / "posterior.nc",
                engine="h5netcdf",
                encoding=_stored_encoding(result.idata, result.config.stored_precision),
            )
        (folder / "config.json").write_text(
            json_text(
                {"config": result.config.to_dict(), "seed": result.seed, "code": result.code},
                sort_keys=True,
            )
        )
        polls = result.polls.copy()
        polls["n_known"] = polls["n"].notna()
        polls.to_csv(folder / "polls.csv", index=False, date_format="%Y-%m-%d")
        for name in ("headline.json", "diagnostics.json"):
            (folder / name).write_text(json_text(tables[name]))
        tables["curve.csv"].to_csv(folder / "curve.csv", index=False, date_format="%Y-%m-%d")
        for name in (
            "closed_polls.csv",
            "house_effects.csv",
            "question_effects.csv",
            "event_jumps.csv",
            "offsets.csv",
            "prior_sensitivity.csv",
        ):
            tables[name].to_csv(folder / name, index=False)
        result.excluded.to_csv(folder / "excluded.csv", index=False, date_format="%Y-%m-%d")
    summary = [tables["summary.txt"], "", *phases.table()]
    (folder / "summary.txt").write_text("\n".join(summary) + "\n")


def _stored_encoding(idata, precision: str) -> dict[str, dict[str, dict[str, str]]]:
    """``to_netcdf``'s encoding that stores the float64 draws of :data:`DRAW_GROUPS` at ``precision``."""
    if precision == "float64":
        return {}
    return {
        f"/{group}": {
            name: {"dtype": precision}
            for name, values in idata[group].data_vars.items()
            if values.dtype == "float64"
        }
        for group in DRAW_GROUPS
        if group in idata.children
    }


def write_run(result, folder: Path, *, unique: bool = False) -> Path:
    """Write ``result`` into ``folder`` atomically (temporary sibling, then rename).

    With ``unique``, a name already taken (two runs finishing in the same second) gets a numeric
    suffix instead of failing.

    Raises
    ------
    FileExistsError
        If ``folder`` already exists (and not ``unique``).
    """
    with staged_folder(folder, unique=unique) as (tmp, final):
        _write_contents(result, tmp)
    return final.path


def save_run(result, runs_dir: str | Path = "runs") -> Path:
    """Write a new run folder under ``runs_dir`` and point ``runs_dir/latest`` at it."""
    runs_dir = Path(runs_dir)
    folder = write_run(result, runs_dir / run_name(result), unique=True)
    link = runs_dir / "latest"
    tmp_link = runs_dir / f".latest.{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(folder.name)
    os.replace(tmp_link, link)
    return folder


def _in_float64(idata):
    """The tree with draws stored as float32 (``Config.stored_precision``) widened to float64, so a
    run read back computes its summaries as the fit did, from the stored values."""
    for group in DRAW_GROUPS:
        if group in idata.children:
            node = idata[group]
            narrow = {
                n: v.astype("float64") for n, v in node.data_vars.items() if v.dtype == "float32"
            }
            if narrow:
                node.dataset = node.to_dataset().assign(narrow)
    return idata


def load_run(folder: str | Path):
    """Read a run folder back into a :class:`model.FitResult`.

    Raises
    ------
    RunFolderError
        Naming every missing file, group or variable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{folder}: no such run folder")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise RunFolderError(
            f"{folder}: missing {', '.join(missing)}; expected a folder written by `python -m model fit`"
        )
    idata = _in_float64(xr.open_datatree(folder / "posterior.nc", engine="h5netcdf").load())
    problems = [f"group {g!r} missing" for g in REQUIRED_GROUPS if g not in idata.children]
    if "posterior" in idata.children:
        problems += [
            f"posterior variable {v!r} missing"
            for v in REQUIRED_VARIABLES
            if v not in idata.posterior
        ]
    if problems:
        raise RunFolderError(f"{folder / 'posterior.nc'}: " + "; ".join(problems))
    stored = json.loads((folder / "config.json").read_text())
    config = Config.from_dict(stored["config"], source=str(folder / "config.json"))
    # the config as stored, so a run written before a config field was added still loads
    if config_hash(stored["config"]) != idata.attrs.get("config_hash"):
        raise RunFolderError(
            f"{folder}: config.json (hash {config_hash(stored['config'])}) does not match posterior.nc "
            f"(hash {idata.attrs.get('config_hash')})"
        )
    polls = pd.read_csv(
        folder / "polls.csv",
        parse_dates=["field_start", "field_end"],
        keep_default_na=False,
        na_values={"n": [""], **{a: [""] for a in config.answers}},
    )
    polls = polls.drop(columns="n_known")
    if list(polls["poll_id"]) != [str(p) for p in idata.posterior_predictive["poll"].values]:
        raise RunFolderError(
            f"{folder}: polls.csv readings do not match the posterior's poll coordinate"
        )
    diagnostics = json.loads((folder / "diagnostics.json").read_text())
    for key in GATE_FIGURES:  # stored as null where not computable
        if key in diagnostics and diagnostics[key] is None:
            diagnostics[key] = float("nan")
    excluded_path = folder / "excluded.csv"
    excluded = (
        pd.read_csv(excluded_path, keep_default_na=False)
        if excluded_path.stat().st_size > 1
        else pd.DataFrame()
    )
    return FitResult(
        idata=idata,
        config=config,
        polls=polls,
        seed=int(stored["seed"]),
        excluded=excluded,
        phases=Phases(since="the run folder was read"),
        _diagnostics=diagnostics,
    )
