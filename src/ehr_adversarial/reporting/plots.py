"""The attack report's figure: the S_j ranking with its CIs beside the paper, S over hours with its CI band,
and each trained instance's S_j against the served model's."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are saved by the catalog, never shown

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ehr_adversarial.attack.plots import is_susceptible, nothing_to_show, ranked_features


def plot_attack_report(
    cumulative_susceptibility: pd.DataFrame,
    ranking_intervals: pd.DataFrame,
    hourly_intervals: pd.DataFrame,
    paper_table: pd.DataFrame,
    trend: pd.DataFrame,
    instance_rankings: pd.DataFrame,
) -> Figure:
    """One row per direction: ranked S_j with its bootstrap CI and the paper's features marked (the not
    susceptible grey), S_t = Σ_j S(j, t) over hours with its CI band, and each trained instance's S_j against
    the served model's."""
    if cumulative_susceptibility.empty:
        return nothing_to_show()
    directions = sorted(cumulative_susceptibility["direction"].unique())
    n_features = cumulative_susceptibility["feature"].nunique()
    fig, axes = plt.subplots(len(directions), 3, squeeze=False,
                             figsize=(15, max(3.5, 0.22 * n_features + 1.5) * len(directions)))
    for row, direction in enumerate(directions):
        ranked = ranked_features(cumulative_susceptibility, direction)
        susceptible = is_susceptible(ranked).to_numpy()
        marks = paper_table[(paper_table["direction"] == direction) & paper_table["feature"].notna()]
        position = dict(zip(marks["feature"], marks["paper_position"], strict=True))
        ax = axes[row, 0]
        colours = ["lightgrey" if not s else "tab:red" if f in position else "tab:grey"
                   for f, s in zip(ranked["feature"], susceptible, strict=True)]
        labels = [f if s else f"{f} (not susc.)" for f, s in zip(ranked["feature"], susceptible, strict=True)]
        values = ranked["cumulative_s"].to_numpy()
        ci = ranking_intervals[ranking_intervals["direction"] == direction].set_index("feature")
        xerr = None
        if len(ci) and ci[["ci_low", "ci_high"]].notna().all().all():
            low = ci["ci_low"].reindex(ranked["feature"]).to_numpy()
            high = ci["ci_high"].reindex(ranked["feature"]).to_numpy()
            # the bootstrap of a maximum leans low, so the point may lie outside its interval
            xerr = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])[:, ::-1]
        y = np.arange(len(ranked))
        ax.barh(y, values[::-1], color=colours[::-1], xerr=xerr, error_kw={"elinewidth": 0.7, "capsize": 1.5})
        ax.set_yticks(y, labels[::-1])
        for i, (feature, value) in enumerate(zip(ranked["feature"][::-1], values[::-1], strict=True)):
            if feature in position:
                ax.annotate(f" paper: {position[feature]}", (value, i), va="center", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("cumulative S_j (bars: 95 % bootstrap CI)")
        ax.set_title(f"{direction}: S_j ranking (red: named in the paper's table; grey: not susceptible)", fontsize=9)

        ax = axes[row, 1]
        hours = hourly_intervals[hourly_intervals["direction"] == direction].sort_values("hour")
        ax.plot(hours["hour"], hours["s_t"], marker=".")
        if hours[["ci_low", "ci_high"]].notna().all().all() and len(hours):
            ax.fill_between(hours["hour"], hours["ci_low"], hours["ci_high"], alpha=0.3, label="95 % bootstrap CI")
            ax.legend(fontsize=7)
        t = trend[trend["direction"] == direction]
        title = f"{direction}: S_t = Σ_j S(j, t)"
        if len(t):
            title += f", Spearman ρ = {t['spearman'].iloc[0]:.2f} (p = {t['p_value'].iloc[0]:.2g})"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("hour after ICU admission")

        ax = axes[row, 2]
        served = ranked.set_index("feature")["cumulative_s"]
        mine = instance_rankings[instance_rankings["direction"] == direction]
        if mine.empty:
            ax.text(0.5, 0.5, "one trained instance:\nno instance comparison", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        for instance, frame in mine.groupby("instance"):
            ax.scatter(served, frame.set_index("feature")["cumulative_s"].reindex(served.index), s=12,
                       label=f"instance {instance}")
        mean_map = mine.groupby("feature")["cumulative_s"].mean().reindex(served.index)
        ax.scatter(served, mean_map, s=30, marker="x", color="black", label="mean over instances")
        top = max(served.max(), mine["cumulative_s"].max())
        ax.plot([0, top], [0, top], color="black", linewidth=0.5)
        ax.set_xlabel("S_j, served model (mean of the instances' logits)")
        ax.set_ylabel("S_j, an instance attacked alone")
        ax.set_title(f"{direction}: stability over trained instances", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
