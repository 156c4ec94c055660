"""PhysioNet/CinC Challenge 2012 ingestion: record files + outcomes → long and static tables.

Each record file (`set-<x>/<RecordID>.txt`) is CSV `Time,Parameter,Value`; the rows at 00:00
named in `descriptors` describe the stay (RecordID, Age, Gender, Height, ICUType, Weight) and
the rest are measurements. Every data line of every file ends up in exactly one place: a
time-series row, a static value, or `rejected_rows` with its reason, so

    lines = timeseries rows + descriptor values kept + rejected rows.

Quirks of the real files and what happens to them:
- value == missing_marker (−1)                → rejected, reason `missing_marker` (static gets NaN)
- empty Parameter field                       → rejected, `empty_parameter`
- all three fields empty (blank line)         → rejected, `blank_line`
- a Parameter the configuration doesn't know  → rejected, `unknown_parameter`
- a descriptor seen again in the same record  → rejected, `repeated_descriptor` (the first one wins)
- Weight: the first 00:00 row is the admission weight (static); any later Weight row,
  including a second one at 00:00, is a time-series measurement
- time after window_minutes                   → rejected, `outside_window`
- value outside ranges[parameter]             → rejected, `out_of_range`
Malformed input that the real data does not carry is an error naming file and line: a wrong
header, a wrong number of fields, an unparseable time ("1x:30") or value, a RecordID row that
disagrees with the file name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.download import (
    ChecksumMismatchError,
    DownloadError,
    download_file,
    fetch_sha256sums,
    parse_sha256sums,
    sha256_of,
    verify_sha256,
)

logger = logging.getLogger(__name__)

RECORD_HEADER = "Time,Parameter,Value"
OUTCOME_HEADER = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"
OUTCOME_COLUMNS = {
    "RecordID": "record_id",
    "SAPS-I": "saps_i",
    "SOFA": "sofa",
    "Length_of_stay": "length_of_stay",
    "Survival": "survival",
    "In-hospital_death": "label",
}
# Descriptor → static column.
STATIC_COLUMNS = {"Age": "age", "Gender": "gender", "Height": "height", "Weight": "weight"}
# Weight is a descriptor (admission weight) AND a time series; the other descriptors are static only.
TIMESERIES_DESCRIPTOR = "Weight"
RECORD_FILE = re.compile(r"(?:^|/)(\d+)\.txt$")
_TIME = r"^\d{1,3}:[0-5]\d$"
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ERRORS_SHOWN = 5
KINDS = ("timeseries", "descriptor", "rejected")
REJECT_REASONS = (
    "blank_line",
    "empty_parameter",
    "unknown_parameter",
    "repeated_descriptor",
    "missing_marker",
    "outside_window",
    "out_of_range",
)


# --------------------------------------------------------------------------- fetch (I/O)


def fetch_physionet2012(ingestion: dict[str, Any]) -> dict[str, Any]:
    """Find each configured set's records and outcomes in raw_dir, downloading what is missing.

    This node's job is I/O: it looks at and writes into `raw_dir` (a path in parameters),
    because the raw files are inputs the catalog cannot describe before they exist.
    Returns a manifest: per set, the file used, its size, sha256 and how it was verified.
    """
    raw_dir = Path(ingestion["raw_dir"])
    settings = ingestion.get("download", {})
    pinned = {name: digest.lower() for name, digest in (ingestion.get("pinned_sha256") or {}).items()}
    fetcher = _Fetcher(raw_dir, settings, pinned)
    sets: dict[str, Any] = {}
    for set_name in _set_names(ingestion):
        sets[set_name] = {
            "records": fetcher.records(set_name),
            "outcomes": fetcher.plain_file(f"Outcomes-{set_name}.txt", required=True),
            "record_checksums": fetcher.plain_file(f"SHA256SUMS-set-{set_name}.txt", required=False),
        }
    return {"source": "physionet2012", "raw_dir": str(raw_dir), "base_url": settings.get("base_url"), "sets": sets}


class _Fetcher:
    """Locates or downloads the raw files of one raw_dir; fetches PhysioNet's checksum list once."""

    def __init__(self, raw_dir: Path, settings: dict[str, Any], pinned: dict[str, str]):
        self.raw_dir, self.settings, self.pinned = raw_dir, settings, pinned
        self.base_url = str(settings.get("base_url", "")).rstrip("/") + "/"
        self._server_sums: dict[str, str] | None = None

    def records(self, set_name: str) -> dict[str, Any]:
        folder, archive = self.raw_dir / f"set-{set_name}", self.raw_dir / f"set-{set_name}.tar.gz"
        if folder.is_dir():
            n_files = sum(1 for path in folder.iterdir() if RECORD_FILE.search(path.name))
            return {"name": folder.name, "path": str(folder), "kind": "folder", "files": n_files,
                    "verified_against": None, "downloaded": False}
        if archive.is_file():
            # The archive's own hash is recorded, not checked: repacked copies differ from
            # PhysioNet's bytes; the records inside are checked against SHA256SUMS-set-<x>.txt.
            return self._entry(archive, "archive", verified_against=None, downloaded=False)
        self._require_download(archive, also=folder)
        return self._download(archive, "archive")

    def plain_file(self, name: str, required: bool) -> dict[str, Any] | None:
        path = self.raw_dir / name
        if path.is_file():
            verified = None
            if name in self.pinned:
                _verify_local(path, self.pinned[name])
                verified = "pinned_sha256"
            return self._entry(path, "file", verified_against=verified, downloaded=False)
        if not required:
            return None
        self._require_download(path)
        return self._download(path, "file")

    def _require_download(self, path: Path, also: Path | None = None) -> None:
        if self.settings.get("enabled", False):
            return
        alternative = f" (or an unpacked {also}/ folder)" if also is not None else ""
        raise FileNotFoundError(
            f"{path}{alternative} not found and ingestion.physionet2012.download.enabled is false. "
            f"Download it from {self.base_url}{path.name} (PhysioNet, open access) into {self.raw_dir}, "
            "or set download.enabled: true."
        )

    def _download(self, path: Path, kind: str) -> dict[str, Any]:
        name = path.name
        if name in self.pinned:
            expected, verified = self.pinned[name], "pinned_sha256"
        else:
            expected, verified = self.server_sums().get(name), "server SHA256SUMS"
            if expected is None:
                raise ValueError(
                    f"no sha256 for {name}: neither ingestion.physionet2012.pinned_sha256 nor "
                    f"{self.base_url}{self.settings.get('sha256sums', 'SHA256SUMS.txt')} lists it; pin one in "
                    "conf/base/parameters_ingestion.yml"
                )
        logger.info("downloading %s%s into %s", self.base_url, name, self.raw_dir)
        try:
            download_file(
                self.base_url + name, path, expected,
                timeout=float(self.settings.get("timeout_s", 60)),
                progress=bool(self.settings.get("progress", True)),
            )
        except DownloadError as exc:
            raise DownloadError(f"{exc}. Without network access, put {name} into {self.raw_dir} yourself.") from exc
        return self._entry(path, kind, verified_against=verified, downloaded=True)

    def server_sums(self) -> dict[str, str]:
        if self._server_sums is None:
            try:
                self._server_sums = fetch_sha256sums(
                    self.base_url + self.settings.get("sha256sums", "SHA256SUMS.txt"),
                    timeout=float(self.settings.get("timeout_s", 60)),
                )
            except DownloadError as exc:
                raise DownloadError(f"{exc}. Without network access, put the files into {self.raw_dir} yourself.") from exc
        return self._server_sums

    @staticmethod
    def _entry(path: Path, kind: str, verified_against: str | None, downloaded: bool) -> dict[str, Any]:
        return {"name": path.name, "path": str(path), "kind": kind, "bytes": path.stat().st_size,
                "sha256": sha256_of(path), "verified_against": verified_against, "downloaded": downloaded}


def _verify_local(path: Path, expected: str) -> None:
    verify_sha256(
        path, expected,
        "the file is not used; delete it so that the run downloads a good copy, or fix "
        "ingestion.physionet2012.pinned_sha256",
    )


def _set_names(ingestion: dict[str, Any]) -> list[str]:
    sets = [str(name).strip().lower() for name in ingestion.get("sets") or []]
    if not sets or any(not re.fullmatch(r"[a-z]", name) for name in sets):
        raise ValueError(f"ingestion.physionet2012.sets must list set letters such as [a, b], got {ingestion.get('sets')!r}")
    return sets


# --------------------------------------------------------------------------- read (I/O)


def read_physionet2012_records(raw_manifest: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every record file of every set into raw text rows.

    I/O node: it reads the archives/folders the manifest names (tar members are not
    something a catalog dataset can list). Files are read one by one, but their lines are
    parsed in one vectorised pass over the concatenated text.
    Returns (record_files: one row per file, raw_rows: one row per data line, as text).
    """
    files: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    for set_name, entry in raw_manifest["sets"].items():
        source = entry["records"]["path"]
        checksums = entry.get("record_checksums")
        expected = parse_sha256sums(Path(checksums["path"]).read_text(), source=checksums["path"]) if checksums else None
        seen: set[str] = set()
        for member, data in _record_members(entry["records"]):
            if expected is not None:
                seen.add(_check_record(member, data, expected, source, checksums["path"]))
            body = _record_body(member, data)
            files.append({"split_group": set_name, "file": member,
                          "record_id": int(RECORD_FILE.search(member).group(1)), "lines": body.count(b"\n")})
            bodies.append(body)
        if not any(f["split_group"] == set_name for f in files):
            raise ValueError(f"{source}: no record files (<RecordID>.txt) found for set {set_name}")
        if expected is not None and seen != set(expected):
            missing = sorted(set(expected) - seen)
            raise ValueError(
                f"{source}: {len(missing)} record files listed in {checksums['path']} are missing "
                f"(e.g. {missing[:_ERRORS_SHOWN]}); the set is incomplete"
            )
    record_files = pd.DataFrame(files, columns=["split_group", "file", "record_id", "lines"])
    duplicated = record_files["record_id"].duplicated(keep=False)
    if duplicated.any():
        raise ValueError(f"one RecordID in several record files: {record_files.loc[duplicated, 'file'].tolist()[:_ERRORS_SHOWN]}")
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
        located = [_locate(text, row, record_files, file_index) for row in invalid[:_ERRORS_SHOWN]]
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


# --------------------------------------------------------------------------- parse (pure)


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
    valid = np.asarray(times.str.match(_TIME), dtype=bool)
    codes = rows["time"].cat.codes.to_numpy()
    bad = parsed & ~valid[codes]
    if bad.any():
        raise ValueError(_row_errors(rows, bad, "time", "is not hh:mm"))
    per_time = np.array([int(t[:-3]) * 60 + int(t[-2:]) if ok else -1 for t, ok in zip(times, valid)], dtype=np.int32)
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
        valid = pc.match_substring_regex(text, _NUMBER).to_numpy(zero_copy_only=False)
        raise ValueError(_row_errors(rows, parsed & ~valid, "value", "is not a number"))
    return numbers


def _check_record_ids(rows: pd.DataFrame, value: np.ndarray, record_id_rows: np.ndarray) -> None:
    wrong = record_id_rows & (value != rows["record_id"].to_numpy())
    if wrong.any():
        raise ValueError(_row_errors(rows, wrong, "value", "is a RecordID that differs from the file name"))


def _row_errors(rows: pd.DataFrame, bad: np.ndarray, column: str, problem: str) -> str:
    shown = rows.loc[bad, ["file", "line", column]].head(_ERRORS_SHOWN)
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
    rows = np.flatnonzero(_is_kind(classified_rows, "descriptor"))
    descriptors = pd.DataFrame({
        "record_id": classified_rows["record_id"].to_numpy()[rows],
        "parameter": _as_strings(classified_rows["parameter"], rows),
        "value": classified_rows["value_number"].to_numpy()[rows],
    })
    wide = descriptors.pivot(index="record_id", columns="parameter", values="value")
    wide = wide.reindex(index=record_files["record_id"], columns=[*STATIC_COLUMNS, "ICUType"])
    icu_types = {int(code): str(name) for code, name in ingestion["icu_types"].items()}
    n_rows = pd.Series(classified_rows["record_id"].to_numpy()[_is_kind(classified_rows, "timeseries")]).value_counts()
    static = pd.DataFrame({
        "record_id": record_files["record_id"].to_numpy(np.int64),
        **{column: wide[name].to_numpy(np.float64) for name, column in STATIC_COLUMNS.items()},
        "icu_type": pd.Series(wide["ICUType"].to_numpy()).map(icu_types).astype("str").to_numpy(),
        "split_group": record_files["split_group"].astype(str).to_numpy(),
    })
    static = static.merge(outcomes.drop(columns=["split_group", "outcome_file"]), on="record_id", how="left", validate="1:1")
    static["label"] = static["label"].astype(np.int64)
    static["near_empty"] = static["record_id"].isin([int(x) for x in ingestion.get("near_empty_records") or []])
    static["n_timeseries_rows"] = static["record_id"].map(n_rows).fillna(0).astype(np.int64)
    return static[["record_id", "age", "gender", "height", "weight", "icu_type", "label", "split_group",
                   "saps_i", "sofa", "length_of_stay", "survival", "near_empty", "n_timeseries_rows"]]


def _check_outcomes_match(record_files: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    for set_name, files in record_files.groupby("split_group"):
        listed = outcomes[outcomes["split_group"] == set_name]
        records, outcome_ids = set(files["record_id"]), set(listed["record_id"])
        if records != outcome_ids:
            path = listed["outcome_file"].iat[0] if len(listed) else f"Outcomes-{set_name}.txt"
            no_outcome, no_record = sorted(records - outcome_ids), sorted(outcome_ids - records)
            raise ValueError(
                f"{path} does not match the records of set-{set_name}: {len(no_outcome)} records have no outcome "
                f"(e.g. {no_outcome[:_ERRORS_SHOWN]}), {len(no_record)} outcomes have no record file "
                f"(e.g. {no_record[:_ERRORS_SHOWN]}). Use the outcome file of the same set."
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
        **{f"{'descriptor_values' if kind == 'descriptor' else kind + '_rows'}": int(n) for kind, n in zip(KINDS, kinds)},
        "rejected_by_reason": {str(reason): int(n) for reason, n in reasons.items() if n},
        "near_empty_records": int(static["near_empty"].sum()),
        "records_without_timeseries": int((static["n_timeseries_rows"] == 0).sum()),
    }


# --------------------------------------------------------------------------- pipeline


def create_physionet2012_pipeline() -> Pipeline:
    """PhysioNet 2012 ingestion, un-namespaced (ingestion/pipeline.py puts it under `physionet2012`)."""
    return pipeline([
        node(fetch_physionet2012, "params:ingestion", "raw_manifest", name="fetch_physionet2012"),
        node(read_physionet2012_records, "raw_manifest", ["record_files", "raw_rows"],
             name="read_physionet2012_records"),
        node(read_physionet2012_outcomes, "raw_manifest", "outcomes", name="read_physionet2012_outcomes"),
        node(classify_physionet2012_rows, ["raw_rows", "params:ingestion"], "classified_rows",
             name="classify_physionet2012_rows"),
        node(build_physionet2012_timeseries, "classified_rows", "timeseries", name="build_physionet2012_timeseries"),
        node(collect_physionet2012_rejected_rows, "classified_rows", "rejected_rows",
             name="collect_physionet2012_rejected_rows"),
        node(build_physionet2012_static, ["classified_rows", "record_files", "outcomes", "params:ingestion"],
             "static", name="build_physionet2012_static"),
        node(summarize_physionet2012_ingestion, ["classified_rows", "static", "raw_manifest"], "ingestion_summary",
             name="summarize_physionet2012_ingestion"),
    ])
