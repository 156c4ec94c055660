"""Read record files (folders or .tar.gz) and outcome files into raw rows, naming file and line on any error."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from ehr_adversarial.sources.checksums import (
    ChecksumMismatchError,
    parse_sha256sums,
)
from ehr_adversarial.sources.physionet2012.formats import (
    ERRORS_SHOWN,
    OUTCOME_COLUMNS,
    OUTCOME_HEADER,
    RECORD_FILE,
    RECORD_HEADER,
)


def read_physionet2012_records(raw_manifest: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every record file of every set into raw text rows.

    I/O node: it reads the archives/folders the manifest names (tar members are not
    something a catalog dataset can list). Files are read one by one, but their lines are
    parsed in one vectorised pass over the concatenated text.
    Returns (record_files: one row per file, raw_rows: one row per data line, as text).
    """
    members: list[tuple[str, str, bytes]] = []
    for set_name, entry in raw_manifest["sets"].items():
        source = entry["records"]["path"]
        checksums = entry.get("record_checksums")
        expected = parse_sha256sums(Path(checksums["path"]).read_text(), source=checksums["path"]) if checksums else None
        seen: set[str] = set()
        first = len(members)
        for member, data in _record_members(entry["records"]):
            if expected is not None:
                seen.add(_check_record(member, data, expected, source, checksums["path"]))
            members.append((set_name, member, data))
        if len(members) == first:
            raise ValueError(f"{source}: no record files (<RecordID>.txt) found for set {set_name}")
        if expected is not None and seen != set(expected):
            missing = sorted(set(expected) - seen)
            raise ValueError(
                f"{source}: {len(missing)} record files listed in {checksums['path']} are missing "
                f"(e.g. {missing[:ERRORS_SHOWN]}); the set is incomplete"
            )
    return record_rows(members)


def record_rows(members: Iterable[tuple[str, str, bytes]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(split_group, file name `<RecordID>.txt`, file bytes) per record → (record_files, raw_rows as text)."""
    files: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    for set_name, member, data in members:
        name = RECORD_FILE.search(member)
        if name is None:
            raise ValueError(f"{member}: a PhysioNet 2012 record file is named <RecordID>.txt, e.g. 142675.txt")
        body = _record_body(member, data)
        files.append({"split_group": set_name, "file": member, "record_id": int(name.group(1)),
                      "lines": body.count(b"\n")})
        bodies.append(body)
    record_files = pd.DataFrame(files, columns=["split_group", "file", "record_id", "lines"])
    duplicated = record_files["record_id"].duplicated(keep=False)
    if duplicated.any():
        raise ValueError(f"one RecordID in several record files: {record_files.loc[duplicated, 'file'].tolist()[:ERRORS_SHOWN]}")
    return record_files, _parse_lines(b"".join(bodies), record_files)


def _record_members(records: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of every `<RecordID>.txt` in an archive or folder."""
    path = Path(records["path"])
    if records["kind"] == "folder":
        for file in sorted(path.iterdir()):
            if RECORD_FILE.search(file.name):
                yield f"{path.name}/{file.name}", file.read_bytes()
        return
    try:
        # One gzip pass over the whole archive (≈ 28 MB) is much faster than tarfile's seeks.
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(path.read_bytes())), mode="r:") as tar:
            members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile() and RECORD_FILE.search(m.name)]
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise ValueError(
            f"{path}: cannot read the archive ({type(exc).__name__}: {exc}); it is truncated or corrupt. "
            f"Delete it and run again to download a fresh copy, or put a good copy (or the unpacked "
            f"{path.name.removesuffix('.tar.gz')}/ folder) in {path.parent}."
        ) from exc
    yield from members


def _check_record(member: str, data: bytes, expected: dict[str, str], source: str, list_path: str) -> str:
    """The record's file name, after checking its bytes against the per-record sha256 list."""
    name = member.rsplit("/", 1)[-1]
    if name not in expected:
        raise ValueError(f"{source}: {member} is not listed in {list_path}; the set holds a foreign file")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected[name]:
        raise ChecksumMismatchError(
            f"{source}:{member}", expected[name], actual,
            f"listed in {list_path}; the record was altered, get a fresh copy of the set",
        )
    return name


def _record_body(member: str, data: bytes) -> bytes:
    """The data lines of a record (header checked and removed), ending with a newline."""
    data = data.replace(b"\r\n", b"\n")
    header, _, body = data.partition(b"\n")
    if header.decode("utf-8", "replace").strip() != RECORD_HEADER:
        raise ValueError(f"{member} line 1: header is {header[:80]!r}, expected {RECORD_HEADER!r} "
                         "(is this a PhysioNet 2012 record file?)")
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return body


