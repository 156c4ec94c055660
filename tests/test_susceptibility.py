"""Susceptibility metrics and clinical units on hand-made perturbations with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ehr_adversarial.attack import (
    bootstrap_susceptibility,
    cumulative_ranking,
    cumulative_susceptibility,
    direction_of,
    feature_scale,
    metric_grid,
    perturbation_cells,
    split_half_agreement,
    susceptibility,
    susceptibility_table,
)

FEATURES = ["A", "B"]
# Four records, 2 hours × 2 features (δ[record, hour, feature]).
DELTA = np.array([
    [[0.2, 0.0], [0.0, -0.4]],
    [[-0.6, 0.0], [0.0, 0.0]],
    [[0.0, 0.0], [0.0, 0.1]],
    [[0.2, 0.0], [0.0, 0.0]],
])
NAN = np.nan
# By hand, rows = features (A, B), columns = hours (0, 1):
#   (A, 0): |δ| = .2, .6, 0, .2 → max .6, mean 1.0/4, 3 of 4 nonzero, mean nonzero 1.0/3
#   (B, 1): |δ| = .4, 0, .1, 0 → max .4, mean .5/4, 2 of 4 nonzero, mean nonzero .5/2
#   (B, 0) and (A, 1): never perturbed
EXPECTED = {
    "GMP": [[0.6, 0.0], [0.0, 0.4]],
    "GAP": [[0.25, 0.0], [0.0, 0.125]],
    "GPP": [[0.75, 0.0], [0.0, 0.5]],
    "S": [[0.45, 0.0], [0.0, 0.2]],
    "GANZP": [[1 / 3, NAN], [NAN, 0.25]],
    "sensitivity": [[2.25, 0.0], [0.0, 2.0]],
}


def test_metrics_of_a_hand_made_delta_equal_the_hand_computed_values():
    metrics = susceptibility(DELTA)
    assert set(metrics) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        np.testing.assert_allclose(metrics[name], expected, err_msg=name)
    # GPP counts records, GAP averages sizes: the earlier code's GPP (= GAP) is 0.25 where the truth is 0.75.
    assert metrics["GPP"][0, 0] == 0.75 and metrics["GAP"][0, 0] == 0.25
    np.testing.assert_allclose(cumulative_susceptibility(metrics["S"]), [0.45, 0.2])


def _table() -> pd.DataFrame:
    extra = np.array([
        [[0.0, 0.5], [0.0, 0.0]],  # label 0, successful
        [[0.9, 0.9], [0.9, 0.9]],  # label 0, failed: must not count
    ])
    delta = np.concatenate([DELTA, extra])
    label = np.array([1, 1, 1, 1, 0, 0])
    success = np.array([True, True, True, True, True, False])
    return susceptibility_table(delta, label, success, FEATURES)


def test_table_splits_directions_and_counts_only_successful_records():
    table = _table()
    assert table.groupby("direction")["n_records"].first().to_dict() == {"0→1": 1, "1→0": 4}
    assert len(table) == 2 * 6 * 2 * 2  # directions × metrics × features × hours
    for name, expected in EXPECTED.items():
        grid = metric_grid(table, "1→0", name)
        assert list(grid.index) == FEATURES and list(grid.columns) == [0, 1]
        np.testing.assert_allclose(grid.to_numpy(), expected, err_msg=name)
    np.testing.assert_allclose(metric_grid(table, "0→1", "S").to_numpy(), [[0.0, 0.0], [0.5, 0.0]])


def test_cumulative_ranking_per_direction():
    ranking = cumulative_ranking(_table())
    assert ranking.to_dict("records") == [
        {"direction": "0→1", "feature": "B", "cumulative_s": 0.5, "susceptible": True, "rank": 1.0},
        {"direction": "0→1", "feature": "A", "cumulative_s": 0.0, "susceptible": False, "rank": pytest.approx(np.nan,
                                                                                                         nan_ok=True)},
        {"direction": "1→0", "feature": "A", "cumulative_s": pytest.approx(0.45), "susceptible": True, "rank": 1.0},
        {"direction": "1→0", "feature": "B", "cumulative_s": pytest.approx(0.2), "susceptible": True, "rank": 2.0},
    ]


def _s_table(scores: dict[str, float], direction: str = "0→1") -> pd.DataFrame:
    """A long table whose S_j is `scores` (spread over two hours), with a GMP row that must not count."""
    rows = [{"direction": direction, "metric": metric, "feature": f, "hour": h, "value": value / 2, "n_records": 9}
            for f, value in scores.items() for h in (0, 1) for metric in ("S", "GMP")]
    return pd.DataFrame(rows)


def test_cumulative_ranking_gives_ties_the_average_rank_and_leaves_the_not_susceptible_unranked():
    ranking = cumulative_ranking(_s_table({"A": 0.4, "B": 0.2, "C": 0.2, "D": 5e-4, "E": 0.0, "F": 0.1}))
    by = ranking.set_index("feature")
    assert by["rank"].to_dict() == pytest.approx({"A": 1.0, "B": 2.5, "C": 2.5, "F": 4.0, "D": np.nan, "E": np.nan},
                                                 nan_ok=True)
    assert not by.loc["D", "susceptible"] and not by.loc["E", "susceptible"] and by.loc["F", "susceptible"]
    assert list(ranking["feature"]) == ["A", "B", "C", "F", "D", "E"]  # ranked first, the not susceptible last
    # the tolerance is a setting: below 5e-4 D ranks, the exact zero still does not
    loose = cumulative_ranking(_s_table({"A": 0.4, "D": 5e-4, "E": 0.0}), tolerance=1e-4).set_index("feature")
    assert loose.loc["D", "rank"] == 2.0 and np.isnan(loose.loc["E", "rank"])
    strict = cumulative_ranking(_s_table({"A": 0.4, "D": 5e-4}), tolerance=0.5).set_index("feature")
    assert strict["susceptible"].sum() == 0 and strict["rank"].isna().all()


def _mean_like_delta() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 successful label-0 records, 2 hours × 2 features: A = 0.5 at hour 0 in every other record (S_A = GMP·GPP
    = 0.5 · share of those records, a mean), B = 0.2 at hour 1 in every record (S_B = 0.2 in every resample);
    plus 5 failed label-0 records and 3 successful label-1 records."""
    delta = np.zeros((48, 2, 2))
    delta[0:40:2, 0, 0] = 0.5
    delta[:40, 1, 1] = -0.2
    delta[40:45] = 0.9  # failed: must not count
    delta[45:, 0, 1] = 0.3
    label = np.array([0] * 45 + [1] * 3)
    success = np.array([True] * 40 + [False] * 5 + [True] * 3)
    return delta, label, success


