"""Synthetic attack: the ranking comparison on hand-made rankings, training on a synthetic bundle,
bad input, the catalog, the registry, and the whole pipeline for one generator in memory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from scipy import stats

from ehr_adversarial import pipeline_registry
from ehr_adversarial.pipeline_registry import (
    STUDIES,
    retrained_models,
    stage_pipelines,
    synthetic_attack_pipeline,
)
from ehr_adversarial.synthetic_attack.compare import (
    RetrainedModel,
    agreement_by_direction,
    compare_susceptibility,
    train_on_synthetic,
)
from ehr_adversarial.training.torch_loop import (
    class_weights,
    prior_shift,
    stratified_holdout,
)
from tests.conftest import KeptMemoryDataset, project_config, project_copy
from tests.pipelines.conftest import ATTACK, attack_spec, synthetic_bundle

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCE = "physionet2012"
DIRECTIONS = ("0→1", "1→0")
FEATURES = [f"f{i}" for i in range(10)]
PARAMS = {"monitor_fraction": 0.2, "evaluation": {"n_bootstrap": 50, "confidence": 0.95},
          "top_k": 5}
DSSM_CONFIG = {
    "architecture": "dssm",
    "hyperparameters": {"hidden_size": 8, "num_layers": 1, "n_heads": 2, "static_size": 4, "classifier_size": 8},
    "optimizer": {"lr": 0.01, "betas": [0.9, 0.999], "weight_decay": 0.0},
    "batch_size": 64, "max_epochs": 8, "patience": 8, "monitor": "auprc", "class_weight": "balanced",
    "grad_clip": 5.0, "amp": False, "n_threads": 1, "cv": {"candidate": 0},
}



def _ranking(scores: dict[str, float]) -> pd.DataFrame:
    """A cumulative_susceptibility table with the same scores in both directions."""
    frames = []
    for direction in DIRECTIONS:
        frame = pd.DataFrame({"direction": direction, "feature": list(scores), "cumulative_s": list(scores.values())})
        frame["rank"] = frame["cumulative_s"].rank(ascending=False, method="min").astype("int64")
        frames.append(frame.sort_values("rank"))
    return pd.concat(frames, ignore_index=True)


def _summary(success: float, l1: float, l0: float) -> dict:
    stats = {"records": 40, "success_rate": success, "mean_l1_best": l1, "mean_l0_best": l0}
    return {"success_rate": success, "by_direction": dict.fromkeys(DIRECTIONS, stats)}


def _metrics(auroc: float) -> dict:
    return {"test": {"auroc": {"value": auroc}, "auprc": {"value": auroc / 2}}}


def _clear_signal(bundle: dict) -> dict:
    """The bundle with feature 0 on day 2 set by the label (0.1 or 0.9): a tiny DSSM learns it in a few
    epochs and then depends on x, so that a short attack flips it in both directions."""
    x = bundle["X"].copy()
    x[:, 24:, 0] = np.where(bundle["y"][:, None] == 1, 0.9, 0.1) + 0.05 * x[:, 24:, 0]
    return {**bundle, "X": x}


REAL_SCORES = {name: float(10 - i) for i, name in enumerate(FEATURES)}  # f0 most susceptible


# ------------------------------------------------------------------------------ comparison of rankings
def test_identical_reversed_and_swapped_rankings():
    real = _ranking(REAL_SCORES)
    reversed_scores = dict(zip(FEATURES, sorted(REAL_SCORES.values()), strict=True))  # f0 least susceptible
    swapped = {**REAL_SCORES, "f4": REAL_SCORES["f5"], "f5": REAL_SCORES["f4"]}  # f5 enters the top 5, f4 leaves
    same, _ = agreement_by_direction(real, _ranking(REAL_SCORES), 5, "same")
    backwards, _ = agreement_by_direction(real, _ranking(reversed_scores), 5, "reversed")
    near, side_by_side = agreement_by_direction(real, _ranking(swapped), 5, "swapped")
    assert same["spearman_rho"].tolist() == pytest.approx([1.0, 1.0])
    assert same["kendall_tau"].tolist() == pytest.approx([1.0, 1.0])
    assert same["top_k_overlap"].tolist() == [5, 5]
    assert backwards["spearman_rho"].tolist() == pytest.approx([-1.0, -1.0])
    assert backwards["kendall_tau"].tolist() == pytest.approx([-1.0, -1.0])
    assert backwards["top_k_overlap"].tolist() == [0, 0]
    # one adjacent swap among 10: ρ = 1 − 6·2/(10·99), τ = 1 − 2·1/45
    assert near["spearman_rho"].iloc[0] == pytest.approx(1 - 12 / 990)
    assert near["kendall_tau"].iloc[0] == pytest.approx(1 - 2 / 45)
    assert near["top_k_overlap"].tolist() == [4, 4]
    assert near["top_k_features"].iloc[0] == "f0, f1, f2, f3, f5"
    row = side_by_side[(side_by_side["direction"] == "0→1") & (side_by_side["feature"] == "f5")].iloc[0]
    assert (row["rank_real"], row["rank_attacked"], row["top_k_real"]) == (6, 5, False)


def test_comparison_table_report_and_figure_from_hand_made_rankings():
    reversed_scores = dict(zip(FEATURES, sorted(REAL_SCORES.values()), strict=True))
    missing_direction = _ranking(REAL_SCORES)
    missing_direction = missing_direction[missing_direction["direction"] == "0→1"]
    # Spearman ρ of this with the real ranking: 1 − 6·(1² + 1²) / (10·(10² − 1)) = 0.9879
    first_two_swapped = {**REAL_SCORES, "f0": REAL_SCORES["f1"], "f1": REAL_SCORES["f0"]}
    sections = {
        "real__dssm__ranking": _ranking(REAL_SCORES), "real__dssm__summary": _summary(1.0, 2.0, 30.0),
        "real__dssm__metrics": _metrics(0.85),
        "ehrdiff__dssm__ranking": _ranking(REAL_SCORES), "ehrdiff__dssm__summary": _summary(0.9, 1.5, 20.0),
        "ehrdiff__dssm__metrics": _metrics(0.8),
        "kmimic__dssm__ranking": _ranking(reversed_scores), "kmimic__dssm__summary": _summary(0.5, 3.0, 40.0),
        "kmimic__dssm__metrics": _metrics(0.55),
        "synehrgy__dssm__ranking": missing_direction, "synehrgy__dssm__summary": _summary(0.7, 1.0, 10.0),
        "synehrgy__dssm__metrics": _metrics(0.7),
        "real_retrained_s1__dssm__ranking": _ranking(REAL_SCORES),
        "real_retrained_s1__dssm__summary": _summary(1.0, 2.0, 30.0), "real_retrained_s1__dssm__metrics": _metrics(0.84),
        "real_retrained_s2__dssm__ranking": _ranking(first_two_swapped),
        "real_retrained_s2__dssm__summary": _summary(1.0, 2.0, 30.0), "real_retrained_s2__dssm__metrics": _metrics(0.83),
    }
    retrained = (RetrainedModel("ehrdiff", "dssm"), RetrainedModel("kmimic", "dssm"), RetrainedModel("synehrgy", "dssm"),
                 RetrainedModel("real_retrained_s1", "dssm", 1), RetrainedModel("real_retrained_s2", "dssm", 2))
    table, report, figure = compare_susceptibility(retrained, PARAMS, **sections)

    assert len(table) == 12 and table[["model", "generator"]].drop_duplicates()["generator"].tolist() == [
        "real", "ehrdiff", "kmimic", "synehrgy", "real_retrained_s1", "real_retrained_s2"]
    by = table.set_index(["generator", "direction"])
    assert by.loc[("real", "1→0"), "spearman_rho"] == pytest.approx(1.0)
    assert by.loc[("ehrdiff", "0→1"), "spearman_rho"] == pytest.approx(1.0)
    assert by.loc[("kmimic", "0→1"), "spearman_rho"] == pytest.approx(-1.0)
    assert by.loc[("kmimic", "1→0"), "top_k_overlap"] == 0
    assert np.isnan(by.loc[("synehrgy", "1→0"), "spearman_rho"])
    assert by.loc[("synehrgy", "0→1"), "top_k_overlap"] == 5
    assert by.loc[("kmimic", "0→1"), "success_rate"] == 0.5 and by.loc[("kmimic", "0→1"), "mean_l0_best"] == 40.0
    assert by.loc[("ehrdiff", "1→0"), "mean_l1_best"] == 1.5 and by.loc[("ehrdiff", "1→0"), "test_auroc"] == 0.8

    assert "| dssm | kmimic | 0→1 | -1.000 (0.000) |" in report
    assert "0/5" in report and "agreement varies (ρ from -1.00 to 1.00)" in report
    assert "kmimic_dssm reaches only AUROC 0.550" in report
    # the baseline is read apart: not in the verdict, but as the ceiling the others are measured against
    assert by.loc[("real_retrained_s2", "0→1"), "spearman_rho"] == pytest.approx(1 - 12 / 990)
    # ceiling = mean of the two seeds' ρ = 0.9939; each synthetic ρ is given as a share of it
    assert ("dssm, 0→1: retrained on real data by the same recipe, the model reaches ρ = 0.99 (from 0.99 to 1.00 "
            "over 2 seeds) against the real model; that is about as high as ρ can be expected to get. Relative to "
            "it: ehrdiff 101%, kmimic -101%, synehrgy 101%.") in report
    assert "No real-vs-real baseline" not in report
    titles = [ax.get_title() for ax in figure.axes]
    assert "kmimic_dssm, 0→1: ρ = -1.00, τ = -1.00" in titles and len(figure.axes) == 10


def test_runs_of_one_generator_from_several_seeds_are_summarised_with_their_spread():
    first_two_swapped = {**REAL_SCORES, "f0": REAL_SCORES["f1"], "f1": REAL_SCORES["f0"]}
    reversed_scores = dict(zip(FEATURES, sorted(REAL_SCORES.values()), strict=True))
    sections = {"real__dssm__ranking": _ranking(REAL_SCORES), "real__dssm__summary": _summary(1.0, 2.0, 30.0),
                "real__dssm__metrics": _metrics(0.85)}
    runs = {"ehrdiff": (REAL_SCORES, 0.80), "ehrdiff_rep1": (first_two_swapped, 0.78),
            "ehrdiff_rep2": (reversed_scores, 0.70)}
    for label, (scores, auroc) in runs.items():
        sections |= {f"{label}__dssm__ranking": _ranking(scores), f"{label}__dssm__summary": _summary(1.0, 2.0, 30.0),
                     f"{label}__dssm__metrics": _metrics(auroc)}
    retrained = tuple(RetrainedModel(label, "dssm", None, "ehrdiff") for label in runs)
    table, report, figure = compare_susceptibility(retrained, PARAMS, **sections)
    assert table.loc[table["generator"] != "real", "generator"].unique().tolist() == list(runs)
    rho = np.array([1.0, 1 - 12 / 990, -1.0])
    mean, sd = rho.mean(), rho.std(ddof=1)
    half = stats.t.ppf(0.975, 2) * sd / np.sqrt(3)
    assert (f"| dssm | ehrdiff | 0→1 | 3 | {mean:.2f} ± {sd:.2f} | -1.00 – 1.00 | [{mean - half:.2f}, "
            f"{mean + half:.2f}] |") in report
    assert "test AUROC mean ± sd" in report and f"| {np.mean([0.80, 0.78, 0.70]):.3f} ± " in report
    # the figure shows the generator's first run only
    assert {ax.get_title().split(",")[0] for ax in figure.axes} == {"ehrdiff_dssm"}


def test_a_model_without_any_successful_attack_gives_blank_rows_not_a_crash():
    empty = _ranking(REAL_SCORES).iloc[0:0]
    sections = {"real__dssm__ranking": empty, "real__dssm__summary": {"success_rate": 0.0, "by_direction": {}},
                "real__dssm__metrics": _metrics(0.6),
                "kmimic__dssm__ranking": _ranking(REAL_SCORES), "kmimic__dssm__summary": _summary(1.0, 2.0, 9.0),
                "kmimic__dssm__metrics": _metrics(0.7)}
    table, report, figure = compare_susceptibility((RetrainedModel("kmimic", "dssm"),), PARAMS, **sections)
    assert table["direction"].tolist() == list(DIRECTIONS) * 2 and table["spearman_rho"].isna().all()
    assert table.loc[table["generator"] == "real", "attacked_records"].tolist() == [0, 0]
    assert table.loc[table["generator"] == "kmimic", "success_rate"].tolist() == [1.0, 1.0]
    assert "blank where a model (the real one included) had no successful attack" in report
    assert [ax.texts[0].get_text() for ax in figure.axes] == ["no successful attack"] * 2


def test_rankings_over_different_features_are_a_clear_error():
    other = _ranking({**{k: v for k, v in REAL_SCORES.items() if k != "f9"}, "HR": 0.5})
    with pytest.raises(ValueError, match=r"kmimic_dssm ranks other features .* only real \['f9'\], only kmimic_dssm \['HR'\]"):
        agreement_by_direction(_ranking(REAL_SCORES), other, 5, "kmimic_dssm")
    twice = pd.concat([_ranking(REAL_SCORES), _ranking(REAL_SCORES).head(1)], ignore_index=True)
    with pytest.raises(ValueError, match="lists feature"):
        agreement_by_direction(twice, _ranking(REAL_SCORES), 5, "x")
    with pytest.raises(ValueError, match="a cumulative_susceptibility table of the attack pipeline has"):
        agreement_by_direction(_ranking(REAL_SCORES).drop(columns="cumulative_s"), _ranking(REAL_SCORES), 5, "x")


# ------------------------------------------------------------------------------ structure and bad input
def _namespaces(pipe) -> set[str]:
    return {n.namespace for n in pipe.nodes}


BASELINES = ("real_retrained_s1", "real_retrained_s2", "real_retrained_s3")


def test_the_registry_retrains_the_models_that_read_the_generators_features():
    assert STUDIES[SOURCE].synthetic_attack_models == ("dssm",)
    assert STUDIES["mimic3"].synthetic_attack_models == ("lstm_sun2018", "dssm")
    # every generator from every seed (the main runs first), then the real baseline's seeds
    generators = ("ehrdiff", "synehrgy", "kmimic")
    assert retrained_models(STUDIES[SOURCE]) == [
        *(RetrainedModel(g, "dssm", None, g) for g in generators),
        *(RetrainedModel(f"{g}_rep{k}", "dssm", None, g) for g in generators for k in (1, 2)),
        *(RetrainedModel(f"real_retrained_s{seed}", "dssm", seed, "real_retrained") for seed in (1, 2, 3))]
    only_kmimic = dataclasses.replace(STUDIES[SOURCE], generators={"kmimic": "full"})
    with pytest.raises(ValueError, match="lstm_sun2018 reads 'sun2018' but kmimic synthesises 'full'"):
        retrained_models(dataclasses.replace(only_kmimic, synthetic_attack_models=("lstm_sun2018",)))
    with pytest.raises(ValueError, match="'logreg'.*only torch models can be attacked"):
        dataclasses.replace(only_kmimic, synthetic_attack_models=("logreg",))


def test_models_and_baseline_seeds_come_from_the_registry_not_the_parameters():
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_synthetic_attack.yml").read_text())
    for source in ("physionet2012", "mimic3"):
        assert not {"models", "real_baseline_seeds"} & set(params["synthetic_attack"][source])
    only_dssm = dataclasses.replace(STUDIES["mimic3"], synthetic_attack_models=("dssm",))
    runs = [f"{g}{rep}" for g in ("ehrdiff", "synehrgy", "kmimic") for rep in ("", "_rep1", "_rep2")]
    assert _namespaces(synthetic_attack_pipeline("mimic3", only_dssm)) == {"synthetic_attack"} | {
        f"synthetic_attack.{g}_dssm" for g in (*runs, *BASELINES)}
    one_seed = dataclasses.replace(only_dssm, generator_repeats=())
    assert _namespaces(synthetic_attack_pipeline("mimic3", one_seed)) == {"synthetic_attack"} | {
        f"synthetic_attack.{g}_dssm" for g in ("ehrdiff", "synehrgy", "kmimic", *BASELINES)}
    no_baseline = dataclasses.replace(only_dssm, real_baseline_seeds=())
    assert not any("real_retrained" in n.namespace for n in synthetic_attack_pipeline("mimic3", no_baseline).nodes)


def test_registry_has_the_stage_per_source_outside_the_default_run():
    registry = pipeline_registry.register_pipelines()
    assert "synthetic_attack" not in pipeline_registry.MAIN_STUDY
    assert not any(n.namespace.startswith("synthetic") for n in registry["__default__"].nodes)
    assert pipeline_registry.STAGES.index("synthetic_attack") == pipeline_registry.STAGES.index("synthetic_evaluation") + 1
    assert pipeline_registry.SYNTHETIC_STUDY[-1] == "synthetic_attack"
    assert set(registry["physionet2012.synthetic_attack"].nodes) <= set(registry["physionet2012.synthetic"].nodes)
    namespaces = _namespaces(registry["physionet2012.synthetic_attack"])
    runs = [f"{g}{rep}" for g in ("ehrdiff", "synehrgy", "kmimic") for rep in ("", "_rep1", "_rep2")]
    assert namespaces == {"synthetic_attack", *(f"synthetic_attack.{g}_dssm" for g in (*runs, *BASELINES))}
    assert _namespaces(registry["mimic3.synthetic_attack"]) >= {"synthetic_attack.kmimic_lstm_sun2018",
                                                                 "synthetic_attack.kmimic_dssm"}
    assert registry["synthetic_attack"] is registry["physionet2012.synthetic_attack"]


def test_run_parameters_never_change_the_stage(tmp_path: Path):
    """--params cannot reshape the graph: what is retrained is the registry's table."""
    from kedro.framework.project import pipelines

    from ehr_adversarial.session import StudySession

    project_copy(tmp_path)
    override = {"synthetic_attack": {"mimic3": {"models": ["dssm"], "real_baseline_seeds": []}}}
    expected = _namespaces(pipeline_registry.register_pipelines()["mimic3.synthetic_attack"])
    for runtime_params in (override, None):
        with StudySession.create(project_path=tmp_path, env="mimic3_demo", runtime_params=runtime_params) as session:
            session.load_context()
            assert session.environment_source() == "mimic3"
            assert _namespaces(pipelines["mimic3.synthetic_attack"]) == expected
    assert {"synthetic_attack.kmimic_lstm_sun2018", "synthetic_attack.real_retrained_s1_dssm"} <= expected


