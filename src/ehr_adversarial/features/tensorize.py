"""Array kernels of the features pipeline: hourly binning, forward fill, deltas, scaling.

Plain numpy on whole arrays; nothing here loops over records. Arrays are time-major per
record: (N records, T hours, C channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def bin_hourly(
    record_pos: np.ndarray,
    minutes: np.ndarray,
    channel: np.ndarray,
    value: np.ndarray,
    n_records: int,
    n_hours: int,
    n_channels: int,
) -> np.ndarray:
    """Mean of the values per (record, hour, channel) cell; NaN where a cell has none.

    `record_pos` and `channel` are integer positions; hour = minutes // 60. Rows must lie
    inside the window (0 <= minutes < 60 * n_hours): the caller drops and counts the rest.
    """
    hour = minutes.astype(np.int64) // 60
    cell = (record_pos.astype(np.int64) * n_hours + hour) * n_channels + channel.astype(np.int64)
    # Only observed cells are reduced; the dense result is filled by integer indexing.
    cells, inverse = np.unique(cell, return_inverse=True)
    sums = np.bincount(inverse, weights=value.astype(np.float64), minlength=cells.size)
    counts = np.bincount(inverse, minlength=cells.size)
    out = np.full(n_records * n_hours * n_channels, np.nan, dtype=np.float32)
    out[cells] = sums / counts
    return out.reshape(n_records, n_hours, n_channels)


def combine_by_priority(channels: np.ndarray, sources: list[list[int]]) -> np.ndarray:
    """Feature f in each cell = the first of its source channels that is observed in that cell.

    E.g. PhysioNet blood pressure: invasive SysABP where that hour has it, else NISysABP.
    """
    n_records, n_hours, _ = channels.shape
    out = np.full((n_records, n_hours, len(sources)), np.nan, dtype=channels.dtype)
    for f, priority in enumerate(sources):  # one pass per feature (F <= ~40), not per record
        for c in priority:
            missing = np.isnan(out[:, :, f])
            out[:, :, f][missing] = channels[:, :, c][missing]
    return out


def forward_fill(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Carry the last observed value forward along the hour axis; never backward.

    Returns the filled array (NaN before a channel's first observation) and, per cell,
    the hour of the latest observation at or before it (-1 when none yet).
    """
    observed = ~np.isnan(cells)
    hours = np.arange(cells.shape[1], dtype=np.int16)[None, :, None]
    last_seen = np.where(observed, hours, np.int16(-1))
    np.maximum.accumulate(last_seen, axis=1, out=last_seen)
    filled = np.take_along_axis(cells, np.maximum(last_seen, 0).astype(np.intp), axis=1)
    filled[last_seen < 0] = np.nan
    return filled, last_seen


def hours_since_observed(last_seen: np.ndarray, n_hours: int) -> np.ndarray:
    """(hour − hour of the latest observation at or before it) / n_hours; 1.0 before any.

    0 in an observed cell; the largest value reachable after an observation is
    (n_hours − 1) / n_hours, so 1.0 means "not observed yet".
    """
    hours = np.arange(last_seen.shape[1], dtype=np.float32)[None, :, None]
    delta = np.where(last_seen >= 0, hours - last_seen, np.float32(n_hours))
    return (delta / np.float32(n_hours)).astype(np.float32)


@dataclass(frozen=True)
class Range:
    """Winsorising/min-max range of one variable in clinical units plus its gap fill."""

    p05: float
    p95: float
    median: float
    how: str  # "p05-p95", "min-max" (percentiles coincided) or "constant"


def fit_range(values: np.ndarray) -> Range:
    """5th/95th percentiles and median of the finite entries of `values` (caller checks non-empty).

    A variable whose percentiles coincide falls back to its min/max; a constant one (e.g.
    PhysioNet MechVent, always 1) gets the range [v − 1, v] so that its value maps to 1.
    """
    finite = values[np.isfinite(values)].astype(np.float64)
    p05, median, p95 = np.percentile(finite, [5, 50, 95])
    if p95 > p05:
        return Range(float(p05), float(p95), float(median), "p05-p95")
    low, high = float(finite.min()), float(finite.max())
    if high > low:
        return Range(low, high, float(median), "min-max")
    return Range(high - 1.0, high, float(median), "constant")


def scale_unit(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Winsorise at [low, high] and min-max to [0, 1] (broadcast over the last axis)."""
    scaled = (values - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)
