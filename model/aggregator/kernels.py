r"""Fused PyTensor operations for the model's hot paths, with numba kernels and hand-written gradients.

Written as PyTensor graphs, the walk sampled by segments (:func:`model.aggregator.graph._walk_and_jumps`)
takes some 120 small operations for its value and gradient (cumulative sums, gathers by segment and
their scatter-add gradients, concatenations); nutpie calls that gradient tens of thousands of times
per fit, and on the shipped data each small operation costs about half a microsecond whatever its
size. :class:`SegmentedWalk` computes the same values in one pass, and :class:`SegmentedWalkGrad`
its vector-Jacobian product in one more.

:class:`FieldAverage` does the same for each reading's average of the trend over its field period
(a running sum, one difference per reading; the gradient by a difference array).

Each operation's loops are written once, as plain Python functions over arrays, and compiled by
numba: inside PyTensor's numba backend (what nutpie runs) through PyTensor's cached dispatch, and
for PyTensor's Python and C backends (``perform``) as a cached numba function.
``tests/aggregator/test_kernels.py`` checks values and gradients against the plain PyTensor
expression and against finite differences.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

#: Salt for PyTensor's numba cache key of these kernels: this module's source, so an edit recompiles.
_KERNEL_VERSION = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12], 16)


def _segmented_walk_loops(innovation, change, walk_sd_array, start, end):
    """Forward loops of :class:`SegmentedWalk` (compiled by numba; see its docstring for the maths)."""
    walk_sd = walk_sd_array.item()
    n_steps, n_answer = innovation.shape
    increment = np.empty((n_steps, n_answer))
    for s in range(n_steps):
        for k in range(n_answer):
            increment[s, k] = walk_sd * innovation[s, k]
    for j in range(start.shape[0]):
        a, b = start[j], end[j]
        m = b - a
        for k in range(n_answer):
            total = 0.0
            for s in range(a, b):
                total += innovation[s, k]
            mean = total / m
            per_step = change[j, k] / m
            for s in range(a, b):
                increment[s, k] = walk_sd * (innovation[s, k] - mean) + per_step
    walk = np.empty((n_steps + 1, n_answer))
    for k in range(n_answer):
        walk[0, k] = 0.0
    for t in range(1, n_steps + 1):
        for k in range(n_answer):
            walk[t, k] = walk[t - 1, k] + increment[t - 1, k]
    return walk


def _segmented_walk_grad_loops(innovation, walk_sd_array, start, end, walk_grad):
    """Backward loops of :class:`SegmentedWalkGrad` (compiled by numba; see its docstring)."""
    walk_sd = walk_sd_array.item()
    n_steps, n_answer = innovation.shape
    n_segments = start.shape[0]
    # after[s] = sum of walk_grad[t] over t > s: the gradient with respect to increment s.
    after = np.empty((n_steps, n_answer))
    for k in range(n_answer):
        running = 0.0
        for s in range(n_steps - 1, -1, -1):
            running += walk_grad[s + 1, k]
            after[s, k] = running
    innovation_grad = np.empty((n_steps, n_answer))
    change_grad = np.zeros((n_segments, n_answer))
    sd_grad = 0.0
    for s in range(n_steps):
        for k in range(n_answer):
            innovation_grad[s, k] = walk_sd * after[s, k]
    for j in range(n_segments):
        a, b = start[j], end[j]
        m = b - a
        for k in range(n_answer):
            total_after, total_innovation = 0.0, 0.0
            for s in range(a, b):
                total_after += after[s, k]
                total_innovation += innovation[s, k]
            mean_after = total_after / m
            mean_innovation = total_innovation / m
            change_grad[j, k] = mean_after
            for s in range(a, b):
                innovation_grad[s, k] = walk_sd * (after[s, k] - mean_after)
                sd_grad += after[s, k] * (innovation[s, k] - mean_innovation)
    # Steps in no segment: increment = walk_sd * innovation.
    in_segment = np.zeros(n_steps, dtype=np.bool_)
    for j in range(n_segments):
        for s in range(start[j], end[j]):
            in_segment[s] = True
    for s in range(n_steps):
        if not in_segment[s]:
            for k in range(n_answer):
                sd_grad += after[s, k] * innovation[s, k]
    return innovation_grad, change_grad, np.asarray(sd_grad)


def _field_average_loops(trend, first, last):
    """Forward loops of :class:`FieldAverage`: a running sum per answer, then one difference per reading."""
    n_cells, n_answer = trend.shape
    running = np.empty((n_cells + 1, n_answer))
    for k in range(n_answer):
        running[0, k] = 0.0
    for t in range(n_cells):
        for k in range(n_answer):
            running[t + 1, k] = running[t, k] + trend[t, k]
    average = np.empty((first.shape[0], n_answer))
    for i in range(first.shape[0]):
        width = last[i] - first[i] + 1
        for k in range(n_answer):
            average[i, k] = (running[last[i] + 1, k] - running[first[i], k]) / width
    return average


def _field_average_grad_loops(trend, first, last, average_grad):
    """Backward loops of :class:`FieldAverageGrad`: each reading's share added over its cells by a difference array."""
    n_cells, n_answer = trend.shape
    difference = np.zeros((n_cells + 1, n_answer))
    for i in range(first.shape[0]):
        width = last[i] - first[i] + 1
        for k in range(n_answer):
            share = average_grad[i, k] / width
            difference[first[i], k] += share
            difference[last[i] + 1, k] -= share
    trend_grad = np.empty((n_cells, n_answer))
    for k in range(n_answer):
        running = 0.0
        for t in range(n_cells):
            running += difference[t, k]
            trend_grad[t, k] = running
    return trend_grad


