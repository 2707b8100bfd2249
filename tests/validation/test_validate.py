"""A tiny backtest and a tiny SBC on simulated data through a real two-worker Dask LocalCluster.

The samplers are deliberately tiny (the refits fail the gate; that is recorded, not hidden): the
test is about the plumbing and the tables, not about calibration, which ``make validate`` measures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import model
from model.validation import backtest, sbc
from model.validation.runner import (
    REFIT_COUNTS,
    ValidateSettings,
    backtest_task,
    gather,
    run_validation,
    write_validation,
)

pytestmark = pytest.mark.sampling

TINY = model.Sampler(draws=100, tune=150, chains=2, target_accept=0.9)


@pytest.fixture(scope="module")
def validation():
    polls = model.load_polls(model.simulate_polls(n_readings=50, seed=3).polls)
    # House effects pinned non-centred: with "auto" the training sets on either side of ten
    # readings per house would be two compiled structures; pinned, the model's refits share one
    # (tests/bench/test_reference.py's table has it too).
    config = model.Config(
        reference_question="Q_MAIN",
        house_effects="House A",
        sampler=model.Sampler(house_form="non_centred"),
    )
    settings = ValidateSettings(
        since="2024-08-01",
        horizons=(0, 3),
        sbc=2,
        sbc_readings=20,
        sampler=TINY,
        sbc_sampler=TINY,
        seed=1,
        workers=2,
        cores_per_task=1,
    )
    lines = []
    return run_validation(polls, config, settings, log=lines.append), lines


def test_backtest_table_scores_the_model_and_every_baseline(validation):
    v, lines = validation
    assert v.info["workers"] == 2 and v.info["scheduler"] == "LocalCluster"
    # the recorded sampler is what the refits ran: the tiny sampler, the config's forms
    ran = v.info["backtest_sampler"]
    assert (ran["draws"], ran["tune"], ran["target_accept"]) == (100, 150, 0.9)
    assert (ran["house_form"], ran["knots"]) == ("non_centred", "auto")
    table = v.backtest
    per_target = v.backtest_targets
    reference_now = per_target[per_target["reference"] & (per_target["horizon_months"] == 0)]
    n_reference = reference_now["source_row"].nunique()
    assert list(table["method"]) == list(backtest.METHODS)
    assert (table["n"] == n_reference).all() and n_reference >= 1
    assert (table["failed"] == 0).all() and v.failures.empty
    assert np.isfinite(
        table[["mean_log_score", "mae", "coverage50", "coverage90"]].to_numpy()
    ).all()
    assert table["coverage50"].between(0, 1).all() and table["coverage90"].between(0, 1).all()
    # per answer, a 90% interval holds the 50% one
    assert (table["coverage90"] >= table["coverage50"]).all()
    assert (table["mae"] >= 0).all()
    refitted = per_target[per_target["method"].isin(backtest.REFITTED)]
    assert set(refitted["horizon_months"]) == {0, 3}
    assert refitted["gate_passed"].notna().all() and (refitted["sample_s"] > 0).all()
    # each refit says which log density it ran: this structure has the hand-written one
    assert (refitted["log_density"] == "hand-written").all()
    # whole numbers stay whole beside the baselines' blanks (a seed, not 405330228.0)
    assert all(per_target[c].dtype == "Int64" for c in REFIT_COUNTS)
    assert (
        refitted["seed"].notna().all()
        and per_target.loc[~per_target.index.isin(refitted.index), "seed"].isna().all()
    )
    # each refit learned only from readings that ended before its cut-off (the reference house's
    # alone for reference_only)
    polls = model.load_polls(model.simulate_polls(n_readings=50, seed=3).polls)
    for _, row in refitted.iterrows():
        before = polls["field_end"] < row["cutoff"]
        if row["method"] == backtest.REFERENCE_ONLY:
            before &= (polls["pollster"] == "House A") & (polls["question"] == "Q_MAIN")
        assert row["training_readings"] == before.sum()
    assert (
        not per_target.loc[per_target["method"] == backtest.REFERENCE_ONLY, "reference"]
        .eq(False)
        .any()
    )
    assert (~per_target["reference"]).any()  # other houses' readings are targets too
    answers = v.backtest_answers
    assert set(answers["method"]) == set(backtest.METHODS)
    assert (answers["lower90"] <= answers["median"]).all() and (
        answers["median"] <= answers["upper90"]
    ).all()
    # progress: one line per refit
    assert sum("backtest" in line and "cut-off" in line for line in lines) == v.info["refits"]
    horizons = v.backtest_horizons
    assert {
        "method",
        "horizon_months",
        "n",
        "mean_log_score",
        "mae",
        "coverage50",
        "coverage90",
    } <= set(horizons.columns)
    assert "targets" not in horizons  # one row per method and horizon: the reference targets
    assert not horizons.duplicated(["method", "horizon_months"]).any()
    assert set(horizons["horizon_months"]) == {0, 3}
    assert set(horizons["method"]) == set(backtest.METHODS)
    groups = v.backtest_groups
    assert "reference" not in set(groups["targets"])
    assert not groups.duplicated(["method", "horizon_months", "targets"]).any()
    # the development and confirmation sets split the reference targets: their counts add up
    split = (
        groups[groups["targets"].isin(["development", "confirmation"])]
        .groupby(["method", "horizon_months"])[["n", "failed"]]
        .sum()
    )
    whole = horizons.set_index(["method", "horizon_months"])[["n", "failed"]]
    assert split.reindex(whole.index, fill_value=0).equals(whole)
    assert (groups["targets"] == "confirmation").any()
    other_series = set(per_target.loc[~per_target["reference"], "series"])
    assert other_series and other_series <= set(groups["targets"])
    paired = v.backtest_paired
    assert (
        set(paired["method"]) <= set(backtest.METHODS) - {backtest.MODEL}
        and (paired["n"] > 0).all()
    )
    assert {"method", "horizon_months", "answer", "mean_signed_error"} <= set(
        v.backtest_bias.columns
    )


def test_sbc_ranks_every_quantity_of_every_dataset(validation):
    v, lines = validation
    assert len(v.sbc_fits) == 2 and set(v.sbc_ranks["dataset"]) == {0, 1}
    names = set(v.sbc["quantity"])
    assert {"walk_sd", "nonsampling_sd", "jump[event, talks]"} <= names
    assert (
        sum(n.startswith("pair_sum[") for n in names) == 2
        and sum(n.startswith("share[") for n in names) == 4
    )
    assert v.sbc_ranks["rank"].between(0, sbc.RANK_DRAWS).all()
    assert (v.sbc["datasets"] == 2).all()
    assert {"accepted", "min_ranked_ess", "gate_passed"} <= set(v.sbc_fits.columns)
    assert (v.sbc_fits["accepted"] == (v.sbc_fits["min_ranked_ess"] >= sbc.ACCEPT_ESS)).all()
    assert (v.sbc_fits["log_density"] == "hand-written").all()
    assert sum("SBC dataset" in line for line in lines) == 2


def test_the_backtests_tables_are_in_the_methods_order_whatever_order_tasks_finished_in(
    validation,
):
    v, _ = validation
    order = {m: k for k, m in enumerate(backtest.methods_of(v.backtest_targets))}
    for table in (v.backtest_targets, v.backtest_answers):
        keys = table[["method", "horizon_months", "field_start", "series"]].assign(
            method=table["method"].map(order)
        )
        pd.testing.assert_frame_equal(keys, keys.sort_values(list(keys), kind="stable"))


def test_the_run_folder_is_written_whole(validation, tmp_path):
    v, _ = validation
    folder = write_validation(v, tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("validate-")
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary sibling left
    for name in (
        "backtest.csv",
        "backtest_targets.csv",
        "backtest_answers.csv",
        "backtest_horizons.csv",
        "backtest_groups.csv",
        "sbc.csv",
        "sbc_ranks.csv",
        "settings.json",
        "summary.txt",
    ):
        assert (folder / name).is_file(), name
    for name in ("backtest", "backtest_scores", "backtest_horizons", "sbc_ranks", "sbc_ecdf"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 10_000
    back = pd.read_csv(folder / "backtest.csv")
    pd.testing.assert_frame_equal(back, v.backtest, check_dtype=False)
    assert "model" in (folder / "summary.txt").read_text()


def test_a_failed_task_is_reported_with_its_cutoff_and_the_others_are_kept():
    from distributed import Client, LocalCluster

    target = backtest.Target(
        source_row=7,
        poll_id="House A | Q_MAIN | 2024-05-01",
        series="House A | Q_MAIN",
        reference=True,
        confirmation=False,
        field_start=pd.Timestamp("2024-05-01"),
        field_end=pd.Timestamp("2024-05-05"),
        horizon=0,
        cutoff=pd.Timestamp("2024-05-01"),
        training_rows=(1, 2),
    )
    refit = backtest.Refit(method="model", training_rows=(1, 2), targets=(target,))
    ok = {
        "ranks": pd.DataFrame(
            {"quantity": ["walk_sd"], "rank": [3], "covered50": [True], "covered90": [True]}
        ),
        "gate_passed": True,
        "gate_failures": "",
        "sample_s": 1.0,
    }
    lines = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        good = client.submit(lambda: ok, pure=False)
        # no poll table: the real task function raises on the worker
        bad = client.submit(
            lambda r: backtest_task(None, model.Config(), r, None, TINY, 1, 1),
            refit,
            pure=False,
        )
        tasks = {
            good: {"kind": "sbc", "dataset": 0},
            bad: {"kind": "backtest", "refit": refit},
        }
        refits, _, ranks, sbc_rows, failures = gather(tasks, lines.append)
    assert len(failures) == 1 and "cut-off 2024-05-01" in failures[0]["task"]
    assert refits[0]["error"] and refits[0]["cutoff"] == pd.Timestamp("2024-05-01")
    assert len(ranks) == 1 and sbc_rows[0]["dataset"] == 0
    assert any("FAILED backtest model, cut-off 2024-05-01" in line for line in lines)
