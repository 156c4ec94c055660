"""Figures of the attack: susceptibility heatmaps, the S_j ranking, norm histograms, S over hours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are saved by the catalog, never shown

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ehr_adversarial.attack import metric_grid


def _directions(table: pd.DataFrame) -> list[str]:
    return sorted(table["direction"].unique())


def nothing_to_show(message: str = "no attack succeeded: nothing to show") -> Figure:
    """A figure that says why it is empty, so every run still writes each figure."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return fig


def plot_susceptibility_heatmaps(susceptibility: pd.DataFrame) -> Figure:
    """S(j, t), GPP and GMP as feature × hour heatmaps, one row per direction."""
    if susceptibility.empty:
        return nothing_to_show()
    directions, metrics = _directions(susceptibility), ("S", "GPP", "GMP")
    n_features = susceptibility["feature"].nunique()
    fig, axes = plt.subplots(len(directions), len(metrics), squeeze=False,
                             figsize=(5 * len(metrics), 0.28 * n_features * len(directions) + 1.5))
    for row, direction in enumerate(directions):
        for col, metric in enumerate(metrics):
            grid = metric_grid(susceptibility, direction, metric)
            ax = axes[row, col]
            image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
            ax.set_yticks(range(len(grid.index)), grid.index, fontsize=7)
            ax.set_xlabel("hour after ICU admission")
            n = int(susceptibility.loc[susceptibility["direction"] == direction, "n_records"].iloc[0])
            ax.set_title(f"{metric}, {direction} (N = {n})", fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def ranked_features(cumulative_susceptibility: pd.DataFrame, direction: str) -> pd.DataFrame:
    """The features of one direction, most susceptible first; the not susceptible (rank NaN) last, by S_j."""
    frame = cumulative_susceptibility[cumulative_susceptibility["direction"] == direction]
    return frame.sort_values(["rank", "cumulative_s", "feature"], ascending=[True, False, True], na_position="last",
                             kind="stable")


def is_susceptible(ranked: pd.DataFrame) -> pd.Series:
    """The `susceptible` column, or rank present where a table lacks it."""
    return ranked["susceptible"].astype(bool) if "susceptible" in ranked else ranked["rank"].notna()


def plot_cumulative_ranking(cumulative_susceptibility: pd.DataFrame) -> Figure:
    """Cumulative S_j per feature, ranked, one panel per direction (like the paper's table); features below
    the susceptibility tolerance (no rank) are grey and labelled "not susceptible"."""
    if cumulative_susceptibility.empty:
        return nothing_to_show()
    directions = _directions(cumulative_susceptibility)
    n_features = cumulative_susceptibility["feature"].nunique()
    fig, axes = plt.subplots(1, len(directions), squeeze=False, figsize=(5 * len(directions), 0.3 * n_features + 1.5))
    for ax, direction in zip(axes[0], directions, strict=True):
        ranked = ranked_features(cumulative_susceptibility, direction)
        susceptible = is_susceptible(ranked)
        labels = [f if s else f"{f} (not susceptible)" for f, s in zip(ranked["feature"], susceptible, strict=True)]
        colours = ["tab:red" if s else "lightgrey" for s in susceptible]
        ax.barh(labels[::-1], ranked["cumulative_s"].to_numpy()[::-1], color=colours[::-1])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("cumulative S_j = Σ_t GMP·GPP")
        ax.set_title(f"{direction} ({int(susceptible.sum())} of {len(ranked)} features susceptible)")
    fig.tight_layout()
    return fig


def plot_attack_histograms(attack_records: pd.DataFrame) -> Figure:
    """L0 and L1 of the best δ and the iteration of first success, successful records, per direction."""
    won = attack_records[attack_records["success"]]
    columns = (("l0_best", "L0 (cells changed)"), ("l1_best", "L1 (scaled units)"),
               ("first_iteration", "iteration of first success"))
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.5))
    for ax, (column, label) in zip(axes, columns, strict=True):
        bins = np.histogram_bin_edges(won[column], bins=30) if len(won) else 10
        for direction, frame in won.groupby("direction", sort=True):
            ax.hist(frame[column], bins=bins, alpha=0.6, label=f"{direction} (N = {len(frame)})")
        ax.set_xlabel(label)
        ax.set_ylabel("records")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_susceptibility_over_hours(susceptibility: pd.DataFrame) -> Figure:
    """Σ_j S(j, t) per hour and direction: does susceptibility rise at later hours?"""
    if susceptibility.empty:
        return nothing_to_show()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    scores = susceptibility[susceptibility["metric"] == "S"]
    for direction, frame in scores.groupby("direction", sort=True):
        by_hour = frame.groupby("hour")["value"].sum()
        ax.plot(by_hour.index, by_hour.to_numpy(), marker=".", label=direction)
    ax.set_xlabel("hour after ICU admission")
    ax.set_ylabel("Σ_j S(j, t)")
    ax.legend()
    fig.tight_layout()
    return fig
