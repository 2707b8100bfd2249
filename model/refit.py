"""One compiled model, refitted many times by swapping data (validation's unit of work).

Compiling a new model (nutpie, numba; :func:`model.compiled.compile_model`) costs about 20 s on the
shipped data when PyTensor's kernels are cached (~2 s when the same model was compiled before, in
any process); sampling a refit about 5-20 s. Validation refits the same model dozens of times with different readings held out (the
backtest) or with different simulated shares (calibration), so it builds the model once in the
:class:`~model.aggregator.PollAggregator` ``refit`` form, compiles it once per process, and swaps
``in_likelihood`` / ``observed_share`` for each refit.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from model.aggregator import PollAggregator
from model.config import Config, Sampler
from model.design import PollDesign


class Refitter:
    """A :class:`PollAggregator` compiled once for repeated refits.

    Parameters
    ----------
    design : PollDesign
        Every reading any refit may use or predict (the grid covers them all).
    config : Config
        Priors and identification, as for :func:`model.fit`.

    Attributes
    ----------
    model : pymc.Model
        The PyMC model (``refit`` form).
    compile_s : float
        Seconds spent compiling.
    """

    def __init__(self, design: PollDesign, config: Config) -> None:
        from model.compiled import compile_model

        self.design = design
        self.config = config
        self.model = PollAggregator(design, config, refit=True).build()
        start = time.perf_counter()
        self._compiled = compile_model(self.model)
        self.compile_s = time.perf_counter() - start

    def sample(
        self,
        sampler: Sampler,
        *,
        seed: int,
        cores: int,
        in_likelihood: np.ndarray | None = None,
        observed: np.ndarray | None = None,
    ) -> tuple[Any, float]:
        """Sample the posterior with the given readings in the likelihood and observed shares.

        Parameters
        ----------
        sampler : Sampler
            Draws, tuning steps, chains and target acceptance.
        seed : int
            Sampler seed.
        cores : int
            Chains run in parallel (threads).
        in_likelihood : ndarray, optional
            (poll,) 1 for readings in the likelihood, 0 for held-out ones (default: all 1).
        observed : ndarray, optional
            (poll, component) observed component shares (default: the design's).

        Returns
        -------
        (DataTree, float)
            The nutpie trace (posterior with every deterministic, sample_stats) and sampling seconds.

        Raises
        ------
        KeyboardInterrupt
            If sampling stopped early (nutpie returns the draws made so far on an interrupt).
        """
        data = {}
        if in_likelihood is not None:
            data["in_likelihood"] = np.asarray(in_likelihood, dtype=float)
        if observed is not None:
            data["observed_share"] = np.asarray(observed, dtype=float)
        compiled = self._compiled.with_data(**data) if data else self._compiled
        return sample_compiled(compiled, sampler, seed=seed, cores=cores)


def sample_compiled(compiled: Any, sampler: Sampler, *, seed: int, cores: int, progress_bar: bool = False) -> tuple[Any, float]:
    """Sample a nutpie-compiled model as ``pm.sample(nuts_sampler="nutpie")`` does; warm-up draws not kept
    (at least one warm-up step, which nuts-rs needs, as ``pm.sample`` ensures).

    Returns
    -------
    (DataTree, float)
        The nutpie trace and the sampling seconds (warm-up included).

    Raises
    ------
    KeyboardInterrupt
        If sampling stopped early (nutpie returns the draws made so far on an interrupt).
    """
    import nutpie

    start = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=sampler.draws,
        tune=max(sampler.tune, 1),
        chains=sampler.chains,
        target_accept=sampler.target_accept,
        seed=seed,
        cores=cores,
        save_warmup=False,
        progress_bar=progress_bar,
    )
    seconds = time.perf_counter() - start
    got = (idata.posterior.sizes.get("chain", 0), idata.posterior.sizes.get("draw", 0))
    if got != (sampler.chains, sampler.draws):
        raise KeyboardInterrupt(f"sampling stopped early: {got[0]} chains x {got[1]} draws of {sampler.chains} x {sampler.draws}")
    return idata, seconds
