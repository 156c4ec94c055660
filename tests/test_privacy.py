"""Known-answer tests of the privacy metrics: on simulated tables and on real PhysioNet 2012 records.

The real-data "generators" are a copier (synthetic = the training records) and a perfect
sampler (synthetic = other real records of the same population, unseen by anyone).
"""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from ehr_adversarial.synthetic_evaluation import privacy
from tests.conftest import synthcity_reference


def _table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """height ~ gender, weight ~ height, two independent labs; continuous, no duplicates."""
    rng = np.random.default_rng(seed)
    gender = (rng.random(n) < 0.55).astype(float)
    height = 0.4 + 0.2 * gender + 0.08 * rng.normal(size=n)
    return pd.DataFrame(
        {
            "static.gender": gender,
            "static.height": height,
            "static.weight": height + 0.1 * rng.normal(size=n),
            "HR.mean": rng.random(n) + shift,
            "HR.max": rng.random(n) + shift,
            "Na.mean": rng.random(n),
        }
    )


@pytest.fixture(scope="module")
def physionet_records(physionet2012_dir) -> pd.DataFrame:
    """Real set-a records as a flat table: per-parameter mean over 48 h, min–max scaled by the
    5th/95th percentiles (as the features pipeline scales), descriptors as static columns."""
    chunks = []
    with tarfile.open(physionet2012_dir / "set-a.tar.gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".txt"):
                chunks.append(archive.extractfile(member).read().split(b"\n", 1)[1])  # drop the header
    long = pd.read_csv(io.BytesIO(b"".join(chunks)), names=["time", "parameter", "value"])
    long["record_id"] = long["value"].where(long["parameter"] == "RecordID").ffill().astype("int64")
    long = long[(long["parameter"] != "RecordID") & (long["value"] >= 0)]  # −1 = missing
    wide = long.pivot_table(index="record_id", columns="parameter", values="value", aggfunc="mean")
    low, high = wide.quantile(0.05), wide.quantile(0.95)
    scaled = ((wide - low) / (high - low).where(high > low, 1.0)).clip(0, 1)
    statics = {"Age", "Gender", "Height", "ICUType"}
    scaled.columns = [f"static.{c}" if c in statics else f"{c}.mean" for c in scaled.columns]
    return scaled


# ------------------------------------------------------------------------------ distances
def test_nearest_distances_match_brute_force_and_exclude_only_self():
    rng = np.random.default_rng(1)
    reference, query = rng.random((300, 5)), rng.random((50, 5))
    expected = np.sort(cdist(query, reference), axis=1)[:, :2]
    np.testing.assert_allclose(privacy.nearest_distances(query, reference, k=2), expected, atol=1e-12)
    # self-exclusion drops the record's own match, not its duplicates elsewhere
    with_duplicate = np.vstack([reference, reference[:1]])
    within = privacy.nearest_distances(None, with_duplicate)[:, 0]
    all_pairs = cdist(with_duplicate, with_duplicate)
    np.fill_diagonal(all_pairs, np.inf)
    np.testing.assert_allclose(within, all_pairs.min(axis=1), atol=1e-7)
    assert within[0] == within[-1] == 0.0 and (within[1:-1] > 0).all()


def test_a_copying_generator_has_zero_dcr_and_full_exact_match():
    train, holdout = _table(1000, seed=2), _table(1000, seed=3)
    summary, distances = privacy.distance_metrics(train.copy(), train, holdout)
    # zero up to the round-off of scikit-learn's Euclidean distances (seen: a mean of 3e-9 on a busy
    # 2-core machine), the tolerance the exact-match rate uses too
    assert summary["dcr_synthetic_to_train"] == pytest.approx({"median": 0.0, "mean": 0.0, "p05": 0.0}, abs=1e-6)
    assert summary["exact_match_rate"] == 1.0
    assert summary["nndr_synthetic_to_train"]["median"] == 0.0
    # the baseline is holdout→train (real records the train set lacks), not synthetic→train
    assert summary["exact_match_rate_holdout_baseline"] == 0.0
    assert summary["dcr_holdout_to_train"]["median"] > 0.05
    assert summary["dcr_median_ratio_to_baseline"] == 0.0
    # equal-sized references: copies of all 1000 train records vs a 1000-record holdout
    assert summary["share_closer_to_train"] == 1.0
    assert summary["distinct_nearest_share"] == 1.0  # each copy finds its own original
    assert set(distances["comparison"]) == {
        "synthetic→train", "holdout→train", "synthetic→train_subsample", "synthetic→holdout"
    }
    assert (distances["comparison"] == "holdout→train").sum() == 1000


def test_independent_draws_look_like_the_holdout():
    train, holdout, fresh = _table(2000, seed=4), _table(2000, seed=5), _table(2000, seed=6)
    summary, _ = privacy.distance_metrics(fresh, train, holdout)
    assert summary["exact_match_rate"] == 0.0
    assert summary["dcr_median_ratio_to_baseline"] == pytest.approx(1.0, abs=0.06)
    assert summary["share_closer_to_train"] == pytest.approx(0.5, abs=0.03)
    assert summary["nndr_synthetic_to_train"]["median"] == pytest.approx(
        summary["nndr_holdout_to_train"]["median"], abs=0.05
    )


def test_a_collapsed_generator_has_few_distinct_nearest_records():
    train, holdout = _table(1000, seed=16), _table(500, seed=17)
    collapsed = pd.DataFrame(np.repeat(train.iloc[[3, 500]].to_numpy() + 0.01, 300, axis=0), columns=train.columns)
    summary, _ = privacy.distance_metrics(collapsed, train, holdout)
    assert summary["distinct_nearest_share"] == 2 / 600
    assert summary["distinct_nearest_share_holdout_baseline"] > 0.5


def test_exact_match_rate_counts_copied_records():
    train = _table(500, seed=7)
    synthetic = pd.concat([train.iloc[:100], _table(300, seed=8)])
    assert privacy.exact_match_rate(synthetic, train) == 0.25


# ------------------------------------------------------------------------------ membership inference
def test_membership_inference_copy_noise_and_independent():
    train, holdout = _table(1500, seed=9), _table(1500, seed=10)
    assert privacy.membership_inference_auc(train.copy(), train, holdout)["auc"] > 0.99
    # copies with small noise still give members away
    noisy = train + np.random.default_rng(11).normal(scale=0.01, size=train.shape)
    assert privacy.membership_inference_auc(noisy, train, holdout)["auc"] > 0.9
    independent = privacy.membership_inference_auc(_table(1500, seed=12), train, holdout)
    assert independent["auc"] == pytest.approx(0.5, abs=0.04)
    assert independent["n_members"] == independent["n_non_members"] == 1500


def test_membership_inference_refuses_a_holdout_of_another_feature_set():
    train = _table(100, seed=13)
    with pytest.raises(ValueError, match=r"only in real \(1\): \['Na.mean'\]"):
        privacy.membership_inference_auc(train, train, train.drop(columns="Na.mean"))


# ------------------------------------------------------------------------------ attribute inference
def test_attribute_inference_copy_vs_independent():
    train, holdout = _table(1500, seed=14), _table(1500, seed=15)
    copied = privacy.attribute_inference(train.copy(), train, holdout, ["static.gender", "HR.mean"])
    # the kNN finds each member's own copy: its attributes come back exactly
    assert copied["static.gender"]["auc_members"] == 1.0
    assert copied["HR.mean"]["auc_members"] == 1.0
    # on non-members only population structure helps: gender from height, HR from nothing
    assert copied["static.gender"]["auc_non_members"] == pytest.approx(0.9, abs=0.07)
    fresh = privacy.attribute_inference(_table(1500, seed=16), train, holdout, ["static.gender", "HR.mean"])
    assert fresh["static.gender"]["auc_members"] == pytest.approx(fresh["static.gender"]["auc_non_members"], abs=0.04)
    # HR.mean and HR.max are both hidden (same variable), the labs are independent: chance
    assert fresh["HR.mean"]["auc_members"] == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="not columns of the flat view"):
        privacy.attribute_inference(train, train, holdout, ["static.age"])


