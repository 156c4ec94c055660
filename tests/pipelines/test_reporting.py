"""Reporting pipeline: known-answer tests of the trend and the paper comparison, the attack of each trained
instance of a model, and the namespaced pipeline run in memory after the attack on a small trained LSTM."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ehr_adversarial.attack import rank_susceptible
from ehr_adversarial.attack.run import select_records
from ehr_adversarial.models import build_model, instances
from ehr_adversarial.pipeline_registry import STUDIES, register_pipelines
from ehr_adversarial.pipelines import attack, reporting
from ehr_adversarial.reporting.attack_report import hourly_trend, paper_comparison
from ehr_adversarial.reporting.stability import (
    INSTANCE_COLUMNS,
    INSTANCE_RANKING_COLUMNS,
    attack_instances,
    record_stability,
    susceptibility_intervals,
)
from tests.conftest import KeptMemoryDataset
from tests.pipelines.conftest import ATTACK

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# A shorter attack than test_attack's: the report also attacks each instance of an ensemble.
SHORT_ATTACK = {**ATTACK, "n_records": 24, "search": "continuation", "max_iterations": 60}
REPORTING = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_reporting.yml").read_text())["reporting"]["physionet2012"]
# 24 attacked records: 12 per direction, 6 per half; fewer bootstrap draws and splits keep the test short.
SMALL_REPORTING = {**REPORTING, "min_records_per_half": 5, "n_bootstrap": 50, "split_half_repeats": 10,
                   "instance_records": 16}


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
    frame["susceptible"] = frame["cumulative_s"] >= 1e-3
    frame["rank"] = frame.groupby("direction")["cumulative_s"].transform(rank_susceptible)
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


def test_paper_comparison_ties_the_not_susceptible_at_the_bottom_with_average_ranks():
    # DiasABP (S_j 5e-4) and Temp (0) are not susceptible; PaCO2 and HCO3 tie; GCS is not a paper feature
    ours = {"Na": 1.0, "PaCO2": 0.5, "HCO3": 0.5, "DiasABP": 5e-4, "Temp": 0.0, "Creatinine": 2.0, "GCS": 3.0}
    table = paper_comparison(_ranking({"0→1": ours, "1→0": ours}), REPORTING)
    by = table.set_index(["direction", "paper_feature"])
    assert (table["n_paper_features"] == 6).all()  # no lactate here
    among = by.loc["0→1", "our_rank_among_paper_features"].to_dict()
    assert among == {"sodium": 2.0, "PaCO2": 3.5, "HCO3": 3.5, "DBP": 5.5}  # Creatinine is first of the six
    assert by.loc[("0→1", "PaCO2"), "our_rank"] == 4.5  # among all our features, GCS first
    dbp = by.loc[("0→1", "DBP")]
    assert not dbp["susceptible"] and np.isnan(dbp["our_rank"]) and dbp["our_cumulative_s"] == pytest.approx(5e-4)
    assert dbp["agrees"]  # 5.5 > 6 − 5: in our bottom 5
    temp = by.loc[("1→0", "Temp")]
    assert not temp["susceptible"] and temp["our_rank_among_paper_features"] == 5.5 and temp["agrees"]
    assert by.loc[("1→0", "creatinine"), "our_rank_among_paper_features"] == 1.0
    assert by.loc[("1→0", "sodium"), "susceptible"] and pd.isna(by.loc[("1→0", "lactate"), "susceptible"])
    assert table["our_rank"].dtype == "float64"


def _ensemble(trained_model, noise: float = 0.0):
    """An InstanceEnsemble of two copies of the trained LSTM (the second with weights moved by `noise`)."""
    ensemble = build_model({**trained_model.config, "n_instances": 2})
    generator = torch.Generator().manual_seed(5)
    for k, member in enumerate(instances(ensemble)):
        member.load_state_dict(trained_model.state_dict())
        if k and noise:
            with torch.no_grad():
                for weight in member.parameters():
                    weight.add_(noise * torch.randn(weight.shape, generator=generator))
    return ensemble.eval()


def test_attack_instances_of_an_ensemble_and_of_a_single_model(trained):
    model, test, spec = trained
    settings = {**REPORTING, "instance_records": 16, "top_k": 3}
    ensemble = _ensemble(model)
    selection = select_records(ensemble, test, spec, SHORT_ATTACK, 3, "cpu")
    rankings, pairs = attack_instances(ensemble, test, selection, spec, SHORT_ATTACK, settings, 3, "cpu")
    assert list(rankings.columns) == INSTANCE_RANKING_COLUMNS and list(pairs.columns) == INSTANCE_COLUMNS
    assert set(rankings["instance"]) == {0, 1}
    directions = sorted(rankings["direction"].unique())
    assert directions == ["0→1", "1→0"]
    assert len(rankings) == 2 * 2 * len(spec["feature_names"])  # instances × directions × features
    assert (rankings["n_attacked"] == 8).all()  # 16 records, half of each label
    assert list(pairs["direction"]) == directions and (pairs[["instance_a", "instance_b"]] == [0, 1]).all().all()
    # identical instances: the deterministic attack finds the same δ, so the maps agree exactly
    assert pairs["spearman"].to_numpy() == pytest.approx(1.0) and (pairs["top_k_overlap"] == 3).all()
    same = rankings.pivot_table(index=["direction", "feature"], columns="instance", values="cumulative_s")
    np.testing.assert_allclose(same[0], same[1])

    # instances that differ: each is attacked on records it classifies correctly, and their maps differ
    noisy = _ensemble(model, noise=0.2)
    selection = select_records(noisy, test, spec, SHORT_ATTACK, 3, "cpu")
    rankings, pairs = attack_instances(noisy, test, selection, spec, SHORT_ATTACK, settings, 3, "cpu")
    assert len(pairs) == rankings["direction"].nunique() and pairs["spearman"].between(-1, 1).all()
    different = rankings.pivot_table(index=["direction", "feature"], columns="instance", values="cumulative_s")
    assert not np.allclose(different[0], different[1])

    single_rankings, single_pairs = attack_instances(model, test, select_records(model, test, spec, SHORT_ATTACK, 3,
                                                                                 "cpu"),
                                                     spec, SHORT_ATTACK, settings, 3, "cpu")
    assert single_rankings.empty and single_pairs.empty
    assert list(single_rankings.columns) == INSTANCE_RANKING_COLUMNS and list(single_pairs.columns) == INSTANCE_COLUMNS


@pytest.mark.parametrize("n_instances", [1, 2])
def test_attack_and_reporting_pipelines_in_memory(trained, n_instances):
    """attack → reporting for one model (a single LSTM, or an ensemble of two identical instances): every report
    output exists and agrees with its inputs."""
    model, test, spec = trained
    if n_instances > 1:
        model = _ensemble(model)
    names = {n.namespace for n in reporting.create_pipeline("physionet2012", STUDIES["physionet2012"].torch_models).nodes}
    assert names == {"reporting", "reporting.lstm_sun2018", "reporting.lstm_pooled", "reporting.dssm"}
    pipe = (attack.create_model_pipeline("physionet2012", "attack.lstm_sun2018", "training.lstm_sun2018.model", "sun2018")
            + reporting.create_pipeline("physionet2012", {"lstm_sun2018": "sun2018"}))
    metrics = {"test": {"auroc": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9},
                        "auprc": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}},
               "n_test": 120, "n_test_positive": 30}
    inputs = {"training.lstm_sun2018.model": model, "features.sun2018.model_input_test": test,
              "features.sun2018.feature_spec": spec, "training.lstm_sun2018.metrics": metrics,
              "params:attack.physionet2012": SHORT_ATTACK, "params:reporting.physionet2012": SMALL_REPORTING,
              "params:seed": 3, "params:device": "cpu"}
    assert pipe.inputs() == set(inputs)
    catalog = DataCatalog({name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()})
    for name in pipe.all_outputs():
        catalog[name] = KeptMemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)
    out = {name.rsplit(".", 1)[1]: catalog.load(name) for name in pipe.all_outputs()}

    ranking, intervals = out["cumulative_susceptibility"], out["ranking_intervals"]
    directions = sorted(ranking["direction"].unique())
    assert len(intervals) == len(ranking) and sorted(intervals["direction"].unique()) == directions
    merged = ranking.merge(intervals, on=["direction", "feature"], suffixes=("", "_ci"))
    np.testing.assert_allclose(merged["cumulative_s"], merged["cumulative_s_ci"])  # the same S_j
    np.testing.assert_array_equal(merged["rank"], merged["rank_ci"])
    assert (intervals["ci_low"] <= intervals["ci_high"]).all()
    successes = out["records"].groupby("direction")["success"].sum()
    assert intervals.groupby("direction")["n_records"].first().to_dict() == successes.to_dict()
    hours = out["hourly_intervals"]
    assert len(hours) == 48 * len(directions) and (hours["ci_low"] <= hours["ci_high"]).all()
    halves = out["record_stability"].set_index("direction")
    assert list(halves.index) == directions and halves["enough_records"].all()  # ≥ 5 per half
    assert (halves["n_per_half"] == successes // 2).all() and halves["spearman_median"].between(-1, 1).all()
    pairs = out["instance_stability"]
    if n_instances == 1:
        assert out["instance_rankings"].empty and pairs.empty
    else:  # identical instances: the same map, ρ = 1
        assert set(out["instance_rankings"]["instance"]) == {0, 1} and sorted(pairs["direction"]) == directions
        assert pairs["spearman"].to_numpy() == pytest.approx(1.0)
    assert set(out["hourly_trend"]["direction"]) == set(directions)
    modes = out["attack_modes"]
    assert sorted(modes["mode"].unique()) == ["first", "measurements", "refined"]
    assert sorted(modes["direction"].unique()) == directions
    headline = modes[modes["mode"] == "refined"]
    assert headline["spearman_vs_headline"].dropna().to_numpy() == pytest.approx(1.0)
    assert (headline["top_k_overlap_vs_headline"] == headline["top_k"]).all()
    for column in ("imputed_share", "at_bound_share", "success_rate"):
        assert modes[column].dropna().between(0, 1).all(), column
    # the first successful δ is never smaller than the refined one (refinement only shrinks it)
    l1 = modes.pivot(index="direction", columns="mode", values="mean_l1")
    assert (l1["first"] >= l1["refined"] - 1e-9).all()
    profile = out["time_profile"]
    assert len(profile) == 48 * len(directions)
    np.testing.assert_allclose(profile.groupby("direction")["gradient_share"].sum(), 1.0, rtol=1e-6)
    selected = out["selection"]
    measured = test["mask"][selected["row"].to_numpy()].mean(axis=2)
    np.testing.assert_allclose(profile.groupby("hour")["measured_share"].mean().to_numpy()[:1],
                               [measured[:, 0][selected["label"].to_numpy() == 0].mean() / 2
                                + measured[:, 0][selected["label"].to_numpy() == 1].mean() / 2], rtol=1e-6)

    report = out["report"]
    assert report.startswith("# Adversarial susceptibility of `lstm_sun2018` (sun2018 features)")
    assert "**Warning:** the test split is too small" in report  # 30 deaths < min_positives
    # the paper's features are absent from f0..f3: the report says so instead of inventing ranks
    assert report.count("not in this feature set, cannot compare") == 8
    for section in ("## Cumulative susceptibility S_j", "percentile bootstrap", "## Stability across records",
                    "## Stability across model instances", "## Why susceptibility sits where it does in time",
                    "## Other choices of δ"):
        assert section in report
    single = "One trained instance: set `training.<source>.<model>.n_instances` ≥ 3"
    assert (single in report) == (n_instances == 1)
    if n_instances > 1:
        assert "The served model averages the logits of 2 instances" in report
        for direction in directions:
            assert f"- {direction}: lowest ρ 1.000, least top-4 overlap 4/4 → target met." in report
            assert f"- {direction}: Spearman ρ " in report  # the mean map beside the served model's
        assert "Disjoint halves of the instances" in report
    overview = out["overview"]
    assert overview.startswith("# Attack reports overview") and "| split-half ρ (median) | instance ρ (min) | instance halves ρ (min) |" in overview
    for direction in directions:
        row = next(line for line in overview.splitlines() if line.startswith(f"| lstm_sun2018 | {direction} |"))
        assert row.rstrip(" |").endswith("1.000" if n_instances > 1 else "–")
    for direction, row in halves.iterrows():
        assert f"- {direction}: median ρ {row['spearman_median']:.3f}" in report
    for row in intervals[intervals["susceptible"]].itertuples():
        assert f"| {row.feature} | {row.cumulative_s:.3g} | [{row.ci_low:.3g}, {row.ci_high:.3g}] |" in report
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", report).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    assert out["report_figure"].axes
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
    assert table.empty and ranking.empty
    assert list(ranking.columns) == ["direction", "feature", "cumulative_s", "susceptible", "rank"]
    for figure in (plot_susceptibility_heatmaps(table), plot_cumulative_ranking(ranking)):
        assert "no attack succeeded" in figure.axes[0].texts[0].get_text()

    trend = hourly_trend(table, REPORTING)
    paper = paper_comparison(ranking, REPORTING)
    intervals, hours = susceptibility_intervals(records, deltas, ATTACK, REPORTING, 0)
    halves = record_stability(records, deltas, ATTACK, REPORTING, 0)
    assert trend.empty and paper.empty and intervals.empty and hours.empty and halves.empty
    assert "spearman_median" in halves.columns and "ci_low" in intervals.columns
    summary = {"architecture": "dssm", "feature_set": "sun2018", "attacked_records": 2, "test_records": 19,
               "success_rate": 0.0, "seconds": 1.0, "device": "cpu",
               "config": {"search": "continuation", "max_iterations": 200},
               "by_direction": {d: {"records": 1, "success_rate": 0.0, "mean_l0_best": float("nan"),
                                    "mean_l1_best": float("nan"), "mean_linf_best": float("nan"),
                                    "median_first_iteration": float("nan")} for d in ("0→1", "1→0")}}
    metrics = {"test": {m: {"value": 0.5, "ci_low": 0.2, "ci_high": 0.8} for m in ("auroc", "auprc")},
               "n_test": 19, "n_test_positive": 5}
    empty = pd.DataFrame(columns=INSTANCE_RANKING_COLUMNS), pd.DataFrame(columns=INSTANCE_COLUMNS)
    from ehr_adversarial.attack.susceptibility import BOOTSTRAP_HOUR_COLUMNS
    from ehr_adversarial.attack.time_profile import TIME_PROFILE_COLUMNS
    from ehr_adversarial.reporting.attack_modes import MODE_COLUMNS

    no_modes = pd.DataFrame(columns=MODE_COLUMNS), pd.DataFrame(columns=[*BOOTSTRAP_HOUR_COLUMNS, "mode"])
    figure, report = attack_report(summary, metrics, ranking, table, paper, trend, intervals, hours, halves, *empty,
                                   *no_modes, pd.DataFrame(columns=TIME_PROFILE_COLUMNS), ATTACK, REPORTING)
    assert "no attack succeeded" in figure.axes[0].texts[0].get_text()
    assert "## No successful attack" in report and "Success target ≥ 99 %: **not met**" in report
