"""Load the CSV tables into the database (DuckDB or PostgreSQL), skipping tables loaded from the same file before."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ehr_adversarial.sources.database import Connection, Database, DatabaseError
from ehr_adversarial.sources.mimic3.files import (
    _file_sha256,
    file_columns,
    find_table_file,
    read_checksum_list,
    resolve_tables,
    verify_checksum,
)
from ehr_adversarial.sources.mimic3.schema import (
    CHECKSUM_FILE,
    REQUIRED_TABLES,
    SCHEMA,
    require_tables,
    where_to_get,
)
from ehr_adversarial.sources.sql import create_table_statement, load_sql, statements

logger = logging.getLogger(__name__)


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
                    f"MIMIC-III folder {csv_dir} does not exist. {where_to_get('all tables')}; set "
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
                file_sha256 = _file_sha256(path)
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
            require_tables(conn, tables)
            for table in tables:
                summary["tables"][table] = {"rows": conn.count_rows(SCHEMA, table), "status": "existing"}
    return manifest, summary
