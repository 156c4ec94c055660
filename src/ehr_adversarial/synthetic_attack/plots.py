"""Figure of the synthetic attack: the real model's S_j ranking against each synthetic-trained model's."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are saved by the catalog, never shown

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def agreement_figure(side_by_side: dict[tuple[str, str], pd.DataFrame], table: pd.DataFrame) -> Figure:
    """Rank of S_j under the real model (x) vs the synthetic-trained model (y), one panel per
    (model, direction) row and generator column; rank 1 = most susceptible, the real top-k labelled.

    Points on the diagonal are features both models rank alike; ρ and τ are in each title.
    """
    keys = sorted(side_by_side)
    models = list(dict.fromkeys(model for model, _ in keys))
    generators = list(dict.fromkeys(generator for _, generator in keys))
    panels = [(model, direction) for model in models
              for direction in sorted(table.loc[table["model"] == model, "direction"].unique())]
    fig, axes = plt.subplots(max(len(panels), 1), max(len(generators), 1), squeeze=False,
                             figsize=(4.2 * max(len(generators), 1), 4.0 * max(len(panels), 1)))
    for row, (model, direction) in enumerate(panels):
        for col, generator in enumerate(generators):
            ax = axes[row, col]
            frame = side_by_side.get((model, generator), pd.DataFrame())
            frame = frame[frame["direction"] == direction] if len(frame) else frame
            stats = table[(table["model"] == model) & (table["generator"] == generator)
                          & (table["direction"] == direction)]
            if frame.empty or stats.empty:
                ax.text(0.5, 0.5, "no successful attack", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(f"{generator}_{model}, {direction}", fontsize=9)
                ax.set_axis_off()
                continue
            n = len(frame)
            ax.plot([1, n], [1, n], color="grey", lw=0.8, ls="--")
            top = frame["top_k_real"].to_numpy()
            ax.scatter(frame["rank_real"][~top], frame["rank_attacked"][~top], s=14, color="tab:blue", alpha=0.7)
            ax.scatter(frame["rank_real"][top], frame["rank_attacked"][top], s=22, color="tab:red",
                       label=f"real top-{int(stats['top_k'].iloc[0])}")
            for _, point in frame[top].iterrows():
                ax.annotate(point["feature"], (point["rank_real"], point["rank_attacked"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
            limits = (0.5, n + 0.5)
            ax.set_xlim(limits)
            ax.set_ylim(limits[::-1])  # rank 1 at the top left
            ax.set_xlabel(f"rank of S_j, {model} trained on real data")
            ax.set_ylabel(f"rank of S_j, trained on {generator}")
            s = stats.iloc[0]
            rho = "–" if np.isnan(s["spearman_rho"]) else f"{s['spearman_rho']:.2f}"
            tau = "–" if np.isnan(s["kendall_tau"]) else f"{s['kendall_tau']:.2f}"
            ax.set_title(f"{generator}_{model}, {direction}: ρ = {rho}, τ = {tau}", fontsize=9)
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
