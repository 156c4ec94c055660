"""Training pipeline: input checks, summary statistics, reproducibility, the namespaced pipeline
on synthetic bundles that follow the features contract, and a slow run on real PhysioNet data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ehr_adversarial.pipeline_registry import STUDIES
from ehr_adversarial.pipelines.training import create_pipeline
from ehr_adversarial.training import (
    check_model_input,
    compare_models,
    fit_estimator,
    predict_estimator,
    predict_torch_model,
    refit_torch_model,
    select_estimator_config,
    train_torch_model,
)
from ehr_adversarial.training.metrics import METRICS
from ehr_adversarial.training.summary_features import STATISTICS, summary_statistics
from ehr_adversarial.training.torch_loop import class_weights, prior_shift
from tests.conftest import (
    KeptMemoryDataset,
    free_port,
    latest_version,
    physionet2012_record_file,
    project_copy,
)
from tests.pipelines.conftest import N_HOURS, synthetic_bundle, synthetic_spec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODELS = STUDIES["physionet2012"].models  # model → the feature set it reads


def training_pipeline(source: str):
    study = STUDIES[source]
    return create_pipeline(source, study.models, study.torch_models, study.stack_members)


def synthetic_inputs(source: str, sizes=(240, 80, 160), n_folds: int = 3) -> dict:
    """Every free input of the training pipeline of `source` (datasets and parameters)."""
    data = {}
    for fs, n_features in (("full", 6), ("sun2018", 4)):
        bundles = {split: synthetic_bundle(n, n_features, seed=i, start_id=10_000 * (i + 1))
                   for i, (split, n) in enumerate(zip(("train", "validation", "test"), sizes, strict=True))}
        for split, bundle in bundles.items():
            data[f"features.{fs}.model_input_{split}"] = bundle
        data[f"features.{fs}.feature_spec"] = synthetic_spec(fs, n_features)
    data["features.splits"] = pd.concat(
        [pd.DataFrame({"record_id": b["record_id"], "split": s, "group": "a",
                       "fold": np.arange(len(b["y"])) % n_folds if s == "train" else -1})
         for s, b in bundles.items()], ignore_index=True)
    for name, block in short_training(source).items():
        data[f"params:training.{source}.{name}"] = block
    data.update({"params:seed": 7, "params:device": "cpu"})
    return data


def short_training(source: str) -> dict:
    """The project's `training.<source>` block with small models, few epochs and folds (the real-data test
    trains fully)."""
    training = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())["training"][source]
    blocks = {}
    for model in STUDIES[source].models:
        block = copy.deepcopy(training[model])
        block["cv"].update(max_folds=2, grid=block["cv"]["grid"][:1])
        if "architecture" in block:
            block.update(max_epochs=3, patience=2)
            block["hyperparameters"]["hidden_size"] = 16
            block["cv"].update(max_epochs=2)
        if block.get("estimator") == "hist_gradient_boosting":
            block["hyperparameters"]["max_iter"] = 30
        blocks[model] = block
    blocks["evaluation"] = {**training["evaluation"], "n_bootstrap": 100}
    if "stack" in training:
        blocks["stack"] = training["stack"]
    return blocks


def run_pipeline(source: str, data: dict) -> DataCatalog:
    pipe = training_pipeline(source)
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in data.items()})
    for name in pipe.all_outputs():
        catalog[name] = KeptMemoryDataset()
    SequentialRunner().run(pipe, catalog)
    return catalog


# ---------------------------------------------------------------- the pipeline on synthetic data


@pytest.fixture(scope="module")
def physionet_run() -> DataCatalog:
    return run_pipeline("physionet2012", synthetic_inputs("physionet2012"))


def test_pipeline_namespaces_each_model_and_reads_its_feature_set():
    pipe = training_pipeline("physionet2012")
    namespaces = {n.namespace for n in pipe.nodes}
    assert namespaces == {"training", "training.lstm_sun2018", "training.lstm_pooled", "training.dssm",
                          "training.logreg", "training.gbm", "training.gbm_sun2018", "training.stack"}
    lstm_inputs = set().union(*(n.inputs for n in pipe.nodes if n.namespace == "training.lstm_sun2018"))
    assert "features.sun2018.model_input_train" in lstm_inputs
    assert not any(".full." in name for name in lstm_inputs)
    dssm_inputs = set().union(*(n.inputs for n in pipe.nodes if n.namespace == "training.dssm"))
    assert "features.full.model_input_test" in dssm_inputs
    # the test split reaches only prediction nodes, never model selection or fitting
    for n in pipe.nodes:
        if any(name.endswith("model_input_test") for name in n.inputs):
            assert n.name.endswith("predict_test"), n.name
    mimic = training_pipeline("mimic3")
    assert all(".sun2018." in name for name in mimic.inputs() if "model_input" in name)
    assert {name for name in mimic.inputs() if name.startswith("params:training")} == {
        f"params:training.mimic3.{name}" for name in ("lstm_sun2018", "dssm", "logreg", "gbm", "evaluation")}


def test_pipeline_outputs_every_artifact(physionet_run):
    catalog = physionet_run
    for model in ("lstm_sun2018", "dssm"):
        assert isinstance(catalog.load(f"training.{model}.model"), torch.nn.Module)
        history = catalog.load(f"training.{model}.training_history")
        # one kept epoch per trained instance
        n_instances = history["instance"].nunique() if "instance" in history else 1
        assert history["best"].sum() == n_instances
        if "instance" in history:
            assert (history.groupby("instance")["best"].sum() == 1).all()
    for model in MODELS:
        test = catalog.load(f"training.{model}.test_predictions")
        assert list(test.columns) == ["record_id", "y_true", "y_prob", "split", "group"]
        assert len(test) == 160 and test["y_prob"].between(0, 1).all()
        assert set(test["split"]) == {"test"}
        metrics = catalog.load(f"training.{model}.metrics")
        assert metrics["n_test"] == 160 and metrics["test_split"] == "test (group a)"
        for value in metrics["test"].values():
            assert value["ci_low"] <= value["value"] <= value["ci_high"]
        cv = catalog.load(f"training.{model}.cv_results")
        assert set(cv["fold"]) <= {0, 1, 2} and cv["fold"].nunique() >= 2
        for figure in ("roc_curve", "pr_curve", "calibration_curve"):
            assert catalog.load(f"training.{model}.{figure}").axes
    table = catalog.load("training.model_comparison")
    assert sorted(table["model"]) == sorted([*MODELS, "stack"])
    assert table["auprc"].is_monotonic_decreasing
    report = catalog.load("training.model_comparison_report")
    assert "| gbm | full |" in report and "| lstm_sun2018 | sun2018 |" in report


def test_thresholds_come_from_validation_or_out_of_fold_predictions_never_test(physionet_run):
    catalog = physionet_run
    for model in ("lstm_sun2018", "dssm"):
        metrics = catalog.load(f"training.{model}.metrics")
        assert metrics["threshold_split"]["name"] == "validation (group a)"
        assert metrics["threshold_split"]["n"] == 80
    for model in ("logreg", "gbm"):
        metrics = catalog.load(f"training.{model}.metrics")
        assert metrics["threshold_split"]["name"] == "train, out-of-fold (group a)"
        assert metrics["refit_on"] == "train_and_validation"
        oof = catalog.load(f"training.{model}.cv_predictions")
        # max_folds 2 of 3 folds in this test: the records of folds 0 and 1
        assert len(oof) == 160 and oof["y_prob"].notna().all()
        assert set(oof["record_id"]).isdisjoint(catalog.load(f"training.{model}.test_predictions")["record_id"])


def test_the_stack_learns_its_weights_and_threshold_on_held_out_validation_predictions(physionet_run):
    catalog = physionet_run
    validation_ids = set(catalog.load("features.full.model_input_validation")["record_id"])
    # every member predicts the validation split from a fit that did not see it
    for model in MODELS:
        predictions = catalog.load(f"training.{model}.validation_predictions")
        assert set(predictions["record_id"]) == validation_ids and set(predictions["split"]) == {"validation"}
    config = catalog.load("training.stack.selected_config")
    assert config["members"] == sorted(STUDIES["physionet2012"].stack_members)
    assert set(config["weights"]) == set(config["members"])
    assert config["feature_set"] == " + ".join(sorted({MODELS[m] for m in config["members"]}))
    metrics = catalog.load("training.stack.metrics")
    assert metrics["threshold_split"]["name"] == "validation, out-of-fold (group a)"
    assert metrics["threshold_split"]["n"] == 80
    assert metrics["method"] == "stacking" and metrics["n_test"] == 160
    test = catalog.load("training.stack.test_predictions")
    assert list(test.columns) == ["record_id", "y_true", "y_prob", "split", "group"]
    assert set(test["record_id"]) == set(catalog.load("training.gbm.test_predictions")["record_id"])
    # the stack of members that found the signal finds it too
    assert metrics["test"]["auroc"]["value"] > 0.7
    assert f"| stack | {config['feature_set']} |" in catalog.load("training.model_comparison_report")


def test_a_baselines_validation_predictions_come_from_a_fit_on_the_train_split_alone(physionet_run):
    data = synthetic_inputs("physionet2012")
    train, validation = data["features.full.model_input_train"], data["features.full.model_input_validation"]
    spec, config = data["features.full.feature_spec"], physionet_run.load("training.gbm.selected_config")
    on_train = fit_estimator(train, validation, spec, {**config, "refit_on": "train"}, 7)
    expected = predict_estimator(on_train, validation, spec, split="validation")
    pd.testing.assert_frame_equal(physionet_run.load("training.gbm.validation_predictions"), expected)
    refit = fit_estimator(train, validation, spec, config, 7)  # train + validation: has seen these records
    assert not np.allclose(predict_estimator(refit, validation, spec)["y_prob"], expected["y_prob"])


def test_models_learn_the_synthetic_signal(physionet_run):
    # deaths carry a rise of feature 0 on day 2; the baselines find it (the torch models get
    # only 3 epochs here: they are checked on the real data in the slow test)
    for model in ("gbm", "logreg"):
        assert physionet_run.load(f"training.{model}.metrics")["test"]["auroc"]["value"] > 0.7, model


def test_saved_model_carries_what_the_attack_needs(physionet_run):
    model = physionet_run.load("training.lstm_sun2018.model")
    assert model.config["feature_set"] == "sun2018"
    assert model.config["feature_names"] == [f"f{i}" for i in range(4)]
    assert model.config["architecture"] == "lstm_sun2018"
    assert "probability_shift" in model.config


# ---------------------------------------------------------------- more training data: train on a + b, test on c


FEATURE_PARAMS = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_features.yml").read_text())["features"]
TRAIN_GROUPS, TEST_GROUPS = ["a", "b"], ["c"]
C_SHIFT = 40.0  # group c's measurements and ages are shifted: a test record entering the scaler would show


def three_group_records(n_per_group: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ingestion tables (timeseries, static) of three source groups a, b, c with every parameter the PhysioNet
    feature sets read; deaths have a higher HR."""
    rng = np.random.default_rng(seed)
    names = FEATURE_PARAMS["physionet2012"]["feature_sets"]["full"]["dynamic"]
    ids = np.arange(200_001, 200_001 + 3 * n_per_group)
    group = np.repeat(["a", "b", "c"], n_per_group)
    label = (np.arange(ids.size) % 4 == 0).astype(np.int64)
    n_rows = 40 * ids.size
    row_record = rng.integers(0, ids.size, n_rows)
    parameter = rng.choice(names, n_rows)
    value = rng.normal(50, 10, n_rows) + C_SHIFT * (group[row_record] == "c")
    value += 15.0 * ((parameter == "HR") & (label[row_record] == 1))
    timeseries = pd.DataFrame({"record_id": ids[row_record], "minutes": rng.integers(0, 2881, n_rows),
                               "parameter": parameter, "value": value})
    timeseries = timeseries.astype({"record_id": "int64", "minutes": "int32", "value": "float64"})
    static = pd.DataFrame({
        "record_id": ids.astype(np.int64),
        "age": rng.integers(18, 90, ids.size) + C_SHIFT * (group == "c"),
        "gender": rng.integers(0, 2, ids.size).astype(float),
        "height": np.where(rng.random(ids.size) < 0.3, np.nan, rng.normal(170, 10, ids.size)),
        "weight": rng.normal(80, 15, ids.size),
        "icu_type": rng.choice(["CCU", "CSRU", "MICU", "SICU"], ids.size),
        "label": label,
        "split_group": group,
    })
    return timeseries, static


