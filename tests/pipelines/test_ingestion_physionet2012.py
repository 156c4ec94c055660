"""PhysioNet 2012 ingestion: the real sets a and b, bad input, and download into an empty raw_dir."""

from __future__ import annotations

import copy
import csv
import io
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ehr_adversarial.pipelines.ingestion import create_pipeline
from ehr_adversarial.sources.checksums import ChecksumMismatchError, sha256_of
from ehr_adversarial.sources.download import DownloadError
from ehr_adversarial.sources.physionet2012 import (
    build_physionet2012_static,
    classify_physionet2012_rows,
    collect_physionet2012_rejected_rows,
    fetch_physionet2012,
    read_physionet2012_outcomes,
    read_physionet2012_records,
    summarize_physionet2012_ingestion,
)
from tests.conftest import FileServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What the tests call each output → its dataset in the ingestion pipeline (namespace `ingestion`).
OUTPUTS = {"raw_manifest": "ingestion.raw_manifest", "timeseries": "ingestion.timeseries", "static": "ingestion.static",
           "rejected_rows": "ingestion.rejected_rows", "ingestion_summary": "ingestion.summary"}

# Measured on the real files (see docs/data_physionet2012.md) and re-derived below by
# `_independent_counts`, which reads the tar members with the csv module.
EXPECTED = {
    "a": {"records": 4000, "deaths": 554, "lines": 1_757_980, "timeseries_rows": 1_733_597,
          "descriptor_values": 21_761, "rejected_rows": 2_622,
          "rejected_by_reason": {"missing_marker": 2_223, "out_of_range": 399}},
    "b": {"records": 4000, "deaths": 568, "lines": 1_762_535, "timeseries_rows": 1_738_344,
          "descriptor_values": 21_713, "rejected_rows": 2_478,
          "rejected_by_reason": {"missing_marker": 2_282, "out_of_range": 196}},
}
EXPECTED_REJECTED_BY_PARAMETER = {
    "Gender": {"missing_marker": 8},
    "Height": {"missing_marker": 3824, "out_of_range": 20},
    "Mg": {"out_of_range": 1},
    "PaCO2": {"out_of_range": 3},
    "PaO2": {"out_of_range": 4},
    "RespRate": {"out_of_range": 9},
    "Temp": {"out_of_range": 209},
    "Urine": {"out_of_range": 2},
    "WBC": {"out_of_range": 1},
    "Weight": {"missing_marker": 673, "out_of_range": 331},
    "pH": {"out_of_range": 15},
}


def _base_parameters() -> dict[str, Any]:
    config = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters_ingestion.yml").read_text())
    return config["ingestion"]["physionet2012"]


@pytest.fixture
def params(tmp_path: Path) -> dict[str, Any]:
    """The project's parameters with raw_dir in tmp_path/raw and downloads off."""
    parameters = copy.deepcopy(_base_parameters())
    parameters["raw_dir"] = str(tmp_path / "raw")
    parameters["download"]["enabled"] = False
    return parameters


