"""Shared test fixtures: real data roots, PostgreSQL access, telemetry off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
