"""Features pipeline: tensor builder on hand-made records with known tensors, leakage property,
splits, bad input, and the whole pipeline on the real PhysioNet 2012 and MIMIC-III demo data.
"""

from __future__ import annotations

import copy
import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog

from ehr_adversarial.features.model_input import (
    build_hourly_cells,
    build_model_input,
    fit_feature_spec,
)
from ehr_adversarial.features.splits import make_splits
from ehr_adversarial.features.tensorize import (
    bin_hourly,
    combine_by_priority,
    fit_range,
    forward_fill,
    hours_since_observed,
)
from ehr_adversarial.pipeline_registry import STUDIES
from ehr_adversarial.pipelines.features import create_pipeline
from tests.conftest import project_config, run_in_memory

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FEATURE_PARAMS = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_features.yml").read_text())["features"]

# A 4-hour window keeps hand computation short; the code reads n_hours from parameters.
SMALL = {
    "n_hours": 4,
    "splits": {
        "unit": "record_id",
        "train_groups": ["a"],
        "test_groups": ["b"],
        "validation_fraction": 0.25,
        "n_folds": 2,
    },
    "static": {"numeric": ["age"], "one_hot": {"icu_type": ["CCU", "MICU"]}},
    "gap_fill": {},
    "units": {"HR": "bpm", "Na": "mEq/L"},
    "feature_sets": {"tiny": {"dynamic": ["HR", "Na"]}},
}
TINY = SMALL["feature_sets"]["tiny"]