def _shape_valid(array, rows, columns, what):
    """Raise unless ``array`` is ``rows`` x ``columns`` (the kernels index by these shapes)."""
    if array.shape[0] != rows or array.shape[1] != columns:
        raise ValueError(
            what
            + " has shape ("
            + str(array.shape[0])
            + ", "
            + str(array.shape[1])
            + "); expected ("
            + str(rows)
            + ", "
            + str(columns)
            + ")"
        )


def _cells_valid(first, last, n_cells):
    """Raise unless every field period ``first[i] <= last[i]`` lies within the ``n_cells`` cells."""
    if first.shape[0] != last.shape[0]:
        raise ValueError(
            "field periods: "
            + str(first.shape[0])
            + " first cells but "
            + str(last.shape[0])
            + " last cells"
        )
    for i in range(first.shape[0]):
        if first[i] < 0 or last[i] < first[i] or last[i] >= n_cells:
            raise ValueError(
                "field periods must lie within the grid's "
                + str(n_cells)
                + " cells: reading "
                + str(i)
                + " covers cells "
                + str(first[i])
                + ".."
                + str(last[i])
            )


def _segments_valid(start, end, n_steps):
    """Raise unless the segments are non-empty, ordered and disjoint within ``n_steps`` steps."""
    if start.shape[0] != end.shape[0]:
        raise ValueError(
            "segments: " + str(start.shape[0]) + " starts but " + str(end.shape[0]) + " ends"
        )
    for j in range(start.shape[0]):
        if (
            start[j] < 0
            or end[j] <= start[j]
            or end[j] > n_steps
            or (j > 0 and start[j] < end[j - 1])
        ):
            raise ValueError(
                "segments must be non-empty, ordered and disjoint within "
                + str(n_steps)
                + " steps: segment "
                + str(j)
                + " covers steps "
                + str(start[j])
                + ".."
                + str(end[j] - 1)
            )


