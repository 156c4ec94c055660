"""Known-answer tests of the flat view and the fidelity metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ehr_adversarial.synthetic_evaluation import fidelity, quality
from ehr_adversarial.synthetic_evaluation.flat_view import align_columns, flat_view, to_matrix
from tests.conftest import synthcity_reference


def _bundle(n: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.clip(rng.random((n, 48, 3)) * 0.5 + shift, 0, 1).astype(np.float32)
    return {
        "X": x,
        "mask": rng.random((n, 48, 3)) < 0.3,
        "static": rng.random((n, 2)).astype(np.float32),
        "y": (rng.random(n) < 0.15).astype(np.int64),
        "record_id": np.arange(n, dtype=np.int64) + 1000,
    }


def _correlated_table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Four columns: a, b = a + noise (ρ ≈ 0.89), c, d = −c + noise; optional mean shift."""
    rng = np.random.default_rng(seed)
    a, c = rng.normal(size=n), rng.normal(size=n)
    values = np.c_[a, a + 0.5 * rng.normal(size=n), c, -c + 0.5 * rng.normal(size=n)] + shift
    return pd.DataFrame(values, columns=["a", "b", "c", "d"])


# ------------------------------------------------------------------------------ flat view
def test_flat_view_summaries_match_direct_computation():
    bundle = _bundle(50, seed=1)
    table = flat_view(bundle, ["HR", "Na", "pH"], ["age", "gender"])
    assert table.shape == (50, 2 + 6 * 3 + 1)
    assert table.index.name == "record_id" and table.index[0] == 1000
    x = bundle["X"].astype(np.float64)
    record, feature = 7, 1
    assert table.loc[1007, "Na.mean"] == pytest.approx(x[record, :, feature].mean())
    assert table.loc[1007, "Na.std"] == pytest.approx(x[record, :, feature].std())
    assert table.loc[1007, "Na.min"] == pytest.approx(x[record, :, feature].min())
    assert table.loc[1007, "Na.max"] == pytest.approx(x[record, :, feature].max())
    assert table.loc[1007, "Na.last"] == pytest.approx(x[record, 47, feature])
    observed_hours = int(bundle["mask"][record, :, feature].sum())
    assert table.loc[1007, "Na.missing_rate"] == pytest.approx(1 - observed_hours / 48)
    assert table.loc[1007, "static.gender"] == pytest.approx(bundle["static"][record, 1])
    assert table.loc[1007, "label"] == bundle["y"][record]


def test_flat_view_of_a_code_matrix():
    codes = np.array([[1, 0, 1], [0, 0, 1]], dtype=np.uint8)
    table = flat_view({"codes": codes, "code_names": np.array(["401", "428", "E849"]), "y": np.array([0, 1])})
    assert table.columns.tolist() == ["code.401", "code.428", "code.E849", "label"]
    np.testing.assert_array_equal(table.to_numpy()[:, :3], codes)


def test_flat_view_of_tensors_with_codes_has_both():
    bundle = dict(_bundle(4, seed=2), codes=np.eye(4, 2, dtype=np.uint8), code_names=np.array(["401", "428"]))
    table = flat_view(bundle, ["HR", "Na", "pH"], ["age", "gender"])
    assert table.columns[-3:].tolist() == ["code.401", "code.428", "label"]
    assert table.shape == (4, 2 + 18 + 2 + 1)
    with pytest.raises(ValueError, match="codes"):
        flat_view(dict(bundle, codes=np.zeros((3, 2))), ["HR", "Na", "pH"], ["age", "gender"])


def test_flat_view_refuses_names_of_another_feature_set():
    with pytest.raises(ValueError, match="3 time-series features but 2 feature_names"):
        flat_view(_bundle(5, seed=1), ["HR", "Na"], ["age", "gender"])
    with pytest.raises(ValueError, match="no names"):
        flat_view(_bundle(5, seed=1))


def test_mismatched_columns_are_refused_by_every_metric():
    real = _correlated_table(100, seed=1)
    other = real.rename(columns={"b": "HR.mean"}).assign(extra=1.0)
    for metric in (
        fidelity.variable_statistics,
        fidelity.dimension_wise_pearson,
        fidelity.correlation_distance,
        fidelity.mmd_rbf,
        fidelity.discriminator_auc,
        fidelity.separating_columns,
    ):
        with pytest.raises(ValueError, match=r"only in real \(1\): \['b'\]; only in synthetic \(2\): \['HR.mean', 'extra'\]"):
            metric(real, other)


