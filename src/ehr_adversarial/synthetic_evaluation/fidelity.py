"""Fidelity: how closely synthetic records follow the real (training) distribution.

Every function takes the real table first and the synthetic one second (flat views,
see flat_view.py, or arrays for the time-series ones) and refuses tables whose columns
differ. Ideal values: KS 0, Pearson r 1, correlation distance 0, MMD² 0, ACF
difference 0, discriminator AUC 0.5 for every detector family and every per-column detector
(and 0.5 for every separating column).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ehr_adversarial.synthesis.lattice import hourly_jaccard

from .flat_view import align_columns, to_matrix

logger = logging.getLogger(__name__)


def variable_statistics(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """Per column: mean, std and NaN rate of both tables, and the two-sample KS statistic.

    The time-series missing rate has its own `<feature>.missing_rate` columns; the NaN
    rate here counts cells the table itself lacks (e.g. a generator emitting NaN).
    """
    synthetic = align_columns(real, synthetic)
    r, s = real.to_numpy(np.float64), synthetic.to_numpy(np.float64)
    with np.errstate(all="ignore"):
        ks = stats.ks_2samp(r, s, axis=0, nan_policy="omit", method="asymp")
        table = pd.DataFrame(
            {
                "variable": real.columns,
                "mean_real": np.nanmean(r, axis=0),
                "mean_synthetic": np.nanmean(s, axis=0),
                "std_real": np.nanstd(r, axis=0),
                "std_synthetic": np.nanstd(s, axis=0),
                "nan_rate_real": np.isnan(r).mean(axis=0),
                "nan_rate_synthetic": np.isnan(s).mean(axis=0),
                "ks_statistic": np.asarray(ks.statistic, dtype=np.float64),
                "ks_pvalue": np.asarray(ks.pvalue, dtype=np.float64),
            }
        )
    return table


def dimension_wise_pearson(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """Pearson r between the per-column means of both tables (for 0/1 columns: prevalences)."""
    synthetic = align_columns(real, synthetic)
    means_real = np.nanmean(real.to_numpy(np.float64), axis=0)
    means_synthetic = np.nanmean(synthetic.to_numpy(np.float64), axis=0)
    keep = np.isfinite(means_real) & np.isfinite(means_synthetic)
    if keep.sum() < 2 or np.ptp(means_real[keep]) == 0 or np.ptp(means_synthetic[keep]) == 0:
        logger.warning("dimension-wise Pearson r is undefined: fewer than 2 varying column means")
        return float("nan")
    return float(stats.pearsonr(means_real[keep], means_synthetic[keep]).statistic)


def _correlation_matrix(values: np.ndarray) -> np.ndarray:
    """Pearson correlations between columns; a constant column correlates 0 with the others."""
    centred = values - values.mean(axis=0)
    scale = np.sqrt((centred**2).sum(axis=0))
    scale[scale == 0] = np.inf
    unit = centred / scale
    corr = unit.T @ unit
    np.fill_diagonal(corr, 1.0)
    return corr


def correlation_distance(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    """Distance between the column-correlation matrices: Frobenius norm and mean |Δ|.

    mean |Δ| averages the off-diagonal pairs (each once), so it is comparable across
    tables of different width; the Frobenius norm is ‖C_real − C_synthetic‖_F.
    """
    synthetic_values = to_matrix(synthetic, real)
    difference = _correlation_matrix(to_matrix(real, real)) - _correlation_matrix(synthetic_values)
    upper = np.triu_indices(difference.shape[0], k=1)
    return {
        "frobenius": float(np.linalg.norm(difference)),
        "mean_abs_diff": float(np.abs(difference[upper]).mean()) if upper[0].size else 0.0,
    }


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, gamma: float, chunk: int) -> float:
    """Σ_ij exp(−γ‖a_i − b_j‖²), computed in row blocks so memory stays at chunk × len(b)."""
    total = 0.0
    for start in range(0, a.shape[0], chunk):
        total += torch.exp(-gamma * torch.cdist(a[start : start + chunk], b).square()).sum().item()
    return total


def median_heuristic_gamma(values: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """γ = 1 / (2 σ²) with σ the median pairwise distance of (a sample of) `values`."""
    rng = np.random.default_rng(seed)
    sample = values[rng.choice(len(values), size=min(max_points, len(values)), replace=False)]
    distances = torch.pdist(torch.as_tensor(sample, dtype=torch.float64))
    sigma = float(distances.median()) if distances.numel() else 0.0
    return 1.0 / (2.0 * sigma**2) if sigma > 0 else 1.0


def mmd_rbf(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    max_records: int | None = 5000,
    seed: int = 0,
    chunk: int = 1024,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Unbiased MMD² with an RBF kernel whose bandwidth is the median heuristic on the pooled data.

    Each side is subsampled to `max_records` (None = all). Returns mmd2 and the γ used.
    Identical or same-distribution tables give ≈ 0 (the unbiased estimate can dip just
    below 0); the further apart the distributions, the closer to 2.
    """
    r_values, s_values = to_matrix(real, real), to_matrix(synthetic, real)
    rng = np.random.default_rng(seed)
    if max_records is not None:
        r_values = r_values[rng.permutation(len(r_values))[:max_records]]
        s_values = s_values[rng.permutation(len(s_values))[:max_records]]
    n, m = len(r_values), len(s_values)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 records on each side; got {n} real and {m} synthetic")
    gamma = median_heuristic_gamma(np.concatenate([r_values, s_values]), seed=seed)
    a = torch.as_tensor(r_values, dtype=torch.float64, device=device)
    b = torch.as_tensor(s_values, dtype=torch.float64, device=device)
    # k(x, x) = 1, so dropping the diagonal from Σ K_xx subtracts n.
    k_rr = (_kernel_sum(a, a, gamma, chunk) - n) / (n * (n - 1))
    k_ss = (_kernel_sum(b, b, gamma, chunk) - m) / (m * (m - 1))
    k_rs = _kernel_sum(a, b, gamma, chunk) / (n * m)
    return {"mmd2": float(k_rr + k_ss - 2.0 * k_rs), "gamma": gamma, "n_real": n, "n_synthetic": m}


