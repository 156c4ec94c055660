"""Nodes of the training pipeline: model selection by k-fold CV on the train split, refit with
early stopping on the validation split, predictions, one final evaluation on the test split,
figures and a comparison of all models.

Torch models (`lstm_sun2018`, `dssm`) and scikit-learn baselines on summary statistics
(`logreg`, `gbm`) share the evaluation nodes: every model hands over predictions
(record_id, y_true, y_prob) for the validation and the test split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ehr_adversarial.datasets.torch_model import check_model_matches_data
from ehr_adversarial.evaluation import METRICS, binary_metrics, bootstrap_metrics, choose_threshold
from ehr_adversarial.torch_utils import resolve_device

from . import plots
from .summary_features import summary_statistics
from .torch_loop import (
    class_weights,
    death_probability,
    limited_threads,
    predict_logits,
    prior_shift,
    subset,
    to_tensors,
    train_model,
)

logger = logging.getLogger(__name__)

BUNDLE_KEYS = ("X", "mask", "delta", "static", "y", "record_id")
# CPU threads per model fit unless a model block sets n_threads (see torch_loop.limited_threads)
DEFAULT_THREADS = 1


# ---------------------------------------------------------------- input checks


def check_model_input(bundle: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any], name: str) -> None:
    """Fail before any training on a bundle that is incomplete, mis-shaped, non-finite or one-class."""
    feature_set = feature_spec.get("feature_set", "?")
    where = f"{name} (feature set {feature_set!r})"
    missing = [key for key in BUNDLE_KEYS if key not in bundle]
    if missing:
        raise ValueError(f"{where} lacks array(s) {missing}; it has {sorted(bundle)}")
    n = len(bundle["y"])
    features, statics = list(feature_spec["feature_names"]), list(feature_spec["static_names"])
    expected = {"X": (n, int(feature_spec["n_hours"]), len(features))}
    expected["mask"] = expected["delta"] = expected["X"]
    expected["static"] = (n, len(statics))
    for key, shape in expected.items():
        if tuple(bundle[key].shape) != shape:
            raise ValueError(f"{where}: {key} has shape {tuple(bundle[key].shape)}, expected {shape} "
                             f"from the feature spec ({len(features)} features, {len(statics)} statics)")
    for key in ("X", "delta", "static"):
        bad = ~np.isfinite(bundle[key])
        if bad.any():
            position = np.argwhere(bad)[0]
            column = features[position[-1]] if key != "static" else statics[position[-1]]
            raise ValueError(
                f"{where}: {int(bad.sum())} NaN/inf value(s) in {key}, the first at record_id "
                f"{int(bundle['record_id'][position[0]])}, {column}"
                + (f", hour {int(position[1])}" if key != "static" else "")
                + "; the features pipeline must impute and scale every cell (re-run `features`)"
            )
    y = np.asarray(bundle["y"])
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where}: labels must be 0/1, found {sorted(np.unique(y))[:5]}")
    if n == 0 or y.min() == y.max():
        raise ValueError(
            f"{where} has {n} records and {int(y.sum())} positive(s): a split needs both classes "
            "to train and evaluate; use a larger cohort or change the split fractions"
        )


def _folds(bundle: Mapping[str, np.ndarray], splits: pd.DataFrame, max_folds: int) -> tuple[np.ndarray, list[int]]:
    """Per train record its CV fold (from `splits`), and the folds to hold out (at most max_folds)."""
    fold_of = splits.set_index("record_id")["fold"]
    record_id = pd.Index(bundle["record_id"])
    unknown = record_id.difference(fold_of.index)
    if len(unknown):
        raise ValueError(f"{len(unknown)} train record(s) are not in splits, e.g. {list(unknown[:5])}; "
                         "the splits and the model input come from different feature runs")
    fold = fold_of.loc[record_id].to_numpy()
    folds = sorted(int(f) for f in np.unique(fold) if f >= 0)
    if len(folds) < 2:
        raise ValueError(f"the train split has {len(folds)} CV fold(s); k-fold CV needs at least 2")
    for f in folds:
        y_held = np.asarray(bundle["y"])[fold == f]
        if y_held.min() == y_held.max():
            raise ValueError(f"CV fold {f} holds {y_held.size} records of a single class; "
                             "use fewer folds (features parameters) for a cohort this small")
    return fold, folds[: max(1, int(max_folds))]


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, nested dicts key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _candidates(training: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full training config of every grid point (a grid entry overrides the defaults)."""
    base = {key: value for key, value in training.items() if key != "cv"}
    grid = training.get("cv", {}).get("grid") or [{}]
    return [_merge(base, override) for override in grid]


