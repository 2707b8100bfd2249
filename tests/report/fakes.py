"""A fake :class:`model.FitResult` built by hand, shaped like a real fit's (no sampling).

10 simulated readings by two houses (``House A`` the reference, asking ``Q_MAIN``; ``House B``
asking only ``Q_ALT``, so the two effects are identified only as their sum), three answers, a
weekly grid of about 20 cells and one event; a posterior of 2 chains x 60 draws built directly
with xarray. Shared by the report tests (figures, page, browser).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

import model
from model.aggregator.design import build_design
from model.data.polls import table_checksum
from model.results.fit_result import FitResult

ANSWERS = ("talks", "continue", "undecided")
HOUSE_A = "House <A> & Co"  # a name that needs HTML escaping
CHAINS, DRAWS = 2, 60
EVENT = model.Event(date="2023-03-01", label="test event")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def fake_result(
    through: str | None = None, stored_precision: str = "float64", house_effects: str = HOUSE_A
) -> FitResult:
    """A FitResult whose idata is built by hand, shaped like a real fit's (``through``: projected
    past the data; ``stored_precision``: the config's, for its run folder's ``posterior.nc``;
    ``house_effects``: what fixes the curve's level, by default ``House A`` as the reference)."""
    rng = np.random.default_rng(3)
    sim = model.simulate_polls(
        pollsters=(HOUSE_A, "House B"),
        questions=("Q_MAIN", "Q_ALT"),
        n_readings=10,
        start="2023-01-02",
        end="2023-05-14",
        seed=19,
    )
    table = sim.polls.copy()
    table.loc[table["pollster"] == "House B", "question"] = (
        "Q_ALT"  # House B asks only Q_ALT: a confounded pair
    )
    table["src_rows"] = [f"sim-{i:02d}" for i in range(len(table))]
    table.loc[1, "src_rows"] = "sim-01;sim-99"
    table["flags"] = ""
    table["closed"] = "false"
    table.loc[table.index[table["pollster"] == "House B"][0], "closed"] = (
        "true"  # one closed poll, in a confounded pair
    )
    config = model.Config(
        house_effects=house_effects,
        reference_question="Q_MAIN",
        events=(EVENT,),
        through=through,
        stored_precision=stored_precision,
    )
    polls = model.load_polls(table)
    design = build_design(polls, config)
    n_time, n_poll, k = len(design.time), len(design.polls), len(ANSWERS)
    shape = (CHAINS, DRAWS)

    walk = np.cumsum(rng.normal(0, 0.04, size=(n_time, k)), axis=0)
    trend = np.array([0.5, 0.1, -0.6]) + walk + rng.normal(0, 0.05, size=(*shape, n_time, k))
    trend -= trend.mean(axis=-1, keepdims=True)
    house = np.zeros((*shape, 2, k))
    house[:, :, 1] = np.array([-0.2, 0.15, 0.05]) + rng.normal(0, 0.05, size=(*shape, k))
    question = np.zeros((*shape, 2, k))
    question[:, :, 1] = np.array([0.1, -0.1, 0.0]) + rng.normal(0, 0.05, size=(*shape, k))
    predictive = np.clip(
        design.observed + rng.normal(0, 0.02, size=(*shape, n_poll, k)), 0.001, 0.999
    )
    predictive = np.where(design.component_used, predictive, 1.0)

    sample = {"chain": np.arange(CHAINS), "draw": np.arange(DRAWS)}
    coords = {
        **sample,
        "time": design.time,
        "answer": list(ANSWERS),
        "pollster": list(design.pollsters),
        "question": list(design.questions),
        "event": [EVENT.label],
        "poll": list(design.polls["poll_id"]),
        "component": ["c0", "c1", "c2"],
    }
    posterior = xr.Dataset(
        {
            "trend_logit": (("chain", "draw", "time", "answer"), trend),
            "share": (("chain", "draw", "time", "answer"), 100 * _softmax(trend)),
            "house_effect": (("chain", "draw", "pollster", "answer"), house),
            "question_effect": (("chain", "draw", "question", "answer"), question),
            "jump": (("chain", "draw", "event", "answer"), rng.normal(0, 0.1, size=(*shape, 1, k))),
            **{
                name: (("chain", "draw"), np.abs(rng.normal(scale, scale / 5, size=shape)))
                for name, scale in (
                    ("walk_sd", 0.03),
                    ("house_sd", 0.2),
                    ("question_sd", 0.3),
                    ("nonsampling_sd", 2.0),
                )
            },
        },
        coords={
            c: coords[c]
            for c in ("chain", "draw", "time", "answer", "pollster", "question", "event")
        },
    )
    pp_coords = {c: coords[c] for c in ("chain", "draw", "poll", "component")}
    tree = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "sample_stats": xr.Dataset(
                {
                    "energy": (("chain", "draw"), rng.normal(0, 5, size=shape)),
                    "diverging": (("chain", "draw"), np.zeros(shape, bool)),
                },
                coords=sample,
            ),
            "posterior_predictive": xr.Dataset(
                {"obs_share": (("chain", "draw", "poll", "component"), predictive)},
                coords=pp_coords,
            ),
            "observed_data": xr.Dataset(
                {"obs_share": (("poll", "component"), design.observed)},
                coords={c: coords[c] for c in ("poll", "component")},
            ),
            "log_likelihood": xr.Dataset(
                {
                    "obs_share": (
                        ("chain", "draw", "poll"),
                        rng.normal(2, 0.1, size=(*shape, n_poll)),
                    )
                },
                coords={c: coords[c] for c in ("chain", "draw", "poll")},
            ),
            # half-normal log densities of the scales, as a real fit's log_prior group holds
            "log_prior": xr.Dataset(
                {
                    name: -0.5 * (posterior[name] / 0.3) ** 2
                    for name in ("walk_sd", "house_sd", "question_sd", "nonsampling_sd")
                }
            ),
        }
    )
    tree.attrs.update(
        {
            "config": json.dumps(config.to_dict(), sort_keys=True),
            "config_hash": config.hash(),
            "data_checksum": table_checksum(design.polls),
            "reference_pollster": design.reference_pollster or "",
            "seed": 5,
            "created": "2026-01-01T00:00:00Z",
            "package_version": model.__version__,
        }
    )
    diagnostics = {
        "passed": False,
        "failures": ["3 divergent transitions (expected none)"],
        "warnings": ["1 reading(s) with Pareto k > 0.7"],
        "thresholds": {"max_rhat": 1.01, "min_ess": 400, "max_divergences": 0, "min_bfmi": 0.3},
        "max_rhat": 1.004,
        "max_rhat_variable": "trend_logit",
        "min_ess_bulk": 512.0,
        "min_ess_bulk_variable": "walk_sd",
        "min_ess_tail": 610.0,
        "min_ess_tail_variable": "house_sd",
        "sampling_attempts": [
            {"target_accept": 0.9, "divergences": 5, "seconds": 1.0},
            {"target_accept": 0.99, "divergences": 3, "seconds": 2.0},
        ],
        "divergences": 3,
        "bfmi_per_chain": [0.9, 0.95],
        "min_bfmi": 0.9,
        "treedepth_saturation": 0.0,
        "coverage50": 0.55,
        "coverage90": 0.92,
        "elpd_loo": 40.5,
        "elpd_loo_se": 3.2,
        "p_loo": 6.1,
        "pareto_k_threshold": 0.7,
        "loo_pit_outside": {
            "talks": {"readings": 10, "outside_05_95": 2},
            "continue": {"readings": 9, "outside_05_95": 0},
        },
        "high_pareto_k": [
            {
                "pollster": "House B",
                "question": "Q_ALT",
                "field_start": "2023-02-01",
                "field_end": "2023-02-05",
                "pareto_k": 0.81,
            }
        ],
        "readings": [],
    }
    return FitResult(
        idata=tree,
        config=config,
        polls=design.polls,
        seed=5,
        excluded=pd.DataFrame(),
        _diagnostics=diagnostics,
    )


def passed(result: FitResult) -> FitResult:
    """``result`` as if its diagnostics gate had passed (the fake fit's failed)."""
    import dataclasses

    diagnostics = {**result.diagnostics(), "passed": True, "failures": []}
    return dataclasses.replace(result, _diagnostics=diagnostics)


def with_trend(result: FitResult, trend: str) -> FitResult:
    """``result`` as a fit under ``trend``: its config's, and for ``"momentum"`` the persistence
    draws the model then has (a table with walk segments between knots)."""
    import dataclasses

    idata = result.idata.copy()
    if trend == "momentum":
        posterior = idata.posterior.to_dataset()
        draws = np.full((posterior.sizes["chain"], posterior.sizes["draw"]), 0.8)
        idata["posterior"] = posterior.assign(slope_persistence=(("chain", "draw"), draws))
    return dataclasses.replace(
        result, config=result.config.replace(trend=trend), idata=idata, _diagnostics=None
    )
