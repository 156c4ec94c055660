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

from ehr_adversarial.pipeline_registry import STUDIES, stage_pipelines
from ehr_adversarial.pipelines.synthesis import create_pipeline
from ehr_adversarial.synthesis.common import SYNTHETIC_GROUP, SYNTHETIC_ID_START, build_generator
from tests.conftest import project_config, project_parameters, run_after

ENVIRONMENTS = {"physionet2012": "physionet2012", "mimic3": "mimic3_demo"}  # an environment of each source


def synthesis_pipeline(source: str, generators: dict[str, str] | None = None, repeats: bool = False):
    """The synthesis stage of `source`: every generator of the registry's table, or `generators`; with the
    registry's repeat runs when `repeats` (the runs on real data here train each generator once)."""
    study = STUDIES[source]
    return create_pipeline(source, study.generators if generators is None else generators, study.code_generators,
                           study.generator_runs if repeats else None)


def _node(pipe, name: str):
    (found,) = [n for n in pipe.nodes if n.name == name]
    return found


def test_one_namespace_per_generator_run_reading_only_the_train_split():
    pipe = synthesis_pipeline("physionet2012", repeats=True)
    runs = [f"{g}{suffix}" for g in ("ehrdiff", "synehrgy", "kmimic") for suffix in ("", "_rep1", "_rep2")]
    assert STUDIES["physionet2012"].generator_runs["kmimic_rep2"] == ("kmimic", 2)
    assert {n.namespace for n in pipe.nodes} == {f"synthesis.{run}" for run in runs}
    inputs = pipe.inputs()
    assert "features.full.model_input_train" in inputs
    assert not any("model_input_validation" in name or "model_input_test" in name for name in pipe.datasets())
    assert {f"synthesis.{run}.synthetic" for run in runs} == pipe.outputs()
    # a repeat reads its generator's settings block and the run's one seed, which its nodes offset
    repeat = _node(pipe, "synthesis.ehrdiff_rep2.train_ehrdiff")
    assert {"params:synthesis.physionet2012.ehrdiff", "params:seed"} <= set(repeat.inputs)
    assert repeat.func.__wrapped__ is _node(pipe, "synthesis.ehrdiff.train_ehrdiff").func
    # SynEHRgy's decoded tables are datasets of their own (the features pipeline can read them)
    assert {"synthesis.synehrgy.synthetic_timeseries", "synthesis.synehrgy.synthetic_static"} <= pipe.datasets()


def test_kmimic_stages_are_separate_nodes_and_later_ones_read_earlier_models():
    pipe = synthesis_pipeline("physionet2012", {"kmimic": "full"})
    gan = _node(pipe, "synthesis.kmimic.train_latent_gan")
    assert {"synthesis.kmimic.static_vae", "synthesis.kmimic.temporal_vae"} <= set(gan.inputs)
    sample = _node(pipe, "synthesis.kmimic.sample_kmimic")
    assert {"synthesis.kmimic.static_vae", "synthesis.kmimic.temporal_vae", "synthesis.kmimic.latent_gan"} <= set(sample.inputs)
    order = [n.name.split(".")[-1] for n in pipe.nodes]  # topologically sorted
    assert order.index("train_static_vae") < order.index("train_latent_gan") < order.index("sample_kmimic")
    assert order.index("train_temporal_vae") < order.index("train_latent_gan")


def test_mimic3_generators_share_the_training_code_matrix():
    pipe = synthesis_pipeline("mimic3")
    assert STUDIES["mimic3"].code_generators == {"ehrdiff", "synehrgy"} and not STUDIES["physionet2012"].code_generators
    builder = _node(pipe, "synthesis.build_code_matrix")
    assert set(builder.inputs) == {"features.sun2018.model_input_train", "ingestion.static", "ingestion.diagnoses"}
    for name in ("synthesis.ehrdiff.train_ehrdiff", "synthesis.synehrgy.tokenize_train_records"):
        assert "synthesis.code_matrix_train" in _node(pipe, name).inputs
    assert "synthesis.synehrgy.synthetic_codes" in pipe.datasets()
    assert "synthesis.kmimic.train_static_vae" in {n.name for n in pipe.nodes}
    assert not any("code" in name for name in synthesis_pipeline("physionet2012").datasets())


def test_unknown_generators_are_an_error():
    with pytest.raises(ValueError, match="unknown generator.*gan.*known: ehrdiff, synehrgy, kmimic"):
        synthesis_pipeline("physionet2012", {"gan": "full"})
    with pytest.raises(ValueError, match="repeats name generator.*kmimic.*not among the generators"):
        create_pipeline("physionet2012", {"ehrdiff": "full"}, repeats={"kmimic_rep1": ("kmimic", 1)})


def test_synthetic_evaluation_reads_the_feature_sets_the_generators_learn():
    for source, study in STUDIES.items():
        stages = stage_pipelines(source, study)
        synthesised = {name for name in stages["synthesis"].outputs() if name.endswith(".synthetic")}
        evaluated = {name for name in stages["synthetic_evaluation"].inputs() if name.startswith("synthesis.")}
        assert synthesised == {f"synthesis.{run}.synthetic" for run in study.generator_runs} <= evaluated, source
        assert len(study.generator_runs) == 3 * len(study.generators)  # every headline over ≥ 3 generator seeds
        for run, (generator, _) in study.generator_runs.items():
            feature_set = study.generators[generator]
            learnt = {name for node in stages["synthesis"].nodes if node.namespace == f"synthesis.{run}"
                      for name in node.inputs if name.startswith("features.") and name.endswith("feature_spec")}
            compared = {name for node in stages["synthetic_evaluation"].nodes
                        if node.namespace == f"synthetic_evaluation.{run}"
                        for name in node.inputs if name.startswith("features.") and name.endswith("feature_spec")}
            assert learnt == compared == {f"features.{feature_set}.feature_spec"}, (source, run)