def _selection(cv_results: pd.DataFrame, candidates: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    mean = cv_results.groupby("candidate")[monitor].mean()
    best = int(mean.idxmax())
    logger.info("CV mean %s per candidate: %s; selected candidate %d", monitor,
                mean.round(4).to_dict(), best)
    return {**candidates[best], "cv": {"candidate": best, f"mean_{monitor}": float(mean[best]),
                                       "n_folds": int(cv_results["fold"].nunique())}}


def _prediction_frame(bundle: Mapping[str, np.ndarray], prob: np.ndarray, split: str) -> pd.DataFrame:
    """record_id, y_true, y_prob (P(death)), split (which predictions these are), group."""
    n = len(bundle["y"])
    group = np.asarray(bundle["group"]).astype(str) if "group" in bundle else np.full(n, "")
    return pd.DataFrame({"record_id": np.asarray(bundle["record_id"], dtype=np.int64),
                         "y_true": np.asarray(bundle["y"], dtype=np.int64),
                         "y_prob": prob.astype(np.float64), "split": split, "group": group})


# ---------------------------------------------------------------- torch models


def torch_model_config(training: Mapping[str, Any], feature_spec: Mapping[str, Any]) -> dict[str, Any]:
    """What a saved torch model carries to rebuild it: architecture, hyperparameters, feature names."""
    return {
        "architecture": training["architecture"],
        "hyperparameters": dict(training.get("hyperparameters", {})),
        "feature_set": feature_spec["feature_set"],
        "feature_names": list(feature_spec["feature_names"]),
        "static_names": list(feature_spec["static_names"]),
        "n_hours": int(feature_spec["n_hours"]),
        "n_features": len(feature_spec["feature_names"]),
        "n_static": len(feature_spec["static_names"]),
    }


def _train_once(config: Mapping[str, Any], feature_spec: Mapping[str, Any], train, monitor_set,
                seed: int, description: str) -> tuple[nn.Module, pd.DataFrame]:
    with limited_threads(config.get("n_threads", DEFAULT_THREADS)):
        return train_model(torch_model_config(config, feature_spec), config, train, monitor_set, seed, description)


def select_torch_config(
    model_input_train: Mapping[str, np.ndarray],
    splits: pd.DataFrame,
    feature_spec: Mapping[str, Any],
    training: Mapping[str, Any],
    seed: int,
    device: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """k-fold CV on the train split over `training.cv.grid`; returns per-fold scores and the
    selected training config (the grid point with the best mean held-out-fold score)."""
    check_model_input(model_input_train, feature_spec, "model_input_train")
    cv = training.get("cv", {})
    fold, held_out = _folds(model_input_train, splits, cv.get("max_folds", 99))
    tensors = to_tensors(model_input_train, resolve_device(device))
    candidates = _candidates(training)
    rows = []
    for c, candidate in enumerate(candidates):
        candidate_cv = _merge(candidate, {"max_epochs": cv.get("max_epochs", candidate["max_epochs"])})
        for f in held_out:
            start = time.perf_counter()
            _, history = _train_once(candidate_cv, feature_spec, subset(tensors, np.flatnonzero(fold != f)),
                                     subset(tensors, np.flatnonzero(fold == f)), seed,
                                     f"CV candidate {c} fold {f}")
            best = history.loc[history["best"]].iloc[0]
            rows.append({"candidate": c, "fold": f, "best_epoch": int(best["epoch"]),
                         "auroc": best["auroc"], "auprc": best["auprc"], "loss": best["monitor_loss"],
                         "seconds": time.perf_counter() - start})
    cv_results = pd.DataFrame(rows)
    monitor = training["monitor"]
    if monitor == "loss":
        cv_results["neg_loss"] = -cv_results["loss"]
        monitor = "neg_loss"
    return cv_results, _selection(cv_results, candidates, monitor)


def train_torch_model(
    model_input_train: Mapping[str, np.ndarray],
    model_input_validation: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    selected_config: Mapping[str, Any],
    seed: int,
    device: str,
) -> tuple[nn.Module, pd.DataFrame]:
    """Refit the selected config on the whole train split, early-stopping on the validation split."""
    check_model_input(model_input_train, feature_spec, "model_input_train")
    check_model_input(model_input_validation, feature_spec, "model_input_validation")
    torch_device = resolve_device(device)
    start = time.perf_counter()
    model, history = _train_once(selected_config, feature_spec, to_tensors(model_input_train, torch_device),
                                 to_tensors(model_input_validation, torch_device), seed,
                                 f"{selected_config['architecture']} refit")
    # train_model put the class weights' prior shift and the batch size on model.config.
    logger.info("refit of %s took %.1f s", selected_config["architecture"], time.perf_counter() - start)
    return model.cpu(), history


def predict_torch_model(
    model: nn.Module,
    model_input: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    device: str,
    split: str = "test",
) -> pd.DataFrame:
    """P(death) per record of the `split` bundle (eval mode, prior shift removed)."""
    check_model_input(model_input, feature_spec, "model input")
    check_model_matches_data(model.config, model_input, feature_spec, "the model input")
    torch_device = resolve_device(device)
    model = model.to(torch_device)
    with limited_threads(DEFAULT_THREADS):
        logits = predict_logits(model, to_tensors(model_input, torch_device),
                                model.config.get("batch_size", 256))
    prob = death_probability(logits, model.config["probability_shift"])
    return _prediction_frame(model_input, prob, split)


# ---------------------------------------------------------------- scikit-learn baselines


def _estimator(config: Mapping[str, Any], seed: int) -> Pipeline | HistGradientBoostingClassifier:
    kind, params = config["estimator"], dict(config.get("hyperparameters", {}))
    class_weight = None if config.get("class_weight", "none") == "none" else config["class_weight"]
    if kind == "logistic_regression":
        return make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(class_weight=class_weight, random_state=seed, max_iter=2000, **params),
        )
    if kind == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(class_weight=class_weight, random_state=seed,
                                              early_stopping=False, **params)
    raise ValueError(f"estimator is {kind!r}; use logistic_regression or hist_gradient_boosting")


def _summaries(bundle: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any]) -> pd.DataFrame:
    return summary_statistics(bundle, feature_spec["feature_names"], feature_spec["static_names"])


