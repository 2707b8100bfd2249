"""``python -m model plots [RUN_FOLDER]``: draw a run's figures and write its ``report.html``.

Writes ``RUN_FOLDER/figures/`` (``support_curve.png`` and ``.svg``, ``adjusted.png``,
``house_effects.png``, ``question_effects.png``, ``rank.png``, ``energy.png``, ``ppc.png``) and
``RUN_FOLDER/report.html``, then prints the paths written. Exit status 0 on success, 1 when the run
folder is missing or broken or an option is invalid (a one-line message on stderr, nothing written).

Wire it into :mod:`model.cli` with ``add_parser(subparsers)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 1

DEFAULT_RUN = Path("runs/latest")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``plots`` subcommand to an ``argparse`` subparsers object; return its parser."""
    parser = subparsers.add_parser(
        "plots",
        help="draw a run's figures (RUN_FOLDER/figures/) and write RUN_FOLDER/report.html",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("run_folder", nargs="?", type=Path, default=DEFAULT_RUN, help=f"run folder (default: {DEFAULT_RUN})")
    parser.add_argument("--answer", help="draw the support curve and adjusted readings for this answer only (e.g. talks)")
    parser.add_argument(
        "--questions",
        type=Path,
        default=Path("data/questions.csv"),
        help="question codebook giving each question's family (default: data/questions.csv; if missing, question ids are used)",
    )
    parser.add_argument(
        "--sourced",
        type=Path,
        default=Path("data/readings_sourced.csv"),
        help="sourced table giving each reading's source links (default: data/readings_sourced.csv; if missing, no links)",
    )
    return parser


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run(args: argparse.Namespace) -> int:
    """Draw the figures and the report of ``args.run_folder``; return the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model import plots, report
    from model.config import ConfigError
    from model.runs import RunFolderError, load_run

    folder = Path(args.run_folder)
    try:
        result = load_run(folder)
    except (RunFolderError, ConfigError) as err:
        return _error(str(err))
    except (OSError, ValueError, KeyError) as err:
        return _error(f"{folder}: cannot read the run folder ({type(err).__name__}: {err})")
    if args.answer is not None and args.answer not in result.config.answers:
        return _error(f"--answer {args.answer!r} is not one of the run's answers {list(result.config.answers)}")
    if not Path(args.questions).is_file():
        print(f"note: {args.questions} not found; question ids stand in for question families", file=sys.stderr)
    if not Path(args.sourced).is_file():
        print(f"note: {args.sourced} not found; the report lists source rows without links", file=sys.stderr)

    run_id = folder.resolve().name
    figures = plots.make_figures(result, answer=args.answer, questions=args.questions, run_id=run_id)
    try:
        written = plots.save_figures(figures, folder / "figures")
        pngs = {path.stem: path.read_bytes() for path in written if path.suffix == ".png"}
        written.append(report.write_report(result, folder, figures=pngs, run_id=run_id, sourced=args.sourced))
    finally:
        for fig in figures.values():
            plt.close(fig)
    for path in written:
        print(path)
    return EXIT_OK
