"""Measurements and diagnoses of the cohort (SQL in the database), and the ingestion summary."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ehr_adversarial.sources.database import Database
from ehr_adversarial.sources.mimic3.cohort import cohort_attrition, cohort_settings
from ehr_adversarial.sources.mimic3.schema import (
    COHORT_STAYS_TYPES,
    DIAGNOSES_DTYPES,
    FEATURE_ITEM_TYPES,
    REJECT_REASONS,
    REJECTED_DTYPES,
    TIMESERIES_DTYPES,
    cast_columns,
    query_concept,
)


def extract_measurements(
    database: Database, cohort: pd.DataFrame, feature_items: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 19 features of the included stays in their window [intime, window_end), long format
    (record_id = icustay_id, minutes since intime, parameter, value), and the rows rejected
    (CHARTEVENTS error flag, not the required specimen, no numeric value, outside the valid
    range) with the reason."""
    stays = cohort.loc[cohort["included"], list(COHORT_STAYS_TYPES)]
    with database.connect() as conn:
        conn.create_temp_table("cohort_stays", stays, COHORT_STAYS_TYPES)
        conn.create_temp_table("feature_items", feature_items, FEATURE_ITEM_TYPES)
        rows = query_concept(conn, "measurements").rename(columns={"reject_reason": "reason"})
    kept = rows["reason"].isna()
    timeseries = cast_columns(rows.loc[kept], TIMESERIES_DTYPES).reset_index(drop=True)
    rejected = cast_columns(rows.loc[~kept], REJECTED_DTYPES).reset_index(drop=True)
    return timeseries, rejected


def extract_diagnoses(database: Database, load_summary: dict[str, Any]) -> pd.DataFrame:
    """ICD-9 diagnoses of every admission with the 3-character category (4 for E-codes)."""
    with database.connect() as conn:
        return cast_columns(query_concept(conn, "diagnoses"), DIAGNOSES_DTYPES)


def summarise_ingestion(
    load_summary: dict[str, Any],
    cohort: pd.DataFrame,
    feature_items: pd.DataFrame,
    timeseries: pd.DataFrame,
    rejected_rows: pd.DataFrame,
    diagnoses: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Counts of what ingestion kept and dropped, and why."""
    settings = cohort_settings(params["cohort"])
    included = cohort.loc[cohort["included"]]
    kept = timeseries.groupby("parameter").size()
    rejected = rejected_rows.groupby(["parameter", "reason"]).size()
    per_parameter = {
        parameter: {
            "kept": int(kept.get(parameter, 0)),
            **{reason: int(rejected.get((parameter, reason), 0)) for reason in REJECT_REASONS},
        }
        for parameter in feature_items["parameter"].drop_duplicates()
    }
    return {
        "source": "mimic3",
        "database": load_summary["database"],
        "tables": {name: info["rows"] for name, info in load_summary["tables"].items()},
        "cohort": {
            "settings": settings,
            "icu_stays": len(cohort),
            "included": len(included),
            "deaths": int(included["hospital_expire_flag"].sum()),
            # Included stays whose window ends before window_hours (padded window rule only).
            "shorter_than_window": int((included["window_hours_in_stay"] < settings["window_hours"]).sum()),
            "attrition": cohort_attrition(cohort, settings),
        },
        "measurements": {
            "kept": len(timeseries),
            "rejected": len(rejected_rows),
            "rejected_by_reason": {reason: int((rejected_rows["reason"] == reason).sum()) for reason in REJECT_REASONS},
            "records_with_measurements": int(timeseries["record_id"].nunique()),
            "per_parameter": per_parameter,
        },
        "feature_items": feature_items[["parameter", "source_table", "itemid", "found_label"]].to_dict("records"),
        "diagnoses": {
            "rows": len(diagnoses),
            "admissions": int(diagnoses["hadm_id"].nunique()),
            "codes": int(diagnoses["icd9_code"].nunique()),
            "categories": int(diagnoses["icd9_3digit"].nunique()),
        },
    }
