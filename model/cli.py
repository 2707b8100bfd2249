"""Command line: ``python -m model {data,fit,plots} ...``.

Exit status: 0 success (for ``fit``: a run that passed the diagnostics gate); 1 bad input (a
poll-table, config or run-folder error, reported on stderr without a traceback; nothing is
written); 3 a fit whose diagnostics gate failed (the run folder is still written, marked failed);
130 interrupted (Ctrl-C or SIGTERM; no partial run folder is left).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from model import plots_cli

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_GATE_FAILED = 3
EXIT_INTERRUPTED = 130


def _count(text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors are bad input too: exit status 1 (argparse's own default is 2)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="derive data/polls.csv and data/questions.csv from the sourced table")
    data.add_argument("--sourced", type=Path, default=Path("data/readings_sourced.csv"))
    data.add_argument("--out-dir", type=Path, default=Path("data"))

    fit = sub.add_parser("fit", help="fit the model and write a run folder")
    fit.add_argument("--data", type=Path, default=Path("data/polls.csv"), help="poll table (default: data/polls.csv)")
    fit.add_argument("--config", type=Path, help="TOML config (default: the library defaults)")
    fit.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    fit.add_argument("--draws", type=lambda t: _count(t, minimum=1), help="kept draws per chain (overrides the config)")
    fit.add_argument("--tune", type=lambda t: _count(t, minimum=0), help="warm-up draws per chain (overrides the config)")
    fit.add_argument("--chains", type=lambda t: _count(t, minimum=1), help="number of chains (overrides the config)")
    fit.add_argument("--seed", type=lambda t: _count(t, minimum=0), help="random seed, a whole number >= 0 (default: drawn and recorded)")

    plots_cli.add_parser(sub)
    return parser


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def _fit(args: argparse.Namespace) -> int:
    from model.config import Config
    from model.fitting import fit
    from model.polls import load_polls
    from model.runs import save_run

    config = Config.from_toml(args.config) if args.config else Config()
    overrides = {k: getattr(args, k) for k in ("draws", "tune", "chains") if getattr(args, k) is not None}
    if overrides:
        config = config.replace(sampler=overrides)
    polls = load_polls(args.data, answers=config.answers)
    result = fit(polls, config=config, seed=args.seed)
    folder = save_run(result, args.runs_dir)
    print((folder / "summary.txt").read_text(), end="")  # written by save_run: not summarised twice
    print(folder)
    return EXIT_OK if result.passed else EXIT_GATE_FAILED


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from model.config import ConfigError
    from model.polls import PollDataError
    from model.runs import RunFolderError

    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if args.command == "data":
            from model.build_data import build

            for path in build(args.sourced, args.out_dir):
                print(path)
            return EXIT_OK
        if args.command == "fit":
            return _fit(args)
        if args.command == "plots":
            return plots_cli.run(args)
    except (PollDataError, ConfigError, RunFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise AssertionError(f"unhandled command {args.command!r}")
