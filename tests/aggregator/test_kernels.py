"""The fused operations of model.aggregator.kernels against the plain PyTensor expressions they replace (no sampling)."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import verify_grad

from model.aggregator.kernels import field_average, segmented_walk, segmented_walk_grad

MODES = ["NUMBA", "FAST_COMPILE"]  # the numba kernels (what nutpie runs) and ``perform``


def walk_by_graph(z, change, walk_sd, start, end):
    """The walk as model.aggregator.graph built it before the fused operation (gathers and cumulative sums)."""
    n_steps, n_answer = z.type.shape
    segment = np.full(n_steps, len(start), dtype=int)
    for j, (a, b) in enumerate(zip(start, end)):
        segment[a:b] = j
    length = (np.asarray(end) - np.asarray(start)).astype(float)[:, None]
    z_cum = pt.concatenate([pt.zeros((1, n_answer)), pt.cumsum(z, axis=0)], axis=0)
    z_mean = (z_cum[np.asarray(end)] - z_cum[np.asarray(start)]) / length
    pad = pt.zeros((1, n_answer))
    per_step_mean = pt.concatenate([z_mean, pad], axis=0)[segment]
    per_step_change = pt.concatenate([change / length, pad], axis=0)[segment]
    increments = walk_sd * (z - per_step_mean) + per_step_change
    return pt.concatenate([pt.zeros((1, n_answer)), pt.cumsum(increments, axis=0)], axis=0)


def average_by_graph(trend, first, last):
    """Field-period averages through a cumulative sum and two gathers (the former graph)."""
    cum = pt.concatenate([pt.zeros((1, trend.type.shape[1])), pt.cumsum(trend, axis=0)], axis=0)
    return (cum[last + 1] - cum[first]) / (last - first + 1)[:, None]


# Segments as walk_steps lays them out: from step 0, one of length 1, free steps after the last.
START, END = np.array([0, 4, 5, 9]), np.array([4, 5, 9, 13])
N_STEPS, N_ANSWER = 17, 3


def _walk_inputs(seed: int):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(N_STEPS, N_ANSWER)),
        rng.normal(size=(len(START), N_ANSWER)),
        rng.uniform(0.1, 2.0),
    )


@pytest.mark.parametrize("mode", MODES)
def test_segmented_walk_matches_the_graph_it_replaces(mode):
    z, change, sd = (
        pt.matrix("z", shape=(N_STEPS, N_ANSWER)),
        pt.matrix("change", shape=(len(START), N_ANSWER)),
        pt.scalar("sd"),
    )
    weights = np.random.default_rng(9).normal(size=(N_STEPS + 1, N_ANSWER))
    fused = segmented_walk(z, change, sd, START, END)
    plain = walk_by_graph(z, change, sd, START, END)
    outputs = []
    for walk in (fused, plain):
        loss = pt.sum(walk * weights) + pt.sum(
            pt.sin(walk)
        )  # a non-linear loss, so every gradient path is used
        outputs += [walk, *pt.grad(loss, [z, change, sd])]
    f = pytensor.function([z, change, sd], outputs, mode=mode)
    for seed in range(3):
        values = f(*_walk_inputs(seed))
        half = len(values) // 2
        assert values[0].shape == (N_STEPS + 1, N_ANSWER)
        for got, want in zip(values[:half], values[half:]):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_segmented_walk_gradient_matches_finite_differences():
    z, change, sd = _walk_inputs(4)
    rng = np.random.default_rng(5)
    verify_grad(
        lambda a, b, c: segmented_walk(a, b, c, START, END),
        [z, change, np.asarray(sd)],
        rng=rng,
        mode="FAST_COMPILE",
    )
    verify_grad(
        lambda a, b, c: segmented_walk(a, b, c, START, END),
        [z, change, np.asarray(sd)],
        rng=rng,
        mode="NUMBA",
    )


@pytest.mark.parametrize("mode", MODES)
def test_segmented_walk_without_segments_is_the_scaled_cumulative_sum(mode):
    z, sd = pt.matrix("z", shape=(N_STEPS, N_ANSWER)), pt.scalar("sd")
    none = np.zeros(0, dtype=int)
    walk = segmented_walk(z, pt.zeros((0, N_ANSWER)), sd, none, none)
    plain = pt.concatenate([pt.zeros((1, N_ANSWER)), sd * pt.cumsum(z, axis=0)], axis=0)
    weights = np.random.default_rng(14).normal(size=(N_STEPS + 1, N_ANSWER))
    outputs = [
        out for w in (walk, plain) for out in (w, *pt.grad(pt.sum(pt.sin(w) * weights), [z, sd]))
    ]
    values = pytensor.function([z, sd], outputs, mode=mode)(*_walk_inputs(6)[::2])
    for got, want in zip(values[:3], values[3:]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_int32_indices_and_float32_inputs_are_cast_not_truncated(mode):
    z, change, sd = _walk_inputs(15)
    start, end = pt.ivector("start"), pt.ivector("end")
    f = pytensor.function(
        [start, end], segmented_walk(z.astype("float32"), change, sd, start, end), mode=mode
    )
    want = segmented_walk(z.astype("float32").astype(float), change, sd, START, END).eval(mode=mode)
    np.testing.assert_allclose(f(START.astype("int32"), END.astype("int32")), want, rtol=1e-12)
    with pytest.raises(TypeError, match="integer index"):
        segmented_walk(z, change, sd, pt.dvector(), END)
    with pytest.raises(TypeError, match="integer index"):
        field_average(z, np.array([0.5]), np.array([2.7]))


def test_segmented_walk_second_derivatives_match_finite_differences():
    z, change, sd = _walk_inputs(16)
    grad = np.random.default_rng(17).normal(size=(N_STEPS + 1, N_ANSWER))
    rng = np.random.default_rng(18)
    for mode in MODES:
        verify_grad(
            lambda a, s, g: pt.concatenate(
                [out.ravel() for out in segmented_walk_grad(a, s, START, END, g)]
            ),
            [z, np.asarray(sd), grad],
            rng=rng,
            mode=mode,
        )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("start, end", [([0, 3], [4, 6]), ([0], [N_STEPS + 1]), ([2], [2])])
def test_segmented_walk_refuses_bad_segments(mode, start, end):
    z, change, sd = _walk_inputs(7)
    starts, ends = pt.lvector("start"), pt.lvector("end")
    f = pytensor.function(
        [starts, ends], segmented_walk(z, change[: len(start)], sd, starts, ends), mode=mode
    )
    with pytest.raises(ValueError, match="segment"):
        f(np.array(start), np.array(end))


FIRST = np.array([0, 3, 3, 10, 19, 0])
LAST = np.array([0, 5, 3, 14, 19, 19])
N_CELLS = 20


@pytest.mark.parametrize("mode", MODES)
def test_field_average_matches_the_graph_it_replaces(mode):
    trend = pt.matrix("trend", shape=(N_CELLS, N_ANSWER))
    first, last = pt.lvector("first"), pt.lvector("last")
    weights = np.random.default_rng(2).normal(size=(len(FIRST), N_ANSWER))
    outputs = []
    for average in (field_average(trend, first, last), average_by_graph(trend, first, last)):
        loss = pt.sum(pt.exp(average) * weights)
        outputs += [average, pt.grad(loss, trend)]
    f = pytensor.function([trend, first, last], outputs, mode=mode)
    values = f(np.random.default_rng(3).normal(size=(N_CELLS, N_ANSWER)), FIRST, LAST)
    np.testing.assert_allclose(values[0], values[2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(values[1], values[3], rtol=1e-12, atol=1e-12)
    trend_value = np.random.default_rng(3).normal(size=(N_CELLS, N_ANSWER))
    np.testing.assert_allclose(
        values[0][1], trend_value[3:6].mean(axis=0), rtol=1e-12
    )  # reading 1: cells 3..5


def test_field_average_gradients_match_finite_differences():
    rng = np.random.default_rng(8)
    trend = rng.normal(size=(N_CELLS, N_ANSWER))
    for mode in MODES:
        verify_grad(lambda t: field_average(t, FIRST, LAST), [trend], rng=rng, mode=mode)
        # The gradient operation's own gradient (second derivatives of the model's log density).
        verify_grad(
            lambda g: _average_pullback(trend, g),
            [rng.normal(size=(len(FIRST), N_ANSWER))],
            rng=rng,
            mode=mode,
        )


def _average_pullback(trend, average_grad):
    t = pt.constant(trend)
    return pt.grad(pt.sum(field_average(t, FIRST, LAST) * average_grad), t)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first, last", [([0, 5], [3, 4]), ([-1], [2]), ([3], [N_CELLS])])
def test_field_average_refuses_periods_outside_the_grid(mode, first, last):
    trend = np.zeros((N_CELLS, N_ANSWER))
    firsts, lasts = pt.lvector("first"), pt.lvector("last")
    f = pytensor.function([firsts, lasts], field_average(trend, firsts, lasts), mode=mode)
    with pytest.raises(ValueError, match="field"):
        f(np.array(first), np.array(last))


def test_jax_implementations_match_the_numba_kernels():
    pytest.importorskip("jax")
    from model.aggregator.kernels import register_jax

    register_jax()
    z, change, sd = (
        pt.matrix("z", shape=(N_STEPS, N_ANSWER)),
        pt.matrix("change", shape=(len(START), N_ANSWER)),
        pt.scalar("sd"),
    )
    trend = pt.matrix("trend", shape=(N_STEPS + 1, N_ANSWER))
    first, last = np.array([0, 3, 3, 10, 17]), np.array([0, 5, 3, 14, 17])
    walk = segmented_walk(z, change, sd, START, END)
    average = field_average(walk + trend, first, last)
    loss = pt.sum(pt.sin(average)) + pt.sum(walk**2)
    outputs = [walk, average, *pt.grad(loss, [z, change, sd, trend])]
    rng = np.random.default_rng(11)
    inputs = [*_walk_inputs(12), rng.normal(size=(N_STEPS + 1, N_ANSWER))]
    values = {
        mode: pytensor.function([z, change, sd, trend], outputs, mode=mode)(*inputs)
        for mode in ("NUMBA", "JAX")
    }
    for got, want in zip(values["JAX"], values["NUMBA"]):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_segmented_walk_refuses_a_change_without_a_row_per_segment(mode):
    z, change, sd = _walk_inputs(13)
    short = pt.matrix("change")
    f = pytensor.function([short], segmented_walk(z, short, sd, START, END), mode=mode)
    with pytest.raises(ValueError, match="change"):
        f(change[:-1])


def test_jax_no_segment_walk_and_empty_readings_match_numba():
    pytest.importorskip("jax")
    from model.aggregator.kernels import register_jax

    register_jax()
    z, sd = pt.matrix("z", shape=(N_STEPS, N_ANSWER)), pt.scalar("sd")
    none = np.zeros(0, dtype=int)
    walk = segmented_walk(z, pt.zeros((0, N_ANSWER)), sd, none, none)
    no_readings = field_average(walk, none, none)
    loss = pt.sum(pt.sin(walk)) + pt.sum(no_readings)
    outputs = [walk, no_readings, *pt.grad(loss, [z, sd])]
    inputs = _walk_inputs(19)[::2]
    values = {
        mode: pytensor.function([z, sd], outputs, mode=mode)(*inputs) for mode in ("NUMBA", "JAX")
    }
    assert values["NUMBA"][1].shape == (0, N_ANSWER)
    for got, want in zip(values["JAX"], values["NUMBA"]):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)
