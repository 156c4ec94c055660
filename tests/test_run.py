"""The project as a whole: pipeline registry, environments, and versioned runs through KedroSession."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from ehr_adversarial import pipeline_registry

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The project's configuration in a fresh folder, so a run writes its data there."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "src").mkdir()  # the package itself is installed
    bootstrap_project(tmp_path)
    return tmp_path


def test_registry_has_every_stage_per_source_and_plain_names_follow_the_source():
    try:
        pipeline_registry.set_active_source("mimic3")
        registry = pipeline_registry.register_pipelines()
        assert registry["ingestion"] is registry["mimic3.ingestion"]
        pipeline_registry.set_active_source("physionet2012")
        registry = pipeline_registry.register_pipelines()
        assert registry["ingestion"] is registry["physionet2012.ingestion"]
        assert {"physionet2012.ingestion", "mimic3.ingestion"} <= set(registry)
        assert all(node.namespace.startswith("physionet2012") for node in registry["ingestion"].nodes)
    finally:
        pipeline_registry.set_active_source(pipeline_registry.DEFAULT_SOURCE)


def test_unknown_source_is_a_clear_error():
    with pytest.raises(ValueError, match="params:source is 'mimic4'"):
        pipeline_registry.set_active_source("mimic4")


def _versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_ingestion_run_twice_keeps_both_versions(project_copy: Path, physionet2012_dir: Path):
    versioned = project_copy / "data" / "02_intermediate" / "physionet2012" / "timeseries.parquet"
    with KedroSession.create(project_path=project_copy, env="physionet2012") as session:
        session.run(pipeline_names=["ingestion"])
    first = _versions(versioned)
    first_bytes = {v: (versioned / v / "timeseries.parquet").read_bytes() for v in first}
    with KedroSession.create(project_path=project_copy, env="physionet2012") as session:
        session.run(pipeline_names=["ingestion"])
    second = _versions(versioned)
    assert len(first) == 1 and len(second) == 2 and set(first) < set(second)
    # The earlier artifact is untouched.
    assert (versioned / first[0] / "timeseries.parquet").read_bytes() == first_bytes[first[0]]


@pytest.mark.slow
def test_mimic3_demo_env_runs_the_mimic_ingestion(project_copy: Path, mimic3_demo_dir: Path):
    with KedroSession.create(project_path=project_copy, env="mimic3_demo") as session:
        session.run(pipeline_names=["ingestion"])
    assert _versions(project_copy / "data" / "02_intermediate" / "mimic3" / "timeseries.parquet")
    assert not (project_copy / "data" / "02_intermediate" / "physionet2012").exists()
