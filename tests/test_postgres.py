"""MIMIC-III on PostgreSQL: the demo loaded with COPY gives the same tables as DuckDB, an
existing (mimic-code style) database is read as is, and connection failures are clear and
never show the password.

Tests that need the server take the `postgres_dsn` fixture (skipped without a server, failed
under CI=true) and create and drop their own database, so runs never collide.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from kedro.io import DatasetError

from ehr_adversarial.datasets.database import DatabaseDataset
from ehr_adversarial.sources import mimic3
from ehr_adversarial.sources.database import (
    DatabaseConnectionError,
    DatabaseError,
    PostgresDatabase,
)
from tests.conftest import (
    MIMIC3_CORE_TABLES,
    create_postgres_database,
    drop_postgres_database,
    readme_row_counts,
    run_mimic3_ingestion_nodes,
)

SECRET = "pw-that-must-never-show-7c1e"
FRAMES = ("feature_items", "cohort", "timeseries", "rejected_rows", "static", "diagnoses")


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Engine-neutral dtypes: DuckDB returns nullable Int32 where psycopg2 rows give floats."""
    return frame.apply(lambda col: col.astype("Float64") if pd.api.types.is_numeric_dtype(col) else col.astype("str"))


@pytest.fixture(scope="module")
def demo_params(mimic3_demo_params: dict) -> dict:
    return mimic3_demo_params


@pytest.fixture(scope="module")
def postgres_demo(postgres_dsn, demo_params):
    """The demo ingested into a new PostgreSQL database (COPY from the .csv.gz files)."""
    database = create_postgres_database(postgres_dsn)
    try:
        yield {"database": database, **run_mimic3_ingestion_nodes(database, demo_params)}
    finally:
        drop_postgres_database(postgres_dsn, database)


@pytest.fixture(scope="module")
def duckdb_demo(mimic3_duckdb_demo: dict) -> dict:
    """The demo ingested into DuckDB (built once per session, tests/conftest.py)."""
    return mimic3_duckdb_demo


@pytest.fixture
def fresh_postgres(postgres_dsn):
    database = create_postgres_database(postgres_dsn)
    try:
        yield database
    finally:
        drop_postgres_database(postgres_dsn, database)


@pytest.mark.postgres
def test_copy_loads_the_readme_row_counts(postgres_demo, mimic3_demo_dir):
    readme = readme_row_counts(mimic3_demo_dir)
    loaded = {table.upper(): info["rows"] for table, info in postgres_demo["load_summary"]["tables"].items()}
    assert loaded == {table: readme[table] for table in MIMIC3_CORE_TABLES}
    with postgres_demo["database"].connect() as conn:
        assert conn.count_rows("mimiciii", "chartevents") == 758_355
        types = conn.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'mimiciii' AND table_name = 'chartevents'"
        ).set_index("column_name")["data_type"]
        assert conn.scalar("SELECT COUNT(*) FROM mimiciii.chartevents WHERE value = 'Lidocaine'") > 0
    assert (types["value"], types["valuenum"], types["charttime"]) == (
        "character varying",
        "double precision",
        "timestamp without time zone",
    )


@pytest.mark.postgres
@pytest.mark.parametrize("name", FRAMES)
def test_duckdb_and_postgres_give_identical_tables(postgres_demo, duckdb_demo, name):
    pd.testing.assert_frame_equal(postgres_demo[name], duckdb_demo[name], check_exact=True)


@pytest.mark.postgres
def test_duckdb_and_postgres_give_identical_summaries(postgres_demo, duckdb_demo):
    postgres, duckdb = postgres_demo["ingestion_summary"], duckdb_demo["ingestion_summary"]
    assert postgres["database"]["engine"] == "postgres" and duckdb["database"]["engine"] == "duckdb"
    assert {**postgres, "database": None} == {**duckdb, "database": None}
    assert postgres["cohort"]["included"] == 111 and postgres["measurements"]["kept"] == 32_191
    assert postgres["measurements"]["rejected_by_reason"]["wrong_specimen"] == 48


@pytest.mark.postgres
def test_full_window_rule_is_identical_on_both_engines(postgres_demo, duckdb_demo, demo_params):
    """The other window rule and the extraction without the arterial restriction, on both engines."""
    params = {**demo_params, "cohort": {**demo_params["cohort"], "window_rule": "full_window"}}
    features = {**demo_params["features"], "PaCO2": {k: v for k, v in demo_params["features"]["PaCO2"].items() if k != "specimen"}}
    results = []
    for demo in (postgres_demo, duckdb_demo):
        cohort = mimic3.build_cohort(demo["database"], demo["load_summary"], params)
        restricted = mimic3.extract_measurements(demo["database"], cohort, demo["feature_items"])
        unrestricted = mimic3.extract_measurements(demo["database"], cohort, mimic3.feature_items_table(features))
        results.append((cohort, *restricted, *unrestricted))
    for postgres, duckdb in zip(*results, strict=True):
        pd.testing.assert_frame_equal(postgres, duckdb, check_exact=True)
    cohort, timeseries, rejected, unrestricted, _ = results[0]
    assert int(cohort["included"].sum()) == 72
    assert (len(timeseries), len(unrestricted)) == (24_463, 24_510)
    assert int((rejected["reason"] == "wrong_specimen").sum()) == 47


