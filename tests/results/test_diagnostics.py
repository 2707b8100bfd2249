"""The gate's mixing figures are ArviZ's, to the last bit, computed for every entry at once (no sampling)."""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr

from model.results.diagnostics import _entries, _entry_figures, mixing


def posterior(chains: int, draws: int, seed: int = 0, missing: bool = True) -> xr.Dataset:
    """Autocorrelated draws with the awkward cases of a real trace: a structurally constant entry
    (a reference effect), repeated draws (ties), a poorly mixing entry and a missing draw."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(size=(chains, draws, 3, 2)), axis=1) * 0.1
    effect = walk + rng.normal(size=(chains, draws, 3, 2))
    effect[:, :, 0, :] = 0.0  # the reference: constant, left out
    effect[:, 1::3, 1, 0] = effect[:, ::3, 1, 0][:, : effect[:, 1::3].shape[1]]  # ties
    effect[:, :, 2, 1] += np.arange(chains)[:, None]  # chains that disagree
    scale = np.abs(rng.normal(size=(chains, draws))) + 1
    share = rng.dirichlet([5, 3, 1], size=(chains, draws, 4))
    if missing:
        share[0, 0, 3, :] = np.nan  # a draw missing: the entry is left out
    dims = ("chain", "draw")
    return xr.Dataset(
        {
            "effect": ((*dims, "pollster", "answer"), effect),
            "scale": (dims, scale),
            "share": ((*dims, "time", "component"), share),
        }
    )


def arviz_mixing(post: xr.Dataset) -> dict:
    """The same figures from ArviZ's own per-variable functions."""
    masked = xr.Dataset(
        {
            name: da.where((da.max(("chain", "draw")) - da.min(("chain", "draw"))) > 0)
            for name, da in post.data_vars.items()
        }
    )
    out = {}
    for key, table, pick in (
        ("max_rhat", azs.rhat(masked), np.nanmax),
        ("min_ess_bulk", azs.ess(masked, method="bulk"), np.nanmin),
        ("min_ess_tail", azs.ess(masked, method="tail"), np.nanmin),
    ):
        per_var = {
            n: da.values for n, da in table.data_vars.items() if np.isfinite(da.values).any()
        }
        value = pick([pick(v) for v in per_var.values()]) if per_var else np.nan
        out[key] = value
        # on a tie, the variable that comes last (as the gate has always named it)
        out[f"{key}_variable"] = ([n for n, v in per_var.items() if pick(v) == value] or [""])[-1]
    return out


@pytest.mark.parametrize(("chains", "draws"), [(4, 200), (2, 301), (1, 50), (3, 4)])
def test_mixing_is_arviz_to_the_last_bit(chains, draws):
    post = posterior(chains, draws)
    ours, theirs = mixing(post), arviz_mixing(post)
    for key in ("max_rhat", "min_ess_bulk", "min_ess_tail"):
        if np.isnan(theirs[key]):
            assert np.isnan(ours[key]) and ours[f"{key}_variable"] == "", key
        else:
            assert ours[key] == theirs[key], key  # equal, not close
            assert ours[f"{key}_variable"] == theirs[f"{key}_variable"], key


def test_too_few_draws_give_no_figures():
    ours = mixing(posterior(2, 3))
    assert np.isnan(ours["max_rhat"]) and np.isnan(ours["min_ess_bulk"])


def test_entries_in_threaded_blocks_give_the_same_bits():
    """The blocks computed in parallel threads give each entry's figures exactly as one block."""
    values = _entries(posterior(4, 200))[0]
    one_block = _entry_figures(values, threads=1, block_rows=len(values), mean_ess=True)
    blocks = _entry_figures(values, threads=3, block_rows=2, mean_ess=True)
    for serial, threaded in zip(one_block, blocks):
        np.testing.assert_array_equal(threaded, serial)  # equal, not close (NaN where NaN)