class _KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so intermediate outputs can be checked after the run."""

    def _release(self) -> None:
        pass


@pytest.fixture(scope="module")
def ingested(physionet2012_dir: Path) -> dict[str, Any]:
    """The ingestion pipeline run once with SequentialRunner on a catalog of MemoryDatasets (real sets a, b)."""
    parameters = copy.deepcopy(_base_parameters())
    parameters["raw_dir"] = str(physionet2012_dir)
    parameters["download"]["enabled"] = False
    pipe = create_pipeline("physionet2012")
    assert pipe.inputs() == {"params:ingestion.physionet2012"}
    assert set(OUTPUTS.values()) <= pipe.all_outputs()
    catalog = DataCatalog({"params:ingestion.physionet2012": MemoryDataset(parameters),
                           **{dataset: _KeptMemoryDataset() for dataset in OUTPUTS.values()}})
    SequentialRunner().run(pipe, catalog)
    return {name: catalog.load(dataset) for name, dataset in OUTPUTS.items()}


# --------------------------------------------------------------------------- real data


def _independent_counts(physionet2012_dir: Path, parameters: dict[str, Any]) -> dict[str, Counter]:
    """Per set, Counter of (where, parameter) over every data line, by a plain csv-module reading.

    where: "timeseries", "descriptor" or the rejection reason. Rules, as documented: the first
    row of a descriptor is the descriptor (for Weight: the first at 00:00); -1 is missing; a
    value outside the parameter's range is rejected.
    """
    descriptors = set(parameters["descriptors"])
    ranges = parameters["ranges"]
    counts: dict[str, Counter] = {}
    for set_name in ("a", "b"):
        counter: Counter = Counter()
        with tarfile.open(physionet2012_dir / f"set-{set_name}.tar.gz") as tar:
            for member in tar:
                if not member.name.endswith(".txt"):
                    continue
                reader = csv.reader(io.TextIOWrapper(tar.extractfile(member), encoding="utf-8"))
                assert next(reader) == ["Time", "Parameter", "Value"]
                seen: set[str] = set()
                for time, parameter, value in reader:
                    number = float(value)
                    role = "timeseries"
                    if parameter in descriptors and parameter not in seen and (parameter != "Weight" or time == "00:00"):
                        seen.add(parameter)
                        role = "descriptor"
                    elif parameter in descriptors and parameter != "Weight":
                        role = "repeated_descriptor"
                    if parameter != "RecordID" and role != "repeated_descriptor":
                        low, high = ranges[parameter]
                        if number == -1:
                            role = "missing_marker"
                        elif not low <= number <= high:
                            role = "out_of_range"
                    counter[role, parameter] += 1
        counts[set_name] = counter
    return counts


def test_sets_records_and_deaths(ingested: dict[str, Any], physionet2012_dir: Path):
    static = ingested["static"]
    for set_name, expected in EXPECTED.items():
        in_set = static[static["split_group"] == set_name]
        assert len(in_set) == expected["records"]
        assert int(in_set["label"].sum()) == expected["deaths"]
        # Independently: the outcome file's last column.
        with open(physionet2012_dir / f"Outcomes-{set_name}.txt", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == expected["records"]
        assert sum(int(row["In-hospital_death"]) for row in rows) == expected["deaths"]
        assert set(in_set["record_id"]) == {int(row["RecordID"]) for row in rows}


@pytest.mark.slow  # the independent count reads 3.5 M lines with the csv module (≈ 10-20 s)
def test_rows_kept_and_dropped_exact_and_independent(
    ingested: dict[str, Any], physionet2012_dir: Path, params: dict[str, Any]
):
    summary = ingested["ingestion_summary"]
    for set_name, expected in EXPECTED.items():
        counts = summary["sets"][set_name]
        assert {key: counts[key] for key in expected} == expected
        assert counts["lines"] == counts["timeseries_rows"] + counts["descriptor_values"] + counts["rejected_rows"]
    assert summary["rejected_by_parameter"] == EXPECTED_REJECTED_BY_PARAMETER
    assert summary["records"] == 8000 and summary["deaths"] == 554 + 568

    independent = _independent_counts(physionet2012_dir, params)
    timeseries, rejected, static = ingested["timeseries"], ingested["rejected_rows"], ingested["static"]
    for set_name, counter in independent.items():
        ids = set(static.loc[static["split_group"] == set_name, "record_id"])
        ours: Counter = Counter()
        ours.update({("timeseries", p): n for p, n in timeseries.loc[timeseries["record_id"].isin(ids), "parameter"].value_counts().items()})
        in_set = rejected[rejected["file"].str.startswith(f"set-{set_name}/")]
        ours.update({(reason, p): n for (reason, p), n in in_set.groupby(["reason", "parameter"]).size().items()})
        descriptor_values = summary["sets"][set_name]["descriptor_values"]
        assert sum(n for (where, _), n in counter.items() if where == "descriptor") == descriptor_values
        assert Counter({key: n for key, n in counter.items() if key[0] != "descriptor"}) == ours
        assert sum(counter.values()) == EXPECTED[set_name]["lines"]


def test_output_contract(ingested: dict[str, Any], params: dict[str, Any]):
    timeseries, static, rejected = ingested["timeseries"], ingested["static"], ingested["rejected_rows"]
    assert list(timeseries.columns) == ["record_id", "minutes", "parameter", "value"]
    assert [str(t) for t in timeseries.dtypes] == ["int64", "int32", "str", "float64"]
    assert timeseries["minutes"].between(0, 2880).all()
    assert (timeseries["value"] != -1).all() and timeseries["value"].notna().all()
    observed = timeseries.groupby("parameter")["value"].agg(["min", "max"])
    for parameter, (low, high) in observed.iterrows():
        assert params["ranges"][parameter][0] <= low and high <= params["ranges"][parameter][1], parameter
    assert set(observed.index) == set(params["ranges"]) - {"Age", "Gender", "Height", "ICUType"}
    assert timeseries.set_index(["record_id", "minutes"]).index.is_monotonic_increasing

    assert list(static.columns[:8]) == ["record_id", "age", "gender", "height", "weight", "icu_type", "label", "split_group"]
    assert static["record_id"].is_unique and static["record_id"].dtype == np.int64
    assert static["label"].dtype == np.int64 and set(static["label"]) == {0, 1}
    assert static["icu_type"].value_counts().to_dict() == {"MICU": 2917, "SICU": 2260, "CSRU": 1656, "CCU": 1167}
    assert set(static["gender"].dropna()) == {0.0, 1.0}
    assert static[["age", "gender", "height", "weight"]].isna().sum().to_dict() == {
        "age": 0, "gender": 8, "height": 3844, "weight": 674,
    }
    # Outcomes: -1 becomes NaN (Survival is -1 for patients alive at the end of follow-up).
    assert (static[["saps_i", "sofa", "length_of_stay", "survival"]] != -1).all().all()

    assert list(rejected.columns) == ["file", "line", "record_id", "time", "parameter", "value", "reason"]


def test_rejected_rows_point_at_the_real_lines(ingested: dict[str, Any], physionet2012_dir: Path):
    rejected = ingested["rejected_rows"]
    ph = rejected[(rejected["parameter"] == "pH") & rejected["value"].isin(["735", "95"])]
    assert set(ph["value"]) == {"735", "95"} and set(ph["reason"]) == {"out_of_range"}
    temp = rejected[(rejected["parameter"] == "Temp") & (rejected["value"] == "-17.8")]
    height = rejected[(rejected["parameter"] == "Height") & (rejected["value"] == "462.3")]
    sample = pd.concat([ph, temp, height, rejected.sample(20, random_state=0)])
    members, wanted = {}, set(sample["file"])
    for set_name in ("a", "b"):
        with tarfile.open(physionet2012_dir / f"set-{set_name}.tar.gz") as tar:
            for member in tar:
                if member.name in wanted:
                    members[member.name] = tar.extractfile(member).read().decode().splitlines()
    for row in sample.itertuples():
        assert members[row.file][row.line - 1] == f"{row.time},{row.parameter},{row.value}"
        assert row.file.endswith(f"/{row.record_id}.txt")


def test_weight_descriptor_and_repeated_weight_at_admission(ingested: dict[str, Any]):
    static, timeseries = ingested["static"].set_index("record_id"), ingested["timeseries"]
    # 149509 has two Weight rows at 00:00: 70.8 is the admission weight, 70.4 a measurement.
    assert static.loc[149509, "weight"] == 70.8
    weight = timeseries[(timeseries["record_id"] == 149509) & (timeseries["parameter"] == "Weight")]
    assert weight["minutes"].iloc[0] == 0 and weight["value"].iloc[0] == 70.4
    assert ingested["ingestion_summary"]["weight_rows_at_admission_after_descriptor"] == 1


def test_near_empty_records_are_flagged_not_dropped(ingested: dict[str, Any], params: dict[str, Any]):
    static = ingested["static"]
    flagged = static[static["near_empty"]]
    assert set(flagged["record_id"]) == set(params["near_empty_records"]) & set(static["record_id"])
    assert flagged.groupby("split_group").size().to_dict() == {"a": 3, "b": 7}
    # Exactly the records without any kept measurement.
    assert set(flagged["record_id"]) == set(static.loc[static["n_timeseries_rows"] == 0, "record_id"])
    summary = ingested["ingestion_summary"]
    assert (summary["near_empty_records"], summary["records_without_timeseries"]) == (10, 10)


def test_manifest_records_files_and_checks(ingested: dict[str, Any], physionet2012_dir: Path):
    manifest = ingested["raw_manifest"]
    for set_name in ("a", "b"):
        entry = manifest["sets"][set_name]
        assert entry["outcomes"]["sha256"] == sha256_of(physionet2012_dir / f"Outcomes-{set_name}.txt")
        assert entry["outcomes"]["verified_against"] == "pinned_sha256"
        assert entry["records"]["kind"] == "archive" and not entry["records"]["downloaded"]


def test_unpacked_folder_gives_the_same_rows_as_the_archive(
    ingested: dict[str, Any], physionet2012_dir: Path, params: dict[str, Any], tmp_path: Path
):
    with tarfile.open(physionet2012_dir / "set-a.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    (tmp_path / "Outcomes-a.txt").write_bytes((physionet2012_dir / "Outcomes-a.txt").read_bytes())
    params.update(raw_dir=str(tmp_path), sets=["a"])
    outputs = _run_nodes(params)
    assert outputs["raw_manifest"]["sets"]["a"]["records"]["kind"] == "folder"
    archive_a = ingested["static"]["split_group"] == "a"
    pd.testing.assert_frame_equal(outputs["static"], ingested["static"][archive_a].reset_index(drop=True))
    assert outputs["ingestion_summary"]["sets"]["a"] == ingested["ingestion_summary"]["sets"]["a"]


def test_record_checksum_list_catches_an_altered_record(physionet2012_dir: Path, params: dict[str, Any], tmp_path: Path):
    if not (physionet2012_dir / "SHA256SUMS-set-a.txt").exists():
        pytest.skip("the data folder has no per-record checksum list")
    with tarfile.open(physionet2012_dir / "set-a.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    for name in ("Outcomes-a.txt", "SHA256SUMS-set-a.txt"):
        (tmp_path / name).write_bytes((physionet2012_dir / name).read_bytes())
    record = tmp_path / "set-a" / "132539.txt"
    record.write_text(record.read_text().replace("00:07,HR,73", "00:07,HR,74"))
    params.update(raw_dir=str(tmp_path), sets=["a"])
    with pytest.raises(ChecksumMismatchError, match=r"set-a/132539\.txt.*SHA256SUMS-set-a\.txt"):
        _run_nodes(params)


# --------------------------------------------------------------------------- synthetic bad input


def _run_nodes(params: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's nodes in order (what SequentialRunner does), for small synthetic inputs."""
    manifest = fetch_physionet2012(params)
    record_files, raw_rows = read_physionet2012_records(manifest)
    outcomes = read_physionet2012_outcomes(manifest)
    rows = classify_physionet2012_rows(raw_rows, params)
    static = build_physionet2012_static(rows, record_files, outcomes, params)
    return {"raw_manifest": manifest, "rows": rows, "static": static,
            "rejected_rows": collect_physionet2012_rejected_rows(rows),
            "ingestion_summary": summarize_physionet2012_ingestion(rows, static, manifest)}


