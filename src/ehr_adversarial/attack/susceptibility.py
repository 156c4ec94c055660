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

A feature whose S_j is below SUSCEPTIBLE_TOLERANCE is *not susceptible*: the attack barely touched it, and
ranking such features among themselves would order noise (many are exactly 0 and tie). Rankings are over
the susceptible features only, ties sharing the average rank. `bootstrap_susceptibility` gives every S_j,
rank and S_t a percentile CI over records; `split_half_agreement` compares disjoint halves of the records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

METRICS = ("GMP", "GAP", "GPP", "S", "GANZP", "sensitivity")
# S_j below this is "not susceptible" (scaled units: e.g. one cell moved by 10 % of the feature's p05–p95
# range in 1 % of the records, at a single hour, gives 1e-3).
SUSCEPTIBLE_TOLERANCE = 1e-3
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


def susceptible_tolerance(attack: Mapping[str, Any] | None) -> float:
    """`attack.<source>.susceptible_tolerance`, or SUSCEPTIBLE_TOLERANCE when the block does not set it."""
    return float((attack or {}).get("susceptible_tolerance", SUSCEPTIBLE_TOLERANCE))


def rank_susceptible(scores: pd.Series, tolerance: float = SUSCEPTIBLE_TOLERANCE) -> pd.Series:
    """Rank 1 = most susceptible, over the scores ≥ `tolerance` only (average ranks for ties); NaN below it."""
    susceptible = scores >= tolerance
    ranks = pd.Series(np.nan, index=scores.index)
    ranks[susceptible] = scores[susceptible].rank(ascending=False, method="average")
    return ranks


def cumulative_ranking(table: pd.DataFrame, tolerance: float = SUSCEPTIBLE_TOLERANCE) -> pd.DataFrame:
    """Per direction, features ranked by cumulative S_j (rank 1 = most susceptible, ties share the average
    rank); `susceptible` is S_j ≥ `tolerance`, and only susceptible features have a rank (NaN otherwise)."""
    scores = (table[table["metric"] == "S"].groupby(["direction", "feature"], sort=False)["value"]
              .sum().rename("cumulative_s").reset_index())
    scores["susceptible"] = scores["cumulative_s"] >= tolerance
    scores["rank"] = scores.groupby("direction")["cumulative_s"].transform(rank_susceptible, tolerance=tolerance)
    return scores.sort_values(["direction", "rank", "cumulative_s", "feature"], ascending=[True, True, False, True],
                              na_position="last", ignore_index=True)


