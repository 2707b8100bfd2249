"""Small sampling tests on simulated data: recovery of a known truth, the result API, run folders.

One fit (``small_fit``, 2 chains x 300 draws) is shared by the session. Tolerances are stated per
test; they are about coverage of the truth, not about this seed.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import model
from model.provenance import code_version
from tests.conftest import SMALL_CONFIG, every_size_stated

pytestmark = pytest.mark.sampling


def test_idata_has_every_group_with_named_dims(small_fit):
    idata = small_fit.idata
    for group in (
        "posterior",
        "sample_stats",
        "posterior_predictive",
        "observed_data",
        "log_likelihood",
        "constant_data",
    ):
        assert group in idata.children, group
    post = idata.posterior
    assert post["share"].dims == ("chain", "draw", "time", "answer")
    assert post["house_effect"].dims[2:] == ("pollster", "answer")
    assert post["question_effect"].dims[2:] == ("question", "answer")
    assert idata.log_likelihood["obs_share"].dims == ("chain", "draw", "poll")
    assert list(idata.posterior_predictive["poll"].values) == list(small_fit.polls["poll_id"])
    assert np.issubdtype(post["time"].dtype, np.datetime64)
    attrs = idata.attrs
    assert json.loads(attrs["config"]) == json.loads(json.dumps(small_fit.config.to_dict()))
    assert attrs["seed"] == small_fit.seed and len(attrs["data_checksum"]) == 64


def test_curve_is_coherent_and_covers_the_truth(small_fit, simulation):
    curve = small_fit.support_curve(interval=0.9)
    assert list(curve.columns) == [
        "date",
        "answer",
        "mean",
        "median",
        "lower",
        "upper",
        "interval",
        "projected",
        "house",
        "question",
    ]
    assert not curve["projected"].any()  # no through: the curve ends with the last reading
    assert (curve["interval"] == 0.9).all() and (curve["house"] == "the average house").all()
    assert (curve["question"] == small_fit.reference_question).all()
    by_date = curve.groupby("date")["mean"].sum()
    np.testing.assert_allclose(by_date, 100, atol=1e-6)  # talks + continue + undecided
    assert (curve["lower"] <= curve["median"]).all() and (curve["median"] <= curve["upper"]).all()
    truth = simulation.curve_on_grid(pd.DatetimeIndex(sorted(curve["date"].unique())))
    merged = curve.merge(truth, on=["date", "answer"])
    covered = (merged["lower"] <= merged["share"]) & (merged["share"] <= merged["upper"])
    # tolerance: 90% intervals should cover the true weekly share in at least 80% of cells
    assert covered.mean() >= 0.8, covered.groupby(merged["answer"]).mean()
    assert (merged["median"] - merged["share"]).abs().mean() < 2.5  # points


def test_house_and_question_effects_cover_the_truth(small_fit, simulation):
    post = small_fit.posterior
    covered = []
    for var, dim, truth in (
        ("house_effect", "pollster", simulation.house_effects),
        ("question_effect", "question", simulation.question_effects),
    ):
        lo, hi = post[var].quantile([0.05, 0.95], dim=("chain", "draw")).values
        true = truth.pivot(index=dim, columns="answer", values="logit")
        true = true.loc[list(post[dim].values), list(post["answer"].values)].to_numpy()
        free = hi > lo  # the reference question is fixed at zero
        covered.extend(((lo <= true) & (true <= hi))[free])
    # tolerance: 90% intervals cover at least 80% of the 15 free effects (4 houses + 1 question, x 3 answers)
    assert len(covered) == 15
    assert np.mean(covered) >= 0.8, covered


def test_a_table_stating_every_size_has_no_empty_variables_in_its_trace(sim_polls, tmp_path):
    """Every sample size stated: no unknown-size parameters in the saved trace (the compiled model
    has them with an empty dimension, so it is the small fit's structure: nothing compiles)."""
    stated = every_size_stated(sim_polls)
    config = SMALL_CONFIG.replace(sampler={"draws": 50, "tune": 50})
    result = model.fit(stated, config=config, seed=3, progressbar=False)
    assert {"log_n_z", "n_unknown"}.isdisjoint(result.posterior.data_vars)
    assert all(values.size > 0 for values in result.posterior.data_vars.values())
    loaded = model.load_run(result.save(tmp_path / "run"))
    assert {"log_n_z", "n_unknown"}.isdisjoint(loaded.posterior.data_vars)


def test_the_trace_records_which_log_density_ran(small_fit):
    """The small fit (the library's zero-sum houses) ran the hand-written log density, and the
    trace says so (``"pytensor"`` pinned: tests/sampling/test_compiled.py)."""
    assert small_fit.config.sampler.log_density == "auto"
    assert small_fit.config.house_effects == "zero_sum"
    assert small_fit.idata.attrs["log_density"] == "hand-written"


def test_effect_tables(small_fit):
    houses = small_fit.house_effects()
    assert {"pollster", "answer", "mean", "lower", "upper"} <= set(houses.columns)
    assert len(houses) == 4 * 3
    # zero-sum identification: house effects (logits) cancel over houses, and points share their signs
    np.testing.assert_allclose(houses.groupby("answer")["mean_logit"].sum(), 0, atol=1e-9)
    assert (np.sign(houses["mean"]) == np.sign(houses["mean_logit"])).mean() >= 0.9
    questions = small_fit.question_effects()
    assert {"question", "answer", "mean", "lower", "upper", "identified"} <= set(questions.columns)
    ref = questions[questions["question"] == "Q_MAIN"]
    assert (ref["mean"] == 0).all() and ref["reference"].all()


def test_diagnostics_report(small_fit):
    diag = small_fit.diagnostics()
    for key in (
        "passed",
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "divergences",
        "min_bfmi",
        "failures",
        "coverage50",
        "coverage90",
        "readings",
        "high_pareto_k",
    ):
        assert key in diag, key
    assert len(diag["bfmi_per_chain"]) == 2
    assert len(diag["readings"]) == len(small_fit.polls)
    # LOO-PIT for every reported answer share, and per answer how many fall in the outer tenth.
    labels = small_fit.design.component_label
    for i, r in enumerate(diag["readings"]):
        assert set(r["loo_pit"]) == set(labels[i][(labels[i] != "") & (labels[i] != "rest")])
        assert all(0 <= v <= 1 for v in r["loo_pit"].values())
    assert set(diag["loo_pit_outside"]) == {a for r in diag["readings"] for a in r["loo_pit"]}
    for answer, counts in diag["loo_pit_outside"].items():
        values = [r["loo_pit"][answer] for r in diag["readings"] if answer in r["loo_pit"]]
        assert counts["readings"] == len(values) > 0
        assert counts["outside_05_95"] == sum(v < 0.05 or v > 0.95 for v in values)
    assert diag["passed"] == (not diag["failures"])
    # a well-specified model on its own kind of data: predictive coverage near nominal
    assert 0.3 <= diag["coverage50"] <= 0.75 and diag["coverage90"] >= 0.75


def test_save_and_load_round_trip(small_fit, tmp_path):
    folder = small_fit.save(tmp_path / "run")
    for name in (
        "posterior.nc",
        "config.json",
        "polls.csv",
        "curve.csv",
        "house_effects.csv",
        "question_effects.csv",
        "diagnostics.json",
        "excluded.csv",
        "prior_sensitivity.csv",
        "headline.json",
        "closed_polls.csv",
    ):
        assert (folder / name).is_file(), name
    loaded = model.load_run(folder)
    pd.testing.assert_frame_equal(loaded.support_curve(), small_fit.support_curve())
    assert loaded.headline() == small_fit.headline()
    assert json.loads((folder / "headline.json").read_text()) == json.loads(
        json.dumps(small_fit.headline())
    )
    assert pd.read_csv(
        folder / "closed_polls.csv"
    ).empty  # the simulated table marks no closed poll
    pd.testing.assert_frame_equal(loaded.house_effects(), small_fit.house_effects())
    assert loaded.config == small_fit.config and loaded.seed == small_fit.seed
    # The code that made it: recorded in the trace and in config.json, read back with the run.
    assert small_fit.code == loaded.code == code_version()
    assert json.loads((folder / "config.json").read_text())["code"] == code_version()
    assert loaded.diagnostics()["passed"] == small_fit.diagnostics()["passed"]
    assert not list(tmp_path.glob(".*partial"))


def test_load_run_says_what_is_missing(small_fit, tmp_path):
    folder = small_fit.save(tmp_path / "run")
    (folder / "curve.csv").unlink()
    with pytest.raises(model.RunFolderError, match="curve.csv"):
        model.load_run(folder)


def test_a_failed_write_leaves_no_folder(small_fit, tmp_path, monkeypatch):
    import model.results.run_folder

    def boom(*args, **kwargs):
        raise OSError("disk full")

    def half_written(result, folder):
        (folder / "posterior.nc").write_text("partial")
        boom()

    monkeypatch.setattr(model.results.run_folder, "_write_contents", half_written)
    with pytest.raises(OSError, match="disk full"):
        small_fit.save(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_sampling_cut_short_is_never_a_run(small_fit, sim_polls, monkeypatch):
    """pm.sample answers Ctrl-C by returning the draws so far: an interrupt, not the run. nutpie's
    Ctrl-C is raised while it samples, so a short trace from it is a sampling error, which a Dask
    worker records as the task's failure (a KeyboardInterrupt would end the worker)."""
    from model.sampling import SamplingError
    from model.sampling.engine import CompiledAggregator

    short = small_fit.idata.isel(draw=slice(0, 5))
    monkeypatch.setattr(CompiledAggregator, "_sample_nutpie", lambda *args, **kwargs: short)
    with pytest.raises(
        SamplingError,
        match="sampling stopped early: 2 chains x 5 draws of 2 x 300, with no interrupt",
    ):
        model.fit(sim_polls, config=small_fit.config, seed=1)
    monkeypatch.setattr(CompiledAggregator, "_sample_pymc", lambda *args, **kwargs: short)
    as_pymc = small_fit.config.replace(sampler={"nuts_sampler": "pymc"})
    with pytest.raises(
        KeyboardInterrupt, match=r"sampling stopped early: 2 chains x 5 draws of 2 x 300$"
    ):
        model.fit(sim_polls, config=as_pymc, seed=1)


def _sampling_error_in_a_fresh_interpreter(setup: str, call: str) -> str:
    """Run ``setup`` then ``call`` (an engine's ``_sample_nutpie``) in a fresh interpreter, which
    must exit normally; return what it printed: the ``SamplingError`` the call raised. The
    chains' threads must have ended when it is raised (the sampler is released first: before,
    two of them outlived a 10 s wait for them)."""
    import subprocess
    import sys

    code = (
        setup + "from model.sampling import SamplingError\n"
        "from model.sampling.engine import _threads\n"
        "before = _threads()\n"
        "try:\n"
        f"    {call}\n"
        "except SamplingError as err:\n"
        "    print('SamplingError:', err)\n"
        "    print('threads left:', _threads() - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "threads left: 0" in done.stdout, done.stdout + done.stderr[-2000:]
    return done.stdout


def test_a_sampler_that_cannot_start_is_a_clear_error_and_the_process_exits_cleanly(small_fit):
    """A model that raises at every starting point (here: a reading's field period moved past the
    grid, which the field-average kernel refuses) stops nutpie at initialisation. The engine says so
    in a SamplingError once the chains' threads have ended, and the process then exits normally:
    nutpie's failed sampler, left to the interpreter's exit, used to crash it with a segmentation
    fault. In a fresh interpreter, on the small fit's structure (compiled by ``small_fit``)."""
    printed = _sampling_error_in_a_fresh_interpreter(
        "import model\n"
        "from model.aggregator.design import build_design\n"
        "from model.sampling.engine import CompiledAggregator\n"
        "from tests.conftest import SMALL_CONFIG\n"
        "polls = model.load_polls(model.simulate_polls(n_readings=70, seed=11).polls)\n"
        "design = build_design(polls, SMALL_CONFIG)\n"
        "engine = CompiledAggregator(design, SMALL_CONFIG)\n"
        "last = design.last_cell.copy()\n"
        "last[0] = len(design.time) + 3\n",
        "engine._sample_nutpie(SMALL_CONFIG.sampler, 1, 1, {'last_cell': last}, False)",
    )
    assert (
        "SamplingError: nutpie could not sample (All initialization points failed): the log "
        "density or its gradient was not finite, or the model raised, at every starting point"
    ) in printed


def test_a_log_density_that_raises_while_sampling_is_a_clear_error_not_a_panic():
    """A log density that raises after the chains have started (here an ``Assert`` that fails once
    a draw wanders past 2.5) returns nuts-rs's fatal code, on which a chain's thread panics. The
    panic reaches Python as PyO3's ``PanicException``, a ``BaseException``: raised from a Dask
    task, the worker never reported it and the validation run waited forever. The engine turns it
    into a ``SamplingError`` (an ``Exception``, which a task reports as failed), once the chains'
    threads have ended, and the process then exits normally. In a fresh interpreter."""
    printed = _sampling_error_in_a_fresh_interpreter(
        "import pymc as pm, pytensor.tensor as pt\n"
        "from pytensor.raise_op import Assert\n"
        "from model.config import Sampler\n"
        "from model.sampling.compiled import compile_model\n"
        "from model.sampling.engine import CompiledAggregator\n"
        "with pm.Model() as m:\n"
        "    x = pm.Normal('x', 0, 1, shape=3)\n"
        "    pm.Potential('p', Assert('far')(pt.sum(x) * 0.0, pt.all(pt.abs(x) < 2.5)))\n"
        "engine = CompiledAggregator.__new__(CompiledAggregator)\n"
        "engine._nutpie, engine._generated = compile_model(m), {}\n",
        "engine._sample_nutpie(Sampler(draws=2000, tune=200, chains=2), 1, 2, {}, False)",
    )
    assert (
        "SamplingError: nutpie could not sample (Logp function returned error: ErrorCode(-1)): "
        "the log density raised while sampling"
    ) in printed, printed


def test_run_folders_are_readable_by_others(small_fit, tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        folder = small_fit.save(tmp_path / "run")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_prior_sensitivity_is_reported(small_fit):
    table = small_fit.prior_sensitivity()
    assert list(table.columns) == ["quantity", "prior", "likelihood", "diagnosis"]
    assert {"walk_sd", "nonsampling_sd", "house_sd", "question_sd"} <= set(table["quantity"])
    assert table["quantity"].str.startswith("share[").sum() == 3  # the latest shares
    assert np.isfinite(table[["prior", "likelihood"]].to_numpy()).all()
    assert set(small_fit.idata.log_prior.data_vars) == {
        "level",
        "walk_sd",
        "house_sd",
        "question_sd",
        "nonsampling_sd",
    }


@pytest.fixture(scope="module")
def small_trace(small_fit):
    """The small fit's structure sampled as nutpie returns a trace: the posterior holds the
    deterministics the extension reads (set aside by the engine after sampling)."""
    from model.aggregator.design import build_design
    from model.sampling.engine import CompiledAggregator

    engine = CompiledAggregator(build_design(small_fit.polls, small_fit.config), small_fit.config)
    return engine._sample_nutpie(small_fit.config.sampler, 1, 2, {}, False)


def _traces_by_target_accept(small_trace, monkeypatch, divergent_at: set[float]) -> list[float]:
    """Make the sampler return the small fit's trace, with one divergent transition when sampled
    at a target acceptance in ``divergent_at``; return the target acceptances it was called with."""
    from model.sampling.engine import CompiledAggregator

    calls = []

    def fake(self, sampler, *args, **kwargs):
        calls.append(sampler.target_accept)
        stats = small_trace["sample_stats"].to_dataset().copy(deep=True)
        stats["diverging"].values[:] = False
        stats["diverging"].values[0, 0] = sampler.target_accept in divergent_at
        posterior = small_trace["posterior"].to_dataset().copy(deep=True)
        return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})

    monkeypatch.setattr(CompiledAggregator, "_sample_nutpie", fake)
    return calls


def test_divergent_fit_is_sampled_again_at_the_retry_target_accept(
    small_fit, small_trace, sim_polls, monkeypatch
):
    calls = _traces_by_target_accept(small_trace, monkeypatch, divergent_at={0.9})
    config = small_fit.config.replace(sampler={"retry_target_accept": 0.99})
    result = model.fit(sim_polls, config=config, seed=1)
    assert calls == [0.9, 0.99]
    diag = result.diagnostics()
    assert [(a["target_accept"], a["divergences"]) for a in diag["sampling_attempts"]] == [
        (0.9, 1),
        (0.99, 0),
    ]
    assert diag["divergences"] == 0  # the gate judges the kept (second) fit
    assert (
        "Sampled again at target_accept 0.99 after 1 divergent transition(s) at 0.9"
        in result.summary_text()
    )


def test_a_retry_ladder_climbs_while_divergences_remain(
    small_fit, small_trace, sim_polls, monkeypatch
):
    calls = _traces_by_target_accept(small_trace, monkeypatch, divergent_at={0.9, 0.95})
    config = small_fit.config.replace(sampler={"retry_target_accept": [0.95, 0.99, 0.999]})
    result = model.fit(sim_polls, config=config, seed=1)
    assert calls == [0.9, 0.95, 0.99]  # 0.999 not needed: 0.99 had none
    diag = result.diagnostics()
    assert [(a["target_accept"], a["divergences"]) for a in diag["sampling_attempts"]] == [
        (0.9, 1),
        (0.95, 1),
        (0.99, 0),
    ]
    assert diag["divergences"] == 0
    assert (
        "Sampled again at target_accept 0.99 after 1 divergent transition(s) at 0.9, then 1 at 0.95; "
        "the gate judges the last fit" in result.summary_text()
    )


def test_a_fit_without_divergences_or_without_retry_is_sampled_once(
    small_fit, small_trace, sim_polls, monkeypatch
):
    calls = _traces_by_target_accept(small_trace, monkeypatch, divergent_at=set())
    retrying = small_fit.config.replace(sampler={"retry_target_accept": 0.99})
    assert (
        len(model.fit(sim_polls, config=retrying, seed=1).diagnostics()["sampling_attempts"]) == 1
    )
    calls.clear()
    calls_divergent = _traces_by_target_accept(small_trace, monkeypatch, divergent_at={0.9})
    result = model.fit(sim_polls, config=small_fit.config, seed=1)  # no retry configured
    assert calls_divergent == [0.9]
    assert result.diagnostics()["divergences"] == 1 and not result.diagnostics()["passed"]
    assert "Sampled again" not in result.summary_text()


def test_a_fit_that_mixed_too_slowly_is_sampled_longer(
    small_fit, small_trace, sim_polls, monkeypatch
):
    """With ``retry_draws``, a fit whose kept attempt has no divergent transition but misses the
    gate's R-hat is sampled once more with that many draws a chain, at the same target
    acceptance; the longer trace is kept, extended and judged, and both attempts are recorded."""
    from model.sampling.engine import CompiledAggregator

    draws = small_fit.idata.posterior.sizes["draw"]
    calls, seeds = [], []

    def fake(self, sampler, seed, *args, **kwargs):
        calls.append((sampler.target_accept, sampler.draws))
        seeds.append(seed)
        stats = small_trace["sample_stats"].to_dataset().copy(deep=True)
        stats["diverging"].values[:] = False
        posterior = small_trace["posterior"].to_dataset().copy(deep=True)
        if sampler.draws == draws:  # the first attempt: one chain's walk scale far off
            posterior["walk_sd"].values[0] += 1.0
        else:  # the longer one: the small fit's draws twice over
            posterior = xr.concat([posterior, posterior], "draw").assign_coords(
                draw=np.arange(sampler.draws)
            )
            stats = xr.concat([stats, stats], "draw").assign_coords(draw=np.arange(sampler.draws))
        return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})

    monkeypatch.setattr(CompiledAggregator, "_sample_nutpie", fake)
    config = small_fit.config.replace(
        sampler={"retry_target_accept": 0.99, "retry_draws": 2 * draws}
    )
    result = model.fit(sim_polls, config=config, seed=1)
    assert calls == [(0.9, draws), (0.9, 2 * draws)]  # no divergences: the ladder is not climbed
    assert len(seeds) == 2 and seeds[0] == seeds[1]  # the same seed, as the ladder's attempts
    first, longer = result.diagnostics()["sampling_attempts"]
    assert (first["divergences"], "after" in first) == (0, False)
    assert longer["draws"] == 2 * draws and longer["target_accept"] == 0.9
    assert longer["after"][0].startswith("max R-hat")  # then the ESS the shift also cost
    assert all(reason.endswith("(walk_sd)") for reason in longer["after"])
    assert result.idata.posterior.sizes["draw"] == 2 * draws
    assert result.idata.log_likelihood.sizes["draw"] == 2 * draws  # extended again
    from model.results.diagnostics import convergence, retry_note

    judged = result.diagnostics()["max_rhat"]  # the gate judges the longer fit, not the first
    assert judged == convergence(result.idata)["max_rhat"]
    assert judged < float(longer["after"][0].split()[2])
    assert result.phases.seconds["waiting for the gate's R-hat and ESS"] >= 0
    assert retry_note(result.diagnostics()["sampling_attempts"]).startswith(
        f"Sampled again with {2 * draws} draws a chain at target_accept 0.9 after max R-hat"
    )
    # Without retry_draws the same slow fit is kept as it is.
    calls.clear()
    plain = model.fit(sim_polls, config=small_fit.config, seed=1)
    assert calls == [(0.9, draws)]
    assert len(json.loads(plain.idata.attrs["sampling_attempts"])) == 1
    assert plain.idata.posterior.sizes["draw"] == draws
    assert "waiting for the gate's R-hat and ESS" not in plain.phases.seconds


