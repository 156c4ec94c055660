"""scikit-learn baselines (`logreg`, `gbm`) on per-record summary statistics: CV selection on the train
split, refit on train + validation, predictions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ehr_adversarial.training.selection import (
    DEFAULT_THREADS,
    candidate_configs,
    check_model_input,
    cv_folds,
    prediction_frame,
    select_best,
)
from ehr_adversarial.training.summary_features import summary_statistics
from ehr_adversarial.training.torch_loop import (
    class_weights,
    limited_threads,
    prior_shift,
)

logger = logging.getLogger(__name__)


def _estimator(config: Mapping[str, Any], seed: int) -> Pipeline | HistGradientBoostingClassifier | VotingClassifier:
    """The configured estimator; with `n_seeds` > 1 the soft vote of that many copies from seeds seed, seed + 1, …
    (a GBM that subsamples features per split varies with its seed; the average removes that variance)."""
    n_seeds = int(config.get("n_seeds", 1))
    if n_seeds < 1:
        raise ValueError(f"n_seeds is {n_seeds}; it must be ≥ 1 (training.<source>.<model>.n_seeds)")
    if n_seeds > 1:
        single = {**config, "n_seeds": 1}
        return VotingClassifier([(f"seed_{seed + k}", _estimator(single, seed + k)) for k in range(n_seeds)],
                                voting="soft")
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
    fold, held_out = cv_folds(model_input_train, splits, training.get("cv", {}).get("max_folds", 99))
    features, y = _summaries(model_input_train, feature_spec), np.asarray(model_input_train["y"])
    candidates = candidate_configs(training)
    rows, out_of_fold = [], []
    for c, candidate in enumerate(candidates):
        prob = np.full(y.size, np.nan)
        for f in held_out:
            start = time.perf_counter()
            train, held = fold != f, fold == f
            with limited_threads(training.get("n_threads", DEFAULT_THREADS)):
                # One seed per candidate: CV ranks candidates; the seeds' average is for the final fit.
                estimator = _estimator({**candidate, "n_seeds": 1}, seed).fit(features[train], y[train])
                shift = prior_shift(class_weights(y[train], candidate.get("class_weight", "none")))
                prob[held] = _estimator_probability(estimator, features[held], shift)
            rows.append({"candidate": c, "fold": f, "auroc": roc_auc_score(y[held], prob[held]),
                         "auprc": average_precision_score(y[held], prob[held]),
                         "seconds": time.perf_counter() - start})
        out_of_fold.append(prob)
    cv_results = pd.DataFrame(rows)
    selected = select_best(cv_results, candidates, training["monitor"])
    held = np.isin(fold, held_out)
    predictions = prediction_frame(model_input_train, out_of_fold[selected["cv"]["candidate"]],
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


def held_out_validation_predictions(
    model_input_train: Mapping[str, np.ndarray],
    model_input_validation: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    selected_config: Mapping[str, Any],
    seed: int,
) -> pd.DataFrame:
    """P(death) per validation record from the selected baseline fitted on the train split alone: the
    held-out predictions a stack of models learns its weights on (the refit on train + validation has
    seen these records)."""
    estimator = fit_estimator(model_input_train, model_input_validation, feature_spec,
                              {**selected_config, "refit_on": "train"}, seed)
    return predict_estimator(estimator, model_input_validation, feature_spec, split="validation")


def predict_estimator(
    estimator, model_input: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any], split: str = "test"
) -> pd.DataFrame:
    """P(death) per record of the `split` bundle from the baseline."""
    check_model_input(model_input, feature_spec, "model input")
    return prediction_frame(model_input, baseline_probability(estimator, model_input, feature_spec), split)


def baseline_probability(estimator, model_input: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any]) -> np.ndarray:
    """P(death) per record of a model input (labelled or not: e.g. records sent to the model server)."""
    features = _summaries(model_input, feature_spec)
    expected = list(getattr(estimator, "feature_names_in_", features.columns))
    if list(features.columns) != expected:
        raise ValueError(f"the estimator was fitted on {len(expected)} summary columns but the model "
                         f"input gives {features.shape[1]} (feature set {feature_spec['feature_set']!r})")
    with limited_threads(DEFAULT_THREADS):
        return _estimator_probability(estimator, features, estimator.probability_shift_)
