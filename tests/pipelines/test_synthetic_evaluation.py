"""Synthetic-data evaluation pipeline: structure, bad input, and a run on real PhysioNet 2012 bundles
with stand-in "generators" whose answers are known:

- copier:  the generator's training records themselves (new ids) → MIA ≈ 1, exact matches 1,
           perfect fidelity, TSTR = TRTR;
- sampler: real records of the same population the generator never saw → MIA ≈ 0.5, no exact
           matches, discriminator ≈ 0.5, TSTR ≈ TRTR;
- noised:  the training records with Gaussian noise → in between.
The "generator's training split" is half of the real train split; the other half is the sampler.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog
from matplotlib.figure import Figure

from ehr_adversarial.pipeline_registry import STUDIES
from ehr_adversarial.pipelines.synthetic_evaluation import create_pipeline
from ehr_adversarial.synthetic_evaluation.evaluate import (
    attach_codes,
    evaluate_fidelity,
    evaluate_privacy,
    predict_mortality,
)
from tests.conftest import project_config, project_parameters, run_in_memory

SOURCE = "physionet2012"
STAND_INS = {"copier": "full", "sampler": "full", "noised": "full"}
# The sampler again from other unseen records: a second run of one "generator", as a seed repeat is.
STAND_IN_RUNS = {**{g: (g, 0) for g in STAND_INS}, "sampler_rep1": ("sampler", 1)}


def evaluation_pipeline(source: str, generators: dict[str, str] | None = None,
                        runs: dict[str, tuple[str, int]] | None = None):
    """The synthetic-evaluation stage of `source`: the registry's generators and runs, or `generators` (and `runs`)."""
    study = STUDIES[source]
    if generators is None:
        return create_pipeline(source, study.generators, study.code_generators, study.generator_runs)
    return create_pipeline(source, generators, study.code_generators, runs)


def _quick_settings() -> dict:
    """The project's settings, shrunk so the test runs in about a minute on 2 CPU cores."""
    settings = copy.deepcopy(project_parameters()["synthetic_evaluation"][SOURCE])
    settings["fidelity"].update(discriminator_folds=3, discriminator_max_records=1000, mmd_max_records=1000,
                                per_column_folds=2, per_column_max_records=500, per_column_max_iter=20)
    settings["utility"]["n_bootstrap"] = 200
    settings["utility"]["flat_models"]["gradient_boosting"]["max_iter"] = 60
    settings["utility"]["sequence_model"].update(max_epochs=2, hyperparameters={"hidden_size": 16})
    return settings


def _hand_bundle(n: int, n_features: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "X": rng.random((n, 48, n_features)).astype(np.float32),
        "mask": rng.random((n, 48, n_features)) < 0.3,
        "static": rng.random((n, 2)).astype(np.float32),
        "y": np.arange(n) % 4 == 0,
        "record_id": np.arange(n, dtype=np.int64) + 1000 * seed,
    }


# ------------------------------------------------------------------------------ structure
def test_each_generator_run_has_its_namespace_and_trtr_runs_once_per_feature_set():
    pipe = evaluation_pipeline(SOURCE)
    generators, runs = STUDIES[SOURCE].generators, STUDIES[SOURCE].generator_runs
    assert {n.namespace for n in pipe.nodes} == {"synthetic_evaluation"} | {
        f"synthetic_evaluation.{run}" for run in runs} | {f"synthetic_evaluation.{fs}" for fs in set(generators.values())}
    assert sum(n.name.endswith("train_on_real_test_on_real") for n in pipe.nodes) == len(set(generators.values()))
    # three disjoint roles: train, validation (settings; never read here), holdout = the test split
    assert not any("model_input_validation" in name for name in pipe.datasets())
    for n in pipe.nodes:
        if any(i.endswith("model_input_test") for i in n.inputs):
            assert n.name.endswith(("train_on_synthetic_test_on_real", "train_on_real_test_on_real",
                                    "evaluate_privacy", "evaluate_fidelity")), n.name
        if n.namespace == "synthetic_evaluation.full":
            assert not any(i.endswith(".synthetic") for i in n.inputs)
    for g, fs in generators.items():
        inputs = set().union(*(n.inputs for n in pipe.nodes if n.namespace == f"synthetic_evaluation.{g}"))
        assert {f"synthesis.{g}.synthetic", f"features.{fs}.model_input_train",
                f"synthetic_evaluation.{fs}.trtr_predictions"} <= inputs
    assert {"synthetic_evaluation.comparison", "synthetic_evaluation.seed_summary",
            "synthetic_evaluation.comparison_report"} <= pipe.all_outputs()
    compare = next(n for n in pipe.nodes if n.name == "synthetic_evaluation.compare_generators")
    assert {f"synthetic_evaluation.{run}.tstr_predictions" for run in runs} <= set(compare.inputs)
    for g in runs:
        assert f"synthetic_evaluation.{g}.dcr_histogram" in pipe.all_outputs()
    with pytest.raises(ValueError, match="no generators to evaluate for physionet2012"):
        evaluation_pipeline(SOURCE, {})


