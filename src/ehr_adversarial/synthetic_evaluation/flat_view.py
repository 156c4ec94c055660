"""A tensor bundle → one row per record, the table every fidelity and privacy metric reads.

Time-series bundles (X, mask: (N, 48, F); static: (N, S); y: (N,)) become

    static.<name>            the scaled static covariates
    <feature>.<stat>         for stat in mean, std, min, max, last (over the 48 hourly
                             values of the imputed, [0, 1]-scaled X) and missing_rate
                             (1 − fraction of hours observed, from mask)
    label                    in-hospital death 0/1

A bundle with a code matrix (`codes` (N, C) with `code_names`, e.g. MIMIC-III ICD-9
categories) adds `code.<name>` columns (0/1); a code-only bundle has just those and `label`.

Every column lives on a comparable [0, 1]-like scale (the features pipeline min-max
scales X and the statics with training-split percentiles), so Euclidean distances on
this table weigh features alike without a further rescaling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

SUMMARY_STATS = ("mean", "std", "min", "max", "last", "missing_rate")
LABEL = "label"


def _names(bundle: Mapping[str, Any], key: str, given: Sequence[str] | None, width: int, what: str) -> list[str]:
    """Column names from the argument, else from the bundle's `key` array; checked against width."""
    names = list(given) if given is not None else (list(np.asarray(bundle[key]).astype(str)) if key in bundle else None)
    if names is None:
        raise ValueError(
            f"the bundle has {width} {what} but no names for them: pass {key} "
            f"(from the feature_spec) or store {key!r} in the bundle"
        )
    if len(names) != width:
        raise ValueError(
            f"the bundle has {width} {what} but {len(names)} {key} were given ({names[:5]}...); "
            "the bundle and the feature_spec describe different feature sets"
        )
    return names


def flat_view(
    bundle: Mapping[str, Any],
    feature_names: Sequence[str] | None = None,
    static_names: Sequence[str] | None = None,
    stats: Sequence[str] = SUMMARY_STATS,
) -> pd.DataFrame:
    """One row per record of `bundle` (index record_id); see the module docstring for columns."""
    unknown = sorted(set(stats) - set(SUMMARY_STATS))
    if unknown:
        raise ValueError(f"unknown summary statistic(s) {unknown}; choose from {list(SUMMARY_STATS)}")
    if "X" not in bundle and "codes" not in bundle:
        raise ValueError(f"the bundle holds neither X nor codes (keys: {sorted(bundle)})")
    blocks: list[np.ndarray] = []
    columns: list[str] = []
    if "X" in bundle:
        x = np.asarray(bundle["X"], dtype=np.float64)
        if x.ndim != 3:
            raise ValueError(f"bundle['X'] must be (records, hours, features); it has shape {x.shape}")
        n_records, _, n_features = x.shape
        features = _names(bundle, "feature_names", feature_names, n_features, "time-series features")
        if "static" in bundle and np.asarray(bundle["static"]).shape[1] > 0:
            static = np.asarray(bundle["static"], dtype=np.float64)
            statics = _names(bundle, "static_names", static_names, static.shape[1], "static columns")
            blocks.append(static)
            columns += [f"static.{name}" for name in statics]
        mask = np.asarray(bundle["mask"], dtype=bool) if "mask" in bundle else np.isfinite(x)
        if mask.shape != x.shape:
            raise ValueError(f"bundle['mask'] has shape {mask.shape}, X has {x.shape}; they must match")
        summaries = {
            "mean": lambda: x.mean(axis=1),
            "std": lambda: x.std(axis=1),
            "min": lambda: x.min(axis=1),
            "max": lambda: x.max(axis=1),
            "last": lambda: x[:, -1, :],
            "missing_rate": lambda: 1.0 - mask.mean(axis=1),
        }
        for stat in stats:
            blocks.append(summaries[stat]())
            columns += [f"{feature}.{stat}" for feature in features]
    if "codes" in bundle:
        codes = np.asarray(bundle["codes"])
        if codes.ndim != 2 or ("X" in bundle and codes.shape[0] != n_records):
            raise ValueError(f"bundle['codes'] must be (records, codes) for the bundle's records; it has shape {codes.shape}")
        names = _names(bundle, "code_names", None, codes.shape[1], "code columns")
        blocks.append(codes.astype(np.float64))
        columns += [f"code.{name}" for name in names]
        n_records = codes.shape[0]
    if "y" in bundle:
        blocks.append(np.asarray(bundle["y"], dtype=np.float64).reshape(n_records, 1))
        columns.append(LABEL)
    index = pd.Index(
        np.asarray(bundle["record_id"], dtype=np.int64) if "record_id" in bundle else np.arange(n_records),
        name="record_id",
    )
    return pd.DataFrame(np.concatenate(blocks, axis=1), index=index, columns=columns)


def align_columns(real: pd.DataFrame, synthetic: pd.DataFrame, what: str = "synthetic") -> pd.DataFrame:
    """`synthetic` with `real`'s columns in `real`'s order; a clear error when the sets differ."""
    real_only = [c for c in real.columns if c not in set(synthetic.columns)]
    other_only = [c for c in synthetic.columns if c not in set(real.columns)]
    if real_only or other_only:
        raise ValueError(
            f"the real and {what} tables have different columns: "
            f"only in real ({len(real_only)}): {real_only[:20]}; "
            f"only in {what} ({len(other_only)}): {other_only[:20]}. "
            "Both must come from the same feature set (same feature_spec / code list)."
        )
    return synthetic[list(real.columns)]


def to_matrix(frame: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
    """float64 matrix of `frame` in `reference`'s columns; NaN → the reference column's median.

    Distance-based metrics need finite values; filling with the real data's median keeps
    a synthetic NaN from looking like any particular real record.
    """
    frame = align_columns(reference, frame)
    values = frame.to_numpy(dtype=np.float64, copy=True)
    if np.isinf(values).any():
        bad = frame.columns[np.isinf(values).any(axis=0)].tolist()
        raise ValueError(f"infinite values in column(s) {bad[:10]}; the generator produced inf")
    missing = np.isnan(values)
    if missing.any():
        medians = np.nan_to_num(np.nanmedian(reference.to_numpy(dtype=np.float64), axis=0)) if len(reference) else 0.0
        values[missing] = np.broadcast_to(medians, values.shape)[missing]
    return values
