"""Attack pipeline: record selection, bad inputs, the namespaced pipeline on bundles that follow
the features contract, and a slow end-to-end run on real PhysioNet data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ehr_adversarial.attack import AttackConfig, logit_margin
from ehr_adversarial.attack.run import run_attack, select_records
from ehr_adversarial.models import build_model
from ehr_adversarial.pipeline_registry import STUDIES
from ehr_adversarial.pipelines.attack import create_model_pipeline, create_pipeline
from ehr_adversarial.training.torch_loop import fit, predict_logits, to_tensors
from tests.conftest import KeptMemoryDataset, project_copy
from tests.pipelines.conftest import ATTACK, FIT, attack_spec, synthetic_bundle


def test_selection_takes_correct_records_balanced_and_reproducible(trained):
    model, test, spec = trained
    selection = select_records(model, test, spec, ATTACK, seed=3, device="cpu")
    margin = logit_margin(predict_logits(model, to_tensors(test, torch.device("cpu")), 64), torch.as_tensor(test["y"]))
    correct = margin.numpy() > 0
    assert correct.sum() > 40 and len(selection) == 40
    assert correct[selection["row"]].all()
    np.testing.assert_array_equal(selection["record_id"], test["record_id"][selection["row"]])
    n_positive_correct = int((correct & (test["y"] == 1)).sum())
    assert selection["label"].sum() == min(20, n_positive_correct)  # half, or every correct death if fewer
    again = select_records(model, test, spec, ATTACK, seed=3, device="cpu")
    pd.testing.assert_frame_equal(selection, again)
    everyone = select_records(model, test, spec, {**ATTACK, "n_records": "all"}, seed=3, device="cpu")
    assert len(everyone) == correct.sum()


def test_selection_errors(trained):
    model, test, spec = trained
    too_many = {**ATTACK, "n_records": 10_000, "if_fewer": "error"}
    with pytest.raises(ValueError, match="only .* test records are correctly classified"):
        select_records(model, test, spec, too_many, seed=0, device="cpu")
    margin = logit_margin(predict_logits(model, to_tensors(test, torch.device("cpu")), 64), torch.as_tensor(test["y"]))
    all_wrong = {**test, "y": np.where(margin.numpy() > 0, 1 - test["y"], test["y"])}
    with pytest.raises(ValueError, match="classifies none of the 120 test records correctly"):
        select_records(model, all_wrong, spec, ATTACK, seed=0, device="cpu")


def test_a_model_and_feature_set_mismatch_is_a_clear_error(trained):
    model, _, _ = trained
    full = synthetic_bundle(50, 6, seed=4, start_id=5000)
    with pytest.raises(ValueError, match="feature set 'sun2018' expects X of shape"):
        select_records(model, full, attack_spec("full", 6), ATTACK, seed=0, device="cpu")
    reordered = attack_spec("sun2018", 4)
    reordered["feature_names"] = reordered["feature_names"][::-1]
    with pytest.raises(ValueError, match="in another order or with other features"):
        select_records(model, synthetic_bundle(50, 4, seed=4, start_id=5000), reordered, ATTACK, seed=0, device="cpu")


@pytest.mark.parametrize(("change", "message"), [
    ({"lambdas": []}, "lambdas is empty"),
    ({"lambdas": [0.01, -0.01]}, "finite and ≥ 0"),
    ({"kappa": -0.5}, "kappa must be ≥ 0"),
    ({"lambdas": {"low": 1e-3, "count": 4}}, r"\['high'\] missing"),
])
def test_bad_attack_settings_are_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        AttackConfig.from_params({**ATTACK, **change})


def test_namespaced_pipeline_writes_records_deltas_susceptibility_and_clinical_units(trained):
    model, test, spec = trained
    pipe = create_model_pipeline("physionet2012", "attack.lstm_sun2018", "training.lstm_sun2018.model", "sun2018")
    assert {n.namespace for n in pipe.nodes} == {"attack.lstm_sun2018"}
    assert pipe.inputs() == {"training.lstm_sun2018.model", "features.sun2018.model_input_test",
                             "features.sun2018.feature_spec", "params:attack.physionet2012", "params:seed",
                             "params:device"}
    inputs = {"training.lstm_sun2018.model": model, "features.sun2018.model_input_test": test,
              "features.sun2018.feature_spec": spec, "params:attack.physionet2012": ATTACK,
              "params:seed": 3, "params:device": "cpu"}
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()})
    for name in pipe.all_outputs():
        assert name.startswith("attack.lstm_sun2018."), name
        catalog[name] = KeptMemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)

    out = {name.rsplit(".", 1)[1]: catalog.load(name) for name in pipe.all_outputs()}
    records, deltas, summary = out["records"], out["deltas"], out["summary"]
    assert len(records) == 40 and records["success"].mean() >= 0.9
    assert summary["success_rate"] == records["success"].mean() and summary["attacked_records"] == 40
    won = records["success"].to_numpy()
    assert (records.loc[won, "adversarial_margin"] < 0).all() and (records.loc[won, "l0_best"] > 0).all()
    assert (records.loc[won, "l1_best"] <= records.loc[won, "l1_first"] + 1e-6).all()
    rows = pd.Index(test["record_id"]).get_indexer(deltas["record_id"])
    for which in ("delta_first", "delta_best"):
        adversarial = test["X"][rows] + deltas[which]
        assert adversarial.min() >= -1e-6 and adversarial.max() <= 1 + 1e-6
        assert (deltas[which][~won] == 0).all()
    np.testing.assert_allclose(np.abs(deltas["delta_best"]).sum((1, 2)), records["l1_best"], rtol=1e-5)

    table = out["susceptibility"]
    counts = records[won].groupby("direction").size().to_dict()
    assert table.groupby("direction")["n_records"].first().to_dict() == counts
    gpp = table[(table["metric"] == "GPP") & (table["direction"] == "1→0")]
    label1 = deltas["delta_best"][won & (records["label"].to_numpy() == 1)]
    assert gpp["value"].sum() == pytest.approx((label1 != 0).sum() / len(label1))
    ranking = out["cumulative_susceptibility"]
    assert set(ranking["feature"]) == set(spec["feature_names"]) and ranking["rank"].min() == 1

    for figure in ("susceptibility_heatmaps", "cumulative_susceptibility_plot", "histograms",
                   "susceptibility_over_hours"):
        assert out[figure].axes, figure

    cells = out["perturbations"]
    assert len(cells) == int(records.loc[won, "l0_best"].sum())
    np.testing.assert_allclose(cells["change"], cells["delta_scaled"] * 50.0)
    assert cells["description"].str.match(r"^f\d [+-][\d.e+-]+ mmol/L at hour \d+$").all()


def test_attack_runs_per_torch_model_only():
    study = STUDIES["physionet2012"]
    pipe = create_pipeline("physionet2012", study.torch_models)
    assert {n.namespace for n in pipe.nodes} == {"attack.lstm_sun2018", "attack.lstm_pooled", "attack.dssm"}
    assert {"training.lstm_sun2018.model", "features.sun2018.model_input_test", "training.dssm.model",
            "features.full.model_input_test"} <= pipe.inputs()
    assert not any(baseline in name for name in pipe.all_inputs() for baseline in study.baseline_models)


def test_the_attack_works_on_a_model_with_other_inputs():
    """DSSM reads x, mask, delta and static; only x is perturbed."""
    torch.manual_seed(0)
    test, spec = synthetic_bundle(60, 4, seed=5, start_id=0), attack_spec("sun2018", 4)
    config = {"architecture": "dssm", "hyperparameters": {"hidden_size": 8, "num_layers": 1, "n_heads": 2,
                                                           "static_size": 4, "classifier_size": 8},
              "feature_set": "sun2018", "feature_names": spec["feature_names"], "static_names": spec["static_names"],
              "n_hours": 48, "n_features": 4, "n_static": 3}
    model = build_model(config)
    with torch.no_grad():  # centre the untrained model's logits so that a short attack can flip them
        tensors = to_tensors(test, torch.device("cpu"))
        logits = model.eval()(tensors["x"], tensors["mask"], tensors["delta"], tensors["static"])
        model.classifier[-1].bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    selection = select_records(model, test, spec, {**ATTACK, "n_records": 10}, seed=0, device="cpu")
    records, deltas, _ = run_attack(model, test, selection, spec, {**ATTACK, "lr": 0.5}, seed=0, device="cpu")
    assert records["success"].mean() >= 0.7 and deltas["delta_best"].shape == (len(selection), 48, 4)
    # Recomputed here with the model's own positional inputs: the successful δ flip the label.
    chosen = {name: torch.as_tensor(value[selection["row"].to_numpy()]) for name, value in test.items() if name != "group"}
    with torch.no_grad():
        logits = model.eval()(chosen["X"] + torch.as_tensor(deltas["delta_best"]), chosen["mask"].float(),
                              chosen["delta"], chosen["static"])
    won = records["success"].to_numpy()
    assert (logit_margin(logits, chosen["y"])[won] < 0).all()


@pytest.mark.slow
def test_attack_pipeline_on_real_physionet_data(tmp_path: Path, physionet2012_dir: Path):
    """ingestion → features → a briefly trained LSTM → the attack pipeline with a short budget."""
    from ehr_adversarial.session import StudySession

    project_copy(tmp_path)
    with StudySession.create(project_path=tmp_path, env="physionet2012") as session:
        session.run(pipeline_names=["ingestion", "features"])
    with StudySession.create(project_path=tmp_path, env="physionet2012") as session:
        catalog = session.load_context().catalog
        train = catalog.load("features.sun2018.model_input_train")
        spec = catalog.load("features.sun2018.feature_spec")
        config = {"architecture": "lstm_sun2018", "hyperparameters": {"hidden_size": 32},
                  "feature_set": "sun2018", "feature_names": spec["feature_names"],
                  "static_names": spec["static_names"], "n_hours": 48, "n_features": len(spec["feature_names"]),
                  "n_static": len(spec["static_names"])}
        torch.manual_seed(0)
        tensors = to_tensors(train, torch.device("cpu"))
        model, _ = fit(build_model(config), tensors, tensors, {**FIT, "max_epochs": 3, "batch_size": 128},
                       torch.Generator().manual_seed(0))
        catalog.save("training.lstm_sun2018.model", model)
    params = {"attack": {"physionet2012": {"n_records": 200, "lambdas": {"low": 5e-4, "high": 1.5e-2, "count": 9},
                                           "max_iterations": 60}}}
    with StudySession.create(project_path=tmp_path, env="physionet2012", runtime_params=params) as session:
        session.run(pipeline_names=["attack"], namespaces=["attack.lstm_sun2018"])
        catalog = session.load_context().catalog
        records = catalog.load("attack.lstm_sun2018.records")
        summary = catalog.load("attack.lstm_sun2018.summary")
        cells = catalog.load("attack.lstm_sun2018.perturbations")
    assert len(records) == 200 and set(records["direction"]) == {"0→1", "1→0"}
    assert records["success"].mean() >= 0.9 and summary["success_rate"] == records["success"].mean()
    # The default refinement only shrinks δ, and the refined δ still flips (adversarial margin < 0).
    won = records[records["success"]]
    assert (won["l1_best"] <= won["l1_first"] + 1e-9).all() and (won["l0_best"] <= won["l0_first"]).all()
    assert (won["adversarial_margin"] < 0).all()
    assert set(cells["feature"]) <= set(spec["feature_names"]) and len(cells) == records["l0_best"].sum()
