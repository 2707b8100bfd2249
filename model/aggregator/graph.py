r"""The PyMC model: a softmax random walk with house, question and event effects.

See :class:`PollAggregator` for the model written out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.shape_utils import rv_size_is_none
from pymc.distributions.transforms import ZeroSumTransform

from model.aggregator.design import PollDesign
from model.aggregator.kernels import field_average, segmented_walk
from model.aggregator.names import (
    ANCHOR,
    ANSWER,
    COMPONENT,
    EVENT,
    POLL,
    POLLSTER,
    QUESTION,
    TIME,
)
from model.config import ANCHORS, DAYS_PER_MONTH, Config

#: Dimensions whose length follows from the readings themselves (one more reading, a later month,
#: a knot more): their lengths are data (shared variables), so the compiled model does not change
#: with them (:mod:`model.sampling.compiled`). Every other dimension (answers, pollsters, questions, events,
#: the confounded pairs) is part of the model's structure: a constant of the graph, which lets
#: PyTensor fold what depends on it (fewer operations per gradient: docs/performance.md).
DATA_DIMS = (TIME, POLL, "step", "walk_segment", "poll_unknown_n")


def dirichlet_components_logp(value, alpha, used):
    """Log density of a Dirichlet over the used components of each reading (unused ones masked)."""
    alpha_used = pt.switch(used, alpha, 1.0)
    total = pt.sum(pt.switch(used, alpha, 0.0), axis=-1)
    terms = pt.switch(used, (alpha_used - 1.0) * pt.log(value) - pt.gammaln(alpha_used), 0.0)
    return pt.gammaln(total) + pt.sum(terms, axis=-1)


def weighted_dirichlet_components_logp(value, alpha, used, weight):
    """:func:`dirichlet_components_logp` times a per-reading weight (0 leaves a reading out)."""
    return weight * dirichlet_components_logp(value, alpha, used)


def weighted_dirichlet_components_dist(alpha, used, weight, size):
    """Generative graph for the weighted form: the weight does not change what a reading would show."""
    return dirichlet_components_dist(alpha, used, size)


def dirichlet_components_dist(alpha, used, size):
    """Generative graph of component shares: a Dirichlet (normalised gammas) over the used components."""
    shape = alpha.shape if rv_size_is_none(size) else pt.concatenate([size, alpha.shape[-1:]])
    a = pt.broadcast_to(pt.switch(used, alpha, 1.0), shape)
    gamma = pt.switch(used, pm.Gamma.dist(alpha=a, beta=1.0), 0.0)
    return pt.switch(used, gamma / pt.sum(gamma, axis=-1, keepdims=True), 1.0)


def reading_draws(obs_share, concentration):
    """A graph of fresh readings (component shares) for a batch of Dirichlet concentrations
    ``(draw, poll, component)``: the generative graph of the model's ``obs_share``
    (:func:`dirichlet_components_dist`; the refit form's weights do not change what a reading would
    show), batched over draws (:meth:`model.sampling.engine.CompiledAggregator.extend`)."""
    return dirichlet_components_dist(concentration, obs_share.owner.inputs[2], None)


def nonsampling_tau(nonsampling_sd):
    """The non-sampling error as a proportion's sd, :math:`\\tau`, from its size in points of a 50%
    share: ``nonsampling_sd / 50`` (NumPy arrays and PyTensor tensors alike)."""
    return nonsampling_sd / 50.0


def dirichlet_concentration(n, tau):
    """A reading's Dirichlet concentration from its sample size ``n`` and the non-sampling error
    ``tau`` (:func:`nonsampling_tau`): ``1 / (1/n + tau^2)``, on NumPy arrays and PyTensor tensors
    alike (the model's likelihood and the backtest's scoring)."""
    return 1.0 / (1.0 / n + tau**2)


def reading_concentration(obs_share):
    """The ``(poll, component)`` Dirichlet concentrations the model's ``obs_share`` was built with."""
    return obs_share.owner.inputs[1]


def _part_given_sum(total, part_sd, other_sd, split):
    r"""One part of a sum of two independent zero-mean normals, given the sum and a standard-normal split.

    For :math:`a \sim N(0, s_a^2)`, :math:`b \sim N(0, s_b^2)` and :math:`t = a + b`:
    :math:`a = (s_a^2 / v)\, t + (s_a s_b / \sqrt{v})\, u` with :math:`v = s_a^2 + s_b^2`,
    :math:`u \sim N(0, 1)` independent of :math:`t`: the exact conditional, so sampling
    :math:`(t, u)` leaves the prior of :math:`(a, b)` unchanged.
    """
    variance = part_sd**2 + other_sd**2
    return (part_sd**2 / variance) * total + (part_sd * other_sd / pt.sqrt(variance)) * split


def _scaled_zero_sum(name: str, scale, centred: bool, dims: tuple[str, ...], n_zerosum_axes: int):
    """``scale * ZeroSumNormal(1)``: centred (sampled on the effect's own scale) or non-centred."""
    if centred:
        return pm.ZeroSumNormal(name, sigma=scale, dims=dims, n_zerosum_axes=n_zerosum_axes)
    return scale * pm.ZeroSumNormal(name, sigma=1.0, dims=dims, n_zerosum_axes=n_zerosum_axes)


class WalkSteps(NamedTuple):
    """How each step of the walk (cell ``s - 1`` to ``s``, ``s = 1..T-1``) is sampled; see :func:`walk_steps`."""

    free: np.ndarray  # (T-1,) bool: the step has a standardised innovation ("step" coordinate)
    segment: np.ndarray  # (T-1,) int: its centred segment, or n_segments for a non-centred step
    length: np.ndarray  # (n_segments,) steps per segment
    start: np.ndarray  # (n_segments,) first step index (0-based) of each segment
    end: np.ndarray  # (n_segments,) one past its last step index


