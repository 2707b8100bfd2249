"""Command line: ``python -m model {data,fit,compile,plots,validate,bench} ...``.

Exit status: 0 success (for ``fit``: a run that passed the diagnostics gate); 1 bad input (a
poll-table, config or run-folder error, reported on stderr without a traceback; nothing is
written); 3 a fit whose diagnostics gate failed (the run folder is still written, marked failed);
4 a validate run in which some refits failed (the folder is written with the others' results and
``failures.csv``), or a bench run in which some fits failed (recorded in ``repeats.csv``); 130
interrupted (Ctrl-C or SIGTERM; no partial run folder is left).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_GATE_FAILED = 3
EXIT_TASKS_FAILED = 4
#: SBC datasets when ``validate`` is run with neither ``--backtest`` nor ``--sbc``.
DEFAULT_SBC = 200
EXIT_INTERRUPTED = 130
#: The project's own table and config, relative to the working directory (``make fit`` passes both).
PROJECT_DATA = Path("data/polls.csv")
PROJECT_CONFIG = Path("config/fit.toml")
PROJECT_SOURCED = Path("data/readings_sourced.csv")
PROJECT_QUESTIONS = Path("data/questions.csv")
#: The run ``plots`` draws by default.
DEFAULT_RUN = Path("runs/latest")
#: The curve with one row per date, written by ``plots`` into the run folder for charting tools.
CURVE_WIDE_NAME = "curve_wide.csv"


def _count(text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
    return value


def _folder(text: str) -> Path:
    """A folder to write into: refused when something other than a folder is there already (told
    before any sampling, not when the results are written)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    return path