@pytest.mark.parametrize(("chains", "draws"), [(4, 200), (2, 301), (1, 50)])
def test_relative_efficiency_is_arvizs_loo_reff_to_the_last_bit(chains, draws):
    """The r_eff the gate's blocks give PSIS-LOO is the one ArviZ's loo computes when given none."""
    from arviz_stats.loo.loo_helper import _get_r_eff

    post = posterior(chains, draws, missing=False)
    ours = mixing(post, relative_efficiency=True)["relative_efficiency"]
    assert ours == _get_r_eff(xr.DataTree.from_dict({"posterior": post}), chains * draws)
    missing = mixing(posterior(chains, draws), relative_efficiency=True)["relative_efficiency"]
    assert missing in (None, 1.0)  # a draw missing: ArviZ computes it (1.0 for one chain)
    assert "relative_efficiency" not in mixing(post)  # the gate alone: no extra ESS pass


@pytest.mark.parametrize(("chains", "draws"), [(4, 200), (2, 301), (3, 4)])
def test_one_sort_gives_arvizs_rank_normalisations_and_numpys_median_and_quantiles(chains, draws):
    """The gate sorts each entry's draws once; the bulk and folded rank normalisations, the median
    and the tail quantiles it reads from that sort are ArviZ's and NumPy's to the last bit,
    ties included."""
    from arviz_stats.base.array import array_stats

    from model.results.diagnostics import (
        _folded_z_scale,
        _scores_in_place,
        _sort_rows,
        _sorted_median,
    )
    from model.results.summaries import quantile_of_sorted

    rng = np.random.default_rng(draws)
    values = rng.normal(size=(12, chains, draws))
    values[:4] = np.round(values[:4], 1)  # many ties
    values[4:6] = np.round(values[4:6] * 2)  # long runs of equal draws
    values[6] = 0.0
    values[6, 0, 0] = 1.0  # one draw apart from all the others
    rows = values.reshape(len(values), -1)
    order, ordered = _sort_rows(rows)
    median = _sorted_median(ordered)
    np.testing.assert_array_equal(median, np.median(rows, axis=1))
    for q in (0.0, 0.03, 0.06, 0.5, 1 / 3, 0.94, 0.97, 1.0):
        np.testing.assert_array_equal(
            quantile_of_sorted(ordered, q, axis=1), np.quantile(rows, q, axis=1)
        )
    bulk = _scores_in_place(order, ordered)
    folded = _folded_z_scale(order, ordered, median)
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(bulk[i], array_stats._z_scale(row))
        np.testing.assert_array_equal(folded[i], array_stats._z_scale(np.abs(row - median[i])))


def test_the_gate_computed_alongside_is_the_gate_computed_in_place():
    """``convergence_in_background`` gives :func:`convergence`'s figures exactly, from a snapshot
    of the trace (without its empty variables, as a fit's trace), whatever the caller does to the
    trace's groups meanwhile."""
    from model.results.diagnostics import convergence, convergence_in_background

    rng = np.random.default_rng(3)
    post = posterior(4, 200, missing=False)
    stats = xr.Dataset(
        {
            "energy": (("chain", "draw"), rng.normal(size=(4, 200)).cumsum(axis=1)),
            "diverging": (("chain", "draw"), np.zeros((4, 200), dtype=bool)),
            "maxdepth_reached": (("chain", "draw"), rng.uniform(size=(4, 200)) < 0.1),
        }
    )
    empty = post.assign(n_unknown=(("chain", "draw", "poll_unknown_n"), np.empty((4, 200, 0))))
    idata = xr.DataTree.from_dict({"posterior": empty, "sample_stats": stats})
    pending = convergence_in_background(idata)
    idata["posterior"] = xr.DataTree(post[["scale"]])  # the caller goes on
    idata["sample_stats"] = xr.DataTree(stats.isel(draw=slice(0, 10)))
    expected = convergence(xr.DataTree.from_dict({"posterior": post, "sample_stats": stats}), True)
    assert pending.result(60) == expected