def test_catalog_resolves_every_output_to_a_versioned_file():
    from kedro.io import DataCatalog as Catalog

    for source, env in (("physionet2012", "physionet2012"), ("mimic3", "mimic3_demo")):
        catalog = Catalog.from_config(project_config("catalog", env))
        for name in sorted(evaluation_pipeline(source).all_outputs()):
            dataset = catalog.get(name)
            assert dataset is not None, name
            assert getattr(dataset, "_version", None) is not None, f"{name} is not versioned"
            assert f"/{source}/synthetic_evaluation/" in str(dataset._filepath), name


# ------------------------------------------------------------------------------ bad input
def test_a_synthetic_bundle_of_another_feature_set_is_refused():
    spec = {"feature_set": "full", "feature_names": ["HR", "Na", "K"], "static_names": ["age", "gender"]}
    settings = _quick_settings()
    real, other = _hand_bundle(60, 3, seed=1), _hand_bundle(60, 2, seed=2)
    with pytest.raises(ValueError, match=r"synthetic X has \(hours, features\) \(48, 2\) but the real 'full' bundle \(48, 3\)"):
        evaluate_fidelity(other, real, spec, settings, seed=0)
    with pytest.raises(ValueError, match="trained on another feature set"):
        predict_mortality(other, real, spec, settings, seed=0, device="cpu")
    coded = dict(real, codes=np.zeros((60, 4), dtype=np.uint8), code_names=np.array(["401", "428", "584", "E849"]))
    with pytest.raises(ValueError, match="code matrix but the real bundle has none"):
        evaluate_privacy(coded, real, _hand_bundle(30, 3, seed=3), spec, settings, seed=0)


def test_a_holdout_that_overlaps_the_train_split_is_refused():
    spec = {"feature_set": "full", "feature_names": ["HR", "Na", "K"], "static_names": ["age", "gender"]}
    real = _hand_bundle(60, 3, seed=1)
    with pytest.raises(ValueError, match="in both the train and the holdout split"):
        evaluate_privacy(real, real, real, spec, _quick_settings(), seed=0)


# ------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def real_bundles(physionet2012_features: DataCatalog) -> dict:
    """The real PhysioNet 2012 `full` bundles, built in memory by the ingestion and features pipelines."""
    return {name: physionet2012_features.load(f"features.full.{name}") for name in
            ("model_input_train", "model_input_validation", "model_input_test", "feature_spec")}


def _records(bundle: dict, rows: np.ndarray, new_ids: bool = False) -> dict:
    out = {k: (v[rows] if isinstance(v, np.ndarray) and v.shape[:1] == bundle["y"].shape else v) for k, v in bundle.items()}
    if new_ids:
        out["record_id"] = 900_000_000 + np.arange(len(rows), dtype=np.int64)
    return out


@pytest.fixture(scope="module")
def stand_in_run(real_bundles) -> DataCatalog:
    train = real_bundles["model_input_train"]
    order = np.random.default_rng(0).permutation(len(train["y"]))
    seen, unseen = np.sort(order[:1600]), np.sort(order[1600:])
    generator_train = _records(train, seen)
    noised = _records(train, seen, new_ids=True)
    rng = np.random.default_rng(1)
    noised["X"] = np.clip(noised["X"] + rng.normal(scale=0.05, size=noised["X"].shape), 0, 1).astype(np.float32)
    noised["static"] = np.clip(noised["static"] + rng.normal(scale=0.05, size=noised["static"].shape), 0, 1).astype(np.float32)
    datasets = {
        "features.full.model_input_train": generator_train,
        "features.full.model_input_test": real_bundles["model_input_test"],
        "features.full.feature_spec": real_bundles["feature_spec"],
        "synthesis.copier.synthetic": _records(train, seen, new_ids=True),
        "synthesis.sampler.synthetic": _records(train, unseen, new_ids=True),
        "synthesis.sampler_rep1.synthetic": _records(train, np.sort(rng.permutation(unseen)[:1200]), new_ids=True),
        "synthesis.noised.synthetic": noised,
    }
    parameters = {"synthetic_evaluation": {SOURCE: _quick_settings()}, "seed": 2012, "device": "cpu"}
    pipe = evaluation_pipeline(SOURCE, STAND_INS, STAND_IN_RUNS)
    assert pipe.inputs() - {"params:synthetic_evaluation.physionet2012", "params:seed", "params:device"} == set(datasets)
    return run_in_memory(pipe, parameters, datasets)


