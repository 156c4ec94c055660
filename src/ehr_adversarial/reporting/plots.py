"""The attack report's figure: ranking beside the paper, S over hours with its trend, seed stability."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are saved by the catalog, never shown

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ehr_adversarial.attack.plots import nothing_to_show


def plot_attack_report(
    cumulative_susceptibility: pd.DataFrame,
    susceptibility: pd.DataFrame,
    paper_table: pd.DataFrame,
    trend: pd.DataFrame,
    seed_rankings: pd.DataFrame,
) -> Figure:
    """One row per direction: ranked S_j with the paper's features marked, Σ_j S(j, t) over hours,
    and each further seed's S_j against the main run's."""
    if cumulative_susceptibility.empty:
        return nothing_to_show()
    directions = sorted(cumulative_susceptibility["direction"].unique())
    n_features = cumulative_susceptibility["feature"].nunique()
    fig, axes = plt.subplots(len(directions), 3, squeeze=False,
                             figsize=(15, max(3.5, 0.22 * n_features + 1.5) * len(directions)))
    for row, direction in enumerate(directions):
        ranked = cumulative_susceptibility[cumulative_susceptibility["direction"] == direction].sort_values("rank")
        marks = paper_table[(paper_table["direction"] == direction) & paper_table["feature"].notna()]
        position = dict(zip(marks["feature"], marks["paper_position"], strict=True))
        ax = axes[row, 0]
        colours = ["tab:red" if f in position else "tab:grey" for f in ranked["feature"]]
        ax.barh(ranked["feature"][::-1], ranked["cumulative_s"][::-1], color=colours[::-1])
        for y, (feature, value) in enumerate(zip(ranked["feature"][::-1], ranked["cumulative_s"][::-1], strict=True)):
            if feature in position:
                ax.annotate(f" paper: {position[feature]}", (value, y), va="center", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("cumulative S_j")
        ax.set_title(f"{direction}: S_j ranking (red: named in the paper's table)", fontsize=9)

        ax = axes[row, 1]
        by_hour = (susceptibility[(susceptibility["metric"] == "S") & (susceptibility["direction"] == direction)]
                   .groupby("hour")["value"].sum())
        ax.plot(by_hour.index, by_hour.to_numpy(), marker=".")
        t = trend[trend["direction"] == direction].iloc[0]
        ax.set_title(f"{direction}: Σ_j S(j, t), Spearman ρ = {t['spearman']:.2f} (p = {t['p_value']:.2g})", fontsize=9)
        ax.set_xlabel("hour after ICU admission")

        ax = axes[row, 2]
        main = ranked.set_index("feature")["cumulative_s"]
        others = seed_rankings[seed_rankings["direction"] == direction]
        for seed, frame in others.groupby("seed"):
            other = frame.set_index("feature")["cumulative_s"].reindex(main.index)
            ax.scatter(main, other, s=12, label=f"seed {seed}")
        top = max(main.max(), others["cumulative_s"].max() if len(others) else 0.0)
        ax.plot([0, top], [0, top], color="black", linewidth=0.5)
        ax.set_xlabel("S_j, main run")
        ax.set_ylabel("S_j, further seed")
        ax.set_title(f"{direction}: stability over attack seeds", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