# ------------------------------------------------------------------------------ real records
def test_privacy_metrics_on_real_physionet_records(physionet_records):
    records = physionet_records.sample(frac=1.0, random_state=0)
    assert len(records) == 4000
    train, holdout, unseen = records.iloc[:1500], records.iloc[1500:3000], records.iloc[3000:]
    copy_mia = privacy.membership_inference_auc(train.copy(), train, holdout)["auc"]
    fresh_mia = privacy.membership_inference_auc(unseen, train, holdout)["auc"]
    assert copy_mia > 0.99
    assert fresh_mia == pytest.approx(0.5, abs=0.05)
    copied, _ = privacy.distance_metrics(train.copy(), train, holdout)
    fresh, _ = privacy.distance_metrics(unseen, train, holdout)
    assert copied["exact_match_rate"] == 1.0 and fresh["exact_match_rate"] == 0.0
    # holdout→train is the same computation for both generators: the baseline does not move
    assert copied["dcr_holdout_to_train"] == fresh["dcr_holdout_to_train"]
    assert fresh["dcr_median_ratio_to_baseline"] == pytest.approx(1.0, abs=0.1)
    targets = ["static.Gender", "Lactate.mean"]  # Lactate is missing (NaN) in most records
    fresh_inference = privacy.attribute_inference(unseen, train, holdout, targets)
    copy_inference = privacy.attribute_inference(train.copy(), train, holdout, targets)
    for target in targets:
        assert copy_inference[target]["auc_members"] == 1.0
        assert fresh_inference[target]["auc_members"] == pytest.approx(fresh_inference[target]["auc_non_members"], abs=0.06)
        # on non-members only population structure helps (gender from height/weight, lactate
        # from other labs): better than chance, far from the copied members' 1.0
        assert 0.55 < copy_inference[target]["auc_non_members"] < 0.8