GOOD_RECORD = "Time,Parameter,Value\n00:00,RecordID,{id}\n00:00,Age,54\n00:00,Gender,0\n00:00,Height,170\n" \
              "00:00,ICUType,4\n00:00,Weight,80\n00:07,HR,73\n00:07,Temp,35.1\n"


def _write_set(raw_dir: Path, records: dict[int, str], outcomes: str | None = None, as_folder: bool = False) -> None:
    """set-a (tar.gz, or folder) with the given record texts, and Outcomes-a.txt."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    if as_folder:
        (raw_dir / "set-a").mkdir()
        for record_id, text in records.items():
            (raw_dir / "set-a" / f"{record_id}.txt").write_text(text)
    else:
        with tarfile.open(raw_dir / "set-a.tar.gz", "w:gz") as tar:
            for record_id, text in records.items():
                data = text.encode()
                info = tarfile.TarInfo(f"set-a/{record_id}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    if outcomes is None:
        outcomes = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n" + "".join(
            f"{record_id},10,2,5,-1,{i % 2}\n" for i, record_id in enumerate(records)
        )
    (raw_dir / "Outcomes-a.txt").write_text(outcomes)


@pytest.fixture
def synthetic(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for one synthetic set-a in tmp_path/raw (nothing pinned, downloads off)."""
    params.update(sets=["a"], pinned_sha256={})
    return params