def test_align_columns_reorders_and_to_matrix_fills_nan_with_real_medians():
    real = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 40.0]})
    synthetic = pd.DataFrame({"b": [np.nan, 5.0], "a": [7.0, np.nan]})
    assert align_columns(real, synthetic).columns.tolist() == ["a", "b"]
    np.testing.assert_array_equal(to_matrix(synthetic, real), [[7.0, 20.0], [2.0, 5.0]])


# ------------------------------------------------------------------------------ per variable / KS
def test_variable_statistics_identical_and_shifted():
    real = _correlated_table(2000, seed=1)
    same = fidelity.variable_statistics(real, real)
    np.testing.assert_array_equal(same["ks_statistic"], 0.0)
    np.testing.assert_allclose(same["mean_real"], same["mean_synthetic"])
    np.testing.assert_allclose(same["std_real"], real.std(ddof=0).to_numpy())
    shifted = real.assign(b=real["b"] + 100.0)
    table = fidelity.variable_statistics(real, shifted).set_index("variable")
    assert table.loc["b", "ks_statistic"] == 1.0
    assert table.loc["a", "ks_statistic"] == 0.0
    # independent draw from the same distribution: KS statistic as scipy computes it, small
    other = _correlated_table(2000, seed=2)
    table = fidelity.variable_statistics(real, other).set_index("variable")
    assert table.loc["c", "ks_statistic"] == pytest.approx(stats.ks_2samp(real["c"], other["c"]).statistic)
    assert table["ks_statistic"].max() < 0.06


def test_variable_statistics_counts_nan_cells():
    real = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    synthetic = pd.DataFrame({"a": [1.0, np.nan, np.nan, 4.0]})
    row = fidelity.variable_statistics(real, synthetic).iloc[0]
    assert (row["nan_rate_real"], row["nan_rate_synthetic"]) == (0.0, 0.5)
    assert row["mean_synthetic"] == 2.5


# ------------------------------------------------------------------------------ prevalence / mean r
def test_dimension_wise_pearson_on_prevalences():
    rng = np.random.default_rng(3)
    prevalence = np.linspace(0.01, 0.6, 40)
    real = pd.DataFrame((rng.random((5000, 40)) < prevalence).astype(float), columns=[f"code.{i}" for i in range(40)])
    assert fidelity.dimension_wise_pearson(real, real) == pytest.approx(1.0)
    same_distribution = pd.DataFrame((rng.random((5000, 40)) < prevalence).astype(float), columns=real.columns)
    assert fidelity.dimension_wise_pearson(real, same_distribution) > 0.99
    # prevalences handed to the wrong codes (reversed order): r ≈ −1
    reversed_codes = pd.DataFrame((rng.random((5000, 40)) < prevalence[::-1]).astype(float), columns=real.columns)
    assert fidelity.dimension_wise_pearson(real, reversed_codes) < -0.99
    # prevalences unrelated to the real ones (a random permutation): r near 0
    shuffled = pd.DataFrame((rng.random((5000, 40)) < rng.permutation(prevalence)).astype(float), columns=real.columns)
    expected = stats.pearsonr(real.mean(), shuffled.mean()).statistic
    assert fidelity.dimension_wise_pearson(real, shuffled) == pytest.approx(expected)
    assert abs(expected) < 0.5


# ------------------------------------------------------------------------------ correlation distance
def test_correlation_distance_identical_and_decorrelated():
    real = _correlated_table(5000, seed=4)
    assert fidelity.correlation_distance(real, real) == {"frobenius": 0.0, "mean_abs_diff": 0.0}
    # shuffling each column separately keeps every marginal and destroys every correlation
    rng = np.random.default_rng(5)
    decorrelated = real.apply(lambda column: rng.permutation(column.to_numpy()))
    corr = np.corrcoef(real.to_numpy().T)
    off_diagonal = corr[np.triu_indices(4, k=1)]
    result = fidelity.correlation_distance(real, decorrelated)
    assert result["frobenius"] == pytest.approx(np.sqrt(2 * (off_diagonal**2).sum()), abs=0.05)
    assert result["mean_abs_diff"] == pytest.approx(np.abs(off_diagonal).mean(), abs=0.03)
    assert fidelity.variable_statistics(real, decorrelated)["ks_statistic"].max() == 0.0


