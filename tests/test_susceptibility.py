"""Susceptibility metrics and clinical units on hand-made perturbations with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ehr_adversarial.attack import (
    cumulative_ranking,
    cumulative_susceptibility,
    direction_of,
    feature_scale,
    metric_grid,
    perturbation_cells,
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
        {"direction": "0→1", "feature": "B", "cumulative_s": 0.5, "rank": 1},
        {"direction": "0→1", "feature": "A", "cumulative_s": 0.0, "rank": 2},
        {"direction": "1→0", "feature": "A", "cumulative_s": pytest.approx(0.45), "rank": 1},
        {"direction": "1→0", "feature": "B", "cumulative_s": pytest.approx(0.2), "rank": 2},
    ]


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