def _compile_kernels(jit) -> dict:
    """Each operation's kernel: its inputs checked, then its loops, all compiled by ``jit``.

    ``jit`` is PyTensor's numba wrapper inside its numba backend (:func:`_register_numba`) or
    ``numba.njit(cache=True)`` for ``perform`` (:func:`_kernel_for`); one kernel per operation
    serves both. Returns ``{operation class: kernel}``, each kernel taking the operation's inputs.
    """
    shape_valid, segments_valid, cells_valid = (
        jit(_shape_valid),
        jit(_segments_valid),
        jit(_cells_valid),
    )
    walk_loops, walk_grad_loops = jit(_segmented_walk_loops), jit(_segmented_walk_grad_loops)
    average_loops, average_grad_loops = jit(_field_average_loops), jit(_field_average_grad_loops)

    def walk(innovation, change, walk_sd, start, end):
        segments_valid(start, end, innovation.shape[0])
        shape_valid(
            change,
            start.shape[0],
            innovation.shape[1],
            "segmented walk: change (segments, answers)",
        )
        return walk_loops(innovation, change, walk_sd, start, end)

    def walk_grad(innovation, walk_sd, start, end, walk_gradient):
        segments_valid(start, end, innovation.shape[0])
        shape_valid(
            walk_gradient,
            innovation.shape[0] + 1,
            innovation.shape[1],
            "segmented walk: the walk's gradient",
        )
        return walk_grad_loops(innovation, walk_sd, start, end, walk_gradient)

    def average(trend, first, last):
        cells_valid(first, last, trend.shape[0])
        return average_loops(trend, first, last)

    def average_grad(trend, first, last, average_gradient):
        cells_valid(first, last, trend.shape[0])
        shape_valid(
            average_gradient,
            first.shape[0],
            trend.shape[1],
            "field average: the gradient (readings, answers)",
        )
        return average_grad_loops(trend, first, last, average_gradient)

    return {
        SegmentedWalk: jit(walk),
        SegmentedWalkGrad: jit(walk_grad),
        FieldAverage: jit(average),
        FieldAverageGrad: jit(average_grad),
    }


_perform_kernels: dict = {}


def _kernel_for(op_type):
    """The kernel ``perform`` runs (numba, compiled on first use in a process; numba's on-disk cache across processes)."""
    if not _perform_kernels:
        import numba

        _perform_kernels.update(_compile_kernels(numba.njit(cache=True)))
    return _perform_kernels[op_type]


class _KernelOp(Op):
    """An operation whose ``perform`` runs its numba kernel (:func:`_compile_kernels`) on the inputs as they are."""

    __props__ = ()

    def perform(self, node, inputs, outputs):
        results = _kernel_for(type(self))(*inputs)
        if len(outputs) == 1:
            results = (results,)
        for out, value in zip(outputs, results):
            out[0] = value


def _floats(*values):
    """As float64 tensors (cast, never truncated: refused if complex)."""
    out = []
    for value in values:
        var = pt.as_tensor_variable(value)
        if var.dtype.startswith("complex") or var.dtype == "bool":
            raise TypeError(f"expected a real-valued tensor, got {var.type}")
        out.append(var if var.dtype == "float64" else pt.cast(var, "float64"))
    return out


def _indices(*values):
    """As int64 index vectors; a float tensor is refused rather than truncated."""
    out = []
    for value in values:
        var = pt.as_tensor_variable(value)
        if var.ndim != 1 or not var.dtype.startswith(("int", "uint")):
            raise TypeError(f"expected an integer index vector, got {var.type}")
        out.append(var if var.dtype == "int64" else pt.cast(var, "int64"))
    return out


