"""Figures of a validate run: backtest predictions, scores and horizons; SBC rank ECDFs and histograms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from model.report.plots import OKABE_ITO, add_caption, date_axis
from model.validation import backtest, sbc

METHOD_LABELS = {
    backtest.MODEL: "model",
    backtest.REFERENCE_ONLY: "model on the reference house alone",
    backtest.NO_EFFECTS: "model without house/question effects",
    "last_reading": "last reading of the series",
    "last3_mean": "mean of last 3 readings",
    "weighted_average": "n-weighted moving average",
}


def plot_backtest(v) -> plt.Figure:
    """One panel per method: each target's observed first answer against the predictive median and intervals."""
    answers = v.backtest_answers
    if len(answers):
        answers = answers[answers["reference"].astype(bool) & (answers["horizon_months"] == 0)]
    answer = v.config.answers[0]
    fig, axes = plt.subplots(
        len(backtest.METHODS),
        1,
        figsize=(9, 2.1 * len(backtest.METHODS)),
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for ax, method, colour in zip(axes, backtest.METHODS, OKABE_ITO):
        got = (
            answers[(answers["method"] == method) & (answers["answer"] == answer)]
            if len(answers)
            else answers
        )
        row = v.backtest[v.backtest["method"] == method].iloc[0]
        if len(got):
            dates = pd.to_datetime(got["field_start"]).to_numpy()
            ax.vlines(
                dates,
                got["lower90"],
                got["upper90"],
                color=colour,
                alpha=0.35,
                lw=4,
                label="90% predictive interval",
            )
            ax.vlines(dates, got["lower50"], got["upper50"], color=colour, lw=4, label="50%")
            ax.plot(dates, got["median"], "_", color="black", ms=10, label="predictive median")
            missed = (got["observed"] < got["lower90"]) | (got["observed"] > got["upper90"])
            ax.plot(
                dates[~missed],
                got["observed"][~missed],
                "o",
                mfc="white",
                mec="black",
                ms=5,
                label="observed",
            )
            ax.plot(
                dates[missed],
                got["observed"][missed],
                "o",
                color="#D55E00",
                ms=5,
                label="observed, outside 90%",
            )
        ax.set_title(
            f"{METHOD_LABELS[method]}: log score {row['mean_log_score']:.2f}, MAE {row['mae']:.1f} pts, "
            f"coverage {row['coverage50']:.0%} / {row['coverage90']:.0%} (n={row['n']})",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel(f"{answer} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, ncols=5, loc="lower right")
    date_axis(axes[-1])
    fig.suptitle(
        "Leave-future-out backtest: each reference reading predicted from the readings that ended before it began",
        fontsize=11,
    )
    add_caption(
        fig,
        "Coverage: share of reported answers (all answers, not only the one drawn) inside the 50% / 90% predictive intervals.",
    )
    return fig


def plot_backtest_scores(v) -> plt.Figure:
    """Mean log score (higher is better), MAE and coverage per method."""
    table = v.backtest.set_index("method").loc[list(backtest.METHODS)]
    labels = [METHOD_LABELS[m] for m in table.index]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True, layout="constrained")
    y = np.arange(len(table))
    axes[0].barh(y, table["mean_log_score"], color=OKABE_ITO[: len(table)])
    axes[0].set_xlabel("mean log score (higher: better)")
    axes[1].barh(y, table["mae"], color=OKABE_ITO[: len(table)])
    axes[1].set_xlabel("MAE of the median (points)")
    axes[2].scatter(table["coverage50"], y, marker="s", color="black", label="50% interval")
    axes[2].scatter(
        table["coverage90"],
        y,
        marker="o",
        facecolors="white",
        edgecolors="black",
        label="90% interval",
    )
    for nominal in (0.5, 0.9):
        axes[2].axvline(nominal, color="0.5", ls=":")
    axes[2].set_xlim(0, 1.02)
    axes[2].set_xlabel("coverage (dotted: nominal)")
    axes[2].legend(fontsize=8)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    fig.suptitle("Backtest scores per method", fontsize=11)
    return fig


def plot_horizons(v) -> plt.Figure:
    """Per method, the reference targets' log score and coverage against the horizon."""
    table = v.backtest_horizons
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    for method, colour in zip(backtest.METHODS, OKABE_ITO):
        part = table[table["method"] == method].sort_values("horizon_months")
        if not len(part):
            continue
        style = {"color": colour, "marker": "o", "label": METHOD_LABELS[method]}
        axes[0].plot(part["horizon_months"], part["mean_log_score"], **style)
        for ax, level in ((axes[1], 50), (axes[2], 90)):
            ax.errorbar(
                part["horizon_months"],
                part[f"coverage{level}"],
                yerr=np.clip(
                    [
                        part[f"coverage{level}"] - part[f"coverage{level}_lower"],
                        part[f"coverage{level}_upper"] - part[f"coverage{level}"],
                    ],
                    0,
                    None,
                ),
                capsize=2,
                **style,
            )
    axes[0].set_ylabel("mean log score (higher: better)")
    for ax, level in ((axes[1], 50), (axes[2], 90)):
        ax.axhline(level / 100, color="0.5", ls=":")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"coverage of {level}% intervals (dotted: nominal)")
    for ax in axes:
        ax.set_xlabel("horizon: months from cut-off to field start")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Backtest by horizon, reference readings (bars: 90% Wilson intervals of coverage)",
        fontsize=11,
    )
    return fig


