"""The discrete structure of real values, learnt from the train split and imposed on generated values.

Real EHR values sit on lattices and point masses: a Glasgow coma score takes a dozen levels,
MechVent is 1 whenever it is recorded, sodium and potassium come at the analyser's resolution,
winsorising at the 5th/95th training percentiles puts about 5 % of a feature's cells exactly at
0 and at 1 of the [0, 1] scale, and a missing height becomes the training median. A generator's
output is continuous, so a detector tells it from real data by that alone, whatever else it gets
right (docs/synthetic_evaluation.md). This module learns, per column,

- a **lattice**: when at most `max_levels` distinct values cover at least `coverage` of the
  observed training cells (binary columns included), those values; every generated value is
  snapped to the nearest of them;
- otherwise **point masses**: the values that hold at least `point_mass_share` of the observed
  training cells (the winsorising bounds, a gap fill, a modal value); for each, the generated cells
  nearest to it, as many as its training share of the generated cells, are set to it, so the
  share at the point mass is at least the training share (exactly it, unless the generator
  already puts more there). Every other generated value stays as it was.

Time series are learnt and snapped on observed cells (`mask`), in the bundle's own [0, 1] units
(the scaler's map from clinical units is affine, so a lattice there is one here); unobserved hours
are then re-imputed from the snapped values, as the features pipeline does. Statics are learnt and
snapped on every record. Masks, labels and codes are left as they are. Nothing here knows Kedro.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .common import impute_like_features

DEFAULTS = {"max_levels": 100, "coverage": 0.99, "point_mass_share": 0.02}
RECORD_CHUNK = 4096  # records re-imputed at a time (bounded memory for large, file-backed bundles)


def lattice_settings(value: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`synthesis.<source>.<generator>.lattice`: true (the defaults), false/None (off) or a mapping
    overriding max_levels, coverage and point_mass_share."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(DEFAULTS)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown lattice setting(s) {unknown}; known: {sorted(DEFAULTS)}")
        return {**DEFAULTS, **value}
    raise ValueError(f"lattice is {value!r}; use true, false or a mapping of {sorted(DEFAULTS)}")


def fit_column(values: np.ndarray, max_levels: int = 100, coverage: float = 0.99, point_mass_share: float = 0.02) -> dict[str, list[float]]:
    """The discrete structure of one column's observed values: {"levels": [...]} (sorted) for a
    lattice, {"point_masses": [...], "shares": [...]} (largest share first), or {} for neither."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    unique, counts = np.unique(values, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    covered = np.cumsum(counts[order]) / values.size
    needed = int(np.searchsorted(covered, coverage - 1e-12)) + 1
    if needed <= max_levels:
        return {"levels": [float(v) for v in np.sort(unique[order[:needed]])]}
    shares = counts[order] / values.size
    heavy = order[shares >= point_mass_share]
    if heavy.size == 0:
        return {}
    return {"point_masses": [float(v) for v in unique[heavy]], "shares": [float(c / values.size) for c in counts[heavy]]}


def fit_lattice(bundle: Mapping[str, np.ndarray], max_levels: int = 100, coverage: float = 0.99, point_mass_share: float = 0.02) -> dict[str, list[dict]]:
    """Per time-series feature (observed cells of X) and per static column: fit_column."""
    settings = {"max_levels": max_levels, "coverage": coverage, "point_mass_share": point_mass_share}
    fitted: dict[str, list[dict]] = {}
    if "X" in bundle:
        X, mask = np.asarray(bundle["X"]), np.asarray(bundle["mask"], dtype=bool)
        fitted["X"] = [fit_column(X[:, :, j][mask[:, :, j]], **settings) for j in range(X.shape[2])]
    if "static" in bundle and np.asarray(bundle["static"]).ndim == 2:
        static = np.asarray(bundle["static"])
        fitted["static"] = [fit_column(static[:, j], **settings) for j in range(static.shape[1])]
    return fitted