@pytest.fixture(scope="module")
def more_data_run():
    """features → training of the PhysioNet study on three groups, with train_groups [a, b], test_groups [c]."""
    from ehr_adversarial.pipelines.features import create_pipeline as features_pipeline
    from tests.conftest import run_in_memory

    features = copy.deepcopy(FEATURE_PARAMS["physionet2012"])
    features["splits"].update(train_groups=TRAIN_GROUPS, test_groups=TEST_GROUPS, validation_fraction=0.25,
                              n_folds=3)
    timeseries, static = three_group_records()
    pipe = features_pipeline("physionet2012", STUDIES["physionet2012"].feature_sets) + training_pipeline("physionet2012")
    parameters = {"features": {"physionet2012": features}, "training": {"physionet2012": short_training("physionet2012")},
                  "seed": 7, "device": "cpu"}
    catalog = run_in_memory(pipe, parameters, {"ingestion.timeseries": timeseries, "ingestion.static": static})
    return catalog, timeseries, static, parameters


def test_two_train_groups_fill_train_and_validation_and_the_test_group_only_test(more_data_run):
    catalog, _, static, _ = more_data_run
    splits = catalog.load("features.splits")
    group_of = static.set_index("record_id")["split_group"]
    assert (splits["group"].to_numpy() == group_of.loc[splits["record_id"]].to_numpy()).all()
    groups = splits.groupby("split")["group"].agg(lambda g: sorted(set(g))).to_dict()
    assert groups == {"train": ["a", "b"], "validation": ["a", "b"], "test": ["c"]}
    assert len(splits) == len(static)  # every record of a, b and c is in one split
    assert (splits.loc[splits["split"] == "test", "record_id"].sort_values().to_numpy()
            == static.loc[static["split_group"] == "c", "record_id"].to_numpy()).all()
    for feature_set in STUDIES["physionet2012"].feature_sets:
        for split, expected in groups.items():
            bundle = catalog.load(f"features.{feature_set}.model_input_{split}")
            assert sorted(set(bundle["group"].tolist())) == expected, (feature_set, split)


