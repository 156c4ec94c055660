"""Names, column types and inclusion filters of the MIMIC-III ingestion; the SQL concepts and the tables they read."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ehr_adversarial.sources.database import Connection, DatabaseError
from ehr_adversarial.sources.sql import load_sql

SCHEMA = "mimiciii"


DEMO_URL = "https://physionet.org/content/mimiciii-demo/1.4/"


FULL_URL = "https://physionet.org/content/mimiciii/1.4/"


# The tables each SQL concept reads (checked before it runs, so a missing one is named).
SQL_TABLES = {
    "cohort": ("icustays", "admissions", "patients"),
    "feature_items_check": ("d_items", "d_labitems"),
    "measurements": ("chartevents", "labevents"),
    "diagnoses": ("diagnoses_icd", "d_icd_diagnoses"),
}


REQUIRED_TABLES = tuple(dict.fromkeys(t for tables in SQL_TABLES.values() for t in tables))


CHECKSUM_FILE = "SHA256SUMS.txt"


# Inclusion filters in the order the attrition is reported, with the setting behind each.
# cohort.sql computes every one; which of them a stay must pass depends on the window rule.
COHORT_FILTERS = (
    ("passes_min_age", "min_age_years"),
    ("passes_min_hospital_los", "min_hospital_los_days"),
    ("passes_min_icu_los", "min_icu_los_days"),
    ("passes_full_window", "window_hours"),
    ("passes_stay_definition", "stay_definition"),
)


STAY_DEFINITIONS = ("icustay", "first_icustay")


# How a stay relates to the observation window (ingestion.mimic3.cohort.window_rule):
#   padded       Sun et al. 2018: hospital and ICU LOS >= 1 day; the window is the first
#                window_hours of the stay, ending early at ICU outtime (or at the patient's
#                next ICU intime), and the hours after that stay empty.
#   full_window  the stay must last the whole window (passes_full_window).
WINDOW_RULES = ("padded", "full_window")


def cohort_filters(window_rule: str) -> tuple[tuple[str, str], ...]:
    """The inclusion filters of `window_rule`, in attrition order, with their settings."""
    if window_rule not in WINDOW_RULES:
        raise ValueError(f"ingestion.mimic3.cohort.window_rule is {window_rule!r}; use one of {WINDOW_RULES}")
    if window_rule == "full_window":
        return COHORT_FILTERS
    return tuple(f for f in COHORT_FILTERS if f[0] != "passes_full_window")


COHORT_DTYPES = {
    "icustay_id": "int64",
    "subject_id": "int64",
    "hadm_id": "int64",
    "icustay_seq": "int64",
    "dbsource": "str",
    "first_careunit": "str",
    "gender": "str",
    "dob": "datetime64[us]",
    "admittime": "datetime64[us]",
    "dischtime": "datetime64[us]",
    "intime": "datetime64[us]",
    "outtime": "datetime64[us]",
    "window_end": "datetime64[us]",
    "window_hours_in_stay": "float64",
    "age_raw_years": "float64",
    "age_years": "float64",
    "hospital_los_days": "float64",
    "icu_los_hours": "float64",
    "icu_los_days": "float64",
    "hospital_expire_flag": "int64",
    **{flag: "bool" for flag, _ in COHORT_FILTERS},
}


TIMESERIES_DTYPES = {"record_id": "int64", "minutes": "int32", "parameter": "str", "value": "float64"}


REJECTED_DTYPES = {
    **TIMESERIES_DTYPES,
    "source_table": "str",
    "row_id": "int64",
    "itemid": "int64",
    "charttime": "datetime64[us]",
    "value_text": "str",
    "valuenum": "float64",
    "valueuom": "str",
    "reason": "str",
}


DIAGNOSES_DTYPES = {
    "subject_id": "int64",
    "hadm_id": "int64",
    "seq_num": "Int64",
    "icd9_code": "str",
    "icd9_3digit": "str",
    "short_title": "str",
}


# Column types of the temporary tables the measurement SQL joins (identical on both engines).
COHORT_STAYS_TYPES = {
    "icustay_id": "INTEGER",
    "subject_id": "INTEGER",
    "intime": "TIMESTAMP",
    "window_end": "TIMESTAMP",
}


FEATURE_ITEM_TYPES = {
    "parameter": "VARCHAR",
    "source_table": "VARCHAR",
    "itemid": "INTEGER",
    "expected_label": "VARCHAR",
    "fahrenheit": "BOOLEAN",
    "above": "DOUBLE PRECISION",
    "below": "DOUBLE PRECISION",
    "at_most": "DOUBLE PRECISION",
    # LABEVENTS item naming the specimen of a sample (50800 Specimen Type), its expected label,
    # and the specimen a row needs at its charttime (ART); NULL: no restriction.
    "specimen_itemid": "INTEGER",
    "specimen_label": "VARCHAR",
    "specimen": "VARCHAR",
}


SOURCE_TABLES = ("chartevents", "labevents")


REJECT_REASONS = ("error_flag", "wrong_specimen", "not_numeric", "out_of_range")


def where_to_get(table: str) -> str:
    return (
        f"MIMIC-III table {table.upper()} comes from PhysioNet: the open demo at {DEMO_URL}, "
        f"or the full MIMIC-III v1.4 at {FULL_URL} (credentialed access, CITI training and a "
        "signed data use agreement)"
    )


def cast_columns(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """`frame` with exactly the columns of `dtypes`, cast to them (engines return ints,
    strings and timestamps with different pandas dtypes; the schema is the contract)."""
    return frame.loc[:, list(dtypes)].astype(dtypes)


def require_tables(conn: Connection, tables: list[str] | tuple[str, ...]) -> None:
    """Fails naming the tables of `tables` that the database lacks, and where to get them."""
    missing = [table for table in tables if not conn.table_exists(SCHEMA, table)]
    if missing:
        raise DatabaseError(
            f"{conn.where} has no table(s) {', '.join(f'{SCHEMA}.{t}' for t in missing)}. "
            f"{where_to_get(missing[0])}. Load them with ingestion.mimic3.load_csv: true and list them in "
            "ingestion.mimic3.tables, or build the database with mimic-code (schema mimiciii)."
        )


def query_concept(conn: Connection, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run sql/<name>.sql after checking that the tables it reads exist."""
    require_tables(conn, SQL_TABLES.get(name, ()))
    return conn.query(load_sql(name), params)