def test_a_longer_attempt_with_divergences_climbs_the_rest_of_the_ladder(
    small_fit, small_trace, sim_polls, monkeypatch
):
    """A fit sampled longer that gains divergent transitions is sampled again up the ladder,
    with the longer draws, from the rung above the one it reached (not from the first): each
    attempt is recorded with its draws and why it was made, and the gate judges the last."""
    from model.results.diagnostics import retry_note
    from model.sampling.engine import CompiledAggregator

    draws = small_fit.idata.posterior.sizes["draw"]
    calls = []

    def fake(self, sampler, seed, *args, **kwargs):
        calls.append((sampler.target_accept, sampler.draws))
        stats = small_trace["sample_stats"].to_dataset().copy(deep=True)
        stats["diverging"].values[:] = False
        posterior = small_trace["posterior"].to_dataset().copy(deep=True)
        if sampler.draws == draws:
            # divergent at 0.9; at 0.95 none, but one chain's walk scale far off
            stats["diverging"].values[0, 0] = sampler.target_accept == 0.9
            posterior["walk_sd"].values[0] += 0.0 if sampler.target_accept == 0.9 else 1.0
        else:  # longer: the small fit's draws twice over, divergent below 0.999
            posterior = xr.concat([posterior, posterior], "draw").assign_coords(
                draw=np.arange(sampler.draws)
            )
            stats = xr.concat([stats, stats], "draw").assign_coords(draw=np.arange(sampler.draws))
            stats["diverging"].values[0, 0] = sampler.target_accept < 0.999
        return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})

    monkeypatch.setattr(CompiledAggregator, "_sample_nutpie", fake)
    config = small_fit.config.replace(
        sampler={"retry_target_accept": [0.95, 0.99, 0.999], "retry_draws": 2 * draws}
    )
    result = model.fit(sim_polls, config=config, seed=1)
    assert calls == [
        (0.9, draws),
        (0.95, draws),
        (0.95, 2 * draws),
        (0.99, 2 * draws),
        (0.999, 2 * draws),
    ]
    attempts = result.diagnostics()["sampling_attempts"]
    assert [(a["target_accept"], a["divergences"], a.get("draws")) for a in attempts] == [
        (0.9, 1, None),
        (0.95, 0, None),
        (0.95, 1, 2 * draws),
        (0.99, 1, 2 * draws),
        (0.999, 0, 2 * draws),
    ]
    assert attempts[2]["after"][0].startswith("max R-hat")
    assert attempts[3]["after"] == ["1 divergent transition(s) at 0.95"]
    assert attempts[4]["after"] == ["1 divergent transition(s) at 0.99"]
    assert result.diagnostics()["divergences"] == 0  # the gate judges the last attempt
    assert result.idata.posterior.sizes["draw"] == 2 * draws
    note = retry_note(attempts)
    assert note.startswith(
        "Sampled again at target_accept 0.95 after 1 divergent transition(s) at 0.9; then with "
        f"{2 * draws} draws a chain at target_accept 0.95 after max R-hat"
    )
    assert note.endswith(
        f"; then with {2 * draws} draws a chain at target_accept 0.99 after 1 divergent "
        f"transition(s) at 0.95; then with {2 * draws} draws a chain at target_accept 0.999 "
        "after 1 divergent transition(s) at 0.99"
    )
    assert ", with 1 divergent transition(s)" not in note  # each said once, by the next reason


