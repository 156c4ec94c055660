"""The `robust` pipeline: an adversarially trained model, its attack, and the comparison with the plain model."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ehr_adversarial.pipeline_registry import STUDIES, register_pipelines, robust_pipeline
from ehr_adversarial.pipelines import attack, training
from ehr_adversarial.reporting.robustness import robustness_comparison
from tests.conftest import KeptMemoryDataset, project_parameters
from tests.pipelines.conftest import attack_spec, synthetic_bundle

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCE = "physionet2012"
STUDY = STUDIES[SOURCE]
(ROBUST, PLAIN), = STUDY.robust_models.items()


def short_block(model: str) -> dict:
    """The project's block of `model`, small and short (one instance, 3 epochs, one CV candidate)."""
    block = copy.deepcopy(yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
                          ["training"][SOURCE][model])
    block.update(max_epochs=3, patience=2, n_instances=1)
    block["hyperparameters"]["hidden_size"] = 16
    block["cv"].update(max_folds=2, max_epochs=2, grid=block["cv"]["grid"][:1])
    return block


@pytest.fixture(scope="module")
def robust_run() -> DataCatalog:
    feature_set = STUDY.torch_models[PLAIN]
    bundles = {split: synthetic_bundle(n, 4, seed=i, start_id=10_000 * (i + 1))
               for i, (split, n) in enumerate((("train", 240), ("validation", 80), ("test", 160)))}
    data = {f"features.{feature_set}.model_input_{split}": bundle for split, bundle in bundles.items()}
    data[f"features.{feature_set}.feature_spec"] = attack_spec(feature_set, 4)
    data["features.splits"] = pd.concat(
        [pd.DataFrame({"record_id": b["record_id"], "split": s, "group": "a",
                       "fold": np.arange(len(b["y"])) % 3 if s == "train" else -1}) for s, b in bundles.items()],
        ignore_index=True)
    data |= {f"params:training.{SOURCE}.{m}": short_block(m) for m in (PLAIN, ROBUST)}
    data[f"params:training.{SOURCE}.evaluation"] = {"n_bootstrap": 50, "confidence": 0.95, "threshold_rule": "min_se_ppv"}
    data[f"params:attack.{SOURCE}"] = {**project_parameters()["attack"][SOURCE], "n_records": 30}
    data[f"params:reporting.{SOURCE}"] = project_parameters()["reporting"][SOURCE]
    data |= {"params:seed": 7, "params:device": "cpu"}
    # the default run's part the comparison reads (the plain model and its attack), then the robust pipeline
    pipe = (training.model_pipeline(SOURCE, PLAIN, feature_set, is_torch=True)
            + attack.create_model_pipeline(SOURCE, f"attack.{PLAIN}", f"training.{PLAIN}.model", feature_set)
            + robust_pipeline(SOURCE, STUDY))
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in data.items()})
    for name in pipe.all_outputs():
        catalog[name] = KeptMemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)
    return catalog


def test_the_robust_pipeline_trains_attacks_and_compares_outside_the_default_run():
    registry = register_pipelines()
    robust = registry["robust"]
    assert registry[f"{SOURCE}.robust"] is robust
    # not part of the default study: it reads the plain model's metrics and attack from the default run
    default_nodes = {n.name for n in registry["__default__"].nodes}
    assert not default_nodes & {n.name for n in robust.nodes}
    assert {f"training.{PLAIN}.metrics", f"attack.{PLAIN}.records", f"attack.{PLAIN}.cumulative_susceptibility"} <= robust.inputs()
    assert {f"training.{ROBUST}.model", f"attack.{ROBUST}.records", "reporting.robustness_report"} <= robust.all_outputs()
    assert all(SOURCE in n.tags for n in robust.nodes)


def test_the_adversarially_trained_model_is_compared_with_the_plain_one(robust_run):
    config = robust_run.load(f"training.{ROBUST}.selected_config")
    assert config["adversarial"] == short_block(ROBUST)["adversarial"]
    assert "adversarial" not in robust_run.load(f"training.{PLAIN}.selected_config")
    table = robust_run.load("reporting.robustness")
    assert list(table["model"]) == [PLAIN, ROBUST]
    assert list(table["training"]) == ["plain", "adversarially trained"]
    for model, row in table.set_index("model").iterrows():
        records = robust_run.load(f"attack.{model}.records")
        assert row["records"] == len(records) and row["success"] == pytest.approx(records["success"].mean())
        assert row["auroc"] == robust_run.load(f"training.{model}.metrics")["test"]["auroc"]["value"]
    agreement = robust_run.load("reporting.robustness_agreement")
    assert set(agreement["direction"]) <= {"0→1", "1→0"} and len(agreement) >= 1
    assert agreement["top_k_overlap"].between(0, agreement["top_k"]).all()
    report = robust_run.load("reporting.robustness_report")
    assert f"| {ROBUST} | adversarially trained |" in report and f"| {PLAIN} | plain |" in report


def _metrics(auroc: float) -> dict:
    return {"test": {"auroc": {"value": auroc, "ci_low": auroc - 0.02, "ci_high": auroc + 0.02},
                     "auprc": {"value": 0.4, "ci_low": 0.35, "ci_high": 0.45}}}


def _cumulative(scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"direction": "0→1", "feature": list(scores), "cumulative_s": list(scores.values())})


def test_flip_costs_count_a_failed_attack_as_infinitely_costly_and_rankings_are_compared():
    plain = pd.DataFrame({"success": [True, True, True, True], "l1_best": [0.5, 1.5, 3.0, 9.0],
                          "l0_best": [1, 2, 3, 4]})
    robust = pd.DataFrame({"success": [True, True, False, False], "l1_best": [1.5, 5.0, 0.0, 0.0],
                           "l0_best": [2, 6, 0, 0]})
    sections = {"p__metrics": _metrics(0.80), "r__metrics": _metrics(0.79), "p__records": plain, "r__records": robust,
                "p__cumulative": _cumulative({"a": 3.0, "b": 2.0, "c": 1.0}),
                "r__cumulative": _cumulative({"a": 1.0, "b": 2.0, "c": 3.0})}
    table, agreement, report = robustness_comparison({"r": "p"}, {"robustness_budgets": [1, 4], "top_k": 1},
                                                     **sections)
    rows = table.set_index("model")
    assert rows.loc["p", "median_l1"] == pytest.approx(2.25) and rows.loc["p", "success"] == 1.0
    # two of four robust records never flip: the median lies between 5.0 and infinity
    assert rows.loc["r", "median_l1"] == np.inf and rows.loc["r", "success"] == 0.5
    assert rows.loc["p", "flipped_l1_le_1"] == 0.25 and rows.loc["p", "flipped_l1_le_4"] == 0.75
    assert rows.loc["r", "flipped_l1_le_1"] == 0.0 and rows.loc["r", "flipped_l1_le_4"] == 0.25
    (row,) = agreement.to_dict("records")
    assert row["spearman"] == pytest.approx(-1.0) and row["top_k_overlap"] == 0
    assert row["top_plain"] == "a" and row["top_robust"] == "c"
    assert "0.790 [0.770, 0.810]" in report
