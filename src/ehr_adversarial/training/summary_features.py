"""Per-record summary statistics of the hourly tensors, the inputs of the scikit-learn baselines.

Per dynamic feature, over the hours where it was measured (mask): mean, min, max,
first, last, std; the mean of the first 24 h, the mean, min and max of the last
24 h and the mean of the last 6 h (the trend towards the end of the window); the
number of measured hours and the hours since the last measurement at hour 47;
plus the static features. A feature
never measured gets NaN statistics (HistGradientBoosting handles NaN natively; the
logistic regression imputes medians and adds missing-indicators).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

STATISTICS = ("mean", "min", "max", "first", "last", "std", "mean_first24h", "mean_last24h",
              "min_last24h", "max_last24h", "mean_last6h", "count", "hours_since_last")


def summary_statistics(
    bundle: Mapping[str, np.ndarray], feature_names: Sequence[str], static_names: Sequence[str]
) -> pd.DataFrame:
    """One row per record: STATISTICS for each feature, then the statics (index record_id)."""
    x, mask = bundle["X"].astype(np.float64), bundle["mask"].astype(bool)
    n, n_hours, n_features = x.shape
    observed = np.where(mask, x, np.nan)
    count = mask.sum(axis=1)
    hours = np.arange(n_hours)[None, :, None]
    first_hour = np.where(mask, hours, n_hours).min(axis=1)
    last_hour = np.where(mask, hours, -1).max(axis=1)
    ever = count > 0

    def at_hour(hour: np.ndarray) -> np.ndarray:
        values = np.take_along_axis(x, np.clip(hour, 0, n_hours - 1)[:, None, :], axis=1)[:, 0]
        return np.where(ever, values, np.nan)

    with warnings.catch_warnings():
        # all-NaN slices (features never measured) are expected and give NaN
        warnings.simplefilter("ignore", category=RuntimeWarning)
        stats = {
            "mean": np.nanmean(observed, axis=1),
            "min": np.nanmin(observed, axis=1),
            "max": np.nanmax(observed, axis=1),
            "first": at_hour(first_hour),
            "last": at_hour(last_hour),
            "std": np.nanstd(observed, axis=1),
            "mean_first24h": np.nanmean(observed[:, : n_hours // 2], axis=1),
            "mean_last24h": np.nanmean(observed[:, n_hours // 2 :], axis=1),
            "min_last24h": np.nanmin(observed[:, n_hours // 2 :], axis=1),
            "max_last24h": np.nanmax(observed[:, n_hours // 2 :], axis=1),
            "mean_last6h": np.nanmean(observed[:, n_hours - 6 :], axis=1),
            "count": count.astype(np.float64),
            "hours_since_last": np.where(ever, n_hours - 1 - last_hour, np.nan),
        }
    columns = {
        f"{feature}__{stat}": stats[stat][:, j]
        for j, feature in enumerate(feature_names)
        for stat in STATISTICS
    }
    for j, name in enumerate(static_names):
        columns[f"static__{name}"] = bundle["static"][:, j].astype(np.float64)
    return pd.DataFrame(columns, index=pd.Index(bundle["record_id"], name="record_id"))
