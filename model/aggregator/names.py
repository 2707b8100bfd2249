"""The names of the model's dimensions and of the posterior variables each part of the project reads.

Declared once: the graph (:mod:`model.aggregator.graph`) names its dims and variables with these,
and the engine, the diagnostics, the figures, the bench and calibration pick variables by these lists.
"""

from __future__ import annotations

#: Named dims of every stored variable.
TIME, POLLSTER, QUESTION, ANSWER, POLL, COMPONENT, EVENT, ANCHOR = (
    "time",
    "pollster",
    "question",
    "answer",
    "poll",
    "component",
    "event",
    "known_share",
)

#: The free hyperparameters: the scales (summaries, rank plots).
HYPERPARAMETERS = ("walk_sd", "house_sd", "question_sd", "nonsampling_sd")

#: Priors that power-scaling sensitivity scales: the level, the scales and the event jumps (not the
#: standardised latent innovations and effects, whose N(0, 1) priors are a parameterisation).
SENSITIVITY_PRIORS = ("level", "walk_sd", "jump", "house_sd", "question_sd", "nonsampling_sd")

#: What the bench compares between the project's fit and the NumPyro reference (both report them):
#: the curve, the effects, the level, the jumps and the scales.
COMPARED = ("share", "house_effect", "question_effect", "level", "jump", *HYPERPARAMETERS)

#: The variables simulation-based calibration derives its ranked quantities from (the scales the
#: data identify, the jumps, the effects whose pair sums it ranks, and the curve).
CALIBRATED = ("walk_sd", "nonsampling_sd", "jump", "house_effect", "question_effect", "share")