@pytest.mark.slow
def test_real_bundles_have_the_expected_sizes(real_bundles):
    # set-a → 3200 train / 800 validation; set-b (568 deaths, Outcomes-b.txt) → test
    assert len(real_bundles["model_input_train"]["y"]) == 3200
    assert len(real_bundles["model_input_validation"]["y"]) == 800
    assert int(real_bundles["model_input_test"]["y"].sum()) == 568


@pytest.mark.slow
def test_a_copying_generator_is_caught(stand_in_run):
    fid = stand_in_run.load("synthetic_evaluation.copier.fidelity_metrics")
    priv = stand_in_run.load("synthetic_evaluation.copier.privacy_metrics")
    util = stand_in_run.load("synthetic_evaluation.copier.utility_metrics")
    assert fid["n_real"] == fid["n_synthetic"] == 1600
    assert fid["pearson_r"]["means"] == pytest.approx(1.0) and fid["ks"]["max"] == 0.0
    assert fid["correlation_distance"] == {"frobenius": 0.0, "mean_abs_diff": 0.0}
    # each side is subsampled to 1000 records, so only some copies meet their twin: ≈ 0.5
    assert fid["discriminator"]["auc"] == pytest.approx(0.5, abs=0.03) and abs(fid["mmd"]["mmd2"]) < 1e-3
    assert fid["autocorrelation"]["mean_abs_diff"] == 0.0
    assert fid["co_measurement"]["mean_abs_diff"] == 0.0  # the same variables measured at the same hours
    # every synthetic record is a copy: no authentic record; PRDC of identical tables
    assert fid["alpha_precision"]["authenticity"] == 0.0
    assert fid["alpha_precision"]["n_real"] == fid["prdc"]["n_synthetic"] == 1600
    assert (fid["prdc"]["precision"], fid["prdc"]["recall"], fid["prdc"]["coverage"]) == (1.0, 1.0, 1.0)
    assert fid["prdc"]["density"] == pytest.approx(1.0, abs=0.01)
    assert fid["column_distances"]["wasserstein"]["max"] == 0.0 and fid["column_distances"]["jensen_shannon"]["max"] == 0.0
    assert priv["membership_inference"]["auc"] > 0.99
    assert priv["domias"]["auc"] > 0.99 and priv["identifiability"]["score"] == 1.0
    assert priv["exact_match_rate"] == 1.0 and priv["dcr_synthetic_to_train"]["median"] == 0.0
    assert (priv["n_train"], priv["n_holdout"]) == (1600, 4000)  # the holdout is the test split (set-b)
    assert priv["exact_match_rate_holdout_baseline"] == 0.0 and priv["dcr_holdout_to_train"]["median"] > 0
    assert priv["attribute_inference"]["static.gender"]["auc_members"] == 1.0
    assert util["n_test"] == 4000 and util["n_test_positive"] == 568
    for model, scores in util["models"].items():  # same data, same seed: the same model
        assert scores["tstr_over_trtr"]["auroc"]["value"] == pytest.approx(1.0, abs=1e-9), model


