"""An adversarially trained model beside the plain model it hardens: clean scores, what the same attack needs to
flip each, and how far their susceptibility maps agree.

Each model is attacked on its own correctly classified test records (the attack's selection), so the two
attacks see largely but not exactly the same records; the table says how many each had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ehr_adversarial.attack.susceptibility import ranking_agreement
from ehr_adversarial.reporting.markdown import markdown_table


def _flip_budgets(records: pd.DataFrame, budgets: Sequence[float]) -> dict[str, float]:
    """Median L1/L0 of the best δ over all attacked records (a failed attack counts as infinitely costly) and
    the share flipped within each L1 budget."""
    won = records["success"].to_numpy(dtype=bool)
    l1 = np.where(won, records["l1_best"].to_numpy(dtype=float), np.inf)
    l0 = np.where(won, records["l0_best"].to_numpy(dtype=float), np.inf)
    return {"median_l1": float(np.median(l1)) if len(l1) else float("nan"),
            "median_l0": float(np.median(l0)) if len(l0) else float("nan"),
            **{f"flipped_l1_le_{b:g}": float((l1 <= b).mean()) if len(l1) else float("nan") for b in budgets}}


def robustness_comparison(
    pairs: Mapping[str, str], reporting: Mapping[str, Any], **sections: Any
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Per pair `robust → plain` model: one row per model with its test AUROC/AUPRC and attack outcome, one row
    per direction with the agreement of the two cumulative S_j rankings, and both as markdown. From
    `reporting`: `robustness_budgets` (the L1 budgets of the flipped shares) and `top_k`.

    `sections` holds per model `<model>__metrics` (training metrics), `<model>__records` (the attack's
    per-record results) and `<model>__cumulative` (its cumulative S_j per direction and feature).
    """
    budgets = [float(b) for b in reporting.get("robustness_budgets", (1, 2, 4, 8))]
    top_k = int(reporting.get("top_k", 5))
    rows, agreements = [], []
    for robust, plain in sorted(pairs.items()):
        for role, model in (("plain", plain), ("adversarially trained", robust)):
            metrics, records = sections[f"{model}__metrics"], sections[f"{model}__records"]
            test = metrics["test"]
            rows.append({"pair": robust, "model": model, "training": role,
                         "auroc": test["auroc"]["value"], "auroc_ci": (test["auroc"]["ci_low"], test["auroc"]["ci_high"]),
                         "auprc": test["auprc"]["value"], "records": len(records),
                         "success": float(records["success"].mean()) if len(records) else float("nan"),
                         **_flip_budgets(records, budgets)})
        a, b = (sections[f"{m}__cumulative"] for m in (plain, robust))
        for direction in sorted(set(a["direction"]) & set(b["direction"])):
            scores_a = a[a["direction"] == direction].set_index("feature")["cumulative_s"]
            scores_b = b[b["direction"] == direction].set_index("feature")["cumulative_s"]
            scores_b = scores_b.reindex(scores_a.index, fill_value=0.0)
            agreement = ranking_agreement(scores_a, scores_b, top_k=top_k)
            agreements.append({"pair": robust, "direction": direction, "features": agreement["n_features"],
                               "spearman": agreement["spearman"], "top_k": agreement["top_k"],
                               "top_k_overlap": agreement["top_k_overlap"],
                               "top_plain": ", ".join(agreement["top_a"]), "top_robust": ", ".join(agreement["top_b"])})
    table, agreement_table = pd.DataFrame(rows), pd.DataFrame(agreements)
    return table.drop(columns="auroc_ci"), agreement_table, _markdown(table, agreement_table, budgets)


def _markdown(table: pd.DataFrame, agreements: pd.DataFrame, budgets: Sequence[float]) -> str:
    shown = pd.DataFrame({
        "model": table["model"], "training": table["training"],
        "test AUROC": [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, (lo, hi) in zip(table["auroc"], table["auroc_ci"],
                                                                                strict=True)],
        "test AUPRC": table["auprc"], "attacked records": table["records"], "success": table["success"],
        "median L1": table["median_l1"], "median L0": table["median_l0"],
        **{f"flipped at L1 ≤ {b:g}": table[f"flipped_l1_le_{b:g}"] for b in budgets}})
    lines = ["# Adversarial training: the hardened model beside the plain one", "",
             "Both models are attacked with the same settings on their own correctly classified test records. "
             "Median L1 / L0 of the best δ over all attacked records (a record the attack could not flip counts "
             "as infinitely costly); \"flipped at L1 ≤ b\": the share of attacked records flipped within that "
             "budget. A robust model needs larger δ at a small loss of clean AUROC.", "",
             markdown_table(shown), ""]
    if len(agreements):
        lines += ["Agreement of the two cumulative S_j rankings per direction (Spearman ρ; top-k overlap as in "
                  "every report):", "",
                  markdown_table(agreements.rename(columns={
                      "spearman": "Spearman ρ", "top_k": "k", "top_k_overlap": "top-k overlap",
                      "top_plain": "top k, plain", "top_robust": "top k, adversarially trained"})), ""]
    return "\n".join(lines)
