"""Shared test fixtures and helpers: real data roots, PostgreSQL access, telemetry off; one thread for
torch and BLAS in every test; in-memory pipeline runs and the real data ingested and featurised once per
session; a local HTTP file server; the MIMIC-III ingestion helpers that several modules use.

Test modules import helpers from here (`from tests.conftest import ...`), never from each other."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from ehr_adversarial.reporting.latest import newest_version

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The real data: EHR_SHARED_DATA if set, else ../shared/data beside the repository, else what
# `kedro run` downloaded into data/01_raw on a user's machine.
SHARED_DATA = Path(os.environ.get("EHR_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()


def _data_dir(name: str) -> Path:
    shared = SHARED_DATA / name
    downloaded = PROJECT_ROOT / "data" / "01_raw" / name
    return shared if shared.exists() or not downloaded.exists() else downloaded


PHYSIONET2012_DIR = _data_dir("physionet2012")
MIMIC3_DEMO_DIR = _data_dir("mimic3_demo")

os.environ["KEDRO_DISABLE_TELEMETRY"] = "1"
# Point the project's configuration at the real data in place.
os.environ.setdefault("EHR_PHYSIONET2012_DIR", str(PHYSIONET2012_DIR))
os.environ.setdefault("EHR_MIMIC3_DIR", str(MIMIC3_DEMO_DIR))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_DSN = os.environ.get("EHR_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"real data not found at {path}; set EHR_SHARED_DATA to the folder holding physionet2012/ and mimic3_demo/"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def physionet2012_dir() -> Path:
    """../shared/data/physionet2012 (set-a, set-b, outcomes)."""
    return _require(PHYSIONET2012_DIR)


@pytest.fixture(scope="session")
def mimic3_demo_dir() -> Path:
    """../shared/data/mimic3_demo (26 tables as .csv.gz)."""
    return _require(MIMIC3_DEMO_DIR)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """A libpq DSN of the PostgreSQL server; under CI=true an unreachable server fails the test."""
    import psycopg2

    try:
        psycopg2.connect(PG_DSN, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        message = f"PostgreSQL not reachable at {PG_DSN!r}: {str(exc).strip()}"
        if IN_CI:
            pytest.fail(message + " (CI=true: the PostgreSQL tests must run)")
        pytest.skip(message)
    return PG_DSN


@pytest.fixture(scope="session", autouse=True)
def single_thread() -> Iterator[None]:
    """One thread for torch and for the OpenMP/BLAS pools (scikit-learn's gradient boosting), in every test.

    The tests' small arrays gain little from threads, and on a busy shared CPU the threads'
    spin-waits make each step up to 100× slower (a 3-fold gradient-boosting discriminator: 49 s
    instead of 3 s)."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------ in-memory pipeline runs


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so a test can read every dataset afterwards."""

    def _release(self) -> None:
        pass


def physionet2012_record_file(physionet2012_dir: Path, record_id: int, set_name: str = "b") -> bytes:
    """One record file of the real data, as PhysioNet publishes it (`set-<x>/<RecordID>.txt`)."""
    import tarfile

    with tarfile.open(physionet2012_dir / f"set-{set_name}.tar.gz") as archive:
        return archive.extractfile(f"set-{set_name}/{record_id}.txt").read()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def project_config(key: str, env: str | None = None) -> dict:
    """The project's `key` configuration (parameters, catalog, globals) of run environment `env`
    (None: the default), resolved as `kedro run` sees it."""
    from ehr_adversarial import settings

    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(PROJECT_ROOT / "conf"), env=env,
                                          **settings.CONFIG_LOADER_ARGS)
    return loader[key]


def project_parameters() -> dict:
    """The project's parameters (conf/), as `kedro run` sees them."""
    return project_config("parameters")


def run_in_memory(pipe: Pipeline, parameters: dict, datasets: Mapping[str, Any] | None = None) -> DataCatalog:
    """Run `pipe` with `parameters`; every dataset is a KeptMemoryDataset unless `datasets` gives it
    (a dataset, or data for a MemoryDataset)."""
    catalog = DataCatalog()
    for name in pipe.datasets():
        if name.startswith("params:"):
            value = parameters
            for key in name.removeprefix("params:").split("."):
                value = value[key]
            catalog[name] = value
        else:
            catalog[name] = KeptMemoryDataset(copy_mode="assign")
    for name, dataset in (datasets or {}).items():
        catalog[name] = dataset
    SequentialRunner().run(pipe, catalog)
    return catalog


def run_after(upstream: DataCatalog, pipe: Pipeline, parameters: dict) -> DataCatalog:
    """Run `pipe` on the datasets of an earlier in-memory run; the result also holds those datasets.

    They are shared, not copied: the pipelines' nodes must not change their inputs in place."""
    shared = {name: upstream.get(name) for name in upstream.keys() if not name.startswith("params:")}
    return run_in_memory(pipe, parameters, shared)


def _ingest_and_featurise(source: str, datasets: Mapping[str, Any] | None = None) -> DataCatalog:
    from ehr_adversarial.pipeline_registry import STUDIES, stage_pipelines

    stages = stage_pipelines(source, STUDIES[source])
    return run_in_memory(stages["ingestion"] + stages["features"], project_parameters(), datasets)


@pytest.fixture(scope="session")
def physionet2012_features(physionet2012_dir: Path) -> DataCatalog:
    """Ingestion + features on the real PhysioNet 2012 records with the project's parameters, in memory.

    Built once per session and shared by every module: read from it, never change what it holds."""
    return _ingest_and_featurise("physionet2012")


@pytest.fixture(scope="session")
def mimic3_features(mimic3_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DataCatalog:
    """Ingestion + features on the MIMIC-III demo with the project's parameters, in memory (DuckDB in a
    temporary folder). Built once per session and shared: read from it, never change what it holds."""
    from ehr_adversarial.datasets.database import DatabaseDataset

    database = DatabaseDataset(engine="duckdb", filepath=str(tmp_path_factory.mktemp("mimic3") / "mimic3.duckdb"))
    return _ingest_and_featurise("mimic3", {"ingestion.database": database})


# ------------------------------------------------------------------------ KedroSession runs in a project copy


def project_copy(root: Path) -> Path:
    """The project's configuration in `root`, bootstrapped, so that a KedroSession run writes its data there
    (the package itself is installed)."""
    from kedro.framework.startup import bootstrap_project

    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    (root / "logs").mkdir()
    bootstrap_project(root)
    return root


def latest_version(root: Path, relative: str) -> Path:
    """The newest version of the versioned dataset file `relative` under `root`."""
    return newest_version(root / relative)


# ------------------------------------------------------------------------ a local HTTP file server


@dataclass
class FileServer:
    """A tiny HTTP server for tests: GET with Range support, a log of requests, fault switches."""

    files: dict[str, Path]
    requests: list[dict] = field(default_factory=list)
    honour_range: bool = True
    # Send only this many body bytes of the next response, then close (a dropped connection).
    cut_next_after: int | None = None
    url: str = ""

    def add(self, name: str, path: Path) -> None:
        self.files[name] = path


def _handler(server_state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            range_header = self.headers.get("Range")
            record = {"name": name, "range": range_header, "status": None, "body_bytes": 0}
            server_state.requests.append(record)
            path = server_state.files.get(name)
            if path is None:
                record["status"] = 404
                self.send_error(404)
                return
            data = path.read_bytes()
            start, status = 0, 200
            if range_header and server_state.honour_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                if start >= len(data):
                    record["status"] = 416
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            body = data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if server_state.cut_next_after is not None:
                body, server_state.cut_next_after = body[: server_state.cut_next_after], None
                self.close_connection = True
            self.wfile.write(body)
            record.update(status=status, body_bytes=len(body))

    return Handler


@pytest.fixture(scope="session")
def physionet2012_sha256(physionet2012_dir: Path) -> dict[str, str]:
    """{file name: sha256} of the real PhysioNet 2012 files, hashed once per session."""
    from ehr_adversarial.sources.checksums import sha256_of

    return {path.name: sha256_of(path) for path in sorted(physionet2012_dir.iterdir()) if path.is_file()}


@pytest.fixture
def file_server(physionet2012_dir: Path, physionet2012_sha256: dict[str, str], tmp_path: Path) -> Iterator[FileServer]:
    """Serves the real PhysioNet 2012 files plus a SHA256SUMS.txt listing the true hashes."""
    files = {path.name: path for path in physionet2012_dir.iterdir() if path.is_file()}
    sums = tmp_path / "served" / "SHA256SUMS.txt"
    sums.parent.mkdir()
    sums.write_text("".join(f"{physionet2012_sha256[name]}  {name}\n" for name in sorted(files)))
    state = FileServer(files={**files, "SHA256SUMS.txt": sums})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# ------------------------------------------------------------------------ MIMIC-III ingestion helpers

MIMIC3_CORE_TABLES = ["PATIENTS", "ADMISSIONS", "ICUSTAYS", "CHARTEVENTS", "LABEVENTS", "D_ITEMS", "D_LABITEMS",
                      "DIAGNOSES_ICD", "D_ICD_DIAGNOSES"]
_database_numbers = itertools.count()


def mimic3_project_params(csv_dir: Path) -> dict:
    """`ingestion.mimic3` as the project's configuration resolves it for env mimic3_demo."""
    from ehr_adversarial.config import ProjectConfigLoader
    from ehr_adversarial.settings import CONFIG_LOADER_ARGS

    loader = ProjectConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), env="mimic3_demo", **CONFIG_LOADER_ARGS)
    params = loader["parameters"]["ingestion"]["mimic3"]
    return {**params, "csv_dir": str(csv_dir)}


def readme_row_counts(demo_dir: Path) -> dict[str, int]:
    """{TABLE: rows} from the table in the demo folder's README.md."""
    rows = re.findall(r"^\| ([A-Z_]+) \| ([\d,]+) \|", (demo_dir / "README.md").read_text(), re.M)
    return {table: int(count.replace(",", "")) for table, count in rows}


def run_mimic3_ingestion_nodes(database, params: dict) -> dict:
    """Every step of the MIMIC-III ingestion, in pipeline order; returns their outputs."""
    from ehr_adversarial.sources import mimic3

    manifest, load_summary = mimic3.load_mimic3_tables(database, params)
    items = mimic3.check_feature_items(database, load_summary, params)
    cohort = mimic3.build_cohort(database, load_summary, params)
    timeseries, rejected = mimic3.extract_measurements(database, cohort, items)
    diagnoses = mimic3.extract_diagnoses(database, load_summary)
    return {
        "raw_manifest": manifest,
        "load_summary": load_summary,
        "feature_items": items,
        "cohort": cohort,
        "timeseries": timeseries,
        "rejected_rows": rejected,
        "static": mimic3.build_static(cohort),
        "diagnoses": diagnoses,
        "ingestion_summary": mimic3.summarise_ingestion(load_summary, cohort, items, timeseries, rejected, diagnoses,
                                                        params),
    }


def create_postgres_database(dsn: str):
    """A new, empty database on the test server, unique to this process."""
    from ehr_adversarial.sources.database import PostgresDatabase

    admin = PostgresDatabase.from_dsn(dsn)
    name = f"ehr_adversarial_test_{os.getpid()}_{next(_database_numbers)}"
    admin.drop_database(name)
    return admin.create_database(name)


def drop_postgres_database(dsn: str, database) -> None:
    from ehr_adversarial.sources.database import PostgresDatabase

    PostgresDatabase.from_dsn(dsn).drop_database(database.dbname)


@pytest.fixture(scope="session")
def mimic3_demo_params(mimic3_demo_dir: Path) -> dict:
    """`ingestion.mimic3` of env mimic3_demo, reading the real demo."""
    return mimic3_project_params(mimic3_demo_dir)


@pytest.fixture(scope="session")
def mimic3_duckdb_demo(tmp_path_factory: pytest.TempPathFactory, mimic3_demo_params: dict) -> dict:
    """The MIMIC-III ingestion steps on the demo in a fresh DuckDB file: the database and every output.

    Built once per session and shared (tests/pipelines/test_ingestion_mimic3.py, tests/test_postgres.py):
    read from it, never change what it holds."""
    from ehr_adversarial.sources.database import DuckDBDatabase

    database = DuckDBDatabase(str(tmp_path_factory.mktemp("duckdb") / "demo.duckdb"))
    return {"database": database, **run_mimic3_ingestion_nodes(database, mimic3_demo_params)}


def synthcity_reference() -> tuple[dict, dict]:
    """The seeded fixture of tests/data/synthcity_reference.py and synthcity's values on it (the reference for the
    sample-level fidelity and privacy metrics)."""
    import importlib.util
    import json

    data = Path(__file__).parent / "data"
    spec = importlib.util.spec_from_file_location("synthcity_reference", data / "synthcity_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fixture(), json.loads((data / "synthcity_reference.json").read_text())
