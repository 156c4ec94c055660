"""Synthesis pipeline: structure (namespaces, train-only inputs, K-MIMIC stage order), catalog
entries, model files, and whole runs on the real PhysioNet 2012 and MIMIC-III demo data."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset

from ehr_adversarial.pipelines.synthesis import CODE_SOURCES, GENERATOR_FEATURE_SETS, create_pipeline
from ehr_adversarial.synthesis.common import SYNTHETIC_GROUP, SYNTHETIC_ID_START, build_generator
from tests.conftest import project_parameters, run_after

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("single_thread")  # tests/conftest.py


def _config_loader():
    from ehr_adversarial import settings

    return settings.CONFIG_LOADER_CLASS(conf_source=str(PROJECT_ROOT / "conf"), **settings.CONFIG_LOADER_ARGS)


def _node(pipe, name: str):
    (found,) = [n for n in pipe.nodes if n.name == name]
    return found


def test_one_namespace_per_generator_reading_only_the_train_split():
    pipe = create_pipeline("physionet2012")
    assert {n.namespace for n in pipe.nodes} == {"physionet2012.ehrdiff", "physionet2012.synehrgy", "physionet2012.kmimic"}
    inputs = pipe.inputs()
    assert "physionet2012.full.model_input_train" in inputs
    assert not any("model_input_validation" in name or "model_input_test" in name for name in pipe.datasets())
    assert {f"physionet2012.{g}.synthetic" for g in ("ehrdiff", "synehrgy", "kmimic")} == pipe.outputs()
    # SynEHRgy's decoded tables are datasets of their own (the features pipeline can read them)
    assert {"physionet2012.synehrgy.synthetic_timeseries", "physionet2012.synehrgy.synthetic_static"} <= pipe.datasets()


def test_kmimic_stages_are_separate_nodes_and_later_ones_read_earlier_models():
    pipe = create_pipeline("physionet2012", generators=("kmimic",))
    gan = _node(pipe, "physionet2012.kmimic.train_latent_gan")
    assert {"physionet2012.kmimic.static_vae", "physionet2012.kmimic.temporal_vae"} <= set(gan.inputs)
    sample = _node(pipe, "physionet2012.kmimic.sample_kmimic")
    assert {"physionet2012.kmimic.static_vae", "physionet2012.kmimic.temporal_vae", "physionet2012.kmimic.latent_gan"} <= set(sample.inputs)
    order = [n.name.split(".")[-1] for n in pipe.nodes]  # topologically sorted
    assert order.index("train_static_vae") < order.index("train_latent_gan") < order.index("sample_kmimic")
    assert order.index("train_temporal_vae") < order.index("train_latent_gan")


def test_mimic3_generators_share_the_training_code_matrix():
    pipe = create_pipeline("mimic3")
    assert "mimic3" in CODE_SOURCES
    builder = _node(pipe, "mimic3.build_code_matrix")
    assert set(builder.inputs) == {"mimic3.sun2018.model_input_train", "mimic3.static", "mimic3.diagnoses"}
    for name in ("mimic3.ehrdiff.train_ehrdiff", "mimic3.synehrgy.tokenize_train_records"):
        assert "mimic3.code_matrix_train" in _node(pipe, name).inputs
    assert "mimic3.synehrgy.synthetic_codes" in pipe.datasets()
    assert "mimic3.kmimic.train_static_vae" in {n.name for n in pipe.nodes}


def test_unknown_sources_get_an_empty_pipeline_and_unknown_generators_an_error():
    assert not create_pipeline("eicu").nodes
    with pytest.raises(ValueError, match=r"unknown generator\(s\) \['gan'\] for physionet2012"):
        create_pipeline("physionet2012", generators=("gan",))


def test_synthetic_evaluation_reads_the_feature_sets_the_generators_learn():
    from ehr_adversarial.pipelines.synthetic_evaluation import GENERATOR_FEATURE_SETS as evaluated

    assert evaluated == GENERATOR_FEATURE_SETS


def test_every_dataset_has_a_versioned_catalog_entry():
    catalog = DataCatalog.from_config(_config_loader()["catalog"])
    for source in GENERATOR_FEATURE_SETS:
        pipe = create_pipeline(source)
        produced = {name for name in pipe.datasets() if not name.startswith("params:")} - pipe.inputs()
        for name in produced:
            dataset = catalog.get(name)
            assert dataset is not None and not isinstance(dataset, MemoryDataset), name
            assert dataset._version is not None, f"{name} is not versioned"


def test_project_parameters_cover_every_generator():
    parameters = project_parameters()
    for source, generators in GENERATOR_FEATURE_SETS.items():
        assert set(parameters["synthesis"][source]) == set(generators)
    assert parameters["synthesis"]["mimic3"]["synehrgy"]["tokenizer"]["continuous_covariates"] == ["age"]


@pytest.mark.parametrize(
    "config",
    [
        {"architecture": "ehrdiff", "hyperparameters": {"n_columns": 7, "hidden_dims": [8], "time_dim": 8, "sigma_data": [0.14] * 7}, "layout": {"n_hours": 1}},
        {"architecture": "gpt", "hyperparameters": {"vocab_size": 11, "block_size": 8, "n_layer": 1, "n_head": 1, "n_embd": 8, "dropout": 0.0}},
        {"architecture": "kmimic_static_vae", "hyperparameters": {"n_static": 3, "latent_dim": 2, "hidden": 4}, "binary": [True, False, False]},
        {"architecture": "kmimic_temporal_vae", "hyperparameters": {"n_features": 2, "n_steps": 5, "latent_dim": 3, "hidden": 4, "num_layers": 1}},
        {"architecture": "kmimic_latent_generator", "hyperparameters": {"latent_dim": 5, "noise_dim": 2, "hidden": 4, "n_classes": 2}, "static_latent_dim": 2},
    ],
    ids=lambda c: c["architecture"],
)
def test_generator_models_survive_the_versioned_model_dataset(config: dict, tmp_path: Path):
    from ehr_adversarial.datasets.torch_model import TorchModelDataset

    torch.manual_seed(0)
    model = build_generator(config)
    dataset = TorchModelDataset(filepath=str(tmp_path / "model.pt"))
    dataset.save(model)
    loaded = dataset.load()
    assert type(loaded) is type(model) and loaded.config == config
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)


# ----------------------------------------------------------------------------- real data


def _quick_parameters(source: str) -> dict:
    """The project's parameters with a few training steps and small samples."""
    parameters = copy.deepcopy(project_parameters())
    for block in parameters["synthesis"][source].values():
        block["n_samples"] = 24
        for stage in ("static_vae", "temporal_vae", "latent_gan"):
            if stage in block:
                block[stage]["max_steps"] = 2
        if "max_steps" in block:
            block["max_steps"] = 2
        if "max_new_tokens" in block:
            block["max_new_tokens"] = 300
    parameters["device"] = "cpu"
    return parameters


