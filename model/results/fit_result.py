"""A fitted model as tables: :class:`FitResult`, returned by :func:`model.fit` and :func:`model.load_run`."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from model.aggregator.design import build_design
from model.config import ANCHORS, ZERO_SUM, Config
from model.results import closed_polls, headline, summaries
from model.results.diagnostics import diagnose, prior_sensitivity
from model.timing import Phases


@dataclass
class FitResult:
    """A fitted model: the posterior (ArviZ ``DataTree``), the config, the readings used, diagnostics.

    Attributes
    ----------
    idata : xarray.DataTree
        Groups ``posterior``, ``sample_stats``, ``posterior_predictive``, ``observed_data``,
        ``constant_data``, ``log_likelihood``; dims ``time``, ``pollster``, ``question``, ``answer``,
        ``poll`` with real labels. Provenance (config JSON, package version, the code's checksum
        and commit, data checksum, seed) is in ``idata.attrs``.
    config : Config
        The config as run.
    polls : pandas.DataFrame
        The readings used, in model order (``poll_id`` matches the ``poll`` coordinate).
    seed : int
        The seed every random step drew from.
    excluded : pandas.DataFrame
        Readings of the input table that the fit left out, with the reason (``excluded_because``).
    phases : Phases
        Wall seconds of the fit's phases (:func:`model.fit` records them, writing the run folder
        adds its own; ``summary.txt`` ends with them). Empty for a run read back from its folder.
    """

    idata: Any
    config: Config
    polls: pd.DataFrame
    seed: int
    excluded: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    phases: Phases = dataclasses.field(default_factory=Phases, repr=False, compare=False)
    _diagnostics: dict[str, Any] | None = None
    _design: Any = None
    #: The gate's R-hat and ESS being computed alongside, and the trace they are of
    #: (:meth:`computing_convergence`).
    _convergence: tuple[Any, Future] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    _summaries: dict[tuple, pd.DataFrame] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    #: The trace the field periods were built from, and them (:meth:`_field_periods`).
    _periods: tuple[Any, summaries.FieldPeriods] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def _summary(self, name: str, interval: float | None, compute) -> pd.DataFrame:
        """A summary table, computed once per interval (the run folder and the summary text share
        them); one with intervals (``upper`` or ``<...>_upper`` columns) names their width in an
        ``interval`` column, after ``upper`` or else last."""
        key = (name, interval or self.config.interval)
        if key not in self._summaries:
            table = compute(key[1])
            if "upper" in table:
                table.insert(table.columns.get_loc("upper") + 1, "interval", key[1])
            elif any(str(c).endswith("_upper") for c in table.columns):
                table.insert(table.shape[1], "interval", key[1])
            self._summaries[key] = table
        return self._summaries[key].copy()

    def _field_periods(self) -> summaries.FieldPeriods:
        """The curve's running sums over time (:class:`model.results.summaries.FieldPeriods`),
        computed once for the trace (the house offsets and the closed polls' table and conclusion
        each read them); a result whose trace is replaced builds them again."""
        if self._periods is None or self._periods[0] is not self.idata:
            self._periods = (self.idata, summaries.FieldPeriods(self.posterior))
        return self._periods[1]

    # -- summaries -----------------------------------------------------------------------------
    @property
    def posterior(self):
        return self.idata.posterior.to_dataset()

    @property
    def reference_pollster(self) -> str | None:
        """The pollster fixed at zero, or None (zero-sum or anchors)."""
        return self.idata.attrs.get("reference_pollster") or None

    @property
    def reference_question(self) -> str:
        return str(self.posterior["question_effect"].coords["question"].values[0])

    @property
    def design(self):
        """The design the fit used, rebuilt from its readings and config (cheap, no sampling)."""
        if self._design is None:
            self._design = build_design(self.polls, self.config)
        return self._design

    @property
    def code(self) -> dict[str, str | None]:
        """The code that made the fit (:func:`model.provenance.code_version`, as its trace records
        it): ``source_sha256`` and ``git_commit`` (None where not recorded)."""
        attrs = self.idata.attrs
        return {
            "source_sha256": attrs.get("code_source_sha256") or None,
            "git_commit": attrs.get("code_git_commit") or None,
        }

    @property
    def confounded(self) -> tuple[tuple[str, str], ...]:
        """(pollster, question) pairs whose effects the data identify only as a sum."""
        return self.design.confounded

    @property
    def trend(self) -> str:
        """The trend the fitted model has: ``config.trend``, except ``"momentum"`` on readings
        with no walk segment between knots, which is the walk (no segment's slope to carry on)."""
        if self.config.trend == "momentum" and "slope_persistence" not in self.posterior:
            return "walk"
        return self.config.trend

    @property
    def identification(self) -> str:
        """How the curve's level is fixed, in words."""
        if self.config.house_effects == ZERO_SUM:
            return "as the average house would measure it (house effects sum to zero)"
        if self.config.house_effects == ANCHORS:
            return "at the level known true values (the anchors) fix"
        return f"as {self.config.house_effects} would measure it"

    @property
    def curve_house(self) -> str:
        """Whose measurement the curve's level is: the reference pollster, "the average house"
        (zero-sum house effects) or "the anchored true level" (anchors)."""
        if self.config.house_effects == ANCHORS:
            return "the anchored true level"
        return self.reference_pollster or "the average house"

    def support_curve(self, interval: float | None = None) -> pd.DataFrame:
        """Shares over time for the reference house and question, in percent.

        Columns ``date``, ``answer``, ``mean``, ``median``, ``lower``, ``upper``, ``interval``,
        ``projected`` (cells after the last reading), ``house`` (:attr:`curve_house`) and
        ``question`` (:attr:`reference_question`): see :func:`model.results.summaries.support_curve`.

        Parameters
        ----------
        interval : float, optional
            Central interval width (default: ``config.interval``, 0.9).
        """
        return self._summary(
            "support_curve",
            interval,
            lambda i: summaries.support_curve(
                self.posterior,
                i,
                self.design.projected,
                house=self.curve_house,
                question=self.reference_question,
            ),
        )

    def curve_wide(self, interval: float | None = None) -> pd.DataFrame:
        """The support curve with one row per date (``curve_wide.csv``, for newsroom charting tools).

        Columns ``date``, then per answer ``<answer>_median``, ``<answer>_lower_<width>``,
        ``<answer>_upper_<width>`` (percent; width 90 by default), then ``projected``, ``house``
        and ``question`` (whose measurement the curve is). See
        :func:`model.results.summaries.curve_wide`.
        """
        interval = interval or self.config.interval
        return summaries.curve_wide(
            self.support_curve(interval), self.config.answers, interval=interval
        )

    def _over_readings(self):
        """The posterior with the curve cut to the readings' span (first to last reading's cell):
        the span over which house and question effects are put in points
        (:func:`model.results.headline.averaged_over`), so that neither a projection's length
        nor an anchor before the first reading changes them."""
        return self.posterior.isel(time=self.design.readings_span)

    def house_effects(self, interval: float | None = None) -> pd.DataFrame:
        """House effects in percentage points, averaged over the readings' span (see
        :func:`model.results.summaries.house_effects`)."""
        return self._summary(
            "house_effects",
            interval,
            lambda i: summaries.house_effects(
                self._over_readings(),
                self.design.pollster_question_pairs,
                self.reference_pollster,
                self.design.joint_groups,
                i,
            ),
        )

    def question_effects(self, interval: float | None = None) -> pd.DataFrame:
        """Question effects in percentage points, averaged over the readings' span (see
        :func:`model.results.summaries.question_effects`)."""
        return self._summary(
            "question_effects",
            interval,
            lambda i: summaries.question_effects(
                self._over_readings(),
                self.design.pollster_question_pairs,
                self.reference_question,
                self.design.joint_groups,
                i,
            ),
        )

    def reading_offsets(self, interval: float | None = None) -> pd.DataFrame:
        """House plus question effect for every (pollster, question) in the data, in points, at its readings' dates.

        The identified quantity where one house alone asks a question (see
        :func:`model.results.summaries.reading_offsets`).
        """
        return self._summary(
            "reading_offsets",
            interval,
            lambda i: summaries.reading_offsets(
                self.posterior, self.design, i, self._field_periods()
            ),
        )

    def latest_estimate(self, interval: float | None = None, *, at: str = "end") -> pd.DataFrame:
        """The curve at its last cell (``at="end"``) or at the last reading's (``at="data"``).

        See :func:`model.results.summaries.latest_estimate`.
        """
        return summaries.latest_estimate(self.support_curve(interval), self.config.answers, at)

    def adjusted_readings(self) -> pd.DataFrame:
        """Each reported share, raw and adjusted for its house and question (:func:`model.results.summaries.adjusted_readings`)."""
        return self._summary(
            "adjusted_readings",
            None,
            lambda _: summaries.adjusted_readings(
                self.polls, self.reading_offsets(), self.support_curve(), self.config.answers
            ),
        )

    def predictive_by_answer(self):
        """Predictive and observed share of every reported answer (:func:`model.results.summaries.predictive_by_answer`)."""
        return summaries.predictive_by_answer(self.idata, self.design)

    def headline(self) -> dict[str, Any]:
        """The headline numbers (``headline.json``): support on ``as_of``, how sure, whether it changed.

        See :func:`model.results.headline.headline`; besides its keys, ``gate``: the diagnostics
        gate's verdict (``passed``, ``failures``: :meth:`diagnostics`), so that whoever reads the
        numbers alone also reads whether they may be shown (for a fit whose R-hat and ESS are
        still being computed alongside, it waits for them).
        """
        if "headline" not in self._summaries:
            diag = self.diagnostics()
            self._summaries["headline"] = {
                **headline.headline(
                    self.posterior,
                    self.design,
                    interval=self.config.interval,
                    identification=self.identification,
                    trend=self.trend,
                ),
                "gate": {"passed": bool(diag["passed"]), "failures": list(diag["failures"])},
            }
        return json.loads(json.dumps(self._summaries["headline"]))  # a copy the caller may change

    def headline_sentences(self) -> list[str]:
        """The headline in plain words (:func:`model.results.headline.sentences`), opening with the
        warning that the numbers are not for publication where the diagnostics gate failed."""
        return headline.sentences(self.headline())

    def closed_polls(self, interval: float | None = None) -> pd.DataFrame:
        """Every closed reading of the table against the curve over its own field period (``closed_polls.csv``).

        See :func:`model.results.closed_polls.closed_polls`.
        """
        return self._summary(
            "closed_polls",
            interval,
            lambda i: closed_polls.closed_polls(
                self.posterior,
                self.design,
                self.excluded,
                interval=i,
                periods=self._field_periods(),
            ),
        )

    def closed_polls_conclusion(self) -> str:
        """What the closed polls do and do not show against the public curve, in words."""
        gap = closed_polls.systematic_gap(self.posterior, self.design, self._field_periods())
        reference = f"the curve ({self.identification}, asking {self.reference_question}) over each reading's field period"
        return closed_polls.conclusion(
            self.closed_polls(), gap, reference=reference, interval=self.config.interval
        )

    def event_jumps(self, interval: float | None = None) -> pd.DataFrame:
        """Estimated jump of each configured event, in percentage points."""
        return self._summary(
            "event_jumps",
            interval,
            lambda i: summaries.event_jumps(self.posterior, list(self.design.event_cell), i),
        )

    def prior_sensitivity(self) -> pd.DataFrame:
        """Power-scaling sensitivity of the scales, jumps and the shares at the last reading and at the curve's end.

        See :func:`model.results.diagnostics.prior_sensitivity`.
        """
        cells = sorted({self.design.last_data_cell, len(self.design.time) - 1})
        return self._summary(
            "prior_sensitivity", None, lambda _: prior_sensitivity(self.idata, cells)
        )

    def computing_convergence(self, pending: Future) -> None:
        """Take the gate's R-hat and ESS of this result's trace from ``pending`` (a future of
        :func:`model.results.diagnostics.convergence`, as
        :func:`~model.results.diagnostics.convergence_in_background` gives) instead of computing
        them in :meth:`diagnostics`. Used only while ``idata`` is the trace it was given with: a
        result whose trace is replaced computes them again."""
        self._convergence = (self.idata, pending)

    def diagnostics(self) -> dict[str, Any]:
        """The diagnostics report and gate verdict (``passed``, ``failures``, ...)."""
        if self._diagnostics is None:
            conv = None
            if self._convergence is not None:
                trace, pending = self._convergence
                conv = pending.result() if trace is self.idata else None
            self._diagnostics = diagnose(self.idata, self.design, conv)
            self._convergence = None
        return self._diagnostics

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the R-hat and ESS still being computed (a thread's future)
        and without the field periods (45 MB on the shipped fit): the copy computes them again
        when asked."""
        state = dict(self.__dict__)
        state["_convergence"] = None
        state["_periods"] = None
        return state

    @property
    def passed(self) -> bool:
        return bool(self.diagnostics()["passed"])

    @property
    def compared_with(self) -> str:
        """What house effects and offsets are differences from, in words."""
        if self.config.house_effects == ZERO_SUM:
            return f"the curve (the average house, asking {self.reference_question})"
        if self.config.house_effects == ANCHORS:
            return f"{self.curve_house} (asking {self.reference_question})"
        return f"{self.config.house_effects} asking {self.reference_question}"

    def summary_text(self, calibration=None, *, searched: bool = False) -> str:
        """A plain-text summary: the headline and its caveats, closed polls, each house's
        difference, events, diagnostics.

        See :func:`model.results.text.summary_text` (``calibration``: a backtest of the same
        readings and model, whose figures the caveats then give for a projected curve;
        ``searched``: one was looked for, so none found is said).
        """
        from model.results.text import summary_text

        return summary_text(self, calibration, searched=searched)

    # -- figures (see model.report.plots; each returns matplotlib figures to restyle) -------------------
    def plot_support(self, answer: str | None = None, **kwargs):
        """The support curve with 50%/90% bands and the readings (:func:`model.report.plots.plot_support`)."""
        from model.report import plots  # presentation, imported only when drawn

        return plots.plot_support(self, answer=answer, **kwargs)

    def plot_adjusted(self, answer: str | None = None, **kwargs):
        """Raw readings beside readings adjusted for house and question effects."""
        from model.report import plots  # presentation, imported only when drawn

        return plots.plot_adjusted(self, answer=answer, **kwargs)

    def plot_house_effects(self):
        """Forest plot of house effects in percentage points."""
        from model.report import plots  # presentation, imported only when drawn

        return plots.plot_house_effects(self)

    def plot_question_effects(self):
        """Forest plot of question effects in percentage points."""
        from model.report import plots  # presentation, imported only when drawn

        return plots.plot_question_effects(self)

    def plot_headline(self, **kwargs):
        """The chart for an article, 1200 x 675 pixels, titled with the finding (:func:`model.report.plots.plot_headline`)."""
        from model.report import plots  # presentation, imported only when drawn

        return plots.plot_headline(self, **kwargs)

    def plot_diagnostics(self):
        """Rank plots, energy plot and per-reading predictive check, as a dict of figures."""
        from model.report import plots  # presentation, imported only when drawn

        return plots.plot_diagnostics(self)

    def save(self, folder: str | Path) -> Path:
        """Write the run folder (see :func:`model.results.run_folder.write_run`)."""
        from model.results.run_folder import write_run

        return write_run(self, Path(folder))