def test_quirks_are_counted_with_file_and_line(synthetic: dict[str, Any], tmp_path: Path):
    quirky = (
        "Time,Parameter,Value\n00:00,RecordID,2\n00:00,Age,-1\n00:00,Gender,1\n00:00,Height,462.3\n"
        "00:00,ICUType,2\n00:00,Weight,-1\n00:00,Age,60\n00:05,,\n\n00:10,pH,735\n00:10,pH,7.35\n"
        "00:12,Temp,-17.8\n00:15,Foo,3\n48:01,HR,80\n48:00,HR,81\n01:00,Weight,0\n01:00,Weight,79.5\n"
    )
    _write_set(tmp_path / "raw", {1: GOOD_RECORD.format(id=1), 2: quirky})
    out = _run_nodes(synthetic)
    rejected = out["rejected_rows"]
    assert rejected[["file", "line", "reason"]].values.tolist() == [
        ["set-a/2.txt", 3, "missing_marker"],        # Age -1
        ["set-a/2.txt", 5, "out_of_range"],          # Height 462.3
        ["set-a/2.txt", 7, "missing_marker"],        # Weight -1 (descriptor)
        ["set-a/2.txt", 8, "repeated_descriptor"],   # Age again
        ["set-a/2.txt", 9, "empty_parameter"],
        ["set-a/2.txt", 10, "blank_line"],
        ["set-a/2.txt", 11, "out_of_range"],         # pH 735
        ["set-a/2.txt", 13, "out_of_range"],         # Temp -17.8
        ["set-a/2.txt", 14, "unknown_parameter"],
        ["set-a/2.txt", 15, "outside_window"],       # 48:01
        ["set-a/2.txt", 17, "out_of_range"],         # Weight 0
    ]
    static = out["static"].set_index("record_id")
    assert static.loc[2, ["age", "height", "weight"]].isna().all()  # -1, out of range, -1
    assert (static.loc[2, "gender"], static.loc[2, "icu_type"]) == (1.0, "CSRU")
    assert static.loc[1, ["age", "gender", "height", "weight", "icu_type"]].tolist() == [54.0, 0.0, 170.0, 80.0, "SICU"]
    kept = out["rows"][out["rows"]["kind"] == "timeseries"]
    assert kept[kept["record_id"] == 2][["minutes", "parameter", "value_number"]].values.tolist() == [
        [10, "pH", 7.35], [2880, "HR", 81.0], [60, "Weight", 79.5],
    ]
    summary = out["ingestion_summary"]
    assert summary["rejected_by_reason"] == {
        "blank_line": 1, "empty_parameter": 1, "unknown_parameter": 1, "repeated_descriptor": 1,
        "missing_marker": 2, "outside_window": 1, "out_of_range": 4,
    }
    assert summary["lines"] == 8 + 17 == summary["timeseries_rows"] + summary["descriptor_values"] + summary["rejected_rows"]