def test_every_dataset_has_a_versioned_catalog_entry():
    for source, env in ENVIRONMENTS.items():
        catalog = DataCatalog.from_config(project_config("catalog", env))
        pipe = synthesis_pipeline(source, repeats=True)
        produced = {name for name in pipe.datasets() if not name.startswith("params:")} - pipe.inputs()
        for name in produced:
            dataset = catalog.get(name)
            assert dataset is not None and not isinstance(dataset, MemoryDataset), name
            assert dataset._version is not None, f"{name} is not versioned"
            assert f"/{source}/synthesis/" in str(dataset._filepath), (name, dataset._filepath)


def test_project_parameters_cover_every_generator():
    parameters = project_parameters()
    for source, study in STUDIES.items():
        standalone = {"ehrdiff_codes"} if study.ehrdiff_codes else set()  # EHRDiff on the code matrix alone
        assert set(parameters["synthesis"][source]) == set(study.generators) | standalone
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
    real_ids = set(catalog.load("features.splits")["record_id"])
    for generator in STUDIES[source].generators:
        synthetic = catalog.load(f"synthesis.{generator}.synthetic")
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
    catalog = run_after(physionet2012_features, synthesis_pipeline("physionet2012"), _quick_parameters("physionet2012"))
    _check_synthetic(catalog, "physionet2012", n_features=36, n_static=8)
    # SynEHRgy's decoded records look like ingestion's tables
    real_ts, real_static = catalog.load("ingestion.timeseries"), catalog.load("ingestion.static")
    synthetic_ts = catalog.load("synthesis.synehrgy.synthetic_timeseries")
    synthetic_static = catalog.load("synthesis.synehrgy.synthetic_static")
    assert list(synthetic_ts.columns) == list(real_ts.columns)
    assert dict(synthetic_ts.dtypes.astype(str)) == dict(real_ts.dtypes.astype(str))
    assert set(synthetic_ts["parameter"]) <= set(real_ts["parameter"])
    contract = ["record_id", "age", "gender", "height", "weight", "icu_type", "label", "split_group"]
    assert set(contract) <= set(synthetic_static.columns)
    assert set(synthetic_static["icu_type"]) <= set(real_static["icu_type"])
    tokenizer = catalog.load("synthesis.synehrgy.tokenizer")
    train = catalog.load("features.splits").query("split == 'train'")["record_id"]
    assert set(catalog.load("synthesis.synehrgy.train_tokens")["record_id"]) == set(train)
    assert tokenizer["variables"] == sorted(real_ts.loc[real_ts["record_id"].isin(train), "parameter"].unique())


@pytest.mark.slow
def test_a_repeat_run_is_the_generator_trained_and_sampled_from_seed_plus_its_offset(physionet2012_features):
    parameters = _quick_parameters("physionet2012")
    parameters["synthesis"]["physionet2012"]["ehrdiff"]["max_steps"] = 5
    pipe = create_pipeline("physionet2012", {"ehrdiff": "full"}, repeats={"ehrdiff_rep1": ("ehrdiff", 1)})
    both = run_after(physionet2012_features, pipe, parameters)
    main, repeat = both.load("synthesis.ehrdiff.synthetic"), both.load("synthesis.ehrdiff_rep1.synthetic")
    assert not np.array_equal(main["X"], repeat["X"])
    # the repeat is exactly what a main run from seed + 1 gives
    shifted = run_after(physionet2012_features, create_pipeline("physionet2012", {"ehrdiff": "full"}),
                        {**parameters, "seed": parameters["seed"] + 1})
    for key in ("X", "mask", "static", "y"):
        np.testing.assert_array_equal(shifted.load("synthesis.ehrdiff.synthetic")[key], repeat[key])


@pytest.mark.slow
def test_synthesis_on_the_real_mimic3_demo(mimic3_features: DataCatalog):
    catalog = run_after(mimic3_features, synthesis_pipeline("mimic3"), _quick_parameters("mimic3"))
    _check_synthetic(catalog, "mimic3", n_features=19, n_static=7)
    code_matrix = catalog.load("synthesis.code_matrix_train")
    train = catalog.load("features.sun2018.model_input_train")
    np.testing.assert_array_equal(code_matrix["record_id"], train["record_id"])
    for generator in ("ehrdiff", "synehrgy"):
        synthetic = catalog.load(f"synthesis.{generator}.synthetic")
        np.testing.assert_array_equal(synthetic["code_names"], code_matrix["code_names"])
        assert synthetic["codes"].shape == (24, len(code_matrix["code_names"])) and synthetic["codes"].dtype == np.uint8
    codes = catalog.load("synthesis.synehrgy.synthetic_codes")
    assert isinstance(codes, pd.DataFrame) and set(codes["code"]) <= set(code_matrix["code_names"])