@pytest.mark.slow
def test_a_perfect_sampler_looks_like_the_population(stand_in_run):
    fid = stand_in_run.load("synthetic_evaluation.sampler.fidelity_metrics")
    priv = stand_in_run.load("synthetic_evaluation.sampler.privacy_metrics")
    util = stand_in_run.load("synthetic_evaluation.sampler.utility_metrics")
    assert fid["pearson_r"]["means"] > 0.99
    assert fid["discriminator"]["auc"] == pytest.approx(0.5, abs=0.06)
    # unseen real records: every detector family near 0.5, as on its floor (real holdout vs real train)
    floor = fid["discriminator"]["floor"]
    assert set(fid["discriminator"]["families"]) == set(floor["families"]) == {"gbm", "logistic_regression", "mlp"}
    assert floor["n_per_side"] == fid["discriminator"]["n_per_side"] == 1000
    for family in floor["families"]:
        assert fid["discriminator"]["families"][family]["auc"] == pytest.approx(0.5, abs=0.07), family
        assert floor["families"][family]["auc"] == pytest.approx(0.5, abs=0.07), family
    assert fid["discriminator"]["per_column"]["max_auc"] < 0.65  # the top of 225 one-column detectors on 500 vs 500
    assert priv["membership_inference"]["auc"] == pytest.approx(0.5, abs=0.05)
    assert priv["domias"]["auc"] == pytest.approx(0.5, abs=0.07)  # 400 members vs 400 non-members
    assert priv["identifiability"]["score_at_holdout_size"] == pytest.approx(priv["identifiability"]["holdout_baseline"], abs=0.05)
    assert priv["exact_match_rate"] == 0.0
    assert priv["dcr_median_ratio_to_baseline"] == pytest.approx(1.0, abs=0.1)
    assert priv["share_closer_to_train"] == pytest.approx(0.5, abs=0.05)
    assert util["models"]["logistic_regression"]["tstr_over_trtr"]["auroc"]["value"] == pytest.approx(1.0, abs=0.05)
    assert util["models"]["logistic_regression"]["trtr"]["auroc"]["value"] > 0.75


@pytest.mark.slow
def test_noised_copies_leak_without_exact_matches_and_the_report_compares_all(stand_in_run):
    noised = stand_in_run.load("synthetic_evaluation.noised.privacy_metrics")
    # noise far smaller than the gaps between patients hides no one: the exact-match rate is
    # 0, yet membership inference still wins and DCR/NNDR sit far below the real baseline
    assert noised["exact_match_rate"] == 0.0
    assert noised["membership_inference"]["auc"] > 0.95
    assert noised["domias"]["auc"] > 0.95 and noised["identifiability"]["score"] == 1.0
    assert noised["dcr_median_ratio_to_baseline"] < 0.5
    assert noised["nndr_synthetic_to_train"]["median"] < 0.5 < noised["nndr_holdout_to_train"]["median"]
    fid = stand_in_run.load("synthetic_evaluation.noised.fidelity_metrics")
    sampler = stand_in_run.load("synthetic_evaluation.sampler.fidelity_metrics")
    # most noised copies still sit inside their original's nearest-neighbour ball; unseen real records do not
    assert fid["alpha_precision"]["authenticity"] < sampler["alpha_precision"]["authenticity"] - 0.3
    assert fid["column_distances"]["wasserstein"]["mean"] > 3 * sampler["column_distances"]["wasserstein"]["mean"]
    assert fid["discriminator"]["auc"] > 0.9 and fid["ks"]["mean"] > 0.1
    # Gaussian noise takes binary statics off {0, 1}: a one-column detector sees it, a rank test hardly
    top = fid["discriminator"]["per_column"]["columns"][0]
    assert top["auc"] > 0.95 and top["real_mode_share"] > 0.3 and top["synthetic_share_at_real_mode"] < 0.05
    assert any(g["mann_whitney_auc"] < 0.6 and g["auc"] > 0.9 for g in fid["discriminator"]["per_column"]["columns"])
    assert fid["autocorrelation"]["mean_abs_diff_per_lag"][0] > 0.1  # white noise breaks hour-to-hour ACF
    mia = {g: stand_in_run.load(f"synthetic_evaluation.{g}.privacy_metrics")["membership_inference"]["auc"] for g in STAND_IN_RUNS}

    table = stand_in_run.load("synthetic_evaluation.comparison")
    assert table["generator"].tolist() == list(STAND_IN_RUNS)
    assert table["run_of"].tolist() == [g for g, _ in STAND_IN_RUNS.values()]
    assert table.set_index("generator")["mia_auc"].to_dict() == pytest.approx(mia)
    report = stand_in_run.load("synthetic_evaluation.comparison_report")
    for generator in STAND_INS:
        assert f"| {generator} |" in report
    assert "membership-inference AUC ≤ 0.55" in report
    assert {"alpha_precision", "prdc_coverage", "domias_auc", "identifiability", "jensen_shannon_mean"} <= set(table.columns)
    assert "| DOMIAS AUC |" in report and "## Sample-level fidelity" in report
    assert "co_measurement_mean_abs_diff" in table.columns and "| co-measurement mean abs Δ Jaccard |" in report
    # every table's header has as many cells as its delimiter row (a label's own pipes are escaped: corr mean \|Δ\|)
    lines = report.splitlines()
    for header, delimiter in zip(lines[:-1], lines[1:], strict=True):
        if header.startswith("| generator |"):
            assert len(re.split(r"(?<!\\)\|", header)) == delimiter.count("|") + 1, header
    assert "corr mean \\|Δ\\|" in report
    assert {f"detector_{f}_{k}" for f in ("gbm", "logistic_regression", "mlp") for k in ("auc", "floor")} <= set(table.columns)
    assert "| GBM AUC | logreg AUC | MLP AUC | floor: real holdout vs train (GBM / logreg / MLP) |" in report
    assert "## What gives each generator away" in report and f"- **noised**: {fid['discriminator']['per_column']['columns'][0]['column']} " in report
    variables = stand_in_run.load("synthetic_evaluation.noised.variable_statistics")
    assert {"wasserstein", "jensen_shannon"} <= set(variables.columns) and variables["jensen_shannon"].notna().all()
    variables = stand_in_run.load("synthetic_evaluation.copier.variable_statistics")
    assert len(variables) == 8 + 6 * 36 + 1  # statics, 6 summaries × 36 features, label
    for g in STAND_INS:
        for figure in ("mean_scatter", "variable_distributions", "dcr_histogram"):
            assert isinstance(stand_in_run.load(f"synthetic_evaluation.{g}.{figure}"), Figure)