def walk_steps(design: PollDesign) -> WalkSteps:
    """Lay the walk's steps out by the knots (:attr:`model.aggregator.design.PollDesign.walk_knots`).

    Segment ``j`` holds the steps from knot ``j`` to knot ``j + 1``; steps before the first knot
    and after the last belong to no segment. A step has a standardised innovation unless it is a
    segment on its own (then the segment's change is the step).
    """
    n_steps = len(design.time) - 1
    knots = np.asarray(design.walk_knots, dtype=int)
    if len(knots) and (knots[0] != 0 or np.any(np.diff(knots) <= 0) or knots[-1] > n_steps):
        raise ValueError(
            f"walk knots must rise from cell 0 within the grid's {n_steps + 1} cells, got {knots.tolist()}"
        )
    start, end = knots[:-1], knots[1:]
    segment = np.full(n_steps, len(start), dtype=int)
    for j, (a, b) in enumerate(zip(start, end)):
        segment[a:b] = j
    length = end - start
    free = np.ones(n_steps, dtype=bool)
    free[start[length == 1]] = False
    return WalkSteps(free=free, segment=segment, length=length, start=start, end=end)


def _scale_parameter(name: str, scale: float, form: str) -> pt.TensorVariable:
    """A scale parameter: HalfNormal(``scale``), or with ``form = "gamma"`` the zero-avoiding
    :math:`\\mathrm{Gamma}(2, 2 / (s\\sqrt{2/\\pi}))` of the same mean, with its mode away from zero."""
    if form == "gamma":
        return pm.Gamma(name, alpha=2.0, beta=2.0 / (scale * np.sqrt(2.0 / np.pi)))
    if form != "half_normal":
        raise ValueError(f"{name}: unknown scale prior {form!r}; expected 'half_normal' or 'gamma'")
    return pm.HalfNormal(name, sigma=scale)