class SegmentedWalk(_KernelOp):
    r"""The walk sampled by segments, as one operation: ``walk = segmented_walk(innovation, change, walk_sd, start, end)``.

    For steps :math:`s = 0..S-1` with standardised innovations :math:`z_s` (a row per step, a column
    per answer), segments :math:`j` covering steps ``start[j] <= s < end[j]`` (:math:`m_j` steps,
    disjoint and ordered) and each segment's change :math:`c_j`:

    .. math::

        d_s = \sigma\,(z_s - \bar z_j) + c_j / m_j \quad (s \text{ in segment } j), \qquad
        d_s = \sigma z_s \quad (\text{otherwise}), \qquad
        \mathrm{walk}_0 = 0, \quad \mathrm{walk}_t = \sum_{s < t} d_s,

    with :math:`\bar z_j` the mean of :math:`z` over segment :math:`j`: the bridge-plus-change
    construction of :func:`model.aggregator.graph._walk_and_jumps`. Output: ``(S + 1, answers)``.
    """

    __props__ = ()

    def make_node(self, innovation, change, walk_sd, start, end):
        innovation, change, walk_sd = _floats(innovation, change, walk_sd)
        start, end = _indices(start, end)
        if (innovation.ndim, change.ndim, walk_sd.ndim) != (2, 2, 0):
            raise TypeError(
                "segmented_walk expects innovation (steps, answers), change (segments, answers), a scalar walk_sd and 1-d start, end"
            )
        n_steps, n_answer = innovation.type.shape
        out = pt.tensor(dtype="float64", shape=(None if n_steps is None else n_steps + 1, n_answer))
        return Apply(self, [innovation, change, walk_sd, start, end], [out])

    def infer_shape(self, node, shapes):
        n_steps, n_answer = shapes[0]
        return [(n_steps + 1, n_answer)]

    def connection_pattern(self, node):
        return [[True], [True], [True], [False], [False]]

    def pullback(self, inputs, outputs, cotangents):
        innovation, change, walk_sd, start, end = inputs
        innovation_grad, change_grad, sd_grad = segmented_walk_grad(
            innovation, walk_sd, start, end, cotangents[0]
        )
        return [innovation_grad, change_grad, sd_grad, DisconnectedType()(), DisconnectedType()()]


class SegmentedWalkGrad(_KernelOp):
    r"""Vector-Jacobian product of :class:`SegmentedWalk`: ``(d innovation, d change, d walk_sd)`` for a walk gradient :math:`G`.

    With :math:`A_s = \sum_{t > s} G_t` (the gradient with respect to step :math:`d_s`) and
    :math:`\bar A_j` its mean over segment :math:`j`:

    .. math::

        \partial z_s = \sigma (A_s - \bar A_j), \quad \partial c_j = \bar A_j, \quad
        \partial\sigma = \sum_s A_s \cdot (z_s - \bar z_j)

    (:math:`\bar A_j = \bar z_j = 0` for steps in no segment).
    """

    __props__ = ()

    def make_node(self, innovation, walk_sd, start, end, walk_grad):
        innovation, walk_sd, walk_grad = _floats(innovation, walk_sd, walk_grad)
        start, end = _indices(start, end)
        if (innovation.ndim, walk_sd.ndim, walk_grad.ndim) != (2, 0, 2):
            raise TypeError(
                "segmented_walk_grad expects innovation (steps, answers), a scalar walk_sd and the walk's gradient (steps + 1, answers)"
            )
        outputs = [
            pt.tensor(dtype="float64", shape=innovation.type.shape),
            pt.tensor(dtype="float64", shape=(start.type.shape[0], innovation.type.shape[1])),
            pt.tensor(dtype="float64", shape=()),
        ]
        return Apply(self, [innovation, walk_sd, start, end, walk_grad], outputs)

    def infer_shape(self, node, shapes):
        return [shapes[0], (shapes[2][0], shapes[0][1]), ()]

    def connection_pattern(self, node):
        # Rows: innovation, walk_sd, start, end, walk_grad; columns: d innovation, d change, d walk_sd.
        return [
            [False, False, True],
            [True, False, False],
            [False, False, False],
            [False, False, False],
            [True, True, True],
        ]

    def pullback(self, inputs, outputs, cotangents):
        r"""Second derivatives. The walk is :math:`\sigma B z + C c` (B, C fixed by the segments), so the
        outputs are :math:`\sigma B^\top G`, :math:`C^\top G` and :math:`(Bz) \cdot G`; for cotangents
        :math:`(u, v, w)` the pullback is :math:`G`: ``segmented_walk(sigma u + w z, v, 1)``,
        :math:`z`: :math:`w B^\top G`, :math:`\sigma`: :math:`u \cdot B^\top G`.
        """
        innovation, walk_sd, start, end, walk_grad = inputs
        u, v, w = cotangents
        u = pt.zeros_like(innovation) if isinstance(u.type, DisconnectedType) else u
        v = (
            pt.zeros((start.shape[0], innovation.shape[1]))
            if isinstance(v.type, DisconnectedType)
            else v
        )
        w = pt.zeros(()) if isinstance(w.type, DisconnectedType) else w
        b_transpose_g = segmented_walk_grad(innovation, 1.0, start, end, walk_grad)[0]
        return [
            w * b_transpose_g,
            pt.sum(u * b_transpose_g),
            DisconnectedType()(),
            DisconnectedType()(),
            segmented_walk(walk_sd * u + w * innovation, v, 1.0, start, end),
        ]