def test_a_fit_is_sampled_longer_only_without_divergences_and_below_retry_draws(small_fit):
    from model.results.diagnostics import longer_sampling_reasons, may_sample_longer

    sampler = small_fit.config.sampler
    draws = small_fit.idata.posterior.sizes["draw"]
    slow = {
        "max_rhat": 1.02,
        "max_rhat_variable": "walk_sd",
        "min_ess_bulk": 900.0,
        "min_ess_bulk_variable": "level",
        "min_ess_tail": 300.0,
        "min_ess_tail_variable": "house_sd",
    }
    mixed = {**slow, "max_rhat": 1.004, "min_ess_tail": 800.0}
    longer = dataclasses.replace(sampler, retry_draws=2 * draws)
    idata = xr.DataTree.from_dict(
        {"posterior": small_fit.idata["posterior"].to_dataset()},
    )
    idata.attrs["sampling_attempts"] = json.dumps([{"target_accept": 0.9, "divergences": 0}])
    assert longer_sampling_reasons(longer, idata, slow) == [
        "max R-hat 1.020 > 1.01 (walk_sd)",
        "min tail ESS 300 < 400 (house_sd)",
    ]
    assert longer_sampling_reasons(longer, idata, mixed) == []
    assert not may_sample_longer(sampler, idata)  # retry_draws not set
    assert not may_sample_longer(dataclasses.replace(sampler, retry_draws=draws), idata)
    idata.attrs["sampling_attempts"] = json.dumps(
        [{"target_accept": 0.9, "divergences": 3}, {"target_accept": 0.99, "divergences": 1}]
    )
    assert longer_sampling_reasons(longer, idata, slow) == []  # divergent: more draws do not help
    # A trace that records no attempts (sampled elsewhere): its own divergent transitions decide.
    stats = small_fit.idata["sample_stats"].to_dataset().copy(deep=True)
    stats["diverging"].values[:] = False
    bare = xr.DataTree.from_dict(
        {"posterior": small_fit.idata["posterior"].to_dataset(), "sample_stats": stats}
    )
    assert may_sample_longer(longer, bare)
    stats["diverging"].values[0, 0] = True
    bare = xr.DataTree.from_dict(
        {"posterior": small_fit.idata["posterior"].to_dataset(), "sample_stats": stats}
    )
    assert not may_sample_longer(longer, bare)