@pytest.mark.postgres
def test_loaded_tables_are_identical_on_both_engines(postgres_demo, duckdb_demo):
    """Every loaded value, not only what the SQL selects: a per-column fingerprint of each table."""
    for table in ("icustays", "patients", "admissions", "labevents", "chartevents"):
        frames = []
        for demo in (postgres_demo, duckdb_demo):
            with demo["database"].connect() as conn:
                frame = conn.query(f"SELECT * FROM mimiciii.{table} ORDER BY row_id")
            frames.append(_canonical(frame))
        pd.testing.assert_frame_equal(frames[0], frames[1], obj=table, check_exact=True)


@pytest.mark.postgres
def test_rerun_on_postgres_skips_unchanged_tables(postgres_demo, demo_params):
    _, summary = mimic3.load_mimic3_tables(postgres_demo["database"], demo_params)
    assert {info["status"] for info in summary["tables"].values()} == {"unchanged"}


@pytest.mark.postgres
def test_existing_mimic_code_database_is_read_without_loading(fresh_postgres, demo_params, duckdb_demo):
    # Build the tables, then forget that this pipeline loaded them: that is what a database
    # built by mimic-code looks like (schema mimiciii, no load log).
    mimic3.load_mimic3_tables(fresh_postgres, demo_params)
    with fresh_postgres.connect() as conn:
        conn.execute("DROP SCHEMA ehr_adversarial CASCADE")
    with pytest.raises(DatabaseError, match="not loaded by this pipeline; set ingestion.mimic3.load_csv: false"):
        mimic3.load_mimic3_tables(fresh_postgres, demo_params)
    existing = {**demo_params, "load_csv": False, "csv_dir": "/nonexistent"}
    outputs = run_mimic3_ingestion_nodes(fresh_postgres, existing)
    assert {info["status"] for info in outputs["load_summary"]["tables"].values()} == {"existing"}
    assert outputs["raw_manifest"]["files"] == {}
    pd.testing.assert_frame_equal(outputs["timeseries"], duckdb_demo["timeseries"])
    pd.testing.assert_frame_equal(outputs["cohort"], duckdb_demo["cohort"])


# ------------------------------------------------------------------------------------------
# Connection errors: host/port/db in the message, never the password
# ------------------------------------------------------------------------------------------
def test_unreachable_server_names_host_port_and_database(caplog):
    database = PostgresDatabase(host="127.0.0.1", port=1, dbname="mimic_nowhere", user="someone", password=SECRET, connect_timeout=3)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseConnectionError) as error:
        database.ping()
    message = str(error.value)
    assert "'mimic_nowhere' at 127.0.0.1:1" in message and "user 'someone'" in message
    assert SECRET not in message and SECRET not in repr(database) and SECRET not in caplog.text
    assert error.value.__cause__ is None and error.value.__suppress_context__


@pytest.mark.postgres
def test_refused_login_is_clear_and_hides_the_password(postgres_dsn, caplog):
    from psycopg2.extensions import parse_dsn

    settings = parse_dsn(postgres_dsn)
    host, port = settings.get("host", "127.0.0.1"), int(settings.get("port", 5432))
    for dbname, user, reason in (
        ("ehr_adversarial_no_such_db", settings.get("user"), 'database "ehr_adversarial_no_such_db" does not exist'),
        (settings.get("dbname", "postgres"), "ehr_adversarial_no_such_role", 'role "ehr_adversarial_no_such_role" does not exist'),
    ):
        database = PostgresDatabase(host=host, port=port, dbname=dbname, user=user, password=SECRET)
        with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseConnectionError) as error:
            database.ping()
        assert f"{dbname!r} at {host}:{port}" in str(error.value) and reason in str(error.value)
        assert SECRET not in str(error.value)
    assert SECRET not in caplog.text


def test_dataset_never_shows_the_password(caplog):
    dataset = DatabaseDataset(
        engine="postgres",
        host="127.0.0.1",
        port=1,
        dbname="mimic",
        connect_timeout=3,
        credentials={"user": "someone", "password": SECRET},
    )
    assert SECRET not in repr(dataset) and "port=1" in repr(dataset) and "dbname='mimic'" in repr(dataset)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatasetError) as error:
        dataset.load()
    assert "'mimic' at 127.0.0.1:1" in str(error.value)
    assert SECRET not in str(error.value) and SECRET not in caplog.text


@pytest.mark.postgres
def test_dataset_loads_a_working_handle(postgres_dsn, tmp_path):
    from psycopg2.extensions import parse_dsn

    settings = parse_dsn(postgres_dsn)
    dataset = DatabaseDataset(
        engine="postgres",
        host=settings.get("host", "127.0.0.1"),
        port=settings.get("port", 5432),
        dbname=settings.get("dbname", "postgres"),
        credentials={"user": settings.get("user"), "password": settings.get("password")},
    )
    with dataset.load().connect() as conn:
        assert conn.scalar("SELECT CAST(:x AS INTEGER) + 1", {"x": 41}) == 42
    with DatabaseDataset(engine="duckdb", filepath=str(tmp_path / "d.duckdb")).load().connect() as conn:
        assert conn.scalar("SELECT CAST(:x AS INTEGER) + 1", {"x": 41}) == 42