# ------------------------------------------------------------------------------ identifiability, DOMIAS


def test_identifiability_and_domias_kde_match_synthcity():
    data, reference = synthcity_reference()
    real, synthetic = (pd.DataFrame(data[name]) for name in ("real", "synthetic"))
    assert privacy.identifiability_score(real, synthetic) == pytest.approx(reference["identifiability"]["score"], abs=1e-12)
    candidates = np.concatenate([data["members"], data["non_members"]])
    is_member = np.r_[np.ones(150), np.zeros(150)]
    scores = privacy.domias_scores(data["synthetic_3d"], data["reference"], candidates, density="kde")
    assert roc_auc_score(is_member, scores) == pytest.approx(reference["domias_kde"]["aucroc"], abs=1e-12)


def test_identifiability_copy_and_independent():
    train, holdout = _table(1200, seed=18), _table(600, seed=19)
    copied = privacy.identifiability(train.copy(), train, holdout)
    assert copied["score"] == 1.0
    # 600 of the 1200 copies: exactly the patients whose copy was drawn are identified
    assert copied["score_at_holdout_size"] == 0.5
    fresh = privacy.identifiability(_table(1200, seed=20), train, holdout)
    # as many independent records as training ones: the closer one about half the time
    assert fresh["score"] == pytest.approx(0.5, abs=0.05)
    # at equal reference sizes, fresh synthetic records identify as many patients as unseen real ones
    assert fresh["score_at_holdout_size"] == pytest.approx(fresh["holdout_baseline"], abs=0.05)
    assert copied["holdout_baseline"] == fresh["holdout_baseline"] < 0.5
    assert (fresh["n_train"], fresh["n_synthetic"], fresh["n_reference"]) == (1200, 1200, 600)


@pytest.mark.parametrize(("density", "n_neighbors", "pca_components", "copy_auc_above"),
                         [("knn", 1, None, 0.99), ("kde", 1, None, 0.65), ("kde", 1, 3, 0.52)])
def test_domias_copy_noise_and_independent(density, n_neighbors, pca_components, copy_auc_above):
    train, holdout = _table(1500, seed=21), _table(1000, seed=22)
    settings = {"density": density, "n_neighbors": n_neighbors, "pca_components": pca_components}
    independent = privacy.domias_membership_inference(_table(1500, seed=23), train, holdout, **settings)
    assert independent["auc"] == pytest.approx(0.5, abs=0.05)
    assert (independent["n_members"], independent["n_non_members"], independent["n_reference"]) == (500, 500, 500)
    copied = privacy.domias_membership_inference(train.copy(), train, holdout, **settings)["auc"]
    # a Gaussian KDE with Scott's bandwidth smooths copies out (more so in fewer PCA components):
    # weaker than the 1-NN density, for which the copy of a member has density ratio +∞
    assert copied > copy_auc_above
    if density == "knn":
        assert copied == 1.0
        noisy = train + np.random.default_rng(24).normal(scale=0.01, size=train.shape)
        assert privacy.domias_membership_inference(noisy, train, holdout, **settings)["auc"] > 0.95


def test_domias_refuses_an_unknown_density_and_a_tiny_holdout():
    train = _table(50, seed=25)
    with pytest.raises(ValueError, match="unknown density 'bnaf'"):
        privacy.domias_membership_inference(train, train, _table(50, seed=26), density="bnaf")
    with pytest.raises(ValueError, match="it has 3 record"):
        privacy.domias_membership_inference(train, train, _table(3, seed=27))
