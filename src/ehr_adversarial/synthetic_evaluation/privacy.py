"""Privacy: does the synthetic data reveal the real records the generator trained on?

Three real tables take part: `train` (what the generator saw), `holdout` (real records
of the same population it never saw) and `synthetic`. Every distance is Euclidean on
the flat view (flat_view.py) and computed by scikit-learn's brute-force NearestNeighbors,
which works through the query set in memory-bounded chunks (10k × 10k records is fine).

The real→real baseline is holdout→train: real records the reference set does NOT
contain, against that reference. An earlier implementation computed its "original→
original" distances as synthetic→original, so its baseline was no baseline at all; a
train→train baseline must exclude each record's match with itself (`exclude_self`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from .flat_view import align_columns, to_matrix

logger = logging.getLogger(__name__)

# Distances at or below this count as an exact copy (float32 round-trips of [0, 1] data).
EXACT_MATCH_TOLERANCE = 1e-6


def nearest_distances(
    query: np.ndarray | None, reference: np.ndarray, k: int = 1, n_jobs: int | None = None, return_index: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(len(query), k) Euclidean distances to the k nearest rows of `reference`, ascending
    (and their row numbers in `reference` with return_index).

    query=None queries `reference` against itself WITHOUT each row's match with itself
    (a duplicate record elsewhere in the set still counts, at distance 0).
    """
    n_reference = len(reference) - (1 if query is None else 0)
    if n_reference < k:
        raise ValueError(f"need at least {k} reference record(s) besides the query; have {n_reference}")
    index = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=n_jobs).fit(reference)
    distances, rows = index.kneighbors(query, n_neighbors=k)
    return (distances, rows) if return_index else distances


