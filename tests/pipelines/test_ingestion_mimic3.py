"""MIMIC-III ingestion on the real MIMIC-III demo (../shared/data/mimic3_demo).

The DuckDB engine is tested here end to end; the bad-input tests run on DuckDB and on
PostgreSQL (the latter through the `postgres_dsn` fixture: skipped without a server, failed
under CI=true). tests/test_postgres.py compares the two engines.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ehr_adversarial.pipelines.ingestion import create_pipeline
from ehr_adversarial.sources import mimic3
from ehr_adversarial.sources.database import CsvLoadError, DatabaseError, DuckDBDatabase
from tests.conftest import (
    MIMIC3_CORE_TABLES,
    create_postgres_database,
    drop_postgres_database,
    readme_row_counts,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# SPEC §1, written out here independently of conf/ so that the test checks the configuration.
SPEC_LAB_ITEMS = {
    50813: "Lactate", 50818: "PaCO2", 50820: "pH", 50862: "Albumin", 50882: "HCO3", 50893: "Calcium",
    50912: "Creatinine", 50931: "Glucose", 50960: "Mg", 50971: "K", 50983: "Na", 51006: "BUN", 51265: "Platelets",
}
SPEC_VITAL_ITEMS = {
    **dict.fromkeys([211, 220045], "HR"),
    **dict.fromkeys([51, 442, 455, 6701, 220179, 220050], "SysBP"),
    **dict.fromkeys([8368, 8440, 8441, 8555, 220180, 220051], "DiasBP"),
    **dict.fromkeys([223762, 676, 223761, 678], "Temp"),
    **dict.fromkeys([615, 618, 220210, 224690], "RespRate"),
    **dict.fromkeys([646, 220277], "SpO2"),
}
FAHRENHEIT_ITEMS = {223761, 678}
# PaCO2 is kept only for arterial samples: the SPECIMEN TYPE row (50800) at the same charttime says ART.
SPECIMEN_ITEM, ARTERIAL_ONLY = 50800, {50818}
# Valid ranges (mimic-code pivoted_vital / pivoted_lab): (exclusive low, exclusive high, inclusive high).
VITAL_RANGES = {"HR": (0, 300, None), "SysBP": (0, 400, None), "DiasBP": (0, 300, None), "RespRate": (0, 70, None), "SpO2": (0, None, 100)}
LAB_UPPER = {"Albumin": 10, "HCO3": 10000, "Creatinine": 150, "Glucose": 10000, "Lactate": 50, "Platelets": 10000, "K": 30, "Na": 200, "BUN": 300}


# ------------------------------------------------------------------------------------------
# Fixtures and helpers (the ingestion helpers shared with tests/test_postgres.py: tests/conftest.py)
# ------------------------------------------------------------------------------------------
def csv_folder(tmp_path: Path, demo_dir: Path, tables: list[str], replace: dict[str, str] | None = None) -> Path:
    """A CSV folder with demo files (symlinked) and replacement contents written as .csv.gz."""
    folder = tmp_path / "csv"
    folder.mkdir(exist_ok=True)
    for table in tables:
        if replace and table in replace:
            with gzip.open(folder / f"{table}.csv.gz", "wt", newline="") as stream:
                stream.write(replace[table])
        else:
            (folder / f"{table}.csv.gz").symlink_to(demo_dir / f"{table}.csv.gz")
    return folder


def demo_text(demo_dir: Path, table: str) -> str:
    with gzip.open(demo_dir / f"{table}.csv.gz", "rt", newline="") as stream:
        return stream.read()


def table_rows(database, table: str) -> int | None:
    """Rows of mimiciii.<table>, or None when it does not exist."""
    with database.connect() as conn:
        return conn.count_rows("mimiciii", table) if conn.table_exists("mimiciii", table) else None


@pytest.fixture(scope="module")
def demo_params(mimic3_demo_params: dict) -> dict:
    return mimic3_demo_params


@pytest.fixture(scope="module")
def demo_outputs(mimic3_duckdb_demo: dict) -> dict:
    """The ingestion of the demo into a fresh DuckDB file (built once per session, tests/conftest.py)."""
    return mimic3_duckdb_demo


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database(request, tmp_path):
    """An empty database of each engine."""
    if request.param == "duckdb":
        yield DuckDBDatabase(str(tmp_path / "fresh.duckdb"))
        return
    dsn = request.getfixturevalue("postgres_dsn")
    database = create_postgres_database(dsn)
    try:
        yield database
    finally:
        drop_postgres_database(dsn, database)


@pytest.fixture(scope="module")
def pandas_demo(mimic3_demo_dir: Path) -> dict[str, pd.DataFrame]:
    """The demo tables the cross-checks need, read with pandas (no SQL, no DuckDB)."""
    read = lambda table, **kw: pd.read_csv(mimic3_demo_dir / f"{table}.csv.gz", **kw)  # noqa: E731
    return {
        "icustays": read("ICUSTAYS", parse_dates=["intime", "outtime"]),
        "admissions": read("ADMISSIONS", parse_dates=["admittime", "dischtime"]),
        "patients": read("PATIENTS", parse_dates=["dob"]),
        "chartevents": read(
            "CHARTEVENTS",
            usecols=["row_id", "icustay_id", "itemid", "charttime", "valuenum", "error"],
            parse_dates=["charttime"],
        ),
        "labevents": read(
            "LABEVENTS", usecols=["row_id", "subject_id", "itemid", "charttime", "value", "valuenum"], parse_dates=["charttime"]
        ),
        "diagnoses_icd": read("DIAGNOSES_ICD", dtype={"icd9_code": "str"}),
    }


def pandas_cohort(demo: dict[str, pd.DataFrame], window_rule: str = "padded") -> pd.DataFrame:
    """Adult ICU stays with hospital LOS >= 1 d and ICU LOS >= 1 d (padded: Sun et al. 2018), or
    also the full 48 h window (full_window), computed from ICUSTAYS.los (MIMIC's own LOS) and
    calendar ages; `window_end` is intime + 48 h, padded: cut at outtime and the next ICU intime."""
    stays = demo["icustays"].merge(demo["admissions"], on=["subject_id", "hadm_id"]).merge(demo["patients"], on="subject_id")
    intime, dob = stays["intime"], stays["dob"]
    before_birthday = (intime.dt.month < dob.dt.month) | ((intime.dt.month == dob.dt.month) & (intime.dt.day < dob.dt.day))
    stays["age_whole_years"] = intime.dt.year - dob.dt.year - before_birthday.astype(int)
    stays["adult"] = stays["age_whole_years"] >= 18
    stays["hospital_los_ok"] = (stays["dischtime"] - stays["admittime"]) >= pd.Timedelta(days=1)
    stays["icu_los_ok"] = stays["los"] >= 1
    stays["full_window"] = stays["los"] >= 2
    filters = ["adult", "hospital_los_ok", "icu_los_ok"] + (["full_window"] if window_rule == "full_window" else [])
    stays["included"] = stays[filters].all(axis=1)
    stays["window_end"] = intime + pd.Timedelta(hours=48)
    if window_rule == "padded":
        next_intime = stays.sort_values(["intime", "icustay_id"]).groupby("subject_id")["intime"].shift(-1)
        ends = pd.concat([stays["window_end"], stays["outtime"], next_intime.reindex(stays.index)], axis=1)
        stays["window_end"] = ends.min(axis=1)
    return stays


def pandas_specimen(demo: dict[str, pd.DataFrame]) -> pd.Series:
    """Per (subject_id, charttime): the blood-gas specimen, or "ambiguous" when the rows disagree."""
    specimen = demo["labevents"].loc[demo["labevents"]["itemid"] == SPECIMEN_ITEM]
    values = specimen.groupby(["subject_id", "charttime"])["value"].agg(lambda v: v.iloc[0] if v.nunique() == 1 else "ambiguous")
    return values.rename("specimen")


def pandas_measurements(
    demo: dict[str, pd.DataFrame], cohort: pd.DataFrame, arterial_paco2: bool = True
) -> tuple[pd.DataFrame, pd.Series]:
    """The 19 features in the windows of the included stays, and the rejected-row counts by reason."""
    stays = cohort.loc[cohort["included"], ["icustay_id", "subject_id", "intime", "window_end"]]
    ce = demo["chartevents"]
    ce = ce[ce["itemid"].isin(SPEC_VITAL_ITEMS)].merge(stays.drop(columns="subject_id"), on="icustay_id")
    ce["parameter"] = ce["itemid"].map(SPEC_VITAL_ITEMS)
    le = demo["labevents"]
    le = le[le["itemid"].isin(SPEC_LAB_ITEMS)].merge(stays, on="subject_id")
    le["parameter"] = le["itemid"].map(SPEC_LAB_ITEMS)
    le["error"] = np.nan
    le = le.merge(pandas_specimen(demo), left_on=["subject_id", "charttime"], right_index=True, how="left")
    rows = pd.concat([ce, le], ignore_index=True)
    rows = rows[(rows["charttime"] >= rows["intime"]) & (rows["charttime"] < rows["window_end"])]
    v = rows["valuenum"]
    fahrenheit = rows["itemid"].isin(FAHRENHEIT_ITEMS)
    valid = pd.Series(True, index=rows.index)
    for parameter, (low, high, at_most) in VITAL_RANGES.items():
        here = rows["parameter"] == parameter
        ok = v > low
        ok &= (v < high) if high is not None else True
        ok &= (v <= at_most) if at_most is not None else True
        valid &= ~here | ok
    temp_c = (rows["parameter"] == "Temp") & ~fahrenheit
    valid &= ~temp_c | ((v > 10) & (v < 50))
    valid &= ~fahrenheit | ((v > 70) & (v < 120))
    lab = rows["itemid"].isin(SPEC_LAB_ITEMS)
    upper = rows["parameter"].map(LAB_UPPER)
    valid &= ~lab | ((v > 0) & (upper.isna() | (v <= upper)))
    reason = pd.Series(pd.NA, index=rows.index, dtype="object")
    reason[~valid] = "out_of_range"
    reason[v.isna()] = "not_numeric"
    if arterial_paco2:
        reason[rows["itemid"].isin(ARTERIAL_ONLY) & (rows["specimen"] != "ART")] = "wrong_specimen"
    reason[rows["error"] == 1] = "error_flag"
    kept = rows[reason.isna()].copy()
    kept["value"] = np.where(kept["itemid"].isin(FAHRENHEIT_ITEMS), (kept["valuenum"] - 32) / 1.8, kept["valuenum"])
    kept["minutes"] = ((kept["charttime"] - kept["intime"]).dt.total_seconds() // 60).astype("int32")
    kept = kept.rename(columns={"icustay_id": "record_id"})[["record_id", "minutes", "parameter", "value"]]
    return kept, reason.dropna().value_counts()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# The demo, loaded and queried
# ------------------------------------------------------------------------------------------
def test_loaded_row_counts_equal_the_readme(demo_outputs, mimic3_demo_dir):
    readme = readme_row_counts(mimic3_demo_dir)
    loaded = {table.upper(): info["rows"] for table, info in demo_outputs["load_summary"]["tables"].items()}
    assert loaded == {table: readme[table] for table in MIMIC3_CORE_TABLES}
    assert (loaded["CHARTEVENTS"], loaded["LABEVENTS"], loaded["ICUSTAYS"], loaded["PATIENTS"]) == (758_355, 76_074, 136, 100)
    for table in MIMIC3_CORE_TABLES:
        assert table_rows(demo_outputs["database"], table.lower()) == readme[table]


def test_manifest_verifies_every_file_against_the_official_checksums(demo_outputs):
    files = demo_outputs["raw_manifest"]["files"]
    assert sorted(files) == sorted(MIMIC3_CORE_TABLES)
    assert demo_outputs["raw_manifest"]["checksum_list"] == "SHA256SUMS.txt"
    assert all(entry["content_sha256_verified"] is True for entry in files.values())


@pytest.mark.slow
def test_all_26_tables_load_with_the_mimic_types(tmp_path, demo_params, mimic3_demo_dir):
    database = DuckDBDatabase(str(tmp_path / "all.duckdb"))
    _, summary = mimic3.load_mimic3_tables(database, {**demo_params, "tables": "all"})
    readme = readme_row_counts(mimic3_demo_dir)
    assert len(readme) == 26
    assert {table.upper(): info["rows"] for table, info in summary["tables"].items()} == readme
    with database.connect() as conn:
        # Text where inference would guess numbers: CHARTEVENTS.value holds "Lidocaine".
        assert conn.scalar("SELECT COUNT(*) FROM mimiciii.chartevents WHERE value = 'Lidocaine'") > 0
        types = conn.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'mimiciii' AND table_name = 'chartevents'"
        ).set_index("column_name")["data_type"]
    assert (types["value"], types["valuenum"], types["charttime"], types["itemid"]) == ("VARCHAR", "DOUBLE", "TIMESTAMP", "INTEGER")


def test_reload_skips_unchanged_tables(demo_outputs, demo_params):
    _, summary = mimic3.load_mimic3_tables(demo_outputs["database"], demo_params)
    assert {info["status"] for info in summary["tables"].values()} == {"unchanged"}
    assert summary["tables"]["chartevents"]["rows"] == 758_355


def _with(params: dict, **cohort) -> dict:
    """`params` with some ingestion.mimic3.cohort settings changed."""
    return {**params, "cohort": {**params["cohort"], **cohort}}


def test_cohort_matches_an_independent_pandas_computation(demo_outputs, pandas_demo):
    cohort = demo_outputs["cohort"]
    expected = pandas_cohort(pandas_demo)
    assert len(cohort) == 136
    assert int(cohort["passes_min_age"].sum()) == 135  # SPEC: 135 adult ICU stays
    assert set(cohort.loc[cohort["passes_min_age"], "icustay_id"]) == set(expected.loc[expected["adult"], "icustay_id"])
    assert set(cohort.loc[cohort["included"], "icustay_id"]) == set(expected.loc[expected["included"], "icustay_id"])
    # The padded rule (Sun et al. 2018): hospital and ICU LOS >= 1 day, shorter stays padded.
    assert int(cohort["included"].sum()) == 111
    summary = demo_outputs["ingestion_summary"]["cohort"]
    assert summary["settings"]["window_rule"] == "padded"
    assert (summary["included"], summary["deaths"], summary["shorter_than_window"]) == (111, 34, 39)
    attrition = [(s["filter"], s["removed"], s["remaining"]) for s in summary["attrition"]]
    assert attrition == [
        ("passes_min_age", 1, 135),
        ("passes_min_hospital_los", 10, 125),
        ("passes_min_icu_los", 14, 111),
        ("passes_stay_definition", 0, 111),
    ]
    # Each stay's window: intime + 48 h, cut at the ICU outtime (and at the patient's next ICU intime).
    merged = cohort.merge(expected[["icustay_id", "window_end"]], on="icustay_id", suffixes=("", "_pandas"))
    assert (merged["window_end"] == merged["window_end_pandas"]).all()
    included = cohort[cohort["included"]]
    assert (included["window_end"] <= included["outtime"]).all()
    assert included["window_hours_in_stay"].between(24, 48).all()
    assert int((included["window_hours_in_stay"] < 48).sum()) == 39
    assert (included["window_hours_in_stay"] == np.minimum(included["icu_los_hours"], 48)).all()
    # Ages over 89 are MIMIC's shifted ages, reported as 91.4.
    old = cohort["age_raw_years"] > 89
    assert old.any() and (cohort.loc[old, "age_years"] == 91.4).all()
    assert cohort["age_years"].max() == 91.4


def test_full_window_rule_keeps_the_stays_that_last_48_hours(demo_outputs, demo_params, pandas_demo):
    params = _with(demo_params, window_rule="full_window")
    cohort = mimic3.build_cohort(demo_outputs["database"], demo_outputs["load_summary"], params)
    expected = pandas_cohort(pandas_demo, "full_window")
    assert set(cohort.loc[cohort["included"], "icustay_id"]) == set(expected.loc[expected["included"], "icustay_id"])
    assert int(cohort["included"].sum()) == 72
    adults = expected[expected["adult"]]
    assert int((adults["los"] >= 2).sum()) == 72  # SPEC: 72 adult stays with LOS >= 2 days
    # The full-window stays are the padded cohort's stays without padding.
    padded = demo_outputs["cohort"]
    assert set(cohort.loc[cohort["included"], "icustay_id"]) == set(
        padded.loc[padded["included"] & (padded["window_hours_in_stay"] == 48), "icustay_id"]
    )
    assert (cohort["window_end"] == cohort["intime"] + pd.Timedelta(hours=48)).all()
    attrition = [(s["filter"], s["setting"], s["removed"], s["remaining"])
                 for s in mimic3.cohort_attrition(cohort, mimic3.cohort.cohort_settings(params["cohort"]))]
    assert attrition == [
        ("passes_min_age", "min_age_years = 18.0", 1, 135),
        ("passes_min_hospital_los", "min_hospital_los_days = 1.0", 10, 125),
        ("passes_min_icu_los", "min_icu_los_days = 1.0", 14, 111),
        ("passes_full_window", "window_hours = 48", 39, 72),
        ("passes_stay_definition", "stay_definition = icustay", 0, 72),
    ]
    timeseries, rejected = mimic3.extract_measurements(demo_outputs["database"], cohort, demo_outputs["feature_items"])
    expected_ts, expected_rejected = pandas_measurements(pandas_demo, expected)
    pd.testing.assert_frame_equal(_sorted(timeseries), _sorted(expected_ts.astype(mimic3.TIMESERIES_DTYPES)))
    assert len(timeseries) == 24_463 and timeseries["record_id"].nunique() == 72
    assert rejected["reason"].value_counts().to_dict() == expected_rejected.to_dict() == {
        "wrong_specimen": 47, "not_numeric": 21, "out_of_range": 12, "error_flag": 1}
    # Without the arterial restriction the full-window rule gives exactly the earlier extraction.
    items = demo_outputs["feature_items"].assign(
        specimen_itemid=pd.NA, specimen_label=None, specimen=None
    ).astype({"specimen_itemid": "Int64"})
    unrestricted, _ = mimic3.extract_measurements(demo_outputs["database"], cohort, items)
    assert len(unrestricted) == 24_510
    assert int((unrestricted["parameter"] == "PaCO2").sum()) == 294
    assert int((timeseries["parameter"] == "PaCO2").sum()) == 247


def test_first_icustay_definition_keeps_one_stay_per_admission(demo_outputs, demo_params):
    params = _with(demo_params, stay_definition="first_icustay")
    cohort = mimic3.build_cohort(demo_outputs["database"], demo_outputs["load_summary"], params)
    included = cohort[cohort["included"]]
    assert included["hadm_id"].is_unique
    assert (included["icustay_seq"] == 1).all()
    per_stay = demo_outputs["cohort"]
    expected = per_stay[per_stay["included"] & (per_stay["icustay_seq"] == 1)]
    assert set(included["icustay_id"]) == set(expected["icustay_id"])
    assert len(included) == 105
    full_window = mimic3.build_cohort(demo_outputs["database"], demo_outputs["load_summary"],
                                      _with(params, window_rule="full_window"))
    assert int(full_window["included"].sum()) == 68


def test_measurements_match_an_independent_pandas_computation(demo_outputs, pandas_demo):
    timeseries, rejected = demo_outputs["timeseries"], demo_outputs["rejected_rows"]
    expected, expected_rejected = pandas_measurements(pandas_demo, pandas_cohort(pandas_demo))
    pd.testing.assert_frame_equal(_sorted(timeseries), _sorted(expected.astype(mimic3.TIMESERIES_DTYPES)))
    assert len(timeseries) == 32_191
    assert rejected["reason"].value_counts().to_dict() == expected_rejected.to_dict() == {
        "wrong_specimen": 48, "not_numeric": 26, "out_of_range": 20, "error_flag": 3}
    assert sorted(timeseries["parameter"].unique()) == sorted(set(SPEC_LAB_ITEMS.values()) | set(SPEC_VITAL_ITEMS.values()))
    assert timeseries["record_id"].nunique() == 111
    assert timeseries["minutes"].between(0, 48 * 60 - 1).all()
    # Nothing at or after a stay's window end: a short stay has no row after its ICU outtime.
    hours = timeseries.merge(demo_outputs["cohort"][["icustay_id", "window_hours_in_stay"]],
                             left_on="record_id", right_on="icustay_id")
    assert (hours["minutes"] < hours["window_hours_in_stay"] * 60).all()


def test_padded_window_ends_at_the_icu_outtime(demo_outputs, pandas_demo):
    """Without the cut at outtime the 48 h windows of the 39 short stays would take in 184 values
    (and 1 rejected row) charted after the patient left the ICU."""
    cohort = demo_outputs["cohort"]
    uncut = cohort.assign(window_end=cohort["intime"] + pd.Timedelta(hours=48))
    timeseries, rejected = mimic3.extract_measurements(demo_outputs["database"], uncut, demo_outputs["feature_items"])
    assert (len(timeseries), len(rejected)) == (32_191 + 184, 97 + 1)
    extra = timeseries.merge(cohort[["icustay_id", "window_hours_in_stay", "icu_los_hours"]],
                             left_on="record_id", right_on="icustay_id")
    after = extra[extra["minutes"] >= extra["window_hours_in_stay"] * 60]
    assert len(after) == 184
    assert (after["minutes"] >= np.floor(after["icu_los_hours"] * 60)).all()  # all after outtime
    inside = extra.loc[extra["minutes"] < extra["window_hours_in_stay"] * 60, list(mimic3.TIMESERIES_DTYPES)]
    pd.testing.assert_frame_equal(_sorted(inside), _sorted(demo_outputs["timeseries"]))


def test_overlapping_stays_never_share_a_measurement(fresh_database, tmp_path, demo_params, mimic3_demo_dir, pandas_demo):
    """A patient's next ICU stay that starts inside the 48 h window ends the earlier window there,
    so each lab result belongs to one stay (the demo has no such pair: one is made)."""
    tables = ["ICUSTAYS", "ADMISSIONS", "PATIENTS", "LABEVENTS", "D_LABITEMS", "CHARTEVENTS"]
    with gzip.open(mimic3_demo_dir / "CHARTEVENTS.csv.gz", "rt", newline="") as stream:
        no_vitals = stream.readline()  # the header only: this test is about labs
    folder = csv_folder(tmp_path, mimic3_demo_dir, tables, {"CHARTEVENTS": no_vitals})
    _, summary = mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": tables})
    # Subject 10088: ICU stays 256345 (2107-01-05, 88.5 h) and 249695 (2107-01-29); the later one is moved
    # to start 30 h after the earlier one, as overlapping ICUSTAYS rows would.
    with fresh_database.connect() as conn:
        first = conn.scalar("SELECT intime FROM mimiciii.icustays WHERE icustay_id = 256345")
        conn.execute("UPDATE mimiciii.icustays SET intime = :t WHERE icustay_id = 249695",
                     {"t": first + pd.Timedelta(hours=30)})
    cohort = mimic3.build_cohort(fresh_database, summary, demo_params).set_index("icustay_id")
    assert cohort.loc[[256345, 249695], "included"].all()
    assert cohort.loc[256345, "window_end"] == cohort.loc[249695, "intime"] == first + pd.Timedelta(hours=30)
    assert cohort.loc[256345, "window_hours_in_stay"] == 30
    labs = {parameter: spec for parameter, spec in demo_params["features"].items() if spec["table"] == "labevents"}
    items = mimic3.feature_items_table(labs)
    timeseries, rejected = mimic3.extract_measurements(fresh_database, cohort.reset_index(), items)
    pair = timeseries[timeseries["record_id"].isin([256345, 249695])]
    assert (pair.loc[pair["record_id"] == 256345, "minutes"] < 30 * 60).all()
    # Every lab result of the two windows once: as many rows as LABEVENTS has in [intime, intime + 30 h + 48 h).
    le = pandas_demo["labevents"]
    n_labs = int((le["subject_id"].eq(10088) & le["itemid"].isin(SPEC_LAB_ITEMS)
                  & le["charttime"].between(first, first + pd.Timedelta(hours=78), inclusive="left")).sum())
    pair_rejected = rejected[rejected["record_id"].isin([256345, 249695])]
    assert len(pair) + len(pair_rejected) == n_labs
    assert int((pair["record_id"] == 249695).sum()) > 0


def test_paco2_is_arterial_only(demo_outputs, demo_params, pandas_demo):
    """PaCO2 (50818) comes from blood gases of every specimen; only rows whose SPECIMEN TYPE (50800) at
    the same charttime is ART are kept: 271 of the 319 in the padded windows."""
    items = demo_outputs["feature_items"].set_index("parameter")
    assert (items.loc["PaCO2", "specimen_itemid"], items.loc["PaCO2", "specimen"]) == (50800, "ART")
    assert items.drop(index="PaCO2")["specimen"].isna().all()
    assert items.loc["PaCO2", "found_specimen_label"] == "SPECIMEN TYPE"
    timeseries, rejected = demo_outputs["timeseries"], demo_outputs["rejected_rows"]
    paco2_rejected = rejected[rejected["parameter"] == "PaCO2"]
    assert int((timeseries["parameter"] == "PaCO2").sum()) == 271
    assert paco2_rejected["reason"].value_counts().to_dict() == {"wrong_specimen": 48}
    # What the rejected rows' specimens were: no SPECIMEN TYPE row at that time, mixed venous, venous.
    specimen = pandas_specimen(pandas_demo)
    found = paco2_rejected.merge(pandas_demo["labevents"][["row_id", "subject_id"]], on="row_id")
    found = found.merge(specimen, left_on=["subject_id", "charttime"], right_index=True, how="left")
    assert found["specimen"].fillna("none").value_counts().to_dict() == {"none": 26, "MIX": 20, "VEN": 2}
    summary = demo_outputs["ingestion_summary"]["measurements"]["per_parameter"]["PaCO2"]
    assert summary == {"kept": 271, "error_flag": 0, "wrong_specimen": 48, "not_numeric": 0, "out_of_range": 0}
    # The same windows without the restriction: 319 PaCO2 values (271 + 48).
    features = {**demo_params["features"], "PaCO2": {k: v for k, v in demo_params["features"]["PaCO2"].items() if k != "specimen"}}
    unrestricted, _ = mimic3.extract_measurements(
        demo_outputs["database"], demo_outputs["cohort"], mimic3.feature_items_table(features))
    assert int((unrestricted["parameter"] == "PaCO2").sum()) == 319
    assert len(unrestricted) == 32_191 + 48


def test_timeseries_follow_the_contract(demo_outputs):
    timeseries = demo_outputs["timeseries"]
    assert dict(timeseries.dtypes.astype(str)) == {"record_id": "int64", "minutes": "int32", "parameter": "str", "value": "float64"}
    assert timeseries["value"].notna().all()
    temp = timeseries.loc[timeseries["parameter"] == "Temp", "value"]
    assert temp.between(10, 50).all()  # Fahrenheit rows converted to °C
    assert timeseries.loc[timeseries["parameter"] == "SpO2", "value"].max() == 100


def test_static_follows_the_contract(demo_outputs, pandas_demo):
    static, cohort = demo_outputs["static"], demo_outputs["cohort"]
    assert list(static.columns[:8]) == ["record_id", "age", "gender", "height", "weight", "icu_type", "label", "split_group"]
    assert static["record_id"].dtype == "int64" and static["label"].dtype == "int64"
    assert len(static) == 111 and static["record_id"].is_unique
    assert set(static["record_id"]) == set(demo_outputs["timeseries"]["record_id"])
    assert set(static["gender"].unique()) <= {0.0, 1.0}
    assert static["height"].isna().all() and static["weight"].isna().all()
    assert (static["split_group"] == "all").all()
    expected = pandas_cohort(pandas_demo).set_index("icustay_id").loc[static["record_id"]]
    assert (static["label"].to_numpy() == expected["hospital_expire_flag"].to_numpy()).all()
    assert (static["gender"].to_numpy() == (expected["gender"] == "M").astype(float).to_numpy()).all()
    assert (static["icu_type"].to_numpy() == expected["first_careunit"].to_numpy()).all()
    assert int(static["label"].sum()) == demo_outputs["ingestion_summary"]["cohort"]["deaths"] == 34
    assert cohort.loc[cohort["included"], "icustay_id"].tolist() == static["record_id"].tolist()
    # Hours of the 48 h window inside the stay: 39 stays end sooner (ICU outtime), 7 of them in death.
    short = static["window_hours_in_stay"] < 48
    assert int(short.sum()) == 39 and int(static.loc[short, "label"].sum()) == 7
    assert (static["window_hours_in_stay"] == np.minimum(static["icu_los_hours"], 48)).all()


def test_diagnoses_match_pandas(demo_outputs, pandas_demo):
    diagnoses = demo_outputs["diagnoses"]
    raw = pandas_demo["diagnoses_icd"].dropna(subset=["icd9_code"])
    assert len(diagnoses) == len(raw) == 1761
    merged = diagnoses.merge(raw, on=["hadm_id", "seq_num", "icd9_code"], how="inner")
    assert len(merged) == len(raw)
    e_codes = diagnoses["icd9_code"].str.startswith("E")
    assert (diagnoses.loc[e_codes, "icd9_3digit"].str.len() == 4).all()
    assert (diagnoses.loc[~e_codes, "icd9_3digit"] == diagnoses.loc[~e_codes, "icd9_code"].str[:3]).all()


def test_feature_items_are_checked_against_the_dictionaries(demo_outputs, demo_params):
    items = demo_outputs["feature_items"]
    assert len(items) == len(SPEC_LAB_ITEMS) + len(SPEC_VITAL_ITEMS)
    assert dict(zip(items["itemid"], items["parameter"], strict=True)) == {**SPEC_LAB_ITEMS, **SPEC_VITAL_ITEMS}
    features = {**demo_params["features"], "Mg": {**demo_params["features"]["Mg"], "items": {51237: "Magnesium"}}}
    with pytest.raises(ValueError, match=r"Mg itemid 51237: labelled 'INR\(PT\)', expected 'Magnesium'"):
        mimic3.check_feature_items(demo_outputs["database"], {}, {**demo_params, "features": features})
    features = {**demo_params["features"], "HR": {**demo_params["features"]["HR"], "items": {50813: "Heart Rate"}}}
    with pytest.raises(ValueError, match=r"HR itemid 50813: not in D_ITEMS"):
        mimic3.check_feature_items(demo_outputs["database"], {}, {**demo_params, "features": features})
    # The specimen item is checked against D_LABITEMS like the others.
    paco2 = demo_params["features"]["PaCO2"]
    for item, message in (({50801: "SPECIMEN TYPE"}, r"PaCO2 specimen itemid 50801: labelled 'Alveolar-arterial Gradient', expected 'SPECIMEN TYPE'"),
                          ({1: "SPECIMEN TYPE"}, r"PaCO2 specimen itemid 1: not in D_LABITEMS")):
        features = {**demo_params["features"], "PaCO2": {**paco2, "specimen": {**paco2["specimen"], "item": item}}}
        with pytest.raises(ValueError, match=message):
            mimic3.check_feature_items(demo_outputs["database"], {}, {**demo_params, "features": features})


@pytest.mark.parametrize(
    ("feature", "specimen", "message"),
    [
        ("HR", {"item": {50800: "SPECIMEN TYPE"}, "value": "ART"}, r"HR\.specimen: only LABEVENTS features have a specimen"),
        ("PaCO2", {"item": {50800: "SPECIMEN TYPE"}}, r"PaCO2\.specimen\.value is None"),
        ("PaCO2", {"item": {}, "value": "ART"}, r"PaCO2\.specimen\.item is \{\}"),
        ("PaCO2", {"item": {50800: "SPECIMEN TYPE"}, "value": "ART", "fluid": "Blood"}, r"PaCO2\.specimen: unknown keys \['fluid'\]"),
        ("PaCO2", {"item": {50820: "pH"}, "value": "ART"}, r"itemid\(s\) \[50820\] are both a specimen item and a feature's item"),
    ],
)
def test_bad_specimen_setting_is_named(demo_params, feature, specimen, message):
    features = {**demo_params["features"], feature: {**demo_params["features"][feature], "specimen": specimen}}
    with pytest.raises(ValueError, match=message):
        mimic3.feature_items_table(features)


def test_sub_pipeline_runs_with_sequential_runner(tmp_path, demo_params, demo_outputs):
    pipeline = create_pipeline("mimic3")
    assert pipeline.inputs() == {"ingestion.database", "params:ingestion.mimic3"}
    catalog = DataCatalog({name: MemoryDataset() for name in pipeline.all_outputs()})
    catalog["ingestion.database"] = MemoryDataset(DuckDBDatabase(str(tmp_path / "runner.duckdb")), copy_mode="assign")
    catalog["params:ingestion.mimic3"] = MemoryDataset(demo_params)
    SequentialRunner().run(pipeline, catalog)
    # The runner releases intermediate datasets; the free outputs stay.
    summary = catalog.load("ingestion.summary")
    assert summary["cohort"]["included"] == 111
    assert summary["measurements"]["kept"] == 32_191
    assert summary["tables"]["chartevents"] == 758_355
    expected = {**demo_outputs["ingestion_summary"], "database": summary["database"]}
    assert summary == expected
    pd.testing.assert_frame_equal(catalog.load("ingestion.static"), demo_outputs["static"])
    assert sorted(catalog.load("ingestion.raw_manifest")["files"]) == sorted(MIMIC3_CORE_TABLES)


# ------------------------------------------------------------------------------------------
# Bad input, on both engines
# ------------------------------------------------------------------------------------------
def test_missing_folder_is_named(tmp_path, demo_params):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ".*physionet.org"):
        mimic3.load_mimic3_tables(DuckDBDatabase(str(tmp_path / "x.duckdb")), {**demo_params, "csv_dir": str(missing)})


def test_missing_file_names_table_and_source(fresh_database, tmp_path, demo_params, mimic3_demo_dir):
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["PATIENTS"])
    with pytest.raises(FileNotFoundError, match=r"no ADMISSIONS\.csv\.gz or ADMISSIONS\.csv.*physionet\.org/content/mimiciii-demo.*credentialed"):
        mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["PATIENTS", "ADMISSIONS"]})


def test_missing_table_is_named_by_the_node_that_needs_it(fresh_database, tmp_path, demo_params, mimic3_demo_dir):
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["ICUSTAYS"])
    _, summary = mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["ICUSTAYS"]})
    with pytest.raises(DatabaseError, match=r"no table\(s\) mimiciii\.admissions, mimiciii\.patients.*physionet\.org"):
        mimic3.build_cohort(fresh_database, summary, demo_params)


def test_existing_tables_mode_names_missing_tables(fresh_database, demo_params):
    with pytest.raises(DatabaseError, match=r"no table\(s\) mimiciii\.patients"):
        mimic3.load_mimic3_tables(fresh_database, {**demo_params, "load_csv": False, "tables": ["PATIENTS"]})


def test_truncated_gzip_names_file_and_line(fresh_database, tmp_path, demo_params, mimic3_demo_dir):
    folder = csv_folder(tmp_path, mimic3_demo_dir, [])
    data = (mimic3_demo_dir / "LABEVENTS.csv.gz").read_bytes()
    (folder / "LABEVENTS.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CsvLoadError, match=r"LABEVENTS\.csv\.gz: the gzip file is truncated or corrupt after line \d+"):
        mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["LABEVENTS"]})
    assert table_rows(fresh_database, "labevents") is None  # nothing partial


def test_wrong_header_names_file_line_and_columns(fresh_database, tmp_path, demo_params, mimic3_demo_dir):
    text = demo_text(mimic3_demo_dir, "ICUSTAYS").replace("first_careunit", "first_unit", 1)
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["ICUSTAYS"], {"ICUSTAYS": text})
    with pytest.raises(CsvLoadError, match=r"ICUSTAYS\.csv\.gz, line 1: the header does not match.*missing \['first_careunit'\], unexpected \['first_unit'\]"):
        mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["ICUSTAYS"]})


def test_upper_case_header_of_full_mimic_loads(fresh_database, tmp_path, demo_params, mimic3_demo_dir):
    header, body = demo_text(mimic3_demo_dir, "ICUSTAYS").split("\n", 1)
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["ICUSTAYS"], {"ICUSTAYS": header.upper() + "\n" + body})
    _, summary = mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["ICUSTAYS"]})
    assert summary["tables"]["icustays"]["rows"] == 136


def _break_field(text: str, line: int, column: str, value: str) -> str:
    """`text` (a CSV without quoted commas) with one field of one line replaced."""
    lines = text.split("\n")
    fields = lines[line - 1].split(",")
    fields[lines[0].split(",").index(column)] = value
    lines[line - 1] = ",".join(fields)
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("line", "column", "value"),
    [(3, "intime", "2126-08-14 25:99:00"), (5, "los", "1.2.3"), (40, "icustay_id", "twelve")],
    ids=["timestamp", "number", "integer"],
)
def test_unparseable_value_names_file_and_line(fresh_database, tmp_path, demo_params, mimic3_demo_dir, line, column, value):
    text = _break_field(demo_text(mimic3_demo_dir, "ICUSTAYS"), line, column, value)
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["ICUSTAYS"], {"ICUSTAYS": text})
    with pytest.raises(CsvLoadError, match=rf"ICUSTAYS\.csv\.gz, line {line}:.*{column}"):
        mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["ICUSTAYS"]})
    assert table_rows(fresh_database, "icustays") is None  # nothing partial


def test_failed_reload_keeps_the_previous_table(fresh_database, tmp_path, demo_params, mimic3_demo_dir):
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["ICUSTAYS"])
    params = {**demo_params, "csv_dir": str(folder), "tables": ["ICUSTAYS"]}
    mimic3.load_mimic3_tables(fresh_database, params)
    (folder / "ICUSTAYS.csv.gz").unlink()
    with gzip.open(folder / "ICUSTAYS.csv.gz", "wt") as stream:
        stream.write(_break_field(demo_text(mimic3_demo_dir, "ICUSTAYS"), 100, "outtime", "2150-02-30 10:00:00"))
    with pytest.raises(CsvLoadError, match=r"ICUSTAYS\.csv\.gz, line 100:.*outtime"):
        mimic3.load_mimic3_tables(fresh_database, params)
    assert table_rows(fresh_database, "icustays") == 136


def test_checksum_mismatch_is_not_loaded(fresh_database, tmp_path, demo_params, mimic3_demo_dir):
    text = _break_field(demo_text(mimic3_demo_dir, "PATIENTS"), 2, "gender", "M")
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["PATIENTS"], {"PATIENTS": text})
    shutil.copy(mimic3_demo_dir / "SHA256SUMS.txt", folder / "SHA256SUMS.txt")
    with pytest.raises(CsvLoadError, match=r"PATIENTS\.csv\.gz: sha256 of the CSV content is [0-9a-f]{64}, but SHA256SUMS\.txt says f65803a4"):
        mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["PATIENTS"]})
    assert table_rows(fresh_database, "patients") is None


def test_table_not_loaded_by_the_pipeline_is_never_replaced(tmp_path, demo_params, mimic3_demo_dir):
    database = DuckDBDatabase(str(tmp_path / "foreign.duckdb"))
    with database.connect() as conn:
        conn.execute("CREATE SCHEMA mimiciii")
        conn.execute("CREATE TABLE mimiciii.patients (row_id INTEGER)")
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["PATIENTS"])
    with pytest.raises(DatabaseError, match=r"mimiciii\.patients already exists .* not loaded by this pipeline.*load_csv: false"):
        mimic3.load_mimic3_tables(database, {**demo_params, "csv_dir": str(folder), "tables": ["PATIENTS"]})


@pytest.mark.parametrize(
    ("setting", "value", "flag", "rule"),
    [
        ("min_age_years", 200, "passes_min_age", "padded"),
        ("min_hospital_los_days", 400, "passes_min_hospital_los", "padded"),
        ("min_icu_los_days", 400, "passes_min_icu_los", "padded"),
        ("window_hours", 24 * 400, "passes_full_window", "full_window"),
    ],
)
def test_empty_cohort_names_the_filter(fresh_database, tmp_path, demo_params, mimic3_demo_dir, setting, value, flag, rule):
    folder = csv_folder(tmp_path, mimic3_demo_dir, ["ICUSTAYS", "ADMISSIONS", "PATIENTS"])
    _, summary = mimic3.load_mimic3_tables(fresh_database, {**demo_params, "csv_dir": str(folder), "tables": ["ICUSTAYS", "ADMISSIONS", "PATIENTS"]})
    params = _with(demo_params, **{setting: value, "window_rule": rule})
    with pytest.raises(ValueError, match=rf"cohort is empty: filter {flag} \({setting} = {value}(\.0)?\) removed the last \d+ of 136"):
        mimic3.build_cohort(fresh_database, summary, params)


def test_padded_rule_ignores_the_window_length_as_a_filter(demo_outputs, demo_params):
    cohort = mimic3.build_cohort(demo_outputs["database"], demo_outputs["load_summary"], _with(demo_params, window_hours=24 * 400))
    assert int(cohort["included"].sum()) == 111 and not cohort["passes_full_window"].any()
    included = cohort[cohort["included"]]
    assert (included["window_end"] == included["outtime"]).all()  # no stay lasts 400 days: each window ends at outtime


@pytest.mark.parametrize(("setting", "value"), [("stay_definition", "per_patient"), ("window_rule", "paper")])
def test_unknown_cohort_choice_is_refused(demo_outputs, demo_params, setting, value):
    with pytest.raises(ValueError, match=rf"{setting} is '{value}'; use one of"):
        mimic3.build_cohort(demo_outputs["database"], demo_outputs["load_summary"], _with(demo_params, **{setting: value}))