def test_catalog_resolves_every_output_to_its_own_versioned_file():
    catalog = DataCatalog.from_config(project_config("catalog", "physionet2012"))

    def files(pipe):
        return {name: str(catalog.get(name)._filepath) for name in pipe.all_outputs()}

    stages = stage_pipelines(SOURCE, STUDIES[SOURCE])
    ours = files(stages["synthetic_attack"])
    for name in ours:
        assert getattr(catalog.get(name), "_version", None) is not None, f"{name} is not versioned"
    root = f"data/%s/{SOURCE}/synthetic_attack"
    assert ours["synthetic_attack.kmimic_dssm.model"] == f"{root % '06_models'}/kmimic_dssm/model.pt"
    assert ours["synthetic_attack.kmimic_dssm.test_metrics"] == f"{root % '08_reporting'}/kmimic_dssm/test_metrics.json"
    assert ours["synthetic_attack.ehrdiff_dssm.cumulative_susceptibility"] == (
        f"{root % '08_reporting'}/ehrdiff_dssm/cumulative_susceptibility.csv")
    assert ours["synthetic_attack.real_retrained_s1_dssm.records"] == (
        f"{root % '07_model_output'}/real_retrained_s1_dssm/records.parquet")
    assert ours["synthetic_attack.comparison"] == f"{root % '08_reporting'}/comparison.csv"
    assert len(set(ours.values())) == len(ours)
    others = {}
    for stage in ("training", "attack", "synthesis", "synthetic_evaluation"):
        others |= files(stages[stage])
    clashes = {name: path for name, path in ours.items() if path in set(others.values())}
    assert not clashes, f"synthetic_attack outputs would overwrite other stages' files: {clashes}"


