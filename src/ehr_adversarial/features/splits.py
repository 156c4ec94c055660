"""Patient-level train/validation/test splits and the train split's cross-validation folds.

Inputs follow the ingestion contract: `static` (record_id, label, split_group, and subject_id
where records of one patient must stay together).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from ehr_adversarial.features.bundle import SPLITS

logger = logging.getLogger(__name__)



def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {missing}; it has {list(frame.columns)}. "
            "Re-run the ingestion pipeline, which writes these columns."
        )


def _check_labels(static: pd.DataFrame) -> None:
    labels = static["label"]
    bad = labels.isna() | ~labels.isin([0, 1])
    if bad.any():
        examples = static.loc[bad, ["record_id", "label"]].head(5).to_dict("records")
        raise ValueError(f"static.label must be 0/1 for every record; {int(bad.sum())} are not, e.g. {examples}.")
    duplicated = static["record_id"].duplicated()
    if duplicated.any():
        raise ValueError(
            f"static has {int(duplicated.sum())} duplicated record_id(s), e.g. "
            f"{static.loc[duplicated, 'record_id'].head(5).tolist()}; one row per record is required."
        )


def _stratified_unit_split(
    frame: pd.DataFrame, unit: str, fraction: float, seed: int, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `frame` so that each `unit` (record or patient) lands on one side, stratified
    by whether the unit has any positive record; `fraction` of the units go to the second part.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"features.<source>.splits.{what} must lie in (0, 1), got {fraction}.")
    unit_label = frame.groupby(unit)["label"].max()
    try:
        kept, held = train_test_split(
            unit_label.index.to_numpy(),
            test_size=fraction,
            stratify=unit_label.to_numpy(),
            random_state=seed,
        )
    except ValueError as exc:
        raise ValueError(
            f"cannot hold out {what}={fraction} of {unit_label.size} {unit} units "
            f"({int(unit_label.sum())} with a positive record) stratified by label: {exc}"
        ) from exc
    return frame[frame[unit].isin(kept)], frame[frame[unit].isin(held)]


def _unit_folds(train: pd.DataFrame, unit: str, n_folds: int, seed: int) -> np.ndarray:
    """CV fold per train record (-1 everywhere when n_folds < 2): stratified K folds over
    units labelled by their any-positive flag, so a unit's records share one fold.
    """
    fold = np.full(len(train), -1, dtype=np.int64)
    if n_folds < 2:
        return fold
    unit_label = train.groupby(unit)["label"].max()
    unit_fold = pd.Series(-1, index=unit_label.index, dtype=np.int64)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    try:
        for k, (_, held) in enumerate(folds.split(unit_label.index, unit_label.to_numpy())):
            unit_fold.iloc[held] = k
    except ValueError as exc:
        raise ValueError(f"cannot make {n_folds} CV folds of {unit_label.size} train {unit} units: {exc}") from exc
    fold[:] = unit_fold.loc[train[unit]].to_numpy()
    for k in range(n_folds):
        _require_positives(train["label"].to_numpy()[fold == k], f"train split's CV fold {k}")
    return fold


def _require_positives(labels: pd.Series | np.ndarray, where: str) -> None:
    if int(labels.sum()) == 0:
        raise ValueError(
            f"the {where} has no positive record ({np.size(labels)} records, all label 0); "
            "metrics such as AUROC are undefined there. Use more data, another seed, or fewer folds "
            "(features.<source>.splits)."
        )


def make_splits(static: pd.DataFrame, features: dict[str, Any], seed: int) -> pd.DataFrame:
    """Patient-level stratified train/validation/test splits plus CV folds on train.

    Train and validation come from the records of `splits.train_groups` (one or several source
    groups, e.g. PhysioNet set-a, or set-a and set-b). The test set is either whole source groups
    (`splits.test_groups`, e.g. PhysioNet set-b or set-c) or, without them, `splits.test_fraction`
    of the train groups' units held out. `splits.unit` names the column whose values never cross
    splits (record_id, or subject_id for MIMIC-III).
    Returns record_id, split, group (the record's split_group) and fold (-1 outside train).
    """
    cfg = features["splits"]
    unit = cfg["unit"]
    require_columns(static, ["record_id", "label", "split_group", unit], "static")
    _check_labels(static)

    present = sorted(static["split_group"].astype(str).unique())
    train_groups = [str(g) for g in cfg["train_groups"]]
    test_groups = [str(g) for g in (cfg.get("test_groups") or [])]
    absent = [g for g in train_groups + test_groups if g not in present]
    if absent:
        raise ValueError(
            f"features.<source>.splits names group(s) {absent} that the data lacks "
            f"(train_groups {train_groups}, test_groups {test_groups}); static.split_group has {present}. "
            "Ingest the missing group(s) first (PhysioNet 2012: list the set in ingestion.physionet2012.sets, "
            "e.g. [a, b, c]) or name only groups the data has."
        )
    if set(train_groups) & set(test_groups):
        raise ValueError(
            f"features.<source>.splits: groups {sorted(set(train_groups) & set(test_groups))} "
            "are in both train_groups and test_groups."
        )

    group = static["split_group"].astype(str)
    pool = static[group.isin(train_groups)]
    if test_groups:
        test = static[group.isin(test_groups)]
        shared = np.intersect1d(pool[unit].unique(), test[unit].unique())
        if shared.size:
            raise ValueError(
                f"{shared.size} {unit} value(s) appear in both the train groups {train_groups} and the "
                f"test groups {test_groups}, e.g. {shared[:5].tolist()}; they would cross splits."
            )
        development = pool
    else:
        if not 0.0 < float(cfg.get("test_fraction") or 0.0) < 1.0:
            raise ValueError(
                f"features.<source>.splits has no test split: test_groups is empty and test_fraction is "
                f"{cfg.get('test_fraction', 0.0)}. Name held-out groups (test_groups, e.g. [c]; the data has "
                f"{present}) or hold out a share of the train groups' units (test_fraction in (0, 1), e.g. 0.2)."
            )
        development, test = _stratified_unit_split(
            pool, unit, float(cfg.get("test_fraction", 0.0)), seed, "test_fraction"
        )
    train, validation = _stratified_unit_split(
        development, unit, float(cfg["validation_fraction"]), seed, "validation_fraction"
    )

    fold = _unit_folds(train, unit, int(cfg.get("n_folds", 0)), seed)

    parts = []
    for name, part in zip(SPLITS, (train, validation, test), strict=True):
        _require_positives(part["label"], f"{name} split")
        parts.append(
            pd.DataFrame(
                {
                    "record_id": part["record_id"].to_numpy(dtype=np.int64),
                    "split": name,
                    "group": part["split_group"].astype(str).to_numpy(),
                    "fold": fold if name == "train" else np.full(len(part), -1, dtype=np.int64),
                }
            )
        )
    splits = pd.concat(parts, ignore_index=True).sort_values("record_id", ignore_index=True)
    excluded = len(static) - len(splits)
    logger.info(
        "splits: %s; %d record(s) in no split (groups outside %s)",
        splits["split"].value_counts().to_dict(),
        excluded,
        train_groups + test_groups,
    )
    return splits