def _subsample(values: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return values[rng.permutation(len(values))[:size]] if len(values) > size else values


def _nndr(distances: np.ndarray) -> np.ndarray:
    """d1 / d2; a record with two exact matches (0 / 0) singles no one out: ratio 1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = distances[:, 0] / distances[:, 1]
    return np.where(distances[:, 1] == 0, 1.0, ratio)


def _exact_share(distances: np.ndarray) -> float:
    """Share of nearest-neighbour distances that mark an exact copy."""
    return float((distances <= EXACT_MATCH_TOLERANCE).mean())


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "p05": float(np.quantile(values, 0.05)),
    }


def distance_metrics(
    synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, seed: int = 0
) -> tuple[dict[str, object], pd.DataFrame]:
    """DCR, NNDR and exact-match rate of synthetic records, with the holdout→train baseline.

    Returns (summary, distances): `distances` is a long table (comparison, distance) for
    the histograms. Comparisons:
      synthetic→train / holdout→train  same reference (all of train): synthetic records
                                       should lie no closer to train than unseen real ones;
      synthetic→train_subsample / synthetic→holdout  references of equal size (the larger of
                                       train and holdout subsampled to the other's size): the
                                       share of synthetic records closer to train should be ≈ 0.5.
    """
    holdout = align_columns(train, holdout, "holdout")
    train_values, holdout_values = to_matrix(train, train), to_matrix(holdout, train)
    synthetic_values = to_matrix(synthetic, train)
    rng = np.random.default_rng(seed)
    equal_size = min(len(train_values), len(holdout_values))
    train_subsample = _subsample(train_values, equal_size, rng)
    holdout_subsample = _subsample(holdout_values, equal_size, rng)

    synthetic_to_train, synthetic_nearest = nearest_distances(synthetic_values, train_values, k=2, return_index=True)
    holdout_to_train, holdout_nearest = nearest_distances(holdout_values, train_values, k=2, return_index=True)
    synthetic_to_train_subsample = nearest_distances(synthetic_values, train_subsample)[:, 0]
    synthetic_to_holdout = nearest_distances(synthetic_values, holdout_subsample)[:, 0]

    closer = synthetic_to_train_subsample < synthetic_to_holdout
    ties = synthetic_to_train_subsample == synthetic_to_holdout
    summary = {
        "dcr_synthetic_to_train": _summary(synthetic_to_train[:, 0]),
        "dcr_holdout_to_train": _summary(holdout_to_train[:, 0]),
        "dcr_synthetic_to_train_subsample": _summary(synthetic_to_train_subsample),
        "dcr_synthetic_to_holdout": _summary(synthetic_to_holdout),
        "dcr_median_ratio_to_baseline": float(
            np.median(synthetic_to_train[:, 0]) / max(np.median(holdout_to_train[:, 0]), 1e-12)
        ),
        "share_closer_to_train": float(closer.mean() + 0.5 * ties.mean()),
        "nndr_synthetic_to_train": _summary(_nndr(synthetic_to_train)),
        "nndr_holdout_to_train": _summary(_nndr(holdout_to_train)),
        # distinct nearest training records per query record: ≈ 0 when the output collapses
        # onto a few points (then the DCR comparisons rest on those few neighbours)
        "distinct_nearest_share": len(np.unique(synthetic_nearest[:, 0])) / len(synthetic_values),
        "distinct_nearest_share_holdout_baseline": len(np.unique(holdout_nearest[:, 0])) / len(holdout_values),
        "exact_match_rate": _exact_share(synthetic_to_train[:, 0]),
        "exact_match_rate_holdout_baseline": _exact_share(holdout_to_train[:, 0]),
        "n_synthetic": len(synthetic_values),
        "n_train": len(train_values),
        "n_holdout": len(holdout_values),
    }
    distances = pd.concat(
        [
            pd.DataFrame({"comparison": name, "distance": values})
            for name, values in (
                ("synthetic→train", synthetic_to_train[:, 0]),
                ("holdout→train", holdout_to_train[:, 0]),
                ("synthetic→train_subsample", synthetic_to_train_subsample),
                ("synthetic→holdout", synthetic_to_holdout),
            )
        ],
        ignore_index=True,
    )
    return summary, distances


def exact_match_rate(synthetic: pd.DataFrame, train: pd.DataFrame) -> float:
    """Share of synthetic records that equal some training record (within float tolerance)."""
    return _exact_share(nearest_distances(to_matrix(synthetic, train), to_matrix(train, train))[:, 0])


def membership_inference_auc(
    synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, seed: int = 0
) -> dict[str, float]:
    """AUROC of the distance attack: members (train) score closer to the synthetic data than
    non-members (holdout, never seen by the generator).

    Members are subsampled to the holdout's size so both classes weigh alike. 0.5 is
    ideal; a generator that copies its training data gives ≈ 1.0.
    """
    holdout = align_columns(train, holdout, "holdout")
    synthetic_values = to_matrix(synthetic, train)
    rng = np.random.default_rng(seed)
    size = min(len(train), len(holdout))
    members = _subsample(to_matrix(train, train), size, rng)
    non_members = _subsample(to_matrix(holdout, train), size, rng)
    candidates = np.concatenate([members, non_members])
    is_member = np.r_[np.ones(len(members), dtype=int), np.zeros(len(non_members), dtype=int)]
    score = -nearest_distances(candidates, synthetic_values)[:, 0]
    return {"auc": float(roc_auc_score(is_member, score)), "n_members": len(members), "n_non_members": len(non_members)}


def _source_variable(column: str) -> str:
    """The variable a flat-view column describes: `HR.mean` → `HR`; `static.age`, `code.401`, `label` stay."""
    if column.startswith(("static.", "code.")) or "." not in column:
        return column
    return column.rsplit(".", 1)[0]


def _threshold(reference: np.ndarray) -> float:
    """Where a target splits into 0/1: a two-valued one at its midpoint, any other at its median."""
    levels = np.unique(reference[np.isfinite(reference)])
    if len(levels) == 0:
        return float("nan")
    return float(levels.mean() if len(levels) == 2 else np.median(reference[np.isfinite(reference)]))


def attribute_inference(
    synthetic: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    targets: Sequence[str],
    n_neighbors: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per target column, AUROC of inferring it from the other variables with a kNN fitted on
    the synthetic data, on training records (members) and on holdout records (baseline).

    The attacker knows every other variable of a record (all summary columns of the
    target's own variable are hidden too). A continuous target is turned into
    "above the training median". auc_members ≫ auc_non_members means the synthetic
    data leaks its training records' attributes beyond what the population allows.
    """
    holdout = align_columns(train, holdout, "holdout")
    synthetic = align_columns(train, synthetic)
    missing = [t for t in targets if t not in train.columns]
    if missing:
        raise ValueError(
            f"attribute-inference target(s) {missing} are not columns of the flat view; "
            f"pick from e.g. {list(train.columns[:10])}"
        )
    rng = np.random.default_rng(seed)
    size = min(len(train), len(holdout))
    members = train.iloc[rng.permutation(len(train))[:size]]
    results = {}
    for target in targets:
        known = [c for c in train.columns if _source_variable(c) != _source_variable(target)]
        threshold = _threshold(train[target].to_numpy(np.float64))
        # Records whose target is missing (NaN) can be neither learnt from nor scored.
        tables = {
            name: table[np.isfinite(table[target].to_numpy(np.float64))]
            for name, table in (("synthetic", synthetic), ("members", members), ("non_members", holdout))
        }
        labels = {name: (table[target].to_numpy(np.float64) > threshold).astype(int) for name, table in tables.items()}
        one_class = [name for name, y in labels.items() if len(np.unique(y)) < 2]
        if one_class:
            logger.warning("attribute inference of %s: %s hold(s) one class only; AUROC undefined", target, one_class)
            results[target] = {"auc_members": float("nan"), "auc_non_members": float("nan"), "threshold": threshold}
            continue
        reference = train[known]
        attack = KNeighborsClassifier(n_neighbors=n_neighbors, weights="distance", algorithm="brute")
        attack.fit(to_matrix(tables["synthetic"][known], reference), labels["synthetic"])
        results[target] = {
            f"auc_{name}": float(
                roc_auc_score(labels[name], attack.predict_proba(to_matrix(tables[name][known], reference))[:, 1])
            )
            for name in ("members", "non_members")
        } | {"threshold": threshold}
    return results


# ------------------------------------------------------------------------------ identifiability
def identifiability_score(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """Share of real records that some synthetic record identifies (Yoon et al. 2020, ADS-GAN):
    record i counts when its nearest synthetic record lies closer than its nearest other real
    record (r̂_i < r_i). Unweighted Euclidean distances on the flat view (the paper weighs each
    column by its inverse entropy; synthcity ≤ 0.2.12 computes those weights and then sets them to 1).

    The score depends on the sizes: with as many independent synthetic records as real ones it
    is about ½ (a fresh record is the closer one half the time), so read it beside
    `identifiability`'s holdout baseline.
    """
    synthetic = align_columns(real, synthetic)
    real_values = to_matrix(real, real)
    to_real = nearest_distances(None, real_values)[:, 0]
    to_synthetic = nearest_distances(real_values, to_matrix(synthetic, real))[:, 0]
    return float((to_synthetic < to_real).mean())


def identifiability(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """The identifiability score of the training records against all synthetic records; and at
    equal reference sizes, against as many synthetic records as the holdout has and against the
    holdout itself (the baseline: what unseen real patients give away, 0 being out of reach)."""
    holdout = align_columns(train, holdout, "holdout")
    synthetic = align_columns(train, synthetic)
    rng = np.random.default_rng(seed)
    size = min(len(synthetic), len(holdout))
    return {
        "score": identifiability_score(train, synthetic),
        "score_at_holdout_size": identifiability_score(train, synthetic.iloc[rng.permutation(len(synthetic))[:size]]),
        "holdout_baseline": identifiability_score(train, holdout.iloc[rng.permutation(len(holdout))[:size]]),
        "n_train": len(train),
        "n_synthetic": len(synthetic),
        "n_reference": size,
    }


# ------------------------------------------------------------------------------ DOMIAS
DENSITIES = ("knn", "kde")


def domias_scores(
    synthetic: np.ndarray,
    reference: np.ndarray,
    candidates: np.ndarray,
    density: str = "knn",
    n_neighbors: int = 1,
    pca_components: int | None = None,
) -> np.ndarray:
    """log p_synthetic(x) − log p_reference(x) for each candidate record x (van Breugel et al. 2023):
    high where the synthetic data is denser than the real population, i.e. where the generator
    overfitted. Both densities are estimated the same way:

    - "knn": the k-nearest-neighbour estimate p(x) ∝ 1 / (n r_k(x)^d), r_k(x) the distance to the
      n_neighbors-th nearest record; the score is d (log r_k,reference(x) − log r_k,synthetic(x))
      + log(n_reference / n_synthetic). A candidate that is a record of the synthetic set scores +inf.
    - "kde": scipy's Gaussian KDE (Scott's bandwidth, full covariance), as synthcity's
      DomiasMIA_KDE; with pca_components, in the first components of a PCA fitted on the
      reference (a Gaussian KDE in hundreds of dimensions is degenerate).
    """
    if density not in DENSITIES:
        raise ValueError(f"unknown density {density!r}; choose from {list(DENSITIES)}")
    if density == "kde":
        if pca_components is not None:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=min(pca_components, reference.shape[1], len(reference) - 1)).fit(reference)
            synthetic, reference, candidates = (pca.transform(v) for v in (synthetic, reference, candidates))
        with np.errstate(divide="ignore"):
            return (np.log(stats.gaussian_kde(synthetic.T)(candidates.T))
                    - np.log(stats.gaussian_kde(reference.T)(candidates.T)))
    k, d = n_neighbors, synthetic.shape[1]
    r_synthetic = nearest_distances(candidates, synthetic, k=k)[:, k - 1]
    r_reference = nearest_distances(candidates, reference, k=k)[:, k - 1]
    with np.errstate(divide="ignore"):
        return d * (np.log(r_reference) - np.log(r_synthetic)) + np.log(len(reference) / len(synthetic))


def domias_membership_inference(
    synthetic: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    density: str = "knn",
    n_neighbors: int = 1,
    pca_components: int | None = None,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """AUROC of the DOMIAS attack: members (training records) score a higher density ratio
    p_synthetic / p_reference (`domias_scores`) than non-members.

    The holdout is split at random into two halves: the reference set the attacker estimates
    the real population's density from, and the non-members; members are training records
    subsampled to the non-members' number. 0.5 is ideal; a copier gives ≈ 1.0. Unlike the
    distance attack (membership_inference_auc) it discounts records that lie close to the
    synthetic data only because they sit in a dense region of the population.
    """
    holdout = align_columns(train, holdout, "holdout")
    if len(holdout) < 4:
        raise ValueError(f"DOMIAS splits the holdout into reference and non-members; it has {len(holdout)} record(s)")
    rng = np.random.default_rng(seed)
    holdout_values = to_matrix(holdout, train)[rng.permutation(len(holdout))]
    reference, non_members = holdout_values[: len(holdout) // 2], holdout_values[len(holdout) // 2 :]
    members = _subsample(to_matrix(train, train), len(non_members), rng)
    candidates = np.concatenate([members, non_members])
    is_member = np.r_[np.ones(len(members), dtype=int), np.zeros(len(non_members), dtype=int)]
    score = domias_scores(to_matrix(synthetic, train), reference, candidates, density, n_neighbors, pca_components)
    # ±inf (a candidate copied into the synthetic data, or outside both supports) ranks as the extreme
    score = np.nan_to_num(score, nan=0.0, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max)
    return {
        "auc": float(roc_auc_score(is_member, score)),
        "density": density,
        "n_members": len(members),
        "n_non_members": len(non_members),
        "n_reference": len(reference),
    }