def _check_synthetic(catalog: DataCatalog, source: str, n_features: int, n_static: int) -> None:
    real_ids = set(catalog.load(f"{source}.splits")["record_id"])
    for generator in GENERATOR_FEATURE_SETS[source]:
        synthetic = catalog.load(f"{source}.{generator}.synthetic")
        n = len(synthetic["y"])
        # SynEHRgy's count is that of the decoded records: the record grammar keeps all of them
        assert n == 24, generator
        assert synthetic["X"].shape == synthetic["mask"].shape == synthetic["delta"].shape == (n, 48, n_features), generator
        assert synthetic["static"].shape == (n, n_static) and synthetic["static"].dtype == np.float32, generator
        assert synthetic["X"].dtype == np.float32 and synthetic["mask"].dtype == bool and synthetic["y"].dtype == np.int64
        assert np.isfinite(synthetic["X"]).all() and 0 <= synthetic["X"].min() and synthetic["X"].max() <= 1, generator
        assert synthetic["record_id"].min() >= SYNTHETIC_ID_START and not real_ids & set(synthetic["record_id"].tolist())
        assert set(synthetic["group"]) == {SYNTHETIC_GROUP}


@pytest.mark.slow
def test_synthesis_on_real_physionet2012(physionet2012_features: DataCatalog):
    catalog = run_after(physionet2012_features, create_pipeline("physionet2012"), _quick_parameters("physionet2012"))
    _check_synthetic(catalog, "physionet2012", n_features=36, n_static=8)
    # SynEHRgy's decoded records look like ingestion's tables
    real_ts, real_static = catalog.load("physionet2012.timeseries"), catalog.load("physionet2012.static")
    synthetic_ts = catalog.load("physionet2012.synehrgy.synthetic_timeseries")
    synthetic_static = catalog.load("physionet2012.synehrgy.synthetic_static")
    assert list(synthetic_ts.columns) == list(real_ts.columns)
    assert dict(synthetic_ts.dtypes.astype(str)) == dict(real_ts.dtypes.astype(str))
    assert set(synthetic_ts["parameter"]) <= set(real_ts["parameter"])
    contract = ["record_id", "age", "gender", "height", "weight", "icu_type", "label", "split_group"]
    assert set(contract) <= set(synthetic_static.columns)
    assert set(synthetic_static["icu_type"]) <= set(real_static["icu_type"])
    tokenizer = catalog.load("physionet2012.synehrgy.tokenizer")
    train = catalog.load("physionet2012.splits").query("split == 'train'")["record_id"]
    assert set(catalog.load("physionet2012.synehrgy.train_tokens")["record_id"]) == set(train)
    assert tokenizer["variables"] == sorted(real_ts.loc[real_ts["record_id"].isin(train), "parameter"].unique())


@pytest.mark.slow
def test_synthesis_on_the_real_mimic3_demo(mimic3_features: DataCatalog):
    catalog = run_after(mimic3_features, create_pipeline("mimic3"), _quick_parameters("mimic3"))
    _check_synthetic(catalog, "mimic3", n_features=19, n_static=7)
    code_matrix = catalog.load("mimic3.code_matrix_train")
    train = catalog.load("mimic3.sun2018.model_input_train")
    np.testing.assert_array_equal(code_matrix["record_id"], train["record_id"])
    for generator in ("ehrdiff", "synehrgy"):
        synthetic = catalog.load(f"mimic3.{generator}.synthetic")
        np.testing.assert_array_equal(synthetic["code_names"], code_matrix["code_names"])
        assert synthetic["codes"].shape == (24, len(code_matrix["code_names"])) and synthetic["codes"].dtype == np.uint8
    codes = catalog.load("mimic3.synehrgy.synthetic_codes")
    assert isinstance(codes, pd.DataFrame) and set(codes["code"]) <= set(code_matrix["code_names"])