# ------------------------------------------------------------------------------ training and the whole pipeline
def test_training_on_a_synthetic_bundle_uses_only_it_and_is_reproducible():
    spec = attack_spec("full", 6)
    synthetic = synthetic_bundle(200, 6, seed=7, start_id=500_000)
    without_delta = {k: v for k, v in synthetic.items() if k != "delta"}  # generators may leave delta out
    model, history = train_on_synthetic(without_delta, DSSM_CONFIG, spec, PARAMS, seed=1, device="cpu")
    assert model.config["architecture"] == "dssm" and model.config["feature_names"] == spec["feature_names"]
    assert 1 <= len(history) <= DSSM_CONFIG["max_epochs"] and history["best"].sum() == 1
    fit_index, monitor_index = stratified_holdout(synthetic["y"], 0.2, seed=1)
    assert len(monitor_index) == 40 and np.intersect1d(fit_index, monitor_index).size == 0
    expected_shift = prior_shift(class_weights(synthetic["y"][fit_index], "balanced"))
    assert model.config["probability_shift"] == pytest.approx(expected_shift)
    again, _ = train_on_synthetic(without_delta, DSSM_CONFIG, spec, PARAMS, seed=1, device="cpu")
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match=r"the synthetic bundle .*X has shape \(200, 48, 6\), expected \(200, 48, 4\)"):
        train_on_synthetic(synthetic, DSSM_CONFIG, attack_spec("sun2018", 4), PARAMS, seed=1, device="cpu")


