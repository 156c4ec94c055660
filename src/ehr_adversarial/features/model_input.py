"""Hourly tensors of a feature set: hourly cells, the feature spec with the train-split scaler, and
the imputed, scaled model input (X, mask, delta, static, y) of every split.

Inputs follow the ingestion contract: `timeseries` (record_id, minutes, parameter, value)
and `static` (record_id, age, gender, height, weight, icu_type, label, split_group, ...).
Everything fitted (medians, percentiles) comes from the train split only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ehr_adversarial.features.bundle import SPLITS, TensorBundle
from ehr_adversarial.features.splits import require_columns
from ehr_adversarial.features.tensorize import (
    bin_hourly,
    combine_by_priority,
    fit_range,
    forward_fill,
    hours_since_observed,
    scale_unit,
)

logger = logging.getLogger(__name__)


def _feature_sources(feature_set: dict[str, Any]) -> dict[str, list[str]]:
    """`dynamic` of a feature set as {feature: [source parameters in priority order]}.

    A list entry `HR` means the feature HR from parameter HR; a mapping entry
    `SysBP: [SysABP, NISysABP]` takes the first source observed in each hour cell.
    """
    sources: dict[str, list[str]] = {}
    for entry in feature_set.get("dynamic") or []:
        items = entry.items() if isinstance(entry, dict) else [(entry, entry)]
        for name, source in items:
            if str(name) in sources:
                raise ValueError(f"feature {name!r} appears twice in a feature set's `dynamic` list.")
            sources[str(name)] = [source] if isinstance(source, str) else [str(s) for s in source]
    if not sources:
        raise ValueError("a feature set has an empty `dynamic` list (parameters_features.yml).")
    return sources


def build_hourly_cells(
    timeseries: pd.DataFrame,
    splits: pd.DataFrame,
    features: dict[str, Any],
    feature_set: dict[str, Any],
    feature_set_name: str,
    require_every_parameter: bool = True,
) -> TensorBundle:
    """Hourly means (N, T, F) of one feature set for every record in `splits`, NaN where unobserved.

    Rows at or after the end of the window (minutes >= 60·T) are dropped and counted. A parameter of the feature
    set that no row names is an error (a cohort always has it) unless `require_every_parameter` is false (a few
    records, e.g. one sent to the model server, may lack it: its cells are unobserved).
    """
    n_hours = int(features["n_hours"])
    require_columns(timeseries, ["record_id", "minutes", "parameter", "value"], "timeseries")
    sources = _feature_sources(feature_set)
    channel_names = list(dict.fromkeys(s for priority in sources.values() for s in priority))

    parameter_codes, parameter_names = pd.factorize(timeseries["parameter"])
    available = sorted(str(name) for name in parameter_names)
    lacking = [name for name in channel_names if name not in set(available)]
    if lacking and require_every_parameter:
        raise ValueError(
            f"feature set {feature_set_name!r} (parameters_features.yml) names parameter(s) {lacking} "
            f"that the timeseries lacks; available parameters: {available}."
        )
    # Code per distinct parameter → channel position (-1: not in this feature set).
    code_to_channel = pd.Index(channel_names).get_indexer(parameter_names)
    channel = code_to_channel[parameter_codes]

    records = np.sort(splits["record_id"].to_numpy(dtype=np.int64))
    record_id = timeseries["record_id"].to_numpy(dtype=np.int64)
    record_pos = np.searchsorted(records, record_id).clip(max=max(records.size - 1, 0))
    keep = (channel >= 0) & (records[record_pos] == record_id)

    minutes = timeseries["minutes"].to_numpy()
    value = timeseries["value"].to_numpy(dtype=np.float64)
    negative = keep & (minutes < 0)
    if negative.any():
        examples = timeseries.loc[negative, ["record_id", "minutes", "parameter"]].head(5).to_dict("records")
        raise ValueError(
            f"timeseries has {int(negative.sum())} row(s) before ICU admission (minutes < 0), "
            f"e.g. {examples}; ingestion must keep minutes within 0..{60 * n_hours}."
        )
    non_finite = keep & ~np.isfinite(value)
    if non_finite.any():
        examples = timeseries.loc[non_finite, ["record_id", "minutes", "parameter", "value"]].head(5).to_dict("records")
        raise ValueError(f"timeseries has {int(non_finite.sum())} non-finite value(s), e.g. {examples}.")
    after_window = keep & (minutes >= 60 * n_hours)
    keep &= ~after_window

    cells = bin_hourly(
        record_pos[keep],
        minutes[keep],
        channel[keep],
        value[keep],
        records.size,
        n_hours,
        len(channel_names),
    )
    source_channels = [[channel_names.index(s) for s in priority] for priority in sources.values()]
    values = combine_by_priority(cells, source_channels)
    logger.info(
        "%s: %d records x %d hours x %d features from %d rows; %d row(s) at or after hour %d dropped",
        feature_set_name,
        records.size,
        n_hours,
        len(sources),
        int(keep.sum()),
        int(after_window.sum()),
        n_hours,
    )
    return {
        "values": values,
        "record_id": records,
        "feature_names": np.array(list(sources), dtype=np.str_),
        "rows_in_window": np.int64(keep.sum()),
        "rows_after_window": np.int64(after_window.sum()),
    }


def _align_static(static: pd.DataFrame, record_id: np.ndarray) -> pd.DataFrame:
    """Rows of `static` in the order of `record_id`; every record must be present."""
    indexed = static.set_index("record_id")
    missing = np.setdiff1d(record_id, indexed.index.to_numpy())
    if missing.size:
        raise ValueError(
            f"{missing.size} record(s) of the splits are not in static, e.g. {missing[:5].tolist()}; "
            "splits and static come from different ingestion runs."
        )
    return indexed.loc[record_id]


def _static_columns(aligned: pd.DataFrame, static_cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw numeric statics (N, k) float64 with NaN, one-hot categories (N, m) and all S names."""
    numeric_names = list(static_cfg.get("numeric") or [])
    one_hot = dict(static_cfg.get("one_hot") or {})
    require_columns(aligned.reset_index(), numeric_names + list(one_hot), "static")
    numeric = aligned[numeric_names].to_numpy(dtype=np.float64) if numeric_names else np.zeros((len(aligned), 0))
    names = list(numeric_names)
    blocks = []
    for column, categories in one_hot.items():
        categories = [str(c) for c in categories]
        observed = aligned[column].dropna().astype(str)
        unknown = sorted(set(observed) - set(categories))
        if unknown:
            raise ValueError(
                f"static.{column} has value(s) {unknown} that features.<source>.static.one_hot.{column} "
                f"does not list ({categories}); add them there."
            )
        codes = pd.Categorical(aligned[column].astype("string"), categories=categories).codes
        block = np.zeros((len(aligned), len(categories)), dtype=np.float32)
        known = codes >= 0  # unknown (NaN) category → all zeros
        block[np.flatnonzero(known), codes[known]] = 1.0
        blocks.append(block)
        names += [f"{column}={c}" for c in categories]
    categorical = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(aligned), 0), np.float32)
    return numeric, categorical, names


def fit_feature_spec(
    hourly_cells: TensorBundle,
    static: pd.DataFrame,
    splits: pd.DataFrame,
    features: dict[str, Any],
    feature_set: dict[str, Any],
    feature_set_name: str,
) -> dict[str, Any]:
    """Feature names, units and the train-split scaler (p05, p95, gap fill) of one feature set.

    Dynamic statistics are over the observed hourly cells of train records; statics over
    train records with a known value. Values map back as value = p05 + x·(p95 − p05).
    """
    record_id = hourly_cells["record_id"]
    names = [str(n) for n in hourly_cells["feature_names"]]
    train_ids = splits.loc[splits["split"] == "train", "record_id"].to_numpy(dtype=np.int64)
    train_rows = np.isin(record_id, train_ids)
    train_values = hourly_cells["values"][train_rows]
    units = features.get("units") or {}
    sources = _feature_sources(feature_set)
    gap_fill = features.get("gap_fill") or {}

    scaler = {}
    for f, name in enumerate(names):  # one pass per feature; each reduces a whole column
        column = train_values[:, :, f]
        n_observed = int(np.isfinite(column).sum())
        if n_observed == 0:
            raise ValueError(
                f"feature {name!r} of feature set {feature_set_name!r} is never observed in the train split "
                f"({int(train_rows.sum())} records); remove it from the feature set or change the splits."
            )
        fitted = fit_range(column)
        scaler[name] = {
            "p05": fitted.p05,
            "p95": fitted.p95,
            "median": fitted.median,
            "range": fitted.how,
            "fill": float(gap_fill.get(name, fitted.median)),
            "fill_from": "parameter gap_fill" if name in gap_fill else "train median",
            "observed_cells_train": n_observed,
        }

    aligned = _align_static(static, record_id[train_rows])
    numeric, _, static_names = _static_columns(aligned, features["static"])
    static_scaler = {}
    for k, name in enumerate(features["static"].get("numeric") or []):
        column = numeric[:, k]
        if not np.isfinite(column).any():
            raise ValueError(
                f"static {name!r} is unknown for every train record; remove it from "
                "features.<source>.static.numeric."
            )
        fitted = fit_range(column)
        static_scaler[name] = {"p05": fitted.p05, "p95": fitted.p95, "median": fitted.median, "range": fitted.how}

    label = static.set_index("record_id")["label"]
    split_counts = {}
    for name in SPLITS:
        ids = splits.loc[splits["split"] == name, "record_id"]
        split_counts[name] = {"records": int(ids.size), "positive": int(label.loc[ids].sum())}
    return {
        "feature_set": feature_set_name,
        "feature_names": names,
        "sources": {name: sources[name] for name in names},
        "units": {name: units.get(sources[name][0], "") for name in names},
        "static_names": static_names,
        "n_hours": int(features["n_hours"]),
        "scaler": scaler,
        "static_scaler": static_scaler,
        "static_one_hot": {k: [str(c) for c in v] for k, v in (features["static"].get("one_hot") or {}).items()},
        "splits": split_counts,
        "rows_in_window": int(hourly_cells["rows_in_window"]),
        "rows_after_window": int(hourly_cells["rows_after_window"]),
    }


def _require_finite(array_name: str, array: np.ndarray, column_names: list[str]) -> None:
    """Error naming the columns of `array` (last axis) that hold NaN or inf."""
    bad = (~np.isfinite(array)).reshape(-1, array.shape[-1]).sum(axis=0)
    if bad.any():
        columns = {column_names[c]: int(bad[c]) for c in np.flatnonzero(bad)}
        raise ValueError(f"{array_name} has NaN/inf after imputation and scaling (cells per column): {columns}.")


def impute_and_scale(hourly_cells: TensorBundle, static: pd.DataFrame, feature_spec: dict[str, Any]) -> TensorBundle:
    """X, mask, delta (N, T, F), static (N, S) and record_id of the records in `hourly_cells`.

    Forward fill inside the window, then the spec's gap fill (train median), then winsorise
    and min-max with the train p05/p95; delta is hours since the latest observation / T.
    """
    names = feature_spec["feature_names"]
    if [str(n) for n in hourly_cells["feature_names"]] != names:
        raise ValueError(
            f"hourly cells have features {hourly_cells['feature_names'].tolist()} but the feature spec "
            f"has {names}; they come from different runs."
        )
    n_hours = int(feature_spec["n_hours"])
    cells = hourly_cells["values"]
    record_id = hourly_cells["record_id"]

    mask = ~np.isnan(cells)
    filled, last_seen = forward_fill(cells)
    delta = hours_since_observed(last_seen, n_hours)
    del last_seen
    scaler = feature_spec["scaler"]
    fill = np.array([scaler[n]["fill"] for n in names], dtype=np.float32)
    low = np.array([scaler[n]["p05"] for n in names], dtype=np.float32)
    high = np.array([scaler[n]["p95"] for n in names], dtype=np.float32)
    filled = np.where(np.isnan(filled), fill, filled)
    X = scale_unit(filled, low, high)
    del filled

    aligned = _align_static(static, record_id)
    numeric, categorical, static_names = _static_columns(
        aligned,
        {
            "numeric": list(feature_spec["static_scaler"]),
            "one_hot": feature_spec["static_one_hot"],
        },
    )
    static_scaler = feature_spec["static_scaler"]
    median, low_s, high_s = (
        np.array([static_scaler[n][key] for n in static_scaler], dtype=np.float64)
        for key in ("median", "p05", "p95")
    )
    numeric = np.where(np.isnan(numeric), median, numeric)
    static_matrix = np.concatenate([scale_unit(numeric, low_s, high_s), categorical], axis=1)

    _require_finite("X", X, names)
    _require_finite("delta", delta, names)
    _require_finite("static", static_matrix, static_names)
    return {"X": X, "mask": mask, "delta": delta, "static": static_matrix.astype(np.float32), "record_id": record_id}


