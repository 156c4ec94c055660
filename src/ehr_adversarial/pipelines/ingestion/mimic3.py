"""MIMIC-III ingestion: CSV(.gz) tables → database (DuckDB or PostgreSQL) → cohort and the
paper's 19 features as versioned tables in the ingestion contract.

Nodes that talk to the database take the `database` handle the catalog supplies
(`ehr_adversarial.datasets.database.DatabaseDataset`): loading tables and running SQL IS
their job, and the heavy joins belong in the database, not in pandas. The SQL lives in
`ehr_adversarial/sql/*.sql` and is the same for both engines.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import time
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Node, Pipeline, node

from ehr_adversarial.database import (
    Connection,
    CsvLoadError,
    Database,
    DatabaseError,
)
from ehr_adversarial.sql import create_table_statement, load_sql, statements, table_columns

logger = logging.getLogger(__name__)

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
_HASH_CHUNK = 1 << 20

# Inclusion filters in the order the attrition is reported, with the setting behind each.
COHORT_FILTERS = (
    ("passes_min_age", "min_age_years"),
    ("passes_min_hospital_los", "min_hospital_los_days"),
    ("passes_min_icu_los", "min_icu_los_days"),
    ("passes_full_window", "window_hours"),
    ("passes_stay_definition", "stay_definition"),
)
STAY_DEFINITIONS = ("icustay", "first_icustay")

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
}
SOURCE_TABLES = ("chartevents", "labevents")
REJECT_REASONS = ("error_flag", "not_numeric", "out_of_range")


def _where_to_get(table: str) -> str:
    return (
        f"MIMIC-III table {table.upper()} comes from PhysioNet: the open demo at {DEMO_URL}, "
        f"or the full MIMIC-III v1.4 at {FULL_URL} (credentialed access, CITI training and a "
        "signed data use agreement)"
    )


def _cast(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """`frame` with exactly the columns of `dtypes`, cast to them (engines return ints,
    strings and timestamps with different pandas dtypes; the schema is the contract)."""
    return frame.loc[:, list(dtypes)].astype(dtypes)


# --------------------------------------------------------------------------------------
# Raw files
# --------------------------------------------------------------------------------------
def resolve_tables(tables: str | list[str]) -> list[str]:
    """Table names (lower case) that `tables` ("all" or a list) asks for; fails on unknown names."""
    known = list(table_columns())
    if isinstance(tables, str):
        if tables.lower() != "all":
            raise ValueError(f"ingestion.mimic3.tables is {tables!r}; give a list of table names or 'all'")
        return known
    wanted = [str(name).lower() for name in tables]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(
            f"ingestion.mimic3.tables names unknown MIMIC-III tables {unknown}; known: {', '.join(t.upper() for t in known)}"
        )
    return list(dict.fromkeys(wanted))


def find_table_file(csv_dir: Path, table: str) -> Path:
    """`<TABLE>.csv.gz` or `<TABLE>.csv` in `csv_dir`, any letter case."""
    candidates = {f"{table}.csv.gz", f"{table}.csv"}
    if csv_dir.is_dir():
        for path in sorted(csv_dir.iterdir()):
            if path.name.lower() in candidates and path.is_file():
                return path
    raise FileNotFoundError(
        f"{csv_dir}: no {table.upper()}.csv.gz or {table.upper()}.csv. {_where_to_get(table)}; "
        "put the file in that folder, or set ingestion.mimic3.csv_dir (env EHR_MIMIC3_DIR)."
    )


def read_csv_header(path: Path) -> list[str]:
    """Column names of line 1 of a CSV(.gz), lower case."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as stream:
            first = stream.readline()
    except (OSError, EOFError, zlib.error) as exc:
        raise CsvLoadError(f"{path}, line 1: cannot read the header ({exc}); download the file again") from None
    if not first.strip():
        raise CsvLoadError(f"{path}, line 1: the file is empty; expected a header line")
    return [name.strip().lower() for name in next(csv.reader([first.decode("utf-8").rstrip("\r\n")]))]