class FieldAverage(_KernelOp):
    r"""Each reading's average of the trend over its field period: ``average[i] = mean(trend[first[i]:last[i] + 1])``.

    The field-period averaging of :class:`model.aggregator.graph.PollAggregator`
    (:math:`\bar\eta_i = \frac{1}{b_i - a_i + 1}\sum_{t=a_i}^{b_i} \eta_t`) as one operation, through a
    running sum (cost: cells plus readings, whatever the field periods' lengths). Output: ``(readings, answers)``.
    """

    __props__ = ()

    def make_node(self, trend, first, last):
        (trend,) = _floats(trend)
        first, last = _indices(first, last)
        if trend.ndim != 2:
            raise TypeError(
                "field_average expects trend (cells, answers) and integer vectors first, last"
            )
        out = pt.tensor(dtype="float64", shape=(first.type.shape[0], trend.type.shape[1]))
        return Apply(self, [trend, first, last], [out])

    def infer_shape(self, node, shapes):
        return [(shapes[1][0], shapes[0][1])]

    def connection_pattern(self, node):
        return [[True], [False], [False]]

    def pullback(self, inputs, outputs, cotangents):
        trend, first, last = inputs
        return [
            _field_average_grad(trend, first, last, cotangents[0]),
            DisconnectedType()(),
            DisconnectedType()(),
        ]


class FieldAverageGrad(_KernelOp):
    r"""Vector-Jacobian product of :class:`FieldAverage`: :math:`\partial\eta_t = \sum_{i: a_i \le t \le b_i} G_i / (b_i - a_i + 1)`."""

    __props__ = ()

    def make_node(self, trend, first, last, average_grad):
        trend, average_grad = _floats(trend, average_grad)
        first, last = _indices(first, last)
        if trend.ndim != 2 or average_grad.ndim != 2:
            raise TypeError(
                "field_average_grad expects trend (cells, answers) and the averages' gradient (readings, answers)"
            )
        out = pt.tensor(dtype="float64", shape=trend.type.shape)
        return Apply(self, [trend, first, last, average_grad], [out])

    def infer_shape(self, node, shapes):
        return [shapes[0]]

    def connection_pattern(self, node):
        # The trend gives only the output's shape.
        return [[False], [False], [False], [True]]

    def pullback(self, inputs, outputs, cotangents):
        trend, first, last, _ = inputs
        # Linear in the gradient: its own pullback is the forward average.
        return [
            DisconnectedType()(),
            DisconnectedType()(),
            DisconnectedType()(),
            field_average(cotangents[0], first, last),
        ]


_segmented_walk = SegmentedWalk()
_segmented_walk_grad = SegmentedWalkGrad()


_field_average = FieldAverage()
_field_average_grad = FieldAverageGrad()


