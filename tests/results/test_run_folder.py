"""The run folder's summary.txt ends with where the time went (fake fit, no sampling)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from model.results.run_folder import DRAW_GROUPS, SUMMARISING, WRITING, load_run, write_run
from model.results.text import readings_used
from tests.report.fakes import fake_result

FIT_PHASES = {
    "start-up and imports": 2.0,
    "reading the data and the design": 0.1,
    "loading the compiled model": 1.5,
    "sampling": 6.0,
    "predictive draws; log likelihood, log prior groups": 1.0,
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


def test_the_summary_says_how_many_readings_were_used_and_why_any_were_left_out(written):
    result = load_run(written)
    line = (
        f"Readings: {len(result.polls)} in the fit, from 2 pollsters; every reading of the table "
        "was used."
    )
    assert readings_used(result) == line and f"\n{line}\n" in (written / "summary.txt").read_text()
    reasons = ["question not in config.questions"] * 2 + ["flagged disputed (config.exclude_flags)"]
    left_out = dataclasses.replace(result, excluded=pd.DataFrame({"excluded_because": reasons}))
    assert readings_used(left_out) == (
        f"Readings: {len(result.polls)} in the fit, from 2 pollsters; 3 of the table left out "
        "(excluded.csv): question not in config.questions: 2; flagged disputed "
        "(config.exclude_flags): 1."
    )


def test_a_run_read_back_and_written_again_times_only_its_own_phases(written, tmp_path):
    again = write_run(load_run(written), tmp_path / "again")
    rows, total, last = phase_table((again / "summary.txt").read_text())
    assert list(rows) == [SUMMARISING, WRITING]
    # two rows and the total, each rounded to 0.1 s (see above)
    assert sum(rows.values()) <= total + 0.05 * (len(rows) + 1) + 1e-9
    assert "x sampling" not in last
    assert "since the run folder was read" in (again / "summary.txt").read_text()


def test_draws_stored_as_float32_halve_the_trace_and_are_read_back_as_float64(written, tmp_path):
    """``stored_precision = "float32"``: ``posterior.nc`` holds the draws of every draw group in
    float32, ``sample_stats`` and the data as they were; the run's tables are those of the draws
    as sampled; read back, the draws are float64 again, each the sampled value rounded to float32."""
    result = fake_result(stored_precision="float32")
    folder = write_run(result, tmp_path / "narrow")
    stored = xr.open_datatree(folder / "posterior.nc", engine="h5netcdf").load()
    back = load_run(folder)
    narrowed = 0
    for group in result.idata.children:
        for name, sampled in result.idata[group].data_vars.items():
            narrow = group in DRAW_GROUPS and sampled.dtype == "float64"
            narrowed += narrow
            assert stored[group][name].dtype == ("float32" if narrow else sampled.dtype), name
            assert back.idata[group][name].dtype == sampled.dtype, name
            if narrow:
                expected = sampled.values.astype("float32").astype("float64")
                np.testing.assert_array_equal(back.idata[group][name].values, expected)
            else:
                np.testing.assert_array_equal(back.idata[group][name].values, sampled.values)
    assert narrowed >= 10  # the posterior's variables, the predictive draws, both log densities
    # A float64 draw takes 8 bytes, a float32 draw 4; the other groups are small.
    size = (folder / "posterior.nc").stat().st_size
    assert size < 0.6 * (written / "posterior.nc").stat().st_size
    for table in ("curve.csv", "house_effects.csv", "offsets.csv", "headline.json"):
        assert (folder / table).read_text() == (written / table).read_text(), table
    # The curve computed again from the stored draws (as `make plots` does) agrees to float32's
    # precision.
    for again, sampled in (
        (back.support_curve(), result.support_curve()),
        (back.curve_wide(), result.curve_wide()),
    ):
        numbers = sampled.select_dtypes("number").columns
        assert list(again.columns) == list(sampled.columns) and len(numbers) >= 3
        np.testing.assert_allclose(again[numbers], sampled[numbers], rtol=1e-6)


def test_writing_the_trace_leaves_dask_distributed_unloaded_unless_it_was_loaded(tmp_path):
    """xarray imports ``distributed`` to ask whether a Dask client schedules the write; in a process
    that has not imported it, the run folder's writer hides it meanwhile. In fresh interpreters:
    the trace written with and without the hiding, with ``distributed`` imported before, and with
    a scheduler named in Dask's config (then Dask remembers for the process whether
    ``distributed`` imports, so nothing is hidden). The same file each way, and afterwards
    ``distributed`` imports and Dask finds it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, xarray as xr, dask, dask.base\n"
        "from model.results.run_folder import _unloaded_distributed_hidden\n"
        "how = sys.argv[1]\n"
        "if how == 'imported':\n"
        "    import distributed\n"
        "if how == 'scheduler set':\n"
        "    dask.config.set(scheduler='threads')\n"
        "rng = np.random.default_rng(0)\n"
        "post = xr.Dataset({'mu': (('chain', 'draw'), rng.normal(size=(2, 50)))})\n"
        "tree = xr.DataTree.from_dict({'posterior': post})\n"
        "path = sys.argv[2]\n"
        "if how == 'as is':\n"
        "    tree.to_netcdf(path, engine='h5netcdf')\n"
        "else:\n"
        "    with _unloaded_distributed_hidden():\n"
        "        tree.to_netcdf(path, engine='h5netcdf')\n"
        "loaded = 'distributed' in sys.modules\n"
        "from dask.distributed import Client\n"
        "assert dask.base._distributed_available()\n"
        "back = xr.open_datatree(path, engine='h5netcdf')\n"
        "np.testing.assert_array_equal(back['posterior']['mu'].values, post['mu'].values)\n"
        "print(loaded)\n"
    )
    loaded = {}
    for how in ("hidden", "as is", "imported", "scheduler set"):
        path = tmp_path / f"{how.replace(' ', '_')}.nc"
        done = subprocess.run(
            [sys.executable, "-c", code, how, str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        loaded[how] = done.stdout.split()[-1]
    assert loaded == {
        "hidden": "False",
        "as is": "True",
        "imported": "True",
        "scheduler set": "True",
    }


def test_a_figure_that_could_not_be_computed_is_read_back_as_nan(tmp_path):
    """diagnostics.json stores a NaN R-hat as null: read back, it is NaN again, and the summary
    and the report of the run are written from it."""
    result = fake_result()
    failures = ["R-hat could not be computed for any quantity"]
    diagnostics = {**result.diagnostics(), "max_rhat": float("nan"), "failures": failures}
    folder = write_run(dataclasses.replace(result, _diagnostics=diagnostics), tmp_path / "run")
    assert '"max_rhat": null' in (folder / "diagnostics.json").read_text()
    again = load_run(folder)
    assert np.isnan(again.diagnostics()["max_rhat"])
    assert "max R-hat nan" in again.summary_text()
    from model.report import html

    assert "nan (" in html.build_report(again, {}, run_id="run", sourced=None)