@pytest.mark.slow
def test_the_seed_summary_spreads_each_generator_over_its_runs(stand_in_run):
    summary = stand_in_run.load("synthetic_evaluation.seed_summary").set_index(["generator", "metric"])
    table = stand_in_run.load("synthetic_evaluation.comparison").set_index("generator")
    assert set(summary.index.get_level_values("generator")) == set(STAND_INS)
    assert summary.loc["sampler", "n_runs"].eq(2).all() and summary.loc["copier", "n_runs"].eq(1).all()
    # one run: its own value, no spread, and the pooled interval is the run's own test bootstrap
    copier = stand_in_run.load("synthetic_evaluation.copier.utility_metrics")["models"]["logistic_regression"]
    row = summary.loc[("copier", "logistic_regression TSTR AUROC")]
    assert (row["mean"], row["sd"]) == (pytest.approx(copier["tstr"]["auroc"]["value"]), 0.0)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(copier["tstr"]["auroc"]["ci_low"]),
                                               pytest.approx(copier["tstr"]["auroc"]["ci_high"]))
    # two runs: the mean and range of the two, an interval around both
    runs = [stand_in_run.load(f"synthetic_evaluation.{run}.utility_metrics")["models"]["logistic_regression"]
            ["tstr_over_trtr"]["auroc"]["value"] for run in ("sampler", "sampler_rep1")]
    row = summary.loc[("sampler", "logistic_regression TSTR/TRTR AUROC")]
    assert (row["mean"], row["min"], row["max"]) == pytest.approx((np.mean(runs), min(runs), max(runs)))
    assert row["ci_low"] < min(runs) and max(runs) < row["ci_high"]
    mia = table.loc[["sampler", "sampler_rep1"], "mia_auc"]
    assert summary.loc[("sampler", "MIA AUC"), "mean"] == pytest.approx(mia.mean())
    assert summary.loc[("sampler", "MIA AUC"), "sd"] == pytest.approx(mia.std(ddof=1))
    report = stand_in_run.load("synthetic_evaluation.comparison_report")
    assert "## Over generator seeds" in report and "### sampler (2 runs)" in report and "| sampler_rep1 |" in report
    assert report.index("## Over generator seeds") < report.index("## Fidelity")


