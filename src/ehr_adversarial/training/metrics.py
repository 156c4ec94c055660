"""Binary-classification metrics with 95 % bootstrap confidence intervals.

Point estimates come from scikit-learn. The bootstrap resamples records with
replacement (`n_bootstrap` times, a fixed seed) and reports the 2.5th and 97.5th
percentiles of each metric; replicates that draw a single class are dropped for
AUROC/AUPRC (undefined there) and counted in `n_valid`. Per replicate the metrics
are computed for all replicates at once with numpy, by the same definitions as
scikit-learn's roc_auc_score (ties count 1/2) and average_precision_score (tied
scores form one threshold); tests check the two agree.

Threshold: min(Se, PPV), F1, precision and recall need a decision threshold on P(death).
`choose_threshold` picks it on held-out predictions that are not the test set (validation or
out-of-fold), by one of THRESHOLD_RULES: `min_se_ppv` (default) maximises min(sensitivity, PPV)
there, the challenge's own score; `f1` maximises F1. The test metrics use that fixed threshold.
AUROC, AUPRC and Brier do not depend on it.

`min_se_ppv` is the score of event 1 of the PhysioNet/CinC Challenge 2012: min(sensitivity, positive
predictive value) at the threshold, i.e. min(recall, precision). `hosmer_lemeshow` is the calibration
statistic H of event 2 (deciles of predicted risk).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import chi2, rankdata
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

METRICS = ("auroc", "auprc", "min_se_ppv", "f1", "precision", "recall", "brier")
# What the decision threshold maximises on the held-out predictions it is chosen on.
THRESHOLD_RULES = {"min_se_ppv": "min(Se, PPV)", "f1": "F1"}


def _check(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_prob = np.asarray(y_prob, dtype=np.float64).ravel()
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_prob {y_prob.size} probabilities")
    if not np.isfinite(y_prob).all() or (y_prob < 0).any() or (y_prob > 1).any():
        raise ValueError("y_prob must hold finite probabilities in [0, 1]")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, got {sorted(set(np.unique(y_true)) - {0, 1})[:5]}")
    if y_true.min() == y_true.max():
        raise ValueError(
            f"all {y_true.size} labels are {y_true[0]}: AUROC/AUPRC need both classes in the split"
        )
    return y_true, y_prob


def choose_threshold(y_true: np.ndarray, y_prob: np.ndarray, rule: str = "min_se_ppv") -> float:
    """The probability threshold that maximises `rule` (THRESHOLD_RULES) on these held-out predictions;
    among equal scores the lowest threshold."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule is {rule!r}; use one of {', '.join(THRESHOLD_RULES)}")
    y_true, y_prob = _check(y_true, y_prob)
    precision, recall, thresholds = precision_recall_curve(y_true, y_prob)
    if rule == "f1":
        score = np.divide(2 * precision * recall, precision + recall,
                          out=np.zeros_like(precision), where=(precision + recall) > 0)
    else:
        score = np.minimum(precision, recall)
    # the last (precision, recall) pair has no threshold
    return float(thresholds[int(np.argmax(score[:-1]))])


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float) -> dict[str, float]:
    """AUROC, AUPRC (average precision), F1, precision, recall (at `threshold`) and Brier score."""
    y_true, y_prob = _check(y_true, y_prob)
    y_pred = (y_prob >= threshold).astype(np.int64)
    precision = float(precision_score(y_true, y_pred, zero_division=0))
    recall = float(recall_score(y_true, y_pred, zero_division=0))
    return {
        "auroc": float(roc_auc_score(y_true, y_prob)),
        "auprc": float(average_precision_score(y_true, y_prob)),
        "min_se_ppv": min(precision, recall),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "precision": precision,
        "recall": recall,
        "brier": float(brier_score_loss(y_true, y_prob)),
    }


def hosmer_lemeshow(y_true: np.ndarray, y_prob: np.ndarray, groups: int = 10) -> dict[str, float]:
    """Hosmer–Lemeshow H over `groups` groups of equal size by predicted risk (deciles), as event 2 of
    the 2012 challenge scored calibration: H = Σ_g (O_g − E_g)² / (E_g (1 − E_g / n_g)); p from χ²(groups − 2)."""
    y_true, y_prob = _check(y_true, y_prob)
    order = np.argsort(y_prob, kind="stable")
    h = 0.0
    for members in np.array_split(order, groups):
        n, observed, expected = members.size, y_true[members].sum(), y_prob[members].sum()
        variance = expected * (1.0 - expected / n)
        if variance > 0:
            h += (observed - expected) ** 2 / variance
    return {"h": float(h), "p_value": float(chi2.sf(h, groups - 2)), "groups": groups}


def _threshold_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """F1/precision/recall for every bootstrap replicate at once (rows = replicates)."""
    tp = (y_true & y_pred).sum(axis=1)
    predicted = y_pred.sum(axis=1)
    actual = y_true.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(tp.shape), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(tp.shape), where=actual > 0)
    denominator = predicted + actual
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    return {"f1": f1, "precision": precision, "recall": recall, "min_se_ppv": np.minimum(precision, recall)}


def roc_auc_rows(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """AUROC of every row (Mann-Whitney U with mid-ranks for ties); rows need both classes."""
    ranks = rankdata(y_prob, axis=1)
    n_pos = y_true.sum(axis=1)
    n_neg = y_true.shape[1] - n_pos
    rank_sum = (ranks * y_true).sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def average_precision_rows(y_true: np.ndarray, y_prob: np.ndarray) -> np.ndarray:
    """Average precision of every row: sum over distinct thresholds of ΔRecall · Precision."""
    order = np.argsort(-y_prob, axis=1, kind="stable")
    score = np.take_along_axis(y_prob, order, axis=1)
    tp = np.cumsum(np.take_along_axis(y_true, order, axis=1), axis=1)
    predicted = np.arange(1, y_true.shape[1] + 1)
    # a threshold sits at the last record of each group of tied scores
    is_end = np.ones_like(score, dtype=bool)
    is_end[:, :-1] = score[:, 1:] != score[:, :-1]
    tp_at_ends = np.where(is_end, tp, 0)
    previous = np.zeros_like(tp)
    previous[:, 1:] = np.maximum.accumulate(tp_at_ends, axis=1)[:, :-1]
    gain = np.where(is_end, (tp - previous) * (tp / predicted), 0.0)
    return gain.sum(axis=1) / tp[:, -1]


def bootstrap_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    threshold: float,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Each metric as {"value", "ci_low", "ci_high", "n_valid"} (percentile bootstrap)."""
    y_true, y_prob = _check(y_true, y_prob)
    point = binary_metrics(y_true, y_prob, threshold)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, y_true.size, size=(n_bootstrap, y_true.size))
    true_b, prob_b = y_true[index], y_prob[index]
    replicates = _threshold_metrics(true_b.astype(bool), prob_b >= threshold)
    replicates["brier"] = ((prob_b - true_b) ** 2).mean(axis=1)
    both_classes = (true_b.min(axis=1) == 0) & (true_b.max(axis=1) == 1)
    # ranking metrics need both classes in a replicate
    replicates["auroc"] = roc_auc_rows(true_b[both_classes], prob_b[both_classes])
    replicates["auprc"] = average_precision_rows(true_b[both_classes], prob_b[both_classes])
    tail = (1.0 - confidence) / 2.0 * 100.0
    result = {}
    for name in METRICS:
        values = replicates[name]
        low, high = np.percentile(values, [tail, 100.0 - tail])
        result[name] = {
            "value": point[name],
            "ci_low": float(low),
            "ci_high": float(high),
            "n_valid": int(values.size),
        }
    return result
