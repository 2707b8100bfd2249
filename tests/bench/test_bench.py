"""``make bench`` (model/bench/runner.py): cases, the reference's ladder of target acceptance, the
tables it writes, and the CLI. No sampling here: fake runners stand in for the fits.

That the bench's two timed fits (``fit_project``, ``fit_reference_timed``) sample the same
posterior, and that their figures are filled in, is checked in tests/bench/test_reference.py.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import model
from model.aggregator.design import build_design
from model.bench import runner as bench
from model.cli import EXIT_BAD_INPUT, main
from model.config import ConfigError
from model.sampling.compiled import CACHE_TAG_ENV


def test_cases_cover_the_sizes_the_issue_asks_for():
    names = [c.name for c in bench.all_cases()]
    assert names[0] == "shipped"
    assert {c.readings for c in bench.all_cases()[1:]} == {100, 1000, 10000}
    assert {c.houses for c in bench.all_cases()[1:]} == {8, 40}
    assert {c.grid for c in bench.all_cases()[1:]} == {"week", "day"}
    assert len(names) == len(set(names)) == 13


def test_select_cases_by_name_and_prefix_in_a_fixed_order():
    chosen = bench.select_cases(["sim-r1000-h8-day", "shipped", "sim-r100-*"])
    assert [c.name for c in chosen] == [
        "shipped",
        "sim-r100-h8-week",
        "sim-r100-h8-day",
        "sim-r100-h40-week",
        "sim-r100-h40-day",
        "sim-r1000-h8-day",
    ]
    with pytest.raises(
        ConfigError, match="'sim-r5-h8-week' is not one of: shipped, sim-r100-h8-week"
    ):
        bench.select_cases(["sim-r5-h8-week"])


@pytest.mark.parametrize("grid, cells", [("week", 210), ("day", 1461)])
def test_simulated_case_spans_four_years_on_its_grid(grid, cells):
    case = bench.BenchCase.simulated(100, 8, grid)
    config = model.Config(sampler=model.Sampler(draws=123, tune=45, chains=3))
    polls, case_config = bench.case_table(case, "unused.csv", config)
    design = build_design(polls, case_config)
    # One survey per house, question and field period: a few of the 100 draws may merge.
    assert 95 <= len(design.polls) <= 100
    assert len(design.pollsters) == 8 and case_config.grid == grid
    assert (
        0.95 * cells <= len(design.time) <= cells
    )  # the grid spans the readings, nearly four years
    assert case_config.sampler == config.sampler  # the sampler settings come from the run's config
    again, _ = bench.case_table(case, "unused.csv", config)
    pd.testing.assert_frame_equal(polls, again)  # the same table every run


def test_shipped_case_is_the_data_with_its_config(tmp_path):
    config = model.Config.from_toml("config/fit.toml")
    polls, case_config = bench.case_table(bench.BenchCase("shipped"), "data/polls.csv", config)
    # the config as given, but ending with the last reading: the case does not change with the day it runs
    assert config.through == "today" and case_config == config.replace(through=None)
    assert len(polls) == len(model.load_polls("data/polls.csv", answers=config.answers))


def _fit_row(case, implementation, repeat, readings, wall, ess, *, error="", passed=True):
    row = {"case": case, "implementation": implementation, "repeat": repeat, "error": error}
    if error:
        return row
    return row | {
        "readings": readings,
        "grid_cells": 210,
        "houses": 8,
        "grid": "week",
        "compile_s": wall / 4,
        "sample_s": 3 * wall / 4,
        "wall_s": wall,
        "min_ess_bulk": ess,
        "min_ess_tail": ess + 10,
        "ess_per_s": ess / wall,
        "divergences": 0 if passed else 12,
        "max_rhat": 1.003,
        "min_bfmi": 0.9,
        "peak_mem_mb": 500.0,
        "gate_passed": passed,
        "gate_failures": "" if passed else "12 divergent transitions (expected none)",
        "draws": 100,
        "tune": 100,
        "chains": 2,
        "note": "",
        "compile_cache": ("miss" if repeat == 0 else "hit") if implementation == "project" else "",
    }


def _fake_runner(walls):
    """A runner that returns made-up figures: wall time = c * readings ** b per implementation."""

    def runner(job):
        case = bench.BenchCase(**job["case"])
        readings = case.readings or 70
        coefficient, exponent = walls[job["implementation"]]
        wall = coefficient * readings**exponent * (1 + 0.01 * job["repeat"])
        if (
            case.name == "sim-r1000-h8-week"
            and job["implementation"] == "reference"
            and job["repeat"] == 1
            and job.get("target_accept") is None  # at the reference's defaults
        ):
            return _fit_row(
                case.name,
                job["implementation"],
                job["repeat"],
                0,
                0,
                0,
                error="RuntimeError: out of memory",
            )
        return _fit_row(case.name, job["implementation"], job["repeat"], readings, wall, 800.0)

    return runner


def test_run_bench_alternates_summarises_and_fits_the_exponent():
    cases = bench.select_cases(
        ["shipped", "sim-r100-h8-week", "sim-r1000-h8-week", "sim-r10000-h8-week"]
    )
    order = []
    runner = _fake_runner({"project": (0.01, 1.0), "reference": (0.02, 1.5)})

    tags = set()

    def recording(job):
        order.append((job["case"]["name"], job["implementation"], job["repeat"], job["seed"]))
        tags.add(os.environ.get(CACHE_TAG_ENV))
        return runner(job)

    before = os.environ.get(CACHE_TAG_ENV)

    result = bench.run_bench(
        cases,
        data="data/polls.csv",
        config=model.Config(),
        repeats=3,
        seed=7,
        log=lambda m: None,
        runner=recording,
    )
    assert order[:6] == [
        ("shipped", "project", 0, 7),
        ("shipped", "reference", 0, 7),
        ("shipped", "reference", 1, 8),
        ("shipped", "project", 1, 8),
        ("shipped", "project", 2, 9),
        ("shipped", "reference", 2, 9),
    ]
    # A reference fit that raised (sim-r1000-h8-week, repeat 1, at the defaults) keeps the defaults
    # from passing: the ladder goes on to 0.9 there, three repeats, which pass.
    assert len(result.fits) == 4 * 3 * 2 + 3
    assert result.settings["reference_gate_passing"]["sim-r1000-h8-week"] == "target_accept=0.9"

    r = result.results
    assert list(r.columns[: len(bench.RESULT_COLUMNS)]) == bench.RESULT_COLUMNS
    assert len(r) == 9 and set(r["implementation"]) == {"project", "reference"}
    row = r[(r["case"] == "sim-r100-h8-week") & (r["implementation"] == "project")].iloc[0]
    assert row["wall_s"] == pytest.approx(0.01 * 100 * 1.01)  # median of the three repeats
    assert row["repeats"] == 3 and row["failed"] == 0
    # The first repeat on its own (for the project, the fit that compiled its callbacks).
    assert row["first_wall_s"] == pytest.approx(0.01 * 100) and row[
        "first_ess_per_s"
    ] == pytest.approx(800.0 / 1.0)
    assert row["compile_cache"] == "miss,hit,hit"
    # One fresh callback-cache tag for the whole bench run, put back afterwards.
    assert (
        len(tags) == 1
        and next(iter(tags)).startswith("bench-")
        and os.environ.get(CACHE_TAG_ENV) == before
    )
    failed = r[(r["case"] == "sim-r1000-h8-week") & (r["implementation"] == "reference")].iloc[0]
    assert failed["repeats"] == 2 and failed["failed"] == 1
    assert failed["wall_s"] == pytest.approx(0.02 * 1000**1.5 * 1.01)  # median of repeats 0 and 2

    # The fake reference passes the gate at its defaults: no ladder, both ratios against the defaults.
    assert set(result.fits["setting"]) == {"target_accept=0.9", "defaults"}
    assert result.settings["reference_gate_passing"]["shipped"] == "defaults"
    by_case = result.ratios[result.ratios["case"] == "sim-r100-h8-week"]
    assert by_case["against"].tolist() == ["defaults", "gate-passing"]
    assert by_case["reference_setting"].tolist() == ["defaults", "defaults"]
    ratio = by_case.iloc[1]
    assert ratio["wall_s_ratio"] == pytest.approx((0.01 * 100) / (0.02 * 100**1.5))
    assert ratio["ess_per_s_ratio"] == pytest.approx((0.02 * 100**1.5) / (0.01 * 100))

    exponents = result.scaling.set_index("implementation")["wall_exponent"]
    assert exponents["project"] == pytest.approx(1.0, abs=1e-6)
    assert exponents["reference"] == pytest.approx(1.5, abs=0.01)
    assert "shipped" not in set(result.scaling.get("case", []))


def test_write_bench_writes_the_folder_whole(tmp_path):
    cases = bench.select_cases(["shipped", "sim-r100-h8-week", "sim-r1000-h8-week"])
    result = bench.run_bench(
        cases,
        data="data/polls.csv",
        config=model.Config(),
        repeats=2,
        log=lambda m: None,
        runner=_fake_runner({"project": (0.01, 1.0), "reference": (0.02, 1.5)}),
    )
    folder = bench.write_bench(result, tmp_path)
    assert folder.name.startswith("bench-")
    assert sorted(p.name for p in folder.iterdir()) == [
        "ratios.csv",
        "repeats.csv",
        "results.csv",
        "scaling.csv",
        "settings.json",
        "summary.txt",
        "time_vs_size.png",
    ]
    table = pd.read_csv(folder / "results.csv")
    assert list(table.columns[: len(bench.RESULT_COLUMNS)]) == bench.RESULT_COLUMNS
    assert set(table["implementation"]) == {"project", "reference"} and "shipped" in set(
        table["case"]
    )
    assert (pd.read_csv(folder / "repeats.csv")["error"].fillna("") != "").sum() == 1
    assert "Project / reference" in (folder / "summary.txt").read_text()
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left


def test_a_fit_that_fails_in_its_child_process_is_recorded_not_raised():
    """A fresh process really runs the job; its error comes back as a row naming the case."""
    job = {
        "case": {"name": "shipped", "readings": None, "houses": None, "grid": None},
        "implementation": "project",
        "data": "no/such/polls.csv",
        "config": model.Config().to_dict(),
        "seed": 0,
        "repeat": 0,
    }
    row = bench._in_fresh_process(job)
    assert row["case"] == "shipped" and row["implementation"] == "project"
    assert "no/such/polls.csv" in row["error"]


def test_compared_diagnostics_skip_constant_entries_and_apply_the_gate():
    rng = np.random.default_rng(0)
    import xarray as xr

    effect = rng.normal(size=(4, 500, 3, 2))
    effect[:, :, 0, :] = 0.0  # a reference house: constant, left out
    posterior = xr.Dataset(
        {
            "walk_sd": (("chain", "draw"), rng.normal(size=(4, 500))),
            "house_effect": (("chain", "draw", "pollster", "answer"), effect),
            "innovation": (("chain", "draw", "step"), np.ones((4, 500, 2))),  # not compared
        }
    )
    energy = xr.DataArray(rng.normal(size=(4, 500)), dims=("chain", "draw"))  # E-BFMI about 2
    figures = bench.compared_diagnostics(posterior, divergences=0, energy=energy)
    assert figures["min_ess_bulk"] > 1000 and figures["max_rhat"] < 1.01 and figures["gate_passed"]
    assert figures["min_bfmi"] > 1 and figures["gate_failures"] == ""
    divergent = bench.compared_diagnostics(posterior, divergences=1, energy=energy)
    assert not divergent["gate_passed"] and "1 divergent" in divergent["gate_failures"]
    stuck = posterior.assign(
        walk_sd=posterior["walk_sd"] + np.arange(4)[:, None]
    )  # chains disagree
    assert not bench.compared_diagnostics(stuck, divergences=0, energy=energy)["gate_passed"]
    # The project's whole gate, E-BFMI included: energy that wanders like a random walk fails it.
    wandering = energy.cumsum("draw")
    low = bench.compared_diagnostics(posterior, divergences=0, energy=wandering)
    assert low["min_bfmi"] < 0.3 and not low["gate_passed"] and "E-BFMI" in low["gate_failures"]


def test_cli_bench_rejects_an_unknown_case_and_bad_data(tmp_path, capsys):
    assert main(["bench", "--cases", "sim-r7-h8-week"]) == EXIT_BAD_INPUT
    assert "'sim-r7-h8-week' is not one of" in capsys.readouterr().err
    bad = tmp_path / "polls.csv"
    bad.write_text("pollster,question\nX,Y\n")
    assert (
        main(
            [
                "bench",
                "--cases",
                "shipped",
                "--data",
                str(bad),
                "--runs-dir",
                str(tmp_path / "runs"),
            ]
        )
        == EXIT_BAD_INPUT
    )
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_cli_bench_list(capsys):
    assert main(["bench", "--list", "--cases", "sim-r100-*"]) == 0
    assert capsys.readouterr().out.split() == [c.name for c in bench.select_cases(["sim-r100-*"])]


def test_run_bench_can_run_one_implementation_alone():
    cases = bench.select_cases(["sim-r100-h8-week", "sim-r1000-h8-week"])
    runner = _fake_runner({"project": (0.01, 1.0), "reference": (0.02, 1.5)})
    result = bench.run_bench(
        cases,
        data="data/polls.csv",
        config=model.Config(),
        repeats=2,
        log=lambda m: None,
        runner=runner,
        implementations=["project"],
    )
    assert set(result.fits["implementation"]) == {"project"} and len(result.fits) == 2 * 2
    assert result.ratios.empty  # ratios need both
    assert result.scaling["implementation"].tolist() == ["project"]
    assert result.settings["implementations"] == ["project"]
    with pytest.raises(model.ConfigError, match="implementations"):
        bench.run_bench(
            cases,
            data="data/polls.csv",
            config=model.Config(),
            runner=runner,
            implementations=["stan"],
        )


def test_a_shipped_case_the_reference_does_not_implement_is_refused_before_any_fit():
    """Each reference fit would fail in its own process, up the whole ladder; the project alone
    and the simulated cases (the library's model) still run."""
    calls = []
    fake = _fake_runner({"project": (0.01, 1.0), "reference": (0.02, 1.5)})

    def runner(job):
        calls.append(job)
        return fake(job)

    momentum = model.Config(trend="momentum")
    with pytest.raises(model.ConfigError, match="this config has trend = 'momentum'"):
        bench.run_bench(
            bench.select_cases(["shipped"]),
            data="data/polls.csv",
            config=momentum,
            log=lambda m: None,
            runner=runner,
        )
    assert calls == []
    for cases, implementations in (
        (["shipped"], ["project"]),
        (["sim-r100-h8-week"], ["project", "reference"]),
    ):
        bench.run_bench(
            bench.select_cases(cases),
            data="data/polls.csv",
            config=momentum,
            repeats=1,
            log=lambda m: None,
            runner=runner,
            implementations=implementations,
        )
    assert calls


def _ladder_runner(passes, calls=None, *, failing_repeats=()):
    """Fake fits whose gate verdict depends on the reference's target acceptance.

    ``passes(target_accept)`` says whether a reference fit passes (the project always does);
    ``failing_repeats`` are repeats that fail the gate whatever the setting. The reference's ESS
    per second falls as its target acceptance rises: wall time 10 s x (1 + 10 x (ta - 0.8)).
    """

    def runner(job):
        if calls is not None:
            calls.append((job["implementation"], job["setting"], job["repeat"]))
        name = job["case"]["name"]
        if job["implementation"] == "project":
            return _fit_row(name, "project", job["repeat"], 70, 4.0, 1000.0)
        target_accept = job["target_accept"] or 0.8
        passed = passes(target_accept) and job["repeat"] not in failing_repeats
        wall = 10.0 * (1 + 10 * (target_accept - 0.8))
        return _fit_row(name, "reference", job["repeat"], 70, wall, 1000.0, passed=passed)

    return runner


def _ladder_bench(runner, repeats=3, **kwargs):
    return bench.run_bench(
        bench.select_cases(["shipped"]),
        data="data/polls.csv",
        config=model.Config(sampler=model.Sampler(target_accept=0.99)),
        repeats=repeats,
        log=lambda m: None,
        runner=runner,
        **kwargs,
    )


def test_ladder_climbs_until_a_setting_passes_in_every_repeat_and_stops():
    calls = []
    result = _ladder_bench(_ladder_runner(lambda ta: ta >= 0.95, calls))
    reference = [c for c in calls if c[0] == "reference"]
    # Defaults (alternating with the project), then 0.9 and 0.95 three times each; 0.99 not tried.
    assert [c[1] for c in reference] == ["defaults"] * 3 + ["target_accept=0.9"] * 3 + [
        "target_accept=0.95"
    ] * 3
    assert [c[2] for c in reference[3:]] == [0, 1, 2, 0, 1, 2]  # the same repeats (seeds) per rung
    fits = result.fits
    assert (fits["setting"] == "target_accept=0.99").sum() == 3  # the project's setting
    r = result.results.set_index(["implementation", "setting"])
    # Every setting tried keeps its row, failed or not.
    assert list(r.index) == [
        ("project", "target_accept=0.99"),
        ("reference", "defaults"),
        ("reference", "target_accept=0.9"),
        ("reference", "target_accept=0.95"),
    ]
    assert r["passed_every_repeat"].tolist() == [True, False, False, True]
    assert r["gate_passes"].tolist() == [3, 0, 0, 3]
    assert r["target_accept"].tolist() == [0.99, 0.8, 0.9, 0.95]
    assert result.settings["reference_gate_passing"] == {"shipped": "target_accept=0.95"}
    assert result.settings["reference_ladder"] == [0.8, 0.9, 0.95, 0.99]

    ratios = result.ratios.set_index("against")
    assert ratios.loc["defaults", "reference_setting"] == "defaults"
    assert ratios.loc["gate-passing", "reference_setting"] == "target_accept=0.95"
    assert ratios.loc["gate-passing", "project_setting"] == "target_accept=0.99"
    # ESS per second: 1000 / 4 s for the project, 1000 / 25 s at 0.95, 1000 / 10 s at the defaults.
    assert ratios.loc["gate-passing", "ess_per_s_ratio"] == pytest.approx(25.0 / 4.0)
    assert ratios.loc["defaults", "ess_per_s_ratio"] == pytest.approx(10.0 / 4.0)
    assert ratios.loc["gate-passing", "wall_s_ratio"] == pytest.approx(4.0 / 25.0)
    assert bool(ratios.loc["gate-passing", "reference_gate_passed"])
    assert not bool(ratios.loc["defaults", "reference_gate_passed"])

    text = bench.summary_text(result)
    assert "shipped                  target_accept=0.95" in text
    assert "gate-passing (target_accept=0.95)" in text and "6.25" in text


def test_ladder_that_never_passes_records_every_setting_and_says_none_passed(tmp_path):
    calls = []
    result = _ladder_bench(_ladder_runner(lambda ta: False, calls), repeats=2)
    settings = [c[1] for c in calls if c[0] == "reference"]
    assert settings == [
        s
        for s in ("defaults", "target_accept=0.9", "target_accept=0.95", "target_accept=0.99")
        for _ in range(2)
    ]
    assert len(result.fits) == 2 + 4 * 2
    assert not result.results.loc[
        result.results["implementation"] == "reference", "passed_every_repeat"
    ].any()
    assert result.settings["reference_gate_passing"] == {"shipped": "none passed"}
    ratios = result.ratios.set_index("against")
    assert ratios.loc["gate-passing", "reference_setting"] == "none passed"
    assert (
        ratios.loc["gate-passing", bench.RATIO_COLUMNS[0] + "_ratio" :]
        .filter(like="_ratio")
        .isna()
        .all()
    )
    assert np.isfinite(ratios.loc["defaults", "ess_per_s_ratio"])  # the defaults ratio stays
    text = bench.summary_text(result)
    assert "shipped                  none passed" in text and "no setting passed the gate" in text

    folder = bench.write_bench(result, tmp_path)
    table = pd.read_csv(folder / "ratios.csv")
    assert table["reference_setting"].tolist() == ["defaults", "none passed"]


def test_a_setting_passes_only_if_every_repeat_ran_and_passed():
    # Repeat 1 fails the gate at every setting: no setting passes, though most fits do.
    result = _ladder_bench(_ladder_runner(lambda ta: True, failing_repeats=(1,)))
    r = result.results[result.results["implementation"] == "reference"]
    assert r["setting"].tolist() == [
        "defaults",
        "target_accept=0.9",
        "target_accept=0.95",
        "target_accept=0.99",
    ]
    assert r["gate_passes"].tolist() == [2, 2, 2, 2] and not r["passed_every_repeat"].any()
    assert result.settings["reference_gate_passing"] == {"shipped": "none passed"}
    # A fit that raised counts against its setting too.
    fits = pd.DataFrame(
        [
            _fit_row("shipped", "reference", 0, 70, 10.0, 1000.0),
            _fit_row("shipped", "reference", 1, 0, 0, 0, error="RuntimeError: out of memory"),
        ]
    )
    assert not bench.setting_passed(fits) and bench.setting_passed(fits.iloc[:1])
    assert not bench.setting_passed(fits.iloc[:0])


def test_ladder_stops_at_the_defaults_when_they_pass_and_can_be_the_defaults_alone():
    calls = []
    result = _ladder_bench(_ladder_runner(lambda ta: True, calls), repeats=2)
    assert {c[1] for c in calls if c[0] == "reference"} == {"defaults"}
    assert result.ratios["reference_setting"].tolist() == ["defaults", "defaults"]

    calls.clear()
    result = _ladder_bench(
        _ladder_runner(lambda ta: False, calls), repeats=2, reference_ladder=[0.8]
    )
    assert {c[1] for c in calls if c[0] == "reference"} == {"defaults"}
    assert result.ratios["reference_setting"].tolist() == ["defaults", "none passed"]
    for ladder in ([0.9, 0.95], [0.8, 0.95, 0.9], [0.8, 1.0], []):
        with pytest.raises(ConfigError, match="must start at NUTS's default 0.8"):
            _ladder_bench(_ladder_runner(lambda ta: True), reference_ladder=ladder)


def test_results_and_ratios_csv_columns(tmp_path):
    result = _ladder_bench(_ladder_runner(lambda ta: ta >= 0.9), repeats=2)
    folder = bench.write_bench(result, tmp_path)
    results = pd.read_csv(folder / "results.csv")
    assert list(results.columns) == bench.RESULT_COLUMNS + bench.EXTRA_COLUMNS
    assert bench.RESULT_COLUMNS[:3] == ["case", "implementation", "setting"]
    assert results["setting"].tolist() == ["target_accept=0.99", "defaults", "target_accept=0.9"]
    repeats = pd.read_csv(folder / "repeats.csv")
    assert {"setting", "target_accept", "gate_passed", "gate_failures", "min_bfmi"} <= set(
        repeats.columns
    )
    assert repeats.groupby("setting").size().to_dict() == {
        "defaults": 2,
        "target_accept=0.9": 2,
        "target_accept=0.99": 2,
    }
    ratios = pd.read_csv(folder / "ratios.csv")
    assert list(ratios.columns) == [
        "case",
        "against",
        "reference_setting",
        "project_setting",
        *(f"{c}_ratio" for c in bench.RATIO_COLUMNS),
        "project_gate_passed",
        "reference_gate_passed",
    ]
    assert ratios[["against", "reference_setting"]].values.tolist() == [
        ["defaults", "defaults"],
        ["gate-passing", "target_accept=0.9"],
    ]
    assert ratios["ess_per_s_ratio"].tolist() == pytest.approx([10.0 / 4.0, 20.0 / 4.0])
    assert (folder / "settings.json").read_text().count('"shipped": "target_accept=0.9"') == 1


def test_cli_bench_rejects_a_ladder_that_does_not_start_at_the_defaults(tmp_path, capsys):
    args = ["bench", "--cases", "shipped", "--runs-dir", str(tmp_path / "runs")]
    assert main([*args, "--reference-ladder", "0.9", "0.95"]) == EXIT_BAD_INPUT
    assert "must start at NUTS's default 0.8" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_projects_setting_names_its_second_attempt():
    from model.bench.runner import setting_label_project

    plain = model.Config(sampler=model.Sampler(target_accept=0.95))
    assert setting_label_project(plain) == "target_accept=0.95"
    retrying = plain.replace(sampler={"retry_target_accept": 0.99})
    assert setting_label_project(retrying) == "target_accept=0.95, retry 0.99"
    ladder = plain.replace(sampler={"retry_target_accept": [0.99, 0.999]})
    assert setting_label_project(ladder) == "target_accept=0.95, retry 0.99 then 0.999"
    longer = ladder.replace(sampler={"retry_draws": 4000})
    assert setting_label_project(longer) == "target_accept=0.95, retry 0.99 then 0.999, longer 4000"