def snap_to_levels(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each value replaced by the nearest of the sorted `levels` (ties go to the lower level)."""
    levels = np.asarray(levels, dtype=values.dtype)
    if len(levels) == 1:
        return np.full_like(values, levels[0])
    upper = np.clip(np.searchsorted(levels, values), 1, len(levels) - 1)
    lower = upper - 1
    take_upper = np.abs(levels[upper] - values) < np.abs(values - levels[lower])
    return np.where(take_upper, levels[upper], levels[lower]).astype(values.dtype)


def impose_point_masses(values: np.ndarray, masses: list[float], shares: list[float]) -> np.ndarray:
    """For each point mass (largest share first), the round(share · n) values nearest to it that no
    earlier point mass took are set to it; the others are returned as they were."""
    out = np.array(values, copy=True)
    free = np.ones(out.shape, dtype=bool)
    for mass, share in zip(masses, shares, strict=True):
        count = min(int(round(share * out.size)), int(free.sum()))
        if count == 0:
            continue
        candidates = np.flatnonzero(free)
        distance = np.abs(out[candidates].astype(np.float64) - mass)
        nearest = candidates[np.argsort(distance, kind="stable")[:count]]
        out[nearest] = mass
        free[nearest] = False
    return out


def snap_column(values: np.ndarray, structure: Mapping[str, list[float]]) -> np.ndarray:
    """One column's generated values on its fitted structure (see fit_column)."""
    if "levels" in structure:
        return snap_to_levels(values, np.asarray(structure["levels"]))
    if "point_masses" in structure:
        return impose_point_masses(values, structure["point_masses"], structure["shares"])
    return values


def apply_lattice(bundle: Mapping[str, np.ndarray], lattice: Mapping[str, list[dict]], fill: np.ndarray, in_place: bool = False) -> dict[str, np.ndarray]:
    """The bundle with X (observed cells, then re-imputed with `fill` before a first observation)
    and static snapped onto `lattice` (fit_lattice of the real train split). `in_place` writes into
    the bundle's own arrays (e.g. a generator's file-backed output) instead of copies."""
    out = dict(bundle)
    if "X" in bundle and lattice.get("X"):
        X = bundle["X"] if in_place else np.array(bundle["X"], copy=True)
        mask = np.asarray(bundle["mask"], dtype=bool)
        if len(lattice["X"]) != X.shape[2]:
            raise ValueError(f"the lattice has {len(lattice['X'])} time-series features but X has {X.shape[2]}; "
                             "it was learnt on another feature set")
        for j, structure in enumerate(lattice["X"]):
            if structure:
                column, observed = X[:, :, j], mask[:, :, j]
                column[observed] = snap_column(column[observed], structure)
        fill = np.asarray(fill, dtype=np.float32)
        for start in range(0, X.shape[0], RECORD_CHUNK):
            rows = slice(start, start + RECORD_CHUNK)
            X[rows] = impute_like_features(X[rows], mask[rows], fill)[0]  # mask unchanged: delta is too
        out["X"] = X
    if "static" in bundle and lattice.get("static"):
        static = bundle["static"] if in_place else np.array(bundle["static"], copy=True)
        if len(lattice["static"]) != static.shape[1]:
            raise ValueError(f"the lattice has {len(lattice['static'])} static columns but the bundle {static.shape[1]}")
        for j, structure in enumerate(lattice["static"]):
            if structure:
                static[:, j] = snap_column(static[:, j], structure)
        out["static"] = static
    return out


def snap_like_train(synthetic: Mapping[str, np.ndarray], train: Mapping[str, np.ndarray], fill: np.ndarray,
                    settings: Mapping[str, Any], in_place: bool = False) -> dict[str, np.ndarray]:
    """fit_lattice on the real `train` bundle with `settings`, then apply_lattice to `synthetic`."""
    return apply_lattice(synthetic, fit_lattice(train, **settings), fill, in_place)