def test_missing_archive_without_download_names_file_and_url(synthetic: dict[str, Any], tmp_path: Path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError) as caught:
        fetch_physionet2012(synthetic)
    message = str(caught.value)
    assert "set-a.tar.gz" in message and "https://physionet.org/files/challenge-2012/1.0.0/set-a.tar.gz" in message
    assert "download.enabled" in message


def test_missing_outcomes_without_download_names_file_and_url(synthetic: dict[str, Any], tmp_path: Path):
    _write_set(tmp_path / "raw", {1: GOOD_RECORD.format(id=1)})
    (tmp_path / "raw" / "Outcomes-a.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape("https://physionet.org/files/challenge-2012/1.0.0/Outcomes-a.txt")):
        fetch_physionet2012(synthetic)


def test_truncated_archive_names_the_archive(synthetic: dict[str, Any], physionet2012_dir: Path, tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = (physionet2012_dir / "set-a.tar.gz").read_bytes()
    (raw / "set-a.tar.gz").write_bytes(archive[: len(archive) // 2])
    (raw / "Outcomes-a.txt").write_bytes((physionet2012_dir / "Outcomes-a.txt").read_bytes())
    with pytest.raises(ValueError, match=re.escape(str(raw / "set-a.tar.gz")) + ".*truncated or corrupt"):
        read_physionet2012_records(fetch_physionet2012(synthetic))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Time;Parameter;Value\n00:00,RecordID,1\n", r"set-a/1\.txt line 1: header"),
        (GOOD_RECORD.format(id=1) + "1x:30,HR,80\n", r"set-a/1\.txt line 10: time '1x:30' is not hh:mm"),
        (GOOD_RECORD.format(id=1) + "01:30,HR,8O\n", r"set-a/1\.txt line 10: value '8O' is not a number"),
        (GOOD_RECORD.format(id=1) + "01:30,HR,\n", r"set-a/1\.txt line 10: value '' is not a number"),
        (GOOD_RECORD.format(id=1) + "01:30,HR,nan\n", r"set-a/1\.txt line 10: value 'nan' is not a number"),
        (GOOD_RECORD.format(id=1) + "01:30,HR,80,1\n", r"set-a/1\.txt line 10: '01:30,HR,80,1'"),
        (GOOD_RECORD.format(id=1) + "01:30,HR\n", r"set-a/1\.txt line 10: '01:30,HR'"),
        (GOOD_RECORD.format(id=7), r"set-a/1\.txt line 2: value '7' is a RecordID that differs"),
    ],
)
def test_malformed_record_is_an_error_with_file_and_line(synthetic: dict[str, Any], tmp_path: Path, text: str, message: str):
    _write_set(tmp_path / "raw", {1: text, 2: GOOD_RECORD.format(id=2)})
    with pytest.raises(ValueError, match=message):
        _run_nodes(synthetic)


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ("RecordID,SAPS-I,SOFA,Length_of_stay,Survival\n1,1,1,1,1\n", r"Outcomes-a\.txt line 1: header"),
        ("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n1,1,1,1,-1,0\n2,x,1,1,-1,0\n",
         r"Outcomes-a\.txt line 3: SAPS-I is 'x'"),
        ("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n1,1,1,1,-1,0\n2,1,1,1,-1,2\n",
         r"Outcomes-a\.txt line 3: In-hospital_death is not 0 or 1"),
        ("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n1,1,1,1,-1,0\n1,1,1,1,-1,0\n",
         r"Outcomes-a\.txt line 3: RecordID appears twice"),
        ("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n1,1,1,1,-1,0\n3,1,1,1,-1,0\n",
         r"Outcomes-a\.txt does not match the records of set-a: 1 records have no outcome \(e\.g\. \[2\]\), "
         r"1 outcomes have no record file \(e\.g\. \[3\]\)"),
    ],
)
def test_bad_outcomes_are_errors_naming_the_file(synthetic: dict[str, Any], tmp_path: Path, outcomes: str, message: str):
    _write_set(tmp_path / "raw", {1: GOOD_RECORD.format(id=1), 2: GOOD_RECORD.format(id=2)}, outcomes=outcomes)
    with pytest.raises(ValueError, match=message):
        _run_nodes(synthetic)