def test_a_longer_attempt_is_worded_with_its_reasons_and_any_divergences():
    from model.results.diagnostics import retry_note

    first = {"target_accept": 0.95, "divergences": 0, "seconds": 9.0}
    longer = {"target_accept": 0.95, "divergences": 0, "seconds": 19.0, "draws": 4000}
    longer["after"] = ["max R-hat 1.012 > 1.01 (walk_sd)", "min bulk ESS 380 < 400 (level)"]
    assert retry_note([first]) == ""
    assert retry_note([first, longer]) == (
        "Sampled again with 4000 draws a chain at target_accept 0.95 after max R-hat 1.012 > "
        "1.01 (walk_sd) and min bulk ESS 380 < 400 (level)"
    )
    assert retry_note([first, {**longer, "divergences": 2}]).endswith(
        "(level), with 2 divergent transition(s)"
    )


def test_the_sampler_stores_what_the_extension_reads_and_the_fit_keeps_it_apart(
    small_fit, small_trace
):
    """Each draw's log likelihood, Dirichlet concentrations and log prior terms come from the
    sampler, as deterministics of the engine's model; the engine sets them aside after sampling,
    so the posterior the gate judges and the fit keeps holds the model's variables alone."""
    from model.aggregator.design import build_design
    from model.sampling.engine import GENERATED, CompiledAggregator

    stored = set(small_trace.posterior.data_vars)
    priors = set(small_fit.idata.log_prior.data_vars)
    generated = {"obs_share__log_likelihood", "obs_share__concentration"} | {
        f"{name}__log_prior" for name in priors
    }
    assert generated <= stored
    assert not generated & set(small_fit.idata.posterior.data_vars)
    assert GENERATED not in small_fit.idata.children
    assert set(small_fit.idata.posterior.data_vars) == stored - generated
    assert small_fit.idata.posterior.sizes.get("poll") is None  # no coordinate left behind
    n_poll = len(small_fit.polls)
    assert small_trace.posterior["obs_share__concentration"].shape[2:] == (n_poll, 3)
    # a refit-form engine's model stores none of them, and extend refuses its traces (PyMC's
    # sampler: the engine builds the model and compiles nothing)
    config = small_fit.config.replace(sampler={"nuts_sampler": "pymc"})
    refit = CompiledAggregator(build_design(small_fit.polls, config), config, refit=True)
    assert not generated & {v.name for v in refit.pymc_model.deterministics}
    trace = small_fit.idata.copy()
    del trace["log_likelihood"]
    with pytest.raises(ValueError, match="extend needs the trace this engine sampled"):
        refit.extend(trace, seed=1)


def test_the_trace_extension_gives_what_pymc_gives_draw_by_draw(small_fit):
    """The log likelihood, predictive draws and log prior of CompiledAggregator.extend (the
    first and last computed by the sampler with each draw, the predictive readings drawn from
    the stored concentrations, batched per chain) against PyMC's functions on the same model:
    equal up to rounding, the readings from the same stream."""
    import pymc as pm

    from model.aggregator.design import build_design
    from model.aggregator.graph import PollAggregator
    from model.fitting import _seeds

    idata = small_fit.idata
    pymc_model = PollAggregator(build_design(small_fit.polls, small_fit.config), small_fit.config)
    pymc_model = pymc_model.build()
    trace = xr.DataTree.from_dict(
        {
            "posterior": idata.posterior.to_dataset(),
            "constant_data": idata.constant_data.to_dataset(),
        }
    )
    pm.compute_log_likelihood(trace, var_names=["obs_share"], model=pymc_model, progressbar=False)
    pm.sample_posterior_predictive(
        trace,
        model=pymc_model,
        extend_inferencedata=True,
        random_seed=_seeds(small_fit.seed)[1],
        progressbar=False,
    )
    pm.stats.compute_log_prior(
        trace, var_names=list(idata.log_prior.data_vars), model=pymc_model, progressbar=False
    )
    for group in ("log_likelihood", "posterior_predictive", "log_prior"):
        ours, theirs = idata[group].to_dataset(), trace[group].to_dataset()
        if group == "log_likelihood":  # PyMC names the reading dim after the observed data
            (reading_dim,) = [d for d in theirs.dims if d not in ("chain", "draw")]
            theirs = theirs.rename({reading_dim: "poll"}).assign_coords(poll=ours["poll"].values)
        assert list(ours.data_vars) == list(theirs.data_vars), group
        xr.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)  # dims, coords, values


