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
import torch
from scipy.stats import rankdata
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ehr_adversarial.torch_utils import resolve_device

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


def auroc_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUROC of each row of (B, n) label/score matrices (Mann–Whitney U, ties averaged)."""
    y = y.astype(bool)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    ranks = rankdata(score, axis=1)
    return ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def average_precision_rows(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Average precision of each row (scikit-learn's definition: Σ ΔRecall · Precision over
    the distinct score thresholds), vectorised over rows."""
    order = np.argsort(-score, axis=1, kind="stable")
    sorted_score = np.take_along_axis(score, order, axis=1)
    sorted_y = np.take_along_axis(y.astype(np.float64), order, axis=1)
    true_positives = np.cumsum(sorted_y, axis=1)
    ranks = np.arange(1, score.shape[1] + 1)
    # A threshold sits at the last record of each run of tied scores.
    is_threshold = np.ones_like(sorted_score, dtype=bool)
    is_threshold[:, :-1] = sorted_score[:, :-1] != sorted_score[:, 1:]
    tp_at_threshold = np.where(is_threshold, true_positives, 0.0)
    previous = np.zeros_like(tp_at_threshold)
    previous[:, 1:] = np.maximum.accumulate(tp_at_threshold, axis=1)[:, :-1]
    gain = np.where(is_threshold, (true_positives - previous) * true_positives / ranks, 0.0)
    return gain.sum(axis=1) / true_positives[:, -1]


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
        rows = {"auroc": auroc_rows(y_rows, score[indices]), "auprc": average_precision_rows(y_rows, score[indices])}
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


def delta_from_mask(mask: np.ndarray) -> np.ndarray:
    """Hours since the last observation / n_hours, 1.0 before the first one (the features
    pipeline's `delta`), for bundles (e.g. synthetic ones) that carry only the mask."""
    n_hours = mask.shape[1]
    hours = np.arange(n_hours)[None, :, None]
    last_seen = np.maximum.accumulate(np.where(mask, hours, -1), axis=1)
    return np.where(last_seen >= 0, (hours - last_seen) / n_hours, 1.0).astype(np.float32)


def _model_tensors(bundle: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The bundle under the names models take (x, mask, delta, static)."""
    mask = np.asarray(bundle["mask"], dtype=bool)
    delta = bundle["delta"] if "delta" in bundle else delta_from_mask(mask)
    return {
        "x": torch.as_tensor(np.asarray(bundle["X"], dtype=np.float32)),
        "mask": torch.as_tensor(mask.astype(np.float32)),
        "delta": torch.as_tensor(np.asarray(delta, dtype=np.float32)),
        "static": torch.as_tensor(np.asarray(bundle["static"], dtype=np.float32)),
    }


def fit_predict_sequence_model(
    train_bundle: Mapping[str, np.ndarray],
    test_bundle: Mapping[str, np.ndarray],
    config: Mapping[str, Any],
    seed: int = 0,
    device: str = "auto",
) -> np.ndarray:
    """Train one of the project's sequence models (ehr_adversarial.models) on a bundle; P(death) on another.

    config: architecture, hyperparameters, epochs, batch_size, learning_rate. Class-weighted
    cross-entropy on the logits (weights n / (2 n_c)), Adam.
    """
    from ehr_adversarial.models import build_model, model_inputs

    y = np.asarray(train_bundle["y"]).astype(np.int64)
    _check_two_classes(y, "training")
    torch_device = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train, test = _model_tensors(train_bundle), _model_tensors(test_bundle)
    model = build_model(
        {
            "architecture": config["architecture"],
            "hyperparameters": dict(config.get("hyperparameters", {})),
            "n_features": train["x"].shape[2],
            "n_static": train["static"].shape[1],
        }
    ).to(torch_device)
    counts = np.bincount(y, minlength=2)
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=torch.as_tensor(len(y) / (2.0 * counts), dtype=torch.float32, device=torch_device)
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=float(config["learning_rate"]))
    labels = torch.as_tensor(y)
    batch_size = int(config["batch_size"])
    model.train()
    for _ in tqdm(range(int(config["epochs"])), desc=f"{config['architecture']} epochs", leave=False):
        for batch_index in torch.randperm(len(y), generator=generator).split(batch_size):
            batch = {name: tensor[batch_index].to(torch_device) for name, tensor in train.items()}
            optimiser.zero_grad()
            loss = loss_fn(model(*model_inputs(model, batch)), labels[batch_index].to(torch_device))
            loss.backward()
            optimiser.step()
    model.eval()
    probabilities = []
    with torch.no_grad():
        for batch_index in torch.arange(len(test["x"])).split(4 * batch_size):
            batch = {name: tensor[batch_index].to(torch_device) for name, tensor in test.items()}
            probabilities.append(torch.softmax(model(*model_inputs(model, batch)), dim=1)[:, 1].cpu())
    return torch.cat(probabilities).numpy().astype(np.float64)