def test_correlation_distance_with_a_constant_synthetic_column():
    real = _correlated_table(1000, seed=6)
    constant = real.assign(a=0.5)
    result = fidelity.correlation_distance(real, constant)
    rho_ab = np.corrcoef(real["a"], real["b"])[0, 1]
    # a constant column correlates 0 with everything: |Δ| of (a, b) is |ρ_ab|
    assert np.isfinite(result["frobenius"]) and result["frobenius"] > abs(rho_ab)


# ------------------------------------------------------------------------------ MMD
def _mmd2_direct(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """Unbiased MMD² from full kernel matrices (an independent computation)."""
    def kernel(a, b):
        return np.exp(-gamma * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    n, m = len(x), len(y)
    return (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def test_mmd_matches_direct_computation_for_any_chunk():
    real, other = _correlated_table(300, seed=7), _correlated_table(200, seed=8, shift=0.3)
    result = fidelity.mmd_rbf(real, other, chunk=7)
    assert fidelity.mmd_rbf(real, other, chunk=1024)["mmd2"] == pytest.approx(result["mmd2"], rel=1e-10)
    assert result["mmd2"] == pytest.approx(_mmd2_direct(real.to_numpy(), other.to_numpy(), result["gamma"]), rel=1e-8)


def test_mmd_identical_same_distribution_and_shifted():
    real = _correlated_table(2000, seed=9)
    assert abs(fidelity.mmd_rbf(real, real)["mmd2"]) < 1e-3
    assert abs(fidelity.mmd_rbf(real, _correlated_table(2000, seed=10))["mmd2"]) < 2e-3
    assert fidelity.mmd_rbf(real, _correlated_table(2000, seed=10, shift=3.0))["mmd2"] > 0.5


# ------------------------------------------------------------------------------ autocorrelation
def _ar1(n: int, steps: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, steps, 2))
    x = np.zeros_like(noise)
    for t in range(steps):  # time loop only (vectorised over records and features)
        x[:, t] = (phi * x[:, t - 1] if t else 0) + noise[:, t]
    return x


def test_autocorrelation_matches_a_per_series_computation():
    x = _ar1(40, 48, 0.8, seed=11)
    x[3, :, 1] = 0.25  # a constant series: left out
    result = fidelity.autocorrelation(x, [1, 3])
    for j in range(2):
        for i, lag in enumerate([1, 3]):
            values = []
            for record in range(40):
                series = x[record, :, j] - x[record, :, j].mean()
                if np.allclose(series, 0):
                    continue
                values.append(np.correlate(series[:-lag], series[lag:])[0] / (series @ series))
            assert result[i, j] == pytest.approx(np.mean(values))


def test_autocorrelation_difference_identical_and_time_shuffled():
    x = _ar1(500, 48, 0.9, seed=12)
    same = fidelity.autocorrelation_difference(x, x, [1, 2, 6], ["a", "b"])
    assert same["mean_abs_diff"] == 0.0 and same["mean_abs_diff_per_lag"] == [0.0, 0.0, 0.0]
    rng = np.random.default_rng(13)
    shuffled = np.take_along_axis(x, rng.permuted(np.broadcast_to(np.arange(48)[None, :, None], x.shape), axis=1), axis=1)
    result = fidelity.autocorrelation_difference(x, shuffled, [1, 2, 6], ["a", "b"])
    real_lag1 = fidelity.autocorrelation(x, [1]).mean()
    # a time-shuffled series has ACF ≈ −1/48: the difference is about the real ACF itself
    assert real_lag1 > 0.6
    assert result["mean_abs_diff_per_lag"][0] == pytest.approx(real_lag1 + 1 / 48, abs=0.03)
    assert result["mean_abs_diff_per_lag"][0] > result["mean_abs_diff_per_lag"][2]
    with pytest.raises(ValueError, match="hours and features must match"):
        fidelity.autocorrelation_difference(x, x[:, :, :1], [1], ["a", "b"])
    with pytest.raises(ValueError, match="must lie in 1..47"):
        fidelity.autocorrelation(x, [48])


# ------------------------------------------------------------------------------ discriminator
def test_separating_columns_identical_and_one_shifted_column():
    real = _correlated_table(1500, seed=14)
    assert all(row["auc"] == pytest.approx(0.5) for row in fidelity.separating_columns(real, real))
    shifted = _correlated_table(1500, seed=15)
    shifted["b"] = shifted["b"] - 100.0  # disjoint from the real column: AUC 1 whichever way it points
    top = fidelity.separating_columns(real, shifted, top=2)
    assert len(top) == 2 and top[0]["column"] == "b" and top[0]["auc"] == pytest.approx(1.0)
    assert top[0]["synthetic_median"] < top[0]["real_median"] and top[1]["auc"] < 0.6


def test_discriminator_auc_identical_same_distribution_and_shifted():
    real = _correlated_table(1500, seed=14)
    assert fidelity.discriminator_auc(real, real)["auc"] == pytest.approx(0.5)
    assert abs(fidelity.discriminator_auc(real, _correlated_table(1500, seed=15))["auc"] - 0.5) < 0.05
    assert fidelity.discriminator_auc(real, _correlated_table(1500, seed=15, shift=1.0))["auc"] > 0.9
    # same marginals, no correlations: the discriminator sees it
    rng = np.random.default_rng(16)
    decorrelated = real.apply(lambda column: rng.permutation(column.to_numpy()))
    assert fidelity.discriminator_auc(real, decorrelated)["auc"] > 0.8


def _lattice_table(n: int, seed: int) -> pd.DataFrame:
    """Like real EHR columns: a continuous one, a 13-level score (GCS-like, a third at the top level),
    a binary flag and a continuous one with a 30 % point mass at its median (a gap fill)."""
    rng = np.random.default_rng(seed)
    level = np.where(rng.random(n) < 0.33, 12, rng.integers(0, 13, n)) / 12.0
    filled = np.where(rng.random(n) < 0.3, 0.5, rng.random(n))
    return pd.DataFrame({"value": rng.normal(size=n), "score": level, "flag": (rng.random(n) < 0.3).astype(float),
                         "filled": filled})


def test_per_column_detector_sees_a_lattice_replaced_by_jitter_where_the_rank_test_does_not():
    real = _lattice_table(1500, seed=40)
    synthetic = _lattice_table(1500, seed=41)
    synthetic["score"] += np.random.default_rng(42).normal(scale=0.01, size=1500)  # same ranks, off the lattice
    report = fidelity.per_column_detectors(real, synthetic, top=None, seed=3)
    by_column = {row["column"]: row for row in report["columns"]}
    assert report["columns"][0]["column"] == "score" and by_column["score"]["auc"] > 0.9
    assert by_column["score"]["mann_whitney_auc"] < 0.55  # the rank test does not flag it ...
    rank_test = {row["column"]: row["auc"] for row in fidelity.separating_columns(real, synthetic)}
    assert rank_test["score"] < 0.55  # ... nor does separating_columns
    assert by_column["score"]["real_mode_share"] > 0.3 and by_column["score"]["synthetic_share_at_real_mode"] == 0.0
    assert by_column["score"]["real_distinct"] == 13 and by_column["score"]["synthetic_distinct"] > 1000
    for column in ("value", "flag", "filled"):
        assert by_column[column]["auc"] < 0.6, column
    # the point mass of a gap fill, spread out: found the same way
    spread = _lattice_table(1500, seed=41)
    at_fill = spread["filled"] == 0.5
    spread.loc[at_fill, "filled"] = 0.5 + np.random.default_rng(43).normal(scale=0.01, size=int(at_fill.sum()))
    top = fidelity.per_column_detectors(real, spread, top=1, seed=3)["columns"][0]
    # a perfect detector: 0.3 + 0.7 · 0.3 + 0.7² / 2 = 0.755 (the rest of both sides look alike)
    assert top["column"] == "filled" and top["auc"] > 0.7 and top["mann_whitney_auc"] < 0.55


def _measured_together(n: int, seed: int, together: bool) -> pd.DataFrame:
    """Missing rates of three labs and two vitals: in real records the labs are drawn at the same hours
    (equal rates), in the other table each lab's rate is drawn on its own from the same marginal."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, 49, (n, 3)) / 48
    labs = np.repeat(draws[:, :1], 3, axis=1) if together else draws
    return pd.DataFrame({"static.age": rng.random(n), "Na.missing_rate": labs[:, 0], "K.missing_rate": labs[:, 1],
                         "BUN.missing_rate": labs[:, 2], "HR.mean": rng.random(n), "Na.mean": rng.random(n)})


def test_per_group_detectors_find_a_joint_giveaway_that_no_single_column_shows():
    assert [fidelity.column_kind(c) for c in ("static.icu_type=MICU", "code.428", "label", "HR.missing_rate", "pH.std")] == \
        ["static", "code", "label", "missing_rate", "std"]
    real, synthetic = _measured_together(1500, 50, True), _measured_together(1500, 51, False)
    columns = fidelity.per_column_detectors(real, synthetic, top=None, seed=2)["columns"]
    assert max(row["auc"] for row in columns) < 0.6  # every marginal alike
    groups = fidelity.per_group_detectors(real, synthetic, seed=2)
    assert [(g["group"], g["n_columns"]) for g in groups["groups"]][0] == ("missing_rate", 3)
    by_group = {g["group"]: g["auc"] for g in groups["groups"]}
    assert by_group["missing_rate"] > 0.9 and by_group["mean"] < 0.6 and by_group["static"] < 0.6
    assert groups["n_per_side"] == 1500
    report = fidelity.discriminator_report(real, synthetic, families=("gbm",), seed=2)
    assert report["per_group"] == groups


def test_every_detector_family_scores_about_one_half_on_real_against_real():
    table = _lattice_table(3000, seed=44).assign(b=lambda t: t["value"] + 0.5 * np.random.default_rng(45).normal(size=3000))
    first, second = table.iloc[:1500], table.iloc[1500:]
    result = fidelity.detector_aucs(first, second, n_splits=5, seed=1)
    assert set(result["families"]) == set(fidelity.DETECTOR_FAMILIES) and result["n_per_side"] == 1500
    # the AUC of 1500 vs 1500 records has a standard error of about 0.01; 5 folds average it
    for family, scores in result["families"].items():
        assert scores["auc"] == pytest.approx(0.5, abs=0.05), family
    columns = fidelity.per_column_detectors(first, second, top=None, seed=1)["columns"]
    assert max(row["auc"] for row in columns) < 0.56
    # seeded: the same call gives the same numbers
    assert fidelity.detector_aucs(first, second, n_splits=5, seed=1) == result


def test_every_detector_family_finds_a_shift_and_the_per_column_detector_names_the_column():
    real = _correlated_table(1500, seed=14)
    shifted = _correlated_table(1500, seed=15)
    shifted["c"] = shifted["c"] + 1.0
    result = fidelity.detector_aucs(real, shifted, seed=2)
    for family, scores in result["families"].items():
        assert scores["auc"] > 0.7, family
    columns = fidelity.per_column_detectors(real, shifted, top=2, seed=2)["columns"]
    assert columns[0]["column"] == "c" and columns[0]["auc"] > 0.7 and columns[1]["auc"] < 0.6
    assert columns[0]["synthetic_median"] > columns[0]["real_median"]


def test_discriminator_report_has_every_family_the_floor_and_the_giveaway_columns():
    real, holdout = _lattice_table(600, seed=46), _lattice_table(300, seed=47)
    synthetic = _lattice_table(600, seed=48).assign(flag=lambda t: t["flag"] + 0.001)  # a binary column off {0, 1}
    report = fidelity.discriminator_report(real, synthetic, holdout, families=("logistic_regression", "gbm"),
                                           n_splits=3, per_column_top=2, seed=5)
    assert list(report["families"]) == ["logistic_regression", "gbm"]
    assert report["auc"] == report["families"]["logistic_regression"]["auc"] and report["n_per_side"] == 600
    assert report["floor"]["n_per_side"] == 300 and set(report["floor"]["families"]) == {"logistic_regression", "gbm"}
    assert report["floor"]["families"]["gbm"]["auc"] == pytest.approx(0.5, abs=0.08)
    assert report["families"]["gbm"]["auc"] > 0.95  # a GBM sees the flag off its two values
    assert report["per_column"]["columns"][0]["column"] == "flag" and len(report["per_column"]["columns"]) == 2
    assert fidelity.discriminator_report(real, synthetic, n_splits=3, seed=5)["floor"] is None
    with pytest.raises(ValueError, match="detector families"):
        fidelity.detector_aucs(real, synthetic, families=("svm",))
    with pytest.raises(ValueError, match="only in real"):
        fidelity.discriminator_report(real, synthetic, holdout.drop(columns="flag"))


# ------------------------------------------------------------------------------ sample-level (quality.py)


def _gaussian_table(n: int, seed: int, shift: float = 0.0, columns: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, columns)) + shift, columns=[f"v{j}" for j in range(columns)])


def test_prdc_and_alpha_precision_match_synthcity():
    data, reference = synthcity_reference()
    result = quality.prdc(data["real"], data["synthetic"], k=5)
    for metric in ("precision", "recall", "density", "coverage"):
        assert result[metric] == pytest.approx(reference["prdc"][metric], abs=1e-12), metric
    alpha = quality.alpha_precision_beta_recall_authenticity(data["real"], data["synthetic"])
    expected = reference["alpha_precision"]
    assert alpha["delta_precision_alpha"] == pytest.approx(expected["delta_precision_alpha"], abs=1e-12)
    assert alpha["delta_recall_beta"] == pytest.approx(expected["delta_coverage_beta"], abs=1e-12)
    np.testing.assert_allclose(alpha["precision_curve"], expected["precision_curve"], atol=1e-12)
    np.testing.assert_allclose(alpha["recall_curve"], expected["recall_curve"], atol=1e-12)
    # Authenticity differs by definition: synthcity compares real record i's distance to its nearest
    # synthetic record j with the nearest-real distance of *real record j*; its number is that rule.
    real, synthetic = data["real"], data["synthetic"]
    pairwise = np.linalg.norm(real[:, None, :] - real[None, :, :], axis=-1)
    np.fill_diagonal(pairwise, np.inf)
    real_to_real = pairwise.min(axis=1)
    to_synthetic = np.linalg.norm(real[:, None, :] - synthetic[None, :, :], axis=-1)
    synthcity_rule = real_to_real[to_synthetic.argmin(axis=1)] < to_synthetic.min(axis=1)
    assert synthcity_rule.mean() == pytest.approx(expected["authenticity"], abs=1e-12)
    # the paper's rule, per synthetic record: its 30 near-copies of real records are not authentic
    paper_rule = to_synthetic.min(axis=0) > real_to_real[to_synthetic.argmin(axis=0)]
    assert not paper_rule[:30].any()
    assert alpha["authenticity"] == pytest.approx(paper_rule.mean(), abs=1e-12)


def test_sample_level_metrics_identical_tables():
    real = _gaussian_table(800, seed=21)
    result = quality.prdc(real, real.copy(), k=5)
    # each real ball holds its own copy and k − 1 further records strictly inside: density exactly 1
    assert (result["precision"], result["recall"], result["density"], result["coverage"]) == (1.0, 1.0, 1.0, 1.0)
    alpha = quality.alpha_precision_beta_recall_authenticity(real, real.copy())
    assert alpha["authenticity"] == 0.0  # every synthetic record is a copy
    assert alpha["delta_precision_alpha"] > 0.99 and alpha["delta_recall_beta"] > 0.99


def test_sample_level_metrics_disjoint_clouds():
    real, far = _gaussian_table(500, seed=22), _gaussian_table(500, seed=23, shift=50.0)
    result = quality.prdc(real, far)
    assert (result["precision"], result["recall"], result["density"], result["coverage"]) == (0.0, 0.0, 0.0, 0.0)
    alpha = quality.alpha_precision_beta_recall_authenticity(real, far)
    assert alpha["delta_precision_alpha"] == pytest.approx(0.0, abs=1e-12)
    assert alpha["delta_recall_beta"] == pytest.approx(0.0, abs=1e-12)
    assert alpha["authenticity"] == 1.0


def test_sample_level_metrics_same_distribution_and_mode_collapse():
    real, fresh = _gaussian_table(1500, seed=24), _gaussian_table(1500, seed=25)
    result = quality.prdc(real, fresh)
    assert min(result["precision"], result["recall"], result["coverage"]) > 0.9
    assert result["density"] == pytest.approx(1.0, abs=0.1)
    alpha = quality.alpha_precision_beta_recall_authenticity(real, fresh)
    assert alpha["delta_precision_alpha"] > 0.95
    # a fresh record lands inside its nearest real record's 1-NN ball about half the time
    assert alpha["authenticity"] == pytest.approx(0.5, abs=0.05)
    assert alpha["delta_recall_beta"] == pytest.approx(0.5, abs=0.1)
    # every synthetic record near one of 5 real ones: precise, but covering almost nothing
    rng = np.random.default_rng(26)
    collapsed = pd.DataFrame(np.repeat(real.iloc[:5].to_numpy(), 300, axis=0) + 0.01 * rng.normal(size=(1500, 5)),
                             columns=real.columns)
    result = quality.prdc(real, collapsed)
    # (coverage: the balls of the 5 records and of their real neighbours, whose balls reach them)
    assert result["precision"] == 1.0 and result["coverage"] < 0.05 and result["recall"] < 0.01
    # ... and piled up in a few real balls: density far above 1
    assert result["density"] > 1.0
    assert quality.alpha_precision_beta_recall_authenticity(real, collapsed)["delta_recall_beta"] < 0.05


def test_column_distances_identical_shifted_and_binary():
    real = _gaussian_table(1000, seed=27).assign(flag=(np.arange(1000) % 5 == 0).astype(float))
    same = quality.column_distances(real, real)
    assert same["variable"].tolist() == real.columns.tolist()
    assert (same["wasserstein"] == 0).all() and (same["jensen_shannon"] == 0).all()
    shifted = real.assign(v1=real["v1"] + real["v1"].std(ddof=0), v2=real["v2"] + 100.0,
                          flag=(np.arange(1000) % 2 == 0).astype(float))
    table = quality.column_distances(real, shifted).set_index("variable")
    # the same values moved by one standard deviation: W1 = 1 SD
    assert table.loc["v1", "wasserstein"] == pytest.approx(1.0, rel=1e-9)
    # synthetic values beyond the real range fall in their own bin: disjoint histograms
    assert table.loc["v2", "jensen_shannon"] == pytest.approx(1.0)
    assert table.loc["v0", "wasserstein"] == 0.0
    # a 0/1 column: two bins, prevalence 0.2 vs 0.5; JS distance by hand (base 2)
    p, q = np.array([0.8, 0.2]), np.array([0.5, 0.5])
    m = (p + q) / 2
    expected = np.sqrt(0.5 * (p * np.log2(p / m)).sum() + 0.5 * (q * np.log2(q / m)).sum())
    assert table.loc["flag", "jensen_shannon"] == pytest.approx(expected, rel=1e-9)
    summary = quality.summarise_column_distances(table.reset_index(), top=2)
    assert list(summary["jensen_shannon"]["worst"]) == ["v2", "v1"]
    assert summary["wasserstein"]["max"] == pytest.approx(100.0 / real["v2"].std(ddof=0))


def test_standardise_and_equal_size_samples():
    real = _gaussian_table(400, seed=28, shift=3.0).assign(constant=2.0)
    (z,) = quality.standardise(real, real)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0)[:-1], 1.0)
    assert (z[:, -1] == 0.0).all()  # a constant column is only centred
    a, b = quality.equal_size_samples(real, real.iloc[:150], max_records=100, seed=1)
    assert len(a) == len(b) == 100 and a.index.is_unique
    a, b = quality.equal_size_samples(real, real.iloc[:150], max_records=None)
    assert len(a) == len(b) == 150


def test_quality_metrics_refuse_mismatched_columns():
    real = _correlated_table(100, seed=1)
    other = real.rename(columns={"b": "HR.mean"})
    for metric in (quality.prdc, quality.alpha_precision_beta_recall_authenticity, quality.column_distances):
        with pytest.raises(ValueError, match=r"only in real \(1\): \['b'\]"):
            metric(real, other)
    with pytest.raises(ValueError, match="same width"):
        quality.prdc(np.zeros((10, 3)), np.zeros((10, 2)))


def test_co_measurement_compares_which_variables_are_measured_at_the_same_hours():
    from ehr_adversarial.synthetic_evaluation.fidelity import co_measurement

    rng = np.random.default_rng(0)
    real = rng.random((200, 48, 3)) < 0.2
    real[:, :, 1] = real[:, :, 0]  # a panel: always drawn together
    synthetic = rng.random((200, 48, 3)) < 0.2  # the same rates, drawn apart
    result = co_measurement(real, synthetic, ["BUN", "Creatinine", "HR"], top=2)
    first = result["pairs"][0]
    assert first["pair"] == "BUN/Creatinine" and first["real"] == 1.0
    expected = np.sum(synthetic[:, :, 0] & synthetic[:, :, 1]) / np.sum(synthetic[:, :, 0] | synthetic[:, :, 1])
    assert first["synthetic"] == pytest.approx(expected) and first["synthetic"] < 0.2
    assert len(result["pairs"]) == 2
    assert co_measurement(real, real, ["BUN", "Creatinine", "HR"])["mean_abs_diff"] == 0.0
    assert 0.25 < result["mean_abs_diff"] < 0.35  # (|1 - 0.11| + two pairs near 0) / 3
