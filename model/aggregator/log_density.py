r"""The model's log density and its gradient written out by hand, in one numba function.

nutpie calls the log density and its gradient at every leapfrog step: tens of thousands of times
per fit, a million times in a whole validation run. PyTensor's numba backend compiles the model's
graph (:class:`model.aggregator.graph.PollAggregator`) into one function of some 240 small
operations, each allocating its output and counting references, none of them a large share of
the time (``docs/validation.md``, "Where the whole run's time goes").
:func:`logp_and_gradient` computes the same log density and gradient in one pass forward and one
back over plain loops: the same model, not an approximation of it (what it saves:
``docs/performance.md``, "The log density written out by hand").

**What it computes.** The density of :class:`~model.aggregator.graph.PollAggregator`'s docstring
on the sampler's unconstrained scale, term for term as PyMC writes it (normalising constants
included), for the structures :func:`hand_written_structure` accepts: houses identified any
way (zero-sum, the library's default; a reference pollster; anchors), the walk without a trend
candidate, half-normal walk and non-sampling scales, one shared non-sampling error, at least one
segment between knots; centred or non-centred knots, houses and questions, confounded pairs,
events paired with their segment or not, unknown sample sizes with one prior median or one per
reading, and the refit form's per-reading weights. In order:

- zero-sum values from their :math:`K - 1` free coordinates by PyMC's ``ZeroSumTransform``
  (:math:`v_k = x_k - S / (\sqrt{K} + K)` for :math:`k < K`, :math:`v_K = -S / \sqrt{K}`,
  :math:`S = \sum_k x_k`; no Jacobian term), and each row's ``ZeroSumNormal`` density
  :math:`-\tfrac12 \sum_k v_k^2 / \sigma^2 - (K - 1)(\log\sqrt{2\pi} + \log\sigma)`; the
  zero-sum houses' table (:math:`H` pollsters by :math:`K` answers) extended down each column
  and then along each row, its density with :math:`(H - 1)(K - 1)` degrees of freedom;
- scales :math:`\sigma = e^u` with the half-normal density and the log transform's Jacobian
  :math:`u`;
- the knots' changes :math:`d_j = y_j - y_{j-1}` (:math:`y_{-1} = \lambda`) with variance
  :math:`v_j = \sigma_{walk}^2 m_j (+ s_{jump}^2` where an event is paired with segment :math:`j`),
  centred (the change is :math:`d_j`, its density that of :math:`N(0, v_j)`) or non-centred
  (:math:`N(0, 1)`, the change :math:`\sqrt{v_j}\, d_j`); a paired jump as its share of the change;
- the walk by segments and the trend :math:`\eta` (as
  :class:`model.aggregator.kernels.SegmentedWalk`), each reading's field-period average (as :class:`~model.aggregator.kernels.FieldAverage`), its
  house and question effects, the softmax, and the Dirichlet density of its observed components
  with concentration :math:`1 / (1/n_i + \tau^2)`, times the reading's weight in the refit form;
- with anchors, each known share's normal density around the trend's share of its answer at its
  cell (:math:`\mathrm{softmax}(\eta_t)`, event jumps included, house and question effects not).

The gradient runs the same steps backwards. Compiled with NumPy's error model, a division by
zero (a scale that has underflowed to 0) gives an infinite or undefined value, which the sampler
treats as a divergence, as it does PyTensor's; only data it cannot index raise an error.
``log Gamma`` and digamma share one logarithm (Stirling's series after the recurrence has shifted
the argument to 10 or more), agreeing with SciPy's to about 1e-15.

**How it is checked.** :func:`model.sampling.compiled.compile_model` uses it only where
:func:`hand_written_structure` accepts the model, and when it compiles a structure it compares
this function with PyTensor's log density and gradient of the same model at three points; a
difference beyond a relative 1e-9 falls back to PyTensor's, with a warning.
``tests/aggregator/test_log_density.py`` compares the two on every structure it accepts and
refuses the others. ``Config.sampler.log_density = "pytensor"`` samples with PyTensor's own.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from model.aggregator.design import PollDesign
from model.aggregator.graph import event_segments, walk_steps
from model.config import ANCHORS, Config

# The structure vector: a header of these entries (sizes, forms, flags, and where each free
# variable starts), then the index lists (free houses, free questions, the pairs' houses, their
# questions, the paired events, their segments, the unpaired events), each as long as its count in
# the header says.
K_ANSWERS = 0
CENTRED_KNOTS = 1
CENTRED_HOUSES = 2
CENTRED_QUESTIONS = 3
WEIGHTED = 4
MEDIAN_PER_READING = 5
SOME_STEPS_FIXED = 6
N_POLLSTERS = 7
N_QUESTIONS = 8
N_EVENTS = 9
N_CELLS = 10
N_FREE_STEPS = 11
N_SEGMENTS = 12
N_UNKNOWN = 13
N_FREE_HOUSES = 14
N_FREE_QUESTIONS = 15
N_PAIRS = 16
N_PAIRED_EVENTS = 17
N_UNPAIRED_EVENTS = 18
#: Where each free variable starts in nutpie's flat vector (-1: the model has none), by value name.
OFFSET_OF = {
    "level_zerosum__": 19,
    "walk_sd_log__": 20,
    "innovation_zerosum__": 21,
    "trend_at_knot_zerosum__": 22,
    "knot_value_std_zerosum__": 22,
    "jump_zerosum__": 23,
    "jump_unpaired_zerosum__": 23,
    "jump_split_zerosum__": 24,
    "house_sd_log__": 25,
    "question_sd_log__": 26,
    "house_raw_zerosum__": 27,
    "question_raw_zerosum__": 28,
    "pair_sum_zerosum__": 29,
    "pair_split_zerosum__": 30,
    "nonsampling_sd_log__": 31,
    "log_n_z": 32,
}
X_LEVEL, X_WALK_SD, X_INNOVATION, X_KNOTS, X_JUMP, X_JUMP_SPLIT = 19, 20, 21, 22, 23, 24
X_HOUSE_SD, X_QUESTION_SD, X_HOUSE_RAW, X_QUESTION_RAW = 25, 26, 27, 28
X_PAIR_SUM, X_PAIR_SPLIT, X_NONSAMPLING_SD, X_LOG_N_Z = 29, 30, 31, 32
#: 1 where house effects are ``zero_sum`` (one table, zero-sum over pollsters and answers).
ZERO_SUM_HOUSES = 33
#: The number of anchors (``house_effects = "anchors"``: known true shares; 0 otherwise).
N_ANCHORS = 34
HEADER = 35

#: The model's shared data :func:`logp_and_gradient` reads, in its order of arguments (after the
#: point, the structure and the constants). One the model does not have (no events, the ordinary
#: form's weights, every step free, no anchors) is passed as an empty array of
#: :data:`ABSENT_DTYPES`' type.
DATA_ARGUMENTS = (
    "first_cell",
    "last_cell",
    "pollster_idx",
    "question_idx",
    "membership",
    "component_used",
    "n_stated",
    "segment_start",
    "segment_end",
    "event_cell",
    "log_unknown_n_median",
    "unknown_n_poll",
    "observed_share",
    "in_likelihood",
    "free_step",
    "anchor_cell",
    "anchor_answer",
    "anchor_sd",
    "anchor_value",
)
#: The type of the empty array standing for data a model does not have: the type ``pm.Data`` gives
#: the same data where a model has them (PyMC stores floats as ``floatX`` and integers as its
#: ``intX``: ``float64`` and ``int32`` under the default ``floatX``), so that models with and
#: without them call :func:`logp_and_gradient` with one signature, compiled once. A test checks
#: these against a model's own data.
ABSENT_DTYPES = {
    "event_cell": np.int32,
    "in_likelihood": np.float64,
    "free_step": np.int32,
    "anchor_cell": np.int32,
    "anchor_answer": np.int32,
    "anchor_sd": np.float64,
    "anchor_value": np.float64,
}

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_HALF_LOG_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)


class HandWritten(NamedTuple):
    """What :func:`logp_and_gradient` needs of one model besides its data and point: the
    structure vector (:data:`OFFSET_OF`'s entries still -1, filled by :func:`with_offsets`) and
    the constants (the priors' scales)."""

    structure: np.ndarray
    constants: np.ndarray


def hand_written_structure(design: PollDesign, config: Config, *, refit: bool) -> HandWritten | str:
    """The structure and constants of ``PollAggregator(design, config, refit=refit)`` for
    :func:`logp_and_gradient`, or why it does not cover that model (a sentence).

    Parameters
    ----------
    design : PollDesign
        The model's design.
    config : Config
        Its config.
    refit : bool
        Whether the model is the refit form (per-reading weights).

    Returns
    -------
    HandWritten or str
    """
    unsupported = {
        "trend": (config.trend != "walk", f"trend {config.trend!r}"),
        "walk_prior": (config.walk_prior != "half_normal", f"walk_prior {config.walk_prior!r}"),
        "nonsampling_prior": (
            config.nonsampling_prior != "half_normal",
            f"nonsampling_prior {config.nonsampling_prior!r}",
        ),
        "nonsampling": (config.nonsampling != "shared", f"nonsampling {config.nonsampling!r}"),
    }
    reasons = [reason for refused, reason in unsupported.values() if refused]
    steps = walk_steps(design) if len(design.time) > 1 else None
    if steps is None or not len(steps.length):
        reasons.append("no segment between knots")
    if reasons:
        return "the hand-written log density does not cover " + ", ".join(reasons)
    paired_events, paired_segments = event_segments(design, steps)
    free_houses = design.free_pollsters
    free_questions = design.free_questions
    unpaired_events = [e for e in range(len(design.event_labels)) if e not in paired_events]
    header = np.full(HEADER, -1, dtype=np.int64)
    header[K_ANSWERS] = len(design.answers)
    header[CENTRED_KNOTS] = design.centred_knots
    header[CENTRED_HOUSES] = design.centred_houses
    header[CENTRED_QUESTIONS] = design.centred_questions
    header[ZERO_SUM_HOUSES] = design.zero_sum_houses
    header[N_ANCHORS] = len(design.anchor_cell) if config.house_effects == ANCHORS else 0
    header[WEIGHTED] = refit
    header[MEDIAN_PER_READING] = config.unknown_n == "by_house"
    header[SOME_STEPS_FIXED] = not steps.free.all()
    header[N_POLLSTERS] = len(design.pollsters)
    header[N_QUESTIONS] = len(design.questions)
    header[N_EVENTS] = len(design.event_labels)
    header[N_CELLS] = len(design.time)
    header[N_FREE_STEPS] = steps.free.sum()
    header[N_SEGMENTS] = len(steps.length)
    header[N_UNKNOWN] = (~design.n_known).sum()
    header[N_FREE_HOUSES] = len(free_houses)
    header[N_FREE_QUESTIONS] = len(free_questions)
    header[N_PAIRS] = len(design.paired_pollsters)
    header[N_PAIRED_EVENTS] = len(paired_events)
    header[N_UNPAIRED_EVENTS] = len(unpaired_events)
    lists = [
        free_houses,
        free_questions,
        list(design.paired_pollsters),
        list(design.paired_questions),
        paired_events,
        paired_segments,
        unpaired_events,
    ]
    structure = np.concatenate([header, *(np.asarray(v, dtype=np.int64) for v in lists)])
    p = config.priors
    constants = np.array(
        [
            p.level_sd,
            p.walk_scale(design.cell_days),
            p.jump_sd,
            p.house_sd,
            p.question_sd,
            p.nonsampling_sd_pp,
            p.unknown_n_log_sd,
        ],
        dtype=np.float64,
    )
    return HandWritten(structure.astype(np.int64), constants)


def with_offsets(structure: np.ndarray, free: list[tuple[str, int]]) -> np.ndarray:
    """``structure`` with each free variable's start in nutpie's flat vector, from ``free``
    ((value name, start) in the vector's order).

    Raises
    ------
    ValueError
        If a free variable is one :func:`logp_and_gradient` does not know, or one it needs is
        missing.
    """
    out = structure.copy()
    for name, start in free:
        if name not in OFFSET_OF:
            raise ValueError(f"the hand-written log density has no variable {name!r}")
        out[OFFSET_OF[name]] = start
    needed = [X_LEVEL, X_WALK_SD, X_INNOVATION, X_KNOTS, X_HOUSE_SD, X_NONSAMPLING_SD, X_LOG_N_Z]
    missing = [slot for slot in needed if out[slot] < 0]
    if missing:
        names = sorted({name for name, slot in OFFSET_OF.items() if slot in missing})
        raise ValueError(f"the hand-written log density needs the free variables {names}")
    return out


@numba.njit(cache=True, error_model="numpy")
def _lgamma_digamma(x):
    """``log Gamma(x)`` and digamma(x) for ``x > 0``: the recurrences up to 10 or more, then
    Stirling's series (one logarithm for both, one more for the shift)."""
    shift_product = 1.0
    shift_psi = 0.0
    y = x
    while y < 10.0:
        shift_product *= y
        shift_psi += 1.0 / y
        y += 1.0
    log_y = math.log(y)
    r = 1.0 / y
    r2 = r * r
    lgamma = (
        (y - 0.5) * log_y
        - y
        + _LOG_SQRT_2PI
        + r
        * (
            1.0 / 12
            - r2
            * (
                1.0 / 360
                - r2
                * (
                    1.0 / 1260
                    - r2 * (1.0 / 1680 - r2 * (1.0 / 1188 - r2 * (691.0 / 360360 - r2 / 156)))
                )
            )
        )
    )
    psi = (
        log_y
        - 0.5 * r
        - r2
        * (
            1.0 / 12
            - r2
            * (
                1.0 / 120
                - r2
                * (1.0 / 252 - r2 * (1.0 / 240 - r2 * (1.0 / 132 - r2 * (691.0 / 32760 - r2 / 12))))
            )
        )
    )
    if y != x:
        lgamma -= math.log(shift_product)
        psi -= shift_psi
    return lgamma, psi


@numba.njit(cache=True, error_model="numpy", inline="always")
def _zero_sum_extend(x, start, stride, n, out, out_start, out_stride):
    """PyMC's ``ZeroSumTransform`` backward along one axis of length ``n``: the ``n - 1`` free
    values ``x[start + i stride]`` into ``n`` values summing to zero at
    ``out[out_start + i out_stride]``."""
    sqrt_n = math.sqrt(float(n))
    total = 0.0
    for i in range(n - 1):
        total += x[start + i * stride]
    norm = total / (sqrt_n + n)
    for i in range(n - 1):
        out[out_start + i * out_stride] = x[start + i * stride] - norm
    out[out_start + (n - 1) * out_stride] = -total / sqrt_n


@numba.njit(cache=True, error_model="numpy", inline="always")
def _zero_sum_extend_grad(value_grad, value_start, value_stride, n, grad, start, stride):
    """:func:`_zero_sum_extend`'s vector-Jacobian product: the ``n`` values' gradient at
    ``value_grad[value_start + i value_stride]`` added into ``grad[start + i stride]``."""
    sqrt_n = math.sqrt(float(n))
    first = 0.0
    for i in range(n - 1):
        first += value_grad[value_start + i * value_stride]
    last = value_grad[value_start + (n - 1) * value_stride]
    for i in range(n - 1):
        grad[start + i * stride] += (
            value_grad[value_start + i * value_stride] - first / (sqrt_n + n) - last / sqrt_n
        )


@numba.njit(cache=True, error_model="numpy")
def _zero_sum_rows(x, start, rows, k, out):
    """:func:`_zero_sum_extend` along each row: ``rows`` rows of ``k - 1`` free values at
    ``x[start:]`` into ``out`` (rows, k)."""
    for r in range(rows):
        _zero_sum_extend(x, start + r * (k - 1), 1, k, out[r], 0, 1)


@numba.njit(cache=True, error_model="numpy")
def _zero_sum_rows_grad(value_grad, start, rows, k, grad):
    """:func:`_zero_sum_rows`' vector-Jacobian product: ``value_grad`` (rows, k) added into
    ``grad[start:]``."""
    for r in range(rows):
        _zero_sum_extend_grad(value_grad[r], 0, 1, k, grad, start + r * (k - 1), 1)


@numba.njit(cache=True, error_model="numpy")
def _zero_sum_table(x, start, rows, k, out):
    """PyMC's ``ZeroSumTransform`` backward over two axes (``n_zerosum_axes=2``): ``rows - 1`` rows
    of ``k - 1`` free values at ``x[start:]`` extended first down each column to ``rows``, then
    along each row to ``k``, into ``out`` (rows, k)."""
    columns = np.empty(rows * (k - 1))  # the first extension, flat (rows, k - 1)
    for j in range(k - 1):
        _zero_sum_extend(x, start + j, k - 1, rows, columns, j, k - 1)
    _zero_sum_rows(columns, 0, rows, k, out)


@numba.njit(cache=True, error_model="numpy")
def _zero_sum_table_grad(value_grad, start, rows, k, grad):
    """:func:`_zero_sum_table`'s vector-Jacobian product: ``value_grad`` (rows, k) added into
    ``grad[start:]``."""
    columns_grad = np.zeros(rows * (k - 1))
    _zero_sum_rows_grad(value_grad, 0, rows, k, columns_grad)
    for j in range(k - 1):
        _zero_sum_extend_grad(columns_grad, j, k - 1, rows, grad, start + j, k - 1)


@numba.njit(cache=True, error_model="numpy")
def _zero_sum_normal_dof(values, sd, value_grad, dof):
    """Log density of ``values`` (rows, k), ``ZeroSumNormal(sd)`` with ``dof`` degrees of freedom
    (``rows (k - 1)`` for independent rows, ``(rows - 1)(k - 1)`` for a table zero-sum over both
    axes); adds its gradient with respect to the values into ``value_grad`` and returns (log
    density, its derivative in ``sd``)."""
    rows, k = values.shape
    squares = 0.0
    for r in range(rows):
        for j in range(k):
            squares += values[r, j] * values[r, j]
            value_grad[r, j] -= values[r, j] / (sd * sd)
    logp = -0.5 * squares / (sd * sd) - dof * (_LOG_SQRT_2PI + math.log(sd))
    return logp, squares / (sd * sd * sd) - dof / sd


@numba.njit(cache=True, error_model="numpy")
def _zero_sum_normal(values, sd, value_grad):
    """:func:`_zero_sum_normal_dof` of independent rows, each ``ZeroSumNormal(sd)`` over ``k``."""
    rows, k = values.shape
    return _zero_sum_normal_dof(values, sd, value_grad, rows * (k - 1))


@numba.njit(cache=True, error_model="numpy")
def _free_effects(x, start, centred, table, sd, index, effects, raw, raw_grad):
    """The free (unpaired) house or question effects, forward: ``raw`` (rows, k) from ``x`` at
    ``start`` (zero-sum over answers; with ``table``, over the rows too: the ``zero_sum`` houses),
    its ``ZeroSumNormal`` prior's gradient into ``raw_grad``, and ``effects[index[r]] = scale
    raw[r]`` (``scale`` is ``sd`` non-centred, 1 centred, where the prior has scale ``sd``).
    Returns the prior's log density and its derivative in ``sd``."""
    rows, k = raw.shape
    if rows == 0:
        return 0.0, 0.0
    if table:
        _zero_sum_table(x, start, rows, k, raw)
        dof = (rows - 1) * (k - 1)
    else:
        _zero_sum_rows(x, start, rows, k, raw)
        dof = rows * (k - 1)
    if centred:
        term, sd_grad = _zero_sum_normal_dof(raw, sd, raw_grad, dof)
        scale = 1.0
    else:
        term, _ = _zero_sum_normal_dof(raw, 1.0, raw_grad, dof)
        sd_grad, scale = 0.0, sd
    for r in range(rows):
        for j in range(k):
            effects[index[r], j] = scale * raw[r, j]
    return term, sd_grad


@numba.njit(cache=True, error_model="numpy")
def _free_effects_grad(effects_grad, index, centred, table, sd, raw, raw_grad, start, grad):
    """:func:`_free_effects` back: the effects' gradient into ``raw_grad`` and through the
    zero-sum transform into ``grad`` at ``start``. Returns the derivative in ``sd``."""
    rows, k = raw.shape
    sd_grad = 0.0
    if rows == 0:
        return sd_grad
    for r in range(rows):
        for j in range(k):
            effect_grad = effects_grad[index[r], j]
            if centred:
                raw_grad[r, j] += effect_grad
            else:
                raw_grad[r, j] += sd * effect_grad
                sd_grad += effect_grad * raw[r, j]
    if table:
        _zero_sum_table_grad(raw_grad, start, rows, k, grad)
    else:
        _zero_sum_rows_grad(raw_grad, start, rows, k, grad)
    return sd_grad


@numba.njit(cache=True, error_model="numpy")
def _softmax(logits, out):
    """``out = softmax(logits)`` over one row, shifted by its largest entry."""
    top = logits[0]
    for j in range(1, logits.shape[0]):
        top = max(top, logits[j])
    norm = 0.0
    for j in range(logits.shape[0]):
        out[j] = math.exp(logits[j] - top)
        norm += out[j]
    for j in range(logits.shape[0]):
        out[j] /= norm


@numba.njit(cache=True, error_model="numpy")
def _half_normal_on_log(u, scale):
    """``HalfNormal(scale)`` of ``exp(u)`` plus the log transform's Jacobian ``u``: (log density,
    the value, the density's derivative in the value, Jacobian excluded)."""
    value = math.exp(u)
    logp = _HALF_LOG_2_OVER_PI - math.log(scale) - 0.5 * (value / scale) ** 2 + u
    return logp, value, -value / (scale * scale)


@numba.njit(cache=True, error_model="numpy")
def _check_data(  # noqa: PLR0912 (one check per array)
    x,
    structure,
    first_cell,
    last_cell,
    pollster_idx,
    question_idx,
    membership,
    used,
    n_stated,
    segment_start,
    segment_end,
    event_cell,
    log_n_median,
    unknown_n_poll,
    observed,
    weight,
    free_step,
    anchor_cell,
    anchor_answer,
    anchor_sd,
    anchor_value,
):
    """Refuse data :func:`logp_and_gradient` would read out of bounds (a ``ValueError``, which the
    sampler's callback turns into a fatal error, as PyTensor's kernels do)."""
    k = structure[K_ANSWERS]
    n_cells = structure[N_CELLS]
    n_polls = first_cell.shape[0]
    n_unknown = structure[N_UNKNOWN]
    if x.shape[0] < structure[X_LOG_N_Z] + n_unknown:
        raise ValueError(
            "hand-written log density: the point is shorter than the model's parameters"
        )
    for array_rows in (last_cell.shape[0], pollster_idx.shape[0], question_idx.shape[0]):
        if array_rows != n_polls:
            raise ValueError("hand-written log density: the readings' arrays differ in length")
    if n_stated.shape[0] != n_polls or observed.shape[0] != n_polls or used.shape[0] != n_polls:
        raise ValueError("hand-written log density: the readings' arrays differ in length")
    if membership.shape[0] != n_polls or membership.shape[1] != k:
        raise ValueError(
            "hand-written log density: membership is not (readings, answers, components)"
        )
    if membership.shape[2] != used.shape[1] or observed.shape[1] != used.shape[1]:
        raise ValueError("hand-written log density: the components' arrays differ in width")
    if structure[WEIGHTED] and weight.shape[0] != n_polls:
        raise ValueError("hand-written log density: one weight per reading expected")
    for i in range(n_polls):
        if not 0 <= first_cell[i] <= last_cell[i] < n_cells:
            raise ValueError("hand-written log density: a reading's cells are outside the grid")
        if not 0 <= pollster_idx[i] < structure[N_POLLSTERS]:
            raise ValueError("hand-written log density: a pollster index is out of range")
        if not 0 <= question_idx[i] < structure[N_QUESTIONS]:
            raise ValueError("hand-written log density: a question index is out of range")
    if (
        segment_start.shape[0] != structure[N_SEGMENTS]
        or segment_end.shape[0] != structure[N_SEGMENTS]
    ):
        raise ValueError("hand-written log density: the segments' bounds differ from the structure")
    for g in range(segment_start.shape[0]):
        if not 0 <= segment_start[g] < segment_end[g] <= n_cells - 1:
            raise ValueError(
                "hand-written log density: a segment is empty or outside the walk's steps"
            )
    if event_cell.shape[0] != structure[N_EVENTS]:
        raise ValueError("hand-written log density: the events differ from the structure")
    for e in range(event_cell.shape[0]):
        if not 0 <= event_cell[e] < n_cells:
            raise ValueError("hand-written log density: an event's cell is outside the grid")
    if unknown_n_poll.shape[0] != n_unknown:
        raise ValueError(
            "hand-written log density: the unknown sample sizes differ from the structure"
        )
    for r in range(n_unknown):
        if not 0 <= unknown_n_poll[r] < n_polls:
            raise ValueError(
                "hand-written log density: an unknown sample size's reading is out of range"
            )
    if log_n_median.size < (n_unknown if structure[MEDIAN_PER_READING] else 1):
        raise ValueError("hand-written log density: too few prior medians of unknown sample sizes")
    n_free = structure[N_FREE_STEPS]
    if structure[SOME_STEPS_FIXED]:
        if free_step.shape[0] != n_free:
            raise ValueError("hand-written log density: the free steps differ from the structure")
        for r in range(n_free):
            if not 0 <= free_step[r] < n_cells - 1:
                raise ValueError("hand-written log density: a free step is outside the walk")
    elif n_free != n_cells - 1:
        raise ValueError("hand-written log density: every step free, but not one per step")
    n_anchors = structure[N_ANCHORS]
    for array_rows in (
        anchor_cell.shape[0],
        anchor_answer.shape[0],
        anchor_sd.shape[0],
        anchor_value.shape[0],
    ):
        if array_rows != n_anchors:
            raise ValueError("hand-written log density: the anchors differ from the structure")
    for a in range(n_anchors):
        if not (0 <= anchor_cell[a] < n_cells and 0 <= anchor_answer[a] < k):
            raise ValueError("hand-written log density: an anchor is outside the grid or answers")


@numba.njit(cache=True, error_model="numpy")
def logp_and_gradient(  # noqa: C901, PLR0912, PLR0915 (one pass forward, one back: the point of it)
    x,
    structure,
    constants,
    first_cell,
    last_cell,
    pollster_idx,
    question_idx,
    membership,
    used,
    n_stated,
    segment_start,
    segment_end,
    event_cell,
    log_n_median,
    unknown_n_poll,
    observed,
    weight,
    free_step,
    anchor_cell,
    anchor_answer,
    anchor_sd,
    anchor_value,
):
    """The model's log density at the flat unconstrained point ``x`` and its gradient.

    ``structure`` from :func:`with_offsets`, ``constants`` from :func:`hand_written_structure`,
    then the model's data in :data:`DATA_ARGUMENTS`' order. Returns (log density, gradient).
    """
    level_sd, walk_scale, jump_sd = constants[0], constants[1], constants[2]
    house_prior, question_prior = constants[3], constants[4]
    nonsampling_prior, log_n_sd = constants[5], constants[6]
    k = structure[K_ANSWERS]
    km = k - 1
    n_cells = structure[N_CELLS]
    n_steps = n_cells - 1
    n_free = structure[N_FREE_STEPS]
    n_segments = structure[N_SEGMENTS]
    n_events = structure[N_EVENTS]
    n_unknown = structure[N_UNKNOWN]
    n_polls = first_cell.shape[0]
    at = HEADER
    free_houses = structure[at : at + structure[N_FREE_HOUSES]]
    at += structure[N_FREE_HOUSES]
    free_questions = structure[at : at + structure[N_FREE_QUESTIONS]]
    at += structure[N_FREE_QUESTIONS]
    pair_houses = structure[at : at + structure[N_PAIRS]]
    at += structure[N_PAIRS]
    pair_questions = structure[at : at + structure[N_PAIRS]]
    at += structure[N_PAIRS]
    paired_events = structure[at : at + structure[N_PAIRED_EVENTS]]
    at += structure[N_PAIRED_EVENTS]
    paired_segments = structure[at : at + structure[N_PAIRED_EVENTS]]
    at += structure[N_PAIRED_EVENTS]
    unpaired_events = structure[at : at + structure[N_UNPAIRED_EVENTS]]
    n_paired = paired_events.shape[0]
    n_unpaired = unpaired_events.shape[0]
    n_pairs = pair_houses.shape[0]
    n_free_houses = free_houses.shape[0]
    n_free_questions = free_questions.shape[0]
    centred_knots = structure[CENTRED_KNOTS] != 0
    log_n_median = log_n_median.reshape(log_n_median.size)
    _check_data(
        x,
        structure,
        first_cell,
        last_cell,
        pollster_idx,
        question_idx,
        membership,
        used,
        n_stated,
        segment_start,
        segment_end,
        event_cell,
        log_n_median,
        unknown_n_poll,
        observed,
        weight,
        free_step,
        anchor_cell,
        anchor_answer,
        anchor_sd,
        anchor_value,
    )
    grad = np.zeros(x.shape[0])
    logp = 0.0

    # ---- Forward: the level, the walk's scale and its innovations.
    level = np.empty((1, k))
    _zero_sum_rows(x, structure[X_LEVEL], 1, k, level)
    level_grad = np.zeros((1, k))
    term, _ = _zero_sum_normal(level, level_sd, level_grad)
    logp += term
    term, walk_sd, walk_sd_grad = _half_normal_on_log(x[structure[X_WALK_SD]], walk_scale)
    logp += term
    z_free = np.empty((n_free, k))
    _zero_sum_rows(x, structure[X_INNOVATION], n_free, k, z_free)
    z_free_grad = np.zeros((n_free, k))
    term, _ = _zero_sum_normal(z_free, 1.0, z_free_grad)
    logp += term
    z = np.zeros((n_steps, k))
    for r in range(n_free):
        step = free_step[r] if structure[SOME_STEPS_FIXED] else r
        for j in range(k):
            z[step, j] = z_free[r, j]

    # ---- The knots: each segment's change from the running sums, and its prior.
    knots = np.empty((n_segments, k))
    _zero_sum_rows(x, structure[X_KNOTS], n_segments, k, knots)
    holds_jump = np.zeros(n_segments, dtype=np.bool_)
    for e in range(n_paired):
        holds_jump[paired_segments[e]] = True
    walk_var = np.empty(n_segments)
    total_var = np.empty(n_segments)
    diff = np.empty((n_segments, k))
    diff_grad = np.zeros((n_segments, k))
    total_var_grad = np.zeros(n_segments)  # the centred prior's derivative in the variance
    total = np.empty((n_segments, k))
    for g in range(n_segments):
        length = float(segment_end[g] - segment_start[g])
        walk_var[g] = walk_sd * walk_sd * length
        total_var[g] = walk_var[g] + (jump_sd * jump_sd if holds_jump[g] else 0.0)
        squares = 0.0
        for j in range(k):
            diff[g, j] = knots[g, j] - (knots[g - 1, j] if g > 0 else level[0, j])
            squares += diff[g, j] * diff[g, j]
        if centred_knots:
            logp += -0.5 * squares / total_var[g] - km * (
                _LOG_SQRT_2PI + 0.5 * math.log(total_var[g])
            )
            total_var_grad[g] = (
                0.5 * squares / (total_var[g] * total_var[g]) - 0.5 * km / total_var[g]
            )
            for j in range(k):
                diff_grad[g, j] = -diff[g, j] / total_var[g]
                total[g, j] = diff[g, j]
        else:
            logp += -0.5 * squares - km * _LOG_SQRT_2PI
            sd = math.sqrt(total_var[g])
            for j in range(k):
                diff_grad[g, j] = -diff[g, j]
                total[g, j] = sd * diff[g, j]

    # ---- Events: a paired jump is its share of its segment's change; the others are free.
    jump = np.zeros((n_events, k))
    change = total.copy()
    split = np.empty((n_paired, k))
    split_grad = np.zeros((n_paired, k))
    if n_paired:
        _zero_sum_rows(x, structure[X_JUMP_SPLIT], n_paired, k, split)
        term, _ = _zero_sum_normal(split, 1.0, split_grad)
        logp += term
        for e in range(n_paired):
            g = paired_segments[e]
            a = jump_sd * jump_sd / total_var[g]
            b = jump_sd * math.sqrt(walk_var[g]) / math.sqrt(total_var[g])
            for j in range(k):
                part = a * total[g, j] + b * split[e, j]
                jump[paired_events[e], j] = part
                change[g, j] = total[g, j] - part
    unpaired = np.empty((n_unpaired, k))
    unpaired_grad = np.zeros((n_unpaired, k))
    if n_unpaired:
        _zero_sum_rows(x, structure[X_JUMP], n_unpaired, k, unpaired)
        term, _ = _zero_sum_normal(unpaired, jump_sd, unpaired_grad)
        logp += term
        for e in range(n_unpaired):
            for j in range(k):
                jump[unpaired_events[e], j] = unpaired[e, j]

    # ---- The walk by segments (a bridge within each), the trend, its running sum.
    increment = np.empty((n_steps, k))
    for s in range(n_steps):
        for j in range(k):
            increment[s, j] = walk_sd * z[s, j]
    segment_mean = np.empty((n_segments, k))
    for g in range(n_segments):
        a0, b0 = segment_start[g], segment_end[g]
        m = b0 - a0
        for j in range(k):
            z_sum = 0.0
            for s in range(a0, b0):
                z_sum += z[s, j]
            segment_mean[g, j] = z_sum / m
            per_step = change[g, j] / m
            for s in range(a0, b0):
                increment[s, j] = walk_sd * (z[s, j] - segment_mean[g, j]) + per_step
    eta = np.empty((n_cells, k))
    for j in range(k):
        eta[0, j] = level[0, j]
    for t in range(1, n_cells):
        for j in range(k):
            eta[t, j] = eta[t - 1, j] + increment[t - 1, j]
    for e in range(n_events):
        for t in range(event_cell[e], n_cells):
            for j in range(k):
                eta[t, j] += jump[e, j]
    running = np.empty((n_cells + 1, k))
    for j in range(k):
        running[0, j] = 0.0
    for t in range(n_cells):
        for j in range(k):
            running[t + 1, j] = running[t, j] + eta[t, j]
    # Anchors: a known true share of one answer at one cell, Normal around the trend's share.
    n_anchors = structure[N_ANCHORS]
    anchor_share = np.empty((n_anchors, k))
    anchor_slope = np.empty(n_anchors)  # d log density / d the anchored share
    for anchor in range(n_anchors):
        _softmax(eta[anchor_cell[anchor]], anchor_share[anchor])
        sd = anchor_sd[anchor]
        residual = (anchor_value[anchor] - anchor_share[anchor, anchor_answer[anchor]]) / sd
        logp += -0.5 * residual * residual - math.log(sd) - _LOG_SQRT_2PI
        anchor_slope[anchor] = residual / sd

    # ---- House and question effects.
    house = np.zeros((structure[N_POLLSTERS], k))
    question = np.zeros((structure[N_QUESTIONS], k))
    term, house_sd, house_sd_grad = _half_normal_on_log(x[structure[X_HOUSE_SD]], house_prior)
    logp += term
    question_sd, question_sd_grad = 0.0, 0.0
    if structure[X_QUESTION_SD] >= 0:
        term, question_sd, question_sd_grad = _half_normal_on_log(
            x[structure[X_QUESTION_SD]], question_prior
        )
        logp += term
    house_raw = np.empty((n_free_houses, k))
    house_raw_grad = np.zeros((n_free_houses, k))
    term, sd_grad = _free_effects(
        x,
        structure[X_HOUSE_RAW],
        structure[CENTRED_HOUSES],
        structure[ZERO_SUM_HOUSES],
        house_sd,
        free_houses,
        house,
        house_raw,
        house_raw_grad,
    )
    logp += term
    house_sd_grad += sd_grad
    question_raw = np.empty((n_free_questions, k))
    question_raw_grad = np.zeros((n_free_questions, k))
    term, sd_grad = _free_effects(
        x,
        structure[X_QUESTION_RAW],
        structure[CENTRED_QUESTIONS],
        0,
        question_sd,
        free_questions,
        question,
        question_raw,
        question_raw_grad,
    )
    logp += term
    question_sd_grad += sd_grad
    pair_sum = np.empty((n_pairs, k))
    pair_split = np.empty((n_pairs, k))
    pair_sum_grad = np.zeros((n_pairs, k))
    pair_split_grad = np.zeros((n_pairs, k))
    pair_var = house_sd * house_sd + question_sd * question_sd
    pair_a, pair_b = 0.0, 0.0
    if n_pairs:
        _zero_sum_rows(x, structure[X_PAIR_SUM], n_pairs, k, pair_sum)
        _zero_sum_rows(x, structure[X_PAIR_SPLIT], n_pairs, k, pair_split)
        pair_sd = math.sqrt(pair_var)
        term, sd_grad = _zero_sum_normal(pair_sum, pair_sd, pair_sum_grad)
        logp += term
        house_sd_grad += sd_grad * house_sd / pair_sd
        question_sd_grad += sd_grad * question_sd / pair_sd
        term, _ = _zero_sum_normal(pair_split, 1.0, pair_split_grad)
        logp += term
        pair_a = house_sd * house_sd / pair_var
        pair_b = house_sd * question_sd / math.sqrt(pair_var)
        for r in range(n_pairs):
            for j in range(k):
                part = pair_a * pair_sum[r, j] + pair_b * pair_split[r, j]
                house[pair_houses[r], j] = part
                question[pair_questions[r], j] = pair_sum[r, j] - part

    # ---- Sample sizes and the non-sampling error.
    term, nonsampling_sd, nonsampling_sd_grad = _half_normal_on_log(
        x[structure[X_NONSAMPLING_SD]], nonsampling_prior
    )
    logp += term
    tau = nonsampling_sd / 50.0
    n = n_stated.astype(np.float64)
    x_log_n = structure[X_LOG_N_Z]
    for r in range(n_unknown):
        log_n_z = x[x_log_n + r]
        logp += -_LOG_SQRT_2PI - 0.5 * log_n_z * log_n_z
        grad[x_log_n + r] -= log_n_z
        median = log_n_median[r] if structure[MEDIAN_PER_READING] else log_n_median[0]
        n[unknown_n_poll[r]] = math.exp(median + log_n_sd * log_n_z)

    # ---- The readings: each one's shares, its Dirichlet density, and their gradients at once.
    n_components = used.shape[1]
    running_grad = np.zeros((n_cells + 1, k))
    house_grad = np.zeros((structure[N_POLLSTERS], k))
    question_grad = np.zeros((structure[N_QUESTIONS], k))
    tau_grad = 0.0
    n_grad = np.zeros(n_polls)
    logits = np.empty(k)
    p = np.empty(k)
    p_grad = np.empty(k)
    p_component = np.empty(n_components)
    alpha = np.empty(n_components)
    weighted = structure[WEIGHTED] != 0
    for i in range(n_polls):
        w = weight[i] if weighted else 1.0
        a0, b0 = first_cell[i], last_cell[i]
        width = float(b0 - a0 + 1)
        h, q = pollster_idx[i], question_idx[i]
        for j in range(k):
            logits[j] = (running[b0 + 1, j] - running[a0, j]) / width + house[h, j] + question[q, j]
            p_grad[j] = 0.0
        _softmax(logits, p)
        concentration = 1.0 / (1.0 / n[i] + tau * tau)
        alpha_total = 0.0
        for c in range(n_components):
            share = 0.0
            for j in range(k):
                share += p[j] * membership[i, j, c]
            p_component[c] = share
            alpha[c] = concentration * share
            if used[i, c]:
                alpha_total += alpha[c]
        term, psi_total = _lgamma_digamma(alpha_total)
        concentration_grad = 0.0
        for c in range(n_components):
            if used[i, c]:
                log_y = math.log(observed[i, c])
                lgamma_c, psi_c = _lgamma_digamma(alpha[c])
                term += (alpha[c] - 1.0) * log_y - lgamma_c
                alpha_grad = w * (psi_total + log_y - psi_c)
                concentration_grad += alpha_grad * p_component[c]
                for j in range(k):
                    p_grad[j] += alpha_grad * concentration * membership[i, j, c]
        logp += w * term
        tau_grad -= concentration_grad * 2.0 * tau * concentration * concentration
        n_grad[i] = concentration_grad * concentration * concentration / (n[i] * n[i])
        dot = 0.0
        for j in range(k):
            dot += p[j] * p_grad[j]
        for j in range(k):
            logit_grad = p[j] * (p_grad[j] - dot)
            house_grad[h, j] += logit_grad
            question_grad[q, j] += logit_grad
            running_grad[a0, j] -= logit_grad / width
            running_grad[b0 + 1, j] += logit_grad / width

    # ---- Backward: sample sizes and the non-sampling error.
    for r in range(n_unknown):
        i = unknown_n_poll[r]
        grad[x_log_n + r] += n_grad[i] * n[i] * log_n_sd
    nonsampling_sd_grad += tau_grad / 50.0
    grad[structure[X_NONSAMPLING_SD]] += nonsampling_sd_grad * nonsampling_sd + 1.0

    # ---- House and question effects.
    if n_pairs:
        a_house = 2.0 * house_sd * question_sd * question_sd / (pair_var * pair_var)
        a_question = -2.0 * house_sd * house_sd * question_sd / (pair_var * pair_var)
        b_house = question_sd**3 / pair_var**1.5
        b_question = house_sd**3 / pair_var**1.5
        for r in range(n_pairs):
            for j in range(k):
                q_grad = question_grad[pair_questions[r], j]
                part_grad = house_grad[pair_houses[r], j] - q_grad
                pair_sum_grad[r, j] += q_grad + pair_a * part_grad
                pair_split_grad[r, j] += pair_b * part_grad
                house_sd_grad += part_grad * (a_house * pair_sum[r, j] + b_house * pair_split[r, j])
                question_sd_grad += part_grad * (
                    a_question * pair_sum[r, j] + b_question * pair_split[r, j]
                )
        _zero_sum_rows_grad(pair_sum_grad, structure[X_PAIR_SUM], n_pairs, k, grad)
        _zero_sum_rows_grad(pair_split_grad, structure[X_PAIR_SPLIT], n_pairs, k, grad)
    house_sd_grad += _free_effects_grad(
        house_grad,
        free_houses,
        structure[CENTRED_HOUSES],
        structure[ZERO_SUM_HOUSES],
        house_sd,
        house_raw,
        house_raw_grad,
        structure[X_HOUSE_RAW],
        grad,
    )
    question_sd_grad += _free_effects_grad(
        question_grad,
        free_questions,
        structure[CENTRED_QUESTIONS],
        0,
        question_sd,
        question_raw,
        question_raw_grad,
        structure[X_QUESTION_RAW],
        grad,
    )
    grad[structure[X_HOUSE_SD]] += house_sd_grad * house_sd + 1.0
    if structure[X_QUESTION_SD] >= 0:
        grad[structure[X_QUESTION_SD]] += question_sd_grad * question_sd + 1.0

    # ---- The trend: running[t + 1] sums eta up to t, so eta[u] gets every running_grad past u.
    eta_grad = np.empty((n_cells, k))
    for j in range(k):
        acc = 0.0
        for t in range(n_cells - 1, -1, -1):
            acc += running_grad[t + 1, j]
            eta_grad[t, j] = acc
    for anchor in range(n_anchors):
        t, chosen = anchor_cell[anchor], anchor_answer[anchor]
        through_share = anchor_slope[anchor] * anchor_share[anchor, chosen]
        for j in range(k):
            eta_grad[t, j] += through_share * (
                (1.0 if j == chosen else 0.0) - anchor_share[anchor, j]
            )
    jump_grad = np.zeros((n_events, k))
    for e in range(n_events):
        for t in range(event_cell[e], n_cells):
            for j in range(k):
                jump_grad[e, j] += eta_grad[t, j]
    # eta[t] = level + the increments before t: after[s] sums eta_grad past step s.
    after = np.empty((n_steps, k))
    for j in range(k):
        acc = 0.0
        for s in range(n_steps - 1, -1, -1):
            acc += eta_grad[s + 1, j]
            after[s, j] = acc
        level_grad[0, j] += acc + eta_grad[0, j]
    z_grad = np.empty((n_steps, k))
    change_grad = np.zeros((n_segments, k))
    for s in range(n_steps):
        for j in range(k):
            z_grad[s, j] = walk_sd * after[s, j]
            walk_sd_grad += after[s, j] * z[s, j]
    for g in range(n_segments):
        a0, b0 = segment_start[g], segment_end[g]
        m = b0 - a0
        for j in range(k):
            after_sum = 0.0
            for s in range(a0, b0):
                after_sum += after[s, j]
            mean_after = after_sum / m
            change_grad[g, j] = mean_after
            for s in range(a0, b0):
                z_grad[s, j] = walk_sd * (after[s, j] - mean_after)
                walk_sd_grad -= after[s, j] * segment_mean[g, j]  # the bridge: z less its mean
    for r in range(n_free):
        step = free_step[r] if structure[SOME_STEPS_FIXED] else r
        for j in range(k):
            z_free_grad[r, j] += z_grad[step, j]
    _zero_sum_rows_grad(z_free_grad, structure[X_INNOVATION], n_free, k, grad)

    # ---- Events: a paired jump and what its segment's change keeps.
    total_grad = change_grad.copy()
    for e in range(n_paired):
        g = paired_segments[e]
        a = jump_sd * jump_sd / total_var[g]
        b = jump_sd * math.sqrt(walk_var[g]) / math.sqrt(total_var[g])
        var_grad = (
            2.0 * walk_sd * float(segment_end[g] - segment_start[g])
        )  # d variance / d walk_sd
        a_grad = -jump_sd * jump_sd / (total_var[g] * total_var[g]) * var_grad
        b_grad = (
            0.5
            * jump_sd
            / math.sqrt(walk_var[g] / total_var[g])
            * var_grad
            * jump_sd
            * jump_sd
            / (total_var[g] * total_var[g])
        )
        for j in range(k):
            part_grad = jump_grad[paired_events[e], j] - change_grad[g, j]
            total_grad[g, j] += a * part_grad
            split_grad[e, j] += b * part_grad
            walk_sd_grad += part_grad * (a_grad * total[g, j] + b_grad * split[e, j])
    if n_paired:
        _zero_sum_rows_grad(split_grad, structure[X_JUMP_SPLIT], n_paired, k, grad)
    for e in range(n_unpaired):
        for j in range(k):
            unpaired_grad[e, j] += jump_grad[unpaired_events[e], j]
    if n_unpaired:
        _zero_sum_rows_grad(unpaired_grad, structure[X_JUMP], n_unpaired, k, grad)

    # ---- The knots, the level and the walk's scale.
    for g in range(n_segments):
        length = float(segment_end[g] - segment_start[g])
        if centred_knots:
            for j in range(k):
                diff_grad[g, j] += total_grad[g, j]
            walk_sd_grad += total_var_grad[g] * 2.0 * walk_sd * length
        else:
            sd = math.sqrt(total_var[g])
            sd_grad = 0.0
            for j in range(k):
                diff_grad[g, j] += sd * total_grad[g, j]
                sd_grad += total_grad[g, j] * diff[g, j]
            walk_sd_grad += sd_grad * walk_sd * length / sd
    knots_grad = np.zeros((n_segments, k))
    for g in range(n_segments):
        for j in range(k):
            knots_grad[g, j] += diff_grad[g, j]
            if g > 0:
                knots_grad[g - 1, j] -= diff_grad[g, j]
            else:
                level_grad[0, j] -= diff_grad[g, j]
    _zero_sum_rows_grad(knots_grad, structure[X_KNOTS], n_segments, k, grad)
    _zero_sum_rows_grad(level_grad, structure[X_LEVEL], 1, k, grad)
    grad[structure[X_WALK_SD]] += walk_sd_grad * walk_sd + 1.0
    return logp, grad