def _walk_and_jumps(
    level,
    walk_sd,
    jump_sd: float,
    design: PollDesign,
    *,
    centred_knots: bool = True,
    persistence=None,
    mean_path=None,
):
    r"""The walk :math:`\sigma_{walk} \sum_{s \le t} z_s` (cells x answers) and the event jumps, sampled by segments.

    Between consecutive knots :math:`t_0 < t_1` (:func:`walk_steps`), the :math:`m = t_1 - t_0`
    steps' innovations :math:`d_s \sim \mathrm{ZeroSumNormal}(\sigma_{walk})` are sampled as their
    sum and a bridge,

    .. math::

        S \sim \mathrm{ZeroSumNormal}(\sigma_{walk}\sqrt{m}) = \sigma_{walk}\sqrt{m}\, \tilde S, \qquad
        d_s = S / m + \sigma_{walk} (z_s - \bar z), \quad z_s \sim \mathrm{ZeroSumNormal}(1),
        \quad \bar z = \frac{1}{m} \sum_{s = t_0 + 1}^{t_1} z_s,

    which leaves the prior exactly as it was (:math:`z - \bar z` is the bridge's zero-sum part,
    independent of :math:`\bar z`; :math:`\bar z` itself enters nothing and keeps its prior).
    The changes (plus the jumps paired below) are sampled through their running sums from the
    level (the first knot is cell 0, where the trend is the level :math:`\lambda`; a unit-triangular
    map, so the prior is exactly the walk's), in one of two forms (``Config.sampler.knots``):
    centred, ``trend_at_knot`` :math:`y_j = \lambda + \sum_{i \le j} S_i`, the trend's values at the
    knots, which mix well where the readings pin them; or non-centred, ``knot_value_std``
    :math:`y_j = \lambda + \sum_{i \le j} \tilde S_i` with :math:`\tilde S_i \sim
    \mathrm{ZeroSumNormal}(1)`, the same on the walk's standardised scale, which makes no funnel
    with :math:`\sigma_{walk}` where a few readings let it come near zero. Steps outside any
    segment (before the first knot, after the last) are :math:`d_s = \sigma_{walk} z_s`.

    An event whose jump :math:`\delta \sim \mathrm{ZeroSumNormal}(s_{jump})` falls inside a segment
    (the only one there) adds to the change the data pin, which is then :math:`S + \delta`: that
    total is sampled as the segment's change, :math:`S + \delta \sim \mathrm{ZeroSumNormal}(v^{1/2})` with
    :math:`v = \sigma_{walk}^2 m + s_{jump}^2`, and its prior-only split
    :math:`u \sim \mathrm{ZeroSumNormal}(1)` non-centred, :math:`\delta = (s_{jump}^2 / v)(S + \delta)
    + (\sigma_{walk}\sqrt{m}\, s_{jump} / v^{1/2})\, u` (the conditional of two independent normals
    given their sum, as for the confounded house-question pairs).

    With ``persistence`` :math:`\rho` (the candidate ``trend = "momentum"``), a segment's change
    carries on its predecessor's slope per cell: :math:`S_j - a_j S_{j-1} \sim
    \mathrm{ZeroSumNormal}(v_j^{1/2})` in place of :math:`S_j`, with :math:`a_j = \rho^{g_j}\, m_j /
    m_{j-1}`, :math:`g_j` the months between the two segments' midpoints, and :math:`a_j = 0` for
    the first segment and for a segment holding a paired event's jump or following one (a jump is
    not a slope). A unit-triangular map of the changes, so :math:`\rho = 0` is the walk. Past the
    last knot each step gains the last segment's slope per cell (its walk part) decayed from its
    midpoint, :math:`\rho^{g_s} S_J / m_J` (the momentum's mean; the walk's steps stay its noise),
    so a projection continues the slope between the last two knots for a few months, then levels
    off. The last knot can fall before the last reading, so that slope can end there. Unlike the
    walk's, this prior depends on where the knots fall (``PollDesign.walk_knots``): another
    placement is another model, not only another way of sampling it.

    With ``mean_path`` :math:`M` (time x answer, :math:`M_0 = 0`: the candidates' drift
    :math:`M_t = m_t d`, or their damped slope's running sum), each step's innovation has mean
    :math:`M_{s} - M_{s-1}`, so the walk gains :math:`M_t`: a segment's change is :math:`S =
    (M_{t_1} - M_{t_0}) + \sigma_{walk}\sqrt{m}\,\tilde S`, the walk less :math:`M` within it is
    the same bridge as before, the paired jump's split is taken of the change less its mean, and
    each step outside any segment gains its :math:`M_{s} - M_{s-1}`. The same model as adding
    :math:`M_t` to the trend's logits, sampled so that in the centred form :math:`M` enters the
    knots' prior (the mean of their changes) and the walk between and past them, not the knot
    values the readings pin.

    Returns
    -------
    (walk, jump)
        ``walk`` (time, answer); ``jump`` (event, answer), or None without events.
    """
    if mean_path is not None and persistence is not None:
        raise ValueError("a mean path and a momentum's persistence are two trends; give one")
    n_answer = len(design.answers)
    n_events = len(design.event_labels)
    if len(design.time) == 1:
        jump = (
            pm.ZeroSumNormal("jump", sigma=jump_sd, dims=(EVENT, ANSWER), n_zerosum_axes=1)
            if n_events
            else None
        )
        return pt.zeros((1, n_answer)), jump
    steps = walk_steps(design)
    n_segments = len(steps.length)
    free = np.flatnonzero(steps.free)
    # Sizes and indices that follow from the readings are data (pm.Data), not constants of the
    # graph: a new reading changes what the compiled model reads, not the compiled model
    # (model.sampling.compiled caches it by its graph).
    n_steps = pm.modelcontext(None).dim_lengths[TIME] - 1
    if len(free):
        z = pm.ZeroSumNormal("innovation", sigma=1.0, dims=("step", ANSWER), n_zerosum_axes=1)
        if len(free) < len(steps.free):
            free_step = pm.Data("free_step", free, dims="step")
            z_all = pt.set_subtensor(pt.zeros((n_steps, n_answer))[free_step], z)
        else:
            z_all = z
    else:
        z_all = pt.zeros((n_steps, n_answer))
    # Which events pair with which segments stays a constant of the graph (structure: a change
    # recompiles); the segments' bounds are data. Indexing by data costs ~2.5 us per gradient here.
    paired_events, paired_segments = event_segments(design, steps)
    if n_segments == 0:
        jump = (
            pm.ZeroSumNormal("jump", sigma=jump_sd, dims=(EVENT, ANSWER), n_zerosum_axes=1)
            if n_events
            else None
        )
        no_segments = np.zeros(0, dtype=int)
        walk = segmented_walk(z_all, pt.zeros((0, n_answer)), walk_sd, no_segments, no_segments)
        return (walk if mean_path is None else walk + mean_path), jump

    segment_start = pm.Data("segment_start", steps.start, dims="walk_segment")
    segment_end = pm.Data("segment_end", steps.end, dims="walk_segment")
    length = pt.cast(segment_end - segment_start, "float64")[:, None]
    walk_var = walk_sd**2 * length
    total_var = (
        pt.set_subtensor(walk_var[paired_segments], walk_var[paired_segments] + jump_sd**2)
        if paired_events
        else walk_var
    )
    if centred_knots:
        # Centred as values, not as changes: where the data pin the trend at each knot, the knot
        # values' posterior is nearly uncorrelated, where the changes between them would be chained
        # (each pinned only as a running sum) and the level would ride on all of them.
        knot_scale, knot_name = pt.sqrt(total_var), "trend_at_knot"
    else:
        # Non-centred: the same running sums on the walk's standardised scale, so a walk scale near
        # zero (which a few readings allow) makes no funnel with them.
        knot_scale, knot_name = pt.ones_like(total_var), "knot_value_std"
    carry = None
    if persistence is not None:
        carry = _segment_carry(
            persistence, segment_start, segment_end, paired_segments, n_segments, design.cell_days
        )
    mean_change = None
    if mean_path is not None:
        # Each segment's change has mean M(end) - M(start): (walk_segment, answer).
        mean_change = mean_path[segment_end] - mean_path[segment_start]
    if carry is not None and centred_knots:
        at_knot = pm.CustomDist(
            knot_name,
            level,
            knot_scale,
            carry,
            logp=_carried_knots_logp,
            random=_carried_knots_random,
            signature="(k),(s,k),(s)->(s,k)",
            transform=ZeroSumTransform(zerosum_axes=(-1,)),
            dims=("walk_segment", ANSWER),
        )
    else:
        # The running sums from the level (a unit-triangular map, so the prior is unchanged), of
        # changes with the mean path's mean in the centred form (non-centred: added below).
        knot_mean = () if mean_change is None or not centred_knots else (mean_change,)

        def running_sums(start, sd, *mean_and_size):
            *mean, _size = mean_and_size  # PyMC passes the size last, positionally
            change = pm.ZeroSumNormal.dist(sigma=sd, n_zerosum_axes=1, support_shape=(n_answer,))
            return start[None, :] + pt.cumsum(change + mean[0] if mean else change, axis=0)

        at_knot = pm.CustomDist(
            knot_name,
            level,
            knot_scale,
            *knot_mean,
            dist=running_sums,
            signature="(k),(s,k)" + ",(s,k)" * len(knot_mean) + "->(s,k)",
            transform=ZeroSumTransform(zerosum_axes=(-1,)),
            dims=("walk_segment", ANSWER),
        )
    sums = pt.diff(pt.concatenate([level[None, :], at_knot], axis=0), axis=0)
    total = sums if centred_knots else pt.sqrt(total_var) * sums
    if mean_change is not None and not centred_knots:
        total = total + mean_change
    if carry is not None and not centred_knots:
        # S_j = a_j S_{j-1} + e_j: the innovations e (on the walk's scale) carried forward.
        total = pt.linalg.solve_triangular(
            pt.eye(total.shape[0]) - pt.diag(carry[1:], k=-1), total, lower=True
        )
    change = total
    jump = None
    if n_events:
        unpaired = [e for e in range(n_events) if e not in paired_events]
        jump = pt.zeros((n_events, n_answer))
        if unpaired and not paired_events:
            jump = pm.ZeroSumNormal("jump", sigma=jump_sd, dims=(EVENT, ANSWER), n_zerosum_axes=1)
        elif unpaired:
            free_jump = pm.ZeroSumNormal(
                "jump_unpaired", sigma=jump_sd, dims=("event_unpaired", ANSWER), n_zerosum_axes=1
            )
            jump = pt.set_subtensor(jump[unpaired], free_jump)
        if paired_events:
            split = pm.ZeroSumNormal(
                "jump_split", sigma=1.0, dims=("event_paired", ANSWER), n_zerosum_axes=1
            )
            seg_total = total[paired_segments]
            # The jump's share of the change's zero-mean part: the change less its mean, if any.
            seg_deviation = (
                seg_total if mean_change is None else seg_total - mean_change[paired_segments]
            )
            paired_jump = _part_given_sum(
                seg_deviation, jump_sd, pt.sqrt(walk_var[paired_segments]), split
            )
            jump = pt.set_subtensor(jump[paired_events], paired_jump)
            change = pt.set_subtensor(total[paired_segments], seg_total - paired_jump)
            jump = pm.Deterministic("jump", jump, dims=(EVENT, ANSWER))

    # d_s = walk_sd (z_s - mean of z over its segment) + change / length, summed into the walk:
    # one fused operation with its own gradient (model.aggregator.kernels; ~120 small graph operations otherwise).
    if mean_path is None:
        walk = segmented_walk(z_all, change, walk_sd, segment_start, segment_end)
    else:  # the walk less its mean path is the plain walk's, by segments
        walk = segmented_walk(z_all, change - mean_change, walk_sd, segment_start, segment_end)
        walk = walk + mean_path
    if persistence is not None:
        walk = walk + _momentum_past_last_knot(
            persistence, change, segment_start, segment_end, n_steps, design.cell_days
        )
    return walk, jump


