"""Fitting: ``model.fit(polls, config=..., seed=...)`` and the :class:`FitResult` it returns."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm

from model.config import Config
from model.design import build_design, exclusion_reasons
from model.diagnostics import diagnose, prior_sensitivity
from model.polls import load_polls
from model.sampling.engine import CompiledAggregator
from model import closed_polls, headline, summaries


def table_checksum(polls: pd.DataFrame) -> str:
    """SHA-256 of the poll table as used (its CSV form), recorded with every run."""
    return hashlib.sha256(polls.to_csv(index=False, date_format="%Y-%m-%d").encode()).hexdigest()


@dataclass
class FitResult:
    """A fitted model: the posterior (ArviZ ``DataTree``), the config, the readings used, diagnostics.

    Attributes
    ----------
    idata : xarray.DataTree
        Groups ``posterior``, ``sample_stats``, ``posterior_predictive``, ``observed_data``,
        ``constant_data``, ``log_likelihood``; dims ``time``, ``pollster``, ``question``, ``answer``,
        ``poll`` with real labels. Provenance (config JSON, package version, data checksum, seed) is
        in ``idata.attrs``.
    config : Config
        The config as run.
    polls : pandas.DataFrame
        The readings used, in model order (``poll_id`` matches the ``poll`` coordinate).
    seed : int
        The seed every random step drew from.
    excluded : pandas.DataFrame
        Readings of the input table that the fit left out, with the reason (``excluded_because``).
    """

    idata: Any
    config: Config
    polls: pd.DataFrame
    seed: int
    excluded: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    _diagnostics: dict[str, Any] | None = None
    _design: Any = None
    _summaries: dict[tuple, pd.DataFrame] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def _summary(self, name: str, interval: float | None, compute) -> pd.DataFrame:
        """A summary table, computed once per interval (the run folder and the summary text share them)."""
        key = (name, interval or self.config.interval)
        if key not in self._summaries:
            self._summaries[key] = compute(key[1])
        return self._summaries[key].copy()

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
    def confounded(self) -> tuple[tuple[str, str], ...]:
        """(pollster, question) pairs whose effects the data identify only as a sum."""
        return self.design.confounded

    @property
    def identification(self) -> str:
        """How the curve's level is fixed, in words."""
        if self.config.house_effects == "zero_sum":
            return "as the average house would measure it (house effects sum to zero)"
        if self.config.house_effects == "anchors":
            return "at the level known true values (the anchors) fix"
        return f"as {self.config.house_effects} would measure it"

    def support_curve(self, interval: float | None = None) -> pd.DataFrame:
        """Shares over time for the reference house and question, in percent; ``projected`` marks cells after the last reading.

        Parameters
        ----------
        interval : float, optional
            Central interval width (default: ``config.interval``, 0.9).
        """
        return self._summary("support_curve", interval, lambda i: summaries.support_curve(self.posterior, i, self.design.projected))

    def house_effects(self, interval: float | None = None) -> pd.DataFrame:
        """House effects in percentage points (see :func:`model.summaries.house_effects`)."""
        return self._summary(
            "house_effects",
            interval,
            lambda i: summaries.house_effects(self.posterior, self.design.pollster_question_pairs, self.reference_pollster, self.design.joint_groups, i),
        )

    def question_effects(self, interval: float | None = None) -> pd.DataFrame:
        """Question effects in percentage points (see :func:`model.summaries.question_effects`)."""
        return self._summary(
            "question_effects",
            interval,
            lambda i: summaries.question_effects(self.posterior, self.design.pollster_question_pairs, self.reference_question, self.design.joint_groups, i),
        )

    def reading_offsets(self, interval: float | None = None) -> pd.DataFrame:
        """House plus question effect for every (pollster, question) in the data, in points, at its readings' dates.

        The identified quantity where one house alone asks a question (see
        :func:`model.summaries.reading_offsets`).
        """
        return self._summary("reading_offsets", interval, lambda i: summaries.reading_offsets(self.posterior, self.design, i))

    def latest_estimate(self, interval: float | None = None, *, at: str = "end") -> pd.DataFrame:
        """The curve at its last cell (``at="end"``) or at the last reading's (``at="data"``).

        See :func:`model.summaries.latest_estimate`.
        """
        return summaries.latest_estimate(self.support_curve(interval), self.config.answers, at)

    def adjusted_readings(self) -> pd.DataFrame:
        """Each reported share, raw and adjusted for its house and question (:func:`model.summaries.adjusted_readings`)."""
        return self._summary(
            "adjusted_readings", None, lambda _: summaries.adjusted_readings(self.polls, self.reading_offsets(), self.support_curve(), self.config.answers)
        )

    def predictive_by_answer(self):
        """Predictive and observed share of every reported answer (:func:`model.summaries.predictive_by_answer`)."""
        return summaries.predictive_by_answer(self.idata, self.design)

    def headline(self) -> dict[str, Any]:
        """The headline numbers (``headline.json``): support on ``as_of``, how sure, whether it changed.

        See :func:`model.headline.headline`.
        """
        if "headline" not in self._summaries:
            self._summaries["headline"] = headline.headline(
                self.posterior, self.design, interval=self.config.interval, identification=self.identification
            )
        return json.loads(json.dumps(self._summaries["headline"]))  # a copy the caller may change

    def headline_sentences(self) -> list[str]:
        """The headline in plain words (:func:`model.headline.sentences`)."""
        return headline.sentences(self.headline())

    def closed_polls(self, interval: float | None = None) -> pd.DataFrame:
        """Every closed reading of the table against the curve over its own field period (``closed_polls.csv``).

        See :func:`model.closed_polls.closed_polls`.
        """
        return self._summary(
            "closed_polls", interval, lambda i: closed_polls.closed_polls(self.posterior, self.design, self.excluded, interval=i)
        )

    def closed_polls_conclusion(self) -> str:
        """What the closed polls do and do not show against the public curve, in words."""
        gap = closed_polls.systematic_gap(self.posterior, self.design)
        reference = f"the curve ({self.identification}, asking {self.reference_question}) over each reading's field period"
        return closed_polls.conclusion(self.closed_polls(), gap, reference=reference, interval=self.config.interval)

    def event_jumps(self, interval: float | None = None) -> pd.DataFrame:
        """Estimated jump of each configured event, in percentage points."""
        return summaries.event_jumps(self.posterior, list(self.design.event_cell), interval or self.config.interval)

    def prior_sensitivity(self) -> pd.DataFrame:
        """Power-scaling sensitivity of the scales, jumps and the shares at the last reading and at the curve's end.

        See :func:`model.diagnostics.prior_sensitivity`.
        """
        cells = sorted({self.design.last_data_cell, len(self.design.time) - 1})
        return self._summary("prior_sensitivity", None, lambda _: prior_sensitivity(self.idata, cells))

    def diagnostics(self) -> dict[str, Any]:
        """The diagnostics report and gate verdict (``passed``, ``failures``, ...)."""
        if self._diagnostics is None:
            self._diagnostics = diagnose(self.idata, self.design)
        return self._diagnostics

    @property
    def passed(self) -> bool:
        return bool(self.diagnostics()["passed"])

    @property
    def compared_with(self) -> str:
        """What house effects and offsets are differences from, in words."""
        if self.config.house_effects == "zero_sum":
            return f"the curve (the average house, asking {self.reference_question})"
        if self.config.house_effects == "anchors":
            return f"the anchored true level (asking {self.reference_question})"
        return f"{self.config.house_effects} asking {self.reference_question}"

    def summary_text(self) -> str:
        """A plain-text summary: the headline, closed polls, each house's difference, events, diagnostics."""
        width = round(100 * self.config.interval)
        answers = list(self.config.answers)
        lines = list(self.headline_sentences())

        closed = self.closed_polls()
        if len(closed):
            lines.append("")
            lines.append(
                "Closed polls against the curve over their own field periods (published share, the curve's median, and the "
                f"difference: median [{width}% interval] in points; closed_polls.csv):"
            )
            for _, row in closed.iterrows():
                if row["in_fit"]:
                    what = "in the fit; difference = the model's house + wording offset"
                else:
                    what = f"not in the fit: {row['excluded_because']}; difference = published minus curve"
                lines.append(f"  {row['pollster']} {row['field_start']} to {row['field_end']}, {row['question']} ({what}):")
                parts = []
                for a in answers:
                    if pd.isna(row[f"difference_{a}"]):
                        continue
                    published = "not published" if pd.isna(row[a]) else f"{row[a]:g}"
                    parts.append(
                        f"{a} {published}, curve {row[f'curve_{a}']:.1f}: {row[f'difference_{a}']:+.1f} "
                        f"[{row[f'difference_{a}_lower']:+.1f}, {row[f'difference_{a}_upper']:+.1f}]"
                    )
                lines.append("    " + "; ".join(parts) if parts else f"    {row['difference_is']}")
            lines.append("  " + self.closed_polls_conclusion())

        lines.append("")
        lines.append(
            f"Differences from {self.compared_with} (house + wording, at each pair's own readings; "
            f"median [{width}% interval] in points; offsets.csv):"
        )
        offsets = self.reading_offsets()
        reference_pair = (self.reference_pollster, self.reference_question)
        alone = self.design.identified_only_with_wording
        for (pollster, question), part in offsets.groupby(["pollster", "question"], sort=False):
            if (pollster, question) == reference_pair:
                continue
            part = part.set_index("answer")
            count = int(part["readings"].iloc[0])
            mark = " *" if (pollster, question) in alone else ""
            lines.append(f"  {pollster} asking {question} ({count} reading{'s' if count != 1 else ''}){mark}")
            lines.append(
                "    "
                + "; ".join(f"{a} {part.loc[a, 'median']:+.1f} [{part.loc[a, 'lower']:+.1f}, {part.loc[a, 'upper']:+.1f}]" for a in answers)
            )
        houses = self.house_effects()
        split = sorted({p for p, _ in alone})
        free = houses[~houses["reference"] & ~houses["pollster"].isin(split)]
        if len(free):
            lines.append(f"House effects identified apart from the wording (averaged over the period; median [{width}% interval]):")
            for pollster, part in free.groupby("pollster", sort=False):
                part = part.set_index("answer")
                lines.append(
                    f"  {pollster}: "
                    + "; ".join(f"{a} {part.loc[a, 'median']:+.1f} [{part.loc[a, 'lower']:+.1f}, {part.loc[a, 'upper']:+.1f}]" for a in answers)
                )
        if split:
            questions = self.question_effects().set_index(["question", "answer"])
            lines.append(
                "  * identified only as house and wording together: the data cannot split it. The split in "
                "house_effects.csv and question_effects.csv rests on the priors:"
            )
            for pollster, question in sorted(p for p in alone if p[0] in split):
                part = houses[houses["pollster"] == pollster].set_index("answer")
                lines.append(
                    f"    {pollster} house part "
                    + "; ".join(f"{a} {part.loc[a, 'median']:+.1f} [{part.loc[a, 'lower']:+.1f}, {part.loc[a, 'upper']:+.1f}]" for a in answers)
                    + f" / {question} wording part "
                    + "; ".join(
                        f"{a} {questions.loc[(question, a), 'median']:+.1f} [{questions.loc[(question, a), 'lower']:+.1f}, {questions.loc[(question, a), 'upper']:+.1f}]"
                        for a in answers
                    )
                )
        jumps = self.event_jumps()
        if len(jumps):
            lines.append(f"Event jumps (percentage points at the event; median [{width}% interval]):")
            for _, row in jumps.iterrows():
                lines.append(f"  {row['event']:<28} {row['answer']:<10} {row['median']:+6.1f}  [{row['lower']:+.1f}, {row['upper']:+.1f}]")
        diag = self.diagnostics()
        verdict = "PASSED" if diag["passed"] else "FAILED: " + "; ".join(diag["failures"])
        lines.append(
            f"Diagnostics {verdict} (max R-hat {diag['max_rhat']:.3f}, min ESS bulk {diag['min_ess_bulk']:.0f} / "
            f"tail {diag['min_ess_tail']:.0f}, {diag['divergences']} divergences, min E-BFMI {diag['min_bfmi']:.2f}; "
            f"predictive coverage 50%: {diag['coverage50']:.0%}, 90%: {diag['coverage90']:.0%})"
        )
        for warning in diag["warnings"]:
            lines.append(f"  warning: {warning}")
        flagged = self.prior_sensitivity()
        flagged = flagged[flagged["diagnosis"] != "✓"]
        if len(flagged):
            lines.append("Prior sensitivity (power-scaling, prior_sensitivity.csv) flags:")
            for _, row in flagged.iterrows():
                lines.append(f"  {row['quantity']:<40} {row['diagnosis']} (prior {row['prior']:.3f}, likelihood {row['likelihood']:.3f})")
        return "\n".join(lines)

    # -- figures (see model.plots; each returns matplotlib figures to restyle) -------------------
    def plot_support(self, answer: str | None = None, **kwargs):
        """The support curve with 50%/90% bands and the readings (:func:`model.plots.plot_support`)."""
        from model import plots  # presentation, imported only when drawn

        return plots.plot_support(self, answer=answer, **kwargs)

    def plot_adjusted(self, answer: str | None = None, **kwargs):
        """Raw readings beside readings adjusted for house and question effects."""
        from model import plots  # presentation, imported only when drawn

        return plots.plot_adjusted(self, answer=answer, **kwargs)

    def plot_house_effects(self):
        """Forest plot of house effects in percentage points."""
        from model import plots  # presentation, imported only when drawn

        return plots.plot_house_effects(self)

    def plot_question_effects(self):
        """Forest plot of question effects in percentage points."""
        from model import plots  # presentation, imported only when drawn

        return plots.plot_question_effects(self)

    def plot_diagnostics(self):
        """Rank plots, energy plot and per-reading predictive check, as a dict of figures."""
        from model import plots  # presentation, imported only when drawn

        return plots.plot_diagnostics(self)

    def save(self, folder: str | Path) -> Path:
        """Write the run folder (see :func:`model.runs.write_run`)."""
        from model.runs import write_run

        return write_run(self, Path(folder))


