"""The registry as users see it: a static graph (whatever `--params` say), stage namespaces and layers in
kedro-viz, the README's diagram current, and plain pipeline names resolved to the environment's source."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ehr_adversarial import diagram
from ehr_adversarial.pipeline_registry import (
    DEFAULT_SOURCE,
    MAIN_STUDY,
    STAGES,
    STUDIES,
    register_pipelines,
)
from ehr_adversarial.session import source_pipeline_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
# A parameter that once shaped the graph (the synthetic attack's baseline seeds).
PARAMS = {"synthetic_attack": {"physionet2012": {"top_k": 3}}}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's configuration in a fresh folder (kedro-viz writes `build/` and `.viz` there)."""
    path = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("local"))
    (path / "conf" / "local").mkdir()
    (path / "src").mkdir()  # the package itself is installed
    return path


def _run(command: list[str], cwd: Path) -> str:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


_VIZ_WITH_PARAMS = """
import sys, fsspec
from pathlib import Path
from kedro_viz.server import load_and_populate_data
from kedro_viz.api.rest.responses.save_responses import save_api_responses_to_fs
load_and_populate_data(Path.cwd(), extra_params={extra!r})
save_api_responses_to_fs(sys.argv[1], fsspec.filesystem("file"), False)
"""


@pytest.fixture(scope="module")
def viz_builds(project: Path) -> dict[str, dict]:
    """kedro-viz's JSON of every registered pipeline: from `kedro viz build`, and from kedro-viz's own loader
    with extra run parameters (what `kedro viz run --params` passes)."""
    _run([KEDRO, "viz", "build"], project)
    _run([sys.executable, "-c", _VIZ_WITH_PARAMS.format(extra=PARAMS), str(project / "with_params")], project)

    def read(folder: Path) -> dict[str, dict]:
        return {path.name: json.loads(path.read_text()) for path in (folder / "api" / "pipelines").iterdir()}

    return {"plain": read(project / "build"), "with_params": read(project / "with_params")}


def _graph(response: dict) -> tuple[set, set]:
    nodes = {(n["type"], n["name"]) for n in response["nodes"]}
    edges = {(e["source"], e["target"]) for e in response["edges"]}
    return nodes, edges


def test_viz_shows_the_same_pipelines_and_nodes_whatever_the_params(viz_builds: dict[str, dict]):
    plain, with_params = viz_builds["plain"], viz_builds["with_params"]
    assert set(plain) == set(with_params) == set(register_pipelines())
    for name in plain:
        assert _graph(plain[name]) == _graph(with_params[name]), name


def test_viz_groups_the_default_pipeline_by_stage_with_layers(viz_builds: dict[str, dict]):
    main = viz_builds["plain"]["__default__"]
    tree = main["modular_pipelines"]
    top = {child["id"] for child in tree["__root__"]["children"] if child["type"] == "modularPipeline"}
    assert top == set(MAIN_STUDY)
    # Models nested inside training and attack, feature sets inside features.
    assert {"training.dssm", "training.lstm_sun2018", "training.gbm", "training.logreg"} <= set(tree)
    assert {"attack.dssm", "attack.lstm_sun2018", "features.full", "features.sun2018"} <= set(tree)
    # Every dataset a namespaced node writes belongs to that node's namespace (kedro-viz draws it inside the
    # expanded pipeline; a collapsed pipeline shows the datasets it hands on or finishes with at its edge).
    nodes = {n["id"]: n for n in main["nodes"]}
    written = [(nodes[e["source"]], nodes[e["target"]]) for e in main["edges"] if nodes[e["source"]]["type"] == "task"]
    assert written
    for task, dataset in written:
        assert task["modular_pipelines"], f"node {task['full_name']} is outside every stage"
        namespace = task["full_name"].rsplit(".", 1)[0]
        assert namespace in (dataset["modular_pipelines"] or []), (
            f"{dataset['name']} (written by {task['full_name']}) is not in {namespace}: {dataset['modular_pipelines']}")
        assert dataset["name"].startswith(f"{namespace}."), f"{dataset['name']} is not named inside {namespace}"
    # Layers from the catalog's layer split.
    assert main["layers"] == ["raw", "intermediate", "feature", "model_input", "models", "model_output", "reporting"]


def test_registry_list_names_every_stage_of_every_source(project: Path):
    listed = {line.removeprefix("- ").strip() for line in _run([KEDRO, "registry", "list"], project).splitlines()
              if line.startswith("- ")}
    expected = {"__default__", *STAGES, "synthetic"}
    expected |= {f"{source}.{name}" for source in STUDIES for name in (*STAGES, "synthetic")} | set(STUDIES)
    expected |= {f"{source}.ehrdiff_codes" for source, study in STUDIES.items() if study.ehrdiff_codes}
    expected |= {f"{source}.robust" for source, study in STUDIES.items() if study.robust_models}
    expected |= {"robust"} if STUDIES[DEFAULT_SOURCE].robust_models else set()
    assert listed == expected


def test_plain_names_run_on_the_environments_source():
    assert source_pipeline_name("ingestion", "mimic3") == "mimic3.ingestion"
    assert source_pipeline_name("__default__", "mimic3") == "mimic3"
    assert source_pipeline_name("synthetic", "physionet2012") == "physionet2012.synthetic"
    assert source_pipeline_name("mimic3.features", "mimic3") == "mimic3.features"
    with pytest.raises(ValueError, match="runs on physionet2012, but this environment's data source is mimic3"):
        source_pipeline_name("physionet2012.ingestion", "mimic3")
    with pytest.raises(ValueError, match="runs on mimic3"):
        source_pipeline_name("mimic3", "physionet2012")


def test_every_node_is_tagged_with_its_source():
    registry = register_pipelines()
    for source in STUDIES:
        assert all(node.tags == {source} for node in registry[f"{source}.synthetic"].nodes + registry[source].nodes)


def test_readme_shows_the_current_pipeline():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert diagram.readme_block(register_pipelines()["__default__"]) in readme, (
        "README.md's pipeline diagram is out of date: run `python -m ehr_adversarial.diagram --write README.md`")


@pytest.mark.parametrize(("change", "message"), [
    ({"generators": {"gan": "full"}}, "unknown generator 'gan'"),
    ({"real_baseline_seeds": (1, 1)}, "repeats a seed"),
    ({"synthetic_attack_models": ("gbm",)}, "only torch models can be attacked"),
    ({"torch_models": {"dssm": "hourly"}}, "model 'dssm' reads feature set 'hourly', which is not in feature_sets"),
    ({"code_generators": frozenset({"kmimic2"})}, "code_generators names 'kmimic2'"),
])
def test_an_inconsistent_study_is_refused(change: dict, message: str):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(STUDIES["physionet2012"], **change)


_NODE_DIGEST = """
import hashlib
from ehr_adversarial.pipeline_registry import register_pipelines
for name, pipe in sorted(register_pipelines().items()):
    print(name, hashlib.md5("|".join(str(n) for n in pipe.nodes).encode()).hexdigest())
"""


def test_every_pipeline_is_the_same_whatever_the_hash_seed():
    """Node inputs never follow a set's iteration order, so kedro-viz's node ids (hashes of the nodes) and
    every run's graph are the same in every interpreter."""
    digests = []
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", _NODE_DIGEST], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        digests.append(done.stdout)
    assert digests[0].count("\n") == len(register_pipelines())
    assert digests[0] == digests[1] == digests[2]