def _segment_carry(
    persistence, segment_start, segment_end, paired_segments, n_segments: int, cell_days: float
):
    """``a_j`` of :func:`_walk_and_jumps`'s momentum, (walk_segment,): how much of the previous
    segment's change a segment's change carries on, by its slope per cell decayed between their
    midpoints; 0 for the first segment and next to a paired event's jump."""
    start = pt.cast(segment_start, "float64")
    end = pt.cast(segment_end, "float64")
    length = end - start
    mid = (start + end) / 2
    months = (mid[1:] - mid[:-1]) * (cell_days / DAYS_PER_MONTH)
    ratio = pt.exp(months * pt.log(persistence)) * length[1:] / length[:-1]
    carry = pt.concatenate([pt.zeros(1), ratio])
    no_carry = sorted({j for p in paired_segments for j in (p, p + 1) if 0 < j < n_segments})
    if no_carry:
        carry = pt.set_subtensor(carry[np.asarray(no_carry)], 0.0)
    return carry


def _momentum_past_last_knot(persistence, change, segment_start, segment_end, n_steps, cell_days):
    """The momentum's mean on the steps past the last knot, summed into the walk (time, answer)."""
    start = pt.cast(segment_start[-1], "float64")
    end = pt.cast(segment_end[-1], "float64")
    slope = change[-1] / (end - start)  # the last segment's change per cell
    step = pt.arange(n_steps).astype("float64")  # step s: cell s to s + 1
    # Months from the segment's midpoint, 0 before it (masked: no overflow times zero there).
    months = pt.maximum(step + 0.5 - (start + end) / 2, 0.0) * (cell_days / DAYS_PER_MONTH)
    past = pt.cast(step >= end, "float64") * pt.exp(months * pt.log(persistence))
    drift = past[:, None] * slope[None, :]
    return pt.concatenate([pt.zeros_like(drift[:1]), pt.cumsum(drift, axis=0)], axis=0)


def _carried_knots_logp(value, start, sd, carry):
    """Log density of the knot values whose changes carry momentum (:func:`_walk_and_jumps`):
    the innovations ``S_j - a_j S_{j-1}`` are ZeroSumNormal(sd); the map has unit Jacobian."""
    sums = pt.diff(pt.concatenate([start[None, :], value], axis=0), axis=0)
    previous = pt.concatenate([pt.zeros_like(sums[:1]), sums[:-1]], axis=0)
    innovation = sums - carry[:, None] * previous
    n_answer = value.shape[-1]
    return pm.logp(
        pm.ZeroSumNormal.dist(sigma=sd, n_zerosum_axes=1, support_shape=(n_answer,)), innovation
    )  # one term per knot, as the ZeroSumTransform's Jacobian has


def _carried_knots_random(start, sd, carry, rng=None, size=None):
    """A draw of :func:`_carried_knots_logp`'s knot values (PyMC draws one at a time)."""
    if size is not None and tuple(size) != ():
        raise NotImplementedError(f"one draw at a time, not size={size}")
    rng = np.random.default_rng(rng)
    sd = np.broadcast_to(sd, (len(carry), len(start)))  # PyMC passes (segment, 1)
    noise = rng.normal(size=sd.shape) * sd
    noise = noise - noise.mean(axis=-1, keepdims=True)  # ZeroSumNormal(sd), as PyMC draws it
    sums = np.zeros_like(noise)
    for j in range(len(sums)):
        sums[j] = noise[j] + (carry[j] * sums[j - 1] if j else 0.0)
    return start[None, :] + np.cumsum(sums, axis=0)