# ------------------------------------------------------------------------------ MIMIC-III codes
def test_attach_codes_uses_the_training_code_columns():
    bundle = {"y": np.array([0, 1, 0]), "record_id": np.array([11, 12, 13])}
    static = pd.DataFrame({"record_id": [11, 12, 13], "hadm_id": [101, 102, 103]})
    diagnoses = pd.DataFrame({"hadm_id": [101, 101, 102, 103], "icd9_3digit": ["401", "E849", "250", "999"]})
    train_codes = {"code_names": np.array(["250", "401", "428", "E849"])}
    coded = attach_codes(bundle, static, diagnoses, train_codes)
    assert coded["code_names"].tolist() == ["250", "401", "428", "E849"]
    # 999 was never seen in training: no column; 428 is in no record here: a zero column
    np.testing.assert_array_equal(coded["codes"], [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert coded["codes"].dtype == np.uint8 and coded["record_id"] is bundle["record_id"]


def test_mimic3_pipeline_compares_code_generators_with_coded_real_bundles():
    pipe = evaluation_pipeline("mimic3")
    ehrdiff_inputs = set().union(*(n.inputs for n in pipe.nodes if n.namespace == "synthetic_evaluation.ehrdiff"))
    kmimic_inputs = set().union(*(n.inputs for n in pipe.nodes if n.namespace == "synthetic_evaluation.kmimic"))
    assert "synthetic_evaluation.sun2018_codes.model_input_train" in ehrdiff_inputs
    assert "features.sun2018.feature_spec" in ehrdiff_inputs
    assert "features.sun2018.model_input_train" in kmimic_inputs  # K-MIMIC writes no codes
    assert {"ingestion.diagnoses", "synthesis.code_matrix_train", "ingestion.static"} <= pipe.inputs()
    # PhysioNet 2012 has no diagnoses: no coded bundles at all
    assert not any("_codes" in name or "diagnoses" in name for name in evaluation_pipeline(SOURCE).datasets())


@pytest.mark.slow
def test_mimic3_demo_copier_with_codes(mimic3_demo_dir, mimic3_features: DataCatalog):
    """The MIMIC-III demo through ingestion and features; the synthesis code matrix of the train
    split; a copying 'generator' with codes: the evaluation catches it, codes included."""
    from ehr_adversarial.synthesis.stages import build_code_matrix

    real = mimic3_features
    train = real.load("features.sun2018.model_input_train")
    static, diagnoses = real.load("ingestion.static"), real.load("ingestion.diagnoses")
    code_matrix_train = build_code_matrix(train, static, diagnoses)

    # independent check of the code columns from DIAGNOSES_ICD.csv.gz itself
    raw = pd.read_csv(mimic3_demo_dir / "DIAGNOSES_ICD.csv.gz", dtype={"icd9_code": str}).dropna(subset=["icd9_code"])
    raw["category"] = np.where(raw["icd9_code"].str.startswith("E"), raw["icd9_code"].str[:4], raw["icd9_code"].str[:3])
    hadm = static.set_index("record_id").loc[train["record_id"], "hadm_id"].to_numpy()
    per_record = [set(raw.loc[raw["hadm_id"] == h, "category"]) for h in hadm]
    coded_train = attach_codes(train, static, diagnoses, code_matrix_train)
    names = coded_train["code_names"].tolist()
    assert set(names) == set().union(*per_record)
    for row in range(len(hadm)):
        assert {names[j] for j in np.flatnonzero(coded_train["codes"][row])} == per_record[row]

    settings = _quick_settings()
    settings["fidelity"].update(discriminator_folds=2)
    settings["privacy"]["attribute_targets"] = ["static.gender", "code.401"]
    # The copier stands in for EHRDiff, a generator that writes codes on sources with diagnoses.
    datasets = {
        **{f"features.sun2018.model_input_{s}": real.load(f"features.sun2018.model_input_{s}")
           for s in ("train", "validation", "test")},
        "features.sun2018.feature_spec": real.load("features.sun2018.feature_spec"),
        "ingestion.static": static, "ingestion.diagnoses": diagnoses, "synthesis.code_matrix_train": code_matrix_train,
        "synthesis.ehrdiff.synthetic": dict(coded_train, record_id=900_000_000 + np.arange(len(train["y"]))),
    }
    parameters = {"synthetic_evaluation": {"mimic3": settings}, "seed": 2012, "device": "cpu"}
    run = run_in_memory(evaluation_pipeline("mimic3", {"ehrdiff": "sun2018"}), parameters, datasets)
    fid = run.load("synthetic_evaluation.ehrdiff.fidelity_metrics")
    assert fid["pearson_r"]["codes"] == pytest.approx(1.0)
    assert fid["nonzero_code_columns"] == {"real": len(names), "synthetic": len(names), "of": len(names)}
    priv = run.load("synthetic_evaluation.ehrdiff.privacy_metrics")
    assert priv["exact_match_rate"] == 1.0 and priv["membership_inference"]["auc"] > 0.95
    holdout = run.load("synthetic_evaluation.sun2018_codes.model_input_test")
    assert holdout["code_names"].tolist() == names and holdout["codes"].shape == (len(holdout["y"]), len(names))
    variables = run.load("synthetic_evaluation.ehrdiff.variable_statistics")["variable"].tolist()
    assert sum(v.startswith("code.") for v in variables) == len(names)