def test_local_file_with_wrong_pinned_hash_is_not_used(synthetic: dict[str, Any], tmp_path: Path):
    _write_set(tmp_path / "raw", {1: GOOD_RECORD.format(id=1)})
    synthetic["pinned_sha256"] = {"Outcomes-a.txt": "1" * 64}
    with pytest.raises(ChecksumMismatchError, match=r"sha256 mismatch for \S*Outcomes-a\.txt: expected 1{64}, got [0-9a-f]{64}"):
        fetch_physionet2012(synthetic)


def test_folder_and_crlf_records_parse_like_lf(synthetic: dict[str, Any], tmp_path: Path):
    records = {1: GOOD_RECORD.format(id=1), 2: GOOD_RECORD.format(id=2).replace("\n", "\r\n")}
    _write_set(tmp_path / "raw", records, as_folder=True)
    out = _run_nodes(synthetic)
    assert out["ingestion_summary"]["timeseries_rows"] == 4 and out["ingestion_summary"]["rejected_rows"] == 0
    assert out["static"]["height"].tolist() == [170.0, 170.0]


# --------------------------------------------------------------------------- download into an empty raw_dir


def test_empty_raw_dir_is_downloaded_and_verified(
    file_server: FileServer, physionet2012_dir: Path, params: dict[str, Any], tmp_path: Path
):
    raw = tmp_path / "raw"
    params.update(raw_dir=str(raw), sets=["a"])
    params["download"].update(enabled=True, base_url=file_server.url, progress=False)
    out = _run_nodes(params)
    entry = out["raw_manifest"]["sets"]["a"]
    assert entry["records"] | {"path": None} == {
        "name": "set-a.tar.gz", "path": None, "kind": "archive", "bytes": (physionet2012_dir / "set-a.tar.gz").stat().st_size,
        "sha256": sha256_of(physionet2012_dir / "set-a.tar.gz"), "verified_against": "server SHA256SUMS", "downloaded": True,
    }
    assert entry["outcomes"]["verified_against"] == "pinned_sha256" and entry["outcomes"]["downloaded"]
    assert entry["record_checksums"] is None  # not on PhysioNet: the lists are ours, not downloaded
    assert sorted(p.name for p in raw.iterdir()) == ["Outcomes-a.txt", "set-a.tar.gz"]
    counts = out["ingestion_summary"]["sets"]["a"]
    assert {key: counts[key] for key in EXPECTED["a"]} == EXPECTED["a"]
    # The archive has no pinned hash, so PhysioNet's list is fetched first; Outcomes-a is pinned.
    assert [r["name"] for r in file_server.requests] == ["SHA256SUMS.txt", "set-a.tar.gz", "Outcomes-a.txt"]


