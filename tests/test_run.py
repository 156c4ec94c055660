"""The project as a whole: the session runs plain pipeline names on the environment's data source, and
versioned runs through the project's session class."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.framework.hooks import hook_impl
from kedro.framework.project import settings

from ehr_adversarial.pipeline_registry import STAGES, STUDIES, register_pipelines
from ehr_adversarial.session import StudySession, source_pipeline_name
from tests.conftest import project_copy as copy_project


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The project's configuration in a fresh folder, so a run writes its data there."""
    return copy_project(tmp_path)


def test_plain_names_follow_the_source_and_other_sources_are_refused():
    registry = register_pipelines()
    for source in STUDIES:
        assert source_pipeline_name("__default__", source) == source
        for stage in (*STAGES, "synthetic"):
            name = source_pipeline_name(stage, source)
            assert name == f"{source}.{stage}" and name in registry
            assert all(source in node.tags for node in registry[name].nodes)
        # a name of the environment's own source passes unchanged
        assert source_pipeline_name(f"{source}.attack", source) == f"{source}.attack"
    with pytest.raises(ValueError, match=r"pipeline 'physionet2012.ingestion' runs on physionet2012, but this "
                                         r"environment's data source is mimic3.*--env physionet2012.*'ingestion'"):
        source_pipeline_name("physionet2012.ingestion", "mimic3")
    with pytest.raises(ValueError, match=r"pipeline 'mimic3' runs on mimic3.*--env mimic3_demo.*'__default__'"):
        source_pipeline_name("mimic3", "physionet2012")
    # without a source prefix the default source's pipelines are registered under the plain names
    assert registry["ingestion"] is registry["physionet2012.ingestion"]
    assert registry["__default__"] is registry["physionet2012"]


def test_the_project_session_class_maps_plain_names(project_copy: Path):
    # bootstrap_project (in the fixture) reads the project's settings.py, as `kedro run` does
    assert settings.SESSION_CLASS is StudySession


def test_the_session_refuses_another_sources_pipeline_before_running(project_copy: Path):
    versioned = project_copy / "data" / "02_intermediate"
    with settings.SESSION_CLASS.create(project_path=project_copy, env="mimic3_demo") as session:
        assert session.environment_source() == "mimic3"
        with pytest.raises(ValueError, match="runs on physionet2012, but this environment's data source is mimic3"):
            session.run(pipeline_names=["physionet2012.ingestion"])
    assert not versioned.exists()


def test_an_unknown_source_in_globals_is_a_clear_error(project_copy: Path):
    (project_copy / "conf" / "local" / "globals.yml").write_text("source: mimic4\n")
    with settings.SESSION_CLASS.create(project_path=project_copy) as session:
        with pytest.raises(ValueError, match=r"`source` in conf/local/globals.yml \(or conf/base/globals.yml\) is 'mimic4'; it must be one of "
                                             r"physionet2012, mimic3"):
            session.run(pipeline_names=["ingestion"])


def test_a_stage_without_what_earlier_runs_saved_stops_before_any_node(project_copy: Path):
    # `robust` trains for half an hour before it reads the default run's attack: the check comes first
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012") as session:
        with pytest.raises(ValueError, match="finds no version of") as error:
            session.run(pipeline_names=["robust"])
    message = str(error.value)
    for name, stage in (("attack.lstm_pooled.records", "attack"), ("training.lstm_pooled.metrics", "training"),
                        ("features.sun2018.model_input_train", "features")):
        assert f"{name} (" in message and f"written by the `{stage}` stage" in message
    assert "params:" not in message and "--load-versions" in message
    assert not _version_folders(project_copy)


def _versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_ingestion_run_twice_keeps_both_versions(project_copy: Path, physionet2012_dir: Path):
    versioned = project_copy / "data" / "02_intermediate" / "physionet2012" / "ingestion" / "timeseries.parquet"
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012") as session:
        session.run(pipeline_names=["ingestion"])
    first = _versions(versioned)
    first_bytes = {v: (versioned / v / "timeseries.parquet").read_bytes() for v in first}
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012") as session:
        session.run(pipeline_names=["ingestion"])
    second = _versions(versioned)
    assert len(first) == 1 and len(second) == 2 and set(first) < set(second)
    # The earlier artifact is untouched.
    assert (versioned / first[0] / "timeseries.parquet").read_bytes() == first_bytes[first[0]]