def test_pipeline_for_one_generator_trains_scores_attacks_and_compares():
    spec = attack_spec("full", 6)
    real_ranking = _ranking({name: float(6 - i) for i, name in enumerate(spec["feature_names"])})
    inputs = {
        "synthesis.kmimic.synthetic": _clear_signal(synthetic_bundle(240, 6, seed=11, start_id=500_000)),
        "features.full.model_input_test": _clear_signal(synthetic_bundle(120, 6, seed=12, start_id=1000)),
        "features.full.feature_spec": spec,
        "training.dssm.selected_config": DSSM_CONFIG,
        "attack.dssm.cumulative_susceptibility": real_ranking,
        "attack.dssm.summary": _summary(1.0, 2.0, 30.0),
        "training.dssm.metrics": _metrics(0.8),
        f"params:synthetic_attack.{SOURCE}": PARAMS,
        f"params:attack.{SOURCE}": {**ATTACK, "n_records": 16, "lr": 0.5, "max_iterations": 60},
        "params:seed": 3, "params:device": "cpu",
    }
    kmimic_only = dataclasses.replace(STUDIES[SOURCE], generators={"kmimic": "full"}, real_baseline_seeds=(),
                                      generator_repeats=())
    pipe = synthetic_attack_pipeline(SOURCE, kmimic_only)
    assert pipe.inputs() == set(inputs)
    with_baseline = synthetic_attack_pipeline(SOURCE, dataclasses.replace(kmimic_only, real_baseline_seeds=(4, 7)))
    assert with_baseline.inputs() == set(inputs) | {"features.full.model_input_train"}
    assert {"synthetic_attack.real_retrained_s4_dssm.model",
            "synthetic_attack.real_retrained_s7_dssm.model"} <= with_baseline.all_outputs()
    train = next(n for n in with_baseline.nodes if n.name == "synthetic_attack.real_retrained_s4_dssm.train_on_synthetic")
    assert "features.full.model_input_train" in train.inputs and "params:seed" not in train.inputs
    assert train.func.keywords == {"seed": 4}  # each baseline model has its own seed, not the run's
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()})
    for name in pipe.all_outputs():
        catalog[name] = KeptMemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)

    metrics = catalog.load("synthetic_attack.kmimic_dssm.test_metrics")
    predictions = catalog.load("synthetic_attack.kmimic_dssm.test_predictions")
    assert metrics["trained_on"] == "synthetic" and metrics["n_test"] == 120 == len(predictions)
    assert metrics["test"]["auroc"]["ci_low"] <= metrics["test"]["auroc"]["value"] and metrics["test"]["auroc"]["value"] > 0.9
    records = catalog.load("synthetic_attack.kmimic_dssm.records")
    ranking = catalog.load("synthetic_attack.kmimic_dssm.cumulative_susceptibility")
    assert len(records) == 16 and set(records["direction"]) == set(DIRECTIONS) and records["success"].mean() >= 0.8
    assert set(ranking["feature"]) == set(spec["feature_names"])
    # the signal lives in f0, and so does the susceptibility of the model that learnt it
    assert (ranking[ranking["rank"] == 1]["feature"] == "f0").all()

    table = catalog.load("synthetic_attack.comparison")
    assert table["generator"].unique().tolist() == ["real", "kmimic"] and len(table) == 4
    ours = table[table["generator"] == "kmimic"].set_index("direction")

    for direction, frame in ranking.groupby("direction"):
        expected = frame.set_index("feature")["cumulative_s"].loc[spec["feature_names"]].rank().corr(
            pd.Series(np.arange(6, 0, -1.0), index=spec["feature_names"]).rank())
        assert ours.loc[direction, "spearman_rho"] == pytest.approx(expected, nan_ok=True)
        top5 = frame.sort_values("feature").sort_values("cumulative_s", ascending=False, kind="stable")["feature"][:5]
        assert ours.loc[direction, "top_k_overlap"] == len(set(top5) & {"f0", "f1", "f2", "f3", "f4"}) >= 4
        summary = catalog.load("synthetic_attack.kmimic_dssm.summary")["by_direction"][direction]
        assert ours.loc[direction, "success_rate"] == summary["success_rate"]
    assert (ours["test_auroc"] == metrics["test"]["auroc"]["value"]).all()
    report = catalog.load("synthetic_attack.report")
    assert report.startswith("# Do models trained on synthetic data") and "| dssm | kmimic |" in report
    assert catalog.load("synthetic_attack.figure").axes
