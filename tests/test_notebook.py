"""notebooks/explore.ipynb runs top to bottom, as nbclient executes it, in a project copy that holds a small
but real run on PhysioNet 2012 (ingestion → features → a briefly trained DSSM → a short attack), and what it
shows agrees with the model and the run: the record's score, its hours, the attack's δ and the ranking."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from tests.conftest import PROJECT_ROOT, project_copy

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore.ipynb"
MODEL = "dssm"  # the notebook's default: the model whose forward takes x, mask, delta and static
# One epoch, one CV fold: the test checks the notebook on real data, not the model's quality.
SHORT_TRAINING = {"max_epochs": 1, "patience": 1, "batch_size": 256,
                  "cv": {"max_folds": 1, "max_epochs": 1, "grid": [{}]}}
# A few records, so that the run has a ranking for the notebook to show.
SHORT_ATTACK = {"n_records": 8, "lambdas": {"low": 5e-4, "high": 1.5e-1, "count": 9}, "max_iterations": 60}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory, physionet2012_dir: Path) -> Path:
    """A project copy after ingestion, features, the DSSM's training and its attack on the real records."""
    from ehr_adversarial.session import StudySession

    root = project_copy(tmp_path_factory.mktemp("notebook_project"))
    runtime = {"training": {"physionet2012": {MODEL: SHORT_TRAINING, "evaluation": {"n_bootstrap": 20}}},
               "attack": {"physionet2012": SHORT_ATTACK}}
    with StudySession.create(project_path=root, env="physionet2012", runtime_params=runtime) as session:
        session.run(pipeline_names=["ingestion", "features", "training", "attack"],
                    namespaces=["ingestion", "features", f"training.{MODEL}", f"attack.{MODEL}"])
    (root / "notebooks").mkdir()
    return root


def _parameters_cell(notebook: nbformat.NotebookNode) -> int:
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged `parameters`"
    return tagged[0]


# The notebook's results, read back by the test (the last cell it gets).
REPORT = """
import json
np.save({delta_path!r}, delta)
print("REPORT " + json.dumps({{
    "record_id": record_id, "row": row, "label": label, "predicted": predicted, "p_death": p_death,
    "p_adversarial": p_adversarial, "flipped": flipped, "l0": norms["l0"], "inputs": list(model.inputs),
    "hours_axes": [ax.get_ylabel().split(chr(10))[0] for ax in hours_figure.axes],
    "heatmap": list(heatmap_figure.axes[0].images[0].get_array().shape),
    "ranking": None if top is None else top.to_dict(),
}}))
"""


@pytest.fixture(scope="module")
def executed(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The notebook executed in the copy's notebooks/ folder (as `kedro jupyter lab` starts it)."""
    out = tmp_path_factory.mktemp("notebook_out")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Papermill-style: a cell after the `parameters` cell sets the run's environment.
    notebook.cells.insert(_parameters_cell(notebook) + 1, new_code_cell('ENV = "physionet2012"'))
    notebook.cells.append(new_code_cell(REPORT.format(delta_path=str(out / "delta.npy"))))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # the kernel: one thread, as the tests' own process
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(small_run / "notebooks")}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    lines = [line for output in outputs if output.get("name") == "stdout" for line in output.text.splitlines()]
    report = json.loads(next(line for line in lines if line.startswith("REPORT ")).removeprefix("REPORT "))
    return {"notebook": notebook, "report": report, "text": "\n".join(lines),
            "delta": np.load(out / "delta.npy")}


@pytest.fixture(scope="module")
def catalog(small_run: Path):
    """The copy's catalog, to check the notebook against what the run wrote."""
    from ehr_adversarial.session import StudySession

    with StudySession.create(project_path=small_run, env="physionet2012") as session:
        return session.load_context().catalog


def _images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.outputs)


def test_the_committed_notebook_has_no_outputs_and_one_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    _parameters_cell(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert any("model_inputs" in cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert any("Sun et al" in cell.source for cell in notebook.cells if cell.cell_type == "markdown")


@pytest.mark.slow
def test_the_notebook_scores_a_record_as_the_training_run_did(executed: dict, catalog):
    report = executed["report"]
    test = catalog.load("features.full.model_input_test")
    # DSSM's forward takes all four tensors; the notebook called it through model_inputs.
    assert report["inputs"] == ["x", "mask", "delta", "static"]
    assert 0.0 <= report["p_death"] <= 1.0
    row = report["row"]
    assert (report["record_id"], report["label"]) == (int(test["record_id"][row]), int(test["y"][row]))
    # Without RECORD_ID the notebook takes a death that the model classifies correctly.
    assert report["label"] == 1 and report["predicted"] == 1
    saved = catalog.load(f"training.{MODEL}.test_predictions").set_index("record_id").loc[report["record_id"], "y_prob"]
    assert report["p_death"] == pytest.approx(saved, rel=1e-5, abs=1e-7)
    assert f"record {report['record_id']}: label 1" in executed["text"]

    # The hours plot: one panel per variable asked for, drawn as an image.
    assert report["hours_axes"] == ["HR", "Creatinine", "Na", "Lactate"]
    hours_cell = next(c for c in executed["notebook"].cells if "hours_figure, axes" in c.source)
    assert _images(hours_cell) == 1


@pytest.mark.slow
def test_the_notebooks_attack_and_heatmap_agree_with_the_model(executed: dict, catalog):
    from ehr_adversarial.attack import logit_margin
    from ehr_adversarial.models import model_inputs
    from ehr_adversarial.training.torch_loop import death_probability, to_tensors

    report, delta = executed["report"], executed["delta"]
    model = catalog.load(f"training.{MODEL}.model").eval()
    test = catalog.load("features.full.model_input_test")
    assert delta.shape == (48, len(test["X"][0][0]))
    # Re-score the perturbed record here: the notebook's outcome is the model's.
    row = report["row"]
    record = to_tensors({name: value[row : row + 1] for name, value in test.items()}, torch.device("cpu"))
    record["x"] = record["x"] + torch.as_tensor(delta)[None]
    with torch.no_grad():
        logits = model(*model_inputs(model, record))
    flipped = bool(logit_margin(logits, record["y"])[0] < 0)
    assert report["flipped"] == flipped
    assert report["p_adversarial"] == pytest.approx(
        float(death_probability(logits, model.config["probability_shift"], model.config.get("calibration"))[0]),
        rel=1e-5, abs=1e-7)
    assert report["l0"] == int(np.count_nonzero(delta))
    if flipped:
        assert report["l0"] > 0 and report["p_adversarial"] < report["p_death"]  # 1→0: towards survival
        assert "the attack flips the record (1→0)" in executed["text"]
    else:
        assert "the attack does not flip the record" in executed["text"]

    # The heatmap: features × hours of |δ|, drawn as an image.
    assert report["heatmap"] == [delta.shape[1], 48]
    heatmap_cell = next(c for c in executed["notebook"].cells if "heatmap_figure, ax" in c.source)
    assert _images(heatmap_cell) == 1


@pytest.mark.slow
def test_the_notebook_shows_the_runs_feature_ranking(executed: dict, catalog):
    ranking = catalog.load(f"attack.{MODEL}.cumulative_susceptibility")
    shown = executed["report"]["ranking"]
    assert shown is not None and not ranking.empty
    assert sorted(shown) == sorted(ranking["direction"].unique())
    for direction, by_position in shown.items():
        expected = ranking[ranking["direction"] == direction].sort_values(["rank", "feature"])["feature"].head(5)
        assert [feature for _, feature in sorted((int(p), f) for p, f in by_position.items() if isinstance(f, str))] \
            == expected.to_list()