def _day(text: str) -> str:
    """An ISO date (YYYY-MM-DD), as given."""
    from model.config import is_iso_day

    if not is_iso_day(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    return text


class _Parser(argparse.ArgumentParser):
    """Usage errors are bad input too: exit status 1 (argparse's own default is 2)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from model.bench import REFERENCE_LADDER
    from model.config import CANDIDATES

    parser = _Parser(prog="python -m model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser(
        "data", help="derive data/polls.csv and data/questions.csv from the sourced table"
    )
    data.add_argument(
        "--sourced",
        type=Path,
        default=PROJECT_SOURCED,
        help=f"the sourced readings to derive the table from (default {PROJECT_SOURCED})",
    )
    data.add_argument(
        "--out-dir",
        type=_folder,
        default=Path("data"),
        help="folder to write polls.csv and questions.csv into (default data)",
    )

    fit = sub.add_parser(
        "fit",
        help="fit the model and write a run folder",
        description=(
            "Inside the project (where config/fit.toml exists) a fit of the project's data/polls.csv uses "
            "config/fit.toml unless --config says otherwise; any other table gets the library defaults."
        ),
    )
    _add_run_options(fit, runs_help="where run folders go", sampled="")
    fit.add_argument(
        "--through",
        metavar="DATE|today",
        help="run the curve through this date (YYYY-MM-DD or 'today'), projected past the last reading (overrides the config)",
    )

    comp = sub.add_parser(
        "compile",
        help="compile everything a fit of the table runs, without fitting (make install runs it on the shipped data)",
        description="Later fits of the same model structure (the same config, more or fewer readings) load the compiled code.",
    )
    comp.add_argument(
        "--data",
        type=Path,
        default=PROJECT_DATA,
        help=f"poll table (default: {PROJECT_DATA})",
    )
    comp.add_argument(
        "--config",
        type=Path,
        help=f"TOML config (default: {PROJECT_CONFIG} with the project's {PROJECT_DATA} when it exists, else the library defaults)",
    )

    plots = sub.add_parser(
        "plots",
        help="draw a run's figures (RUN_FOLDER/figures/) and write RUN_FOLDER/report.html",
        description="Writes RUN_FOLDER/figures/ (support_curve.png and .svg, adjusted, house_effects, question_effects, rank, energy, ppc, and headline.png and .svg, a 1200x675 chart for an article), RUN_FOLDER/curve_wide.csv (the curve, one row per date, for charting tools) and RUN_FOLDER/report.html (with an interactive chart), writes RUN_FOLDER/summary.txt again so that it quotes the backtest the report quotes (its phases kept), then prints the paths written.",
    )
    plots.add_argument(
        "run_folder",
        nargs="?",
        type=Path,
        default=DEFAULT_RUN,
        help=f"run folder (default: {DEFAULT_RUN})",
    )
    plots.add_argument(
        "--answer",
        help="draw the support curve and adjusted readings for this answer only (e.g. talks)",
    )
    plots.add_argument(
        "--questions",
        type=Path,
        default=PROJECT_QUESTIONS,
        help=f"question codebook giving each question's family, wording and what its answers count as (default: {PROJECT_QUESTIONS}; if missing, question ids are used)",
    )
    plots.add_argument(
        "--sourced",
        type=Path,
        default=PROJECT_SOURCED,
        help=f"sourced table giving each reading's source links (default: {PROJECT_SOURCED}; if missing, no links)",
    )

    defaults = _validate_defaults()
    val = sub.add_parser(
        "validate",
        help="backtest against baselines and simulation-based calibration, refits on Dask",
        description=f"With neither --backtest nor --sbc, runs both (--sbc {DEFAULT_SBC}).",
    )
    val.add_argument("--backtest", action="store_true", help="run the leave-future-out backtest")
    val.add_argument(
        "--sbc",
        type=lambda t: _count(t, minimum=0),
        metavar="N",
        help="simulation-based calibration with N prior datasets",
    )
    val.add_argument(
        "--scheduler",
        help="address of an existing Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else a local cluster)",
    )
    val.add_argument(
        "--workers",
        type=lambda t: _count(t, minimum=1),
        default=defaults.workers,
        help="local Dask workers (default: %(default)s)",
    )
    val.add_argument(
        "--cores-per-task",
        type=lambda t: _count(t, minimum=1),
        help="chains each refit runs in parallel (default: cores / workers; on an existing "
        "cluster, each machine's cores over its workers' threads, the least over the machines)",
    )
    val.add_argument(
        "--since",
        type=_day,
        default=defaults.since,
        help="first backtest target's field start (default: %(default)s)",
    )
    val.add_argument(
        "--candidates",
        nargs="+",
        default=[],
        choices=sorted(CANDIDATES),
        help="model candidates to backtest beside the model (each adds one refit per training set)",
    )
    val.add_argument(
        "--horizons",
        nargs="+",
        type=lambda t: _count(t, minimum=0),
        default=list(defaults.horizons),
        metavar="MONTHS",
        help="months between each target's cut-off and its field start (default: %(default)s)",
    )
    _add_run_options(
        val,
        runs_help="where the validate-<timestamp> folder goes",
        sampled=" of each backtest refit",
    )
    val.add_argument(
        "--sbc-draws",
        type=lambda t: _count(t, minimum=1),
        help="kept draws per chain of each SBC refit (default: the config's, as the fit samples; "
        "when given, no longer attempt is made)",
    )
    val.add_argument(
        "--sbc-tune",
        type=lambda t: _count(t, minimum=0),
        help="warm-up draws per chain of each SBC refit (default: the config's)",
    )

    bench = sub.add_parser(
        "bench",
        help="time the project's fit against the NumPyro reference on the shipped data and simulated tables",
        description="Each fit runs in a fresh process; the reference runs at NUTS's defaults, then at higher target acceptance until it passes the diagnostics gate in every repeat; writes runs/bench-<timestamp>/ (results.csv, repeats.csv, ratios.csv, scaling.csv, time_vs_size.png).",
    )
    bench.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help="cases to run, e.g. shipped sim-r100-h8-week 'sim-r1000-*' (default: all)",
    )
    bench.add_argument("--list", action="store_true", help="list the cases and exit")
    bench.add_argument(
        "--implementations",
        nargs="+",
        choices=["project", "reference"],
        default=["project", "reference"],
        help="which fits to run (default: both; ratios need both)",
    )
    bench.add_argument(
        "--repeats",
        type=lambda t: _count(t, minimum=1),
        default=3,
        help="fits per case, implementation and setting (default: %(default)s)",
    )
    bench.add_argument(
        "--reference-ladder",
        nargs="+",
        type=float,
        metavar="TARGET_ACCEPT",
        default=list(REFERENCE_LADDER),
        help="the reference's target acceptances, from NUTS's default 0.8 up, tried in turn until "
        "one passes the diagnostics gate in every repeat (default: %(default)s; 0.8 alone: the "
        "defaults only)",
    )
    _add_run_options(
        bench,
        runs_help="where the bench-<timestamp> folder goes",
        sampled=" of every fit",
        seed_default="0, so that benches compare; repeat r of a case uses the seed plus r",
    )
    return parser


def _add_run_options(
    parser: argparse.ArgumentParser,
    *,
    runs_help: str,
    sampled: str,
    seed_default: str = "drawn and recorded",
) -> None:
    """Data, config, runs folder, sampler overrides and seed: shared by ``fit``, ``validate`` and
    ``bench`` (``seed_default``: what the seed is when not given, in the help)."""
    parser.add_argument(
        "--data",
        type=Path,
        default=PROJECT_DATA,
        help=f"poll table (default: {PROJECT_DATA})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"TOML config (default: {PROJECT_CONFIG} with the project's {PROJECT_DATA} when it exists, else the library defaults)",
    )
    parser.add_argument(
        "--runs-dir", type=_folder, default=Path("runs"), help=f"{runs_help} (default: runs)"
    )
    parser.add_argument(
        "--draws",
        type=lambda t: _count(t, minimum=1),
        help=f"kept draws per chain{sampled} (overrides the config, and then no longer attempt is made: retry_draws)",
    )
    parser.add_argument(
        "--tune",
        type=lambda t: _count(t, minimum=0),
        help=f"warm-up draws per chain{sampled} (overrides the config)",
    )
    parser.add_argument(
        "--chains",
        type=lambda t: _count(t, minimum=1),
        help=f"number of chains{sampled} (overrides the config)",
    )
    parser.add_argument(
        "--seed",
        type=lambda t: _count(t, minimum=0),
        help=f"random seed, a whole number >= 0 (default: {seed_default})",
    )


def _validate_defaults():
    from model.config import ValidateSettings

    return ValidateSettings()


def _sampler_overrides(args: argparse.Namespace, prefix: str = "") -> dict[str, int | None]:
    """``--draws``, ``--tune``, ``--chains`` where given (with ``prefix="sbc_"``: ``--sbc-draws``
    and ``--sbc-tune``); with draws given, no longer attempt (``retry_draws``): a run asked for so
    many draws samples that many."""
    overrides: dict[str, int | None] = {}
    for name in ("draws", "tune", "chains"):
        if (value := getattr(args, prefix + name, None)) is not None:
            overrides[name] = value
    if "draws" in overrides:
        overrides["retry_draws"] = None
    return overrides


def config_path(args: argparse.Namespace) -> tuple[Path | None, str]:
    """The config file a command uses, and why, in words.

    ``--config`` when given; else, inside the project (``config/fit.toml`` exists) and on the
    project's own table (``--data`` left at ``data/polls.csv``), the project's config, which was
    written for that table; else none (the library defaults, generic for any table).
    """
    if args.config:
        return args.config, f"config {args.config}"
    if Path(args.data).resolve() == PROJECT_DATA.resolve() and PROJECT_CONFIG.is_file():
        return (
            PROJECT_CONFIG,
            f"config {PROJECT_CONFIG} (the project's, for its data; --config FILE to choose another)",
        )
    return None, "config: the library defaults (model.Config(); --config FILE to choose one)"


def _config(
    args: argparse.Namespace, *, with_sampler_overrides: bool = False, announce: bool = False
):
    """The config (:func:`config_path`), with the sampler overrides applied if asked."""
    from model.config import Config

    path, why = config_path(args)
    if announce:
        print(f"data {args.data}; {why}", flush=True)
    config = Config.from_toml(path) if path else Config()
    overrides = _sampler_overrides(args) if with_sampler_overrides else {}
    return config.replace(sampler=overrides) if overrides else config


#: The signals (SIGINT, SIGTERM) received while a command runs. The handler raises
#: KeyboardInterrupt where Python happens to be, which is not always where it can stop: inside a
#: compiled function (numba's, say) it comes back as another error that it caused, and in a
#: finaliser or a callback it is printed and dropped. What was received is kept here, so that the
#: command is still answered as interrupted (:func:`_interrupted`) and writes no run folder.
_SIGNALLED: list[int] = []


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupted(err: BaseException | None = None) -> bool:
    """Whether the command was interrupted: a signal was received, or ``err`` is, or was caused
    by, a KeyboardInterrupt."""
    seen: set[int] = set()
    chain = [err] if err is not None else []
    while chain:  # the causes and contexts, each once (a chain can loop)
        link = chain.pop()
        if link is None or id(link) in seen:
            continue
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        chain += [link.__cause__, link.__context__]
    return bool(_SIGNALLED)


def _stop_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a signal was received, even one whose exception was dropped:
    called before a run folder is written."""
    if _SIGNALLED:
        raise KeyboardInterrupt(f"signal {_SIGNALLED[0]}")


def _fit(args: argparse.Namespace) -> int:
    from model.timing import READING, STARTUP, Phases

    phases = Phases.from_process_start()  # summary.txt ends with where the time went
    from model.data.polls import load_polls

    phases.mark(STARTUP)
    # The table and config first: bad input is told before PyMC and the rest are imported.
    with phases.phase(READING):
        config = _config(args, with_sampler_overrides=True, announce=True)
        if args.through is not None:
            config = config.replace(through=args.through)
        polls = load_polls(args.data, answers=config.answers)
    from model.fitting import fit
    from model.results.run_folder import save_run

    phases.mark(STARTUP)
    result = fit(polls, config=config, seed=args.seed, phases=phases)
    _stop_if_interrupted()
    folder = save_run(result, args.runs_dir)
    print((folder / "summary.txt").read_text(), end="")  # written by save_run: not summarised twice
    print(folder)
    return EXIT_OK if result.passed else EXIT_GATE_FAILED


def _compile(args: argparse.Namespace) -> int:
    from model.data.polls import load_polls

    config = _config(args, announce=True)
    polls = load_polls(args.data, answers=config.answers)  # bad input told before PyMC's import
    from model.fitting import compile_fit

    done = compile_fit(polls, config=config)
    found = "found in the cache" if done["callbacks"] == "hit" else "compiled"
    print(f"model for {args.data} ready in {done['seconds']:.1f} s (sampler callbacks {found})")
    return EXIT_OK


def _plots(args: argparse.Namespace) -> int:
    """Draw the figures and the report of ``args.run_folder``; return the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model.config import ConfigError
    from model.files import atomic_write_text
    from model.report import html, plots
    from model.results import RunFolderError
    from model.results.run_folder import backtest_for, load_run, rewrite_summary

    folder = Path(args.run_folder)
    try:
        result = load_run(folder)
    except (RunFolderError, ConfigError):
        raise
    except (OSError, ValueError, KeyError) as err:
        raise RunFolderError(
            f"{folder}: cannot read the run folder ({type(err).__name__}: {err})"
        ) from None
    if args.answer is not None and args.answer not in result.config.answers:
        raise ConfigError(
            f"--answer {args.answer!r} is not one of the run's answers {list(result.config.answers)}"
        )
    questions = args.questions if Path(args.questions).is_file() else None
    if questions is None:
        print(
            f"note: {args.questions} not found; question ids stand in for question families",
            file=sys.stderr,
        )
    sourced = args.sourced if Path(args.sourced).is_file() else None
    if sourced is None:
        print(
            f"note: {args.sourced} not found; the report lists source rows without links",
            file=sys.stderr,
        )

    # Both read before anything is written: a codebook or sourced table that does not read as
    # one stops the command here (the report reads them again where it uses them).
    plots.question_families(questions)
    html.load_sources(sourced)

    run_id = folder.resolve().name
    figures = plots.make_figures(result, answer=args.answer, questions=questions, run_id=run_id)
    article = None  # the chart for an article (figures/headline.png, .svg), not in the report
    try:
        article = plots.plot_headline(result, run_id=run_id)
        written = plots.save_figures(figures, folder / "figures")
        pngs = {path.stem: path.read_bytes() for path in written if path.suffix == ".png"}
        written += plots.save_headline(article, folder / "figures")
        wide = result.curve_wide().to_csv(index=False, float_format="%.2f", date_format="%Y-%m-%d")
        written.append(atomic_write_text(folder / CURVE_WIDE_NAME, wide))
        calibration = backtest_for(result, folder.resolve().parent)  # report and summary
        written.append(
            html.write_report(
                result,
                folder,
                figures=pngs,
                run_id=run_id,
                sourced=sourced,
                questions=questions,
                calibration=calibration,
            )
        )
        written.append(rewrite_summary(result, folder, calibration))
    finally:
        for fig in [*figures.values(), article]:
            if fig is not None:
                plt.close(fig)
    for path in written:
        print(path)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    import dataclasses
    import importlib

    import numpy as np

    from model.config import ValidateSettings
    from model.data.polls import load_polls
    from model.validation.runner import run_validation, summary_text, write_validation

    # What write_validation imports, before the refits: a run of most of an hour must not fail at
    # its last step on an import (a broken plotting install, or modules edited during the run).
    importlib.import_module("model.validation.plots")
    config = _config(args)
    polls = load_polls(args.data, answers=config.answers)
    both = not args.backtest and args.sbc is None
    settings = ValidateSettings(
        backtest=args.backtest or both,
        since=args.since,
        horizons=tuple(sorted(set(args.horizons))),
        candidates=tuple(args.candidates),
        sbc=DEFAULT_SBC if both else (args.sbc or 0),
        sampler=dataclasses.replace(config.sampler, **_sampler_overrides(args)),
        sbc_sampler=dataclasses.replace(config.sampler, **_sampler_overrides(args, "sbc_")),
        seed=args.seed
        if args.seed is not None
        else int(np.random.SeedSequence().generate_state(1)[0]),
        workers=args.workers,
        scheduler=args.scheduler,
        cores_per_task=args.cores_per_task,
    )
    validation = run_validation(polls, config, settings)
    _stop_if_interrupted()
    folder = write_validation(validation, args.runs_dir)
    print(summary_text(validation))
    print(folder)
    return EXIT_TASKS_FAILED if len(validation.failures) else EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from model.bench.runner import run_bench, select_cases, summary_text, write_bench

    cases = select_cases(args.cases)
    if args.list:
        for case in cases:
            print(case.name)
        return EXIT_OK
    config = _config(args, with_sampler_overrides=True)
    if any(c.name == "shipped" for c in cases):
        from model.data.polls import load_polls

        load_polls(args.data, answers=config.answers)  # bad input fails here, before any fit
    bench = run_bench(
        cases,
        data=args.data,
        config=config,
        repeats=args.repeats,
        seed=args.seed or 0,
        log=lambda m: print(m, flush=True),
        implementations=args.implementations,
        reference_ladder=args.reference_ladder,
    )
    _stop_if_interrupted()
    folder = write_bench(bench, args.runs_dir)
    print(summary_text(bench))
    print(folder)
    return EXIT_TASKS_FAILED if (bench.fits["error"] != "").any() else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    # Parsed first: --help and usage errors answer before anything heavy is imported.
    args = _parser().parse_args(argv)
    from model.config import ConfigError
    from model.data.polls import PollDataError
    from model.results import RunFolderError
    from model.sampling import SamplingError

    _SIGNALLED.clear()
    # A signal the process was started ignoring (SIGINT in a background job) stays ignored.
    previous = {
        s: signal.signal(s, _raise_interrupt)
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not signal.SIG_IGN
    }
    try:
        if args.command == "data":
            from model.data.build import build

            for path in build(args.sourced, args.out_dir):
                print(path)
            return EXIT_OK
        if args.command == "fit":
            return _fit(args)
        if args.command == "compile":
            return _compile(args)
        if args.command == "plots":
            return _plots(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "bench":
            return _bench(args)
    except (KeyboardInterrupt, Exception) as err:
        if _interrupted(err):  # also an error the interrupt caused, or one after it was dropped
            print("interrupted: nothing was written", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(err, (PollDataError, ConfigError, RunFolderError, SamplingError)):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    finally:
        for s, handler in previous.items():  # None: a handler not set from Python
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        _SIGNALLED.clear()
    raise AssertionError(f"unhandled command {args.command!r}")
