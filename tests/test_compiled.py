"""model.compiled: nutpie's C callbacks built without closures, cached on disk (no sampling here)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import model
from model.aggregator import PollAggregator
from model.compiled import _shared_layout, compile_model
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


@pytest.fixture(scope="module")
def refit_model(sim_polls):
    """The refit form (its readings' weights and shares are shared data that ``with_data`` swaps)."""
    design = build_design(sim_polls, CONFIG)
    pymc_model = PollAggregator(design, CONFIG, refit=True).build()
    return design, pymc_model, compile_model(pymc_model)


def test_callbacks_evaluate_the_models_log_density_gradient_and_deterministics(refit_model):
    design, pymc_model, compiled = refit_model
    logp_fn = pymc_model.compile_logp()
    dlogp_fn = pymc_model.compile_dlogp()
    rng = np.random.default_rng(5)
    for i in range(4):
        x = compiled.initial_point_func(i) + 0.5 * rng.normal(size=compiled.n_dim)
        rc, logp, grad = _logp_and_grad(compiled, x)
        assert rc == 0
        point = _as_point(compiled, x)
        np.testing.assert_allclose(logp, logp_fn(point), rtol=1e-10)
        np.testing.assert_allclose(grad, dlogp_fn(point), rtol=1e-8, atol=1e-10)
        rc, values = _expand(compiled, x)
        assert rc == 0
        (expected,) = compiled.expand_func(x)
        np.testing.assert_array_equal(values, expected)
        np.testing.assert_array_equal(values[: compiled.n_dim], x)


def test_with_data_reaches_the_callbacks(refit_model):
    """Swapping a reading's weight through nutpie's ``with_data`` changes what the callback computes
    exactly as setting the model's data does (the arrays are read through the user-data pointers)."""
    design, pymc_model, compiled = refit_model
    x = compiled.initial_point_func(1)
    point = _as_point(compiled, x)
    weights = np.ones(len(design.polls))
    weights[[2, 7]] = 0.0
    observed = design.observed.copy()[:, ::-1]
    swapped = compiled.with_data(in_likelihood=weights, observed_share=observed)
    rc, logp, grad = _logp_and_grad(swapped, x)
    assert rc == 0
    with pymc_model:
        pymc_model.set_data("in_likelihood", weights)
        pymc_model.set_data("observed_share", observed)
        try:
            expected = pymc_model.compile_logp()(point)
            expected_grad = pymc_model.compile_dlogp()(point)
        finally:
            pymc_model.set_data("in_likelihood", np.ones(len(design.polls)))
            pymc_model.set_data("observed_share", design.observed)
    np.testing.assert_allclose(logp, expected, rtol=1e-10)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-8, atol=1e-10)
    # ...and the original compiled model still reads the original data.
    assert _logp_and_grad(compiled, x)[1] != pytest.approx(logp, rel=1e-6)


def test_a_second_compile_of_the_same_model_loads_both_callbacks_from_the_disk_cache(refit_model):
    design, pymc_model, compiled = refit_model
    again = compile_model(pymc_model)
    again.compiled_logp_func.address  # noqa: B018 (compiles or loads)
    again.compiled_expand_func.address  # noqa: B018
    assert again.compiled_logp_func._cache_hits == 1
    assert again.compiled_expand_func._cache_hits == 1
    x = compiled.initial_point_func(2)
    assert _logp_and_grad(again, x)[1] == _logp_and_grad(compiled, x)[1]
    np.testing.assert_array_equal(_logp_and_grad(again, x)[2], _logp_and_grad(compiled, x)[2])


def test_user_data_layout_other_than_packed_uint64_is_refused():
    class Var:
        ndim = 1

    record = np.zeros((), dtype=[("shared", [("data", [("k", np.uint32)]), ("size", [("k", np.uint64)]), ("shape", [("k", np.uint64, (1,))])])])
    with pytest.raises(RuntimeError, match="packed uint64 layout"):
        _shared_layout({Var(): "k"}, record)