def autocorrelation(x: np.ndarray, lags: Sequence[int]) -> np.ndarray:
    """Mean autocorrelation per lag and feature, (len(lags), F), of x (records, time, features).

    Each record's series is centred on its own mean; the lag-k autocorrelation is
    Σ_t c_t c_{t+k} / Σ_t c_t². Constant series (no variation: undefined ACF) are left
    out of the mean over records.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"autocorrelation needs (records, time, features); got shape {x.shape}")
    if any(not 0 < lag < x.shape[1] for lag in lags):
        raise ValueError(f"lags {list(lags)} must lie in 1..{x.shape[1] - 1} for {x.shape[1]} time steps")
    centred = x - x.mean(axis=1, keepdims=True)
    energy = (centred**2).sum(axis=1)
    varying = energy > 1e-12 * x.shape[1]
    result = np.full((len(lags), x.shape[2]), np.nan)
    for i, lag in enumerate(lags):
        products = (centred[:, :-lag, :] * centred[:, lag:, :]).sum(axis=1)
        acf = np.where(varying, products / np.where(varying, energy, 1.0), np.nan)
        counts = varying.sum(axis=0)
        result[i] = np.where(counts > 0, np.nansum(acf, axis=0) / np.maximum(counts, 1), np.nan)
    return result


def autocorrelation_difference(
    real_x: np.ndarray, synthetic_x: np.ndarray, lags: Sequence[int], feature_names: Sequence[str]
) -> dict[str, object]:
    """|ACF_real − ACF_synthetic| per lag: mean over features, and per feature."""
    if real_x.shape[1:] != synthetic_x.shape[1:]:
        raise ValueError(
            f"real X has shape (·, {real_x.shape[1]}, {real_x.shape[2]}) and synthetic X "
            f"(·, {synthetic_x.shape[1]}, {synthetic_x.shape[2]}); hours and features must match"
        )
    if len(feature_names) != real_x.shape[2]:
        raise ValueError(f"{len(feature_names)} feature names for {real_x.shape[2]} features")
    real_acf, synthetic_acf = autocorrelation(real_x, lags), autocorrelation(synthetic_x, lags)
    difference = np.abs(real_acf - synthetic_acf)
    with np.errstate(all="ignore"):
        per_lag = np.nanmean(np.where(np.isnan(difference), np.nan, difference), axis=1)
    return {
        "lags": [int(lag) for lag in lags],
        "mean_abs_diff_per_lag": [float(v) for v in per_lag],
        "mean_abs_diff": float(np.nanmean(difference)) if np.isfinite(difference).any() else float("nan"),
        "per_feature": {
            name: {
                "real": [float(v) for v in real_acf[:, j]],
                "synthetic": [float(v) for v in synthetic_acf[:, j]],
            }
            for j, name in enumerate(feature_names)
        },
    }


DETECTOR_FAMILIES = ("gbm", "logistic_regression", "mlp")


def detector(family: str, seed: int = 0) -> ClassifierMixin:
    """A fresh, seeded real-vs-synthetic classifier of `family`.

    gbm: sklearn's HistGradientBoostingClassifier with its defaults (sees thresholds, lattices
    and interactions); logistic_regression: standardised columns, L2 (C = 1), a linear boundary;
    mlp: standardised columns, one hidden layer of 64 ReLU units, L2 1e-3, Adam, early stopping
    on 10 % of the training fold.
    """
    if family == "gbm":
        return HistGradientBoostingClassifier(random_state=seed)
    if family == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if family == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier(
            hidden_layer_sizes=(64,), alpha=1e-3, early_stopping=True, max_iter=200, random_state=seed))
    raise ValueError(f"unknown detector family {family!r}; choose from {list(DETECTOR_FAMILIES)}")


def _detection_sample(
    real: pd.DataFrame, synthetic: pd.DataFrame, n_splits: int, max_records: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]], int]:
    """Both sides subsampled to one size n (at most max_records), labels (real 1), and the folds.

    Records that occur identically on both sides share a fold: otherwise a classifier would learn
    a copied record's twin under the opposite label and score far below 0.5.
    """
    r_values, s_values = to_matrix(real, real), to_matrix(synthetic, real)
    rng = np.random.default_rng(seed)
    n = min(len(r_values), len(s_values), max_records or np.inf)
    if n < n_splits:
        raise ValueError(f"the discriminator needs ≥ {n_splits} records per side; got {n}")
    n = int(n)
    values = np.concatenate(
        [r_values[rng.permutation(len(r_values))[:n]], s_values[rng.permutation(len(s_values))[:n]]]
    )
    is_real = np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]
    _, same_record = np.unique(values, axis=0, return_inverse=True)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return values, is_real, list(folds.split(values, is_real, groups=same_record.ravel())), n


def _cross_validated_auc(
    make: Callable[[], ClassifierMixin], values: np.ndarray, is_real: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]]
) -> tuple[float, float]:
    """Mean and standard deviation over the folds of the held-out AUROC of `make()` models."""
    aucs = []
    for train_index, test_index in splits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = make().fit(values[train_index], is_real[train_index])
        aucs.append(roc_auc_score(is_real[test_index], model.predict_proba(values[test_index])[:, 1]))
    return float(np.mean(aucs)), float(np.std(aucs))


def co_measurement(real_mask: np.ndarray, synthetic_mask: np.ndarray, feature_names: Sequence[str],
                   top: int = 5) -> dict[str, Any]:
    """Which variables are measured together: the Jaccard index of every pair's observed hourly cells (pooled over
    records) in real and synthetic masks. `mean_abs_diff` over the pairs, and the `top` pairs real data measures
    together most, each with both indices (BUN and creatinine: 0.99 in PhysioNet 2012's train split)."""
    real, synthetic = hourly_jaccard(real_mask), hourly_jaccard(synthetic_mask)
    upper = np.triu_indices(len(feature_names), k=1)
    order = np.argsort(-real[upper], kind="stable")[:top]
    return {
        "mean_abs_diff": float(np.abs(real[upper] - synthetic[upper]).mean()) if upper[0].size else float("nan"),
        "pairs": [{"pair": f"{feature_names[upper[0][i]]}/{feature_names[upper[1][i]]}",
                   "real": float(real[upper][i]), "synthetic": float(synthetic[upper][i])} for i in order],
    }


def discriminator_auc(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    n_splits: int = 5,
    max_records: int | None = 5000,
    seed: int = 0,
    family: str = "gbm",
) -> dict[str, float]:
    """Cross-validated AUROC of a `family` classifier (see detector) telling real (1) from synthetic (0) records.

    Both sides are subsampled to the same size (at most `max_records`). 0.5 means the
    classifier cannot tell them apart; 1.0 means every synthetic record is recognisable.
    Records that occur identically on both sides share a fold (see _detection_sample).
    """
    values, is_real, splits, n = _detection_sample(real, synthetic, n_splits, max_records, seed)
    auc, auc_std = _cross_validated_auc(lambda: detector(family, seed), values, is_real, splits)
    return {"auc": auc, "auc_std": auc_std, "n_per_side": n}


def detector_aucs(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    families: Sequence[str] = DETECTOR_FAMILIES,
    n_splits: int = 5,
    max_records: int | None = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """discriminator_auc of every family in `families`, on one subsample with the same folds:
    {"families": {family: {"auc", "auc_std"}}, "n_per_side"}."""
    unknown = sorted(set(families) - set(DETECTOR_FAMILIES))
    if unknown or not families:
        raise ValueError(f"detector families {list(families)}: choose one or more of {list(DETECTOR_FAMILIES)}")
    values, is_real, splits, n = _detection_sample(real, synthetic, n_splits, max_records, seed)
    result = {}
    for family in families:
        auc, auc_std = _cross_validated_auc(lambda family=family: detector(family, seed), values, is_real, splits)
        result[family] = {"auc": auc, "auc_std": auc_std}
    return {"families": result, "n_per_side": n}


def per_column_detectors(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    top: int | None = 10,
    n_splits: int = 3,
    max_records: int | None = 2000,
    max_iter: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """Per column, the cross-validated AUROC of gradient boosting on that column alone: the
    columns that give the synthetic records away, `top` of them (None = all), highest AUC first.

    A one-column GBM bins the column (exact values where it takes at most 255 of them) and learns
    which bins are real, so it sees what a rank test cannot: real values on a lattice or a point
    mass (GCS levels, a gap fill, winsorised bounds, a binary column) against continuous
    synthetic ones in the same range. Each row also has the folded Mann–Whitney AUC of the raw
    values (what separating_columns reports; ≈ 0.5 for such a difference), the number of distinct
    values on each side of the subsample, the most common real value and the share of each side
    that sits exactly on it. Both sides are subsampled to the same size (at most `max_records`),
    with the folds of discriminator_auc; a column constant on both sides scores 0.5 without a fit.
    """
    values, is_real, splits, n = _detection_sample(real, synthetic, n_splits, max_records, seed)
    rows = []
    with threadpool_limits(limits=1):  # thousands of tiny fits: threads only contend
        for j, column in enumerate(real.columns):
            x = values[:, j : j + 1]
            r, s = x[is_real == 1, 0], x[is_real == 0, 0]
            if np.ptp(x) == 0:
                auc = 0.5
            else:
                auc, _ = _cross_validated_auc(
                    lambda: HistGradientBoostingClassifier(max_iter=max_iter, early_stopping=False, random_state=seed),
                    x, is_real, splits)
            rank = roc_auc_score(is_real, x[:, 0]) if np.ptp(x) > 0 else 0.5
            levels, counts = np.unique(r, return_counts=True)
            mode = levels[np.argmax(counts)]
            rows.append({
                "column": column, "auc": auc, "mann_whitney_auc": float(max(rank, 1.0 - rank)),
                "real_distinct": int(levels.size), "synthetic_distinct": int(np.unique(s).size),
                "real_mode": float(mode), "real_mode_share": float(np.mean(r == mode)),
                "synthetic_share_at_real_mode": float(np.mean(s == mode)),
                "real_median": float(np.median(r)), "synthetic_median": float(np.median(s)),
            })
    rows.sort(key=lambda row: -row["auc"])
    return {"columns": rows if top is None else rows[:top], "n_per_side": n, "n_columns": len(rows),
            "max_auc": rows[0]["auc"] if rows else None}


def column_kind(column: str) -> str:
    """The kind of a flat-view column (flat_view.py): `static`, `code`, `label`, or the summary after the
    feature's name (`mean`, `std`, `min`, `max`, `last`, `missing_rate`)."""
    if column.startswith(("static.", "code.")):
        return column.split(".", 1)[0]
    return column.rsplit(".", 1)[-1] if "." in column else column


def per_group_detectors(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    n_splits: int = 3,
    max_records: int | None = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per kind of column (column_kind), the cross-validated AUROC of the `gbm` detector on all columns
    of that kind together, highest first: {"groups": [{"group", "n_columns", "auc"}], "n_per_side"}.

    Between the one-column detectors and the detector on every column: when each missing-rate column
    alone is near 0.5 and all of them together are near 1, the giveaway is how the variables are
    measured together (labs drawn at the same hours, a blood pressure's three values at once), not
    how often each one is. Same subsample and folds as per_column_detectors.
    """
    values, is_real, splits, n = _detection_sample(real, synthetic, n_splits, max_records, seed)
    kinds: dict[str, list[int]] = {}
    for j, column in enumerate(real.columns):
        kinds.setdefault(column_kind(column), []).append(j)
    groups = []
    for kind, columns in kinds.items():
        x = values[:, columns]
        auc = 0.5 if np.ptp(x, axis=0).max() == 0 else _cross_validated_auc(lambda: detector("gbm", seed), x, is_real, splits)[0]
        groups.append({"group": kind, "n_columns": len(columns), "auc": auc})
    groups.sort(key=lambda group: -group["auc"])
    return {"groups": groups, "n_per_side": n}


def discriminator_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None = None,
    families: Sequence[str] = DETECTOR_FAMILIES,
    n_splits: int = 5,
    max_records: int | None = 5000,
    per_column_top: int | None = 10,
    per_column_folds: int = 3,
    per_column_max_records: int | None = 2000,
    per_column_max_iter: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything that says whether, and by what, synthetic records are told from real ones.

    - `auc`, `auc_std`, `n_per_side`: the first family's detector (gbm by default);
    - `families`: detector_aucs of every family;
    - `floor`: detector_aucs of `holdout` (real records the generator never saw) against `real`,
      the same families and settings: what each family scores on real against real (≈ 0.5; its
      spread is the noise of the sample size). None without a holdout;
    - `per_column`: per_column_detectors, the columns that give the synthetic records away;
    - `per_group`: per_group_detectors, the kinds of column that do (with the per-column settings).
    """
    detected = detector_aucs(real, synthetic, families, n_splits, max_records, seed)
    first = detected["families"][families[0]]
    floor = None
    if holdout is not None:
        floor = detector_aucs(real, align_columns(real, holdout, "holdout"), families, n_splits, max_records, seed)
    return {
        "auc": first["auc"], "auc_std": first["auc_std"], "n_per_side": detected["n_per_side"],
        "families": detected["families"],
        "floor": floor,
        "per_column": per_column_detectors(real, synthetic, per_column_top, per_column_folds, per_column_max_records,
                                           per_column_max_iter, seed),
        "per_group": per_group_detectors(real, synthetic, per_column_folds, per_column_max_records, seed),
    }


def separating_columns(real: pd.DataFrame, synthetic: pd.DataFrame, top: int = 10) -> list[dict[str, float | str]]:
    """The `top` columns that alone best tell real from synthetic records: what gives the data away.

    Per column, the AUROC of its raw value as a real-vs-synthetic score (the Mann–Whitney
    statistic), folded to max(AUC, 1 − AUC) so that 0.5 means indistinguishable and 1.0 means
    disjoint ranges; `real_median` and `synthetic_median` say in which direction it differs.
    A rank statistic sees shifts, not form: continuous synthetic values spread over a real
    column's lattice or point mass score ≈ 0.5 here; per_column_detectors sees those. A
    discriminator AUC near 1.0 with every column near 0.5 here and in per_column_detectors is a
    multivariate difference.
    """
    synthetic = align_columns(real, synthetic)
    is_real = np.r_[np.ones(len(real), dtype=int), np.zeros(len(synthetic), dtype=int)]
    r_values, s_values = to_matrix(real, real), to_matrix(synthetic, real)
    rows = []
    for j, column in enumerate(real.columns):
        auc = roc_auc_score(is_real, np.r_[r_values[:, j], s_values[:, j]])
        rows.append({"column": column, "auc": float(max(auc, 1.0 - auc)),
                     "real_median": float(np.median(r_values[:, j])), "synthetic_median": float(np.median(s_values[:, j]))})
    return sorted(rows, key=lambda row: -row["auc"])[:top]
