"""Bayesian aggregation of opinion polls with house, question-wording and time effects."""

from model.polls import PollDataError, load_polls

__all__ = ["PollDataError", "load_polls"]
__version__ = "0.1.0"