def _estimator_probability(estimator, features: pd.DataFrame, shift: float) -> np.ndarray:
    prob = np.clip(estimator.predict_proba(features)[:, 1], 1e-12, 1 - 1e-12)
    return 1.0 / (1.0 + np.exp(-(np.log(prob / (1 - prob)) - shift)))


def select_estimator_config(
    model_input_train: Mapping[str, np.ndarray],
    splits: pd.DataFrame,
    feature_spec: Mapping[str, Any],
    training: Mapping[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame]:
    """k-fold CV of the summary-statistics baseline over `training.cv.grid` on the train split.

    Returns per-fold scores, the selected config and the selected candidate's out-of-fold
    predictions (each train record predicted by the model that did not see its fold).
    """
    check_model_input(model_input_train, feature_spec, "model_input_train")
    fold, held_out = _folds(model_input_train, splits, training.get("cv", {}).get("max_folds", 99))
    features, y = _summaries(model_input_train, feature_spec), np.asarray(model_input_train["y"])
    candidates = _candidates(training)
    rows, out_of_fold = [], []
    for c, candidate in enumerate(candidates):
        prob = np.full(y.size, np.nan)
        for f in held_out:
            start = time.perf_counter()
            train, held = fold != f, fold == f
            with limited_threads(training.get("n_threads", DEFAULT_THREADS)):
                estimator = _estimator(candidate, seed).fit(features[train], y[train])
                shift = prior_shift(class_weights(y[train], candidate.get("class_weight", "none")))
                prob[held] = _estimator_probability(estimator, features[held], shift)
            rows.append({"candidate": c, "fold": f, "auroc": roc_auc_score(y[held], prob[held]),
                         "auprc": average_precision_score(y[held], prob[held]),
                         "seconds": time.perf_counter() - start})
        out_of_fold.append(prob)
    cv_results = pd.DataFrame(rows)
    selected = _selection(cv_results, candidates, training["monitor"])
    held = np.isin(fold, held_out)
    predictions = _prediction_frame(model_input_train, out_of_fold[selected["cv"]["candidate"]],
                                    "train, out-of-fold")
    return cv_results, selected, predictions[held].reset_index(drop=True)


def fit_estimator(
    model_input_train: Mapping[str, np.ndarray],
    model_input_validation: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    selected_config: Mapping[str, Any],
    seed: int,
):
    """Refit the selected baseline on the train split, or on train + validation when
    `refit_on: train_and_validation` (no early stopping needs the validation split here, and the
    baseline gains from more records; its threshold then comes from the CV predictions)."""
    check_model_input(model_input_train, feature_spec, "model_input_train")
    bundles = [model_input_train]
    refit_on = selected_config.get("refit_on", "train")
    if refit_on == "train_and_validation":
        check_model_input(model_input_validation, feature_spec, "model_input_validation")
        bundles.append(model_input_validation)
    elif refit_on != "train":
        raise ValueError(f"refit_on is {refit_on!r}; use train or train_and_validation")
    features = pd.concat([_summaries(b, feature_spec) for b in bundles])
    y = np.concatenate([np.asarray(b["y"]) for b in bundles])
    with limited_threads(selected_config.get("n_threads", DEFAULT_THREADS)):
        estimator = _estimator(selected_config, seed).fit(features, y)
    # same prior-shift correction as the torch models (0 without class weights)
    estimator.probability_shift_ = prior_shift(class_weights(y, selected_config.get("class_weight", "none")))
    logger.info("fitted %s on %d records (%s)", selected_config["estimator"], y.size, refit_on)
    return estimator


def predict_estimator(
    estimator, model_input: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any], split: str = "test"
) -> pd.DataFrame:
    """P(death) per record of the `split` bundle from the baseline."""
    check_model_input(model_input, feature_spec, "model input")
    features = _summaries(model_input, feature_spec)
    expected = list(getattr(estimator, "feature_names_in_", features.columns))
    if list(features.columns) != expected:
        raise ValueError(f"the estimator was fitted on {len(expected)} summary columns but the model "
                         f"input gives {features.shape[1]} (feature set {feature_spec['feature_set']!r})")
    with limited_threads(DEFAULT_THREADS):
        prob = _estimator_probability(estimator, features, estimator.probability_shift_)
    return _prediction_frame(model_input, prob, split)


