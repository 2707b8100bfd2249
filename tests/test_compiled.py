"""model.compiled: nutpie's C callbacks built without closures, cached on disk (no sampling here)."""

from __future__ import annotations

import ctypes
import uuid

import numpy as np
import pytensor
import pytest

import model
from model.aggregator import PollAggregator
from model.compiled import CACHE_TAG_ENV, _layout_dir, _model_key, _read_layout, _shared_layout, callbacks_cached, compile_model
from model.design import build_design

CONFIG = model.Config(reference_question="Q_MAIN", house_effects="House A")


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def _logp_and_grad(compiled, x: np.ndarray) -> tuple[int, float, np.ndarray]:
    """Call the log-density callback as nuts-rs does."""
    grad = np.full(compiled.n_dim, np.nan)
    logp = np.full((), np.nan)
    x = np.ascontiguousarray(x, dtype=float)
    rc = compiled.compiled_logp_func.ctypes(
        compiled.n_dim, _ptr(x), _ptr(grad), _ptr(logp), ctypes.c_void_p(compiled.user_data.ctypes.data)
    )
    return rc, float(logp), grad


def _expand(compiled, x: np.ndarray) -> tuple[int, np.ndarray]:
    out = np.full(compiled.n_expanded, np.nan)
    x = np.ascontiguousarray(x, dtype=float)
    rc = compiled.compiled_expand_func.ctypes(
        compiled.n_dim, compiled.n_expanded, _ptr(x), _ptr(out), ctypes.c_void_p(compiled.user_data.ctypes.data)
    )
    return rc, out


def _as_point(compiled, x: np.ndarray) -> dict[str, np.ndarray]:
    names, slices, shapes = compiled.shape_info
    free = compiled.n_dim
    return {n: x[s].reshape(shape) for n, s, shape in zip(names, slices, shapes) if s.stop <= free}


#: This module's cache tag: its entries are its own, and removed after it.
_TAG = f"test-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def compiled_pair(sim_polls):
    """The refit form (its readings' weights and shares are shared data that ``with_data`` swaps),
    compiled twice under a cache tag of this test's own: first through PyTensor (nothing cached under
    the tag), then from the disk cache. The tag's cache files are removed afterwards."""
    design = build_design(sim_polls, CONFIG)
    pymc_model = PollAggregator(design, CONFIG, refit=True).build()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_TAG_ENV, _TAG)
        fresh = compile_model(pymc_model)
        cached = compile_model(pymc_model)
        key, _ = _model_key(pymc_model, None)
        layout = _read_layout(key)
    yield design, pymc_model, fresh, cached, layout
    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    for callback in ("logp", "expand"):
        if layout is None:
            break
        for path in NUMBA_CACHE_PATH.glob(f"*-{layout[callback]['key']}.*"):
            path.unlink(missing_ok=True)
    (_layout_dir() / f"{key}.json").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def reference(compiled_pair):
    """PyTensor's own log density, gradient and stored variables of the model (they read its shared
    data when called, so ``set_data`` reaches them)."""
    design, pymc_model, fresh, cached, layout = compiled_pair
    names, _, _ = fresh.shape_info
    as_values = {v.name: v for v in pymc_model.unobserved_value_vars}  # functions of the free values, not draws
    stored = [as_values[n] for n in names[len(pymc_model.free_RVs) :]]
    return (
        pymc_model.compile_logp(),
        pymc_model.compile_dlogp(),
        pymc_model.compile_fn(stored, inputs=pymc_model.value_vars, on_unused_input="ignore"),
    )


def test_first_compile_goes_through_pytensor_and_the_second_loads_everything_from_disk(compiled_pair):
    design, pymc_model, fresh, cached, layout = compiled_pair
    assert callbacks_cached(fresh) == "miss" and fresh.logp_func is not None
    # The second skips PyTensor altogether: no rewriting, no PyTensor functions, machine code loaded.
    assert callbacks_cached(cached) == "hit" and cached.logp_func is None and cached.expand_func is None
    assert (cached.n_dim, cached.n_expanded, cached.shapes) == (fresh.n_dim, fresh.n_expanded, fresh.shapes)
    assert cached.shape_info[0] == fresh.shape_info[0] and cached.dims == fresh.dims
    np.testing.assert_array_equal(cached.initial_point_func(4), fresh.initial_point_func(4))
    x = fresh.initial_point_func(2)
    assert _logp_and_grad(cached, x)[1] == _logp_and_grad(fresh, x)[1]
    np.testing.assert_array_equal(_logp_and_grad(cached, x)[2], _logp_and_grad(fresh, x)[2])
    np.testing.assert_array_equal(_expand(cached, x)[1], _expand(fresh, x)[1])