def test_the_scaler_is_fitted_on_the_train_records_of_both_groups_only(more_data_run):
    catalog, timeseries, static, parameters = more_data_run
    splits = catalog.load("features.splits")
    train_ids = splits.loc[splits["split"] == "train", "record_id"]
    n_hours = parameters["features"]["physionet2012"]["n_hours"]

    def hourly_means(ids) -> pd.DataFrame:  # (record, hour) × parameter, NaN where unobserved
        rows = timeseries[timeseries["record_id"].isin(ids) & (timeseries["minutes"] < 60 * n_hours)]
        return rows.assign(hour=rows["minutes"] // 60).groupby(["record_id", "hour", "parameter"])["value"] \
            .mean().unstack("parameter")

    train_cells, all_cells = hourly_means(train_ids), hourly_means(static["record_id"])
    for feature_set in STUDIES["physionet2012"].feature_sets:
        spec = catalog.load(f"features.{feature_set}.feature_spec")
        for name, sources in spec["sources"].items():
            column = train_cells[sources[0]]
            for fallback in sources[1:]:  # the first source observed in each hour cell
                column = column.fillna(train_cells[fallback])
            values = column.dropna().to_numpy()
            p05, median, p95 = np.percentile(values, [5, 50, 95])
            fitted = spec["scaler"][name]
            assert fitted["observed_cells_train"] == values.size, (feature_set, name)
            assert (fitted["p05"], fitted["median"], fitted["p95"]) == pytest.approx((p05, median, p95), rel=1e-5), \
                (feature_set, name)
        # the records of the other splits would have moved it (group c is shifted)
        assert spec["scaler"]["HR"]["p95"] < np.percentile(all_cells["HR"].dropna(), 95) - 1.0
        for name, fitted in spec["static_scaler"].items():
            values = static.set_index("record_id").loc[train_ids, name].dropna().to_numpy()
            assert (fitted["p05"], fitted["median"], fitted["p95"]) == pytest.approx(
                tuple(np.percentile(values, [5, 50, 95])), rel=1e-9), name
        assert spec["splits"]["test"]["records"] == (static["split_group"] == "c").sum()


def test_metrics_name_the_test_group_and_thresholds_come_from_the_train_groups(more_data_run):
    from ehr_adversarial.training.metrics import choose_threshold

    catalog, _, static, _ = more_data_run
    splits = catalog.load("features.splits")
    test_ids = set(splits.loc[splits["split"] == "test", "record_id"])
    for model in MODELS:
        metrics = catalog.load(f"training.{model}.metrics")
        assert metrics["test_split"] == "test (group c)", model
        assert metrics["n_test"] == len(test_ids) and metrics["n_test_positive"] == 15
        assert set(catalog.load(f"training.{model}.test_predictions")["record_id"]) == test_ids
        held_name = "validation_predictions" if model in STUDIES["physionet2012"].torch_models else "cv_predictions"
        held = catalog.load(f"training.{model}.{held_name}")
        assert not set(held["record_id"]) & test_ids, model
        assert set(held["group"]) == {"a", "b"}, model
        expected = "validation (group a+b)" if held_name == "validation_predictions" else "train, out-of-fold (group a+b)"
        assert metrics["threshold_split"]["name"] == expected and "group c" not in metrics["threshold_rule"]
        assert metrics["threshold"] == pytest.approx(choose_threshold(held["y_true"], held["y_prob"])), model


def test_the_attack_draws_its_records_from_the_test_group(more_data_run):
    from ehr_adversarial.pipelines.attack import create_pipeline as attack_pipeline
    from tests.conftest import run_after
    from tests.pipelines.conftest import ATTACK

    catalog, *_ = more_data_run
    attack = {**ATTACK, "n_records": 8, "max_iterations": 20, "lambdas": {"low": 1e-3, "high": 1e-2, "count": 3}}
    pipe = attack_pipeline("physionet2012", {"lstm_sun2018": "sun2018"})
    attacked = run_after(catalog, pipe, {"attack": {"physionet2012": attack}, "seed": 7, "device": "cpu"})
    test_ids = set(catalog.load("features.splits").query("split == 'test'")["record_id"])
    assert set(attacked.load("attack.lstm_sun2018.selection")["record_id"]) <= test_ids
    assert attacked.load("attack.lstm_sun2018.summary")["test_groups"] == ["c"]


# ---------------------------------------------------------------- bad input


def _train_and_spec():
    return synthetic_bundle(60, 4, seed=1, start_id=1), synthetic_spec("sun2018", 4)


def _small_dssm(**overrides):
    """A tiny DSSM fit on the synthetic bundle: bundle, spec (with three statics) and config (`overrides` on top)."""
    bundle, spec = _train_and_spec()
    spec["static_names"] = ["s0", "s1", "s2"]
    config = {"architecture": "dssm", "hyperparameters": {"hidden_size": 8}, "batch_size": 16,
              "max_epochs": 2, "patience": 2, "monitor": "loss", "class_weight": "balanced",
              "optimizer": {"lr": 0.01}, "grad_clip": 1.0, **overrides}
    return bundle, spec, config


def test_nan_reaching_the_model_is_an_error_before_training():
    bundle, spec = _train_and_spec()
    bundle["X"][5, 17, 2] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN/inf value\(s\) in X, the first at record_id 6, f2, hour 17"):
        check_model_input(bundle, spec, "model_input_train")
    bundle, spec = _train_and_spec()
    bundle["static"][0, 1] = np.inf
    with pytest.raises(ValueError, match="NaN/inf value.*in static.*record_id 1, s1"):
        train_torch_model(bundle, bundle, spec, {"architecture": "lstm_sun2018"}, 0, "cpu")


def test_a_split_without_positives_is_an_error():
    bundle, spec = _train_and_spec()
    bundle["y"][:] = 0
    with pytest.raises(ValueError, match="model_input_validation .* 60 records and 0 positive"):
        check_model_input(bundle, spec, "model_input_validation")


def test_shapes_that_disagree_with_the_feature_spec_are_an_error():
    bundle, _ = _train_and_spec()
    with pytest.raises(ValueError, match=r"X has shape \(60, 48, 4\), expected \(60, 48, 6\)"):
        check_model_input(bundle, synthetic_spec("full", 6), "model_input_test")
    bundle.pop("delta")
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['delta'\]"):
        check_model_input(bundle, synthetic_spec("sun2018", 4), "model_input_test")


def test_a_cv_fold_without_positives_is_an_error():
    bundle, spec = _train_and_spec()
    splits = pd.DataFrame({"record_id": bundle["record_id"], "split": "train", "group": "a",
                           "fold": np.where(bundle["y"] == 1, 0, 1)})
    with pytest.raises(ValueError, match="CV fold 0 holds 1[0-9] records of a single class"):
        select_estimator_config(bundle, splits, spec, {"estimator": "logistic_regression",
                                                       "monitor": "auprc"}, 0)


def test_a_model_of_another_feature_set_is_rejected_naming_both_shapes(physionet_run):
    model = physionet_run.load("training.lstm_sun2018.model")
    data = synthetic_inputs("physionet2012")
    with pytest.raises(ValueError, match=r"expects X of shape \(N, 48, 4\).*\(160, 48, 6\)"):
        predict_torch_model(model, data["features.full.model_input_test"],
                            data["features.full.feature_spec"], "cpu")


# ---------------------------------------------------------------- pieces


def test_a_gbm_with_n_seeds_is_the_soft_vote_of_copies_from_consecutive_seeds_and_cv_ranks_one_copy():
    from sklearn.ensemble import HistGradientBoostingClassifier

    train, validation = synthetic_bundle(240, 4, seed=1, start_id=0), synthetic_bundle(80, 4, seed=2, start_id=500)
    spec = synthetic_spec("full", 4)
    hyperparameters = {"max_iter": 20, "max_leaf_nodes": 4, "min_samples_leaf": 10, "max_features": 0.5}
    config = {"estimator": "hist_gradient_boosting", "class_weight": "none", "refit_on": "train", "n_seeds": 3,
              "hyperparameters": hyperparameters}
    estimator = fit_estimator(train, validation, spec, config, seed=7)
    features = summary_statistics(validation, spec["feature_names"], spec["static_names"])
    copies = [HistGradientBoostingClassifier(random_state=7 + k, early_stopping=False, **hyperparameters)
              .fit(summary_statistics(train, spec["feature_names"], spec["static_names"]), train["y"])
              for k in range(3)]
    expected = np.mean([c.predict_proba(features)[:, 1] for c in copies], axis=0)
    np.testing.assert_allclose(estimator.predict_proba(features)[:, 1], expected, rtol=1e-12)
    assert not np.allclose(copies[0].predict_proba(features)[:, 1], expected)  # the seeds do differ
    np.testing.assert_allclose(predict_estimator(estimator, validation, spec)["y_prob"], expected, rtol=1e-9)

    # CV scores each candidate with one copy (seed 7), whatever n_seeds says.
    splits = pd.DataFrame({"record_id": train["record_id"], "split": "train", "fold": np.arange(240) % 2})
    cv, _, _ = select_estimator_config(train, splits, spec, {**config, "monitor": "auroc", "cv": {"max_folds": 2}}, 7)
    single, _, _ = select_estimator_config(train, splits, spec, {**config, "n_seeds": 1, "monitor": "auroc",
                                                                 "cv": {"max_folds": 2}}, 7)
    np.testing.assert_allclose(cv["auroc"], single["auroc"])
    with pytest.raises(ValueError, match="n_seeds is 0"):
        fit_estimator(train, validation, spec, {**config, "n_seeds": 0}, seed=7)


def test_summary_statistics_of_a_hand_made_record():
    x = np.zeros((1, N_HOURS, 2), np.float32)
    mask = np.zeros((1, N_HOURS, 2), bool)
    for hour, value in ((3, 0.2), (10, 0.6), (30, 0.4)):
        x[0, hour, 0], mask[0, hour, 0] = value, True
    bundle = {"X": x, "mask": mask, "static": np.array([[0.5]], np.float32), "record_id": np.array([9])}
    table = summary_statistics(bundle, ["a", "b"], ["age"])
    row = table.loc[9]
    assert len(table.columns) == 2 * len(STATISTICS) + 1
    assert row["a__mean"] == pytest.approx(0.4)
    assert (row["a__min"], row["a__max"]) == (pytest.approx(0.2), pytest.approx(0.6))
    assert (row["a__first"], row["a__last"]) == (pytest.approx(0.2), pytest.approx(0.4))
    assert row["a__std"] == pytest.approx(np.std([0.2, 0.6, 0.4]))
    assert row["a__mean_first24h"] == pytest.approx(0.4)  # hours 3 and 10
    assert row["a__mean_last24h"] == row["a__min_last24h"] == row["a__max_last24h"] == pytest.approx(0.4)
    assert np.isnan(row["a__mean_last6h"])  # nothing measured in hours 42-47
    assert row["a__count"] == 3 and row["a__hours_since_last"] == 17
    # a feature never measured: NaN statistics and a zero count
    assert np.isnan(row["b__mean"]) and np.isnan(row["b__last"]) and row["b__count"] == 0
    assert row["static__age"] == pytest.approx(0.5)


def test_balanced_class_weights_and_their_prior_shift():
    y = np.array([0] * 8 + [1] * 2)
    weights = class_weights(y, "balanced")
    np.testing.assert_allclose(weights, [10 / 16, 10 / 4])
    assert prior_shift(weights) == pytest.approx(np.log(4.0))
    assert prior_shift(class_weights(y, "none")) == 0.0


def test_training_on_cpu_is_reproducible():
    bundle, spec, config = _small_dssm()
    first, history_1 = train_torch_model(bundle, bundle, spec, config, 3, "cpu")
    second, history_2 = train_torch_model(bundle, bundle, spec, config, 3, "cpu")
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    pd.testing.assert_frame_equal(history_1, history_2)
    third, _ = train_torch_model(bundle, bundle, spec, config, 4, "cpu")
    assert not torch.equal(first.lstm.weight_ih_l0, third.lstm.weight_ih_l0)


def test_an_exponential_moving_average_of_the_weights_is_what_is_monitored_and_kept():
    """ema_decay → 0 keeps the last step's weights, exactly the plain fit; a real decay keeps other weights (the
    average over steps), reproducibly, and its monitored scores are the averaged model's."""
    bundle, spec, config = _small_dssm(max_epochs=3, patience=3)
    plain, plain_history = train_torch_model(bundle, bundle, spec, config, 3, "cpu")
    tracking, tracking_history = train_torch_model(bundle, bundle, spec, {**config, "ema_decay": 1e-12}, 3, "cpu")
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(tracking.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    np.testing.assert_allclose(tracking_history["monitor_loss"], plain_history["monitor_loss"], rtol=1e-5)
    averaged, history = train_torch_model(bundle, bundle, spec, {**config, "ema_decay": 0.9}, 3, "cpu")
    again, _ = train_torch_model(bundle, bundle, spec, {**config, "ema_decay": 0.9}, 3, "cpu")
    assert torch.equal(averaged.lstm.weight_ih_l0, again.lstm.weight_ih_l0)
    assert not torch.allclose(averaged.lstm.weight_ih_l0, plain.lstm.weight_ih_l0)
    # the training loss is the raw model's, the monitored loss the averaged model's
    np.testing.assert_allclose(history["train_loss"], plain_history["train_loss"], rtol=1e-6)
    assert not np.allclose(history["monitor_loss"], plain_history["monitor_loss"])


def test_lr_plateau_lowers_the_learning_rate_after_epochs_without_a_better_monitored_score():
    bundle, spec, config = _small_dssm(max_epochs=8, patience=8, monitor="auroc", optimizer={"lr": 0.05})
    plain, plain_history = train_torch_model(bundle, bundle, spec, config, 3, "cpu")
    assert (plain_history["lr"] == 0.05).all()
    _, history = train_torch_model(bundle, bundle, spec, {**config, "lr_plateau": {"factor": 0.5, "patience": 0}},
                                   3, "cpu")
    # patience 0: every epoch whose AUROC is not above the best so far halves the rate of the epochs after it
    best = history["auroc"].cummax()
    worse = (history["auroc"] <= best.shift(1)).to_numpy()[:-1]
    expected = 0.05 * np.cumprod(np.where(worse, 0.5, 1.0))
    np.testing.assert_allclose(history["lr"].to_numpy()[1:], expected)
    assert worse.any()  # the fixture has such epochs, so the rate did change
    # until the rate first changes the run is the plain one
    first = int(np.argmax(worse)) + 1
    np.testing.assert_allclose(history["auroc"][:first], plain_history["auroc"][:first], rtol=1e-6)
    assert not np.allclose(history["monitor_loss"], plain_history["monitor_loss"])


def test_comparison_warns_when_the_test_split_is_too_small():
    metric = {"value": 0.7, "ci_low": 0.5, "ci_high": 0.9, "n_valid": 10}
    metrics = {"feature_set": "sun2018", "n_test": 20, "n_test_positive": 4, "threshold": 0.3,
               "test": {name: metric for name in METRICS}, "hosmer_lemeshow": {"h": 12.5, "p_value": 0.13}}
    table, report = compare_models(gbm=metrics)
    assert list(table["model"]) == ["gbm"]
    assert "not meaningful" in report and "20 records, 4 deaths" in report
    assert "| min(Se, PPV) |" in report and "| 0.300 | 12.5 (0.130) | – |" in report


def test_comparison_shows_each_models_gap_to_the_gbm_on_its_inputs():
    def metrics(method: str, feature_set: str, auroc: float) -> dict:
        values = {name: {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n_valid": 10} for name in METRICS}
        values["auroc"] = {"value": auroc, "ci_low": auroc - 0.02, "ci_high": auroc + 0.02, "n_valid": 10}
        return {"method": method, "feature_set": feature_set, "n_test": 4000, "n_test_positive": 568,
                "threshold": 0.3, "test": values, "hosmer_lemeshow": {"h": 9.0, "p_value": 0.3}}

    table, report = compare_models(
        lstm_sun2018=metrics("lstm_sun2018", "sun2018", 0.80), gbm_sun2018=metrics("hist_gradient_boosting", "sun2018", 0.83),
        dssm=metrics("dssm", "full", 0.85), gbm=metrics("hist_gradient_boosting", "full", 0.86),
        logreg=metrics("logistic_regression", "full", 0.87))
    gaps = dict(zip(table["model"], table["auroc_gap_to_same_input_gbm"], strict=True))
    assert gaps["lstm_sun2018"] == pytest.approx(-0.03) and gaps["dssm"] == pytest.approx(-0.01)
    assert gaps["logreg"] == pytest.approx(0.01) and np.isnan(gaps["gbm"]) and np.isnan(gaps["gbm_sun2018"])
    assert "| -0.030 |" in report


# ---------------------------------------------------------------- real PhysioNet 2012 (slow)


# Few epochs, one CV candidate and few folds: the tests check the wiring on real data and that every model
# learns something on set-b (the full settings are measured in docs/models.md). Larger torch batches make
# an epoch cheaper on the CPU. The whole run (ingestion → training) stays well under a minute on 2 cores.
SHORT_TRAINING = {
    "lstm_sun2018": {"max_epochs": 3, "patience": 2, "batch_size": 256,
                     "cv": {"max_folds": 1, "max_epochs": 1, "grid": [{}]}},
    "dssm": {"max_epochs": 2, "patience": 2, "batch_size": 256, "cv": {"max_folds": 1, "max_epochs": 1, "grid": [{}]}},
    "logreg": {"cv": {"max_folds": 2, "grid": [{"hyperparameters": {"C": 0.01}}]}},
    "gbm": {"cv": {"max_folds": 2, "grid": [{}]}},
    "gbm_sun2018": {"cv": {"max_folds": 2, "grid": [{}]}},
}
SHORT_TRAINING["lstm_pooled"] = SHORT_TRAINING["lstm_sun2018"]


@pytest.fixture(scope="module")
def physionet_features_project(tmp_path_factory, physionet2012_dir) -> Path:
    """ingestion → features on real PhysioNet 2012 in a project copy (env physionet2012), written to files."""
    from ehr_adversarial.session import StudySession

    root = project_copy(tmp_path_factory.mktemp("project"))
    with StudySession.create(project_path=root, env="physionet2012") as session:
        session.run(pipeline_names=["ingestion", "features"])
    return root


@pytest.fixture(scope="module")
def physionet_project(physionet_features_project: Path) -> Path:
    """training, in a session of its own, on the features that the first run wrote to files."""
    from ehr_adversarial.session import StudySession

    root = physionet_features_project
    runtime = {"training": {"physionet2012": {**SHORT_TRAINING, "evaluation": {"n_bootstrap": 200}}}}
    with StudySession.create(project_path=root, env="physionet2012", runtime_params=runtime) as session:
        session.run(pipeline_names=["training"])
    return root


@pytest.mark.slow
def test_the_run_writes_every_feature_sets_model_input_to_versioned_files(physionet_features_project):
    from ehr_adversarial.datasets.tensors import TensorBundleDataset

    root = physionet_features_project
    splits = pd.read_parquet(latest_version(root, "data/04_feature/physionet2012/features/splits.parquet"))
    assert splits.groupby("split").size().to_dict() == {"train": 3200, "validation": 800, "test": 4000}
    for feature_set in MODELS.values():
        for split, n in (("train", 3200), ("validation", 800), ("test", 4000)):
            path = latest_version(root, f"data/05_model_input/physionet2012/features/{feature_set}/model_input_{split}.npz")
            bundle = TensorBundleDataset(filepath=str(path)).load()
            assert len(bundle["y"]) == n, (feature_set, split)
            np.testing.assert_array_equal(np.sort(bundle["record_id"]),
                                          np.sort(splits.loc[splits["split"] == split, "record_id"].to_numpy()))


@pytest.mark.slow
def test_default_run_trains_every_model_and_evaluates_once_on_set_b(physionet_project):
    root = physionet_project
    reporting = "data/08_reporting/physionet2012/training"
    for model, feature_set in MODELS.items():
        metrics = json.loads(latest_version(root, f"{reporting}/{model}/metrics.json").read_text())
        # set-b is the test split: 4000 records, 568 in-hospital deaths (Outcomes-b.txt)
        assert (metrics["n_test"], metrics["n_test_positive"]) == (4000, 568), model
        assert metrics["test_split"] == "test (group b)"
        assert metrics["feature_set"] == feature_set
        assert metrics["model"] == model  # the name figures and tables show (gbm, not its estimator's)
        assert "group b" not in metrics["threshold_split"]["name"]
        # clearly above chance even after a short training
        assert metrics["test"]["auroc"]["ci_low"] > 0.65, (model, metrics["test"]["auroc"])
        for figure in ("roc_curve", "pr_curve", "calibration_curve"):
            assert latest_version(root, f"{reporting}/{model}/{figure}.png").stat().st_size > 10_000
    for model in ("gbm", "logreg"):
        metrics = json.loads(latest_version(root, f"{reporting}/{model}/metrics.json").read_text())
        assert metrics["test"]["auroc"]["value"] > 0.83, model
    table = pd.read_csv(latest_version(root, f"{reporting}/model_comparison.csv"))
    assert sorted(table["model"]) == sorted([*MODELS, "stack"])
    stack = json.loads(latest_version(root, f"{reporting}/stack/metrics.json").read_text())
    assert (stack["n_test"], stack["threshold_split"]["n"]) == (4000, 800)
    assert stack["threshold_split"]["name"] == "validation, out-of-fold (group a)"


@pytest.mark.slow
def test_no_record_of_set_b_reaches_training(physionet_project):
    root = physionet_project
    splits = pd.read_parquet(latest_version(root, "data/04_feature/physionet2012/features/splits.parquet"))
    test_ids = set(splits.loc[splits["split"] == "test", "record_id"])
    fitted_ids = set(splits.loc[splits["split"] != "test", "record_id"])
    assert len(test_ids) == 4000 and not test_ids & fitted_ids
    output = "data/07_model_output/physionet2012/training"
    for model in MODELS:
        test = pd.read_parquet(latest_version(root, f"{output}/{model}/test_predictions.parquet"))
        assert set(test["record_id"]) == test_ids
        held_out = [name for name in ("validation_predictions", "cv_predictions")
                    if (root / f"{output}/{model}/{name}.parquet").exists()]
        assert held_out, model  # torch models: validation predictions; baselines: out-of-fold predictions
        for name in held_out:
            held = pd.read_parquet(latest_version(root, f"{output}/{model}/{name}.parquet"))
            assert not set(held["record_id"]) & test_ids


@pytest.mark.slow
def test_saved_torch_models_reload_and_reproduce_their_test_predictions(physionet_project):
    from ehr_adversarial.datasets.tensors import TensorBundleDataset
    from ehr_adversarial.datasets.torch_model import TorchModelDataset

    root = physionet_project
    for model, feature_set in (("lstm_sun2018", "sun2018"), ("dssm", "full")):
        loaded = TorchModelDataset(
            filepath=str(latest_version(root, f"data/06_models/physionet2012/training/{model}/model.pt"))).load()
        bundle = TensorBundleDataset(filepath=str(latest_version(
            root, f"data/05_model_input/physionet2012/features/{feature_set}/model_input_test.npz"))).load()
        spec = json.loads(latest_version(
            root, f"data/04_feature/physionet2012/features/{feature_set}/feature_spec.json").read_text())
        again = predict_torch_model(loaded, bundle, spec, "cpu")
        saved = pd.read_parquet(latest_version(
            root, f"data/07_model_output/physionet2012/training/{model}/test_predictions.parquet"))
        np.testing.assert_allclose(again["y_prob"], saved["y_prob"], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_kedro_serve_answers_over_http_with_the_probabilities_of_the_run(physionet_project, physionet2012_dir):
    """`kedro serve` on the trained project, over a real socket: a set-b record file gets exactly the probability
    the training run wrote for that record, and the decision at the run's threshold."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    root = physionet_project
    port = free_port()
    kedro = str(Path(sys.executable).with_name("kedro"))
    model_file = latest_version(root, "data/06_models/physionet2012/training/dssm/model.pt")
    server = subprocess.Popen([kedro, "serve", "--model", "dssm", "--env", "physionet2012", "--port", str(port),
                               "--load-versions", f"training.dssm.model:{model_file.parent.name}"],
                              cwd=root, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    assert json.loads(answer.read()) == {"status": "ok", "model": "dssm"}
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        with urllib.request.urlopen(f"{url}/model", timeout=10) as answer:
            described = json.loads(answer.read())
        metrics = json.loads(latest_version(root, "data/08_reporting/physionet2012/training/dssm/metrics.json").read_text())
        assert described["threshold"] == metrics["threshold"]
        assert described["versions"]["training.dssm.model"] == model_file.parent.name
        saved = pd.read_parquet(latest_version(
            root, "data/07_model_output/physionet2012/training/dssm/test_predictions.parquet")).set_index("record_id")
        for record_id in (142675, 142680, 142731):
            request = urllib.request.Request(f"{url}/predict/physionet2012",
                                             data=physionet2012_record_file(physionet2012_dir, record_id),
                                             headers={"Content-Type": "text/plain"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                (prediction,) = json.loads(answer.read())["predictions"]
            assert prediction["record_id"] == record_id
            assert prediction["p_death"] == pytest.approx(saved.at[record_id, "y_prob"], rel=1e-5, abs=1e-7)
            assert prediction["high_risk"] == bool(prediction["p_death"] >= metrics["threshold"])
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_served_baselines_and_stack_give_the_runs_test_probabilities(physionet_project, physionet2012_dir, monkeypatch):
    """The baselines and the stack serve predictions (no susceptible locations: they have no input gradients)."""
    from fastapi.testclient import TestClient

    from ehr_adversarial.cli import load_service
    from ehr_adversarial.serving import create_app

    root = physionet_project
    monkeypatch.chdir(root)
    for model in ("gbm", "stack"):
        service = load_service(model, "physionet2012", {})
        client = TestClient(create_app(service))
        saved = pd.read_parquet(latest_version(
            root, f"data/07_model_output/physionet2012/training/{model}/test_predictions.parquet")).set_index("record_id")
        for record_id in (142675, 142680):
            answer = client.post("/predict/physionet2012", content=physionet2012_record_file(physionet2012_dir, record_id),
                                 headers={"content-type": "text/plain"})
            assert answer.status_code == 200, answer.text
            (prediction,) = answer.json()["predictions"]
            assert prediction["p_death"] == pytest.approx(saved.at[record_id, "y_prob"], rel=1e-6), (model, record_id)
        answer = client.post("/susceptibility/physionet2012", content=physionet2012_record_file(physionet2012_dir, 142675),
                             headers={"content-type": "text/plain"})
        assert answer.status_code == 422 and "no input gradients" in answer.json()["detail"]
        described = client.get("/model").json()
        assert described["architecture"] is None and described["class_boundary_p_death"] is None
    assert set(service.about["versions"]) == {"features.full.feature_spec", "training.dssm.model",
                                              "training.gbm.estimator", "training.stack.estimator",
                                              "training.stack.metrics"}


@pytest.mark.slow
def test_the_run_copies_its_reports_to_latest_with_an_index(physionet_project):
    root = physionet_project / "data/08_reporting/physionet2012"
    latest = root / "latest"
    runs = json.loads((latest / "runs.json").read_text())
    assert {"training/model_comparison_report.md", "training/gbm/metrics.json",
            "training/dssm/calibration_curve.png"} <= set(runs)
    assert not any(name.startswith(("ingestion/", "features/")) for name in runs)  # reporting layer only
    for relative, entry in runs.items():
        original = root / relative / entry["run"] / Path(relative).name
        assert (latest / relative).read_bytes() == original.read_bytes(), relative
    index = (latest / "index.md").read_text()
    assert "[training/model_comparison_report.md](training/model_comparison_report.md)" in index
    assert "- **gbm**: scikit-learn's histogram gradient boosting" in index
    report = (latest / "training/model_comparison_report.md").read_text()
    assert "- **sun2018**: the 19 laboratory and vital-sign variables" in report and "- **dssm**:" in report


def test_instances_are_trained_from_consecutive_seeds_and_averaged(tmp_path):
    """n_instances 3: instance k is exactly the single model trained from seed + k, the ensemble's logits are
    the mean of theirs, and it saves and reloads as one model whose instances can be taken out."""
    from kedro.io.core import Version

    from ehr_adversarial.datasets.torch_model import TorchModelDataset
    from ehr_adversarial.models import InstanceEnsemble, instances, model_inputs

    bundle, spec, config = _small_dssm()
    ensemble, history = train_torch_model(bundle, bundle, spec, {**config, "n_instances": 3}, 3, "cpu")
    assert isinstance(ensemble, InstanceEnsemble) and ensemble.config["n_instances"] == 3
    assert sorted(history["instance"].unique()) == [0, 1, 2]
    batch = {k: torch.as_tensor(v) for k, v in
             {"x": bundle["X"], "mask": bundle["mask"], "delta": bundle["delta"], "static": bundle["static"]}.items()}
    member_logits = []
    for k, member in enumerate(instances(ensemble)):
        single, single_history = train_torch_model(bundle, bundle, spec, config, 3 + k, "cpu")
        for name, tensor in single.state_dict().items():
            assert torch.equal(tensor, member.state_dict()[name]), (k, name)
        pd.testing.assert_frame_equal(single_history, history[history["instance"] == k].drop(columns="instance")
                                      .reset_index(drop=True))
        with torch.no_grad():
            member_logits.append(member(*model_inputs(member, batch)))
    with torch.no_grad():
        logits = ensemble(*model_inputs(ensemble, batch))
    torch.testing.assert_close(logits, torch.stack(member_logits).mean(dim=0))
    assert not torch.allclose(member_logits[0], member_logits[1])

    dataset = TorchModelDataset(filepath=str(tmp_path / "model.pt"), version=Version(None, None))
    dataset.save(ensemble)
    loaded = dataset.load()
    assert isinstance(loaded, InstanceEnsemble) and len(instances(loaded)) == 3
    assert all(member.config["n_instances"] == 1 for member in instances(loaded))
    with torch.no_grad():
        assert torch.equal(loaded(*model_inputs(loaded, batch)), logits)


def test_a_refit_trains_each_instance_afresh_on_train_and_validation_for_the_epochs_it_kept(tmp_path):
    """refit_on train passes the early-stopped model through; train_and_validation retrains instance k from seed
    + k on both splits for its best epoch + 1 epochs (bit for bit what train_model does without a monitor set),
    keeps the last epoch and carries the early-stopped model's calibration."""
    from kedro.io.core import Version

    from ehr_adversarial.datasets.torch_model import TorchModelDataset
    from ehr_adversarial.models import instances
    from ehr_adversarial.training import torch_model_config
    from ehr_adversarial.training.torch_loop import to_tensors, train_model

    bundle, spec, config = _small_dssm(max_epochs=4, patience=4, n_instances=2, calibration="platt")
    validation = synthetic_bundle(40, 4, seed=2, start_id=1000)
    trained, history = train_torch_model(bundle, validation, spec, config, 3, "cpu")
    # the refit node reads the early-stopped model from its saved file, where only the ensemble's config is kept
    dataset = TorchModelDataset(filepath=str(tmp_path / "early_stopped_model.pt"), version=Version(None, None))
    dataset.save(trained)
    early = dataset.load()
    assert refit_torch_model(bundle, validation, spec, config, early, 3, "cpu") is early

    refit_config = {**config, "refit_on": "train_and_validation"}
    refit = refit_torch_model(bundle, validation, spec, refit_config, early, 3, "cpu")
    kept = [int(history.loc[(history["instance"] == k) & history["best"], "epoch"].iloc[0]) + 1 for k in (0, 1)]
    assert refit.config["refit"] == {"on": "train_and_validation", "records": 100, "epochs": kept}
    assert refit.config["calibration"]["slope"] == early.config["calibration"]["slope"]
    assert refit.config["calibration"]["fitted_on"] == "validation, early-stopped instances"
    both = to_tensors({name: np.concatenate([bundle[name], validation[name]])
                       for name in ("X", "mask", "delta", "static", "y")}, torch.device("cpu"))
    for k, member in enumerate(instances(refit)):
        by_hand, by_hand_history = train_model(torch_model_config(config, spec), {**config, "max_epochs": kept[k]},
                                               both, None, 3 + k, "by hand")
        assert len(by_hand_history) == kept[k] and by_hand_history["best"].iloc[-1]
        for name, tensor in by_hand.state_dict().items():
            assert torch.equal(tensor, member.state_dict()[name]), (k, name)
    early_member = instances(early)[0]
    assert any(not torch.equal(t, early_member.state_dict()[n]) for n, t in instances(refit)[0].state_dict().items())

    assert early.config["kept_epochs"] == kept and kept[0] != kept[1]  # the instances stopped apart
    # refit_epochs: median refits every instance for the same number of epochs, the median of what they kept
    median = refit_torch_model(bundle, validation, spec, {**refit_config, "refit_epochs": "median"}, early, 3, "cpu")
    shared = int(np.floor(np.median(kept) + 0.5))
    assert median.config["refit"]["epochs"] == [shared, shared]
    by_hand, _ = train_model(torch_model_config(config, spec), {**config, "max_epochs": shared}, both, None, 4, "by hand")
    for name, tensor in by_hand.state_dict().items():
        assert torch.equal(tensor, instances(median)[1].state_dict()[name]), name
    early.config["kept_epochs"] = kept[:1]
    with pytest.raises(ValueError, match=r"\(2 instance\(s\)\) .*`kept_epochs` in its config is \[\d\]"):
        refit_torch_model(bundle, validation, spec, refit_config, early, 3, "cpu")


def test_kept_epoch_median_trains_every_instance_all_epochs_and_keeps_for_all_the_median_of_their_best():
    """kept_epoch: median: each instance trains max_epochs whatever the patience, and all keep the weights of the
    median of their best epochs (bit for bit train_model for that many epochs); own keeps each one's best."""
    from ehr_adversarial.models import instances
    from ehr_adversarial.training import torch_model_config
    from ehr_adversarial.training.torch_loop import to_tensors, train_model

    bundle, spec, config = _small_dssm(max_epochs=6, patience=1, n_instances=3, n_processes=1)
    validation = synthetic_bundle(40, 4, seed=2, start_id=1000)
    own, own_history = train_torch_model(bundle, validation, spec, config, 5, "cpu")
    shared, history = train_torch_model(bundle, validation, spec, {**config, "kept_epoch": "median"}, 5, "cpu")
    assert (history.groupby("instance").size() == 6).all()  # no early stop
    best = [int(history.loc[(history["instance"] == k) & history["own_best"], "epoch"].iloc[0]) for k in range(3)]
    epochs = int(np.floor(np.median(np.array(best) + 1) + 0.5))
    assert shared.config["kept_epochs"] == [epochs] * 3
    assert (history.loc[history["best"], "epoch"] == epochs - 1).all() and history["best"].sum() == 3
    train = to_tensors(bundle, torch.device("cpu"))
    for k, member in enumerate(instances(shared)):
        by_hand, _ = train_model(torch_model_config(config, spec), {**config, "max_epochs": epochs}, train, None,
                                 5 + k, "by hand")
        for name, tensor in by_hand.state_dict().items():
            assert torch.equal(tensor, member.state_dict()[name]), (k, name)
    # the instances' own best epochs are the ones plain early stopping finds where it ran that long
    own_best = [int(own_history.loc[(own_history["instance"] == k) & own_history["best"], "epoch"].iloc[0])
                for k in range(3)]
    assert own.config["kept_epochs"] == [b + 1 for b in own_best]
    assert len(set(best)) > 1 or len(set(own_best)) > 1, "the fixture should make the instances stop apart"


def test_the_refit_epochs_are_each_instances_own_or_for_all_the_median_rounded_half_up():
    from ehr_adversarial.training.torch_models import refit_epoch_counts

    assert refit_epoch_counts([11, 15, 16], "own") == [11, 15, 16]
    assert refit_epoch_counts([11, 15, 16], "median") == [15, 15, 15]
    assert refit_epoch_counts([8, 15], "median") == [12, 12]
    assert refit_epoch_counts([8, 15, 17, 20], "median") == [16, 16, 16, 16]
    with pytest.raises(ValueError, match="refit_epochs is 'mean'; use own or median"):
        refit_epoch_counts([3], "mean")


def test_instances_train_in_one_worker_process_per_core_on_cpu_and_one_after_the_other_on_cuda(monkeypatch):
    from ehr_adversarial.training.torch_models import _instance_processes

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    cpu = torch.device("cpu")
    assert _instance_processes({}, 3, cpu) == 3
    assert _instance_processes({}, 6, cpu) == 4
    assert _instance_processes({"n_threads": 2}, 3, cpu) == 2
    assert _instance_processes({"n_processes": 1}, 3, cpu) == 1
    assert _instance_processes({}, 1, cpu) == 1
    assert _instance_processes({}, 3, torch.device("cuda")) == 1


def test_the_validation_predictions_of_a_torch_model_come_from_its_early_stopped_instances():
    """The refit has seen the validation records; threshold, calibration and stack read the early-stopped model."""
    pipe = training_pipeline("physionet2012")
    for model in ("lstm_sun2018", "lstm_pooled", "dssm"):
        [predict] = [n for n in pipe.nodes if n.name == f"training.{model}.predict_validation"]
        assert predict.inputs[0] == f"training.{model}.early_stopped_model"
        [test] = [n for n in pipe.nodes if n.name == f"training.{model}.predict_test"]
        assert test.inputs[0] == f"training.{model}.model"


def test_a_refit_with_a_plateau_schedule_is_refused_naming_both_settings():
    from ehr_adversarial.training.settings import DssmTraining

    _, _, config = _small_dssm(refit_on="train_and_validation", lr_plateau={"factor": 0.5, "patience": 1})
    with pytest.raises(ValueError, match="lr_plateau .* refit_on: train"):
        DssmTraining.model_validate(config)
    DssmTraining.model_validate({**config, "lr_plateau": None})


def test_platt_calibration_recovers_the_true_log_odds_and_keeps_the_ranking():
    """Held-out logits whose true log-odds are 0.5·s − 1: the fit finds slope and intercept, the calibrated
    probabilities fit better (Brier) and rank exactly as before; a reversed signal gives no calibration."""
    from sklearn.metrics import brier_score_loss

    from ehr_adversarial.training.torch_loop import death_probability, fit_calibration

    rng = np.random.default_rng(5)
    score = rng.normal(0, 3, 20000)
    y = (rng.random(score.size) < 1 / (1 + np.exp(-(0.5 * score - 1)))).astype(int)
    shift = 0.7
    logits = torch.tensor(np.stack([np.zeros_like(score), score + shift], 1))
    calibration = fit_calibration(logits, y, shift)
    assert calibration["slope"] == pytest.approx(0.5, abs=0.03)
    assert calibration["intercept"] == pytest.approx(-1.0, abs=0.06)
    raw, calibrated = death_probability(logits, shift), death_probability(logits, shift, calibration)
    assert brier_score_loss(y, calibrated) < brier_score_loss(y, raw)
    np.testing.assert_array_equal(np.argsort(raw, kind="stable"), np.argsort(calibrated, kind="stable"))
    assert fit_calibration(logits, 1 - y, shift) is None


def test_a_calibrated_model_carries_its_calibration_and_predicts_with_it():
    bundle, spec, config = _small_dssm()
    plain, _ = train_torch_model(bundle, bundle, spec, config, 3, "cpu")
    calibrated, _ = train_torch_model(bundle, bundle, spec, {**config, "calibration": "platt"}, 3, "cpu")
    assert "calibration" not in plain.config
    assert calibrated.config["calibration"]["fitted_on"] == "validation"
    p_plain = predict_torch_model(plain, bundle, spec, "cpu")["y_prob"].to_numpy()
    p_calibrated = predict_torch_model(calibrated, bundle, spec, "cpu")["y_prob"].to_numpy()
    assert not np.allclose(p_plain, p_calibrated)
    from scipy.stats import spearmanr
    assert spearmanr(p_plain, p_calibrated).statistic == pytest.approx(1.0)
