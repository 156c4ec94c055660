"""The CSV(.gz) tables on disk: which files, their headers, and PhysioNet's checksums."""

from __future__ import annotations

import csv
import gzip
import zlib
from pathlib import Path

from ehr_adversarial.sources.checksums import parse_sha256sums, sha256_of
from ehr_adversarial.sources.database import CsvLoadError
from ehr_adversarial.sources.mimic3.schema import CHECKSUM_FILE, where_to_get
from ehr_adversarial.sources.sql import table_columns


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
        f"{csv_dir}: no {table.upper()}.csv.gz or {table.upper()}.csv. {where_to_get(table)}; "
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


def _file_sha256(path: Path, decompress: bool = False) -> str:
    """sha256_of, with read errors (a truncated .gz) as a CsvLoadError that names the file."""
    try:
        return sha256_of(path, decompress)
    except (EOFError, OSError, zlib.error) as exc:
        raise CsvLoadError(f"{path}: cannot read the file ({exc}); download it again") from None


def read_checksum_list(csv_dir: Path) -> dict[str, str]:
    """{file name (lower case): sha256} of PhysioNet's SHA256SUMS.txt, if the folder has one."""
    path = csv_dir / CHECKSUM_FILE
    if not path.is_file():
        return {}
    sums = parse_sha256sums(path.read_text(encoding="utf-8"), source=str(path))
    return {name.lower(): digest for name, digest in sums.items()}


def verify_checksum(path: Path, checksums: dict[str, str]) -> bool:
    """Compares the decompressed content of `path` with PhysioNet's checksum of the CSV;
    returns False when the list has no entry, raises when the content differs."""
    name = path.name.lower().removesuffix(".gz")
    expected = checksums.get(name)
    if expected is None:
        return False
    actual = _file_sha256(path, decompress=True)
    if actual != expected:
        raise CsvLoadError(
            f"{path}: sha256 of the CSV content is {actual}, but {CHECKSUM_FILE} says {expected}; "
            "the file is damaged or not the official one and was not loaded. Download it again from PhysioNet."
        )
    return True