def test_download_with_wrong_server_checksum_leaves_nothing(
    file_server: FileServer, params: dict[str, Any], tmp_path: Path
):
    sums = file_server.files["SHA256SUMS.txt"]
    sums.write_text(re.sub(r"^[0-9a-f]{64}(  set-a\.tar\.gz)$", "f" * 64 + r"\1", sums.read_text(), flags=re.M))
    raw = tmp_path / "raw"
    params.update(raw_dir=str(raw), sets=["a"])
    params["download"].update(enabled=True, base_url=file_server.url, progress=False)
    with pytest.raises(ChecksumMismatchError, match="set-a.tar.gz: expected f{64}"):
        fetch_physionet2012(params)
    assert list(raw.iterdir()) == []



def test_unreachable_server_says_where_to_put_the_files(params: dict[str, Any], tmp_path: Path):
    params.update(sets=["a"])
    params["download"].update(enabled=True, base_url="http://127.0.0.1:9/", timeout_s=5, progress=False)
    with pytest.raises(DownloadError) as caught:
        fetch_physionet2012(params)
    message = str(caught.value)
    assert message.startswith("could not fetch the checksum list http://127.0.0.1:9/SHA256SUMS.txt: no connection")
    assert f"PhysioNet 2012 is needed in {tmp_path / 'raw'}, which lacks:\n  - set-a.tar.gz" in message
    assert "Outcomes-a.txt" in message and "set-b" not in message  # only the configured sets
    assert "export EHR_PHYSIONET2012_DIR=" in message and "resume" not in message
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []
