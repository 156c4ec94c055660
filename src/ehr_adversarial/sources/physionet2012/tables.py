"""Raw rows → classified rows → the ingestion tables (timeseries, static, rejected rows) and their summary."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ehr_adversarial.sources.physionet2012.formats import (
    ERRORS_SHOWN,
    KINDS,
    NUMBER_PATTERN,
    REJECT_REASONS,
    STATIC_COLUMNS,
    TIME_PATTERN,
    TIMESERIES_DESCRIPTOR,
)
from ehr_adversarial.sources.physionet2012.read import record_rows

logger = logging.getLogger(__name__)


def classify_physionet2012_rows(raw_rows: pd.DataFrame, ingestion: dict[str, Any]) -> pd.DataFrame:
    """Parse time and value of every raw row and decide where it goes.

    Adds `minutes`, `value_number`, `kind` (timeseries | descriptor | rejected) and `reason`
    (one of REJECT_REASONS, missing for kept rows). Malformed rows raise with file and line.
    Per-parameter facts are looked up once per category and spread to rows by code.
    """
    descriptors = set(ingestion["descriptors"])
    ranges = {name: (float(low), float(high)) for name, (low, high) in ingestion["ranges"].items()}
    names = np.asarray(raw_rows["parameter"].cat.categories, dtype=object)
    codes = raw_rows["parameter"].cat.codes.to_numpy()

    def by_parameter(values: list) -> np.ndarray:
        return np.asarray(values)[codes]

    reason = np.full(len(raw_rows), -1, dtype=np.int8)

    def reject(mask: np.ndarray, why: str) -> None:
        reason[(reason < 0) & mask] = REJECT_REASONS.index(why)

    empty = by_parameter([name == "" for name in names])
    reject(empty & (raw_rows["time"] == "").to_numpy() & (raw_rows["value"] == "").to_numpy(), "blank_line")
    reject(empty, "empty_parameter")
    reject(by_parameter([name not in descriptors and name not in ranges for name in names]), "unknown_parameter")

    parsed = reason < 0
    minutes = _parse_minutes(raw_rows, parsed)
    value = _parse_values(raw_rows, parsed)

    # The first row of each descriptor in a record is the descriptor; for Weight, the first at 00:00.
    is_descriptor_name = by_parameter([name in descriptors for name in names]) & parsed
    is_weight = by_parameter([name == TIMESERIES_DESCRIPTOR for name in names])
    candidates = np.flatnonzero(is_descriptor_name & (~is_weight | (minutes == 0)))
    firsts = ~pd.DataFrame({"r": raw_rows["record_id"].to_numpy()[candidates], "p": codes[candidates]}).duplicated().to_numpy()
    is_descriptor = np.zeros(len(raw_rows), dtype=bool)
    is_descriptor[candidates[firsts]] = True
    reject(is_descriptor_name & ~is_weight & ~is_descriptor, "repeated_descriptor")
    is_record_id = by_parameter([name == "RecordID" for name in names])
    _check_record_ids(raw_rows, value, is_descriptor & is_record_id)

    reject((value == float(ingestion["missing_marker"])) & ~is_record_id, "missing_marker")
    reject(~is_descriptor & (minutes > int(ingestion["window_minutes"])), "outside_window")
    low = by_parameter([ranges.get(name, (np.nan, np.nan))[0] for name in names])
    high = by_parameter([ranges.get(name, (np.nan, np.nan))[1] for name in names])
    reject(~is_record_id & ((value < low) | (value > high)), "out_of_range")

    kind = np.where(reason >= 0, KINDS.index("rejected"), np.where(is_descriptor, KINDS.index("descriptor"), KINDS.index("timeseries")))
    return raw_rows.assign(
        minutes=minutes,
        value_number=value,
        kind=pd.Categorical.from_codes(kind, categories=KINDS),
        reason=pd.Categorical.from_codes(reason, categories=REJECT_REASONS),
    )


def _parse_minutes(rows: pd.DataFrame, parsed: np.ndarray) -> np.ndarray:
    """`hh:mm` → minutes since admission (int32, −1 where not parsed); a bad time raises with file and line."""
    times = rows["time"].cat.categories
    valid = np.asarray(times.str.match(TIME_PATTERN), dtype=bool)
    codes = rows["time"].cat.codes.to_numpy()
    bad = parsed & ~valid[codes]
    if bad.any():
        raise ValueError(_row_errors(rows, bad, "time", "is not hh:mm"))
    per_time = np.array([int(t[:-3]) * 60 + int(t[-2:]) if ok else -1 for t, ok in zip(times, valid, strict=True)], dtype=np.int32)
    return per_time[codes]


def _parse_values(rows: pd.DataFrame, parsed: np.ndarray) -> np.ndarray:
    """Text → float64 (NaN where not parsed); an unparseable value raises with file and line."""
    text = pc.if_else(pa.array(parsed), pa.array(rows["value"], type=pa.large_string()), pa.scalar("nan", pa.large_string()))
    try:
        numbers = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        numbers = None
    if numbers is None or not np.isfinite(numbers[parsed]).all():
        # Slow path, only for a file that is broken: find the offending rows.
        valid = pc.match_substring_regex(text, NUMBER_PATTERN).to_numpy(zero_copy_only=False)
        raise ValueError(_row_errors(rows, parsed & ~valid, "value", "is not a number"))
    return numbers


def _check_record_ids(rows: pd.DataFrame, value: np.ndarray, record_id_rows: np.ndarray) -> None:
    wrong = record_id_rows & (value != rows["record_id"].to_numpy())
    if wrong.any():
        raise ValueError(_row_errors(rows, wrong, "value", "is a RecordID that differs from the file name"))


def _row_errors(rows: pd.DataFrame, bad: np.ndarray, column: str, problem: str) -> str:
    shown = rows.loc[bad, ["file", "line", column]].head(ERRORS_SHOWN)
    where = "; ".join(f"{file} line {line}: {column} {text!r} {problem}" for file, line, text in shown.itertuples(index=False))
    return f"{int(bad.sum())} rows with a bad {column}: {where}"


def build_physionet2012_timeseries(classified_rows: pd.DataFrame) -> pd.DataFrame:
    """The kept measurements: record_id, minutes, parameter, value, sorted by record and time."""
    kept = np.flatnonzero(_is_kind(classified_rows, "timeseries"))
    record_id, minutes = classified_rows["record_id"].to_numpy(np.int64)[kept], classified_rows["minutes"].to_numpy(np.int32)[kept]
    rows = kept[np.lexsort((minutes, record_id))]
    return pd.DataFrame({
        "record_id": classified_rows["record_id"].to_numpy(np.int64)[rows],
        "minutes": classified_rows["minutes"].to_numpy(np.int32)[rows],
        "parameter": _as_strings(classified_rows["parameter"], rows),
        "value": classified_rows["value_number"].to_numpy(np.float64)[rows],
    })


def collect_physionet2012_rejected_rows(classified_rows: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows with file, line, record_id, raw time/parameter/value and reason."""
    rows = np.flatnonzero(_is_kind(classified_rows, "rejected"))
    return pd.DataFrame({
        "file": _as_strings(classified_rows["file"], rows),
        "line": classified_rows["line"].to_numpy(np.int32)[rows],
        "record_id": classified_rows["record_id"].to_numpy(np.int64)[rows],
        "time": _as_strings(classified_rows["time"], rows),
        "parameter": _as_strings(classified_rows["parameter"], rows),
        "value": classified_rows["value"].iloc[rows].astype(str).to_numpy(),
        "reason": _as_strings(classified_rows["reason"], rows),
    })


def _is_kind(classified_rows: pd.DataFrame, kind: str) -> np.ndarray:
    return classified_rows["kind"].cat.codes.to_numpy() == KINDS.index(kind)


def _as_strings(categorical: pd.Series, rows: np.ndarray) -> pd.Series:
    """Rows of a categorical column as a plain string column (through Arrow: fast for millions of rows)."""
    categories = pa.array(np.asarray(categorical.cat.categories, dtype=object), type=pa.string())
    return pc.take(categories, pa.array(categorical.cat.codes.to_numpy()[rows])).to_pandas()


def build_physionet2012_static(
    classified_rows: pd.DataFrame, record_files: pd.DataFrame, outcomes: pd.DataFrame, ingestion: dict[str, Any]
) -> pd.DataFrame:
    """One row per record: descriptors, outcomes, set letter, near-empty flag, number of measurements.

    Outcomes must list exactly the records of their set; anything else is an error that
    names the outcome file.
    """
    _check_outcomes_match(record_files, outcomes)
    static = physionet2012_descriptors(classified_rows, record_files, ingestion)
    static = static.merge(outcomes.drop(columns=["split_group", "outcome_file"]), on="record_id", how="left", validate="1:1")
    static["label"] = static["label"].astype(np.int64)
    static["near_empty"] = static["record_id"].isin([int(x) for x in ingestion.get("near_empty_records") or []])
    n_rows = pd.Series(classified_rows["record_id"].to_numpy()[_is_kind(classified_rows, "timeseries")]).value_counts()
    static["n_timeseries_rows"] = static["record_id"].map(n_rows).fillna(0).astype(np.int64)
    return static[["record_id", "age", "gender", "height", "weight", "icu_type", "label", "split_group",
                   "saps_i", "sofa", "length_of_stay", "survival", "near_empty", "n_timeseries_rows"]]


