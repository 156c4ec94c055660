"""Metrics with bootstrap CIs: known answers, agreement with scikit-learn, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ehr_adversarial.training.metrics import (
    METRICS,
    average_precision_rows,
    binary_metrics,
    bootstrap_metrics,
    choose_threshold,
    hosmer_lemeshow,
    roc_auc_rows,
)


def test_hand_computed_example():
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) → AUROC 3/4
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = 1/2·1 + 1/2·2/3 = 5/6
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    m = binary_metrics(y, p, threshold=0.3)
    assert m["auroc"] == pytest.approx(0.75)
    assert m["auprc"] == pytest.approx(5 / 6)
    # threshold 0.3 predicts 1 for 0.4, 0.35, 0.8: tp 2, fp 1, fn 0
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)
    assert m["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)


def test_perfect_predictions():
    y = np.array([0] * 50 + [1] * 10)
    m = bootstrap_metrics(y, y.astype(float), threshold=0.5, n_bootstrap=200)
    for name in ("auroc", "auprc", "f1", "precision", "recall"):
        assert m[name]["value"] == m[name]["ci_low"] == m[name]["ci_high"] == 1.0
    assert m["brier"]["value"] == 0.0


def test_reversed_predictions_have_auroc_zero():
    y = np.array([0] * 20 + [1] * 20)
    assert binary_metrics(y, 1.0 - y, threshold=0.5)["auroc"] == 0.0


def test_random_predictions_are_at_chance():
    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.14).astype(int)
    m = bootstrap_metrics(y, rng.random(5000), threshold=0.5, n_bootstrap=300, seed=2)
    # the standard error of AUROC here is about 0.012; 0.05 is more than 4 of them
    assert abs(m["auroc"]["value"] - 0.5) < 0.05
    assert abs(m["auprc"]["value"] - y.mean()) < 0.03
    # a 95 % CI spans about 4 standard errors
    assert 0.03 < m["auroc"]["ci_high"] - m["auroc"]["ci_low"] < 0.07
    assert m["recall"]["value"] == pytest.approx(0.5, abs=0.06)


def test_ci_contains_the_point_estimate_and_shrinks_with_more_data():
    rng = np.random.default_rng(3)
    widths = []
    for n in (300, 3000):
        y = (rng.random(n) < 0.2).astype(int)
        p = np.clip(0.2 + 0.3 * y + rng.normal(0, 0.2, n), 0, 1)
        m = bootstrap_metrics(y, p, threshold=0.4, n_bootstrap=400, seed=4)
        for name in METRICS:
            assert m[name]["ci_low"] <= m[name]["value"] <= m[name]["ci_high"], name
            assert m[name]["n_valid"] == 400
        widths.append(m["auroc"]["ci_high"] - m["auroc"]["ci_low"])
    assert widths[1] < widths[0] / 2


def test_bootstrap_is_reproducible_with_a_seed():
    rng = np.random.default_rng(5)
    y, p = (rng.random(400) < 0.3).astype(int), rng.random(400)
    assert bootstrap_metrics(y, p, 0.5, 100, seed=7) == bootstrap_metrics(y, p, 0.5, 100, seed=7)
    assert bootstrap_metrics(y, p, 0.5, 100, seed=7) != bootstrap_metrics(y, p, 0.5, 100, seed=8)


def test_vectorised_ranking_metrics_equal_sklearn_with_ties():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, (40, 200))
    p = np.round(rng.random((40, 200)), 1)  # many ties
    np.testing.assert_allclose(roc_auc_rows(y, p), [roc_auc_score(a, b) for a, b in zip(y, p, strict=True)], atol=1e-12)
    np.testing.assert_allclose(average_precision_rows(y, p),
                               [average_precision_score(a, b) for a, b in zip(y, p, strict=True)], atol=1e-12)


def test_bootstrap_threshold_metrics_equal_sklearn_per_replicate():
    # with n_bootstrap=1 and a known seed the single replicate can be rebuilt and checked
    rng = np.random.default_rng(8)
    y, p = (rng.random(300) < 0.3).astype(int), rng.random(300)
    m = bootstrap_metrics(y, p, 0.6, n_bootstrap=1, seed=9)
    index = np.random.default_rng(9).integers(0, 300, size=(1, 300))[0]
    yb, predb = y[index], (p[index] >= 0.6).astype(int)
    assert m["f1"]["ci_low"] == pytest.approx(f1_score(yb, predb))
    assert m["precision"]["ci_low"] == pytest.approx(precision_score(yb, predb))
    assert m["recall"]["ci_low"] == pytest.approx(recall_score(yb, predb))
    assert m["auroc"]["ci_low"] == pytest.approx(roc_auc_score(yb, p[index]))


def test_threshold_maximises_f1_on_the_given_predictions():
    rng = np.random.default_rng(10)
    y = (rng.random(500) < 0.2).astype(int)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    threshold = choose_threshold(y, p, rule="f1")
    best = max(f1_score(y, (p >= t).astype(int)) for t in np.unique(p))
    assert f1_score(y, (p >= threshold).astype(int)) == pytest.approx(best)


def test_default_threshold_maximises_the_challenge_score_min_se_ppv():
    rng = np.random.default_rng(11)
    y = (rng.random(500) < 0.15).astype(int)
    p = np.clip(0.25 * y + rng.random(500) * 0.75, 0, 1)

    def min_se_ppv(t):
        pred = (p >= t).astype(int)
        return min(precision_score(y, pred, zero_division=0), recall_score(y, pred))

    threshold = choose_threshold(y, p)
    best = max(min_se_ppv(t) for t in np.unique(p))
    assert min_se_ppv(threshold) == pytest.approx(best)
    # a different optimum from F1's on these predictions, so the rule matters
    assert threshold != choose_threshold(y, p, rule="f1")
    with pytest.raises(ValueError, match="threshold rule is 'youden'; use one of min_se_ppv, f1"):
        choose_threshold(y, p, rule="youden")


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "all 3 labels are 0"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "finite probabilities"),
        ([0, 1, 1], [0.1, 1.2, 0.3], r"in \[0, 1\]"),
        ([0, 1], [0.1, 0.2, 0.3], "2 labels but y_prob 3"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "must be 0/1"),
    ],
)
def test_bad_input_is_a_clear_error(y, p, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_metrics(np.array(y), np.array(p), 0.5, n_bootstrap=10)


def test_challenge_score_is_min_of_sensitivity_and_ppv():
    # threshold 0.3: predicted positive 0.4(-), 0.35(+), 0.8(+) → PPV 2/3, sensitivity 2/2
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert binary_metrics(y, p, threshold=0.3)["min_se_ppv"] == pytest.approx(2 / 3)
    # threshold 0.5: only 0.8(+) → PPV 1, sensitivity 1/2
    assert binary_metrics(y, p, threshold=0.5)["min_se_ppv"] == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.2).astype(int)
    p = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    boot = bootstrap_metrics(y, p, threshold=0.5, n_bootstrap=200, seed=0)["min_se_ppv"]
    assert boot["ci_low"] <= boot["value"] <= boot["ci_high"]


def test_hosmer_lemeshow_by_hand_and_on_calibrated_predictions():
    # Two groups of two: (0.2, 0.4) with 1 death, E 0.6, var 0.6·(1 − 0.3) = 0.42; (0.6, 0.8) with 1 death,
    # E 1.4, var 1.4·(1 − 0.7) = 0.42 → H = 0.16/0.42 + 0.16/0.42
    result = hosmer_lemeshow(np.array([1, 0, 0, 1]), np.array([0.2, 0.4, 0.6, 0.8]), groups=2)
    assert result["h"] == pytest.approx(2 * 0.16 / 0.42)
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.01, 0.6, 20_000)
    calibrated = hosmer_lemeshow((rng.random(prob.size) < prob).astype(int), prob)
    overconfident = hosmer_lemeshow((rng.random(prob.size) < prob).astype(int), np.clip(prob * 1.5, 0, 1))
    assert calibrated["p_value"] > 0.01 and overconfident["p_value"] < 1e-6