def field_average(trend, first, last):
    """Each reading's mean of ``trend`` over cells ``first..last`` (:class:`FieldAverage`)."""
    return _field_average(trend, first, last)


def segmented_walk(innovation, change, walk_sd, start, end):
    """The walk from its innovations, segment changes and scale (:class:`SegmentedWalk`)."""
    return _segmented_walk(innovation, change, walk_sd, start, end)


def segmented_walk_grad(innovation, walk_sd, start, end, walk_grad):
    """Gradients of :func:`segmented_walk` (:class:`SegmentedWalkGrad`)."""
    return _segmented_walk_grad(innovation, walk_sd, start, end, walk_grad)


def _register_numba() -> None:
    """Register each operation's kernel (:func:`_compile_kernels`) with PyTensor's numba backend, cached under its source hash."""
    from pytensor.link.numba.dispatch import basic as numba_basic
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    def funcify(op, node, **kwargs):
        return _compile_kernels(numba_basic.numba_njit)[type(op)], _KERNEL_VERSION

    for op_type in (SegmentedWalk, SegmentedWalkGrad, FieldAverage, FieldAverageGrad):
        register_funcify_default_op_cache_key(op_type)(funcify)


_register_numba()


def register_jax() -> None:
    """Register JAX implementations of these operations with PyTensor's JAX backend (imports JAX).

    For ``pm.sample(nuts_sampler="numpyro" | "blackjax")``, which compile the model through JAX;
    called by :func:`model.fitting.fit` before such a sampler, idempotent. Written with masks and
    cumulative sums, so segment and field-period indices may be traced values.
    """
    global _jax_registered
    if _jax_registered:
        return
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    def segment_mask(start, end, n_steps):
        steps = jnp.arange(n_steps)[:, None]
        return ((steps >= start[None, :]) & (steps < end[None, :])).astype(jnp.float64)

    @jax_funcify.register(SegmentedWalk)
    def _jax_walk(op, **kwargs):
        def walk(innovation, change, walk_sd, start, end):
            mask = segment_mask(start, end, innovation.shape[0])
            length = (end - start).astype(jnp.float64)[:, None]
            mean = (mask.T @ innovation) / length
            increment = walk_sd * (innovation - mask @ mean) + mask @ (change / length)
            return jnp.concatenate(
                [jnp.zeros((1, innovation.shape[1])), jnp.cumsum(increment, axis=0)], axis=0
            )

        return walk

    @jax_funcify.register(SegmentedWalkGrad)
    def _jax_walk_grad(op, **kwargs):
        def walk_grad(innovation, walk_sd, start, end, grad):
            mask = segment_mask(start, end, innovation.shape[0])
            length = (end - start).astype(jnp.float64)[:, None]
            after = jnp.cumsum(grad[1:][::-1], axis=0)[::-1]
            mean_after = (mask.T @ after) / length
            centred = innovation - mask @ ((mask.T @ innovation) / length)
            return walk_sd * (after - mask @ mean_after), mean_after, jnp.sum(after * centred)

        return walk_grad

    @jax_funcify.register(FieldAverage)
    def _jax_average(op, **kwargs):
        def average(trend, first, last):
            running = jnp.concatenate(
                [jnp.zeros((1, trend.shape[1])), jnp.cumsum(trend, axis=0)], axis=0
            )
            return (running[last + 1] - running[first]) / (last - first + 1)[:, None]

        return average

    @jax_funcify.register(FieldAverageGrad)
    def _jax_average_grad(op, **kwargs):
        def average_grad(trend, first, last, grad):
            share = grad / (last - first + 1)[:, None]
            difference = (
                jnp.zeros((trend.shape[0] + 1, trend.shape[1]))
                .at[first]
                .add(share)
                .at[last + 1]
                .add(-share)
            )
            return jnp.cumsum(difference, axis=0)[:-1]

        return average_grad

    _jax_registered = True


_jax_registered = False