def file_columns(path: Path, table: str) -> dict[str, str]:
    """{column: SQL type} in the order of the file's header, which must name exactly the
    columns of the MIMIC-III table (any order, any letter case)."""
    expected = {name: sql_type for name, sql_type, _ in table_columns()[table]}
    header = read_csv_header(path)
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if missing or unexpected or duplicated:
        problems = ", ".join(
            f"{what} {names}" for what, names in (("missing", missing), ("unexpected", unexpected), ("duplicated", duplicated)) if names
        )
        raise CsvLoadError(
            f"{path}, line 1: the header does not match MIMIC-III table {table.upper()}: {problems}; "
            f"expected the columns {', '.join(expected)}"
        )
    return {name: expected[name] for name in header}


def sha256_of(path: Path, decompress: bool = False) -> str:
    """sha256 of a file as stored, or of its decompressed content."""
    digest = hashlib.sha256()
    opener = gzip.open if decompress and path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise CsvLoadError(f"{path}: cannot read the file ({exc}); download it again") from None
    return digest.hexdigest()


def read_checksum_list(csv_dir: Path) -> dict[str, str]:
    """{file name (lower case): sha256} of PhysioNet's SHA256SUMS.txt, if the folder has one."""
    path = csv_dir / CHECKSUM_FILE
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*").lower()] = parts[0].lower()
    return sums


def verify_checksum(path: Path, checksums: dict[str, str]) -> bool:
    """Compares the decompressed content of `path` with PhysioNet's checksum of the CSV;
    returns False when the list has no entry, raises when the content differs."""
    name = path.name.lower().removesuffix(".gz")
    expected = checksums.get(name)
    if expected is None:
        return False
    actual = sha256_of(path, decompress=True)
    if actual != expected:
        raise CsvLoadError(
            f"{path}: sha256 of the CSV content is {actual}, but {CHECKSUM_FILE} says {expected}; "
            "the file is damaged or not the official one and was not loaded. Download it again from PhysioNet."
        )
    return True


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------
def _load_table(conn: Connection, table: str, path: Path, columns: dict[str, str], file_sha256: str) -> int:
    """(Re)create mimiciii.<table> from one file in a single transaction: on any error the
    table is as it was before (absent, or the previous complete load)."""
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
        conn.execute(create_table_statement(table))
        rows = conn.copy_csv(table, columns, path)
        counted = conn.count_rows(SCHEMA, table)
        if counted != rows:
            raise DatabaseError(f"{path}: loaded {rows} rows but {SCHEMA}.{table} holds {counted}")
        conn.execute(
            load_sql("load_log_record"),
            {
                "table_name": table,
                "file_name": path.name,
                "file_bytes": path.stat().st_size,
                "file_sha256": file_sha256,
                "row_count": rows,
                "loaded_at": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            },
        )
    return rows


def _unchanged(conn: Connection, table: str, path: Path, file_sha256: str) -> int | None:
    """Rows of mimiciii.<table> if the log says this very file filled it and the row count
    still matches; None if the table must be (re)loaded. Refuses to replace a table this
    pipeline did not load (e.g. a mimic-code build)."""
    exists = conn.table_exists(SCHEMA, table)
    entry = conn.query(load_sql("load_log_entry"), {"table_name": table})
    if entry.empty:
        if exists:
            raise DatabaseError(
                f"{SCHEMA}.{table} already exists in {conn.where} but was not loaded by this pipeline; "
                "set ingestion.mimic3.load_csv: false to use the existing tables, or drop the table"
            )
        return None
    logged = entry.iloc[0]
    if not exists or logged["file_sha256"] != file_sha256 or int(logged["file_bytes"]) != path.stat().st_size:
        return None
    rows = conn.count_rows(SCHEMA, table)
    return rows if rows == int(logged["row_count"]) else None


def _require_tables(conn: Connection, tables: list[str] | tuple[str, ...]) -> None:
    """Fails naming the tables of `tables` that the database lacks, and where to get them."""
    missing = [table for table in tables if not conn.table_exists(SCHEMA, table)]
    if missing:
        raise DatabaseError(
            f"{conn.where} has no table(s) {', '.join(f'{SCHEMA}.{t}' for t in missing)}. "
            f"{_where_to_get(missing[0])}. Load them with ingestion.mimic3.load_csv: true and list them in "
            "ingestion.mimic3.tables, or build the database with mimic-code (schema mimiciii)."
        )


