"""Shared by every model: input checks, the train split's CV folds, candidate configs and the choice among them, prediction tables.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


BUNDLE_KEYS = ("X", "mask", "delta", "static", "y", "record_id")


# CPU threads per model fit unless a model block sets n_threads (see torch_loop.limited_threads)
DEFAULT_THREADS = 1


def check_model_input(bundle: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any], name: str) -> None:
    """Fail before any training on a bundle that is incomplete, mis-shaped, non-finite or one-class."""
    feature_set = feature_spec.get("feature_set", "?")
    where = f"{name} (feature set {feature_set!r})"
    missing = [key for key in BUNDLE_KEYS if key not in bundle]
    if missing:
        raise ValueError(f"{where} lacks array(s) {missing}; it has {sorted(bundle)}")
    n = len(bundle["y"])
    features, statics = list(feature_spec["feature_names"]), list(feature_spec["static_names"])
    expected = {"X": (n, int(feature_spec["n_hours"]), len(features))}
    expected["mask"] = expected["delta"] = expected["X"]
    expected["static"] = (n, len(statics))
    for key, shape in expected.items():
        if tuple(bundle[key].shape) != shape:
            raise ValueError(f"{where}: {key} has shape {tuple(bundle[key].shape)}, expected {shape} "
                             f"from the feature spec ({len(features)} features, {len(statics)} statics)")
    for key in ("X", "delta", "static"):
        bad = ~np.isfinite(bundle[key])
        if bad.any():
            position = np.argwhere(bad)[0]
            column = features[position[-1]] if key != "static" else statics[position[-1]]
            raise ValueError(
                f"{where}: {int(bad.sum())} NaN/inf value(s) in {key}, the first at record_id "
                f"{int(bundle['record_id'][position[0]])}, {column}"
                + (f", hour {int(position[1])}" if key != "static" else "")
                + "; the features pipeline must impute and scale every cell (re-run `features`)"
            )
    y = np.asarray(bundle["y"])
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where}: labels must be 0/1, found {sorted(np.unique(y))[:5]}")
    if n == 0 or y.min() == y.max():
        raise ValueError(
            f"{where} has {n} records and {int(y.sum())} positive(s): a split needs both classes "
            "to train and evaluate; use a larger cohort or change the split fractions"
        )


def cv_folds(bundle: Mapping[str, np.ndarray], splits: pd.DataFrame, max_folds: int) -> tuple[np.ndarray, list[int]]:
    """Per train record its CV fold (from `splits`), and the folds to hold out (at most max_folds)."""
    fold_of = splits.set_index("record_id")["fold"]
    record_id = pd.Index(bundle["record_id"])
    unknown = record_id.difference(fold_of.index)
    if len(unknown):
        raise ValueError(f"{len(unknown)} train record(s) are not in splits, e.g. {list(unknown[:5])}; "
                         "the splits and the model input come from different feature runs")
    fold = fold_of.loc[record_id].to_numpy()
    folds = sorted(int(f) for f in np.unique(fold) if f >= 0)
    if len(folds) < 2:
        raise ValueError(f"the train split has {len(folds)} CV fold(s); k-fold CV needs at least 2")
    for f in folds:
        y_held = np.asarray(bundle["y"])[fold == f]
        if y_held.min() == y_held.max():
            raise ValueError(f"CV fold {f} holds {y_held.size} records of a single class; "
                             "use fewer folds (features parameters) for a cohort this small")
    return fold, folds[: max(1, int(max_folds))]


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, nested dicts key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def candidate_configs(training: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full training config of every grid point (a grid entry overrides the defaults)."""
    base = {key: value for key, value in training.items() if key != "cv"}
    grid = training.get("cv", {}).get("grid") or [{}]
    return [merge_config(base, override) for override in grid]


def select_best(cv_results: pd.DataFrame, candidates: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    mean = cv_results.groupby("candidate")[monitor].mean()
    best = int(mean.idxmax())
    logger.info("CV mean %s per candidate: %s; selected candidate %d", monitor,
                mean.round(4).to_dict(), best)
    return {**candidates[best], "cv": {"candidate": best, f"mean_{monitor}": float(mean[best]),
                                       "n_folds": int(cv_results["fold"].nunique())}}


def prediction_frame(bundle: Mapping[str, np.ndarray], prob: np.ndarray, split: str) -> pd.DataFrame:
    """record_id, y_true, y_prob (P(death)), split (which predictions these are), group."""
    n = len(bundle["y"])
    group = np.asarray(bundle["group"]).astype(str) if "group" in bundle else np.full(n, "")
    return pd.DataFrame({"record_id": np.asarray(bundle["record_id"], dtype=np.int64),
                         "y_true": np.asarray(bundle["y"], dtype=np.int64),
                         "y_prob": prob.astype(np.float64), "split": split, "group": group})