def _cumulative_s(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S_j (F,) and S_t = Σ_j S(j, t) (T,) of (N, T, F) perturbations."""
    size = np.abs(delta)
    s = size.max(0) * (size != 0).mean(0)  # GMP · GPP, (T, F)
    return s.sum(0), s.sum(1)


def bootstrap_susceptibility(
    delta: np.ndarray, label: np.ndarray, success: np.ndarray, feature_names: Sequence[str],
    n_bootstrap: int = 200, seed: int = 0, confidence: float = 0.95, tolerance: float = SUSCEPTIBLE_TOLERANCE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Percentile-bootstrap CIs over the successful records of each direction (records drawn with replacement).

    Returns (features, hours). features: direction, feature, cumulative_s, ci_low, ci_high, susceptible,
    rank (average rank among the susceptible), rank_ci_low, rank_ci_high (a not-susceptible draw ranks below
    every susceptible feature: the mean rank of the not-susceptible block), share_susceptible (share of draws
    where S_j ≥ tolerance), n_records. hours: direction, hour, s_t, ci_low, ci_high, n_records.
    """
    delta, success = np.asarray(delta, dtype=np.float64), np.asarray(success, dtype=bool)
    direction = direction_of(label)
    names = [str(n) for n in feature_names]
    tail = (1.0 - confidence) / 2.0 * 100.0
    rng = np.random.default_rng(seed)
    feature_rows, hour_rows = [], []
    for name in DIRECTIONS.values():
        chosen = delta[success & (direction == name)]
        n = chosen.shape[0]
        if n == 0:
            continue
        point_s, point_t = _cumulative_s(chosen)
        point_rank = rank_susceptible(pd.Series(point_s), tolerance).to_numpy()
        draws_s, draws_t, draws_rank = [], [], []
        for _ in range(int(n_bootstrap)):  # one resample of records per draw
            s_j, s_t = _cumulative_s(chosen[rng.integers(0, n, n)])
            draws_s.append(s_j)
            draws_t.append(s_t)
            susceptible = s_j >= tolerance
            ranks = rank_susceptible(pd.Series(s_j), tolerance).to_numpy(copy=True)
            # the not-susceptible features share the places below the susceptible ones
            ranks[~susceptible] = susceptible.sum() + (1 + (~susceptible).sum()) / 2.0
            draws_rank.append(ranks)
        if n_bootstrap > 0:
            draws_s, draws_t, draws_rank = np.array(draws_s), np.array(draws_t), np.array(draws_rank)
            s_low, s_high = np.percentile(draws_s, [tail, 100 - tail], axis=0)
            r_low, r_high = np.percentile(draws_rank, [tail, 100 - tail], axis=0)
            t_low, t_high = np.percentile(draws_t, [tail, 100 - tail], axis=0)
        else:  # point estimates only
            draws_s = np.full((1, point_s.size), np.nan)
            s_low = s_high = r_low = r_high = np.full(point_s.size, np.nan)
            t_low = t_high = np.full(point_t.size, np.nan)
        for j, feature in enumerate(names):
            feature_rows.append({
                "direction": name, "feature": feature, "cumulative_s": point_s[j], "ci_low": s_low[j],
                "ci_high": s_high[j], "susceptible": bool(point_s[j] >= tolerance), "rank": point_rank[j],
                "rank_ci_low": r_low[j], "rank_ci_high": r_high[j],
                "share_susceptible": float((draws_s[:, j] >= tolerance).mean()) if n_bootstrap > 0 else np.nan,
                "n_records": n})
        hour_rows += [{"direction": name, "hour": t, "s_t": point_t[t], "ci_low": t_low[t], "ci_high": t_high[t],
                       "n_records": n} for t in range(point_t.size)]
    features = pd.DataFrame(feature_rows, columns=BOOTSTRAP_FEATURE_COLUMNS)
    if len(features):
        features = features.sort_values(["direction", "rank", "cumulative_s", "feature"],
                                        ascending=[True, True, False, True], na_position="last", ignore_index=True)
    return features, pd.DataFrame(hour_rows, columns=BOOTSTRAP_HOUR_COLUMNS)


BOOTSTRAP_FEATURE_COLUMNS = ["direction", "feature", "cumulative_s", "ci_low", "ci_high", "susceptible", "rank",
                             "rank_ci_low", "rank_ci_high", "share_susceptible", "n_records"]
BOOTSTRAP_HOUR_COLUMNS = ["direction", "hour", "s_t", "ci_low", "ci_high", "n_records"]
SPLIT_HALF_COLUMNS = ["direction", "n_records", "n_per_half", "n_splits", "spearman_median", "spearman_low",
                      "spearman_high", "top_k", "top_k_overlap_mean", "top_k_overlap_min", "enough_records"]


def susceptible_scores(scores: pd.Series, tolerance: float = SUSCEPTIBLE_TOLERANCE) -> pd.Series:
    """S_j with the not-susceptible scores (below `tolerance`) set to 0, so that they tie at the bottom of a
    ranking instead of ordering noise."""
    return scores.where(scores >= tolerance, 0.0)


def split_half_agreement(
    delta: np.ndarray, label: np.ndarray, success: np.ndarray, feature_names: Sequence[str],
    n_splits: int = 50, seed: int = 0, top_k: int = 5, min_per_half: int = 25,
    tolerance: float = SUSCEPTIBLE_TOLERANCE,
) -> pd.DataFrame:
    """How far the S_j ranking depends on the records: per direction, `n_splits` random splits of the
    successful records into two disjoint halves, the Spearman ρ and top-k overlap of the halves' S_j
    (S_j below `tolerance` counts as 0: the not-susceptible features tie at the bottom).

    Columns: SPLIT_HALF_COLUMNS; spearman_low/high are the 5th/95th percentiles over splits. A direction with
    fewer than `min_per_half` records per half has enough_records False and no coefficients.
    """
    delta, success = np.asarray(delta, dtype=np.float64), np.asarray(success, dtype=bool)
    direction = direction_of(label)
    names = [str(n) for n in feature_names]
    rng = np.random.default_rng(seed)
    rows = []
    for name in DIRECTIONS.values():
        chosen = delta[success & (direction == name)]
        n, half = chosen.shape[0], chosen.shape[0] // 2
        if n == 0:
            continue
        row = {"direction": name, "n_records": n, "n_per_half": half, "n_splits": 0, "top_k": min(top_k, len(names)),
               "enough_records": half >= min_per_half}
        if half >= min_per_half:
            rhos, overlaps = [], []
            for _ in range(int(n_splits)):
                order = rng.permutation(n)
                a = susceptible_scores(pd.Series(_cumulative_s(chosen[order[:half]])[0], index=names), tolerance)
                b = susceptible_scores(pd.Series(_cumulative_s(chosen[order[half:2 * half]])[0], index=names),
                                       tolerance)
                agreement = ranking_agreement(a, b, top_k)
                rhos.append(agreement["spearman"])
                overlaps.append(agreement["top_k_overlap"])
            rhos = np.asarray(rhos, dtype=float)
            rhos = rhos[np.isfinite(rhos)]  # a constant half (nothing susceptible) has no ρ
            row.update({"n_splits": int(n_splits),
                        **dict(zip(("spearman_median", "spearman_low", "spearman_high"),
                                   np.percentile(rhos, [50, 5, 95]) if rhos.size else [np.nan] * 3, strict=True)),
                        "top_k_overlap_mean": float(np.mean(overlaps)), "top_k_overlap_min": int(np.min(overlaps))})
        rows.append(row)
    return pd.DataFrame(rows, columns=SPLIT_HALF_COLUMNS)


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
