"""notebooks/explore.ipynb runs top to bottom on the real PhysioNet 2012 data, as a new user runs it after
`kedro run`: a project copy gets ingestion → features → a short training of DSSM → a short attack and
reporting, then nbclient executes the notebook there with a short attack of its own."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from tests.conftest import PROJECT_ROOT, project_copy

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore.ipynb"
ENV = "physionet2012"
MODEL = "dssm"
# Enough for DSSM to score well above chance on set-b (tests/pipelines/test_training.py, SHORT_TRAINING).
SHORT_TRAINING = {
    MODEL: {"max_epochs": 2, "patience": 2, "batch_size": 256, "cv": {"max_folds": 1, "max_epochs": 1, "grid": [{}]}},
    "evaluation": {"n_bootstrap": 50},
}
SHORT_ATTACK = {"n_records": 30, "max_iterations": 60}
NOTEBOOK_SETTINGS = f'ENV = "{ENV}"\nMODEL = "{MODEL}"\nATTACK_OVERRIDES = {{"max_iterations": 100}}'


def _parameters_cell(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged `parameters`; the notebook needs exactly one"
    return tagged[0]


def test_the_committed_notebook_has_a_parameters_cell_and_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    source = nb.cells[_parameters_cell(nb)].source
    for name in ("ENV = None", 'MODEL = "dssm"', "RECORD_INDEX = 0", "ATTACK_OVERRIDES = {}"):
        assert name in source
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.fixture(scope="module")
def default_run_project(tmp_path_factory: pytest.TempPathFactory, physionet2012_dir: Path) -> Path:
    """A project copy holding what the notebook loads: the real features, a briefly trained DSSM, and a short
    attack and report of it (the default run's outputs for that model)."""
    from ehr_adversarial.session import StudySession

    root = project_copy(tmp_path_factory.mktemp("notebook_project"))
    with StudySession.create(project_path=root, env=ENV) as session:
        session.run(pipeline_names=["ingestion", "features"])
    runtime = {"training": {ENV: SHORT_TRAINING}, "attack": {ENV: SHORT_ATTACK}}
    with StudySession.create(project_path=root, env=ENV, runtime_params=runtime) as session:
        session.run(pipeline_names=["training", "attack", "reporting"],
                    namespaces=[f"training.{MODEL}", f"attack.{MODEL}", f"reporting.{MODEL}"])
    return root


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def _cell(nb: nbformat.NotebookNode, snippet: str) -> nbformat.NotebookNode:
    found = [cell for cell in nb.cells if cell.cell_type == "code" and snippet in cell.source]
    assert len(found) == 1, f"{len(found)} code cells contain {snippet!r}"
    return found[0]


def _has_png(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.outputs)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_on_the_default_runs_outputs(
        default_run_project: Path, monkeypatch: pytest.MonkeyPatch):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.insert(_parameters_cell(nb) + 1, new_code_cell(NOTEBOOK_SETTINGS))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one torch thread, as in the tests
    # cwd = the project copy; CellExecutionError (any failing cell) fails the test
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(default_run_project)}}).execute()

    assert f"project {default_run_project}" in _text(_cell(nb, "bootstrap_project(root)"))
    loaded = _text(_cell(nb, 'catalog.load(f"training.{MODEL}.model")'))
    assert "dssm reads feature set 'full': X (4000, 48, 36)" in loaded and "568 deaths among 4000" in loaded
    assert "('x', 'mask', 'delta', 'static')" in loaded

    scored = _text(_cell(nb, "model_inputs(model, one)"))
    match = re.search(r"record (\d+) \(test row \d+\): P\(death\) = ([\d.]+), label ([01])", scored)
    assert match, scored
    probability, label = float(match[2]), int(match[3])
    assert 0 <= probability <= 1
    correct = int(re.search(r"(\d+) of 4000 test records are correctly classified", scored)[1])
    assert 4000 * 0.5 < correct < 4000  # a trained model, not a constant one

    assert _has_png(_cell(nb, "most measured variables"))

    attacked = _text(_cell(nb, "l1_attack(model"))
    flip = re.search(r"label flipped: (True|False); L1 of δ = ([\d.]+) over (\d+) cells", attacked)
    assert flip, attacked
    assert flip[1] == "True" and float(flip[2]) > 0 and int(flip[3]) > 0
    before, after = map(float, re.search(r"P\(death\) ([\d.]+) → ([\d.]+) after the attack", attacked).groups())
    assert before == pytest.approx(probability, abs=1e-3)
    assert (after < before) if label == 1 else (after > before)  # pushed across the decision boundary

    heatmap = _cell(nb, "imshow")
    assert _has_png(heatmap)
    assert re.search(r"at hour \d+", _text(heatmap))  # the largest changes in clinical units

    ranking = _text(_cell(nb, "cumulative_susceptibility"))
    assert "# Adversarial susceptibility of `dssm`" in ranking
    assert "cumulative_s" in ranking and "0→1" in ranking and "1→0" in ranking