def test_a_backtest_refit_that_mixed_too_slowly_is_sampled_longer(small_fit, monkeypatch):
    """The backtest's task decides as a fit does: a refit without divergent transitions whose
    R-hat misses the gate is sampled again with ``retry_draws`` from the same seed; its row
    records both attempts, the longer draws, every attempt's seconds, and the longer fit's gate."""
    from model import fitting
    from model.aggregator.design import build_design
    from model.validation import backtest, runner

    config = small_fit.config.replace(sampler={"retry_draws": 4000})
    design = build_design(small_fit.polls, config)
    # A target of the same table (the targets need a reference house; the task's design is the
    # small fit's, whose draws the stand-in engine returns).
    referenced = build_design(small_fit.polls, config.replace(house_effects="House A"))
    target = backtest.backtest_targets(referenced, design.polls["field_start"].min(), (0,))[-1]
    refit = backtest.Refit("model", target.training_rows, (target,))
    calls = []

    def trace(attempts):
        idata = small_fit.idata.copy()
        idata.attrs = {**idata.attrs, "sampling_attempts": json.dumps(attempts)}
        return idata

    class Engine:  # the compiled model, stood in: the small fit's draws, timed 5 s and 7 s
        compile_s, callbacks, log_density = 0.0, "hit", "hand-written"

        def __init__(self, design, config):
            self.design = design

        def sample(self, sampler, *, seed, cores):
            calls.append(("sample", seed))
            return trace([{"target_accept": 0.9, "divergences": 0, "seconds": 5.0}]), 5.0

        def sample_longer(self, idata, sampler, *, seed, reasons, cores):
            calls.append(("longer", seed, tuple(reasons)))
            first = json.loads(idata.attrs["sampling_attempts"])
            longer = {"target_accept": 0.9, "divergences": 0, "seconds": 7.0, "draws": 4000}
            return trace([*first, {**longer, "after": reasons}]), 7.0

    real = runner.convergence
    judged = []

    def convergence(idata):  # the first trace misses the gate's R-hat; the longer one is real
        conv = real(idata)
        judged.append(idata)
        return (
            {**conv, "max_rhat": 1.02, "max_rhat_variable": "walk_sd"} if len(judged) == 1 else conv
        )

    monkeypatch.setattr(runner, "CompiledAggregator", Engine)
    monkeypatch.setattr(fitting, "convergence", convergence)  # where the refit's decision is taken
    monkeypatch.setattr(runner, "convergence", convergence)
    (row,) = runner.backtest_task(small_fit.polls, config, refit, design, config.sampler, 7, 1)
    assert [call[:2] for call in calls] == [("sample", 7), ("longer", 7)]  # the same seed
    assert calls[1][2][0] == "max R-hat 1.020 > 1.01 (walk_sd)"  # then the small fit's own ESS
    assert (row["attempts"], row["longer_draws"], row["sample_s"]) == (2, 4000, 12.0)
    assert row["max_rhat"] == real(small_fit.idata)["max_rhat"]  # the longer fit's gate
    assert "max R-hat 1.020" not in row["gate_failures"]