def _long(rows: list[tuple[int, int, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["record_id", "minutes", "parameter", "value"])
    return frame.astype({"record_id": "int64", "minutes": "int32", "value": "float64"})


def _static(rows: list[tuple[int, float, str | None, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["record_id", "age", "icu_type", "label", "split_group"]).astype(
        {"record_id": "int64", "age": "float64", "label": "int64"}
    )


# Records 1-3 train, 5 validation, 4 test. Hour = minutes // 60 over a 4-hour window.
HAND_TIMESERIES = _long(
    [
        (1, 0, "HR", 80.0), (1, 30, "HR", 100.0),  # hour 0 mean 90
        (1, 150, "HR", 120.0),                     # hour 2
        (1, 70, "Na", 140.0),                      # hour 1
        (2, 200, "HR", 60.0),                      # hour 3
        (3, 60, "HR", 70.0), (3, 119, "HR", 110.0),  # hour 1 mean 90
        (3, 0, "Na", 130.0), (3, 239, "Na", 150.0),  # hours 0 and 3 (minute 239 is still hour 3)
        (4, 0, "HR", 200.0),
        (4, 240, "Na", 999.0), (4, 300, "HR", 1.0),  # at/after minute 240: dropped, counted
        (1, 10, "Weight", 80.0),                   # a parameter outside the feature set
        (99, 0, "HR", 50.0),                       # a record in no split
    ]
)
HAND_STATIC = _static(
    [
        (1, 50.0, "CCU", 1, "a"),
        (2, np.nan, "MICU", 0, "a"),
        (3, 70.0, None, 0, "a"),
        (4, 90.0, "CCU", 1, "b"),
        (5, 30.0, "MICU", 1, "a"),
    ]
)
HAND_SPLITS = pd.DataFrame(
    {
        "record_id": np.array([1, 2, 3, 4, 5], dtype=np.int64),
        "split": ["train", "train", "train", "test", "validation"],
        "group": ["a", "a", "a", "b", "a"],
        "fold": np.array([0, 1, 0, -1, -1], dtype=np.int64),
    }
)


def _run_nodes(timeseries, static, splits, params=SMALL, feature_set=TINY, name="tiny"):
    cells = build_hourly_cells(timeseries, splits, params, feature_set, feature_set_name=name)
    spec = fit_feature_spec(cells, static, splits, params, feature_set, feature_set_name=name)
    train, validation, test = build_model_input(cells, static, splits, spec)
    return cells, spec, {"train": train, "validation": validation, "test": test}


# ----------------------------------------------------------------------------- array kernels


def test_bin_hourly_means_values_per_record_hour_channel() -> None:
    cells = bin_hourly(
        record_pos=np.array([0, 0, 0, 1, 1, 1]),
        minutes=np.array([0, 59, 60, 119, 120, 179]),
        channel=np.array([0, 0, 0, 1, 1, 1]),
        value=np.array([1.0, 2.0, 7.0, 4.0, 5.0, 6.0]),
        n_records=2,
        n_hours=3,
        n_channels=2,
    )
    nan = np.nan
    np.testing.assert_array_equal(cells[0], [[1.5, nan], [7.0, nan], [nan, nan]])
    np.testing.assert_array_equal(cells[1], [[nan, nan], [nan, 4.0], [nan, 5.5]])
    assert cells.dtype == np.float32


def test_forward_fill_and_delta_look_only_backward() -> None:
    nan = np.nan
    cells = np.array([[[nan], [3.0], [nan], [nan], [5.0], [nan]]], dtype=np.float32)
    filled, last_seen = forward_fill(cells)
    np.testing.assert_array_equal(filled[0, :, 0], [nan, 3.0, 3.0, 3.0, 5.0, 5.0])
    np.testing.assert_array_equal(last_seen[0, :, 0], [-1, 1, 1, 1, 4, 4])
    delta = hours_since_observed(last_seen, n_hours=6)
    np.testing.assert_allclose(delta[0, :, 0], [1.0, 0.0, 1 / 6, 2 / 6, 0.0, 1 / 6], rtol=1e-6)


def test_combine_by_priority_takes_first_observed_source_per_cell() -> None:
    nan = np.nan
    # channels: invasive, non-invasive; 3 hours
    channels = np.array([[[120.0, 110.0], [nan, 100.0], [nan, nan]]], dtype=np.float32)
    combined = combine_by_priority(channels, [[0, 1], [1]])
    np.testing.assert_array_equal(combined[0, :, 0], [120.0, 100.0, nan])
    np.testing.assert_array_equal(combined[0, :, 1], [110.0, 100.0, nan])


def test_fit_range_percentiles_and_degenerate_fallbacks() -> None:
    spread = fit_range(np.array([60.0, 90.0, 90.0, 120.0, np.nan]))
    assert (spread.p05, spread.p95, spread.median, spread.how) == pytest.approx((64.5, 115.5, 90.0, "p05-p95"))
    # Percentiles coincide but values differ: min/max.
    mostly_one = fit_range(np.array([1.0] * 40 + [3.0]))
    assert (mostly_one.p05, mostly_one.p95, mostly_one.how) == (1.0, 3.0, "min-max")
    # Constant (PhysioNet MechVent is always 1): [v − 1, v].
    constant = fit_range(np.array([1.0, 1.0, np.nan]))
    assert (constant.p05, constant.p95, constant.how) == (0.0, 1.0, "constant")


# ----------------------------------------------------------------------------- exact tensors


def test_hand_made_records_give_the_hand_computed_tensors() -> None:
    cells, spec, bundles = _run_nodes(HAND_TIMESERIES, HAND_STATIC, HAND_SPLITS)

    assert int(cells["rows_after_window"]) == 2
    assert int(cells["rows_in_window"]) == 10  # 14 rows − Weight − record 99 − 2 after the window
    # Train HR cells: 90 (r1 h0), 120 (r1 h2), 60 (r2 h3), 90 (r3 h1) → linear percentiles.
    assert spec["scaler"]["HR"] == pytest.approx(
        {"p05": 64.5, "p95": 115.5, "median": 90.0, "range": "p05-p95", "fill": 90.0,
         "fill_from": "train median", "observed_cells_train": 4}
    )
    # Train Na cells: 140 (r1 h1), 130 (r3 h0), 150 (r3 h3).
    assert (spec["scaler"]["Na"]["p05"], spec["scaler"]["Na"]["p95"], spec["scaler"]["Na"]["median"]) == pytest.approx(
        (131.0, 149.0, 140.0)
    )
    # Statics: train ages 50, 70 (record 2 unknown) → p05 51, p95 69, median 60.
    assert spec["static_scaler"]["age"] == pytest.approx({"p05": 51.0, "p95": 69.0, "median": 60.0, "range": "p05-p95"})
    assert spec["static_names"] == ["age", "icu_type=CCU", "icu_type=MICU"]
    assert spec["feature_names"] == ["HR", "Na"] and spec["units"] == {"HR": "bpm", "Na": "mEq/L"}
    assert spec["splits"] == {
        "train": {"records": 3, "positive": 1},
        "validation": {"records": 1, "positive": 1},
        "test": {"records": 1, "positive": 1},
    }

    train = bundles["train"]
    np.testing.assert_array_equal(train["record_id"], [1, 2, 3])
    hr = lambda v: np.clip((np.asarray(v) - 64.5) / 51.0, 0, 1)  # noqa: E731
    na = lambda v: np.clip((np.asarray(v) - 131.0) / 18.0, 0, 1)  # noqa: E731
    expected_x = np.stack(
        [
            # record 1: HR 90, ffill 90, 120, ffill 120; Na median 140 before h1, then 140
            np.stack([hr([90, 90, 120, 120]), na([140, 140, 140, 140])], axis=-1),
            # record 2: HR median 90 until its first value 60 at h3; Na never → median
            np.stack([hr([90, 90, 90, 60]), na([140, 140, 140, 140])], axis=-1),
            # record 3: HR median then 90 from h1; Na 130 from h0, 150 at h3
            np.stack([hr([90, 90, 90, 90]), na([130, 130, 130, 150])], axis=-1),
        ]
    )
    np.testing.assert_allclose(train["X"], expected_x, rtol=1e-6)
    np.testing.assert_array_equal(
        train["mask"],
        [
            [[1, 0], [0, 1], [1, 0], [0, 0]],
            [[0, 0], [0, 0], [0, 0], [1, 0]],
            [[0, 1], [1, 0], [0, 0], [0, 1]],
        ],
    )
    np.testing.assert_allclose(
        train["delta"],
        np.array(
            [
                [[0, 4], [1, 0], [0, 1], [1, 2]],
                [[4, 4], [4, 4], [4, 4], [0, 4]],
                [[4, 0], [0, 1], [1, 2], [2, 0]],
            ]
        )
        / 4.0,
    )
    np.testing.assert_allclose(
        train["static"], [[0.0, 1, 0], [0.5, 0, 1], [1.0, 0, 0]], rtol=1e-6
    )
    np.testing.assert_array_equal(train["y"], [1, 0, 0])
    assert train["group"].tolist() == ["a", "a", "a"]

    test = bundles["test"]
    # record 4: HR 200 at h0 (clipped to 1) carried forward; its Na at minute 240 is outside.
    np.testing.assert_allclose(test["X"][0], np.stack([[1.0] * 4, na([140] * 4)], axis=-1), rtol=1e-6)
    assert not test["mask"][0, :, 1].any()
    np.testing.assert_array_equal(test["delta"][0, :, 1], [1.0] * 4)
    np.testing.assert_allclose(test["static"], [[1.0, 1, 0]])

    validation = bundles["validation"]  # record 5 has no measurement at all
    np.testing.assert_allclose(validation["X"][0], np.stack([hr([90] * 4), na([140] * 4)], axis=-1), rtol=1e-6)
    np.testing.assert_allclose(validation["static"], [[0.0, 0, 1]])
    for bundle in bundles.values():
        assert bundle["X"].dtype == np.float32 and bundle["delta"].dtype == np.float32
        assert bundle["mask"].dtype == bool and bundle["y"].dtype == np.int64
        assert bundle["static"].dtype == np.float32 and bundle["record_id"].dtype == np.int64


def test_gap_fill_parameter_replaces_the_median_and_priority_sources_combine() -> None:
    params = copy.deepcopy(SMALL)
    params["gap_fill"] = {"Na": 135.0}
    feature_set = {"dynamic": [{"BP": ["SysABP", "NISysABP"]}, "Na"]}
    timeseries = pd.concat(
        [
            HAND_TIMESERIES,
            _long(
                [
                    (1, 0, "SysABP", 120.0), (1, 10, "NISysABP", 100.0),  # h0: invasive wins
                    (1, 70, "NISysABP", 110.0),                            # h1: only non-invasive
                    (2, 0, "NISysABP", 90.0), (3, 0, "SysABP", 130.0),
                ]
            ),
        ]
    )
    cells, spec, bundles = _run_nodes(timeseries, HAND_STATIC, HAND_SPLITS, params, feature_set, "bp")
    nan = np.nan
    np.testing.assert_array_equal(cells["values"][0, :, 0], [120.0, 110.0, nan, nan])
    assert spec["sources"] == {"BP": ["SysABP", "NISysABP"], "Na": ["Na"]}
    assert spec["scaler"]["Na"]["fill"] == 135.0 and spec["scaler"]["Na"]["fill_from"] == "parameter gap_fill"
    # record 2 never has Na: filled with 135 → (135 − 131) / 18
    np.testing.assert_allclose(bundles["train"]["X"][1, :, 1], [4 / 18] * 4, rtol=1e-6)


# ----------------------------------------------------------------------------- no future leakage


def _random_records(
    rng: np.random.Generator, n_records: int, n_hours: int, rows_per_record: int = 6
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Sparse random records (most cells unobserved, like real labs) and fixed splits."""
    n_rows = rows_per_record * n_records
    timeseries = _long(
        list(
            zip(
                rng.integers(1, n_records + 1, n_rows).tolist(),
                rng.integers(0, 60 * n_hours, n_rows).tolist(),
                rng.choice(["HR", "Na"], n_rows).tolist(),
                rng.normal(100, 20, n_rows).round(1).tolist(),
                strict=True,
            )
        )
    )
    ids = np.arange(1, n_records + 1)
    static = _static(
        [(int(i), float(rng.integers(20, 90)), str(rng.choice(["CCU", "MICU"])), int(i % 3 == 0), "a") for i in ids]
    )
    split = np.where(ids <= n_records - 4, "train", np.where(ids <= n_records - 2, "validation", "test"))
    splits = pd.DataFrame({"record_id": ids.astype(np.int64), "split": split, "group": "a", "fold": -1})
    return timeseries, static, splits


@pytest.mark.parametrize("seed", range(10))
def test_changing_values_at_or_after_hour_h_never_changes_the_tensor_before_h(seed: int) -> None:
    """Property over random records and a random h: the validation/test records' measurements
    from hour h on are changed, partly dropped and extended with new ones (one per feature at
    hour h). The whole pipeline then gives the same X, mask and delta before h for them, and
    the same tensors for the train records (the scaler is fitted on train only).
    """
    rng = np.random.default_rng(seed)
    n_hours = 12
    params = {**SMALL, "n_hours": n_hours}
    timeseries, static, splits = _random_records(rng, n_records=24, n_hours=n_hours)
    h = int(rng.integers(1, n_hours))
    targets = splits.loc[splits["split"] != "train", "record_id"].to_numpy()

    later = timeseries["record_id"].isin(targets) & (timeseries["minutes"] >= 60 * h)
    changed = timeseries[~later | (rng.random(len(timeseries)) < 0.7)].copy()
    changed_later = changed["record_id"].isin(targets) & (changed["minutes"] >= 60 * h)
    changed.loc[changed_later, "value"] = rng.normal(50, 30, int(changed_later.sum()))
    added = _long([(int(r), 60 * h + int(m), p, 500.0) for r in targets for p in ("HR", "Na")
                   for m in rng.integers(0, 60, 1)])
    changed = pd.concat([changed, added], ignore_index=True)

    _, spec, before = _run_nodes(timeseries, static, splits, params)
    _, spec_after, after = _run_nodes(changed, static, splits, params)
    assert spec_after["scaler"] == spec["scaler"]
    for split in ("validation", "test"):
        np.testing.assert_array_equal(after[split]["record_id"], before[split]["record_id"])
        for name in ("X", "mask", "delta"):
            np.testing.assert_array_equal(
                after[split][name][:, :h], before[split][name][:, :h], err_msg=f"{split} {name} before hour {h}"
            )
        # The change is visible from hour h on (the new observations at hour h).
        assert after[split]["mask"][:, h].all()
        assert not np.array_equal(after[split]["X"][:, h:], before[split]["X"][:, h:])
    for name in ("X", "mask", "delta", "static"):
        np.testing.assert_array_equal(after["train"][name], before["train"][name])


def test_train_statistics_come_from_the_train_split_only() -> None:
    rng = np.random.default_rng(7)
    timeseries, static, splits = _random_records(rng, n_records=20, n_hours=4)
    not_train = splits.loc[splits["split"] != "train", "record_id"]
    shifted = timeseries.copy()
    shifted.loc[shifted["record_id"].isin(not_train), "value"] += 1000.0
    static_shifted = static.copy()
    static_shifted.loc[static_shifted["record_id"].isin(not_train), "age"] += 1000.0
    _, spec, _ = _run_nodes(timeseries, static, splits)
    _, spec_shifted, _ = _run_nodes(shifted, static_shifted, splits)
    assert spec_shifted["scaler"] == spec["scaler"]
    assert spec_shifted["static_scaler"] == spec["static_scaler"]


# ----------------------------------------------------------------------------- splits


def _physionet_like_static(n_a: int = 100, n_b: int = 50, positive_every: int = 5) -> pd.DataFrame:
    ids = np.arange(1, n_a + n_b + 1)
    return pd.DataFrame(
        {
            "record_id": ids.astype(np.int64),
            "label": (ids % positive_every == 0).astype(np.int64),
            "split_group": np.where(ids <= n_a, "a", "b"),
        }
    )


def test_physionet_splits_stratify_set_a_and_hold_out_set_b() -> None:
    static = _physionet_like_static()
    params = {"splits": {**SMALL["splits"], "validation_fraction": 0.2, "n_folds": 5}}
    splits = make_splits(static, params, seed=2012)
    assert list(splits.columns) == ["record_id", "split", "group", "fold"]
    counts = splits.groupby("split").size().to_dict()
    assert counts == {"train": 80, "validation": 20, "test": 50}
    labelled = splits.merge(static, on="record_id")
    # 20 positives in set a: stratification puts 16 in train, 4 in validation.
    assert labelled.groupby("split")["label"].sum().to_dict() == {"train": 16, "validation": 4, "test": 10}
    assert set(labelled.loc[labelled["split"] == "test", "split_group"]) == {"b"}
    train = labelled[labelled["split"] == "train"]
    assert sorted(train["fold"].unique()) == [0, 1, 2, 3, 4]
    assert train.groupby("fold").size().tolist() == [16] * 5
    assert train.groupby("fold")["label"].sum().min() >= 3
    assert (labelled.loc[labelled["split"] != "train", "fold"] == -1).all()
    # Reproducible from the seed; another seed gives another split.
    pd.testing.assert_frame_equal(make_splits(static, params, seed=2012), splits)
    assert not make_splits(static, params, seed=1).equals(splits)


def test_patient_level_splits_keep_every_stay_of_a_subject_together() -> None:
    rng = np.random.default_rng(0)
    n = 300
    subject = rng.integers(0, 120, n)
    static = pd.DataFrame(
        {
            "record_id": np.arange(200001, 200001 + n, dtype=np.int64),
            "subject_id": subject,
            "label": (subject % 4 == 0).astype(np.int64),
            "split_group": "all",
        }
    )
    params = {"splits": FEATURE_PARAMS["mimic3"]["splits"]}
    splits = make_splits(static, params, seed=3).merge(static, on="record_id")
    assert len(splits) == n
    assert splits.groupby("subject_id")["split"].nunique().max() == 1
    train = splits[splits["split"] == "train"]
    assert train.groupby("subject_id")["fold"].nunique().max() == 1
    assert sorted(train["fold"].unique()) == list(range(params["splits"]["n_folds"]))
    subjects = splits.groupby("split")["subject_id"].nunique()
    assert subjects["test"] == pytest.approx(0.2 * np.unique(subject).size, abs=1)


def test_a_split_without_positives_is_an_error() -> None:
    static = _physionet_like_static()
    static.loc[static["split_group"] == "b", "label"] = 0
    with pytest.raises(ValueError, match="test split has no positive record"):
        make_splits(static, {"splits": SMALL["splits"]}, seed=1)


def test_a_cv_fold_without_positives_is_an_error() -> None:
    static = _physionet_like_static(n_a=100, positive_every=40)  # 2 positives in set a, 1 left in train
    params = {"splits": {**SMALL["splits"], "validation_fraction": 0.2, "n_folds": 3}}
    with pytest.raises(ValueError, match="CV fold .* has no positive record"):
        make_splits(static, params, seed=1)


def test_split_groups_the_data_lacks_are_an_error_listing_the_present_ones() -> None:
    params = {"splits": {**SMALL["splits"], "test_groups": ["b", "c"]}}
    with pytest.raises(ValueError, match=r"\['c'\].*split_group has \['a', 'b'\]"):
        make_splits(_physionet_like_static(), params, seed=1)


def test_missing_unit_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="subject_id"):
        make_splits(_physionet_like_static(), {"splits": FEATURE_PARAMS["mimic3"]["splits"]}, seed=1)


# ----------------------------------------------------------------------------- bad input


def test_feature_names_the_data_lacks_are_an_error_listing_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"\['Calcium'\].*available parameters: \['HR', 'Na', 'Weight'\]"):
        build_hourly_cells(HAND_TIMESERIES, HAND_SPLITS, SMALL, {"dynamic": ["HR", "Calcium"]}, feature_set_name="x")


@pytest.mark.parametrize(
    ("dynamic", "message"),
    [(["HR", "HR"], "'HR' appears twice"), ([], "empty `dynamic` list"), ([{"HR": ["HR"]}, "HR"], "'HR' appears twice")],
)
def test_malformed_feature_set_is_an_error(dynamic: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_hourly_cells(HAND_TIMESERIES, HAND_SPLITS, SMALL, {"dynamic": dynamic}, feature_set_name="x")


def test_rows_before_admission_are_an_error() -> None:
    timeseries = pd.concat([HAND_TIMESERIES, _long([(2, -5, "HR", 70.0)])])
    with pytest.raises(ValueError, match="before ICU admission"):
        build_hourly_cells(timeseries, HAND_SPLITS, SMALL, TINY, feature_set_name="tiny")


def test_a_feature_never_observed_in_train_is_an_error() -> None:
    timeseries = HAND_TIMESERIES[~((HAND_TIMESERIES["parameter"] == "Na") & HAND_TIMESERIES["record_id"].isin([1, 2, 3]))]
    with pytest.raises(ValueError, match="'Na' .* never observed in the train split"):
        _run_nodes(timeseries, HAND_STATIC, HAND_SPLITS)


def test_unlisted_static_category_is_an_error() -> None:
    static = HAND_STATIC.copy()
    static.loc[0, "icu_type"] = "NICU"
    with pytest.raises(ValueError, match=r"\['NICU'\].*one_hot.icu_type"):
        _run_nodes(HAND_TIMESERIES, static, HAND_SPLITS)


def test_nan_reaching_the_final_tensors_is_an_error() -> None:
    cells, spec, _ = _run_nodes(HAND_TIMESERIES, HAND_STATIC, HAND_SPLITS)
    broken = copy.deepcopy(spec)
    broken["scaler"]["Na"]["fill"] = float("nan")
    with pytest.raises(ValueError, match=r"X has NaN/inf .*'Na'"):
        build_model_input(cells, HAND_STATIC, HAND_SPLITS, broken)


def test_spec_from_another_feature_set_is_an_error() -> None:
    cells, spec, _ = _run_nodes(HAND_TIMESERIES, HAND_STATIC, HAND_SPLITS)
    spec = {**spec, "feature_names": ["Na", "HR"]}
    with pytest.raises(ValueError, match="different runs"):
        build_model_input(cells, HAND_STATIC, HAND_SPLITS, spec)


# ----------------------------------------------------------------------------- the kedro pipeline


def _synthetic_physionet(n_a: int = 60, n_b: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random records with every PhysioNet parameter the feature sets use."""
    rng = np.random.default_rng(seed)
    names = FEATURE_PARAMS["physionet2012"]["feature_sets"]["full"]["dynamic"]
    ids = np.arange(132539, 132539 + n_a + n_b)
    n_rows = 30 * ids.size
    timeseries = _long(
        list(zip(rng.choice(ids, n_rows).tolist(), rng.integers(0, 2881, n_rows).tolist(),
                 rng.choice(names, n_rows).tolist(), rng.normal(50, 10, n_rows).tolist(), strict=True))
    )
    static = pd.DataFrame(
        {
            "record_id": ids.astype(np.int64),
            "age": rng.integers(18, 90, ids.size).astype(float),
            "gender": rng.integers(0, 2, ids.size).astype(float),
            "height": np.where(rng.random(ids.size) < 0.5, np.nan, rng.normal(170, 10, ids.size)),
            "weight": rng.normal(80, 15, ids.size),
            "icu_type": rng.choice(["CCU", "CSRU", "MICU", "SICU"], ids.size),
            "label": (np.arange(ids.size) % 5 == 0).astype(np.int64),
            "split_group": np.where(np.arange(ids.size) < n_a, "a", "b"),
        }
    )
    return timeseries, static


def test_pipeline_runs_with_the_project_parameters_on_synthetic_records() -> None:
    timeseries, static = _synthetic_physionet()
    catalog = run_in_memory(
        create_pipeline("physionet2012", STUDIES["physionet2012"].feature_sets),
        {"features": FEATURE_PARAMS, "seed": 2012},
        {"ingestion.timeseries": timeseries, "ingestion.static": static},
    )
    splits = catalog.load("features.splits")
    assert splits.groupby("split").size().to_dict() == {"train": 48, "validation": 12, "test": 30}
    for fs, n_features in (("full", 36), ("sun2018", 18)):
        spec = catalog.load(f"features.{fs}.feature_spec")
        assert len(spec["feature_names"]) == n_features and spec["n_hours"] == 48
        assert spec["static_names"] == ["age", "gender", "height", "weight", "icu_type=CCU", "icu_type=CSRU",
                                        "icu_type=MICU", "icu_type=SICU"]
        for split, n in (("train", 48), ("validation", 12), ("test", 30)):
            bundle = catalog.load(f"features.{fs}.model_input_{split}")
            assert bundle["X"].shape == bundle["mask"].shape == bundle["delta"].shape == (n, 48, n_features)
            assert bundle["static"].shape == (n, 8)


def test_pipeline_shape_namespaces_and_datasets() -> None:
    # The contract with training and the attack.
    assert {source: study.feature_sets for source, study in STUDIES.items()} == {
        "physionet2012": ("full", "sun2018"), "mimic3": ("sun2018",)}
    pipe = create_pipeline("physionet2012", STUDIES["physionet2012"].feature_sets)
    assert {n.name for n in pipe.nodes} == {
        "features.make_splits",
        *(f"features.{fs}.{name}" for fs in ("full", "sun2018")
          for name in ("build_hourly_cells", "fit_feature_spec", "build_model_input")),
    }
    assert pipe.inputs() == {
        "ingestion.timeseries",
        "ingestion.static",
        "params:features.physionet2012",
        "params:features.physionet2012.feature_sets.full",
        "params:features.physionet2012.feature_sets.sun2018",
        "params:seed",
    }
    assert pipe.all_outputs() == {
        "features.splits",
        *(f"features.{fs}.{name}" for fs in ("full", "sun2018")
          for name in ("hourly_cells", "feature_spec", "model_input_train", "model_input_validation",
                       "model_input_test")),
    }
    mimic3 = create_pipeline("mimic3", STUDIES["mimic3"].feature_sets)
    assert {n.name for n in mimic3.nodes} == {
        "features.make_splits", "features.sun2018.build_hourly_cells", "features.sun2018.fit_feature_spec",
        "features.sun2018.build_model_input",
    }
    assert {name for name in mimic3.inputs() if name.startswith("params:features")} == {
        "params:features.mimic3", "params:features.mimic3.feature_sets.sun2018"}


def test_every_dataset_has_a_versioned_catalog_entry() -> None:
    from kedro.io import DataCatalog as Catalog

    catalog_config = {}
    for name in ("catalog_04_feature.yml", "catalog_05_model_input.yml"):
        entries = yaml.safe_load((PROJECT_ROOT / "conf/base" / name).read_text())
        # `_name` entries are YAML anchors (shared metadata), which Kedro's config loader drops.
        catalog_config.update({key: entry for key, entry in entries.items() if not key.startswith("_")})
    assert all(entry["versioned"] for entry in catalog_config.values())
    for source, env in (("physionet2012", "physionet2012"), ("mimic3", "mimic3_demo")):
        catalog = Catalog.from_config(project_config("catalog", env))
        pipe = create_pipeline(source, STUDIES[source].feature_sets)
        for name in pipe.all_outputs():
            dataset = catalog.get(name)
            assert dataset is not None, name
            assert "Memory" not in type(dataset).__name__, name
            assert f"/{source}/" in str(dataset._filepath), (name, dataset._filepath)


# ----------------------------------------------------------------------------- real data


def _raw_hourly(physionet2012_dir: Path, set_name: str, record_ids: list[int], parameter: str) -> dict[int, dict[int, float]]:
    """Hourly means of one parameter read straight from the record files (independent of ingestion)."""
    wanted = {f"set-{set_name}/{rid}.txt": rid for rid in record_ids}
    out: dict[int, dict[int, float]] = {}
    with tarfile.open(physionet2012_dir / f"set-{set_name}.tar.gz") as archive:
        for member in archive:
            if member.name not in wanted:
                continue
            rows = pd.read_csv(io.BytesIO(archive.extractfile(member).read()))
            rows = rows[rows["Parameter"] == parameter]
            hours, minutes = rows["Time"].str.split(":", expand=True).astype(int).T.to_numpy()
            rows = rows.assign(hour=(60 * hours + minutes) // 60)
            out[wanted[member.name]] = rows[rows["hour"] < 48].groupby("hour")["Value"].mean().to_dict()
    return out


@pytest.mark.slow
def test_physionet2012_features_on_the_real_records(physionet2012_dir: Path, physionet2012_features: DataCatalog) -> None:
    catalog = physionet2012_features
    outcomes = {
        name: pd.read_csv(physionet2012_dir / f"Outcomes-{name}.txt").set_index("RecordID")["In-hospital_death"]
        for name in ("a", "b")
    }
    # Every record is kept (the 12 near-empty ones too): set-a → train/validation 80/20 stratified,
    # set-b → test. 554 deaths in set-a, 568 in set-b (the outcome files).
    splits = catalog.load("features.splits")
    assert len(splits) == 8000 and splits["record_id"].is_unique
    assert splits.groupby("split").size().to_dict() == {"train": 3200, "validation": 800, "test": 4000}
    assert set(splits.loc[splits["split"] != "test", "record_id"]) == set(outcomes["a"].index)
    assert set(splits.loc[splits["split"] == "test", "record_id"]) == set(outcomes["b"].index)
    assert sorted(splits.loc[splits["split"] == "train", "fold"].unique()) == [0, 1, 2, 3, 4]

    timeseries = catalog.load("ingestion.timeseries")
    full_spec = catalog.load("features.full.feature_spec")
    full_names = full_spec["feature_names"]
    assert full_spec["rows_after_window"] == int(
        ((timeseries["minutes"] >= 2880) & timeseries["parameter"].isin(full_names)).sum()
    )
    bundles = {
        (fs, split): catalog.load(f"features.{fs}.model_input_{split}")
        for fs in ("full", "sun2018") for split in ("train", "validation", "test")
    }
    positives = {"train": 443, "validation": 111, "test": 568}  # 554 = 443 + 111, stratified
    for (fs, split), bundle in bundles.items():
        n = len(splits[splits["split"] == split])
        n_features = {"full": 36, "sun2018": 18}[fs]
        assert bundle["X"].shape == (n, 48, n_features) and bundle["static"].shape == (n, 8)
        assert bundle["X"].dtype == np.float32 and bundle["mask"].dtype == bool
        for name in ("X", "delta", "static"):
            assert np.isfinite(bundle[name]).all(), (fs, split, name)
            assert bundle[name].min() >= 0.0 and bundle[name].max() <= 1.0, (fs, split, name)
        expected_y = pd.concat(outcomes.values()).loc[bundle["record_id"]].to_numpy()
        np.testing.assert_array_equal(bundle["y"], expected_y)
        assert int(bundle["y"].sum()) == positives[split]
        assert set(bundle["group"]) == ({"b"} if split == "test" else {"a"})
    ids = [set(bundles[("full", s)]["record_id"]) for s in ("train", "validation", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 8000

    # sun2018's blood pressure is observed where the full set has invasive or non-invasive BP.
    full, sun = bundles[("full", "test")], bundles[("sun2018", "test")]
    sun_names = catalog.load("features.sun2018.feature_spec")["feature_names"]
    np.testing.assert_array_equal(
        sun["mask"][:, :, sun_names.index("SysBP")],
        full["mask"][:, :, full_names.index("SysABP")] | full["mask"][:, :, full_names.index("NISysABP")],
    )
    np.testing.assert_array_equal(
        sun["mask"][:, :, sun_names.index("SpO2")], full["mask"][:, :, full_names.index("SaO2")]
    )

    # Hourly HR means straight from the record files agree with mask and (inside p05..p95) with X
    # mapped back to clinical units: value = p05 + x * (p95 - p05).
    hr = full_names.index("HR")
    scaler = full_spec["scaler"]["HR"]
    for split, set_name in (("train", "a"), ("test", "b")):
        bundle = bundles[("full", split)]
        rows = [0, 1, len(bundle["record_id"]) - 1]
        raw = _raw_hourly(physionet2012_dir, set_name, [int(bundle["record_id"][r]) for r in rows], "HR")
        for row in rows:
            hourly = raw[int(bundle["record_id"][row])]
            assert np.flatnonzero(bundle["mask"][row, :, hr]).tolist() == sorted(hourly)
            for hour, value in hourly.items():
                if scaler["p05"] < value < scaler["p95"]:
                    back = scaler["p05"] + bundle["X"][row, hour, hr] * (scaler["p95"] - scaler["p05"])
                    assert back == pytest.approx(value, rel=1e-4)


def test_mimic3_demo_features_cover_the_cohort(mimic3_features: DataCatalog) -> None:
    catalog = mimic3_features
    cohort = catalog.load("ingestion.cohort")
    static = catalog.load("ingestion.static")
    included = cohort.loc[cohort["included"]]
    splits = catalog.load("features.splits").merge(static[["record_id", "subject_id", "label"]], on="record_id")
    assert sorted(splits["record_id"]) == sorted(included["icustay_id"])
    assert splits.groupby("subject_id")["split"].nunique().max() == 1
    spec = catalog.load("features.sun2018.feature_spec")
    assert spec["feature_names"] == ["Lactate", "PaCO2", "pH", "Albumin", "HCO3", "Calcium", "Creatinine", "Glucose",
                                     "Mg", "K", "Na", "BUN", "Platelets", "HR", "SysBP", "DiasBP", "Temp",
                                     "RespRate", "SpO2"]
    total = 0
    for split in ("train", "validation", "test"):
        bundle = catalog.load(f"features.sun2018.model_input_{split}")
        expected = splits[splits["split"] == split].sort_values("record_id")
        np.testing.assert_array_equal(bundle["record_id"], expected["record_id"])
        np.testing.assert_array_equal(bundle["y"], expected["label"])
        assert bundle["X"].shape == (len(expected), 48, 19) and bundle["static"].shape == (len(expected), 7)
        assert np.isfinite(bundle["X"]).all() and 0.0 <= bundle["X"].min() and bundle["X"].max() <= 1.0
        assert bundle["y"].sum() > 0
        total += len(expected)
    assert total == len(included)


def test_mimic3_demo_short_stays_are_padded_without_values_from_after_the_stay(mimic3_features: DataCatalog) -> None:
    """The padded window rule: a stay that leaves the ICU before hour 48 has no observed cell from
    the hour its window ends; those hours carry its last values forward (mask 0), nothing later."""
    catalog = mimic3_features
    static = catalog.load("ingestion.static").set_index("record_id")
    n_short = 0
    for split in ("train", "validation", "test"):
        bundle = catalog.load(f"features.sun2018.model_input_{split}")
        hours_in_stay = static.loc[bundle["record_id"], "window_hours_in_stay"].to_numpy()
        for row in np.flatnonzero(hours_in_stay < 48):  # the 39 short stays, not data rows
            first_padded = int(np.ceil(hours_in_stay[row]))
            assert not bundle["mask"][row, first_padded:].any()
            np.testing.assert_array_equal(bundle["X"][row, first_padded:],
                                          np.broadcast_to(bundle["X"][row, first_padded - 1], (48 - first_padded, 19)))
            delta = bundle["delta"][row, first_padded - 1:]
            seen = delta[0] < 1.0  # observed in the stay: the hours since then keep growing
            assert (np.diff(delta[:, seen], axis=0) > 0).all() and (delta[:, ~seen] == 1.0).all()
            n_short += 1
    assert n_short == 39
