"""The stack of models (ehr_adversarial.training.stacking) on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ehr_adversarial.training.stacking import fit_stack, member_logits, predict_stack

STACKING = {"combiner": "logistic", "C": 1.0, "n_folds": 5}
FEATURE_SETS = {"signal": "full", "noise": "sun2018"}


def predictions(y: np.ndarray, prob: np.ndarray, split: str, start_id: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"record_id": np.arange(start_id, start_id + y.size), "y_true": y, "y_prob": prob,
                         "split": split, "group": "a"})


def members(n: int, seed: int, split: str) -> dict[str, pd.DataFrame]:
    """`signal` separates the classes, `noise` is a coin."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    signal = 1 / (1 + np.exp(-(2.5 * y - 1.2 + rng.normal(size=n))))
    return {"signal": predictions(y, signal, split), "noise": predictions(y, rng.random(n), split)}


def test_the_stack_weighs_the_informative_member_and_scores_out_of_fold():
    stacker, config, validation = fit_stack(STACKING, 0, FEATURE_SETS, **members(600, 1, "validation"))
    assert config["members"] == ["noise", "signal"] and stacker.members_ == ["noise", "signal"]
    assert config["weights"]["signal"] > 0.8 and abs(config["weights"]["noise"]) < 0.3
    assert config["feature_set"] == "full + sun2018"
    assert set(validation["split"]) == {"validation, out-of-fold"} and len(validation) == 600
    # out-of-fold: each record scored by a stacker that did not see it, so not the in-sample fit
    in_sample = stacker.predict_proba(member_logits(members(600, 1, "validation"), "validation")[0])[:, 1]
    assert not np.allclose(validation["y_prob"].to_numpy(), in_sample)
    test = predict_stack(stacker, **members(400, 2, "test"))
    assert set(test["split"]) == {"test"} and test["y_prob"].between(0, 1).all()
    # a monotone function of the informative member's logit, as its weight dominates
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(test["y_true"], test["y_prob"]) > 0.8


def test_the_mean_logit_combiner_weighs_members_alike_and_is_platt_scaled():
    validation = members(600, 1, "validation")
    stacker, config, _ = fit_stack({"combiner": "mean_logit", "n_folds": 5}, 0, FEATURE_SETS, **validation)
    assert config["combiner"] == "mean_logit"
    assert config["weights"]["signal"] == pytest.approx(config["weights"]["noise"])
    test = members(400, 2, "test")
    logits, _ = member_logits(test, "test")
    expected = 1 / (1 + np.exp(-(config["intercept"] + config["weights"]["signal"] * logits.sum(axis=1))))
    np.testing.assert_allclose(predict_stack(stacker, **test)["y_prob"], expected.to_numpy(), rtol=1e-9)
    with pytest.raises(ValueError, match="stack.combiner"):
        fit_stack({"combiner": "median"}, 0, FEATURE_SETS, **validation)


def test_members_that_predict_different_records_are_an_error():
    validation = members(200, 3, "validation")
    validation["noise"] = validation["noise"].assign(record_id=validation["noise"]["record_id"] + 1)
    with pytest.raises(ValueError, match="cover different records"):
        fit_stack(STACKING, 0, FEATURE_SETS, **validation)


def test_members_that_disagree_on_a_label_are_an_error():
    validation = members(200, 3, "validation")
    validation["noise"].loc[0, "y_true"] = 1 - validation["noise"].loc[0, "y_true"]
    with pytest.raises(ValueError, match="disagree on labels"):
        fit_stack(STACKING, 0, FEATURE_SETS, **validation)


def test_test_predictions_of_other_members_are_an_error():
    stacker, _, _ = fit_stack(STACKING, 0, FEATURE_SETS, **members(200, 4, "validation"))
    with pytest.raises(ValueError, match="fitted on"):
        predict_stack(stacker, signal=members(100, 5, "test")["signal"])


def test_too_few_deaths_for_the_folds_is_an_error_naming_the_setting():
    validation = members(30, 6, "validation")
    for frame in validation.values():
        frame["y_true"] = 0
        frame.loc[:2, "y_true"] = 1
    with pytest.raises(ValueError, match="stack.n_folds"):
        fit_stack(STACKING, 0, FEATURE_SETS, **validation)
