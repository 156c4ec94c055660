"""Scale the MIMIC-III demo N× for benchmarks: N copies of every patient.

Copy k (0..N-1) of each row gets new ids and shifted times, nothing else changes, so value
distributions, ages, lengths of stay and the 48 h windows are exactly the demo's:

* subject_id + k·SUBJECT_OFFSET, hadm_id + k·HADM_OFFSET, icustay_id + k·ICUSTAY_OFFSET
  (above the demo's largest ids, so copies never collide);
* row_id = k·rows + the row's rank in the demo table (MIMIC-III row ids are INTEGER);
* every TIMESTAMP column (DOB included) + k days.

Dictionary tables (D_*) are copied once. Files are written as `<TABLE>.csv.gz` in the
demo's CSV conventions (header, `%Y-%m-%d %H:%M:%S`, NULL as an empty field) by DuckDB's CSV
writer and gzip level 1, into a folder outside the repository (a new temp folder by default). Copy 0 is the demo itself, so N = 1 must give
the demo's counts (benchmarks/scale_mimic3.py checks it).
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

from ehr_adversarial.sources.sql import table_columns

SUBJECT_OFFSET = 100_000
HADM_OFFSET = 200_000
ICUSTAY_OFFSET = 300_000
ID_OFFSETS = {"subject_id": SUBJECT_OFFSET, "hadm_id": HADM_OFFSET, "icustay_id": ICUSTAY_OFFSET}
INT32_MAX = 2**31 - 1


def _select_copy(table: str) -> str:
    """SELECT list of copy `k` (a column of the FROM clause) of `demo` (the demo table)."""
    items = []
    for name, sql_type, _ in table_columns()[table]:
        if name == "row_id":
            items.append("CAST(k * n_rows + demo_rank AS INTEGER) AS row_id")
        elif name in ID_OFFSETS:
            items.append(f"CAST({name} + k * {ID_OFFSETS[name]} AS INTEGER) AS {name}")
        elif sql_type == "TIMESTAMP":
            items.append(f"{name} + k * INTERVAL '1 day' AS {name}")
        else:
            items.append(name)
    return ", ".join(items)


def _gzip_fast(plain: Path) -> Path:
    """plain.csv → plain.csv.gz at level 1 (DuckDB's own gzip writer is ~4× slower), then
    removes plain.csv."""
    target = plain.with_name(plain.name + ".gz")
    with open(plain, "rb") as source, gzip.open(target, "wb", compresslevel=1) as sink:
        shutil.copyfileobj(source, sink, 1 << 22)
    plain.unlink()
    return target


def scale_demo(demo_dir: Path, n: int, tables: list[str], out_dir: Path | None = None) -> tuple[Path, dict[str, int]]:
    """Write `tables` scaled `n`× as .csv.gz into `out_dir` (a new temp folder by default);
    returns the folder and the rows written per table."""
    import duckdb

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix=f"ehr_mimic3_x{n}_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    with duckdb.connect() as conn:
        for table in (t.lower() for t in tables):
            columns = {name: sql_type for name, sql_type, _ in table_columns()[table]}
            source = demo_dir / f"{table.upper()}.csv.gz"
            conn.execute(
                "CREATE OR REPLACE TEMP TABLE demo AS SELECT *, "
                "CAST(ROW_NUMBER() OVER (ORDER BY row_id) AS BIGINT) AS demo_rank, "
                "CAST(COUNT(*) OVER () AS BIGINT) AS n_rows "
                "FROM read_csv($path, header = true, auto_detect = false, columns = $columns, "
                "timestampformat = '%Y-%m-%d %H:%M:%S', allow_quoted_nulls = false)",
                {"path": str(source), "columns": columns},
            )
            demo_rows = conn.execute("SELECT COUNT(*) FROM demo").fetchone()[0]
            copies = 1 if table.startswith("d_") else n
            if copies * max(demo_rows, 1) > INT32_MAX:
                raise ValueError(f"{table}: {copies} copies overflow INTEGER row ids")
            plain = out_dir / f"{table.upper()}.csv"
            conn.execute(
                f"COPY (SELECT {_select_copy(table)} FROM demo, range({copies}) AS copies(k)) TO '{plain}' "
                "(HEADER, DELIMITER ',', QUOTE '\"', TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S')"
            )
            _gzip_fast(plain)
            rows[table.upper()] = demo_rows * copies
    return out_dir, rows
