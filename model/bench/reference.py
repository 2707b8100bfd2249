r"""A reference implementation of the poll model in NumPyro (JAX), for ``make bench``.

The same statistical model as :class:`model.aggregator.graph.PollAggregator`, written the way a competent
NumPyro user would write it from that class's docstring, and sampled with NumPyro's NUTS at its
defaults (target acceptance 0.8, maximum tree depth 10, diagonal mass matrix), or at a higher target
acceptance where the bench asks for one (:data:`model.bench.REFERENCE_LADDER`). Only the data
preparation is shared with the project (:func:`model.aggregator.design.build_design` makes the arrays); the
model and the sampler are the reference's own. In particular the project's optimisations (the
centred/non-centred choice per design and the reparameterisation of confounded house/question
pairs) are *not* copied: house and question effects here are plainly non-centred, so the posterior
is the same distribution, reached by a different parameterisation.

The model, for readings :math:`i` (pollster :math:`h_i`, question :math:`q_i`, grid cells
:math:`a_i..b_i`), answers :math:`k = 1..K` and grid cells :math:`t = 0..T-1` of :math:`\Delta` days:

.. math::

    \lambda &\sim \mathrm{ZeroSumNormal}(s_{level})                 && \text{level over answers} \\
    \sigma_{walk} &\sim \mathrm{HalfNormal}(s_{walk}\sqrt{\Delta / 30.44}) \\
    z_{s} &\sim \mathrm{ZeroSumNormal}(1), \; s = 1..T-1            && \text{walk innovations} \\
    \delta_e &\sim \mathrm{ZeroSumNormal}(s_{jump})                  && \text{event jumps} \\
    \eta_t &= \lambda + \sigma_{walk} \textstyle\sum_{s \le t} z_s + \sum_e \delta_e [t \ge t_e] \\
    \mathrm{share}_t &= 100\,\mathrm{softmax}(\eta_t) \\
    \alpha_h &= \sigma_{house}\,\tilde\alpha_h, \; \tilde\alpha_h \sim \mathrm{ZeroSumNormal}(1),
        \; \alpha_{ref} = 0 && \text{(or zero-sum over houses too)} \\
    \beta_q &= \sigma_{question}\,\tilde\beta_q, \; \tilde\beta_q \sim \mathrm{ZeroSumNormal}(1),
        \; \beta_{ref} = 0 \\
    \sigma_{house} &\sim \mathrm{HalfNormal}(s_{house}), \quad
        \sigma_{question} \sim \mathrm{HalfNormal}(s_{question}) \\
    p_i &= \mathrm{softmax}\Big(\tfrac{1}{b_i - a_i + 1}\textstyle\sum_{t=a_i}^{b_i}\eta_t
        + \alpha_{h_i} + \beta_{q_i}\Big) \\
    50\,\tau &\sim \mathrm{HalfNormal}(s_{ns}), \quad
        1/c_i = 1/n_i + \tau^2, \quad \log n_i \sim N(\log m, s_n) \text{ where } n_i \text{ is unknown} \\
    y_i &\sim \mathrm{Dirichlet}(c_i\, M_i^\top p_i) \text{ over the reading's used components.}

All ZeroSumNormals are over the answer axis (the zero-sum house effects over pollsters and
answers); NumPyro's :class:`numpyro.distributions.ZeroSumNormal` is a port of PyMC's (same
transform, same density), so the posterior is exactly the project's. With
``house_effects="anchors"`` every house effect is free and known true shares enter as
:math:`v_j \sim N(\mathrm{softmax}(\eta_{t_j})_{k_j}, sd_j)`.

Process-wide effects: :func:`fit_reference` switches JAX to float64 (as the project samples in
float64) and, for ``chain_method="parallel"``, asks JAX for one host device per chain
(``jax_num_cpu_devices``), which works only before JAX has run anything in the process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr

from model.aggregator.design import PollDesign
from model.aggregator.names import ANSWER, EVENT, POLLSTER, QUESTION, TIME
from model.config import ANCHORS, ZERO_SUM, Config, ConfigError

#: What ``chain_method="parallel"`` falls back to when JAX cannot get one host device per chain:
#: the faster of the other two (docs/performance.md, "Figures that stood in the code's comments").
PARALLEL_FALLBACK = "vectorized"

#: The model choices the reference implements (each of :data:`model.config.MODEL_FORMS`: its
#: value): a bench of a config with another would compare the project's fit with a different
#: model's.
REFERENCE_MODEL = {
    "trend": "walk",
    "walk_prior": "half_normal",
    "nonsampling": "shared",
    "nonsampling_prior": "half_normal",
    "unknown_n": "shared",
}

#: JAX monitoring events whose time spans are counted as compile time.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)

#: Posterior variables returned, with their dims after (chain, draw).
POSTERIOR_DIMS = {
    "share": (TIME, ANSWER),
    "house_effect": (POLLSTER, ANSWER),
    "question_effect": (QUESTION, ANSWER),
    "level": (ANSWER,),
    "jump": (EVENT, ANSWER),
    "walk_sd": (),
    "house_sd": (),
    "question_sd": (),
    "nonsampling_sd": (),
}


@dataclass(frozen=True)
class ReferenceResult:
    """Posterior draws and timings of one reference fit.

    Attributes
    ----------
    idata : xarray.DataTree
        Groups ``posterior`` (variables of :data:`POSTERIOR_DIMS` present in the model, dims
        ``(chain, draw, ...)`` with the design's labels; ``share`` in percent) and ``sample_stats``
        (``diverging``; ``n_steps``, leapfrog steps per draw; ``energy``, the Hamiltonian, from
        which the diagnostics gate's E-BFMI is computed).
    divergences : int
        Divergent transitions after warm-up, over all chains.
    compile_s : float
        Seconds JAX spent tracing, lowering to MLIR and compiling during the fit (the union of the
        time spans of :data:`COMPILE_EVENTS`, so nested traces are not counted twice). This is the
        cost of the first call that is not sampling.
    sample_s : float
        Wall seconds of the fit (``MCMC.run`` to draws on the host) minus ``compile_s``: warm-up
        plus sampling, as a sampler's wall time usually is.
    chain_method : str
        How the chains were run (``"parallel"``, ``"vectorized"`` or ``"sequential"``).
    chain_method_note : str
        Why, when that is not what was asked for ("" otherwise).
    """

    idata: xr.DataTree
    divergences: int
    compile_s: float
    sample_s: float
    chain_method: str
    chain_method_note: str = ""

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior group as a Dataset."""
        return self.idata["posterior"].to_dataset()


@dataclass(frozen=True)
class ModelInputs:
    """The design's arrays in the form the NumPyro model takes (NumPy; static sizes as ints)."""

    n_time: int
    n_answer: int
    n_pollster: int
    n_question: int
    walk_scale: float
    event_after: np.ndarray  # (time, event) 1.0 from each event's cell on
    first_cell: np.ndarray
    last_cell: np.ndarray
    pollster_idx: np.ndarray
    question_idx: np.ndarray
    zero_sum_houses: bool
    free_pollsters: np.ndarray  # houses with an effect of their own (not zero_sum mode)
    free_questions: np.ndarray
    membership: np.ndarray  # (poll, answer, component)
    component_used: np.ndarray  # (poll, component) bool
    log_observed: np.ndarray  # (poll, component); 0 where unused
    n_stated: np.ndarray  # (poll,) the known sizes, 1 where unknown
    unknown_n: np.ndarray  # indices of the readings with unknown n
    log_unknown_n_median: float
    anchor_cell: np.ndarray
    anchor_answer: np.ndarray
    anchor_value: np.ndarray
    anchor_sd: np.ndarray


def check_reference_model(config: Config) -> None:
    """Raise :class:`ConfigError` if ``config`` makes a model choice the reference does not
    implement (:data:`REFERENCE_MODEL`)."""
    other = {f: getattr(config, f) for f, v in REFERENCE_MODEL.items() if getattr(config, f) != v}
    if other:
        raise ConfigError(
            "the NumPyro reference implements only the library's model choices ("
            + ", ".join(f"{f} = {v!r}" for f, v in REFERENCE_MODEL.items())
            + "); this config has "
            + ", ".join(f"{f} = {v!r}" for f, v in other.items())
        )


def model_inputs(design: PollDesign, config: Config) -> ModelInputs:
    """Lay the design out for :func:`poll_model` (shared data preparation, no modelling).

    Raises
    ------
    ConfigError
        If ``config`` makes a model choice the reference does not implement
        (:func:`check_reference_model`).
    """
    check_reference_model(config)
    d = design
    n_time = len(d.time)
    if config.house_effects == ZERO_SUM:
        free_pollsters = np.arange(len(d.pollsters))
    else:
        free_pollsters = np.array(
            [h for h, p in enumerate(d.pollsters) if p != d.reference_pollster], dtype=int
        )
    return ModelInputs(
        n_time=n_time,
        n_answer=len(d.answers),
        n_pollster=len(d.pollsters),
        n_question=len(d.questions),
        walk_scale=config.priors.walk_scale(d.cell_days),
        event_after=(np.arange(n_time)[:, None] >= np.asarray(d.event_cell)[None, :]).astype(float),
        first_cell=np.asarray(d.first_cell, dtype=int),
        last_cell=np.asarray(d.last_cell, dtype=int),
        pollster_idx=np.asarray(d.pollster_idx, dtype=int),
        question_idx=np.asarray(d.question_idx, dtype=int),
        zero_sum_houses=config.house_effects == ZERO_SUM,
        free_pollsters=free_pollsters,
        free_questions=np.arange(1, len(d.questions)),
        membership=np.asarray(d.membership, dtype=float),
        component_used=np.asarray(d.component_used, dtype=bool),
        log_observed=np.where(
            d.component_used, np.log(np.where(d.component_used, d.observed, 1.0)), 0.0
        ),
        n_stated=np.where(d.n_known, d.n, 1.0),
        unknown_n=np.flatnonzero(~d.n_known),
        log_unknown_n_median=float(np.log(d.unknown_n_median)),
        anchor_cell=np.asarray(d.anchor_cell, dtype=int)
        if config.house_effects == ANCHORS
        else np.zeros(0, int),
        anchor_answer=np.asarray(d.anchor_answer, dtype=int),
        anchor_value=np.asarray(d.anchor_value, dtype=float),
        anchor_sd=np.asarray(d.anchor_sd, dtype=float),
    )


def masked_dirichlet_logp(log_value, alpha, used):
    """Dirichlet log density of each reading over its used components only.

    Parameters
    ----------
    log_value : array (poll, component)
        Log of the observed component shares (any finite value where unused).
    alpha : array (poll, component)
        Dirichlet concentrations (may be 0 where unused).
    used : bool array (poll, component)

    Returns
    -------
    array (poll,)
        :math:`\\log\\Gamma(\\sum_{used} \\alpha) + \\sum_{used} [(\\alpha - 1)\\log y - \\log\\Gamma(\\alpha)]`.
        Unused components are replaced by 1 before ``gammaln`` so that neither the value nor the
        gradient sees ``gammaln(0)``.
    """
    import jax.numpy as jnp
    from jax.scipy.special import gammaln

    alpha_used = jnp.where(used, alpha, 1.0)
    total = jnp.sum(jnp.where(used, alpha, 0.0), axis=-1)
    terms = jnp.where(used, (alpha_used - 1.0) * log_value - gammaln(alpha_used), 0.0)
    return gammaln(total) + jnp.sum(terms, axis=-1)


def poll_model(inputs: ModelInputs, priors) -> None:
    """The NumPyro model (see the module docstring). ``priors`` is a :class:`model.config.Priors`."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    x = inputs
    K = x.n_answer

    # Trend: level plus a non-centred zero-sum random walk plus event jumps.
    level = numpyro.sample("level", dist.ZeroSumNormal(priors.level_sd, event_shape=(K,)))
    walk_sd = numpyro.sample("walk_sd", dist.HalfNormal(x.walk_scale))
    walk = jnp.zeros((1, K))
    if x.n_time > 1:
        with numpyro.plate("step", x.n_time - 1):
            innovation = numpyro.sample("innovation", dist.ZeroSumNormal(1.0, event_shape=(K,)))
        walk = jnp.concatenate([walk, jnp.cumsum(innovation, axis=0)], axis=0)
    eta = level + walk_sd * walk
    if x.event_after.shape[1]:
        with numpyro.plate("event", x.event_after.shape[1]):
            jump = numpyro.sample("jump", dist.ZeroSumNormal(priors.jump_sd, event_shape=(K,)))
        eta = eta + x.event_after @ jump
    numpyro.deterministic("share", 100.0 * jax.nn.softmax(eta, axis=-1))

    # House and question effects, non-centred, zero-sum over answers.
    house_sd = numpyro.sample("house_sd", dist.HalfNormal(priors.house_sd))
    house = jnp.zeros((x.n_pollster, K))
    if x.zero_sum_houses:
        if x.n_pollster > 1:
            raw = numpyro.sample(
                "house_raw", dist.ZeroSumNormal(1.0, event_shape=(x.n_pollster, K))
            )
            house = house_sd * raw
    elif x.free_pollsters.size:
        with numpyro.plate("pollster_free", x.free_pollsters.size):
            raw = numpyro.sample("house_raw", dist.ZeroSumNormal(1.0, event_shape=(K,)))
        house = house.at[x.free_pollsters].set(house_sd * raw)
    question = jnp.zeros((x.n_question, K))
    if x.n_question > 1:
        question_sd = numpyro.sample("question_sd", dist.HalfNormal(priors.question_sd))
        with numpyro.plate("question_free", x.free_questions.size):
            raw_q = numpyro.sample("question_raw", dist.ZeroSumNormal(1.0, event_shape=(K,)))
        question = question.at[x.free_questions].set(question_sd * raw_q)
    numpyro.deterministic("house_effect", house)
    numpyro.deterministic("question_effect", question)

    # Each reading's expected shares: the trend averaged over its field period (cumulative sums).
    cum = jnp.concatenate([jnp.zeros((1, K)), jnp.cumsum(eta, axis=0)], axis=0)
    width = (x.last_cell - x.first_cell + 1)[:, None]
    eta_avg = (cum[x.last_cell + 1] - cum[x.first_cell]) / width
    p = jax.nn.softmax(eta_avg + house[x.pollster_idx] + question[x.question_idx], axis=-1)
    p_component = jnp.einsum("pk,pkc->pc", p, x.membership)

    # Sampling plus non-sampling error; unknown sample sizes are parameters.
    nonsampling_sd = numpyro.sample("nonsampling_sd", dist.HalfNormal(priors.nonsampling_sd_pp))
    tau = nonsampling_sd / 50.0
    n = jnp.asarray(x.n_stated)
    if x.unknown_n.size:
        with numpyro.plate("poll_unknown_n", x.unknown_n.size):
            log_n_z = numpyro.sample("log_n_z", dist.Normal(0.0, 1.0))
        n = n.at[x.unknown_n].set(
            jnp.exp(x.log_unknown_n_median + priors.unknown_n_log_sd * log_n_z)
        )
    concentration = 1.0 / (1.0 / n + tau**2)
    alpha = concentration[:, None] * p_component
    numpyro.factor(
        "obs_share", jnp.sum(masked_dirichlet_logp(x.log_observed, alpha, x.component_used))
    )

    if x.anchor_cell.size:
        anchored = jax.nn.softmax(eta, axis=-1)[x.anchor_cell, x.anchor_answer]
        numpyro.sample("anchor", dist.Normal(anchored, x.anchor_sd), obs=x.anchor_value)


def enable_float64() -> None:
    """Make JAX compute in float64, as the project's PyMC model does (process-wide)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def request_host_devices(count: int) -> int:
    """Ask JAX for at least ``count`` CPU devices; return how many it has.

    JAX sees one CPU device unless told otherwise before it initialises. This sets the
    ``jax_num_cpu_devices`` option (unless ``XLA_FLAGS`` already sets a host device count); once
    JAX has run anything in the process the option is refused (``RuntimeError``) and the count
    stays what it is. Call it early (before any JAX computation) to be sure of the devices.
    """
    import jax

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        try:
            if jax.config.jax_num_cpu_devices < count:
                jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:
            pass  # JAX is already initialised: the device count is what it is
    return jax.local_device_count()


def resolve_chain_method(requested: str, chains: int) -> tuple[str, str]:
    """The chain method that can actually run, and a note when it differs from ``requested``.

    ``"parallel"`` runs one chain per JAX host device (``pmap``) and needs ``chains`` devices
    (:func:`request_host_devices`). If JAX was initialised earlier in the process with fewer, this
    falls back to :data:`PARALLEL_FALLBACK` and says so in the note, instead of NumPyro's own
    fallback (a warning, then sequential chains).
    """
    if requested not in ("parallel", "vectorized", "sequential"):
        raise ValueError(
            f"chain_method {requested!r}; expected 'parallel', 'vectorized' or 'sequential'"
        )
    if requested != "parallel" or chains == 1:
        return requested, ""
    available = request_host_devices(chains)
    if available >= chains:
        return "parallel", ""
    return PARALLEL_FALLBACK, (
        f"parallel needs {chains} host devices but JAX was already initialised in this process with "
        f"{available}; ran the chains {PARALLEL_FALLBACK} instead"
    )


class _CompileClock:
    """Collects the time spans of JAX's trace/lower/compile events while active."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def __call__(self, event: str, start: float, end: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            self.spans.append((start, end))

    def __enter__(self) -> _CompileClock:
        import jax.monitoring

        jax.monitoring.register_event_time_span_listener(self)
        return self

    def __exit__(self, *exc) -> None:
        import jax.monitoring

        jax.monitoring.unregister_event_time_span_listener(self)

    @property
    def seconds(self) -> float:
        """Length of the union of the spans (nested compiles counted once)."""
        total, reach = 0.0, -np.inf
        for start, end in sorted(self.spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


def fit_reference(
    design: PollDesign,
    config: Config,
    *,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int = 0,
    target_accept: float | None = None,
    chain_method: str = "parallel",
    progress_bar: bool = False,
) -> ReferenceResult:
    """Sample the reference NumPyro model with NUTS, at NumPyro's defaults unless told otherwise.

    Parameters
    ----------
    design : PollDesign
        The laid-out data (:func:`model.aggregator.design.build_design` with the same ``config``).
    config : Config
        Priors and identification (``house_effects``). Its sampler settings give the defaults of
        ``draws``, ``tune`` and ``chains``; its ``target_accept`` is *not* used (the reference's
        is ``target_accept``).
    draws, tune, chains : int, optional
        Kept draws per chain, warm-up iterations per chain, number of chains.
    seed : int
        Seed of the sampler's PRNG key.
    target_accept : float, optional
        NUTS's ``target_accept_prob``; default None leaves NumPyro's default (0.8). The maximum
        tree depth (10) and the diagonal mass matrix stay NumPyro's defaults either way.
    chain_method : {"parallel", "vectorized", "sequential"}
        Default ``"parallel"``: one chain per host device, which on a 2-core CPU runs two chains at
        once, each at the speed of a single chain, like nutpie's threads. ``"vectorized"`` runs all
        chains in one program in lock step (every chain waits for the longest trajectory) and was
        slower on that machine; ``"sequential"`` runs them one after another. See
        :func:`resolve_chain_method` for the fallback when ``"parallel"`` cannot get its devices.
    progress_bar : bool
        NumPyro's progress bar (off: it also changes how the sampling loop is compiled).

    Returns
    -------
    ReferenceResult
    """
    enable_float64()
    method, note = resolve_chain_method(chain_method, chains or config.sampler.chains)

    import jax
    import numpyro
    from numpyro.infer import MCMC, NUTS

    s = config.sampler
    draws, tune, chains = draws or s.draws, s.tune if tune is None else tune, chains or s.chains
    inputs = model_inputs(design, config)
    kernel = (
        NUTS(poll_model)
        if target_accept is None
        else NUTS(poll_model, target_accept_prob=target_accept)
    )
    mcmc = MCMC(
        kernel,
        num_warmup=tune,
        num_samples=draws,
        num_chains=chains,
        chain_method=method,
        progress_bar=progress_bar,
    )
    with _CompileClock() as clock:
        started = time.perf_counter()
        mcmc.run(
            jax.random.PRNGKey(seed),
            inputs,
            config.priors,
            extra_fields=("diverging", "num_steps", "energy"),
        )
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        stats = jax.block_until_ready(mcmc.get_extra_fields(group_by_chain=True))
        wall = time.perf_counter() - started
    compile_s = clock.seconds
    idata = _to_datatree(design, samples, stats)
    idata.attrs.update(
        {
            "sampler": "numpyro NUTS (max_tree_depth 10, diagonal mass, target_accept_prob "
            + ("0.8: the defaults)" if target_accept is None else f"{target_accept:g})"),
            "target_accept": 0.8 if target_accept is None else float(target_accept),
            "numpyro_version": numpyro.__version__,
            "jax_version": jax.__version__,
            "chain_method": method,
            "seed": seed,
            "compile_s": compile_s,
            "sample_s": wall - compile_s,
        }
    )
    return ReferenceResult(
        idata=idata,
        divergences=int(np.sum(np.asarray(stats["diverging"]))),
        compile_s=compile_s,
        sample_s=wall - compile_s,
        chain_method=method,
        chain_method_note=note,
    )


def _to_datatree(design: PollDesign, samples: dict, stats: dict) -> xr.DataTree:
    """Posterior and sample stats as an ArviZ-style DataTree with the design's coordinates."""
    coords = design.coords
    posterior = {}
    for name, dims in POSTERIOR_DIMS.items():
        if name in samples:
            posterior[name] = xr.DataArray(np.asarray(samples[name]), dims=("chain", "draw", *dims))
    posterior = xr.Dataset(posterior)
    posterior = posterior.assign_coords(
        {dim: coords[dim] for dim in posterior.dims if dim in coords}
        | {"chain": np.arange(posterior.sizes["chain"]), "draw": np.arange(posterior.sizes["draw"])}
    )
    sample_stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.asarray(stats["diverging"], dtype=bool)),
            "n_steps": (("chain", "draw"), np.asarray(stats["num_steps"])),
            "energy": (("chain", "draw"), np.asarray(stats["energy"], dtype=float)),
        },
        coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values},
    )
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": sample_stats})


def make_potential_energy(design: PollDesign, config: Config):
    """Minus the log joint density on the unconstrained space (Jacobians included), compiled.

    Returns
    -------
    callable
        ``f(unconstrained) -> float``, where ``unconstrained`` maps each sample site name (``level``,
        ``walk_sd``, ``innovation``, ...) to its unconstrained value: the ``K - 1`` coordinates of a
        ZeroSumNormal, the log of a HalfNormal. These are the coordinates PyMC uses for the same
        variables (``level_zerosum__``, ``walk_sd_log__``, ...), so ``-f`` is the PyMC model's
        ``logp`` where both are parameterised alike.
    """
    enable_float64()
    import jax
    from numpyro.infer.util import potential_energy

    args = (model_inputs(design, config), config.priors)
    compiled = jax.jit(lambda params: potential_energy(poll_model, args, {}, params))
    return lambda unconstrained: float(
        compiled({name: np.asarray(v, dtype=float) for name, v in unconstrained.items()})
    )
