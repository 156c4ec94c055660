"""Shared test fixtures: real data roots, PostgreSQL access, telemetry off; in-memory pipeline runs
and the real data ingested and featurised once per session; one thread for small arrays."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

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


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One thread for torch and for the OpenMP/BLAS pools (scikit-learn's gradient boosting).

    The tests' small arrays gain little from threads, and on a busy shared CPU the threads'
    spin-waits make each step up to 100× slower (a 3-fold gradient-boosting discriminator: 49 s
    instead of 3 s). Opt in per module: `pytestmark = pytest.mark.usefixtures("single_thread")`."""
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


def project_parameters() -> dict:
    """The project's parameters (conf/), as `kedro run` sees them."""
    from ehr_adversarial import settings

    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(PROJECT_ROOT / "conf"), **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]


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
    from ehr_adversarial.pipelines.features import create_pipeline as create_features
    from ehr_adversarial.pipelines.ingestion import create_pipeline as create_ingestion

    return run_in_memory(create_ingestion(source=source) + create_features(source=source), project_parameters(), datasets)


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
    return _ingest_and_featurise("mimic3", {"mimic3.database": database})