def _parse_lines(text: bytes, record_files: pd.DataFrame) -> pd.DataFrame:
    """All record lines as text (time, parameter: categorical) plus split_group, file, line, record_id."""
    invalid: list[str] = []

    def keep_invalid(row: pa_csv.InvalidRow) -> str:
        invalid.append(row.text)
        return "skip"

    table = pa_csv.read_csv(
        io.BytesIO(text),
        read_options=pa_csv.ReadOptions(column_names=["time", "parameter", "value"]),
        # No quoting in these files: each line is exactly one row, so line numbers stay exact.
        parse_options=pa_csv.ParseOptions(quote_char=False, ignore_empty_lines=False, invalid_row_handler=keep_invalid),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(["time", "parameter", "value"], pa.string()), strings_can_be_null=False
        ),
    )
    file_index = np.repeat(np.arange(len(record_files), dtype=np.int32), record_files["lines"].to_numpy())
    if invalid:
        located = [_locate(text, row, record_files, file_index) for row in invalid[:ERRORS_SHOWN]]
        raise ValueError(f"{len(invalid)} lines do not have 3 fields (Time,Parameter,Value): " + "; ".join(located))
    starts = np.concatenate([[0], np.cumsum(record_files["lines"].to_numpy())[:-1]])
    set_names, set_codes = np.unique(record_files["split_group"].to_numpy(dtype=str), return_inverse=True)
    return pd.DataFrame({
        "split_group": pd.Categorical.from_codes(set_codes[file_index], categories=set_names),
        "file": pd.Categorical.from_codes(file_index, categories=record_files["file"]),
        # +2: line 1 is the header.
        "line": (np.arange(table.num_rows) - starts[file_index] + 2).astype(np.int32),
        "record_id": record_files["record_id"].to_numpy(dtype=np.int64)[file_index],
        "time": pc.dictionary_encode(table["time"].combine_chunks()).to_pandas(),
        "parameter": pc.dictionary_encode(table["parameter"].combine_chunks()).to_pandas(),
        "value": table["value"].combine_chunks().to_pandas(),
    })


def _locate(text: bytes, row_text: str, record_files: pd.DataFrame, file_index: np.ndarray) -> str:
    """`file line N: 'text'` of a raw line found in the concatenated text."""
    needle = row_text.encode()
    position = 0 if text.startswith(needle + b"\n") else text.find(b"\n" + needle + b"\n") + 1
    global_line = text.count(b"\n", 0, position)
    index = file_index[global_line]
    first = int(np.searchsorted(file_index, index))
    return f"{record_files['file'].iat[index]} line {global_line - first + 2}: {row_text!r}"


def read_physionet2012_outcomes(raw_manifest: dict[str, Any]) -> pd.DataFrame:
    """Each set's Outcomes-<x>.txt as one table (−1 → NaN), with split_group and the file's path.

    I/O node: it reads the outcome files that the manifest names.
    """
    frames = [_read_outcome_file(Path(entry["outcomes"]["path"]), set_name)
              for set_name, entry in raw_manifest["sets"].items()]
    return pd.concat(frames, ignore_index=True)


def _read_outcome_file(path: Path, set_name: str) -> pd.DataFrame:
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().strip()
    if header != OUTCOME_HEADER:
        raise ValueError(f"{path} line 1: header is {header!r}, expected {OUTCOME_HEADER!r}")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    numbers = raw.apply(pd.to_numeric, errors="coerce")
    bad = (numbers.isna() | (numbers % 1 != 0)).to_numpy()
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{path} line {row + 2}: {raw.columns[column]} is {raw.iat[row, column]!r}, expected an integer")
    outcomes = numbers.astype(np.int64).rename(columns=OUTCOME_COLUMNS)
    for problem, mask in (("In-hospital_death is not 0 or 1", ~outcomes["label"].isin([0, 1])),
                          ("RecordID appears twice", outcomes["record_id"].duplicated())):
        if mask.any():
            row = int(np.flatnonzero(mask.to_numpy())[0])
            raise ValueError(f"{path} line {row + 2}: {problem} ({raw.iloc[row].tolist()})")
    for column in ("saps_i", "sofa", "length_of_stay", "survival"):
        outcomes[column] = outcomes[column].astype(float).mask(outcomes[column] == -1)
    outcomes["split_group"] = set_name
    outcomes["outcome_file"] = str(path)
    return outcomes