def load_mimic3_tables(database: Database, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the MIMIC-III CSV(.gz) folder into schema mimiciii, or check an existing database.

    With `load_csv: true` every requested table is loaded from `csv_dir` with the MIMIC-III
    column types, one transaction per table; tables whose file and row count are unchanged
    since the last load are skipped. With `load_csv: false` the tables must already exist
    (e.g. a mimic-code PostgreSQL build). Returns the raw-file manifest and the load summary.
    """
    tables = resolve_tables(params.get("tables", list(REQUIRED_TABLES)))
    load_csv = bool(params.get("load_csv", True))
    manifest: dict[str, Any] = {"csv_dir": None, "checksum_list": None, "files": {}}
    summary: dict[str, Any] = {"database": database.describe(), "schema": SCHEMA, "load_csv": load_csv, "tables": {}}

    with database.connect() as conn:
        if load_csv:
            csv_dir = Path(params["csv_dir"])
            if not csv_dir.is_dir():
                raise FileNotFoundError(
                    f"MIMIC-III folder {csv_dir} does not exist. {_where_to_get('all tables')}; set "
                    "ingestion.mimic3.csv_dir or the env var EHR_MIMIC3_DIR to the folder of its CSV(.gz) files."
                )
            files = {table: find_table_file(csv_dir, table) for table in tables}
            columns = {table: file_columns(path, table) for table, path in files.items()}
            checksums = read_checksum_list(csv_dir) if params.get("verify_checksums", True) else {}
            manifest.update(csv_dir=str(csv_dir), checksum_list=CHECKSUM_FILE if checksums else None)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            for statement in statements("load_log"):
                conn.execute(statement)
            for table in tables:
                path = files[table]
                file_sha256 = sha256_of(path)
                started = time.perf_counter()
                rows = _unchanged(conn, table, path, file_sha256)
                status = "unchanged"
                verified = None
                if rows is None:
                    verified = verify_checksum(path, checksums) if checksums else False
                    rows = _load_table(conn, table, path, columns[table], file_sha256)
                    status = "loaded"
                seconds = time.perf_counter() - started
                logger.info("%s.%s: %s, %d rows in %.1f s (%s)", SCHEMA, table, status, rows, seconds, path.name)
                manifest["files"][table.upper()] = {
                    "file": path.name,
                    "bytes": path.stat().st_size,
                    "sha256": file_sha256,
                    "content_sha256_verified": verified,
                }
                summary["tables"][table] = {"rows": rows, "status": status, "seconds": round(seconds, 3)}
        else:
            _require_tables(conn, tables)
            for table in tables:
                summary["tables"][table] = {"rows": conn.count_rows(SCHEMA, table), "status": "existing"}
    return manifest, summary


def _query_concept(conn: Connection, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run sql/<name>.sql after checking that the tables it reads exist."""
    _require_tables(conn, SQL_TABLES.get(name, ()))
    return conn.query(load_sql(name), params)


# --------------------------------------------------------------------------------------
# Feature items
# --------------------------------------------------------------------------------------
def _item_rows(parameter: str, table: str, items: dict, valid: dict | None, fahrenheit: bool) -> list[dict]:
    valid = valid or {}
    unknown = set(valid) - {"above", "below", "at_most"}
    if unknown:
        raise ValueError(f"ingestion.mimic3.features.{parameter}: unknown range keys {sorted(unknown)}; use above, below, at_most")
    return [
        {
            "parameter": parameter,
            "source_table": table,
            "itemid": int(itemid),
            "expected_label": str(label),
            "fahrenheit": fahrenheit,
            "above": valid.get("above"),
            "below": valid.get("below"),
            "at_most": valid.get("at_most"),
        }
        for itemid, label in items.items()
    ]


def feature_items_table(features: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (feature, itemid) with its source table, expected label and valid range,
    from `ingestion.mimic3.features`."""
    rows: list[dict] = []
    for parameter, spec in features.items():
        table = spec.get("table")
        if table not in SOURCE_TABLES:
            raise ValueError(f"ingestion.mimic3.features.{parameter}.table is {table!r}; use one of {SOURCE_TABLES}")
        rows += _item_rows(parameter, table, spec["items"], spec.get("valid"), False)
        if spec.get("fahrenheit_items"):
            rows += _item_rows(parameter, table, spec["fahrenheit_items"], spec.get("fahrenheit_valid"), True)
    items = pd.DataFrame(rows, columns=list(FEATURE_ITEM_TYPES))
    duplicated = items.loc[items.duplicated(["source_table", "itemid"], keep=False)]
    if not duplicated.empty:
        raise ValueError(f"ingestion.mimic3.features: itemids used by more than one feature: {duplicated[['parameter', 'itemid']].to_dict('records')}")
    return items.astype({"itemid": "int64", "fahrenheit": "bool", "above": "float64", "below": "float64", "at_most": "float64"})


def _label_key(label: Any) -> str:
    return " ".join(str(label).split()).lower() if isinstance(label, str) else ""


def check_feature_items(database: Database, load_summary: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """The configured itemids, verified against D_ITEMS / D_LABITEMS: each must exist, be
    charted in the table it is read from, and carry the expected label. Returns the items
    with what the dictionaries say (`load_summary` only orders this node after the load)."""
    items = feature_items_table(params["features"])
    with database.connect() as conn:
        conn.create_temp_table("feature_items", items, FEATURE_ITEM_TYPES)
        found = _query_concept(conn, "feature_items_check")
    checked = items.merge(
        found[["source_table", "itemid", "found_label", "found_linksto", "found_source"]].astype({"itemid": "int64"}),
        on=["source_table", "itemid"],
        how="left",
    )
    problems = []
    for row in checked.itertuples():  # ~30 configured items, not data rows
        if not isinstance(row.found_label, str):
            problems.append(f"{row.parameter} itemid {row.itemid}: not in {'D_ITEMS' if row.source_table == 'chartevents' else 'D_LABITEMS'}")
        elif row.found_linksto != row.source_table:
            problems.append(f"{row.parameter} itemid {row.itemid}: D_ITEMS says it is charted in {row.found_linksto}, not {row.source_table}")
        elif _label_key(row.found_label) != _label_key(row.expected_label):
            problems.append(f"{row.parameter} itemid {row.itemid}: labelled {row.found_label!r}, expected {row.expected_label!r}")
    if problems:
        raise ValueError(
            "ingestion.mimic3.features does not match the MIMIC-III dictionaries:\n  " + "\n  ".join(problems)
        )
    return checked


# --------------------------------------------------------------------------------------
# Cohort
# --------------------------------------------------------------------------------------
def _cohort_params(cohort: dict[str, Any]) -> dict[str, Any]:
    definition = cohort["stay_definition"]
    if definition not in STAY_DEFINITIONS:
        raise ValueError(f"ingestion.mimic3.cohort.stay_definition is {definition!r}; use one of {STAY_DEFINITIONS}")
    return {
        "min_age_years": float(cohort["min_age_years"]),
        "age_cap_above": float(cohort["age_cap"]["above"]),
        "age_cap_value": float(cohort["age_cap"]["value"]),
        "min_hospital_los_days": float(cohort["min_hospital_los_days"]),
        "min_icu_los_days": float(cohort["min_icu_los_days"]),
        "window_hours": int(cohort["window_hours"]),
        "stay_definition": definition,
    }


def cohort_attrition(cohort: pd.DataFrame, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Per filter, in order: its setting, how many stays fail it at all, how many it removes
    from those still in, and how many remain."""
    remaining = pd.Series(True, index=cohort.index)
    steps = []
    for flag, setting in COHORT_FILTERS:
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
    """Every ICU stay with its icustay-detail facts, one boolean column per inclusion filter
    and `included` (all filters passed). Fails naming the filter that leaves no stay."""
    settings = _cohort_params(params["cohort"])
    with database.connect() as conn:
        cohort = _cast(_query_concept(conn, "cohort", settings), COHORT_DTYPES)
    cohort["included"] = cohort[[flag for flag, _ in COHORT_FILTERS]].all(axis=1)
    if cohort.empty:
        raise ValueError(f"{database.where}: mimiciii.icustays joined with admissions and patients is empty")
    if not cohort["included"].any():
        step = next(s for s in cohort_attrition(cohort, settings) if s["remaining"] == 0)
        raise ValueError(
            f"the MIMIC-III cohort is empty: filter {step['filter']} ({step['setting']}) removed the last "
            f"{step['removed']} of {len(cohort)} ICU stays. Relax ingestion.mimic3.cohort.{step['setting'].split(' =')[0]}."
        )
    return cohort


# --------------------------------------------------------------------------------------
# Measurements, static, diagnoses
# --------------------------------------------------------------------------------------
def extract_measurements(
    database: Database, cohort: pd.DataFrame, feature_items: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 19 features of the included stays in their window, long format
    (record_id = icustay_id, minutes since intime, parameter, value), and the rows rejected
    (CHARTEVENTS error flag, no numeric value, outside the valid range) with the reason."""
    stays = cohort.loc[cohort["included"], list(COHORT_STAYS_TYPES)]
    with database.connect() as conn:
        conn.create_temp_table("cohort_stays", stays, COHORT_STAYS_TYPES)
        conn.create_temp_table("feature_items", feature_items, FEATURE_ITEM_TYPES)
        rows = _query_concept(conn, "measurements").rename(columns={"reject_reason": "reason"})
    kept = rows["reason"].isna()
    timeseries = _cast(rows.loc[kept], TIMESERIES_DTYPES).reset_index(drop=True)
    rejected = _cast(rows.loc[~kept], REJECTED_DTYPES).reset_index(drop=True)
    return timeseries, rejected


def build_static(cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per included stay in the static contract: record_id = icustay_id, age (years,
    >89 capped), gender (1 = male), height/weight (not extracted: NaN), icu_type = first
    care unit, label = in-hospital death, split_group "all", plus MIMIC-III extras."""
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
            "hospital_los_days": stays["hospital_los_days"],
            "dbsource": stays["dbsource"].astype("str"),
        }
    )
    return static.astype({"height": "float64", "weight": "float64", "split_group": "str"}).reset_index(drop=True)


def extract_diagnoses(database: Database, load_summary: dict[str, Any]) -> pd.DataFrame:
    """ICD-9 diagnoses of every admission with the 3-character category (4 for E-codes)."""
    with database.connect() as conn:
        return _cast(_query_concept(conn, "diagnoses"), DIAGNOSES_DTYPES)


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
    settings = _cohort_params(params["cohort"])
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


def create_mimic3_pipeline() -> Pipeline:
    """The MIMIC-III ingestion, un-namespaced (pipeline.py puts it under `mimic3`)."""
    nodes: list[Node] = [
        node(
            load_mimic3_tables,
            inputs=["database", "params:ingestion"],
            outputs=["raw_manifest", "load_summary"],
            name="load_mimic3_tables",
        ),
        node(
            check_feature_items,
            inputs=["database", "load_summary", "params:ingestion"],
            outputs="feature_items",
            name="check_feature_items",
        ),
        node(build_cohort, inputs=["database", "load_summary", "params:ingestion"], outputs="cohort", name="build_cohort"),
        node(
            extract_measurements,
            inputs=["database", "cohort", "feature_items"],
            outputs=["timeseries", "rejected_rows"],
            name="extract_measurements",
        ),
        node(build_static, inputs="cohort", outputs="static", name="build_static"),
        node(extract_diagnoses, inputs=["database", "load_summary"], outputs="diagnoses", name="extract_diagnoses"),
        node(
            summarise_ingestion,
            inputs=["load_summary", "cohort", "feature_items", "timeseries", "rejected_rows", "diagnoses", "params:ingestion"],
            outputs="ingestion_summary",
            name="summarise_ingestion",
        ),
    ]
    return Pipeline(nodes)
