"""Command line: ``python -m model {data,fit} ...``.

Exit status: 0 success (and, for ``fit``, a run that passed the diagnostics gate), 1 bad input
(a :class:`model.PollDataError` or a bad config, reported on stderr without a traceback, nothing
written), 3 a fit whose diagnostics gate failed (the run folder is still written, marked failed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_GATE_FAILED = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="derive data/polls.csv and data/questions.csv from the sourced table")
    data.add_argument("--sourced", type=Path, default=Path("data/readings_sourced.csv"))
    data.add_argument("--out-dir", type=Path, default=Path("data"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from model.polls import PollDataError

    args = _parser().parse_args(argv)
    try:
        if args.command == "data":
            from model.build_data import build

            written = build(args.sourced, args.out_dir)
            for path in written:
                print(path)
            return EXIT_OK
    except PollDataError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    raise AssertionError(f"unhandled command {args.command!r}")