# ---------------------------------------------------------------- evaluation and reporting


def _describe_split(predictions: pd.DataFrame) -> str:
    """E.g. "test (group b)": the split and the source groups its records come from."""
    splits = "+".join(sorted(predictions["split"].astype(str).unique()))
    return f"{splits} (group {'+'.join(sorted(predictions['group'].astype(str).unique()))})"


def evaluate_predictions(
    threshold_predictions: pd.DataFrame,
    test_predictions: pd.DataFrame,
    selected_config: Mapping[str, Any],
    feature_spec: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    seed: int,
) -> dict[str, Any]:
    """The single final evaluation on the test split, metrics with 95 % bootstrap CIs.

    The decision threshold (for F1, precision, recall) maximises F1 on `threshold_predictions`:
    the validation split for torch models, the out-of-fold CV predictions of the train split
    for the baselines. Their metrics there are reported for reference.
    """
    threshold = choose_threshold(threshold_predictions["y_true"], threshold_predictions["y_prob"])
    test = bootstrap_metrics(test_predictions["y_true"], test_predictions["y_prob"], threshold,
                             n_bootstrap=int(evaluation["n_bootstrap"]), seed=seed,
                             confidence=float(evaluation["confidence"]))
    threshold_split = _describe_split(threshold_predictions)
    return {
        "model": selected_config.get("architecture", selected_config.get("estimator")),
        "feature_set": feature_spec["feature_set"],
        "threshold": threshold,
        "threshold_rule": f"maximises F1 on the predictions of {threshold_split}",
        "n_test": int(len(test_predictions)),
        "n_test_positive": int(test_predictions["y_true"].sum()),
        "test_split": _describe_split(test_predictions),
        "test": test,
        "threshold_split": {"name": threshold_split, "n": int(len(threshold_predictions)),
                            **binary_metrics(threshold_predictions["y_true"],
                                             threshold_predictions["y_prob"], threshold)},
        "cv": dict(selected_config.get("cv", {})),
        "refit_on": selected_config.get("refit_on", "train"),
    }