def test_bootstrap_intervals_contain_the_point_of_a_mean_like_score():
    delta, label, success = _mean_like_delta()
    features, hours = bootstrap_susceptibility(delta, label, success, ["A", "B"], n_bootstrap=300, seed=1)
    by = features.set_index(["direction", "feature"])
    assert features.groupby("direction")["n_records"].first().to_dict() == {"0→1": 40, "1→0": 3}
    a, b = by.loc[("0→1", "A")], by.loc[("0→1", "B")]
    assert a["cumulative_s"] == pytest.approx(0.25) and a["ci_low"] < 0.25 < a["ci_high"]
    assert 0.1 < a["ci_low"] and a["ci_high"] < 0.4  # ± 2 standard errors of 0.5 · p̂, p = 1/2, N = 40: ± 0.08
    assert (b["cumulative_s"], b["ci_low"], b["ci_high"]) == pytest.approx((0.2, 0.2, 0.2))
    assert a["rank"] == 1.0 and b["rank"] == 2.0
    assert a["rank_ci_low"] == 1.0 and a["rank_ci_high"] == 2.0  # some resamples have p̂ < 0.4: A falls behind B
    assert a["share_susceptible"] == 1.0
    # 1→0: only B is touched; A is not susceptible in every resample and ranks below B there
    none = by.loc[("1→0", "A")]
    assert not none["susceptible"] and np.isnan(none["rank"]) and none["share_susceptible"] == 0.0
    assert none["rank_ci_low"] == none["rank_ci_high"] == 2.0
    h = hours.set_index(["direction", "hour"])
    assert h.loc[("0→1", 0), "s_t"] == pytest.approx(0.25) and h.loc[("0→1", 1), "s_t"] == pytest.approx(0.2)
    assert h.loc[("0→1", 0), "ci_low"] < 0.25 < h.loc[("0→1", 0), "ci_high"]
    assert (hours["n_records"] == hours["direction"].map({"0→1": 40, "1→0": 3})).all()
    # the point estimates are those of the attack pipeline's table
    ranking = cumulative_ranking(susceptibility_table(delta, label, success, ["A", "B"]))
    merged = ranking.merge(features, on=["direction", "feature"], suffixes=("", "_bootstrap"))
    np.testing.assert_allclose(merged["cumulative_s"], merged["cumulative_s_bootstrap"])
    np.testing.assert_array_equal(merged["rank"], merged["rank_bootstrap"])


def test_split_half_of_identical_records_agrees_perfectly_and_too_few_records_give_no_coefficient():
    features = ["A", "B", "C", "D", "E", "F"]
    one = np.zeros((2, 6))
    one[0, :] = [0.6, 0.5, 0.4, 0.3, 0.2, 0.0]  # every label-0 record alike: each half has the same S_j
    delta = np.concatenate([np.repeat(one[None], 60, axis=0), np.repeat(one[None, ::-1], 30, axis=0)])
    label = np.array([0] * 60 + [1] * 30)
    table = split_half_agreement(delta, label, np.ones(90, bool), features, n_splits=10, seed=0, top_k=3,
                                 min_per_half=25).set_index("direction")
    same = table.loc["0→1"]
    assert same["enough_records"] and same["n_records"] == 60 and same["n_per_half"] == 30 and same["n_splits"] == 10
    assert same["spearman_median"] == pytest.approx(1.0) and same["spearman_low"] == pytest.approx(1.0)
    assert same["top_k"] == 3 and same["top_k_overlap_mean"] == 3 and same["top_k_overlap_min"] == 3
    few = table.loc["1→0"]  # 30 records: 15 per half < 25
    assert not few["enough_records"] and few["n_per_half"] == 15 and few["n_splits"] == 0
    assert np.isnan(few["spearman_median"]) and np.isnan(few["top_k_overlap_mean"])


