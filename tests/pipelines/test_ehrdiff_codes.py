"""EHRDiff on binary code matrices (synthesis.binary_codes, synthetic_evaluation.binary_code_metrics, the
`mimic3.ehrdiff_codes` pipeline): the matrix and its train-only vocabulary, the metrics on hand-made
cases, the pipeline's wiring and catalog, and a short run on the real MIMIC-III demo."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset

from ehr_adversarial.parameters import check_parameters
from ehr_adversarial.pipeline_registry import register_pipelines
from ehr_adversarial.session import source_pipeline_name
from ehr_adversarial.synthesis.binary_codes import build_code_matrix
from ehr_adversarial.synthesis.common import SYNTHETIC_ID_START
from ehr_adversarial.synthetic_evaluation import binary_code_metrics as metrics
from tests.conftest import project_config, project_parameters, run_in_memory

# The MIMIC-III demo, as the project's parameters (seed, holdout 0.2, 3-digit categories) make it.
DEMO_PATIENTS, DEMO_TRAIN, DEMO_CODES = 100, 80, 260


def _diagnoses() -> pd.DataFrame:
    """Patients 1-6 (admissions 11-16); patient 6 alone has category 999."""
    rows = [(1, 11, "4019"), (1, 11, "25000"), (2, 12, "4019"), (3, 13, "42731"), (4, 14, "25001"),
            (5, 15, "4019"), (6, 16, "9999"), (6, 17, "4019")]
    frame = pd.DataFrame(rows, columns=["subject_id", "hadm_id", "icd9_code"])
    return frame.assign(icd9_3digit=frame["icd9_code"].str[:3])


def test_the_vocabulary_comes_from_the_train_rows_only():
    diagnoses = _diagnoses()
    for seed in range(10):
        matrix = build_code_matrix(diagnoses, holdout_fraction=0.5, seed=seed)
        assert matrix["codes"].shape[0] == 6 and list(matrix["record_id"]) == [1, 2, 3, 4, 5, 6]
        train = matrix["record_id"][matrix["split"] == "train"]
        assert len(train) == 3
        expected = sorted(set(diagnoses.loc[diagnoses["subject_id"].isin(train), "icd9_3digit"]))
        assert list(matrix["code_names"]) == expected, seed
        assert matrix["codes"].dtype == np.uint8 and set(np.unique(matrix["codes"])) <= {0, 1}
    # patient 1 has two 250.xx codes: one 3-digit column
    matrix = build_code_matrix(diagnoses, holdout_fraction=1 / 6, seed=0)
    assert matrix["codes"][matrix["record_id"] == 1].sum() == 2


def test_full_codes_admission_rows_and_top_n():
    diagnoses = _diagnoses()
    matrix = build_code_matrix(diagnoses, rows="admissions", codes="full", holdout_fraction=0.25, seed=0)
    assert list(matrix["record_id"]) == [11, 12, 13, 14, 15, 16, 17]
    top = build_code_matrix(diagnoses, codes="full", top_n=1, holdout_fraction=0.2, seed=0)
    assert list(top["code_names"]) == ["4019"]  # the code most train patients have
    with pytest.raises(ValueError, match="rows is 'stays'"):
        build_code_matrix(diagnoses, rows="stays")


def test_identical_real_and_synthetic_rows_score_perfectly():
    rng = np.random.default_rng(0)
    real = (rng.random((200, 30)) < np.linspace(0.02, 0.5, 30)).astype(np.uint8)
    p = metrics.dimension_wise_probability(real)
    assert metrics.prevalence_correlation(p, metrics.dimension_wise_probability(real.copy())) == pytest.approx(1.0)
    assert abs(metrics.code_mmd(real, real.copy())) < 0.01
    assert metrics.code_mmd(real, 1 - real) > 0.2
    privacy = metrics.nearest_neighbour_privacy(real, real[:20], real[50:150])
    assert privacy["synthetic_exact_copy_share"] == 1.0 and privacy["synthetic_nn_hamming_mean"] == 0.0


def test_nearest_hamming_distances():
    reference = np.array([[0, 0, 0, 0], [1, 1, 0, 0]], dtype=np.uint8)
    queries = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(metrics.nearest_hamming(queries, reference, chunk=3), [0, 1, 2, 2])


def test_fidelity_on_a_hand_made_split():
    codes = np.array([[1, 0, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]], dtype=np.uint8)
    matrix = {"codes": codes, "code_names": np.array(["a", "b", "c"]), "record_id": np.arange(5),
              "split": np.array(["train", "train", "train", "holdout", "holdout"])}
    synthetic = {"codes": codes[:3].copy(), "code_names": np.array(["a", "b", "c"])}
    result, table = metrics.code_fidelity(matrix, synthetic)
    assert result["prevalence_r_synthetic_train"] == pytest.approx(1.0)
    # holdout row [1, 0, 0] equals a train row: sparse rows coincide by chance, hence the yardstick
    assert result["synthetic_exact_copy_share"] == 1.0 and result["holdout_exact_match_share"] == 0.5
    assert (result["n_train"], result["n_holdout"], result["n_synthetic"], result["n_codes"]) == (3, 2, 3, 3)
    np.testing.assert_allclose(table["train"], [1.0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(table["holdout"], [1.0, 0.5, 0.5])
    figure = metrics.prevalence_figure(table, result)
    assert figure.axes and "3 train, 2 holdout" in figure.axes[0].get_title()


def test_the_registered_pipeline_and_its_catalog():
    registry = register_pipelines()
    assert "mimic3.ehrdiff_codes" in registry and "physionet2012.ehrdiff_codes" not in registry
    assert source_pipeline_name("ehrdiff_codes", "mimic3") == "mimic3.ehrdiff_codes"
    pipe = registry["mimic3.ehrdiff_codes"]
    assert {n.name for n in pipe.nodes} == {
        "ingestion.load_mimic3_tables", "ingestion.extract_diagnoses",
        *(f"synthesis.ehrdiff_codes.{name}" for name in
          ("build_code_matrix", "train_ehrdiff", "sample_ehrdiff", "evaluate_codes", "plot_prevalence"))}
    assert all(node.tags == {"mimic3"} for node in pipe.nodes)
    catalog = DataCatalog.from_config(project_config("catalog", "mimic3_demo"))
    produced = {name for name in pipe.datasets() if not name.startswith("params:")} - pipe.inputs()
    for name in produced:
        dataset = catalog.get(name)
        assert dataset is not None and not isinstance(dataset, MemoryDataset), name
        assert dataset._version is not None, f"{name} is not versioned"
        if name.startswith("synthesis."):
            assert "/mimic3/synthesis/ehrdiff_codes/" in str(dataset._filepath), (name, dataset._filepath)
    parameters = project_parameters()
    check_parameters(parameters)
    bad = copy.deepcopy(parameters)
    bad["synthesis"]["mimic3"]["ehrdiff_codes"]["matrix"]["codes"] = "2digit"
    with pytest.raises(ValueError, match="codes"):
        check_parameters(bad)


@pytest.mark.slow
def test_ehrdiff_codes_on_the_real_mimic3_demo(mimic3_demo_dir, tmp_path):
    from ehr_adversarial.datasets.database import DatabaseDataset

    parameters = copy.deepcopy(project_parameters())
    block = parameters["synthesis"]["mimic3"]["ehrdiff_codes"]
    block.update(max_steps=3, n_samples=16, hidden_dims=[32, 32], time_dim=16)
    block["sampler"]["num_steps"] = 4
    parameters["device"] = "cpu"
    database = DatabaseDataset(engine="duckdb", filepath=str(tmp_path / "mimic3.duckdb"))
    catalog = run_in_memory(register_pipelines()["mimic3.ehrdiff_codes"], parameters, {"ingestion.database": database})

    matrix = catalog.load("synthesis.ehrdiff_codes.code_matrix")
    diagnoses = catalog.load("ingestion.diagnoses")
    assert matrix["codes"].shape == (DEMO_PATIENTS, DEMO_CODES) and matrix["codes"].dtype == np.uint8
    assert set(np.unique(matrix["codes"])) == {0, 1}
    assert (matrix["split"] == "train").sum() == DEMO_TRAIN
    assert list(matrix["record_id"]) == sorted(diagnoses["subject_id"].unique())
    train = matrix["record_id"][matrix["split"] == "train"]
    assert list(matrix["code_names"]) == sorted(set(diagnoses.loc[diagnoses["subject_id"].isin(train), "icd9_3digit"]))
    assert matrix["codes"][matrix["split"] == "train"].sum(axis=1).min() >= 1  # every train patient has a code

    synthetic = catalog.load("synthesis.ehrdiff_codes.synthetic")
    assert synthetic["codes"].shape == (16, DEMO_CODES) and set(np.unique(synthetic["codes"])) <= {0, 1}
    assert synthetic["record_id"].min() >= SYNTHETIC_ID_START
    fidelity = catalog.load("synthesis.ehrdiff_codes.fidelity")
    assert (fidelity["n_train"], fidelity["n_holdout"], fidelity["n_codes"]) == (DEMO_TRAIN, DEMO_PATIENTS - DEMO_TRAIN, DEMO_CODES)
    assert 0 < fidelity["prevalence_r_holdout_train"] < 1
    assert len(catalog.load("synthesis.ehrdiff_codes.prevalence")) == DEMO_CODES