def physionet2012_descriptors(
    classified_rows: pd.DataFrame, record_files: pd.DataFrame, ingestion: dict[str, Any]
) -> pd.DataFrame:
    """One row per record file: record_id, age, gender, height, weight, icu_type (NaN / "nan" when the record
    lacks the descriptor or it was rejected), split_group."""
    rows = np.flatnonzero(_is_kind(classified_rows, "descriptor"))
    descriptors = pd.DataFrame({
        "record_id": classified_rows["record_id"].to_numpy()[rows],
        "parameter": _as_strings(classified_rows["parameter"], rows),
        "value": classified_rows["value_number"].to_numpy()[rows],
    })
    wide = descriptors.pivot(index="record_id", columns="parameter", values="value")
    wide = wide.reindex(index=record_files["record_id"], columns=[*STATIC_COLUMNS, "ICUType"])
    icu_types = {int(code): str(name) for code, name in ingestion["icu_types"].items()}
    return pd.DataFrame({
        "record_id": record_files["record_id"].to_numpy(np.int64),
        **{column: wide[name].to_numpy(np.float64) for name, column in STATIC_COLUMNS.items()},
        "icu_type": pd.Series(wide["ICUType"].to_numpy()).map(icu_types).astype("str").to_numpy(),
        "split_group": record_files["split_group"].astype(str).to_numpy(),
    })


def parse_physionet2012_records(
    files: Mapping[str, bytes], ingestion: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Record files given as bytes ({"142675.txt": b"Time,Parameter,Value\\n..."}) → (timeseries, descriptors,
    rejected rows), by exactly the rules ingestion applies to the sets; errors name the file and line."""
    record_files, raw_rows = record_rows(("", name, data) for name, data in files.items())
    classified = classify_physionet2012_rows(raw_rows, ingestion)
    return (build_physionet2012_timeseries(classified), physionet2012_descriptors(classified, record_files, ingestion),
            collect_physionet2012_rejected_rows(classified))


def _check_outcomes_match(record_files: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    for set_name, files in record_files.groupby("split_group"):
        listed = outcomes[outcomes["split_group"] == set_name]
        records, outcome_ids = set(files["record_id"]), set(listed["record_id"])
        if records != outcome_ids:
            path = listed["outcome_file"].iat[0] if len(listed) else f"Outcomes-{set_name}.txt"
            no_outcome, no_record = sorted(records - outcome_ids), sorted(outcome_ids - records)
            raise ValueError(
                f"{path} does not match the records of set-{set_name}: {len(no_outcome)} records have no outcome "
                f"(e.g. {no_outcome[:ERRORS_SHOWN]}), {len(no_record)} outcomes have no record file "
                f"(e.g. {no_record[:ERRORS_SHOWN]}). Use the outcome file of the same set."
            )


def summarize_physionet2012_ingestion(
    classified_rows: pd.DataFrame, static: pd.DataFrame, raw_manifest: dict[str, Any]
) -> dict[str, Any]:
    """Counts per set and overall: records, deaths, lines, rows kept and rejected (per reason, per parameter)."""
    rows = classified_rows
    kept = _is_kind(rows, "timeseries")
    by_parameter = rows.loc[_is_kind(rows, "rejected"), ["parameter", "reason"]].groupby(
        ["parameter", "reason"], observed=True).size()
    # Same record, minute and parameter twice: kept (the features stage averages per bin), but counted.
    same_time = np.sort(
        (rows["record_id"].to_numpy()[kept] * 10_000 + rows["minutes"].to_numpy()[kept]) * 1_000
        + rows["parameter"].cat.codes.to_numpy()[kept]
    )
    weight_at_admission = kept & (rows["parameter"] == TIMESERIES_DESCRIPTOR).to_numpy(bool) & (rows["minutes"].to_numpy() == 0)
    summary = {
        "source": "physionet2012",
        **_counts(rows, static),
        "rejected_by_parameter": {
            str(parameter): {str(reason): int(n) for (_, reason), n in group.items()}
            for parameter, group in by_parameter.groupby(level=0, observed=True)
        },
        "static_missing": {column: int(static[column].isna().sum()) for column in [*STATIC_COLUMNS.values(), "icu_type"]},
        "duplicate_time_parameter_rows": int((np.diff(same_time) == 0).sum()),
        "weight_rows_at_admission_after_descriptor": int(weight_at_admission.sum()),
        "sets": {
            set_name: _counts(rows.loc[(rows["split_group"] == set_name).to_numpy(bool), ["kind", "reason"]],
                              static[static["split_group"] == set_name])
            for set_name in raw_manifest["sets"]
        },
    }
    logger.info(
        "PhysioNet 2012: %d records (%d deaths), %d lines → %d time-series rows, %d descriptor values, %d rejected %s",
        summary["records"], summary["deaths"], summary["lines"], summary["timeseries_rows"],
        summary["descriptor_values"], summary["rejected_rows"], summary["rejected_by_reason"],
    )
    return summary


def _counts(rows: pd.DataFrame, static: pd.DataFrame) -> dict[str, Any]:
    kinds = np.bincount(rows["kind"].cat.codes.to_numpy(), minlength=len(KINDS))
    reasons = rows["reason"].value_counts(sort=False)
    return {
        "records": len(static),
        "deaths": int(static["label"].sum()),
        "lines": len(rows),
        **{f"{'descriptor_values' if kind == 'descriptor' else kind + '_rows'}": int(n) for kind, n in zip(KINDS, kinds, strict=True)},
        "rejected_by_reason": {str(reason): int(n) for reason, n in reasons.items() if n},
        "near_empty_records": int(static["near_empty"].sum()),
        "records_without_timeseries": int((static["n_timeseries_rows"] == 0).sum()),
    }