def build_model_input(
    hourly_cells: TensorBundle,
    static: pd.DataFrame,
    splits: pd.DataFrame,
    feature_spec: dict[str, Any],
) -> tuple[TensorBundle, TensorBundle, TensorBundle]:
    """Imputed, scaled tensors per split (`impute_and_scale`): X, mask, delta (N, T, F), static (N, S), y,
    record_id, group."""
    arrays = impute_and_scale(hourly_cells, static, feature_spec)
    record_id, mask = arrays["record_id"], arrays["mask"]
    split_of = splits.set_index("record_id").loc[record_id]
    y = _align_static(static, record_id)["label"].to_numpy(dtype=np.int64)
    bundles = []
    for name in SPLITS:
        rows = np.flatnonzero(split_of["split"].to_numpy() == name)
        bundles.append(
            {
                **{key: arrays[key][rows] for key in ("X", "mask", "delta", "static", "record_id")},
                "y": y[rows],
                "group": split_of["group"].to_numpy()[rows].astype(np.str_),
            }
        )
        logger.info(
            "%s %s: X %s, %d positive, %.1f%% of cells observed",
            feature_spec["feature_set"],
            name,
            bundles[-1]["X"].shape,
            int(y[rows].sum()),
            100.0 * float(mask[rows].mean()) if rows.size else 0.0,
        )
    return tuple(bundles)


def model_input_of_records(timeseries: pd.DataFrame, static: pd.DataFrame, feature_spec: dict[str, Any]) -> TensorBundle:
    """The model input of records outside the study (e.g. sent to the model server), built with a trained feature
    spec: the same hourly binning, imputation and train-split scaling as the study's records, no label.

    `timeseries` follows the ingestion contract (record_id, minutes, parameter, value); `static` has one row per
    record with the spec's static columns (a column it lacks counts as unknown: the train median, no category).
    Records are in the order of `static`.
    """
    require_columns(static, ["record_id"], "static")
    static = static.copy()
    for column in [*feature_spec["static_scaler"], *feature_spec["static_one_hot"]]:
        if column not in static:
            static[column] = np.nan
    order = static["record_id"].to_numpy(dtype=np.int64)
    feature_set = {"dynamic": [{name: sources} for name, sources in feature_spec["sources"].items()]}
    cells = build_hourly_cells(timeseries, static[["record_id"]], {"n_hours": feature_spec["n_hours"]}, feature_set,
                               feature_spec["feature_set"], require_every_parameter=False)
    arrays = impute_and_scale(cells, static, feature_spec)
    position = np.searchsorted(arrays["record_id"], order)  # cells come sorted by record_id
    return {key: value[position] for key, value in arrays.items()}
