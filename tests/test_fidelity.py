"""Known-answer tests of the flat view and the fidelity metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ehr_adversarial.synthetic_evaluation import fidelity
from ehr_adversarial.synthetic_evaluation.flat_view import align_columns, flat_view, to_matrix


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
