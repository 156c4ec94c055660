"""Stacking: several trained models combined on their logits, the combination fitted on their held-out
predictions of the validation split.

Two combiners: `mean_logit` (the plain mean of the members' logits, then Platt scaling: two parameters, so
the weights can't overfit a validation split of a few hundred records) and `logistic` (a logistic regression
with one weight per member). Every member has predictions for the validation split from a fit that did not
see it (the torch models train on the train split and only early-stop on validation; the baselines are
fitted once more on the train split alone for this). The combiner is fitted there; its threshold and its
validation scores come from out-of-fold predictions within the validation split, so no number the report
shows is scored on the records it was fitted to. On the test split it combines the members' test predictions
(the baselines' from their refit on train + validation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ehr_adversarial.training.evaluation import evaluate_predictions

logger = logging.getLogger(__name__)

# Probabilities this close to 0 or 1 are clipped before the logit, so one overconfident member can't
# dominate the sum.
_EPS = 1e-6


def member_logits(predictions: Mapping[str, pd.DataFrame], split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One column of logit(P(death)) per member, rows aligned on record_id, and the labels.

    Refuses members that predict different records or disagree on a label: the stack must see each
    record once, with the same outcome, in every member."""
    if not predictions:
        raise ValueError("stacking needs at least one member model (Study.stack_members is empty)")
    names = sorted(predictions)
    first = predictions[names[0]].set_index("record_id")
    columns, y = {}, first["y_true"]
    for name in names:
        frame = predictions[name].set_index("record_id")
        if frame.index.has_duplicates:
            raise ValueError(f"the {split} predictions of {name} repeat record_id(s) "
                             f"{list(frame.index[frame.index.duplicated()][:5])}")
        if set(frame.index) != set(first.index):
            extra = sorted(set(frame.index) ^ set(first.index))
            raise ValueError(f"the {split} predictions of {name} and {names[0]} cover different records "
                             f"({len(extra)} differ, e.g. {extra[:5]}); re-run training so that every member "
                             "comes from the same feature run")
        frame = frame.loc[first.index]
        if not frame["y_true"].equals(y):
            raise ValueError(f"the {split} predictions of {name} and {names[0]} disagree on labels")
        prob = np.clip(frame["y_prob"].to_numpy(dtype=np.float64), _EPS, 1 - _EPS)
        columns[name] = np.log(prob / (1 - prob))
    return pd.DataFrame(columns, index=first.index), y.to_numpy(dtype=np.int64)


def combiner_input(logits: pd.DataFrame, combiner: str) -> pd.DataFrame:
    """What the combiner's logistic regression reads: every member's logit, or their mean alone."""
    if combiner == "logistic":
        return logits
    if combiner == "mean_logit":
        return logits.mean(axis=1).to_frame("mean_logit")
    raise ValueError(f"training.<source>.stack.combiner is {combiner!r}; use mean_logit or logistic")


def _frame(index: pd.Index, y: np.ndarray, prob: np.ndarray, source: pd.DataFrame, split: str) -> pd.DataFrame:
    group = source.set_index("record_id").loc[index, "group"].astype(str).to_numpy()
    return pd.DataFrame({"record_id": index.to_numpy(dtype=np.int64), "y_true": y, "y_prob": prob,
                         "split": split, "group": group})


def fit_stack(
    stacking: Mapping[str, Any], seed: int, member_feature_sets: Mapping[str, str],
    **validation_predictions: pd.DataFrame,
) -> tuple[LogisticRegression, dict[str, Any], pd.DataFrame]:
    """Fit the stacker on the members' validation predictions (`member_feature_sets`: member → the feature
    set it reads, for the report).

    Returns the fitted logistic regression (its `members_` in column order), the config the report shows
    (members, their feature sets, weights, C) and out-of-fold stacked predictions of the validation split
    (`stacking.n_folds` stratified folds), on which the decision threshold is chosen.
    """
    logits, y = member_logits(validation_predictions, "validation")
    n_folds = int(stacking.get("n_folds", 5))
    if min(int(y.sum()), int((1 - y).sum())) < n_folds:
        raise ValueError(f"the validation split has {int(y.sum())} deaths among {y.size} records: too few for "
                         f"{n_folds}-fold out-of-fold stacking; lower training.<source>.stack.n_folds")
    combiner = str(stacking.get("combiner", "mean_logit"))
    design = combiner_input(logits, combiner)
    # Platt scaling of the mean logit is left unpenalised; the logistic combiner's weights get the L2 of C.
    stacker = LogisticRegression(C=float(stacking.get("C", 1.0)) if combiner == "logistic" else 1e6, max_iter=1000)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    out_of_fold = cross_val_predict(stacker, design, y, cv=folds, method="predict_proba")[:, 1]
    stacker.fit(design, y)
    stacker.members_, stacker.combiner_ = list(logits.columns), combiner
    coefficients = stacker.coef_[0] if combiner == "logistic" else np.repeat(stacker.coef_[0, 0] / logits.shape[1],
                                                                             logits.shape[1])
    weights = dict(zip(stacker.members_, (float(w) for w in coefficients), strict=True))
    logger.info("stack weights on member logits: %s (intercept %.3f)",
                {k: round(v, 3) for k, v in weights.items()}, float(stacker.intercept_[0]))
    feature_sets = {member: member_feature_sets[member] for member in stacker.members_}
    config = {"estimator": "stacking", "combiner": combiner, "members": stacker.members_, "weights": weights,
              "intercept": float(stacker.intercept_[0]), "C": stacker.C if combiner == "logistic" else None,
              "n_folds": n_folds,
              "feature_set": " + ".join(sorted(set(feature_sets.values()))),
              "member_feature_sets": feature_sets, "refit_on": "validation"}
    first = validation_predictions[stacker.members_[0]]
    return stacker, config, _frame(logits.index, y, out_of_fold, first, "validation, out-of-fold")


def predict_stack(stacker: LogisticRegression, **test_predictions: pd.DataFrame) -> pd.DataFrame:
    """The stacked P(death) per test record from the members' test predictions."""
    if sorted(test_predictions) != sorted(stacker.members_):
        raise ValueError(f"the stack was fitted on {stacker.members_} but got predictions of "
                         f"{sorted(test_predictions)}")
    logits, y = member_logits(test_predictions, "test")
    prob = stacker.predict_proba(combiner_input(logits[stacker.members_], stacker.combiner_))[:, 1]
    return _frame(logits.index, y, prob, test_predictions[stacker.members_[0]], "test")


def evaluate_stack(validation_predictions: pd.DataFrame, test_predictions: pd.DataFrame,
                   selected_config: Mapping[str, Any], evaluation: Mapping[str, Any], seed: int,
                   model: str = "stack") -> dict[str, Any]:
    """The stack's test evaluation, its threshold chosen on its out-of-fold validation predictions."""
    metrics = evaluate_predictions(validation_predictions, test_predictions, selected_config,
                                   {"feature_set": selected_config["feature_set"]}, evaluation, seed, model=model)
    metrics["weights"] = dict(selected_config["weights"])
    return metrics
