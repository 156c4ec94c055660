"""Utility: does a model trained on synthetic data predict real in-hospital mortality?

TSTR (train on synthetic, test on real) against TRTR (train on real train, test on real):
the same model family, seed and settings on both sides, both scored on the REAL held-out
test split (model_input_test) that neither the generator nor the real model saw.
Confidence intervals come from a paired, class-stratified bootstrap of the test records,
so TSTR/TRTR ratios get an interval too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ehr_adversarial.features.tensorize import forward_fill, hours_since_observed
from ehr_adversarial.torch_utils import resolve_device
from ehr_adversarial.training.metrics import average_precision_rows, roc_auc_rows
from ehr_adversarial.training.torch_loop import (
    death_probability,
    predict_logits,
    to_tensors,
    train_with_monitor_split,
)

logger = logging.getLogger(__name__)


def bootstrap_indices(y: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) resamples of record indices, stratified by class: positives first.

    Stratifying keeps both classes in every replicate (AUROC needs both) and fixes n1,
    which the vectorised AUROC below relies on.
    """
    y = np.asarray(y)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError(f"the test set needs both classes; it has {len(positives)} positive(s), {len(negatives)} negative(s)")
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            positives[rng.integers(0, len(positives), size=(n_boot, len(positives)))],
            negatives[rng.integers(0, len(negatives), size=(n_boot, len(negatives)))],
        ],
        axis=1,
    )


def bootstrap_scores(
    y: np.ndarray, scores: Mapping[str, np.ndarray], n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """Point AUROC/AUPRC and percentile CIs for each named score, on shared resamples.

    Also returns the bootstrap replicates (key `replicates`) so callers can form paired
    intervals of differences or ratios.
    """
    y = np.asarray(y).astype(int)
    indices = bootstrap_indices(y, n_boot, seed)
    y_rows = y[indices]
    low, high = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    result: dict[str, Any] = {"replicates": {}}
    for name, score in scores.items():
        score = np.asarray(score, dtype=np.float64)
        rows = {"auroc": roc_auc_rows(y_rows, score[indices]), "auprc": average_precision_rows(y_rows, score[indices])}
        point = {"auroc": roc_auc_score(y, score), "auprc": average_precision_score(y, score)}
        result[name] = {
            metric: {
                "value": float(point[metric]),
                "ci_low": float(np.quantile(rows[metric], low)),
                "ci_high": float(np.quantile(rows[metric], high)),
            }
            for metric in rows
        }
        result["replicates"][name] = rows
    return result


def tstr_trtr(
    y_test: np.ndarray,
    trtr_score: np.ndarray,
    tstr_score: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """TRTR and TSTR AUROC/AUPRC with CIs, and the TSTR/TRTR ratio with a paired CI."""
    boot = bootstrap_scores(y_test, {"trtr": trtr_score, "tstr": tstr_score}, n_boot, seed, confidence)
    low, high = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    ratio = {}
    for metric in ("auroc", "auprc"):
        replicates = boot["replicates"]["tstr"][metric] / boot["replicates"]["trtr"][metric]
        ratio[metric] = {
            "value": boot["tstr"][metric]["value"] / boot["trtr"][metric]["value"],
            "ci_low": float(np.quantile(replicates, low)),
            "ci_high": float(np.quantile(replicates, high)),
        }
    return {"trtr": boot["trtr"], "tstr": boot["tstr"], "tstr_over_trtr": ratio, "n_test": int(len(y_test))}


def _check_two_classes(y: np.ndarray, what: str) -> None:
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"the {what} labels hold one class only ({classes.tolist()}); a mortality model cannot be "
            "trained on them (does the generator produce the label y?)"
        )


def logistic_regression(seed: int, **hyperparameters: Any):
    """Standardised features → L2 logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(random_state=seed, max_iter=2000, **hyperparameters))


def gradient_boosting(seed: int, **hyperparameters: Any):
    """scikit-learn's histogram gradient boosting."""
    return HistGradientBoostingClassifier(random_state=seed, **hyperparameters)


FLAT_MODELS: dict[str, Callable[..., Any]] = {
    "logistic_regression": logistic_regression,
    "gradient_boosting": gradient_boosting,
}


def fit_predict_flat(
    kind: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int = 0, **hyperparameters: Any
) -> np.ndarray:
    """Fit a FLAT_MODELS model on (train_x, train_y); P(death) for test_x."""
    if kind not in FLAT_MODELS:
        raise ValueError(f"unknown flat model {kind!r}; known: {', '.join(FLAT_MODELS)}")
    _check_two_classes(train_y, "training")
    model = FLAT_MODELS[kind](seed, **hyperparameters).fit(train_x, np.asarray(train_y).astype(int))
    return model.predict_proba(test_x)[:, 1]


def with_delta(bundle: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bundle with `delta` (hours since the last observation / n_hours, as the features
    pipeline computes it) derived from `mask` when absent, as in synthetic bundles."""
    bundle = dict(bundle)
    if "delta" not in bundle:
        mask = np.asarray(bundle["mask"], dtype=bool)
        _, last_seen = forward_fill(np.where(mask, 0.0, np.nan).astype(np.float32))
        bundle["delta"] = hours_since_observed(last_seen, mask.shape[1])
    return bundle


def fit_predict_sequence_model(
    train_bundle: Mapping[str, np.ndarray],
    test_bundle: Mapping[str, np.ndarray],
    config: Mapping[str, Any],
    seed: int = 0,
    device: str = "auto",
) -> np.ndarray:
    """Train one of the project's sequence models on a bundle; P(death) on another.

    The training loop is the training pipeline's (class-weighted cross-entropy, Adam, early
    stopping). Early stopping monitors `monitor_fraction` of the TRAINING bundle itself
    (stratified), so TSTR never touches real data before the test and TRTR follows the
    same recipe. config: architecture, hyperparameters, monitor_fraction and the keys of
    training.torch_loop.fit (batch_size, max_epochs, patience, monitor, class_weight, amp,
    optimizer, grad_clip).
    """
    _check_two_classes(np.asarray(train_bundle["y"]), "training")
    torch_device = resolve_device(device)
    test = to_tensors(with_delta(test_bundle), torch_device)
    model_config = {
        "architecture": config["architecture"],
        "hyperparameters": dict(config.get("hyperparameters", {})),
        "n_features": test["x"].shape[2],
        "n_static": test["static"].shape[1],
    }
    model, _ = train_with_monitor_split(with_delta(train_bundle), model_config, config, seed, torch_device,
                                        description=f"utility {config['architecture']}")
    return death_probability(predict_logits(model, test, int(config["batch_size"])), model.config["probability_shift"])
