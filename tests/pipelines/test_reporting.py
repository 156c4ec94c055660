"""Reporting pipeline: known-answer tests of the trend, the paper comparison and the seed stability,
and the namespaced pipeline run in memory after the attack on a small trained LSTM."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ehr_adversarial.pipeline_registry import STUDIES, register_pipelines
from ehr_adversarial.pipelines import attack, reporting
from ehr_adversarial.reporting.attack_report import (
    attack_with_seeds,
    hourly_trend,
    paper_comparison,
    ranking_stability,
)
from tests.conftest import KeptMemoryDataset
from tests.pipelines.conftest import ATTACK

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# A shorter attack than test_attack's: three of them run here (the main seed and two more).
SHORT_ATTACK = {**ATTACK, "n_records": 24, "search": "continuation", "max_iterations": 60}
REPORTING = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_reporting.yml").read_text())["reporting"]["physionet2012"]


def _susceptibility(s_by_hour: dict[str, np.ndarray], features=("a", "b")) -> pd.DataFrame:
    """A long susceptibility table whose S(j, t) is s_by_hour[direction][t] / len(features) for every j."""
    rows = []
    for direction, values in s_by_hour.items():
        for hour, value in enumerate(values):
            for feature in features:
                rows.append({"direction": direction, "metric": "S", "feature": feature, "hour": hour,
                             "value": value / len(features), "n_records": 10})
                rows.append({"direction": direction, "metric": "GPP", "feature": feature, "hour": hour,
                             "value": 99.0, "n_records": 10})  # other metrics must not enter the trend
    return pd.DataFrame(rows)


def _ranking(scores: dict[str, dict[str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame([{"direction": d, "feature": f, "cumulative_s": s}
                          for d, by_feature in scores.items() for f, s in by_feature.items()])
    frame["rank"] = frame.groupby("direction")["cumulative_s"].rank(ascending=False, method="min").astype("int64")
    return frame


def test_hourly_trend_finds_a_rise_and_its_absence():
    hours = np.arange(48, dtype=float)
    table = _susceptibility({"0→1": 1.0 + hours, "1→0": 100.0 - hours})
    trend = hourly_trend(table, {"trend_window_hours": 12}).set_index("direction")
    assert trend.loc["0→1", "spearman"] == pytest.approx(1.0) and trend.loc["0→1", "rises"]
    assert trend.loc["1→0", "spearman"] == pytest.approx(-1.0) and not trend.loc["1→0", "rises"]
    # early = mean of 1..12, late = mean of 37..48
    assert trend.loc["0→1", "early_mean"] == pytest.approx(6.5)
    assert trend.loc["0→1", "late_over_early"] == pytest.approx(42.5 / 6.5)
    assert trend.loc["0→1", "peak_hour"] == 47 and trend.loc["1→0", "peak_hour"] == 0
    with pytest.raises(ValueError, match="trend_window_hours is 30"):
        hourly_trend(table, {"trend_window_hours": 30})


def test_paper_comparison_places_the_papers_features_in_our_ranking():
    # full-like feature set: no calcium, DBP as DiasABP, SpO2 as SaO2, plus non-paper features
    ours = {"Na": 5.0, "PaCO2": 0.1, "HCO3": 4.0, "DiasABP": 0.2, "Creatinine": 3.0, "Lactate": 2.0,
            "Temp": 1.0, "GCS": 9.0}
    ranking = _ranking({"0→1": ours, "1→0": ours})
    table = paper_comparison(ranking, REPORTING)
    by = table.set_index(["direction", "paper_feature"])
    sodium = by.loc[("0→1", "sodium")]
    assert sodium["feature"] == "Na" and sodium["our_rank"] == 2  # GCS is first among all features
    assert sodium["our_rank_among_paper_features"] == 1 and sodium["n_paper_features"] == 7
    assert sodium["agrees"]
    dbp = by.loc[("0→1", "DBP")]
    assert dbp["feature"] == "DiasABP" and dbp["our_rank_among_paper_features"] == 6
    assert dbp["agrees"]  # 6 > 7 − 5: in our bottom 5
    assert by.loc[("1→0", "Temp"), "our_rank_among_paper_features"] == 5 and by.loc[("1→0", "Temp"), "agrees"]
    # PaCO2 is last of the paper features here although the paper has it second
    assert by.loc[("0→1", "PaCO2"), "our_rank_among_paper_features"] == 7 and not by.loc[("0→1", "PaCO2"), "agrees"]
    assert by.loc[("1→0", "creatinine"), "paper_cumulative_s"] == pytest.approx(1.95)

    bad = {**REPORTING, "paper_ranking": {"0→1": [{"feature": "INR", "position": 1, "cumulative_s": 1.0}]}}
    with pytest.raises(ValueError, match="names 'INR', which reporting.paper_features lacks"):
        paper_comparison(ranking, bad)


def test_paper_comparison_marks_features_the_set_lacks():
    ranking = _ranking({"0→1": {"Na": 1.0, "PaCO2": 0.5, "HCO3": 0.2}})
    settings = {**REPORTING, "paper_ranking": {"0→1": [{"feature": "calcium", "position": 2, "cumulative_s": 0.3}]}}
    row = paper_comparison(ranking, settings).iloc[0]
    assert row["feature"] is None and pd.isna(row["our_rank"]) and pd.isna(row["agrees"])


def test_ranking_stability_known_answers():
    features = [f"f{i}" for i in range(8)]
    rising = dict(zip(features, np.arange(8.0), strict=True))
    main = _ranking({"0→1": rising, "1→0": rising})
    seeds = pd.concat([
        _ranking({"0→1": rising, "1→0": dict(zip(features, 7.0 - np.arange(8.0), strict=True))}).assign(seed=1),
        _ranking({"0→1": {**rising, "f0": 1.5}, "1→0": rising}).assign(seed=2),  # f0 and f1 swap
    ], ignore_index=True)
    records = pd.DataFrame({"record_id": [1, 2, 3, 4], "direction": ["0→1", "0→1", "1→0", "1→0"],
                            "success": [True, True, True, False]})
    seed_records = pd.concat([
        pd.DataFrame({"record_id": [2, 5, 3], "direction": ["0→1", "0→1", "1→0"], "success": True, "seed": 1}),
        pd.DataFrame({"record_id": [1, 2, 3], "direction": ["0→1", "0→1", "1→0"], "success": True, "seed": 2}),
    ])
    table = ranking_stability(main, records, seeds, seed_records, {"top_k": 3}, seed=7)
    by = table.set_index(["direction", "seed_a", "seed_b"])
    assert len(table) == 6  # 3 pairs × 2 directions
    assert by.loc[("0→1", 1, 7), "spearman"] == pytest.approx(1.0)
    assert by.loc[("1→0", 1, 7), "spearman"] == pytest.approx(-1.0)
    # top_k_overlap counts the shared features of the two top 3s (0..3)
    assert by.loc[("1→0", 1, 7), "top_k_overlap"] == 0
    assert by.loc[("0→1", 2, 7), "spearman"] == pytest.approx(1 - 6 * 2 / (8 * 63))
    assert by.loc[("0→1", 2, 7), "top_k_overlap"] == 3  # f0 and f1 swap at the bottom
    assert (table["top_k"] == 3).all()
    # 0→1 successes: seed 7 {1, 2}, seed 1 {2, 5} → 1/3; seed 2 {1, 2} → 1
    assert by.loc[("0→1", 1, 7), "shared_records"] == pytest.approx(1 / 3)
    assert by.loc[("0→1", 2, 7), "shared_records"] == 1.0


def test_stability_seeds_must_be_given_and_differ_from_the_main_seed(trained):
    model, test, spec = trained
    for seeds, message in (([], "stability_seeds is empty"), ([3, 4], "differ from params:seed"),
                           ([1, 1], "must be distinct")):
        with pytest.raises(ValueError, match=message):
            attack_with_seeds(model, test, spec, ATTACK, {**REPORTING, "stability_seeds": seeds}, 3, "cpu")


def test_attack_and_reporting_pipelines_in_memory(trained):
    """attack → reporting for one model: every report output exists and agrees with its inputs."""
    model, test, spec = trained
    names = {n.namespace for n in reporting.create_pipeline("physionet2012", STUDIES["physionet2012"].torch_models).nodes}
    assert names == {"reporting", "reporting.lstm_sun2018", "reporting.lstm_pooled", "reporting.dssm"}
    pipe = (attack.create_model_pipeline("physionet2012", "attack.lstm_sun2018", "training.lstm_sun2018.model", "sun2018")
            + reporting.create_pipeline("physionet2012", {"lstm_sun2018": "sun2018"}))
    metrics = {"test": {"auroc": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9},
                        "auprc": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}},
               "n_test": 120, "n_test_positive": 30}
    inputs = {"training.lstm_sun2018.model": model, "features.sun2018.model_input_test": test,
              "features.sun2018.feature_spec": spec, "training.lstm_sun2018.metrics": metrics,
              "params:attack.physionet2012": SHORT_ATTACK, "params:reporting.physionet2012": REPORTING,
              "params:seed": 3, "params:device": "cpu"}
    assert pipe.inputs() == set(inputs)
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()})
    for name in pipe.all_outputs():
        catalog[name] = KeptMemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)
    out = {name.rsplit(".", 1)[1]: catalog.load(name) for name in pipe.all_outputs()}

    seed_rankings, stability = out["seed_rankings"], out["seed_stability"]
    assert set(seed_rankings["seed"]) == {1, 2}
    assert set(stability[["seed_a", "seed_b"]].itertuples(index=False, name=None)) == {(1, 2), (1, 3), (2, 3)}
    assert stability["spearman"].between(-1, 1).all()
    assert (stability["shared_records"] > 0).all()  # 24 of ~100 correct records: samples overlap
    assert stability["top_k_overlap"].between(0, stability["top_k"]).all()
    assert set(out["hourly_trend"]["direction"]) == set(out["cumulative_susceptibility"]["direction"])

    report = out["report"]
    assert report.startswith("# Adversarial susceptibility of `lstm_sun2018` (sun2018 features)")
    assert "**Warning:** the test split is too small" in report  # 30 deaths < min_positives
    # the paper's features are absent from f0..f3: the report says so instead of inventing ranks
    assert report.count("not in this feature set, cannot compare") == 8
    for direction, rho in stability.groupby("direction")["spearman"].min().items():
        assert f"- {direction}: lowest ρ {rho:.3f}" in report
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", report).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    assert out["report_figure"].axes
    overview = out["overview"]
    assert overview.startswith("# Attack reports overview")
    assert overview.count("| lstm_sun2018 |") == len(set(out["records"]["direction"]))


def test_reporting_is_registered_per_source():
    registry = register_pipelines()
    assert "physionet2012.reporting" in registry and "mimic3.reporting" in registry
    outputs = registry["physionet2012.reporting"].all_outputs()
    assert {"reporting.overview", "reporting.dssm.report", "reporting.lstm_sun2018.report"} <= outputs
    assert registry["reporting"] is registry["physionet2012.reporting"]
    assert {"reporting.overview", "reporting.dssm.report",
            "reporting.lstm_sun2018.report"} <= registry["mimic3.reporting"].all_outputs()


def test_an_attack_without_success_gives_empty_tables_figures_and_a_report_that_says_so():
    """The MIMIC-III demo's lstm_sun2018: the attack flips none of its 5 correct records; nothing may crash."""
    from ehr_adversarial.attack.plots import plot_cumulative_ranking, plot_susceptibility_heatmaps
    from ehr_adversarial.attack.run import susceptibility_tables
    from ehr_adversarial.reporting.attack_report import attack_report

    records = pd.DataFrame({"record_id": [1, 2], "direction": ["0→1", "1→0"], "success": [False, False]})
    deltas = {"record_id": np.array([1, 2]), "label": np.array([0, 1]), "delta_best": np.zeros((2, 48, 3)),
              "feature_names": np.array(["a", "b", "c"])}
    table, ranking = susceptibility_tables(records, deltas)
    assert table.empty and ranking.empty and list(ranking.columns) == ["direction", "feature", "cumulative_s", "rank"]
    for figure in (plot_susceptibility_heatmaps(table), plot_cumulative_ranking(ranking)):
        assert "no attack succeeded" in figure.axes[0].texts[0].get_text()

    trend = hourly_trend(table, REPORTING)
    paper = paper_comparison(ranking, REPORTING)
    stability = ranking_stability(ranking, records, ranking.assign(seed=1), records.assign(seed=1), REPORTING, 0)
    assert trend.empty and paper.empty and stability.empty and "spearman" in stability.columns
    summary = {"architecture": "dssm", "feature_set": "sun2018", "attacked_records": 2, "test_records": 19,
               "success_rate": 0.0, "seconds": 1.0, "device": "cpu",
               "config": {"search": "continuation", "max_iterations": 200},
               "by_direction": {d: {"records": 1, "success_rate": 0.0, "mean_l0_best": float("nan"),
                                    "mean_l1_best": float("nan"), "mean_linf_best": float("nan"),
                                    "median_first_iteration": float("nan")} for d in ("0→1", "1→0")}}
    metrics = {"test": {m: {"value": 0.5, "ci_low": 0.2, "ci_high": 0.8} for m in ("auroc", "auprc")},
               "n_test": 19, "n_test_positive": 5}
    figure, report = attack_report(summary, metrics, ranking, table, paper, trend, stability, ranking.assign(seed=1),
                                   REPORTING)
    assert "no attack succeeded" in figure.axes[0].texts[0].get_text()
    assert "## No successful attack" in report and "Success target ≥ 99 %: **not met**" in report