def plot_evaluation(test_predictions: pd.DataFrame, metrics: Mapping[str, Any]) -> tuple[Figure, Figure, Figure]:
    """ROC, precision-recall and calibration figures of the test predictions."""
    title = f"{metrics['model']} ({metrics['feature_set']})"
    return (plots.roc_figure(test_predictions, metrics, title),
            plots.pr_figure(test_predictions, metrics, title),
            plots.calibration_figure(test_predictions, metrics, title))


def plot_training_curves(history: pd.DataFrame, selected_config: Mapping[str, Any]) -> Figure:
    """Training/validation loss and validation AUROC/AUPRC per epoch of the refit."""
    return plots.training_curves_figure(history, selected_config["architecture"])


def compare_models(**metrics: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """One row per model (test metrics with CIs), sorted by AUPRC, and the same as markdown."""
    rows = []
    for name, m in metrics.items():
        row = {"model": name, "feature_set": m["feature_set"], "n_test": m["n_test"],
               "n_test_positive": m["n_test_positive"], "threshold": m["threshold"]}
        for metric in METRICS:
            row[metric] = m["test"][metric]["value"]
            row[f"{metric}_ci_low"] = m["test"][metric]["ci_low"]
            row[f"{metric}_ci_high"] = m["test"][metric]["ci_high"]
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("auprc", ascending=False, ignore_index=True)
    return table, comparison_markdown(table)


def comparison_markdown(table: pd.DataFrame, min_positives: int = 50) -> str:
    """The comparison table as markdown, with a warning when the test set is too small to mean much."""
    header = "| model | feature set | " + " | ".join(m.upper() if m.startswith("au") else m.capitalize()
                                                  for m in METRICS) + " |"
    lines = ["# Model comparison on the held-out test split", "",
             "Point estimate [95 % bootstrap CI]; F1/precision/recall at the threshold that "
             "maximises F1 on held-out predictions the test split never enters (the validation "
             "split for the torch models, out-of-fold CV predictions for the baselines).", "", header,
             "|" + "---|" * (len(METRICS) + 2)]
    for _, row in table.iterrows():
        cells = [f"{row[m]:.3f} [{row[f'{m}_ci_low']:.3f}, {row[f'{m}_ci_high']:.3f}]" for m in METRICS]
        lines.append(f"| {row['model']} | {row['feature_set']} | " + " | ".join(cells) + " |")
    n_test, n_pos = int(table["n_test"].iloc[0]), int(table["n_test_positive"].iloc[0])
    lines += ["", f"Test split: {n_test} records, {n_pos} deaths."]
    if n_pos < min_positives:
        lines.append(f"**Warning:** with fewer than {min_positives} deaths in the test split these "
                     "numbers are not meaningful (the confidence intervals show how wide they are).")
    return "\n".join(lines) + "\n"