@pytest.mark.slow
def test_mimic3_demo_env_runs_the_mimic_ingestion(project_copy: Path, mimic3_demo_dir: Path):
    with settings.SESSION_CLASS.create(project_path=project_copy, env="mimic3_demo") as session:
        session.run(pipeline_names=["ingestion"])
    assert _versions(project_copy / "data" / "02_intermediate" / "mimic3" / "ingestion" / "timeseries.parquet")
    assert (project_copy / "data" / "01_raw" / "mimic3" / "mimic3.duckdb").exists()
    assert not (project_copy / "data" / "02_intermediate" / "physionet2012").exists()


# ------------------------------------------------------------------ a failed run leaves no version behind


def _version_folders(root: Path) -> set[Path]:
    """Every version folder (`<dataset file>/<run id>/`) under the copy's data/."""
    return {p.parent.relative_to(root) for p in (root / "data").rglob("*") if p.is_file() and p.parent.name[:4].isdigit()}


def _raw_copy(physionet2012_dir: Path, folder: Path) -> Path:
    """A raw folder that links to the real PhysioNet 2012 files, to be spoiled one file at a time."""
    folder.mkdir()
    for path in physionet2012_dir.iterdir():
        (folder / path.name).symlink_to(path)
    return folder


class _InterruptAt:
    """A hook that presses Ctrl-C just before the node `name` runs."""

    def __init__(self, name: str):
        self.name = name

    @hook_impl
    def before_node_run(self, node):
        if node.name == self.name:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_failed_ingestion_saves_nothing_and_the_last_good_run_stays_latest(
        project_copy: Path, physionet2012_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012") as session:
        session.run(pipeline_names=["ingestion"])
    good = _version_folders(project_copy)
    assert any(p.parts[-2] == "raw_manifest.json" for p in good)

    # A truncated archive: the manifest node runs and saves, then reading the archive fails.
    raw = _raw_copy(physionet2012_dir, tmp_path / "truncated")
    (raw / "set-a.tar.gz").unlink()
    (raw / "set-a.tar.gz").write_bytes((physionet2012_dir / "set-a.tar.gz").read_bytes()[:1_000_000])
    monkeypatch.setenv("EHR_PHYSIONET2012_DIR", str(raw))
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012") as session:
        with pytest.raises(ValueError, match="set-a.tar.gz.*truncated or corrupt"):
            session.run(pipeline_names=["ingestion"])
    assert _version_folders(project_copy) == good

    # A bad value in the outcomes (its pinned checksum lifted so that the value is what fails).
    raw = _raw_copy(physionet2012_dir, tmp_path / "bad_value")
    lines = (physionet2012_dir / "Outcomes-a.txt").read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",7"  # In-hospital_death must be 0 or 1
    (raw / "Outcomes-a.txt").unlink()
    (raw / "Outcomes-a.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("EHR_PHYSIONET2012_DIR", str(raw))
    runtime = {"ingestion": {"physionet2012": {"pinned_sha256": {}}}}
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012",
                                       runtime_params=runtime) as session:
        with pytest.raises(ValueError, match="Outcomes-a.txt"):
            session.run(pipeline_names=["ingestion"])
    assert _version_folders(project_copy) == good


@pytest.mark.slow
def test_an_interrupted_run_removes_what_it_saved(project_copy: Path, physionet2012_dir: Path):
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012") as session:
        session._hook_manager.register(_InterruptAt("ingestion.build_physionet2012_static"))
        with pytest.raises(KeyboardInterrupt):
            session.run(pipeline_names=["ingestion"])
    assert _version_folders(project_copy) == set()
    assert not list((project_copy / "data").rglob("*.partial"))


class _FailAfterRun:
    """A hook that fails once every node has run, as a failing post-run step would."""

    @hook_impl
    def after_pipeline_run(self):
        raise RuntimeError("post-run step failed")


@pytest.mark.slow
def test_a_failure_after_every_node_ran_keeps_the_runs_versions(project_copy: Path, physionet2012_dir: Path):
    with settings.SESSION_CLASS.create(project_path=project_copy, env="physionet2012") as session:
        session._hook_manager.register(_FailAfterRun())
        with pytest.raises(RuntimeError, match="post-run step failed"):
            session.run(pipeline_names=["ingestion"])
    assert any(p.parts[-2] == "raw_manifest.json" for p in _version_folders(project_copy))
