"""Known-answer tests of the utility metrics: vectorised bootstrap, TSTR vs TRTR, the LSTM."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ehr_adversarial.synthetic_evaluation import utility


def _flat_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """60 features; the log-odds of death is linear in the first three (AUROC ≈ 0.85).

    Many uninformative features keep a model fitted to noise nearly orthogonal to the
    true risk, so its AUROC stays close to 0.5.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 60))
    logit = -1.8 + 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.6 * x[:, 2]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def _sequence_bundle(n: int, seed: int) -> dict[str, np.ndarray]:
    """Death follows a rising trend of feature 0 over the 48 hours (a temporal signal); the
    other 23 features are noise, so a model fitted to noise is nearly blind to the signal."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    hours = np.linspace(0, 1, 48)[None, :]
    x = 0.5 + 0.1 * rng.normal(size=(n, 48, 24))
    x[:, :, 0] += np.where(y[:, None] == 1, 0.3, -0.3) * (hours - 0.5)
    return {
        "X": np.clip(x, 0, 1).astype(np.float32),
        "mask": rng.random((n, 48, 24)) < 0.5,
        "static": rng.random((n, 2)).astype(np.float32),
        "y": y,
    }


# ------------------------------------------------------------------------------ bootstrap
def test_bootstrap_keeps_classes_and_brackets_the_point_estimate():
    y = np.r_[np.ones(20, dtype=int), np.zeros(180, dtype=int)]
    indices = utility.bootstrap_indices(y, 50, seed=2)
    assert indices.shape == (50, 200)
    assert (y[indices].sum(axis=1) == 20).all()
    perfect = utility.bootstrap_scores(y, {"perfect": y.astype(float)}, n_boot=200)["perfect"]
    assert perfect["auroc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert perfect["auprc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    noisy = np.random.default_rng(3).random(200) + 0.5 * y
    result = utility.bootstrap_scores(y, {"noisy": noisy}, n_boot=500)["noisy"]
    for metric in ("auroc", "auprc"):
        assert result[metric]["ci_low"] < result[metric]["value"] < result[metric]["ci_high"]
    with pytest.raises(ValueError, match="needs both classes"):
        utility.bootstrap_indices(np.zeros(10), 5)


# ------------------------------------------------------------------------------ TSTR vs TRTR
@pytest.mark.parametrize("kind", sorted(utility.FLAT_MODELS))
def test_tstr_equals_trtr_for_a_copy_and_collapses_for_shuffled_labels(kind):
    train_x, train_y = _flat_task(3000, seed=4)
    test_x, test_y = _flat_task(1500, seed=5)
    trtr = utility.fit_predict_flat(kind, train_x, train_y, test_x, seed=0)
    copy = utility.fit_predict_flat(kind, train_x.copy(), train_y.copy(), test_x, seed=0)
    same = utility.tstr_trtr(test_y, trtr, copy, n_boot=200)
    assert same["trtr"]["auroc"]["value"] > 0.75
    assert same["tstr_over_trtr"]["auroc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert same["tstr_over_trtr"]["auprc"]["value"] == 1.0
    # labels flipped: the fitted model is exactly the negated one (both losses are symmetric)
    flipped = utility.fit_predict_flat(kind, train_x, 1 - train_y, test_x, seed=0)
    assert roc_auc_score(test_y, flipped) == pytest.approx(1 - roc_auc_score(test_y, trtr), abs=1e-3)
    shuffled_y = np.random.default_rng(6).permutation(train_y)
    broken = utility.tstr_trtr(test_y, trtr, utility.fit_predict_flat(kind, train_x, shuffled_y, test_x), n_boot=200)
    assert broken["tstr"]["auroc"]["value"] == pytest.approx(0.5, abs=0.07)
    assert broken["tstr_over_trtr"]["auroc"]["ci_high"] < 0.8
    # AUPRC of an uninformative model ≈ prevalence
    assert broken["tstr"]["auprc"]["value"] == pytest.approx(test_y.mean(), abs=0.06)


def test_a_one_class_synthetic_training_set_is_refused():
    x, y = _flat_task(100, seed=7)
    with pytest.raises(ValueError, match="one class only"):
        utility.fit_predict_flat("gradient_boosting", x, np.zeros_like(y), x)
    with pytest.raises(ValueError, match="unknown flat model 'svm'"):
        utility.fit_predict_flat("svm", x, y, x)


# ------------------------------------------------------------------------------ sequence model
def test_delta_is_derived_from_the_mask_when_missing():
    mask = np.zeros((1, 6, 2), dtype=bool)
    mask[0, [1, 4], 0] = True
    bundle = utility.with_delta({"mask": mask})
    delta = bundle["delta"]
    np.testing.assert_allclose(delta[0, :, 0], [1.0, 0, 1 / 6, 2 / 6, 0, 1 / 6])
    np.testing.assert_array_equal(delta[0, :, 1], 1.0)


    assert utility.with_delta({"mask": mask, "delta": "kept"})["delta"] == "kept"


LSTM_CONFIG = {
    "architecture": "lstm_sun2018",
    "hyperparameters": {"hidden_size": 16, "dropout": 0.0},
    "optimizer": {"lr": 0.01},
    "batch_size": 64,
    "max_epochs": 8,
    "patience": 3,
    "monitor": "auroc",
    "class_weight": "balanced",
    "grad_clip": 5.0,
    "amp": False,
    "monitor_fraction": 0.15,
}


def test_lstm_learns_a_temporal_signal_and_its_reverse_from_flipped_labels():
    train, test = _sequence_bundle(800, seed=8), _sequence_bundle(400, seed=9)
    trtr = utility.fit_predict_sequence_model(train, test, LSTM_CONFIG, seed=0, device="cpu")
    assert trtr.shape == (400,) and ((trtr >= 0) & (trtr <= 1)).all()
    assert roc_auc_score(test["y"], trtr) > 0.95
    again = utility.fit_predict_sequence_model(dict(train), test, LSTM_CONFIG, seed=0, device="cpu")
    np.testing.assert_allclose(again, trtr, atol=1e-6)  # seeded: a copy scores like the original
    # Synthetic data whose labels are swapped teaches the reverse: AUROC ≈ 1 − TRTR. (Shuffled
    # labels are no stable known answer for one network: a model of noise is a random function
    # of x whose AUROC on this strong signal lands anywhere between 0.05 and 0.9.)
    flipped = dict(train, y=1 - train["y"])
    tstr = utility.fit_predict_sequence_model(flipped, test, LSTM_CONFIG, seed=0, device="cpu")
    assert roc_auc_score(test["y"], tstr) < 0.05
