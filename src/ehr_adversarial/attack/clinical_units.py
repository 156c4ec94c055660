"""Perturbations in clinical units, through the scaler the features pipeline fitted.

A scaled value x ∈ [0, 1] of feature j stands for p05_j + x · (p95_j − p05_j) in clinical units,
so a perturbation δ of that cell is δ · (p95_j − p05_j) in the feature's unit. Hour t is the bin
[t, t+1) h after ICU admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FeatureScale:
    """Per feature, in tensor order: name, unit and the clinical values at x = 0 and x = 1."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    p05: np.ndarray
    p95: np.ndarray

    @property
    def span(self) -> np.ndarray:
        """Clinical units per unit of scaled value (p95 − p05)."""
        return self.p95 - self.p05


def feature_scale(spec: Mapping) -> FeatureScale:
    """The scale of each feature from a feature_spec (feature_names, units, scaler[name] = {p05, p95, ...})."""
    try:
        names = tuple(spec["feature_names"])
        scaler = spec["scaler"]
    except KeyError as exc:
        raise ValueError(f"feature_spec lacks {exc.args[0]!r}; it must hold feature_names and scaler.") from exc
    units = spec.get("units") or {}
    if isinstance(units, Mapping):
        units = tuple(str(units.get(name, "")) for name in names)
    else:
        units = tuple(str(u) for u in units)
    if len(units) != len(names):
        raise ValueError(f"feature_spec has {len(units)} units for {len(names)} features.")
    missing = [name for name in names if name not in scaler or not {"p05", "p95"} <= set(scaler[name])]
    if missing:
        raise ValueError(f"feature_spec scaler has no p05/p95 for {missing}.")
    p05 = np.array([float(scaler[name]["p05"]) for name in names])
    p95 = np.array([float(scaler[name]["p95"]) for name in names])
    return FeatureScale(names=names, units=units, p05=p05, p95=p95)


def to_clinical(x: np.ndarray, scale: FeatureScale) -> np.ndarray:
    """Scaled values (..., F) → clinical units."""
    return scale.p05 + np.asarray(x, dtype=np.float64) * scale.span


def perturbation_cells(delta: np.ndarray, x: np.ndarray, record_id: np.ndarray, scale: FeatureScale) -> pd.DataFrame:
    """Every nonzero cell of δ (N, T, F) as a row in clinical units.

    Columns: record_id, feature, unit, hour, delta_scaled, original, perturbed, change (clinical),
    description (e.g. "Na +4.1 mmol/L at hour 37").
    """
    delta = np.asarray(delta, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if delta.shape != x.shape or delta.shape[2] != len(scale.names) or delta.shape[0] != len(record_id):
        raise ValueError(
            f"δ {delta.shape}, x {x.shape}, {len(record_id)} record ids and {len(scale.names)} features do not match."
        )
    rec, hour, feat = np.nonzero(delta)
    change = delta[rec, hour, feat] * scale.span[feat]
    original = scale.p05[feat] + x[rec, hour, feat] * scale.span[feat]
    names = np.asarray(scale.names, dtype=object)[feat]
    units = np.asarray(scale.units, dtype=object)[feat]
    description = [f"{n} {c:+.3g}{' ' + u if u else ''} at hour {h}" for n, c, u, h in zip(names, change, units, hour, strict=True)]
    return pd.DataFrame({
        "record_id": np.asarray(record_id)[rec].astype("int64"),
        "feature": pd.array(names, dtype="string"),
        "unit": pd.array(units, dtype="string"),
        "hour": hour.astype("int64"),
        "delta_scaled": delta[rec, hour, feat],
        "original": original,
        "perturbed": original + change,
        "change": change,
        "description": pd.array(description, dtype="string"),
    })
