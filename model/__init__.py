"""Bayesian aggregation of opinion polls with house, question-wording and time effects.

The library API::

    import model
    polls = model.load_polls("data/polls.csv")
    result = model.fit(polls, config=model.Config(grid="week"), seed=1)
    result.headline(); result.support_curve(); result.closed_polls(); result.diagnostics()
    result.save("runs/my-run"); model.load_run("runs/my-run")
    v = model.run_validation(polls, config, model.ValidateSettings(sbc=20, workers=2))
    model.write_validation(v)   # runs/validate-<timestamp>/

PyMC is imported on first use of a fitting name, so reading and checking data stays fast.
"""

from importlib import import_module

from model.config import (
    Anchor,
    Config,
    ConfigError,
    Event,
    Priors,
    Sampler,
    ValidateSettings,
)
from model.data.polls import PollDataError, closed_readings, load_polls

__version__ = "0.1.0"

_LAZY = {
    "fit": "model.fitting",
    "FitResult": "model.results.fit_result",
    "compile_fit": "model.fitting",
    "load_run": "model.results.run_folder",
    "save_run": "model.results.run_folder",
    "RunFolderError": "model.results",
    "simulate_polls": "model.data.simulate",
    "Simulation": "model.data.simulate",
    "PollAggregator": "model.aggregator.graph",
    "build_design": "model.aggregator.design",
    "run_validation": "model.validation.runner",
    "write_validation": "model.validation.runner",
    "Validation": "model.validation.runner",
}

__all__ = [
    "Anchor",
    "Config",
    "ConfigError",
    "Event",
    "PollDataError",
    "Priors",
    "Sampler",
    "ValidateSettings",
    "closed_readings",
    "load_polls",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the lazily imported ones (for ``dir(model)`` and tab completion)."""
    return sorted({*globals(), *_LAZY})
