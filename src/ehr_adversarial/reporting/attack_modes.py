"""The susceptibility map under other choices of δ: the first successful δ beside the refined one (the
headline), and a measurement-consistent attack beside the paper's every-cell attack.

The paper's attack may move any cell, and most cells of an hourly tensor are imputed (forward-filled or
gap-filled), so its map can point at hours nobody measured. The measurement-consistent mode moves measured
cells only and carries each change into the hours the features stage fills from it (attack `observed_only`
and `forward_fill`); its map says which measurements, if they had been different, flip the prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ehr_adversarial.attack.run import run_attack
from ehr_adversarial.attack.susceptibility import (
    DIRECTIONS,
    bootstrap_susceptibility,
    direction_of,
    ranking_agreement,
    susceptible_tolerance,
)
from ehr_adversarial.features.bundle import TensorBundle
from ehr_adversarial.reporting.stability import balanced_subset

MODES = {
    "refined": "every cell, refined δ (headline)",
    "first": "every cell, first successful δ (the paper's)",
    "measurements": "measured cells, forward-filled, refined δ",
}
MODE_COLUMNS = ["direction", "mode", "description", "n_records", "success_rate", "mean_l1", "mean_l1_measured", "mean_l0",
                "imputed_share", "at_bound_share", "spearman_vs_headline", "top_k_overlap_vs_headline", "top_k",
                "top_features"]


def _mode_rows(mode: str, delta: np.ndarray, label: np.ndarray, success: np.ndarray, x: np.ndarray,
               measured: np.ndarray, names: list[str], tolerance: float
               ) -> tuple[list[dict], pd.DataFrame, pd.DataFrame]:
    """Per direction: success, L1/L0 of the successful δ (and the L1 of its measured cells alone), the share of
    changed cells that were imputed and that start at a scaling bound (x = 0 or 1: the value was clipped at the train p05/p95), and S_j."""
    features, hours = bootstrap_susceptibility(delta, label, success, names, n_bootstrap=0, tolerance=tolerance)
    direction = direction_of(label)
    rows = []
    for name in DIRECTIONS.values():
        members = direction == name
        if not members.any():
            continue
        won = members & success
        changed = (delta[won] != 0)
        n_changed = max(int(changed.sum()), 1)
        start = x[won][changed]
        rows.append({
            "direction": name, "mode": mode, "description": MODES[mode], "n_records": int(members.sum()),
            "success_rate": float(success[members].mean()),
            "mean_l1": float(np.abs(delta[won]).reshape(int(won.sum()), -1).sum(1).mean()) if won.any() else np.nan,
            "mean_l1_measured": float(np.abs(np.where(measured[won], delta[won], 0.0)).reshape(int(won.sum()), -1)
                                      .sum(1).mean()) if won.any() else np.nan,
            "mean_l0": float(changed.reshape(int(won.sum()), -1).sum(1).mean()) if won.any() else np.nan,
            "imputed_share": float((~measured[won][changed]).sum() / n_changed) if won.any() else np.nan,
            "at_bound_share": float(((start <= 0) | (start >= 1)).sum() / n_changed) if won.any() else np.nan,
        })
    return rows, features.assign(mode=mode), hours.assign(mode=mode)


def compare_attack_modes(model, model_input_test: TensorBundle, selection: pd.DataFrame, records: pd.DataFrame,
                         deltas: TensorBundle, feature_spec: dict[str, Any], attack: dict[str, Any],
                         reporting: dict[str, Any], seed: int, device: str
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three maps of MODES on the same records (a class-balanced subset of the attack's selection,
    `reporting.mode_records`): a table per direction and mode (MODE_COLUMNS), the S_j and the S_t of each mode."""
    tolerance = susceptible_tolerance(attack)
    chosen = balanced_subset(selection, int(reporting.get("mode_records", 300)), seed)
    position = pd.Series(np.arange(len(records)), index=records["record_id"].to_numpy())
    at = position.loc[chosen["record_id"].to_numpy()].to_numpy()
    rows_in_test = chosen["row"].to_numpy()
    x = np.asarray(model_input_test["X"])[rows_in_test]
    measured = np.asarray(model_input_test["mask"], dtype=bool)[rows_in_test]
    label = chosen["label"].to_numpy()
    names = [str(n) for n in deltas["feature_names"]]
    success = records["success"].to_numpy()[at]

    measurement_attack = {**attack, "observed_only": True, "forward_fill": True}
    attacked, measurement_deltas, _ = run_attack(model, model_input_test, chosen, feature_spec, measurement_attack,
                                                 seed, device)
    variants = {"refined": (np.asarray(deltas["delta_best"])[at], success),
                "first": (np.asarray(deltas["delta_first"])[at], success),
                "measurements": (measurement_deltas["delta_best"], attacked["success"].to_numpy())}
    rows, rankings, hours = [], [], []
    for mode, (delta, won) in variants.items():
        mode_rows, features, by_hour = _mode_rows(mode, np.asarray(delta, dtype=np.float64), label, won, x, measured,
                                                  names, tolerance)
        rows += mode_rows
        rankings.append(features)
        hours.append(by_hour)
    rankings, hours = pd.concat(rankings, ignore_index=True), pd.concat(hours, ignore_index=True)
    table = pd.DataFrame(rows)
    k = int(reporting.get("top_k", 5))
    headline = rankings[rankings["mode"] == "refined"]
    agreement = []
    for row in table.itertuples():
        ours = rankings[(rankings["mode"] == row.mode) & (rankings["direction"] == row.direction)]
        base = headline[headline["direction"] == row.direction]
        if ours.empty or base.empty:
            agreement.append((np.nan, np.nan, k, ""))
            continue
        a = ours.set_index("feature")["cumulative_s"]
        result = ranking_agreement(base.set_index("feature")["cumulative_s"].loc[a.index], a, k)
        top = ", ".join(f for f in result["top_b"] if a[f] >= tolerance)
        agreement.append((result["spearman"], result["top_k_overlap"], result["top_k"], top))
    table[["spearman_vs_headline", "top_k_overlap_vs_headline", "top_k", "top_features"]] = pd.DataFrame(
        agreement, index=table.index)
    return table[MODE_COLUMNS], rankings, hours
