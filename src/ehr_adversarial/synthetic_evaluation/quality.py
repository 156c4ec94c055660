"""Sample-level fidelity: α-precision, β-recall and authenticity; precision, recall, density and
coverage (PRDC); and per-column Wasserstein and Jensen–Shannon distances.

Like fidelity.py, every function takes the real table first and the synthetic one second
(flat views, see flat_view.py, or plain arrays of the same width) and refuses tables whose
columns differ. The nearest-neighbour metrics read Euclidean distances between whole records,
so the caller decides the scale: the pipeline z-scores both tables by the real training
columns (`standardise`) and gives both sides the same number of records (`equal_size_samples`).

- Alaa A., van Breugel B., Saveliev E., van der Schaar M. *How Faithful is your Synthetic Data?
  Sample-level Metrics for Evaluating and Auditing Generative Models.* ICML 2022.
- Naeem M.F., Oh S.J., Uh Y., Choi Y., Yoo J. *Reliable Fidelity and Diversity Metrics for
  Generative Models.* ICML 2020.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import cdist, jensenshannon
from sklearn.neighbors import NearestNeighbors

from .flat_view import align_columns, to_matrix

logger = logging.getLogger(__name__)

Table = pd.DataFrame | np.ndarray

# α (and β) levels of the precision/recall curves, as the authors' and synthcity's code use.
N_LEVELS = 30


def _pair(real: Table, synthetic: Table) -> tuple[np.ndarray, np.ndarray]:
    """Both tables as float64 matrices in the real table's columns."""
    if isinstance(real, pd.DataFrame):
        if not isinstance(synthetic, pd.DataFrame):
            raise TypeError("give both tables as DataFrames or both as arrays")
        return to_matrix(real, real), to_matrix(synthetic, real)
    r, s = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    if r.ndim != 2 or s.ndim != 2 or r.shape[1] != s.shape[1]:
        raise ValueError(f"real {r.shape} and synthetic {s.shape} must be (records, columns) of the same width")
    return r, s


