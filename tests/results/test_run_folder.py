"""The run folder's summary.txt ends with where the time went (fake fit, no sampling)."""

from __future__ import annotations

import re

import pytest

from model.results.run_folder import SUMMARISING, WRITING, load_run, write_run
from tests.report.fakes import fake_result

FIT_PHASES = {
    "start-up and imports": 2.0,
    "reading the data and the design": 0.1,
    "loading the compiled model": 1.5,
    "sampling": 6.0,
    "log likelihood, predictive draws, log prior": 1.0,
}


def phase_table(summary: str) -> tuple[dict[str, float], float, str]:
    """The phase rows, the total and the total's line, parsed from the end of ``summary.txt``."""
    head, _, table = summary.partition("Where the time went")
    assert table, "summary.txt has no phase table"
    assert head.endswith("\n\n")  # one blank line after the summary
    lines = table.rstrip("\n").splitlines()[1:]
    # the work done in other threads, named under the total (model.timing.Phases.alongside)
    lines = [line for line in lines if not line.startswith("  Alongside the phases, ")]
    rows = {}
    for line in lines:
        match = re.fullmatch(r"  (\S.*?)\s+(\d+\.\d)(  \(.*\))?", line)
        assert match, line
        rows[match[1]] = float(match[2])
    total = rows.pop("total")
    return rows, total, lines[-1]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A fake fit with the fit's phases recorded (as model.fit records them), written once."""
    result = fake_result()
    result.phases.start -= sum(FIT_PHASES.values())  # the fit's phases ran before it was written
    for name, seconds in FIT_PHASES.items():
        result.phases.add(name, seconds)
    result.phases.alongside("the gate's R-hat and ESS, from the end of sampling")
    return write_run(result, tmp_path_factory.mktemp("runs") / "run")


def test_summary_ends_with_every_phase_in_order_and_the_total(written):
    summary = (written / "summary.txt").read_text()
    rows, total, last = phase_table(summary)
    assert list(rows) == [*FIT_PHASES, SUMMARISING, WRITING]
    assert summary.endswith(
        "\n  Alongside the phases, in other threads: the gate's R-hat and ESS, from the end of sampling.\n"
    )
    assert all(seconds >= 0 for seconds in rows.values())
    # each row and the total are rounded to 0.1 s: the rows may exceed the total by that rounding
    # only (up to 0.05 s each, and the total's own 0.05 s)
    assert sum(rows.values()) <= total + 0.05 * (len(rows) + 1) + 1e-9
    # the ratio is of the unrounded seconds: within the rows' rounding of the rounded ones
    ratio = float(re.search(r"\(([0-9.]+) x sampling\)$", last)[1])
    sampling = rows["sampling"]
    assert (
        (total - 0.05) / (sampling + 0.05) - 0.05
        <= ratio
        <= (total + 0.05) / (sampling - 0.05) + 0.05
    )


def test_the_summary_before_the_table_is_the_fits_summary(written):
    summary = (written / "summary.txt").read_text()
    assert summary.partition("\n\nWhere the time went")[0] == load_run(written).summary_text()


def test_a_run_read_back_and_written_again_times_only_its_own_phases(written, tmp_path):
    again = write_run(load_run(written), tmp_path / "again")
    rows, total, last = phase_table((again / "summary.txt").read_text())
    assert list(rows) == [SUMMARISING, WRITING]
    # two rows and the total, each rounded to 0.1 s (see above)
    assert sum(rows.values()) <= total + 0.05 * (len(rows) + 1) + 1e-9
    assert "x sampling" not in last
    assert "since the run folder was read" in (again / "summary.txt").read_text()