def test_psis_and_power_scaling_leave_jax_unloaded():
    """arviz_base registers ``jax`` as a lazy module; SciPy's ``logsumexp`` (the Pareto fits of
    PSIS-LOO and power-scaling) loads it, 0.4-0.5 s, unless it is hidden meanwhile. PSIS-LOO of a
    small trace in a fresh interpreter, as a fit's, with and without the hiding."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.util, numpy as np, xarray as xr, arviz_stats as azs\n"
        "from model.results.diagnostics import _lazy_jax_hidden\n"
        "stub = sys.modules.get('jax')\n"
        "assert isinstance(stub, importlib.util._LazyModule), type(stub)\n"
        "rng = np.random.default_rng(0)\n"
        "ll = xr.Dataset({'y': (('chain', 'draw', 'obs'), rng.normal(size=(2, 100, 5)))})\n"
        "post = xr.Dataset({'mu': (('chain', 'draw'), rng.normal(size=(2, 100)))})\n"
        "idata = xr.DataTree.from_dict({'posterior': post, 'log_likelihood': ll})\n"
        "if sys.argv[1] == 'hidden':\n"
        "    with _lazy_jax_hidden():\n"
        "        assert 'jax' not in sys.modules\n"
        "        azs.loo(idata, pointwise=True, var_name='y')\n"
        "    assert sys.modules['jax'] is stub\n"
        "else:\n"
        "    azs.loo(idata, pointwise=True, var_name='y')\n"
        "print('jax._src' in sys.modules)\n"
    )
    loaded = {}
    for how in ("hidden", "as is"):
        done = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        loaded[how] = done.stdout.split()[-1]
    assert loaded == {"hidden": "False", "as is": "True"}


def test_a_result_takes_the_gate_computed_alongside_only_for_its_own_trace_and_pickles_without_it():
    """``FitResult.computing_convergence``: its figures serve ``diagnostics()`` while the trace is
    the one they are of; a replaced trace, a ``dataclasses.replace`` copy and a pickled copy
    compute them again (a future cannot be pickled)."""
    import dataclasses
    import pickle
    import threading

    from model.results.diagnostics import convergence
    from model.threads import in_background
    from tests.report.fakes import fake_result

    def fresh():  # the fake's diagnostics are given by hand: computed here instead
        return dataclasses.replace(fake_result(), _diagnostics=None)

    marked = {**convergence(fake_result().idata, relative_efficiency=True), "max_rhat": 9.0}
    result = fresh()
    result.computing_convergence(in_background(lambda: marked))
    assert dataclasses.replace(result)._convergence is None
    assert result.diagnostics()["max_rhat"] == 9.0  # taken from the future

    replaced = fresh()
    replaced.computing_convergence(in_background(lambda: marked))
    replaced.idata = replaced.idata.copy()
    assert replaced.diagnostics()["max_rhat"] < 9.0  # computed again, from the new trace

    release = threading.Event()
    pending = fresh()
    pending.computing_convergence(in_background(lambda: release.wait(5) and marked))
    copy = pickle.loads(pickle.dumps(pending))
    release.set()
    assert copy._convergence is None and copy.diagnostics()["max_rhat"] < 9.0
    assert pending.diagnostics()["max_rhat"] == 9.0


def test_arviz_stats_is_imported_when_first_asked_for():
    """``arviz_stats()`` gives the package itself (imported on the first call; that the fitting
    code imports without it: tests/test_layers.py)."""
    import sys

    from model.results.diagnostics import arviz_stats

    assert arviz_stats() is sys.modules["arviz_stats"]


def test_an_r_hat_that_cannot_be_computed_fails_the_gate_in_words():
    """No finite R-hat (say one short chain): the gate fails, saying so, not "nan > 1.01 ()"."""
    from model.results.diagnostics import slow_mixing

    conv = {
        "max_rhat": float("nan"),
        "max_rhat_variable": "",
        "min_ess_bulk": 800.0,
        "min_ess_bulk_variable": "walk_sd",
        "min_ess_tail": 900.0,
        "min_ess_tail_variable": "walk_sd",
    }
    assert slow_mixing(conv) == [
        "R-hat could not be computed for any quantity (too few chains or draws, or chains that "
        "did not move)"
    ]
    assert slow_mixing({**conv, "max_rhat": 1.02, "max_rhat_variable": "walk_sd"}) == [
        "max R-hat 1.020 > 1.01 (walk_sd)"
    ]
