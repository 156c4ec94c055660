"""Figures of the synthetic-data evaluation (matplotlib Figure objects, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _column_kind(column: str) -> str:
    """static / code / label, or the summary statistic of a time-series column."""
    if column.startswith(("static.", "code.")):
        return column.split(".", 1)[0]
    return column.rsplit(".", 1)[-1] if "." in column else column


def mean_scatter_figure(variable_statistics: pd.DataFrame, fidelity: Mapping[str, Any], title: str) -> Figure:
    """Real vs synthetic column means (prevalences for 0/1 columns), one colour per column kind."""
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    kinds = variable_statistics["variable"].map(_column_kind)
    for kind, rows in variable_statistics.groupby(kinds, sort=True):
        ax.scatter(rows["mean_real"], rows["mean_synthetic"], s=12, alpha=0.7, label=kind)
    low = float(np.nanmin(variable_statistics[["mean_real", "mean_synthetic"]].to_numpy()))
    high = float(np.nanmax(variable_statistics[["mean_real", "mean_synthetic"]].to_numpy()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", label="identity")
    r_all, r_means = fidelity["pearson_r"]["all_columns"], fidelity["pearson_r"]["means"]
    ax.set(
        xlabel="real (train) column mean",
        ylabel="synthetic column mean",
        title=f"{title}: column means\nPearson r {r_all:.3f} (all columns), {r_means:.3f} (means/prevalences)",
    )
    ax.legend(loc="upper left", fontsize="small", ncols=2)
    return fig


def variable_distributions_figure(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: Sequence[str], title: str, bins: int = 30
) -> Figure:
    """Histograms (density) of real and synthetic values for each of `columns`, with the KS statistic."""
    n = len(columns)
    n_cols = min(4, max(n, 1))
    n_rows = max(1, int(np.ceil(n / n_cols)))
    fig = Figure(figsize=(3.2 * n_cols, 2.6 * n_rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols)).ravel()
    for ax, column in zip(axes, columns, strict=False):
        r, s = real[column].dropna().to_numpy(), synthetic[column].dropna().to_numpy()
        both = np.concatenate([r, s])
        edges = np.histogram_bin_edges(both, bins=bins) if both.size and np.ptp(both) > 0 else bins
        ax.hist(r, bins=edges, density=True, alpha=0.5, label="real")
        ax.hist(s, bins=edges, density=True, alpha=0.5, label="synthetic")
        ax.set_title(column, fontsize="small")
        ax.tick_params(labelsize="x-small")
    for ax in axes[n:]:
        ax.set_visible(False)
    if n:
        axes[0].legend(fontsize="x-small")
    fig.suptitle(f"{title}: per-variable distributions (real train vs synthetic)")
    return fig


def dcr_histogram_figure(distances: pd.DataFrame, privacy: Mapping[str, Any], title: str, bins: int = 50) -> Figure:
    """Distance to the closest record: synthetic→train against the holdout→train baseline (left),
    and synthetic→train vs synthetic→holdout with references of equal size (right)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2, sharex=True)
    edges = np.histogram_bin_edges(distances["distance"], bins=bins)
    by_comparison = dict(tuple(distances.groupby("comparison")))
    for ax, pair in ((left, ("holdout→train", "synthetic→train")), (right, ("synthetic→holdout", "synthetic→train_subsample"))):
        for comparison in pair:
            ax.hist(by_comparison[comparison]["distance"], bins=edges, density=True, alpha=0.5, label=comparison)
        ax.set(xlabel="Euclidean distance to the closest record", ylabel="density")
        ax.legend(fontsize="small")
    left.set_title(
        f"vs the real→real baseline; exact matches {privacy['exact_match_rate']:.3f}"
        f" (baseline {privacy['exact_match_rate_holdout_baseline']:.3f})",
        fontsize="small",
    )
    right.set_title(
        f"equal-size references; share closer to train {privacy['share_closer_to_train']:.3f} (ideal 0.5)",
        fontsize="small",
    )
    fig.suptitle(f"{title}: distance to closest record; membership-inference AUC {privacy['membership_inference']['auc']:.3f}")
    return fig
