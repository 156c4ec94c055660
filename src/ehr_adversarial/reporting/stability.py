"""How far an attacked model's susceptibility map can be trusted: CIs over records, agreement of disjoint
halves of the records, and agreement between separately trained instances of the model."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import pandas as pd

from ehr_adversarial.attack import logit_margin, ranking_agreement
from ehr_adversarial.attack.run import attack_outcome, run_attack
from ehr_adversarial.attack.susceptibility import (
    bootstrap_susceptibility,
    split_half_agreement,
    susceptible_scores,
    susceptible_tolerance,
)
from ehr_adversarial.features.bundle import TensorBundle
from ehr_adversarial.models import instances
from ehr_adversarial.torch_utils import resolve_device
from ehr_adversarial.training.torch_loop import predict_logits, to_tensors

logger = logging.getLogger(__name__)

# Columns (and dtypes of the empty tables of a single-instance model).
INSTANCE_DTYPES = {"direction": "object", "instance_a": "int64", "instance_b": "int64", "n_records": "int64",
                   "n_features": "int64", "spearman": "float64", "kendall": "float64", "top_k": "int64",
                   "top_k_overlap": "int64"}
INSTANCE_RANKING_DTYPES = {"direction": "object", "instance": "int64", "feature": "object", "cumulative_s": "float64",
                           "susceptible": "bool", "rank": "float64", "n_records": "int64", "n_attacked": "int64",
                           "success_rate": "float64"}
INSTANCE_COLUMNS = list(INSTANCE_DTYPES)
INSTANCE_RANKING_COLUMNS = list(INSTANCE_RANKING_DTYPES)


def susceptibility_intervals(records: pd.DataFrame, deltas: TensorBundle, attack: dict[str, Any],
                             reporting: dict[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """S_j with its rank and S_t, each with a bootstrap CI over the successful records (per direction)."""
    return bootstrap_susceptibility(*attack_outcome(records, deltas), n_bootstrap=int(reporting.get("n_bootstrap", 200)),
                                    seed=seed, confidence=float(reporting.get("confidence", 0.95)),
                                    tolerance=susceptible_tolerance(attack))


def record_stability(records: pd.DataFrame, deltas: TensorBundle, attack: dict[str, Any], reporting: dict[str, Any],
                     seed: int) -> pd.DataFrame:
    """Agreement of the S_j rankings of disjoint random halves of the successful records (per direction; S_j
    below `attack.susceptible_tolerance` counts as 0)."""
    return split_half_agreement(*attack_outcome(records, deltas), n_splits=int(reporting.get("split_half_repeats", 50)),
                                seed=seed, top_k=int(reporting.get("top_k", 5)),
                                min_per_half=int(reporting.get("min_records_per_half", 25)), tolerance=susceptible_tolerance(attack))


def _margins(member, model_input_test: TensorBundle, rows: np.ndarray, chunk_size: int, device: str) -> np.ndarray:
    """Z_y − Z_y′ of one instance on the test records at `rows` (> 0: classified correctly)."""
    torch_device = resolve_device(device)
    tensors = to_tensors({name: np.asarray(model_input_test[name])[rows] for name in ("X", "mask", "delta", "static", "y")},
                         torch_device)
    logits = predict_logits(member.to(torch_device), tensors, chunk_size)
    return logit_margin(logits, tensors["y"]).cpu().numpy().astype("float64")


def balanced_subset(selection: pd.DataFrame, n_records: int, seed: int) -> pd.DataFrame:
    """At most n_records of the attack's records, n_records // 2 of each label (fewer where a label has fewer)."""
    rng = np.random.default_rng(seed)
    per_label = max(1, n_records // 2)
    chosen = [frame.iloc[np.sort(rng.permutation(len(frame))[:per_label])] for _, frame in selection.groupby("label")]
    return pd.concat(chosen).sort_values("row", ignore_index=True)


def attack_instances(model, model_input_test: TensorBundle, selection: pd.DataFrame, feature_spec: dict[str, Any],
                     attack: dict[str, Any], reporting: dict[str, Any], seed: int, device: str
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each separately trained instance of `model` attacked on the same records: its S_j ranking, and the
    agreement of every pair of instances (S_j below `attack.susceptible_tolerance` counts as 0).

    The records are the attack's selection (records the served model classifies correctly) that every instance
    also classifies correctly — a record an instance already gets wrong would "flip" with δ = 0 — of which
    `reporting.instance_records` are drawn, half of each label where a label has enough. A single-instance model
    gives empty tables (the report says how to measure it)."""
    members = instances(model)
    empty = (pd.DataFrame({c: pd.Series(dtype=t) for c, t in INSTANCE_RANKING_DTYPES.items()}),
             pd.DataFrame({c: pd.Series(dtype=t) for c, t in INSTANCE_DTYPES.items()}))
    if len(members) < 2:
        return empty
    rows = selection["row"].to_numpy()
    chunk_size = int(attack.get("chunk_size", 512))
    margins = np.stack([_margins(member, model_input_test, rows, chunk_size, device) for member in members])
    correct = selection[(margins > 0).all(axis=0)]
    if correct.empty:
        logger.warning("no record of the attack's selection is classified correctly by all %d instances; "
                       "the instances cannot be compared", len(members))
        return empty
    chosen = balanced_subset(correct, int(reporting.get("instance_records", 300)), seed)
    logger.info("attacking %d instances on the same %d records (%d of label 1), correct for every instance",
                len(members), len(chosen), int(chosen["label"].sum()))
    member_rows = chosen["row"].to_numpy()
    rankings = []
    for k, member in enumerate(members):
        own = chosen.assign(clean_margin=_margins(member, model_input_test, member_rows, chunk_size, device))
        attacked, deltas, _ = run_attack(member, model_input_test, own, feature_spec, attack, seed, device)
        features, _ = bootstrap_susceptibility(*attack_outcome(attacked, deltas), n_bootstrap=0, tolerance=susceptible_tolerance(attack))
        by_direction = attacked.groupby("direction")["success"]
        rankings.append(features.assign(instance=k,
                                        n_attacked=features["direction"].map(by_direction.size()).astype("int64"),
                                        success_rate=features["direction"].map(by_direction.mean()).astype(float)))
    ranking = pd.concat(rankings, ignore_index=True)[INSTANCE_RANKING_COLUMNS]
    k_top = int(reporting.get("top_k", 5))
    rows = []
    for direction, frame in ranking.groupby("direction", sort=True):
        scores = frame.pivot(index="feature", columns="instance", values="cumulative_s")
        n_records = frame.groupby("instance")["n_records"].first()
        for a, b in itertools.combinations(sorted(scores.columns), 2):
            agreement = ranking_agreement(susceptible_scores(scores[a], susceptible_tolerance(attack)),
                                          susceptible_scores(scores[b], susceptible_tolerance(attack)), k_top)
            rows.append({"direction": direction, "instance_a": int(a), "instance_b": int(b),
                         "n_records": int(min(n_records[a], n_records[b])),
                         **{key: agreement[key] for key in ("n_features", "spearman", "kendall", "top_k",
                                                             "top_k_overlap")}})
    return ranking, pd.DataFrame(rows, columns=INSTANCE_COLUMNS)


def instance_half_stability(instance_rankings: pd.DataFrame, tolerance: float, top_k: int) -> pd.DataFrame:
    """Agreement of the mean maps of two disjoint halves of the instances, for every split of the K instances
    into ⌊K/2⌋ and ⌈K/2⌉ (with 3 instances: each one against the mean of the other two).

    Averaging is what the served model and the ensemble map do, so this asks whether the map of half the
    instances predicts the map of the other half: per direction and split, Spearman ρ and the top-k overlap of
    the mean cumulative S_j (S_j below `tolerance` counts as 0). Empty for fewer than 2 instances."""
    rows = []
    for direction, frame in instance_rankings.groupby("direction", sort=True):
        scores = frame.pivot(index="feature", columns="instance", values="cumulative_s").fillna(0.0)
        members = sorted(scores.columns)
        if len(members) < 2:
            continue
        size = len(members) // 2
        for group in itertools.combinations(members, size):
            rest = [m for m in members if m not in group]
            if size == len(rest) and group > tuple(rest):
                continue  # an even split and its mirror image are the same split
            half_a = susceptible_scores(scores[list(group)].mean(axis=1), tolerance)
            half_b = susceptible_scores(scores[rest].mean(axis=1), tolerance)
            agreement = ranking_agreement(half_a, half_b, top_k)
            rows.append({"direction": direction, "half_a": ", ".join(str(m) for m in group),
                         "half_b": ", ".join(str(m) for m in rest), "spearman": agreement["spearman"],
                         "top_k": agreement["top_k"], "top_k_overlap": agreement["top_k_overlap"]})
    return pd.DataFrame(rows, columns=["direction", "half_a", "half_b", "spearman", "top_k", "top_k_overlap"])