@pytest.mark.parametrize("which", ["fresh", "cached"])
def test_callbacks_evaluate_the_models_log_density_gradient_and_deterministics(compiled_pair, reference, which):
    design, pymc_model, fresh, cached, layout = compiled_pair
    compiled = {"fresh": fresh, "cached": cached}[which]
    logp_fn, dlogp_fn, stored_fn = reference
    rng = np.random.default_rng(5)
    for i in range(3):
        x = compiled.initial_point_func(i) + 0.5 * rng.normal(size=compiled.n_dim)
        rc, logp, grad = _logp_and_grad(compiled, x)
        assert rc == 0
        point = _as_point(compiled, x)
        np.testing.assert_allclose(logp, logp_fn(point), rtol=1e-10)
        np.testing.assert_allclose(grad, dlogp_fn(point), rtol=1e-8, atol=1e-10)
        rc, values = _expand(compiled, x)
        assert rc == 0
        np.testing.assert_array_equal(values[: compiled.n_dim], x)
        expected = np.concatenate([np.ravel(v) for v in stored_fn(point)])
        np.testing.assert_allclose(values[compiled.n_dim :], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("which", ["fresh", "cached"])
def test_with_data_reaches_the_callbacks(compiled_pair, reference, which):
    """Swapping readings' weights and shares through nutpie's ``with_data`` changes what the callback
    computes exactly as setting the model's data does (the arrays are read through the user-data pointers)."""
    design, pymc_model, fresh, cached, layout = compiled_pair
    compiled = {"fresh": fresh, "cached": cached}[which]
    x = compiled.initial_point_func(1)
    point = _as_point(compiled, x)
    weights = np.ones(len(design.polls))
    weights[[2, 7]] = 0.0
    observed = design.observed.copy()[:, ::-1]
    swapped = compiled.with_data(in_likelihood=weights, observed_share=observed)
    rc, logp, grad = _logp_and_grad(swapped, x)
    assert rc == 0
    try:
        pymc_model.set_data("in_likelihood", weights)
        pymc_model.set_data("observed_share", observed)
        expected = reference[0](point)
        expected_grad = reference[1](point)
    finally:
        pymc_model.set_data("in_likelihood", np.ones(len(design.polls)))
        pymc_model.set_data("observed_share", design.observed)
    np.testing.assert_allclose(logp, expected, rtol=1e-10)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-10)
    # ...and the original compiled model still reads the original data.
    assert _logp_and_grad(compiled, x)[1] != pytest.approx(logp, rel=1e-6)


def test_the_model_key_follows_the_graph_and_data_but_not_shared_values(sim_polls):
    """Changing a constant of the graph (one reading dropped) or the model's form changes the key;
    changing a shared variable's values (what ``with_data`` swaps) does not."""
    design = build_design(sim_polls, CONFIG)
    fewer = build_design(sim_polls.iloc[1:].reset_index(drop=True), CONFIG)
    refit = PollAggregator(design, CONFIG, refit=True).build()
    key, shared = _model_key(refit, None)
    assert key is not None and {"in_likelihood", "observed_share"} <= set(shared)
    assert _model_key(PollAggregator(design, CONFIG, refit=True).build(), None)[0] == key
    assert _model_key(PollAggregator(design, CONFIG).build(), None)[0] != key
    assert _model_key(PollAggregator(fewer, CONFIG).build(), None)[0] != _model_key(PollAggregator(design, CONFIG).build(), None)[0]
    assert _model_key(refit, ["share"])[0] != key
    weights = np.ones(len(design.polls))
    weights[0] = 0.0
    refit.set_data("in_likelihood", weights)
    assert _model_key(refit, None)[0] == key


def test_user_data_layout_other_than_packed_uint64_is_refused():
    class Var:
        ndim = 1

    record = np.zeros((), dtype=[("shared", [("data", [("k", np.uint32)]), ("size", [("k", np.uint64)]), ("shape", [("k", np.uint64, (1,))])])])
    with pytest.raises(RuntimeError, match="packed uint64 layout"):
        _shared_layout({Var(): "k"}, record)


def test_an_integer_scalar_shared_value_is_keyed_as_it_may_set_a_shape():
    import pymc as pm
    import pytensor

    length = pytensor.shared(np.int64(3), name="length")
    scale = pytensor.shared(1.5, name="scale")
    with pm.Model() as pymc_model:
        pm.Normal("x", sigma=scale, shape=(length,))
    key, shared = _model_key(pymc_model, None)
    assert key is not None and set(shared) == {"length", "scale"}
    scale.set_value(2.5)
    assert _model_key(pymc_model, None)[0] == key  # data read when sampling
    length.set_value(4)
    assert _model_key(pymc_model, None)[0] != key  # a different parameter count


