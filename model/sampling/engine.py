"""One engine builds, compiles, samples and extends every fit: :class:`CompiledAggregator`.

A fit (:func:`model.fit`), the compile step (:func:`model.compile_fit`), the validation refits and
the bench all sample through it, so they share one compiled model per structure (its C callbacks
cached on disk by :mod:`model.sampling.compiled`), one "stopped early" check and one way of adding the log
likelihood, predictive draws and log prior to a trace.

Compiling a new structure takes tens of seconds, loading one compiled before (in any process) a
few (docs/performance.md); a refit swaps data (``in_likelihood``, ``observed_share``) on the
compiled model instead of compiling again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from model.aggregator.design import PollDesign
from model.aggregator.graph import PollAggregator, reading_concentration, reading_draws
from model.aggregator.kernels import register_jax
from model.aggregator.log_density import hand_written_structure
from model.aggregator.names import POLL, SENSITIVITY_PRIORS
from model.config import Config, Sampler
from model.sampling import SamplingError
from model.sampling.compiled import (
    callbacks_cached,
    compile_model,
    exact_arithmetic,
    hand_written_used,
)


def _attempt(target_accept: float, idata, seconds: float) -> dict[str, Any]:
    """One sampling attempt as recorded in ``attrs["sampling_attempts"]``."""
    return {
        "target_accept": float(target_accept),
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "seconds": round(float(seconds), 3),
    }


class CompiledAggregator:
    """A :class:`~model.aggregator.graph.PollAggregator` built and compiled once, sampled any number of times.

    Parameters
    ----------
    design : PollDesign
        The readings (for refits: every reading any refit may use or predict).
    config : Config
        Priors, identification and the NUTS implementation (``config.sampler.nuts_sampler``).
    refit : bool
        Build the refit form (a ``pm.Data("in_likelihood")`` weight per reading), so held-out
        readings and simulated shares are data swaps (see :class:`~model.aggregator.graph.PollAggregator`).

    Attributes
    ----------
    pymc_model : pymc.Model
        The built model.
    compile_s : float
        Seconds spent building the graph and compiling nutpie's callbacks (0 for the other samplers,
        which compile when they sample).
    callbacks : str
        ``"hit"`` if the sampler's callbacks came from the disk cache, ``"miss"`` if they were
        compiled, ``"n/a"`` for the other samplers.
    log_density : str
        ``"hand-written"`` if nutpie computes the log density and its gradient with
        :mod:`model.aggregator.log_density` (``config.sampler.log_density = "auto"`` and a structure
        it covers), else ``"pytensor"``; every trace it samples records it (``attrs["log_density"]``).

    Notes
    -----
    Everything is compiled without numba's fast-math flags (:func:`model.sampling.compiled.exact_arithmetic`),
    so one seed gives the same numbers whatever numba had cached.
    """

    def __init__(self, design: PollDesign, config: Config, *, refit: bool = False) -> None:
        start = time.perf_counter()
        self.design = design
        self.config = config
        with untraced_graphs():
            self.pymc_model = PollAggregator(design, config, refit=refit).build()
            # What the extension reads from each draw, stored by the sampler with the draw (a
            # fit's model only: a refit's trace is never extended).
            self._generated = {} if refit else _add_generated_quantities(self.pymc_model)
            self._nutpie = None
            if config.sampler.nuts_sampler == "nutpie":
                hand_written = None
                if config.sampler.log_density == "auto":
                    spec = hand_written_structure(design, config, refit=refit)
                    hand_written = None if isinstance(spec, str) else spec
                with exact_arithmetic():
                    self._nutpie = compile_model(self.pymc_model, hand_written=hand_written)
        self.compile_s = time.perf_counter() - start
        self.callbacks = callbacks_cached(self._nutpie) if self._nutpie is not None else "n/a"
        self.log_density = (
            "hand-written"
            if self._nutpie is not None and hand_written_used(self._nutpie)
            else "pytensor"
        )

    def sample(
        self,
        sampler: Sampler,
        *,
        seed: int,
        cores: int | None = None,
        in_likelihood: np.ndarray | None = None,
        observed: np.ndarray | None = None,
        progress_bar: bool = False,
    ) -> tuple[Any, float]:
        """Sample the posterior (warm-up draws not kept).

        Parameters
        ----------
        sampler : Sampler
            Draws, tuning steps, chains and target acceptance (its ``nuts_sampler`` is the config's).
        seed : int
            The sampler's seed.
        cores : int, optional
            Chains run in parallel; default ``min(4, cpu count, chains)``.
        in_likelihood : numpy.ndarray, optional
            (poll,) 1 for readings in the likelihood, 0 for held-out ones (refit form only).
        observed : numpy.ndarray, optional
            (poll, component) observed component shares replacing the design's.
        progress_bar : bool
            Show the sampler's progress.

        Returns
        -------
        (DataTree, float)
            The trace (posterior with every deterministic, sample_stats) and the seconds sampling
            took (warm-up included; every attempt's when ``sampler.retry_target_accept`` sampled
            again). ``attrs["sampling_attempts"]`` (JSON) lists each attempt's target acceptance,
            divergent transitions and seconds; the trace is the last attempt's.

        Raises
        ------
        KeyboardInterrupt
            If sampling stopped early (Ctrl-C, or the CLI's SIGTERM handler): the chains are
            stopped and their draws so far dropped, which must never pass for the run asked for.
        SamplingError
            If nutpie could not sample, or returned fewer chains or draws than asked for without
            an interrupt.
        """
        idata, seconds = self._sample_once(
            sampler, seed, cores, in_likelihood, observed, progress_bar
        )
        attempts = [_attempt(sampler.target_accept, idata, seconds)]
        for retry in sampler.retry_ladder:
            if attempts[-1]["divergences"] == 0:
                break
            again = dataclasses.replace(sampler, target_accept=retry)
            idata, again_s = self._sample_once(
                again, seed, cores, in_likelihood, observed, progress_bar
            )
            attempts.append(_attempt(retry, idata, again_s))
            seconds += again_s
        idata.attrs["sampling_attempts"] = json.dumps(attempts)
        idata.attrs["log_density"] = self.log_density
        return idata, seconds

    def sample_longer(
        self,
        idata,
        sampler: Sampler,
        *,
        seed: int,
        reasons: list[str],
        cores: int | None = None,
        in_likelihood: np.ndarray | None = None,
        observed: np.ndarray | None = None,
        progress_bar: bool = False,
        as_pymc: bool = False,
    ) -> tuple[Any, float]:
        """Sample a fit that mixed too slowly again, with ``sampler.retry_draws`` draws a chain.

        The attempt after ``idata``'s (``Sampler.retry_draws``): from the same seed, at the target
        acceptance of ``idata``'s last attempt. If the longer fit has divergent transitions, it
        climbs the rest of the ladder (``Sampler.retry_target_accept`` values above that one) with
        the same draws, as the first fit did: a divergence is answered by a smaller step size
        whenever it appears. Whether a fit is sampled longer is the caller's decision (the gate's
        figures are computed above this layer:
        :func:`model.results.diagnostics.longer_sampling_reasons`).

        Parameters
        ----------
        idata : DataTree
            The fit sampled so far (by :meth:`sample` or :meth:`sample_as_pymc`).
        sampler : Sampler
            The settings ``idata`` was sampled with; ``retry_draws`` must be set.
        seed : int
            The seed ``idata`` was sampled with (given to the same method).
        reasons : list of str
            Why (the gate's R-hat and ESS criteria ``idata`` missed), recorded with the attempt.
        cores, in_likelihood, observed, progress_bar
            As for :meth:`sample` (give the data ``idata`` was sampled with).
        as_pymc : bool
            Sample through :meth:`sample_as_pymc` (as ``idata`` was, by a fit) instead of
            :meth:`sample`; it takes no data swaps.

        Returns
        -------
        (DataTree, float)
            The longer trace and the seconds its attempts took. Its ``attrs["sampling_attempts"]``
            are ``idata``'s, then each longer attempt's with ``draws`` and ``after``: ``reasons``
            for the first, its predecessor's divergent transitions for any up the ladder.
        """
        if sampler.retry_draws is None:
            raise ValueError("sample_longer needs sampler.retry_draws")
        recorded = idata.attrs.get("sampling_attempts")
        # A trace sampled elsewhere records no attempts: it was one, at the sampler's settings.
        earlier = (
            json.loads(recorded)
            if recorded
            else [{**_attempt(sampler.target_accept, idata, 0.0), "seconds": None}]
        )
        reached = earlier[-1]["target_accept"]
        longer = dataclasses.replace(
            sampler,
            draws=sampler.retry_draws,
            target_accept=reached,
            retry_target_accept=tuple(r for r in sampler.retry_ladder if r > reached) or None,
        )
        if as_pymc:
            if in_likelihood is not None or observed is not None:
                raise ValueError("sample_as_pymc takes no data swaps: give as_pymc=False")
            again = self.sample_as_pymc(longer, seed=seed, progress_bar=progress_bar)
        else:
            again = self.sample(
                longer,
                seed=seed,
                cores=cores,
                in_likelihood=in_likelihood,
                observed=observed,
                progress_bar=progress_bar,
            )[0]
        added = json.loads(again.attrs["sampling_attempts"])
        for attempt, before in zip(added, [None, *added[:-1]]):
            after = (
                list(reasons)
                if before is None
                else [
                    f"{before['divergences']} divergent transition(s) at {before['target_accept']:g}"
                ]
            )
            attempt.update(draws=longer.draws, after=after)
        seconds = sum(a["seconds"] for a in added)
        attempts = [*earlier, *added]
        again.attrs["sampling_attempts"] = json.dumps(attempts)
        if "sampling_time" in again["posterior"].attrs:  # as after the ladder: every attempt's
            again["posterior"].attrs["sampling_time"] = sum(a["seconds"] or 0 for a in attempts)
        return again, seconds

    def _sample_once(
        self,
        sampler: Sampler,
        seed: int,
        cores: int | None,
        in_likelihood: np.ndarray | None,
        observed: np.ndarray | None,
        progress_bar: bool,
    ) -> tuple[Any, float]:
        data = {}
        if in_likelihood is not None:
            data["in_likelihood"] = np.asarray(in_likelihood, dtype=float)
        if observed is not None:
            data["observed_share"] = np.asarray(observed, dtype=float)
        cores = cores or min(4, os.cpu_count() or 1, sampler.chains)
        start = time.perf_counter()
        with exact_arithmetic():
            if self._nutpie is not None:
                idata = self._sample_nutpie(sampler, seed, cores, data, progress_bar)
            else:
                idata = self._sample_pymc(sampler, seed, cores, data, progress_bar)
        seconds = time.perf_counter() - start
        got = (idata.posterior.sizes.get("chain", 0), idata.posterior.sizes.get("draw", 0))
        if got != (sampler.chains, sampler.draws):
            short = f"sampling stopped early: {got[0]} chains x {got[1]} draws of {sampler.chains} x {sampler.draws}"
            if self._nutpie is None:  # pm.sample answers Ctrl-C by returning the draws so far
                raise KeyboardInterrupt(short)
            # nutpie's Ctrl-C is raised by _sample_nutpie; a short trace without one is an error,
            # which a Dask worker records as the task's (an interrupt would end the worker).
            raise SamplingError(
                f"{short}, with no interrupt: nutpie returned fewer chains or draws"
            )
        _set_aside(idata, self._generated)
        return idata, seconds

    def _sample_nutpie(
        self, sampler: Sampler, seed: int, cores: int, data: dict, progress_bar: bool
    ):
        import nutpie

        compiled = self._nutpie.with_data(**data) if data else self._nutpie
        threads_before = _threads()
        running = nutpie.sample(
            compiled,
            draws=sampler.draws,
            tune=max(sampler.tune, 1),  # nuts-rs needs a warm-up step, as pm.sample ensures
            chains=sampler.chains,
            target_accept=sampler.target_accept,
            seed=seed,
            cores=cores,
            save_warmup=False,
            progress_bar=progress_bar,
            blocking=False,
        )
        interrupted = False
        try:
            return running.wait()
        except KeyboardInterrupt:
            # Stop the chains and drop their draws. nutpie's trace so far (``abort()``) keeps the
            # draws' full shape with the ones not made as NaN, which no shape check catches and on
            # which the posterior predictive draws never finish: it must not be taken.
            interrupted = True
            try:
                running.cancel()
            except BaseException as err:  # each is answered below, none kept
                if _is_panic(err):
                    interrupted, reason = False, _reason(err)  # a chain had panicked: poisoned
                # Else a chain had failed (nutpie's RuntimeError) or a second Ctrl-C came: still
                # an interrupt, answered after the threads have ended (the error, kept, would
                # hold this frame and with it the sampler).
        except RuntimeError as err:
            reason = _reason(err)
            _cancel(running)
        except BaseException as err:
            if not _is_panic(err):
                _cancel(running)
                raise
            # A chain's thread panicked (nuts-rs stops on a fatal error code from the log density:
            # a kernel refused its data, or a bug). The sampler's state is poisoned, so cancelling
            # would panic again; and a panic is a BaseException, which a Dask worker never reports
            # as the task's result: the task, and the validation run, would wait forever.
            reason = _reason(err)
        # Let the chains' threads end before going on: left running into the interpreter's exit,
        # they crashed the process (a segmentation fault after the error was printed). The last
        # of them end when the sampler is released, so this frame lets go of it first (where
        # something else still holds it, a progress bar's callback say, the wait runs its course).
        del running
        deadline = time.monotonic() + 10.0
        while _threads() > threads_before and time.monotonic() < deadline:
            time.sleep(0.02)
        if interrupted:
            raise KeyboardInterrupt(
                f"sampling stopped early: interrupted before {sampler.chains} chains x "
                f"{sampler.draws} draws"
            )
        hint = (
            ": the log density or its gradient was not finite, or the model raised, at every "
            "starting point nutpie tried"
            if "initialization" in reason
            else ": the log density raised while sampling (a kernel refused its data, or a bug); "
            "that stops the chain, where a value that is not finite is a divergence"
            if "ErrorCode(-1)" in reason
            else ""
        )
        raise SamplingError(f"nutpie could not sample ({reason}){hint}")

    def _sample_pymc(self, sampler: Sampler, seed: int, cores: int, data: dict, progress_bar: bool):
        if sampler.nuts_sampler in ("numpyro", "blackjax"):
            register_jax()  # the model's fused operations (model.aggregator.kernels), for PyTensor's JAX backend
        if data:
            pm.set_data(data, model=self.pymc_model)
        return pm.sample(
            model=self.pymc_model,
            draws=sampler.draws,
            tune=sampler.tune,
            chains=sampler.chains,
            target_accept=sampler.target_accept,
            random_seed=seed,
            nuts_sampler=sampler.nuts_sampler,
            progressbar=progress_bar,
        )

    def sample_as_pymc(self, sampler: Sampler, *, seed: int, progress_bar: bool = False) -> Any:
        """Sample as ``pm.sample(model=..., nuts_sampler=..., random_seed=seed)`` does.

        With nutpie: the chains' seed is the first of ``chains`` spawned from ``seed``, as PyMC 6
        derives it, and the trace gets the ``constant_data`` / ``observed_data`` groups and
        sampling attributes PyMC adds to nutpie's; so a seed gives the draws ``pm.sample`` gave
        (nutpie's draws do not depend on its thread count). nutpie runs ``min(4, cpu count,
        chains)`` threads, where PyMC takes half the CPU count. Other samplers go through
        ``pm.sample`` itself.

        Returns
        -------
        DataTree
        """
        if self._nutpie is None:
            return self.sample(sampler, seed=seed, progress_bar=progress_bar)[0]
        from pymc.backends.arviz import patch_nutpie_idata
        from pymc.util import get_random_generator

        chain_seed = int(get_random_generator(seed).spawn(sampler.chains)[0].integers(2**30))
        idata, seconds = self.sample(sampler, seed=chain_seed, progress_bar=progress_bar)
        patch_nutpie_idata(idata, self.pymc_model, sampling_time=seconds)
        return idata

    def extend(self, idata, *, seed: int) -> Any:
        """Add the log likelihood, posterior predictive readings and log prior to a trace, in place.

        The groups PyMC's ``compute_log_likelihood`` (of ``obs_share``),
        ``sample_posterior_predictive`` and ``compute_log_prior`` (of the free variables among
        :data:`model.aggregator.names.SENSITIVITY_PRIORS`) add, with the same values (up to
        rounding), dims and coords. The sampler stored each draw's log likelihood, its readings'
        Dirichlet concentrations and its log prior terms with the draw (the model's deterministics
        :func:`_add_generated_quantities` adds, set aside from the posterior as sampled:
        :data:`GENERATED`), as Stan computes generated quantities; here the fresh readings are drawn
        from those concentrations by the generative graph of ``obs_share``
        (:func:`model.aggregator.graph.reading_draws`), chain by chain.

        Parameters
        ----------
        idata : DataTree
            A trace this engine sampled (:meth:`sample` or :meth:`sample_as_pymc`).
        seed : int
            Seeds the stream of fresh readings, drawn in chain and draw order (the same readings
            ``pm.sample_posterior_predictive(random_seed=seed)`` draws).

        Returns
        -------
        DataTree
            ``idata`` with ``log_likelihood`` (``obs_share``: chain, draw, poll),
            ``posterior_predictive`` (``obs_share``: chain, draw, poll, component; the readings
            only, not the ``anchors`` option's soft constraints) and ``log_prior`` (chain, draw
            and any dims a variable's log density keeps, as PyMC gives them), and without
            :data:`GENERATED`.

        Raises
        ------
        ValueError
            If the trace holds no :data:`GENERATED` group (a refit-form engine's, or one sampled
            elsewhere).
        """
        if GENERATED not in idata.children:
            raise ValueError(
                f"extend needs the trace this engine sampled, with its {GENERATED!r} group (a "
                "fit-form engine's: CompiledAggregator(..., refit=False))"
            )
        from pymc.backends.arviz import coords_and_dims_for_inferencedata, dict_to_dataset

        generated = idata[GENERATED].to_dataset().transpose("chain", "draw", ...)
        by_role = {role: generated[name].values for name, role in self._generated.items()}
        obs = self.pymc_model["obs_share"]
        concentration = by_role[CONCENTRATION]
        batch = pt.tensor("concentration", shape=(None, *reading_concentration(obs).type.shape))
        with untraced_graphs(), exact_arithmetic():
            fresh_readings = pm.pytensorf.compile(
                [batch], reading_draws(obs, batch), random_seed=seed
            )
        # One stream in chain and draw order: the readings one call over every draw gives.
        readings = np.stack([fresh_readings(np.ascontiguousarray(c)) for c in concentration])

        coords, dims = coords_and_dims_for_inferencedata(self.pymc_model)
        post = idata.posterior

        def group(variables: dict, variable_dims: dict):
            return dict_to_dataset(
                variables,
                inference_library=pm,
                coords={**coords, "chain": post["chain"].values, "draw": post["draw"].values},
                dims=variable_dims,
                sample_dims=["chain", "draw"],
                skip_event_dims=True,  # a log density keeps only the dims it is not summed over
            )

        idata["log_likelihood"] = group({obs.name: by_role[LOG_LIKELIHOOD]}, {obs.name: [POLL]})
        idata["posterior_predictive"] = group({obs.name: readings}, dims)
        idata["log_prior"] = group(
            {
                role.removeprefix(LOG_PRIOR): values
                for role, values in by_role.items()
                if role.startswith(LOG_PRIOR)
            },
            dims,
        )
        del idata[GENERATED]
        return idata


#: The trace's group (between sampling and :meth:`CompiledAggregator.extend`) holding what the
#: sampler stored for the extension with each draw, set aside from the posterior.
GENERATED = "generated_quantities"
LOG_LIKELIHOOD, CONCENTRATION, LOG_PRIOR = "log_likelihood", "concentration", "log_prior:"


def untraced_graphs():
    """A context in which PyTensor records no creation stack on the graph nodes it makes.

    By default PyTensor walks up to 8 frames of the Python stack (reading each source line) for
    every node it creates (``traceback__limit``), so that an error in a graph a user wrote can say
    where each node came from. The engine's graphs are the package's own, thousands of nodes built
    on every fit and refit, so it builds them without (the time saved: ``docs/performance.md``). A
    ``traceback__limit`` set in ``PYTENSOR_FLAGS`` is kept, for debugging the model's graph.
    """
    import pytensor

    if "traceback__limit" in os.environ.get("PYTENSOR_FLAGS", ""):
        return contextlib.nullcontext()
    return pytensor.config.change_flags(traceback__limit=0)


def _add_generated_quantities(pymc_model) -> dict[str, str]:
    r"""Add to ``pymc_model``, as deterministics, what :meth:`CompiledAggregator.extend` reads from
    each draw, so that the sampler computes them with the draw (as Stan computes generated
    quantities) instead of a compiled function called draw by draw after sampling.

    With :math:`\theta` a draw's values: ``obs_share__log_likelihood`` (poll) is
    :math:`\log p(y_i \mid \theta)` for each reading; ``obs_share__concentration`` (poll,
    component) the Dirichlet concentrations of each reading
    (:func:`model.aggregator.graph.reading_concentration`); ``<name>__log_prior`` the log density
    of each free variable among :data:`~model.aggregator.names.SENSITIVITY_PRIORS` at its value,
    without the Jacobian of its transform (PyMC's ``compute_log_prior``).

    Returns
    -------
    dict
        Each deterministic's name and its role (:data:`LOG_LIKELIHOOD`, :data:`CONCENTRATION`,
        or :data:`LOG_PRIOR` followed by the variable's name).
    """
    from pytensor.graph.replace import graph_replace

    obs = pymc_model["obs_share"]
    hyperpriors = [rv for rv in pymc_model.free_RVs if rv.name in SENSITIVITY_PRIORS]
    # Each variable's own log density (cheaper than the model's, which rewrites every variable's)
    # as a graph of the random variables, like any deterministic: the sampler evaluates it at the
    # draw's values, as PyMC's compute_log_likelihood and compute_log_prior do.
    loglik = pm.logp(obs, pymc_model.rvs_to_values[obs])
    concentration = reading_concentration(obs)
    at = {rv: rv.type() for rv in hyperpriors}  # each log density at a stand-in, then at itself
    log_priors = graph_replace(
        [pm.logp(rv, at[rv]) for rv in hyperpriors], {at[rv]: rv for rv in at}
    )
    dims = pymc_model.named_vars_to_dims
    roles = {
        f"{obs.name}__{LOG_LIKELIHOOD}": (LOG_LIKELIHOOD, loglik, (POLL,)),
        f"{obs.name}__{CONCENTRATION}": (CONCENTRATION, concentration, dims[obs.name]),
    }
    for rv, log_prior in zip(hyperpriors, log_priors):
        role = f"{LOG_PRIOR}{rv.name}"
        rv_dims = tuple(dims.get(rv.name) or ())[: log_prior.ndim]  # the dims it keeps
        roles[f"{rv.name}__log_prior"] = (role, log_prior, rv_dims)
    with pymc_model:
        for name, (_, graph, graph_dims) in roles.items():
            pm.Deterministic(name, graph, dims=graph_dims or None)
    return {name: role for name, (role, _, _) in roles.items()}


def _set_aside(idata, generated: dict[str, str]) -> None:
    """Move the ``generated`` deterministics from a trace's posterior to its :data:`GENERATED`
    group, in place, with the coordinates only they use."""
    posterior = idata.posterior.to_dataset()
    names = [name for name in generated if name in posterior]
    if not names:
        return
    aside = posterior[names]
    kept = posterior.drop_vars(names)
    used = {d for v in kept.data_vars.values() for d in v.dims} | {"chain", "draw"}
    kept = kept.drop_vars([c for c in kept.coords if not set(kept[c].dims) <= used])
    idata["posterior"] = kept
    idata[GENERATED] = aside


def _is_panic(err: BaseException) -> bool:
    """Whether ``err`` is a Rust panic surfacing in Python (PyO3's ``PanicException``, which
    derives from ``BaseException`` and is not importable by name)."""
    return type(err).__name__ == "PanicException" and type(err).__module__ == "pyo3_runtime"


def _cancel(running) -> None:
    """Cancel nutpie's sampler; where a chain has panicked, cancelling panics again (the state is
    poisoned) and there is nothing left to cancel."""
    try:
        running.cancel()
    except BaseException as err:
        if not _is_panic(err):
            raise


def _reason(err: BaseException) -> str:
    """The first line of nutpie's error or panic message. Only the text is kept: the exception's
    traceback holds nutpie's frames, and with them the sampler, whose chains' threads end only
    once it is released."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return line.removeprefix("called `Result::unwrap()` on an `Err` value: ")


def _threads() -> int:
    """The process's threads (Linux: ``/proc/self/task``; elsewhere 0, so nothing waits on them)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0