def event_segments(design: PollDesign, steps: WalkSteps) -> tuple[list[int], list[int]]:
    """Events whose jump is sampled with its segment's change (see :func:`_walk_and_jumps`), and those segments.

    An event starting at cell ``e`` jumps on step index ``e - 1``; it is paired when that step lies
    in a centred segment holding no other event.
    """
    n_segments = len(steps.length)
    segment_of = [int(steps.segment[c - 1]) for c in design.event_cell]
    events, segments = [], []
    for e, j in enumerate(segment_of):
        if j < n_segments and segment_of.count(j) == 1:
            events.append(e)
            segments.append(j)
    return events, segments


def _damped_slope_path(n_time, cell_days: float, priors) -> pt.TensorVariable:
    """The damped local slope's contribution to the trend's logits, (time, answer): the candidate
    ``trend = "damped"`` (:class:`PollAggregator`'s docstring writes it out).

    The slope is a stationary AR(1) per answer logit in logits per month, sampled non-centred:
    ``slope_t = phi * slope_{t-1} + slope_sd * sqrt(1 - phi^2) * z_t``, ``slope_0 = slope_sd * z_0``,
    with ``phi = slope_persistence ** (cell_days / DAYS_PER_MONTH)`` per cell; the trend gains its
    running sum, ``drift_t = sum_{u < t} slope_u * cell_days / DAYS_PER_MONTH``. The recursion is
    computed in O(time) as ``slope_t = phi^t * sum_{s <= t} phi^-s * shock_s`` (running sums, whose
    gradients are running sums too). ``phi^-t`` overflows only where ``T |log phi|`` passes ~700: on
    the shipped weekly grid (235 cells) a persistence below ~2e-6 per month, where the prior has no
    weight.
    """
    months_per_cell = cell_days / DAYS_PER_MONTH
    slope_sd = pm.HalfNormal("slope_sd", sigma=priors.slope_sd_per_month)
    persistence = pm.Beta(
        "slope_persistence",
        alpha=priors.slope_persistence_alpha,
        beta=priors.slope_persistence_beta,
    )
    z = pm.ZeroSumNormal("slope_innovation", sigma=1.0, dims=(TIME, ANSWER))
    log_phi = months_per_cell * pt.log(persistence)
    steps = pt.arange(n_time).astype("float64")
    # sqrt(1 - phi^2) without cancelling to 0 (and an infinite gradient) as the persistence nears 1
    scale = pt.set_subtensor(pt.ones(n_time)[1:], pt.sqrt(-pt.expm1(2.0 * log_phi)))
    shocks = slope_sd * scale[:, None] * z  # the first is the stationary start
    slope = pt.exp(steps * log_phi)[:, None] * pt.cumsum(
        pt.exp(-steps * log_phi)[:, None] * shocks, axis=0
    )
    running = pt.cumsum(slope, axis=0) * months_per_cell
    return pt.concatenate([pt.zeros_like(running[:1]), running[:-1]], axis=0)


