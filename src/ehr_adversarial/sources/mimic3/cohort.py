"""The ICU-stay cohort with its inclusion flags, its attrition, and the static table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ehr_adversarial.sources.database import Database
from ehr_adversarial.sources.mimic3.schema import (
    COHORT_DTYPES,
    STAY_DEFINITIONS,
    cast_columns,
    cohort_filters,
    query_concept,
)


def cohort_settings(cohort: dict[str, Any]) -> dict[str, Any]:
    definition = cohort["stay_definition"]
    if definition not in STAY_DEFINITIONS:
        raise ValueError(f"ingestion.mimic3.cohort.stay_definition is {definition!r}; use one of {STAY_DEFINITIONS}")
    rule = cohort["window_rule"]
    cohort_filters(rule)  # fails naming the allowed rules
    return {
        "min_age_years": float(cohort["min_age_years"]),
        "age_cap_above": float(cohort["age_cap"]["above"]),
        "age_cap_value": float(cohort["age_cap"]["value"]),
        "min_hospital_los_days": float(cohort["min_hospital_los_days"]),
        "min_icu_los_days": float(cohort["min_icu_los_days"]),
        "window_hours": int(cohort["window_hours"]),
        "window_rule": rule,
        "stay_definition": definition,
    }


def cohort_attrition(cohort: pd.DataFrame, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Per filter of the window rule, in order: its setting, how many stays fail it at all,
    how many it removes from those still in, and how many remain."""
    remaining = pd.Series(True, index=cohort.index)
    steps = []
    for flag, setting in cohort_filters(settings["window_rule"]):
        passes = cohort[flag]
        removed = int((remaining & ~passes).sum())
        remaining &= passes
        steps.append(
            {
                "filter": flag,
                "setting": f"{setting} = {settings[setting]}",
                "failing": int((~passes).sum()),
                "removed": removed,
                "remaining": int(remaining.sum()),
            }
        )
    return steps


def build_cohort(database: Database, load_summary: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """Every ICU stay with its icustay-detail facts, its window (`window_end`,
    `window_hours_in_stay`), one boolean column per inclusion filter and `included` (all
    filters of the window rule passed). Fails naming the filter that leaves no stay."""
    settings = cohort_settings(params["cohort"])
    with database.connect() as conn:
        cohort = cast_columns(query_concept(conn, "cohort", settings), COHORT_DTYPES)
    cohort["included"] = cohort[[flag for flag, _ in cohort_filters(settings["window_rule"])]].all(axis=1)
    if cohort.empty:
        raise ValueError(f"{database.where}: mimiciii.icustays joined with admissions and patients is empty")
    if not cohort["included"].any():
        step = next(s for s in cohort_attrition(cohort, settings) if s["remaining"] == 0)
        raise ValueError(
            f"the MIMIC-III cohort is empty: filter {step['filter']} ({step['setting']}) removed the last "
            f"{step['removed']} of {len(cohort)} ICU stays. Relax ingestion.mimic3.cohort.{step['setting'].split(' =')[0]}."
        )
    return cohort


def build_static(cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per included stay in the static contract: record_id = icustay_id, age (years,
    >89 capped), gender (1 = male), height/weight (not extracted: NaN), icu_type = first
    care unit, label = in-hospital death, split_group "all", plus MIMIC-III extras, among
    them `window_hours_in_stay`: the hours of the window inside the stay (less than the
    window for a padded short stay; no measurement lies after it)."""
    stays = cohort.loc[cohort["included"]]
    static = pd.DataFrame(
        {
            "record_id": stays["icustay_id"].astype("int64"),
            "age": stays["age_years"].astype("float64"),
            "gender": stays["gender"].map({"M": 1.0, "F": 0.0}).astype("float64"),
            "height": np.nan,
            "weight": np.nan,
            "icu_type": stays["first_careunit"].astype("str"),
            "label": stays["hospital_expire_flag"].astype("int64"),
            "split_group": "all",
            "subject_id": stays["subject_id"].astype("int64"),
            "hadm_id": stays["hadm_id"].astype("int64"),
            "intime": stays["intime"],
            "icu_los_hours": stays["icu_los_hours"],
            "window_hours_in_stay": stays["window_hours_in_stay"],
            "hospital_los_days": stays["hospital_los_days"],
            "dbsource": stays["dbsource"].astype("str"),
        }
    )
    return static.astype({"height": "float64", "weight": "float64", "split_group": "str"}).reset_index(drop=True)
