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
    config = model.Config(reference_question="Q_MAIN", house_effects="House A")
    settings = ValidateSettings(
        since="2024-08-01",
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
    table = v.backtest
    assert list(table["method"]) == list(backtest.METHODS)
    assert (table["n"] == v.info["targets"]).all() and v.info["targets"] >= 1
    assert (table["failed"] == 0).all() and v.failures.empty
    assert np.isfinite(
        table[["mean_log_score", "mae", "coverage50", "coverage90"]].to_numpy()
    ).all()
    assert table["coverage50"].between(0, 1).all() and table["coverage90"].between(0, 1).all()
    assert (
        table["coverage90"] >= table["coverage50"]
    ).all()  # per answer, a 90% interval holds the 50% one
    assert (table["mae"] >= 0).all()
    refits = v.backtest_targets[
        v.backtest_targets["method"].isin([backtest.MODEL, backtest.NO_EFFECTS])
    ]
    assert len(refits) == 2 * v.info["targets"]
    assert refits["gate_passed"].notna().all() and (refits["sample_s"] > 0).all()
    # each refit learned only from readings that ended before its target began
    polls = model.load_polls(model.simulate_polls(n_readings=50, seed=3).polls)
    for _, row in refits.iterrows():
        assert row["training_readings"] == (polls["field_end"] < row["cutoff"]).sum()
    answers = v.backtest_answers
    assert set(answers["method"]) == set(backtest.METHODS)
    assert (answers["lower90"] <= answers["median"]).all() and (
        answers["median"] <= answers["upper90"]
    ).all()
    assert (
        sum("backtest" in line for line in lines) == 2 * v.info["targets"]
    )  # progress, one line per task


def test_sbc_ranks_every_quantity_of_every_dataset(validation):
    v, lines = validation
    assert len(v.sbc_fits) == 2 and set(v.sbc_ranks["dataset"]) == {0, 1}
    names = set(v.sbc["quantity"])
    assert {"walk_sd", "nonsampling_sd", "house_sd", "question_sd"} <= names
    assert any(n.startswith("house_effect[") for n in names) and any(
        n.startswith("share[") for n in names
    )
    assert v.sbc_ranks["rank"].between(0, sbc.RANK_DRAWS).all()
    assert (v.sbc["datasets"] == 2).all()
    assert sum("SBC dataset" in line for line in lines) == 2


def test_the_run_folder_is_written_whole(validation, tmp_path):
    v, _ = validation
    folder = write_validation(v, tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("validate-")
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary sibling left
    for name in (
        "backtest.csv",
        "backtest_targets.csv",
        "backtest_answers.csv",
        "sbc.csv",
        "sbc_ranks.csv",
        "settings.json",
        "summary.txt",
    ):
        assert (folder / name).is_file(), name
    for name in ("backtest", "backtest_scores", "sbc_ranks"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 10_000
    back = pd.read_csv(folder / "backtest.csv")
    pd.testing.assert_frame_equal(back, v.backtest, check_dtype=False)
    assert "model" in (folder / "summary.txt").read_text()


def test_a_failed_task_is_reported_with_its_cutoff_and_the_others_are_kept():
    from distributed import Client, LocalCluster

    target = backtest.Target(
        source_row=7,
        poll_id="House A | Q_MAIN | 2024-05-01",
        field_start=pd.Timestamp("2024-05-01"),
        training_rows=(1, 2),
    )
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
            lambda t: backtest_task("missing", None, model.Config(), t, TINY, 1, 1),
            target,
            pure=False,
        )
        tasks = {
            good: {"kind": "sbc", "dataset": 0},
            bad: {"kind": "backtest", "method": "model", "target": target},
        }
        refits, _, ranks, sbc_rows, failures = gather(tasks, lines.append)
    assert len(failures) == 1 and "cut-off 2024-05-01" in failures[0]["task"]
    assert refits[0]["error"] and refits[0]["cutoff"] == pd.Timestamp("2024-05-01")
    assert len(ranks) == 1 and sbc_rows[0]["dataset"] == 0
    assert any("FAILED backtest model, cut-off 2024-05-01" in line for line in lines)