_KEY_SCRIPT = """
import model
from model.aggregator import PollAggregator
from model.compiled import _model_key
from model.design import build_design
polls = model.load_polls(model.simulate_polls(n_readings=70, seed=11).polls)
config = model.Config(reference_question="Q_MAIN", house_effects="House A")
print(_model_key(PollAggregator(build_design(polls, config), config, refit=True).build(), None)[0])
"""


def test_the_model_key_is_the_same_in_another_process(sim_polls):
    """The layout cache is only of use if a new process (another ``make fit``) computes the same key,
    whatever its hash seed."""
    import os
    import subprocess
    import sys

    design = build_design(sim_polls, CONFIG)
    here = _model_key(PollAggregator(design, CONFIG, refit=True).build(), None)[0]
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", _KEY_SCRIPT], capture_output=True, text=True, env=env, check=True)
    assert there.stdout.strip().splitlines()[-1] == here


def test_a_damaged_layout_is_ignored_with_a_warning(compiled_pair, monkeypatch):
    """A layout file that does not hold what it should (or whose callbacks are gone) costs a compile,
    never a wrong model: compile_model warns and compiles through PyTensor."""
    import model.compiled as compiled_module

    design, pymc_model, fresh, cached, layout = compiled_pair
    monkeypatch.setenv(CACHE_TAG_ENV, _TAG)  # the fixture's callbacks: only the layout is damaged
    monkeypatch.setattr(compiled_module, "_read_layout", lambda key: {"n_dim": fresh.n_dim})
    monkeypatch.setattr(compiled_module, "_write_layout", lambda key, layout: None)
    with pytest.warns(UserWarning, match="ignoring the cached layout"):
        again = compile_model(pymc_model)
    assert again.logp_func is not None  # went through PyTensor
    x = fresh.initial_point_func(3)
    assert _logp_and_grad(again, x)[1] == _logp_and_grad(fresh, x)[1]


def test_a_layout_whose_free_shapes_no_longer_hold_is_not_used(compiled_pair):
    """Loading from a layout checks the free variables' shapes against the model's initial point."""
    from model.compiled import _from_layout, _initial_point_function

    design, pymc_model, fresh, cached, layout = compiled_pair
    _, shared = _model_key(pymc_model, None)
    initial = _initial_point_function(pymc_model)
    assert _from_layout(pymc_model, layout, shared, initial) is not None
    names, slices, shapes = layout["shape_info"]
    wrong = dict(layout, shape_info=[names, slices, [[s[0] + 1, *s[1:]] if s else s for s in shapes]])
    assert _from_layout(pymc_model, wrong, shared, initial) is None


def _fast_math_recorder(seen: list):
    """A stand-in for a compile step: records PyTensor's fast-math setting when called, then stops."""

    def record(*args, **kwargs):
        seen.append(pytensor.config.numba__fastmath)
        raise RuntimeError("recorded")

    return record


def test_compile_model_turns_fast_math_off(sim_polls, monkeypatch):
    """Fast-math results depend on whether a kernel was compiled in-process or loaded from numba's
    cache (model.compiled.exact_arithmetic): compile_model compiles without it, whatever PyTensor's
    setting (here switched on), and leaves the setting as it was."""
    import nutpie.compile_pymc

    seen = []
    design = build_design(sim_polls, CONFIG)
    pymc_model = PollAggregator(design, CONFIG).build()
    monkeypatch.setenv(CACHE_TAG_ENV, uuid.uuid4().hex)  # nothing cached: compile_model goes through PyTensor
    monkeypatch.setattr(nutpie.compile_pymc, "_make_functions", _fast_math_recorder(seen))
    with pytensor.config.change_flags(numba__fastmath=True):
        with pytest.raises(RuntimeError, match="recorded"):
            compile_model(pymc_model)
        assert pytensor.config.numba__fastmath is True
    assert seen == [False]


def test_fit_samples_and_post_processes_without_fast_math(sim_polls, monkeypatch):
    """model.fit compiles sampling, log likelihood, predictive draws and log prior without fast-math,
    whatever PyTensor's setting (here switched on)."""
    import model.fitting as fitting

    seen = []
    monkeypatch.setattr(fitting, "_sample_and_extend", _fast_math_recorder(seen))
    with pytensor.config.change_flags(numba__fastmath=True):
        with pytest.raises(RuntimeError, match="recorded"):
            model.fit(sim_polls, config=CONFIG, seed=1, progressbar=False)
        assert pytensor.config.numba__fastmath is True
    assert seen == [False]