def equal_size_samples(
    real: pd.DataFrame, synthetic: pd.DataFrame, max_records: int | None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random subsamples of both tables with the same number of records, min(len(real),
    len(synthetic), max_records): α-precision/β-recall and PRDC assume equal sizes."""
    rng = np.random.default_rng(seed)
    n = int(min(len(real), len(synthetic), max_records or np.inf))
    return real.iloc[np.sort(rng.permutation(len(real))[:n])], synthetic.iloc[np.sort(rng.permutation(len(synthetic))[:n])]


def standardise(reference: pd.DataFrame, *tables: pd.DataFrame) -> list[np.ndarray]:
    """Each table as a matrix z-scored by `reference`'s column means and standard deviations
    (a constant reference column is only centred); NaN cells take the reference median first."""
    values = to_matrix(reference, reference)
    mean, std = values.mean(axis=0), values.std(axis=0)
    std[std == 0] = 1.0
    return [(to_matrix(table, reference) - mean) / std for table in tables]


def _nearest(reference: np.ndarray, query: np.ndarray | None, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Distances and rows of the k nearest `reference` rows (query=None: each reference row's
    neighbours other than itself; a duplicate elsewhere still counts, at distance 0)."""
    index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(reference)
    return index.kneighbors(query, n_neighbors=k)


def alpha_precision_beta_recall_authenticity(real: Table, synthetic: Table, n_levels: int = N_LEVELS) -> dict[str, Any]:
    """α-precision, β-recall and authenticity of Alaa et al. (2022), in the data space
    (synthcity's "naive" variant: no learnt one-class embedding; centre = mean of the real records).

    - α-precision curve P_α: share of synthetic records inside the ball around the real centre
      that holds the α share of the real records (radius: the α-quantile of their distances to it).
    - β-recall curve R_β: share of real records whose nearest synthetic record lies within the
      real record's distance to its nearest other real record AND inside the ball around the
      synthetic centre that holds the β share of those nearest synthetic records.
    - Δ-precision α = 1 − Σ_α |α − P_α| / Σ_α α over `n_levels` equally spaced α in [0, 1]
      (likewise Δ-recall β); 1 = the curve is the diagonal (the synthetic data fills the real
      support with the right density), 0 = far off.
    - authenticity: share of synthetic records that are not copies by the paper's rule — record
      j with nearest real record i* is authentic when d(x̃_j, x_i*) > d(x_i*, nearest other real
      record). A copier scores 0; independent draws from the real distribution about ½ for equal
      numbers of records (a fresh record lands in x_i*'s own 1-NN ball about half the time).

    The authors' reference code and synthcity (≤ 0.2.12) compare each real record's distance to its
    nearest synthetic record with the nearest-real-record distance of the real record whose row
    number equals that synthetic record's; here the rule is the paper's, per synthetic record.
    Δ-precision α and Δ-recall β agree with synthcity's `AlphaPrecision.metrics` to float precision.
    """
    r, s = _pair(real, synthetic)
    if len(r) < 2 or len(s) < 1:
        raise ValueError(f"α-precision needs ≥ 2 real and ≥ 1 synthetic records; got {len(r)} and {len(s)}")
    alphas = np.linspace(0, 1, n_levels)
    centre = r.mean(axis=0)
    radii = np.quantile(np.linalg.norm(r - centre, axis=1), alphas)
    synthetic_to_centre = np.linalg.norm(s - centre, axis=1)

    real_to_real = _nearest(r, None)[0][:, 0]
    real_to_synthetic, nearest_synthetic = (a[:, 0] for a in _nearest(s, r))
    closest_to_synthetic_centre = np.linalg.norm(s[nearest_synthetic] - s.mean(axis=0), axis=1)
    synthetic_radii = np.quantile(closest_to_synthetic_centre, alphas)
    within_real_ball = real_to_synthetic <= real_to_real

    precision_curve = (synthetic_to_centre[None, :] <= radii[:, None]).mean(axis=1)
    recall_curve = (within_real_ball[None, :] & (closest_to_synthetic_centre[None, :] <= synthetic_radii[:, None])).mean(axis=1)

    synthetic_to_real, nearest_real = (a[:, 0] for a in _nearest(r, s))
    authentic = synthetic_to_real > real_to_real[nearest_real]
    return {
        "delta_precision_alpha": float(1 - np.abs(alphas - precision_curve).sum() / alphas.sum()),
        "delta_recall_beta": float(1 - np.abs(alphas - recall_curve).sum() / alphas.sum()),
        "authenticity": float(authentic.mean()),
        "alphas": [float(a) for a in alphas],
        "precision_curve": [float(v) for v in precision_curve],
        "recall_curve": [float(v) for v in recall_curve],
        "n_real": len(r),
        "n_synthetic": len(s),
    }


def _kth_neighbour_distance(values: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other row: the (k+1)-th smallest distance counting
    the row itself (a duplicate elsewhere counts, at distance 0)."""
    return np.concatenate([
        np.partition(cdist(values[start : start + chunk], values), k, axis=1)[:, k]
        for start in range(0, len(values), chunk)
    ])


def prdc(real: Table, synthetic: Table, k: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Precision, recall, density and coverage of Naeem et al. (2020) with k-nearest-neighbour balls.

    Each record's ball has the radius of its k-th nearest neighbour in its own set (itself not
    counted). precision: share of synthetic records inside some real ball; recall: share of real
    records inside some synthetic ball; density: mean number of real balls holding a synthetic
    record, / k (≈ 1 for matching distributions, > 1 where synthetic records crowd dense real
    regions); coverage: share of real records whose ball holds a synthetic record. "Inside" is a
    strict <, as in the authors' code. Distances are computed in blocks of `chunk` records, so memory
    stays at len(real) × chunk; scipy's cdist computes every pair the same way whichever block it is
    in, so a record compared with its own copy meets exactly the radii of the original (identical
    tables: density exactly 1).
    """
    r, s = _pair(real, synthetic)
    if min(len(r), len(s)) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} records on each side; got {len(r)} real and {len(s)} synthetic")
    real_radius, synthetic_radius = _kth_neighbour_distance(r, k, chunk), _kth_neighbour_distance(s, k, chunk)
    inside_real = np.zeros(len(s), dtype=np.int64)  # real balls holding each synthetic record
    recalled = np.zeros(len(r), dtype=bool)
    nearest_synthetic = np.full(len(r), np.inf)
    for start in range(0, len(s), chunk):
        block = slice(start, start + chunk)
        distances = cdist(r, s[block])  # (real, synthetic block)
        inside_real[block] = (distances < real_radius[:, None]).sum(axis=0)
        recalled |= (distances < synthetic_radius[block][None, :]).any(axis=1)
        nearest_synthetic = np.minimum(nearest_synthetic, distances.min(axis=1))
    return {
        "precision": float((inside_real > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float(inside_real.mean() / k),
        "coverage": float((nearest_synthetic < real_radius).mean()),
        "k": k,
        "n_real": len(r),
        "n_synthetic": len(s),
    }


def _histograms(real: np.ndarray, synthetic: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both columns on common bins: the distinct values when the pooled column has at
    most n_bins of them (binary, categorical), else n_bins equal-mass bins of the real values
    (tied edges merged) plus one bin below and one above the real range."""
    levels = np.unique(np.r_[real, synthetic])
    if len(levels) <= n_bins:
        return np.bincount(np.searchsorted(levels, real), minlength=len(levels)), np.bincount(
            np.searchsorted(levels, synthetic), minlength=len(levels)
        )
    edges = np.unique(np.quantile(real, np.linspace(0, 1, n_bins + 1)))

    def bins(values: np.ndarray) -> np.ndarray:
        index = np.searchsorted(edges, values, side="right")  # 0: below the real minimum
        index[values == edges[-1]] = len(edges) - 1  # the real maximum closes the last bin
        return np.bincount(index, minlength=len(edges) + 1)

    return bins(real), bins(synthetic)


def column_distances(real: Table, synthetic: Table, n_bins: int = 20) -> pd.DataFrame:
    """Per column: the Wasserstein-1 distance between the real and synthetic values in units of
    the real column's standard deviation (unscaled where it is 0), and the Jensen–Shannon
    distance (base 2: 0 identical, 1 disjoint) between their histograms (`_histograms`).

    NaN cells are left out of either side; a column with no values on a side gets NaN.
    Returns a table (variable, wasserstein, jensen_shannon).
    """
    if isinstance(real, pd.DataFrame):
        synthetic = align_columns(real, synthetic)
        names, r, s = list(real.columns), real.to_numpy(np.float64), synthetic.to_numpy(np.float64)
    else:
        r, s = _pair(real, synthetic)
        names = [str(j) for j in range(r.shape[1])]
    wasserstein, js = np.full(len(names), np.nan), np.full(len(names), np.nan)
    for j in range(len(names)):
        a, b = r[:, j][np.isfinite(r[:, j])], s[:, j][np.isfinite(s[:, j])]
        if not len(a) or not len(b):
            continue
        scale = a.std()
        wasserstein[j] = stats.wasserstein_distance(a, b) / (scale if scale > 0 else 1.0)
        p, q = _histograms(a, b, n_bins)
        js[j] = jensenshannon(p / p.sum(), q / q.sum(), base=2)
    return pd.DataFrame({"variable": names, "wasserstein": wasserstein, "jensen_shannon": js})


def summarise_column_distances(table: pd.DataFrame, top: int = 5) -> dict[str, Any]:
    """Mean, median, max and the `top` worst columns of each distance in a column_distances table."""
    summary: dict[str, Any] = {}
    for metric in ("wasserstein", "jensen_shannon"):
        values = table.dropna(subset=[metric])
        worst = values.nlargest(top, metric)
        summary[metric] = {
            "mean": float(values[metric].mean()) if len(values) else float("nan"),
            "median": float(values[metric].median()) if len(values) else float("nan"),
            "max": float(values[metric].max()) if len(values) else float("nan"),
            "worst": dict(zip(worst["variable"], worst[metric].astype(float), strict=True)),
        }
    return summary