def test_split_half_sees_records_that_disagree():
    """Each record moves one feature by 0.5 (S_j = 0.5 · share of the records moving j); the shares are close
    (16, 15, 15, 14 of 60), so random halves often order the features differently."""
    features = ["A", "B", "C", "D"]
    delta = np.zeros((60, 2, 4))
    delta[np.arange(60), 0, np.repeat([0, 1, 2, 3], [16, 15, 15, 14])] = 0.5
    table = split_half_agreement(delta, np.zeros(60, int), np.ones(60, bool), features, n_splits=40, seed=0,
                                 top_k=2, min_per_half=25)
    row = table.iloc[0]
    assert row["enough_records"] and row["spearman_low"] < row["spearman_median"] < 1.0
    assert row["top_k_overlap_min"] < 2


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="no successful records"):
        susceptibility(DELTA[:0])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        direction_of(np.array([0, 2]))
    with pytest.raises(ValueError, match="3 feature names"):
        susceptibility_table(DELTA, np.ones(4, int), np.ones(4, bool), ["A", "B", "C"])
    with pytest.raises(ValueError, match="no GPP rows for direction '0→1'"):
        metric_grid(susceptibility_table(DELTA, np.ones(4, int), np.ones(4, bool), FEATURES), "0→1", "GPP")


SPEC = {
    "feature_names": ["Na", "HR"],
    "units": {"Na": "mmol/L", "HR": "bpm"},
    "scaler": {"Na": {"p05": 130.0, "p95": 150.0, "median": 140.0}, "HR": {"p05": 60.0, "p95": 120.0, "median": 85.0}},
}


def test_perturbations_in_clinical_units():
    delta = np.zeros((2, 48, 2))
    x = np.full((2, 48, 2), 0.5)
    delta[0, 37, 0] = 0.205  # 0.205 · (150 − 130) = +4.1 mmol/L
    delta[1, 3, 1] = -0.25  # −0.25 · (120 − 60) = −15 bpm
    cells = perturbation_cells(delta, x, np.array([1001, 1002]), feature_scale(SPEC))
    assert cells["description"].tolist() == ["Na +4.1 mmol/L at hour 37", "HR -15 bpm at hour 3"]
    assert cells["record_id"].tolist() == [1001, 1002] and cells["hour"].tolist() == [37, 3]
    np.testing.assert_allclose(cells["original"], [140.0, 90.0])
    np.testing.assert_allclose(cells["perturbed"], [144.1, 75.0])
    np.testing.assert_allclose(cells["change"], [4.1, -15.0])


def test_a_spec_without_scaler_values_is_a_clear_error():
    broken = {**SPEC, "scaler": {"Na": {"p05": 130.0, "p95": 150.0}}}
    with pytest.raises(ValueError, match=r"no p05/p95 for \['HR'\]"):
        feature_scale(broken)
    with pytest.raises(ValueError, match="lacks 'scaler'"):
        feature_scale({"feature_names": ["Na"]})


def test_disjoint_halves_of_the_instances_compare_mean_maps_for_every_split():
    from ehr_adversarial.reporting.stability import instance_half_stability

    features = ["a", "b", "c", "d", "e"]
    maps = {0: [5, 4, 3, 2, 1], 1: [5, 4, 3, 2, 1], 2: [1, 2, 3, 4, 5], 3: [5, 4, 3, 1, 2]}
    rankings = pd.DataFrame([{"direction": "0→1", "instance": k, "feature": f, "cumulative_s": float(v)}
                             for k, values in maps.items() for f, v in zip(features, values, strict=True)])
    three = instance_half_stability(rankings[rankings["instance"] < 3], tolerance=1e-3, top_k=2)
    # each instance against the mean of the other two
    assert list(zip(three["half_a"], three["half_b"], strict=True)) == [("0", "1, 2"), ("1", "0, 2"), ("2", "0, 1")]
    # instance 2 reverses the order; the mean of 0 and 1 is instance 0's map
    assert three.loc[2, "spearman"] == pytest.approx(-1.0) and three.loc[2, "top_k_overlap"] == 0
    # two against two, each split once (not also its mirror image)
    four = instance_half_stability(rankings, tolerance=1e-3, top_k=2)
    assert list(zip(four["half_a"], four["half_b"], strict=True)) == [("0, 1", "2, 3"), ("0, 2", "1, 3"),
                                                                      ("0, 3", "1, 2")]
    # a map below the tolerance everywhere counts as all zeros: ρ is undefined, not invented
    flat = rankings[rankings["instance"] < 2].assign(cumulative_s=lambda f: f["cumulative_s"] * 1e-6)
    assert instance_half_stability(flat, tolerance=1e-3, top_k=2)["spearman"].isna().all()
    assert instance_half_stability(rankings[rankings["instance"] == 0], tolerance=1e-3, top_k=2).empty