def _quantity_panels(ranks: pd.DataFrame):
    """One panel per ranked quantity, three to a row (unused panels hidden): ``(fig, axes, names)``."""
    names = list(dict.fromkeys(ranks["quantity"]))
    cols = 3
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(11, 2.3 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    return fig, axes, names


def plot_sbc_ecdf(v) -> plt.Figure:
    """Rank ECDF minus the uniform CDF per quantity, with the 99% simultaneous band of a uniform one."""
    ranks = v.sbc_ranks
    fig, axes, names = _quantity_panels(ranks)
    for ax, name in zip(axes.flat, names):
        values = ranks.loc[ranks["quantity"] == name, "rank"].to_numpy()
        band = sbc.rank_ecdf(values, seed=len(values))
        x = band["x"]
        ax.fill_between(x, band["lower"] - x, band["upper"] - x, color="0.88", step="post")
        ax.step(x, band["ecdf"] - x, where="post", color=OKABE_ITO[0])
        ax.axhline(0, color="0.5", lw=0.8)
        row = v.sbc[v.sbc["quantity"] == name].iloc[0]
        inside = "inside" if row["ecdf_in_band"] else "OUTSIDE"
        ax.set_title(
            f"{name}\ncov {row['coverage50']:.0%}/{row['coverage90']:.0%}; ECDF {inside} the band",
            fontsize=8,
        )
    fig.suptitle(
        f"SBC rank ECDF minus uniform ({len(v.sbc_fits)} prior datasets; grey: {sbc.BAND_PROB:.0%} simultaneous band)",
        fontsize=11,
    )
    return fig


def plot_sbc_ranks(v) -> plt.Figure:
    """Rank histogram per quantity, with the 99% band of a uniform histogram's bin counts."""
    ranks = v.sbc_ranks
    fig, axes, names = _quantity_panels(ranks)
    bins = np.linspace(0, sbc.RANK_DRAWS + 1, sbc.RANK_BINS + 1)
    for ax, name in zip(axes.flat, names):
        values = ranks.loc[ranks["quantity"] == name, "rank"]
        n = len(values)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / sbc.RANK_BINS)
        ax.axhspan(lo, hi, color="0.9")
        ax.axhline(n / sbc.RANK_BINS, color="0.5", lw=0.8)
        ax.hist(values, bins=bins, color=OKABE_ITO[0], edgecolor="white")
        row = v.sbc[v.sbc["quantity"] == name].iloc[0]
        ax.set_title(
            f"{name}\ncov {row['coverage50']:.0%}/{row['coverage90']:.0%}, chi2 p={row['uniformity_p']:.2f}",
            fontsize=8,
        )
        ax.set_yticks([])
    fig.suptitle(
        f"SBC rank histograms ({len(v.sbc_fits)} prior datasets; grey: 99% band for uniform ranks)",
        fontsize=11,
    )
    return fig


def validation_figures(v) -> dict[str, plt.Figure]:
    """Every figure the run has data for, by file name."""
    figures = {}
    if len(v.backtest) and len(v.backtest_answers):
        figures["backtest"] = plot_backtest(v)
        figures["backtest_scores"] = plot_backtest_scores(v)
    if len(v.backtest_horizons):
        figures["backtest_horizons"] = plot_horizons(v)
    if len(v.sbc_ranks):
        figures["sbc_ranks"] = plot_sbc_ranks(v)
        figures["sbc_ecdf"] = plot_sbc_ecdf(v)
    return figures