class PollAggregator:
    r"""Hierarchical poll aggregation model.

    Readings :math:`i` by pollster :math:`h[i]` on question :math:`q[i]` report shares of answers
    :math:`k = 1..K` over field periods covering grid cells :math:`a_i..b_i`.

    **Trend.** A latent logit per answer on a time grid (cells :math:`t = 0..T-1`):

    .. math::

        \eta_{t,k} = \lambda_k + \sigma_{walk} \sum_{s=1}^{t} z_{s,k}
                     + \sum_e \delta_{e,k} \, [t \ge t_e],

    with :math:`\lambda \sim \mathrm{ZeroSumNormal}(\sigma_\lambda)` over answers, non-centred
    innovations :math:`z_{s,\cdot} \sim \mathrm{ZeroSumNormal}(1)` over answers (the walk's first
    value is pinned at 0, so :math:`\lambda` is the level at the first cell),
    :math:`\sigma_{walk} \sim \mathrm{HalfNormal}(s)`, :math:`s = s_{walk} \sqrt{\Delta/30.44}` for cells of
    :math:`\Delta` days (or, with ``walk_prior = "gamma"``, the zero-avoiding
    :math:`\mathrm{Gamma}(2, 2 / (s\sqrt{2/\pi}))` of the same mean), and event jumps :math:`\delta_e \sim \mathrm{ZeroSumNormal}(s_{jump})`.
    The curve is :math:`\pi_t = \mathrm{softmax}(\eta_t)`: talks, continue and undecided sum to 100.

    **Trend candidates** (``Config.trend``, backtested by ``validate --candidates``; not the shipped
    model). ``"drift"`` adds a constant zero-sum slope :math:`\eta_{t,k} \mathrel{+}= m_t d_k`,
    :math:`d \sim \mathrm{ZeroSumNormal}(s_{drift})`, :math:`m_t` the months since the first cell.
    ``"damped"`` adds a damped local slope: :math:`\eta_{t,k} \mathrel{+}= \sum_{u<t} \mu\, g_{u,k}`
    with :math:`\mu = \Delta/30.44` months per cell and a stationary AR(1) slope in logits per month,
    :math:`g_{0} = \sigma_g z_0`, :math:`g_{t} = \phi g_{t-1} + \sigma_g\sqrt{1-\phi^2}\, z_t`,
    :math:`z_t \sim \mathrm{ZeroSumNormal}(1)` over answers, :math:`\phi = \rho^{\mu}`,
    :math:`\sigma_g \sim \mathrm{HalfNormal}(s_{slope})` and the monthly persistence
    :math:`\rho \sim \mathrm{Beta}(a_\rho, b_\rho)`. Past the last reading the slope decays
    towards zero, so the projection continues the recent trend for a few months, then levels off.
    Both are sampled as the mean path of the walk's steps (:func:`_walk_and_jumps`).
    ``"momentum"`` keeps the walk and its knots but lets each segment's change carry on the previous
    segment's slope per cell, decayed by the monthly persistence :math:`\rho \sim
    \mathrm{Beta}(a_\rho, b_\rho)` over the months between their midpoints (no new latent path:
    :math:`\rho = 0` is the walk; :func:`_walk_and_jumps` writes it out); past the last knot the
    projection continues the last segment's slope as it decays. With ``priors.slope_persistence``
    set, :math:`\rho` is that constant instead (candidate ``momentum_fixed``).

    **Field periods.** A reading measures the trend averaged over the cells its field period covers,
    :math:`\bar\eta_{i} = \frac{1}{b_i - a_i + 1}\sum_{t=a_i}^{b_i} \eta_t` (a running sum, one
    difference per reading: :func:`model.aggregator.kernels.field_average`); a month-only reading covers its month.

    **House and question effects.** :math:`p_i = \mathrm{softmax}(\bar\eta_i + \alpha_{h[i]} + \beta_{q[i]})`.
    House effects :math:`\alpha_h = \sigma_{house} \, \tilde\alpha_h` are partially pooled with
    :math:`\sigma_{house} \sim \mathrm{HalfNormal}(s_{house})`, zero-sum over answers, and identified by
    the config: ``zero_sum`` (also zero-sum over pollsters: the curve is the average house),
    a reference pollster (:math:`\alpha_{ref} = 0`: the curve is what it would report), or
    ``anchors`` (free effects; known true shares :math:`v_j \sim N(\pi_{t_j,k_j}, sd_j)` fix the level).
    Question effects :math:`\beta_q = \sigma_{question} \tilde\beta_q`, zero for the reference question,
    zero-sum over answers, :math:`\sigma_{question} \sim \mathrm{HalfNormal}(s_{question})`. Where one house
    alone asks a question, only :math:`\alpha_h + \beta_q` is identified by the data; the priors
    split it, and summaries say so (``reading_offsets`` reports the identified sum).

    **Sampling the confounded pairs.** With a reference pollster or anchors, a house that asks only
    a question nobody else asks forms a pair :math:`(h, q)`. Sampling :math:`\tilde\alpha_h` and
    :math:`\tilde\beta_q` separately leaves a curved ridge (their scaled sum is pinned by the data,
    the split only by the priors), which NUTS crosses badly. The pair is sampled instead as its sum
    :math:`s = \alpha_h + \beta_q \sim \mathrm{ZeroSumNormal}(\sqrt{\sigma_{house}^2 + \sigma_{question}^2})`
    (centred: the data pin it) and a prior-only split :math:`u \sim \mathrm{ZeroSumNormal}(1)`:

    .. math::

        \alpha_h = w s + \frac{\sigma_{house}\sigma_{question}}{\sqrt{\sigma_{house}^2 + \sigma_{question}^2}} u,
        \qquad \beta_q = s - \alpha_h, \qquad w = \frac{\sigma_{house}^2}{\sigma_{house}^2 + \sigma_{question}^2},

    the conditional decomposition of two independent normals, so the prior is exactly unchanged.
    **Sampling the walk.** Written non-centred above, the walk is sampled by segments between
    knots, the cells where the readings pin the trend (:func:`model.aggregator.design.walk_knots`):
    each segment's change through the running sum at the knots (the trend's values there, or the
    same on the walk's standardised scale: ``Config.sampler.knots``), the path between knots as a
    bridge, and an event's jump as its share of its segment's change
    (:func:`_walk_and_jumps`); exact reparameterisations, so the prior is unchanged. How each form
    was measured is in ``docs/validation.md`` and ``docs/performance.md``.
    Other house (question) effects are centred or non-centred as ``Config.sampler.house_form``
    (``.question_form``) says; with ``"auto"``, centred when every house (question)
    concerned has at least :data:`model.aggregator.design.CENTRED_MIN_READINGS` readings, so the data pin each
    effect well inside its prior (a non-centred effect then forms a curved ridge with its scale:
    bulk ESS 34 of 600 draws for the house scale on a simulated five-house table), and
    non-centred otherwise; ``idata.attrs`` records the choice.

    **Likelihood with non-sampling error.** Each reading's observed components (every reported answer,
    plus one merged "rest" of the unreported ones, so a partial report enters through its exact
    marginal and missing shares are never zeros) follow a Dirichlet with mean the aggregated
    :math:`p_i` and concentration :math:`c_i`:

    .. math::

        y_i \sim \mathrm{Dirichlet}(c_i \, M_i^\top p_i), \qquad
        \frac{1}{c_i} = \frac{1}{n_i} + \tau^2 .

    This is the continuous (share-scale) form of a Dirichlet-multinomial: a share's variance is
    :math:`p(1-p)(1/n_i + \tau^2)` to first order, binomial sampling error plus a non-sampling
    error :math:`\tau`, estimated with :math:`50\tau \sim \mathrm{HalfNormal}(s_{ns})` (its extra sd
    at a 50% share, in points; with ``nonsampling_prior = "gamma"``, a candidate, the zero-avoiding
    Gamma(2) of the same mean, as for the walk). Aggregating Dirichlet components is exact, so the
    merged rest is the exact marginal.

    **Unknown sample sizes** are parameters, not constants:
    :math:`\log n_i \sim N(\log m, s_n)` with :math:`m` the median known size in the table unless
    configured; the run records which readings had it.

    **Data, not constants.** Everything that follows from the readings is ``pm.Data`` (the observed
    shares, field periods, indices, the knots' segments, which readings lack a sample size and the
    median known size), and the lengths of the dimensions that grow with them are shared
    (:data:`DATA_DIMS`): the compiled model depends on the structure (config, pollsters, questions,
    events and how they pair), so a new reading is a data change (:mod:`model.sampling.compiled`).

    **Implementation.** The walk by segments and the field-period averages are each one fused
    operation with a numba kernel and a hand-written gradient (:mod:`model.aggregator.kernels`); PyTensor's C,
    Python and numba backends run them as they are. To sample the built model through JAX yourself
    (``pm.sample(nuts_sampler="numpyro")``), call :func:`model.aggregator.kernels.register_jax` first
    (:func:`model.fit` does).

    Parameters
    ----------
    design : PollDesign
        The laid-out data (:func:`model.aggregator.design.build_design`).
    config : Config
        Priors and identification.
    refit : bool
        Build the form that validation refits many times from one compiled model: each reading's
        likelihood term is multiplied by ``pm.Data("in_likelihood")`` (1 or 0), so a held-out
        reading (or, with ``pm.Data("observed_share")``, a new simulated table) is a data swap,
        not a recompilation. With all weights 1 the posterior is the ordinary one; a
        reading with weight 0 contributes nothing, and its latent quantities (an unknown ``n``)
        keep their prior. Default False: the ordinary model.
    """

    def __init__(self, design: PollDesign, config: Config, *, refit: bool = False) -> None:
        self.design = design
        self.config = config
        self.refit = refit
        self.model: pm.Model | None = None

    def build(self) -> pm.Model:
        """Build (once) and return the PyMC model."""
        if self.model is not None:
            return self.model
        d, priors = self.design, self.config.priors
        n_answer = len(d.answers)
        coords = d.coords
        steps = walk_steps(d)
        cells = np.asarray(coords[TIME])
        coords["step"] = cells[1:][steps.free]
        coords["walk_segment"] = cells[np.asarray(d.walk_knots[1:], dtype=int)]
        paired_events, _ = event_segments(d, steps)
        coords["event_paired"] = [d.event_labels[e] for e in paired_events]
        coords["event_unpaired"] = [
            label for e, label in enumerate(d.event_labels) if e not in paired_events
        ]
        coords["pollster_unpaired"] = [d.pollsters[h] for h in d.free_pollsters]
        coords["question_unpaired"] = [d.questions[q] for q in d.free_questions]
        coords["pair"] = [
            f"{d.pollsters[h]} | {d.questions[q]}"
            for h, q in zip(d.paired_pollsters, d.paired_questions)
        ]
        coords["poll_unknown_n"] = list(d.polls["poll_id"][~d.n_known])
        if self.config.house_effects == ANCHORS:
            coords[ANCHOR] = [a.label for a in self.config.anchors]

        with pm.Model() as model:
            for name, values in coords.items():
                model.add_coord(
                    name,
                    values,
                    length=None if name in DATA_DIMS else pt.constant(len(values), dtype="int64"),
                )
            first_cell = pm.Data("first_cell", d.first_cell, dims=POLL)
            last_cell = pm.Data("last_cell", d.last_cell, dims=POLL)
            pollster_idx = pm.Data("pollster_idx", d.pollster_idx, dims=POLL)
            question_idx = pm.Data("question_idx", d.question_idx, dims=POLL)
            membership = pm.Data("membership", d.membership, dims=(POLL, ANSWER, COMPONENT))
            used = pm.Data("component_used", d.component_used, dims=(POLL, COMPONENT))
            n_stated = pm.Data("n_stated", np.where(d.n_known, d.n, 1.0), dims=POLL)

            # Trend.
            level = pm.ZeroSumNormal("level", sigma=priors.level_sd, dims=ANSWER)
            walk_scale = priors.walk_scale(d.cell_days)
            walk_sd = _scale_parameter("walk_sd", walk_scale, self.config.walk_prior)
            persistence = None
            if self.config.trend == "momentum" and len(steps.length):  # no segments: the walk
                if priors.slope_persistence is None:
                    persistence = pm.Beta(
                        "slope_persistence",
                        alpha=priors.slope_persistence_alpha,
                        beta=priors.slope_persistence_beta,
                    )
                else:  # held fixed: a constant, recorded beside the draws as the sampled one is
                    persistence = pm.Deterministic(
                        "slope_persistence",
                        pt.as_tensor_variable(np.float64(priors.slope_persistence)),
                    )
            # The candidates' slopes, as the mean path of the walk's steps (_walk_and_jumps).
            mean_path = None
            n_time = model.dim_lengths[TIME]
            if self.config.trend == "drift":
                # A constant zero-sum slope per answer logit, in logits per month from the first cell.
                drift = pm.ZeroSumNormal("drift", sigma=priors.drift_sd_per_month, dims=ANSWER)
                months = pt.arange(n_time) * (d.cell_days / DAYS_PER_MONTH)
                mean_path = months[:, None] * drift[None, :]
            elif self.config.trend == "damped":
                mean_path = _damped_slope_path(n_time, d.cell_days, priors)
            walk, jump = _walk_and_jumps(
                level,
                walk_sd,
                priors.jump_sd,
                d,
                centred_knots=d.centred_knots,
                persistence=persistence,
                mean_path=mean_path,
            )
            eta = level[None, :] + walk
            if jump is not None:
                event_cell = pm.Data("event_cell", d.event_cell, dims=EVENT)
                after = pt.cast(pt.arange(eta.shape[0])[:, None] >= event_cell[None, :], "float64")
                eta = eta + pt.dot(after, jump)
            pm.Deterministic("share", 100 * pt.special.softmax(eta, axis=-1), dims=(TIME, ANSWER))

            # House and question effects (zero-sum over answers; reference question = 0).
            house_sd = pm.HalfNormal("house_sd", sigma=priors.house_sd)
            question_sd = (
                pm.HalfNormal("question_sd", sigma=priors.question_sd)
                if len(d.questions) > 1
                else None
            )
            house = pt.zeros((len(d.pollsters), n_answer))
            question = pt.zeros((len(d.questions), n_answer))
            free = d.free_pollsters
            if free and d.zero_sum_houses:
                house = _scaled_zero_sum(
                    "house_raw", house_sd, d.centred_houses, (POLLSTER, ANSWER), 2
                )
            elif free:
                raw = _scaled_zero_sum(
                    "house_raw", house_sd, d.centred_houses, ("pollster_unpaired", ANSWER), 1
                )
                house = pt.set_subtensor(house[free], raw)
            free_q = d.free_questions
            if free_q:
                q_raw = _scaled_zero_sum(
                    "question_raw",
                    question_sd,
                    d.centred_questions,
                    ("question_unpaired", ANSWER),
                    1,
                )
                question = pt.set_subtensor(question[free_q], q_raw)
            if d.paired_pollsters:
                # A question asked by one house alone, which asks nothing else: the data identify
                # only the sum of the two effects. Sample that sum (centred: the data pin it) and
                # the prior-only split, an exact reparameterisation of the two independent priors.
                total_sd = pt.sqrt(house_sd**2 + question_sd**2)
                pair_sum = pm.ZeroSumNormal(
                    "pair_sum", sigma=total_sd, dims=("pair", ANSWER), n_zerosum_axes=1
                )
                pair_split = pm.ZeroSumNormal(
                    "pair_split", sigma=1.0, dims=("pair", ANSWER), n_zerosum_axes=1
                )
                house_part = _part_given_sum(pair_sum, house_sd, question_sd, pair_split)
                house = pt.set_subtensor(house[list(d.paired_pollsters)], house_part)
                question = pt.set_subtensor(
                    question[list(d.paired_questions)], pair_sum - house_part
                )
            house = pm.Deterministic("house_effect", house, dims=(POLLSTER, ANSWER))
            question = pm.Deterministic("question_effect", question, dims=(QUESTION, ANSWER))

            # Field-period averages of the trend, then each reading's expected shares.
            eta_avg = field_average(
                eta, first_cell, last_cell
            )  # one fused operation (model.aggregator.kernels)
            logits = eta_avg + house[pollster_idx] + question[question_idx]
            p = pt.special.softmax(logits, axis=-1)
            p_component = pt.sum(p[:, :, None] * membership, axis=1)

            # Sampling plus non-sampling error.
            nonsampling_sd = _scale_parameter(
                "nonsampling_sd", priors.nonsampling_sd_pp, self.config.nonsampling_prior
            )
            tau = nonsampling_tau(nonsampling_sd)
            if self.config.nonsampling == "by_house":
                # Each house's non-sampling error, log-normal around the shared one (non-centred).
                spread = pm.HalfNormal(
                    "nonsampling_house_spread", sigma=priors.nonsampling_house_sd
                )
                house_z = pm.Normal("nonsampling_house_z", 0.0, 1.0, dims=POLLSTER)
                by_house = pm.Deterministic(
                    "nonsampling_sd_house", nonsampling_sd * pt.exp(spread * house_z), dims=POLLSTER
                )
                tau = nonsampling_tau(by_house)[pollster_idx]
            # Unknown sample sizes are parameters; with every size stated, none (an empty
            # dimension): a table with some and one without are one compiled structure.
            log_n_z = pm.Normal("log_n_z", 0.0, 1.0, dims="poll_unknown_n")
            # The median known size is data too (a new reading may move it); by house, one per
            # reading without a stated size.
            if self.config.unknown_n == "by_house":
                medians = [d.unknown_n_prior_median(p) for p in d.polls["pollster"][~d.n_known]]
                log_n_median = pm.Data(
                    "log_unknown_n_median", np.log(medians), dims="poll_unknown_n"
                )
            else:
                log_n_median = pm.Data("log_unknown_n_median", np.log(d.unknown_n_median))
            n_unknown = pm.Deterministic(
                "n_unknown",
                pt.exp(log_n_median + priors.unknown_n_log_sd * log_n_z),
                dims="poll_unknown_n",
            )
            unknown_n_poll = pm.Data(
                "unknown_n_poll", np.flatnonzero(~d.n_known), dims="poll_unknown_n"
            )
            n = pt.set_subtensor(n_stated[unknown_n_poll], n_unknown)
            alpha = dirichlet_concentration(n, tau)[:, None] * p_component
            observed = pm.Data("observed_share", d.observed, dims=(POLL, COMPONENT))
            if self.refit:
                weight = pm.Data("in_likelihood", np.ones(len(d.polls)), dims=POLL)
                pm.CustomDist(
                    "obs_share",
                    alpha,
                    used,
                    weight,
                    dist=weighted_dirichlet_components_dist,
                    logp=weighted_dirichlet_components_logp,
                    signature="(c),(c),()->(c)",
                    observed=observed,
                    dims=(POLL, COMPONENT),
                )
            else:
                pm.CustomDist(
                    "obs_share",
                    alpha,
                    used,
                    dist=dirichlet_components_dist,
                    logp=dirichlet_components_logp,
                    signature="(c),(c)->(c)",
                    observed=observed,
                    dims=(POLL, COMPONENT),
                )

            if self.config.house_effects == ANCHORS:
                anchor_cell = pm.Data("anchor_cell", d.anchor_cell, dims=ANCHOR)
                anchor_answer = pm.Data("anchor_answer", d.anchor_answer, dims=ANCHOR)
                anchored = pt.special.softmax(eta, axis=-1)[anchor_cell, anchor_answer]
                anchor_sd = pm.Data("anchor_sd", d.anchor_sd, dims=ANCHOR)
                pm.Normal(
                    "anchor",
                    mu=anchored,
                    sigma=anchor_sd,
                    observed=pm.Data("anchor_value", d.anchor_value, dims=ANCHOR),
                    dims=ANCHOR,
                )
        self.model = model
        return model