def _seeds(seed: int) -> tuple[int, int]:
    sample_seed, predictive_seed = np.random.SeedSequence(seed).generate_state(2)
    return int(sample_seed), int(predictive_seed)


def fit(
    polls: pd.DataFrame | str | Path,
    *,
    config: Config | None = None,
    seed: int | None = None,
    progressbar: bool | None = None,
) -> FitResult:
    """Fit the aggregation model.

    Parameters
    ----------
    polls : DataFrame or path
        A poll table (validated with :func:`model.load_polls` if not already).
    config : Config, optional
        Defaults to ``Config()``: every question, the most frequent as reference, zero-sum house
        effects, no events, the curve ending with the last reading. ``through = "today"`` is
        resolved to the date (:meth:`Config.resolved`), and the result's config holds that date.
    seed : int, optional
        Seed of every random step; drawn from the OS and recorded when not given.
    progressbar : bool, optional
        Show sampling progress; default: when stderr is a terminal.

    Returns
    -------
    FitResult
    """
    config = (config or Config()).resolved()  # through = "today" becomes the date: config.json records it
    polls = load_polls(polls, answers=config.answers)
    reasons = exclusion_reasons(polls, config)
    excluded = polls[reasons != ""].assign(excluded_because=reasons[reasons != ""]).reset_index(drop=True)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    if progressbar is None:
        progressbar = sys.stderr.isatty()
    design = build_design(polls, config)
    sample_seed, predictive_seed = _seeds(seed)
    engine = CompiledAggregator(design, config)
    idata = engine.extend(engine.sample_as_pymc(config.sampler, seed=sample_seed, progress_bar=progressbar), seed=predictive_seed)
    _label_poll_dims(idata)
    from model import __version__

    idata.attrs.update(
        {
            "config": json.dumps(config.to_dict(), sort_keys=True),
            "config_hash": config.hash(),
            "package": "model",
            "package_version": __version__,
            "pymc_version": pm.__version__,
            "data_checksum": table_checksum(design.polls),
            "data_source": str(polls.attrs.get("source", "")),
            "seed": seed,
            "reference_pollster": design.reference_pollster or "",
            "house_effects_parameterisation": "centred" if design.centred_houses else "non-centred",
            "question_effects_parameterisation": "centred" if design.centred_questions else "non-centred",
            "data_end": f"{design.data_end:%Y-%m-%d}",
            "through": f"{design.through:%Y-%m-%d}",
            "walk_knots": json.dumps([f"{design.time[k]:%Y-%m-%d}" for k in design.walk_knots]),
            "confounded_pairs": json.dumps(
                [[design.pollsters[h], design.questions[q]] for h, q in zip(design.paired_pollsters, design.paired_questions)]
            ),
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    return FitResult(idata=idata, config=config, polls=design.polls, seed=seed, excluded=excluded)


def compile_fit(polls: pd.DataFrame | str | Path, *, config: Config | None = None) -> dict[str, Any]:
    """Compile everything a fit of ``polls`` runs, so that fits of this model's structure start at once.

    Builds the model and goes through a fit's compiled steps with a minimal sampler (one chain,
    two warm-up and two kept draws, seed 0; nothing is kept or written): the sampler's callbacks
    (:func:`model.compiled.compile_model`, cached on disk), and the log-likelihood, predictive and
    log-prior functions (PyTensor's numba cache). The compiled code depends on the model's
    structure, not on its data sizes (:mod:`model.compiled`), so later fits of this table, or of
    it with more readings, load it instead of compiling. ``make install`` runs it on the shipped
    data (``python -m model compile``).

    Parameters
    ----------
    polls : DataFrame or path
        A poll table.
    config : Config, optional
        As for :func:`fit`.

    Returns
    -------
    dict
        ``seconds`` (wall time) and ``callbacks`` (``"hit"`` if the sampler's callbacks came from
        the disk cache, ``"miss"`` if they were compiled).
    """
    import time

    start = time.perf_counter()
    config = (config or Config()).resolved()
    polls = load_polls(polls, answers=config.answers)
    engine = CompiledAggregator(build_design(polls, config), config)
    minimal = config.replace(sampler={"chains": 1, "tune": 2, "draws": 2}).sampler
    engine.extend(engine.sample_as_pymc(minimal, seed=0), seed=0)
    return {"seconds": time.perf_counter() - start, "callbacks": engine.callbacks}


def _label_poll_dims(idata) -> None:
    """Give the per-reading log likelihood the ``poll`` dim name (PyMC names it after the data)."""
    ll = idata["log_likelihood"].to_dataset()
    da = ll["obs_share"]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if extra and extra[0] != "poll":
        idata["log_likelihood"] = ll.rename({extra[0]: "poll"}).assign_coords(poll=idata.posterior_predictive["poll"].values)
