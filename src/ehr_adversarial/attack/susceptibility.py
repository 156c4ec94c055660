"""Susceptibility of features and hours to adversarial perturbation (Sun et al., KDD 2018).

Over the N successful records of one attack direction, with δ (N, T, F), per feature j and hour t:

    GMP(j,t)   = max_n |δ_n(j,t)|                      maximum perturbation
    GAP(j,t)   = Σ_n |δ_n(j,t)| / N                    average perturbation
    GPP(j,t)   = #{n : δ_n(j,t) ≠ 0} / N               probability of perturbation (earlier code used GAP)
    S(j,t)     = GMP(j,t) · GPP(j,t)                   susceptibility score
    S_j        = Σ_t S(j,t)                            cumulative susceptibility of feature j
    GANZP(j,t) = Σ_n |δ_n(j,t)| / #{n : δ_n(j,t) ≠ 0}  mean size of the nonzero perturbations (NaN if none)
    sens(j,t)  = GPP(j,t) / GANZP(j,t)                 often and small → sensitive (0 if never perturbed)

Tables are (F × T): one row per feature, one column per hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

METRICS = ("GMP", "GAP", "GPP", "S", "GANZP", "sensitivity")
DIRECTIONS = {0: "0→1", 1: "1→0"}  # true label → the attack's direction


def direction_of(label: np.ndarray) -> np.ndarray:
    """'0→1' for records of true label 0, '1→0' for label 1."""
    label = np.asarray(label)
    unknown = set(np.unique(label).tolist()) - set(DIRECTIONS)
    if unknown:
        raise ValueError(f"labels must be 0 or 1 to name an attack direction; found {sorted(unknown)}.")
    return np.where(label == 1, DIRECTIONS[1], DIRECTIONS[0])


def susceptibility(delta: np.ndarray) -> dict[str, np.ndarray]:
    """The six metrics of a (N, T, F) perturbation of N records, each as an (F, T) array.

    A cell counts as perturbed when δ ≠ 0 exactly: the soft threshold of the attack makes exact zeros.
    """
    delta = np.asarray(delta, dtype=np.float64)
    if delta.ndim != 3:
        raise ValueError(f"δ must be (records, hours, features); got shape {delta.shape}.")
    n = delta.shape[0]
    if n == 0:
        raise ValueError("no successful records: susceptibility needs at least one perturbation.")
    size = np.abs(delta)
    total = size.sum(0)
    count = (size != 0).sum(0)
    gmp = size.max(0)
    gap = total / n
    gpp = count / n
    with np.errstate(invalid="ignore", divide="ignore"):
        ganzp = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        sensitivity = np.where(count > 0, gpp / ganzp, 0.0)
    metrics = {"GMP": gmp, "GAP": gap, "GPP": gpp, "S": gmp * gpp, "GANZP": ganzp, "sensitivity": sensitivity}
    return {name: value.T for name, value in metrics.items()}


def cumulative_susceptibility(s: np.ndarray) -> np.ndarray:
    """S_j = Σ_t S(j, t) of an (F, T) score table."""
    return np.asarray(s).sum(1)


def susceptibility_table(delta: np.ndarray, label: np.ndarray, success: np.ndarray,
                         feature_names: Sequence[str]) -> pd.DataFrame:
    """Every metric per direction, feature and hour, over the successful records of each direction.

    Long format: direction, metric, feature, hour, value, plus n_records (the N of that direction).
    A direction without successful records has no rows.
    """
    delta = np.asarray(delta)
    success = np.asarray(success, dtype=bool)
    direction = direction_of(label)
    if delta.shape[2] != len(feature_names):
        raise ValueError(f"δ has {delta.shape[2]} features but {len(feature_names)} feature names were given.")
    hours = np.arange(delta.shape[1])
    frames = []
    for name in DIRECTIONS.values():
        chosen = success & (direction == name)
        if not chosen.any():
            continue
        for metric, table in susceptibility(delta[chosen]).items():
            frame = pd.DataFrame(table, index=pd.Index(feature_names, name="feature"), columns=hours)
            frame = frame.rename_axis(columns="hour").stack(future_stack=True).rename("value").reset_index()
            frame.insert(0, "metric", metric)
            frame.insert(0, "direction", name)
            frame["n_records"] = int(chosen.sum())
            frames.append(frame)
    columns = ["direction", "metric", "feature", "hour", "value", "n_records"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(columns, ["string", "string", "string", "int64", "float64", "int64"], strict=True)})
    return pd.concat(frames, ignore_index=True)[columns]


def metric_grid(table: pd.DataFrame, direction: str, metric: str) -> pd.DataFrame:
    """One (F × T) grid, features as rows and hours as columns, from the long table."""
    rows = table[(table["direction"] == direction) & (table["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no {metric} rows for direction {direction!r} in the susceptibility table.")
    features = list(dict.fromkeys(rows["feature"]))
    return rows.pivot(index="feature", columns="hour", values="value").loc[features]


def cumulative_ranking(table: pd.DataFrame) -> pd.DataFrame:
    """Per direction, features ranked by cumulative S_j (rank 1 = most susceptible)."""
    scores = (table[table["metric"] == "S"].groupby(["direction", "feature"], sort=False)["value"]
              .sum().rename("cumulative_s").reset_index())
    scores["rank"] = scores.groupby("direction")["cumulative_s"].rank(ascending=False, method="min").astype("int64")
    return scores.sort_values(["direction", "rank", "feature"], ignore_index=True)


def top_features(scores: pd.Series, k: int) -> list[str]:
    """The k highest-scoring features of `scores` (indexed by feature), ties in alphabetical order."""
    return list(scores.sort_index().sort_values(ascending=False, kind="stable").index[:k])


def ranking_agreement(a: pd.Series, b: pd.Series, top_k: int) -> dict[str, Any]:
    """How far two susceptibility rankings of the same features agree (scores indexed by feature).

    spearman / kendall: rank correlations of the scores with their p-values (NaN when either ranking
    is constant). Top-k overlap, the one definition used in every report: the number of features among
    the k highest-scoring of `a` that are also among the k highest of `b`, with k = min(top_k, number of
    features) and ties broken alphabetically; it lies in 0..k.
    """
    if int(top_k) < 1:
        raise ValueError(f"top_k is {top_k}; it must be ≥ 1")
    if set(a.index) != set(b.index):
        raise ValueError(f"the rankings cover different features: only in the first {sorted(set(a.index) - set(b.index))[:5]}, "
                         f"only in the second {sorted(set(b.index) - set(a.index))[:5]}")
    b = b.loc[a.index]
    if a.nunique() < 2 or b.nunique() < 2:
        rho = rho_p = tau = tau_p = float("nan")
    else:
        rho, rho_p = (float(v) for v in stats.spearmanr(a.to_numpy(), b.to_numpy()))
        tau, tau_p = (float(v) for v in stats.kendalltau(a.to_numpy(), b.to_numpy()))
    k = min(int(top_k), len(a))
    top_a, top_b = top_features(a, k), top_features(b, k)
    return {"n_features": len(a), "spearman": rho, "spearman_p": rho_p, "kendall": tau, "kendall_p": tau_p,
            "top_k": k, "top_k_overlap": len(set(top_a) & set(top_b)), "top_a": top_a, "top_b": top_b}
