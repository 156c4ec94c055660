"""The attack of a trained model on a test bundle: choose records, attack them, tabulate the outcome,
susceptibility tables and perturbations in clinical units."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ehr_adversarial.attack import (
    AttackConfig,
    cumulative_ranking,
    direction_of,
    feature_scale,
    input_gradient_mode,
    l1_attack,
    logit_margin,
    perturbation_cells,
    perturbation_norms,
    susceptibility_table,
)
from ehr_adversarial.attack.susceptibility import susceptible_tolerance
from ehr_adversarial.features.bundle import TensorBundle
from ehr_adversarial.models import check_model_matches_data
from ehr_adversarial.torch_utils import resolve_device, seed_everything
from ehr_adversarial.training.torch_loop import predict_logits, to_tensors

logger = logging.getLogger(__name__)

def _model_tensors(model: nn.Module, bundle: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """x, the model's other inputs and y of a bundle; the attack perturbs x, the first input."""
    if tuple(model.inputs[:1]) != ("x",):
        raise ValueError(f"{type(model).__name__} takes {model.inputs}; the attack needs x as its first input.")
    return to_tensors(bundle, device)


def select_records(
    model: nn.Module,
    model_input_test: TensorBundle,
    feature_spec: dict[str, Any],
    attack: dict[str, Any],
    seed: int,
    device: str,
) -> pd.DataFrame:
    """Correctly classified test records to attack: `n_records` of them, class-balanced if asked.

    Correct means the argmax of the logits is the true label, the rule whose flip the attack
    seeks. Returns row (index in the test bundle), record_id, label, clean_margin (Z_y − Z_y′).
    """
    check_model_matches_data(model.config, model_input_test, feature_spec, "the test model input")
    torch_device = resolve_device(device)
    tensors = _model_tensors(model.to(torch_device), model_input_test, torch_device)
    margin = logit_margin(predict_logits(model, tensors, int(attack.get("chunk_size", 512))), tensors["y"]).cpu().numpy()
    label = np.asarray(model_input_test["y"])
    correct = np.flatnonzero(margin > 0)
    if correct.size == 0:
        raise ValueError(
            f"the model classifies none of the {label.size} test records correctly; there is nothing to attack."
        )
    n = correct.size if attack.get("n_records") in (None, "all") else int(attack["n_records"])
    if n < 1:
        raise ValueError(f"attack.n_records is {n}; it must be ≥ 1 (or all).")
    if n > correct.size:
        if attack.get("if_fewer", "all") != "all":
            raise ValueError(
                f"attack.n_records is {n} but only {correct.size} test records are correctly classified; "
                "lower n_records or set if_fewer: all."
            )
        logger.warning("only %d correctly classified test records; attacking all of them (n_records %d)",
                       correct.size, n)
        n = correct.size
    rng = np.random.default_rng(seed)
    if attack.get("class_balanced", True):
        by_class = [rng.permutation(correct[label[correct] == c]) for c in (0, 1)]
        # As even as the smaller class allows; the larger class fills the rest.
        n0 = min(by_class[0].size, max(n - by_class[1].size, (n + 1) // 2))
        rows = np.concatenate([by_class[0][:n0], by_class[1][: n - n0]])
    else:
        rows = rng.choice(correct, size=n, replace=False)
    rows = np.sort(rows)
    logger.info("attacking %d of %d correctly classified test records (%d of label 1)",
                rows.size, correct.size, int(label[rows].sum()))
    return pd.DataFrame({
        "row": rows.astype("int64"),
        "record_id": np.asarray(model_input_test["record_id"])[rows].astype("int64"),
        "label": label[rows].astype("int64"),
        "clean_margin": margin[rows].astype("float64"),
    })


def run_attack(
    model: nn.Module,
    model_input_test: TensorBundle,
    selection: pd.DataFrame,
    feature_spec: dict[str, Any],
    attack: dict[str, Any],
    seed: int,
    device: str,
) -> tuple[pd.DataFrame, TensorBundle, dict[str, Any]]:
    """The batched L1 attack of the selected records: per-record table, δ tensors, summary."""
    check_model_matches_data(model.config, model_input_test, feature_spec, "the test model input")
    config = AttackConfig.from_params(attack)
    seed_everything(seed)
    torch_device = resolve_device(device)
    model = model.to(torch_device)  # l1_attack moves each chunk of records to the model's device
    rows = selection["row"].to_numpy()
    chosen = {name: np.asarray(value)[rows] for name, value in model_input_test.items()}
    tensors = _model_tensors(model, chosen, torch.device("cpu"))
    if not torch.equal(tensors["y"], torch.tensor(selection["label"].to_numpy())):
        raise ValueError("the attack selection's labels differ from the test model input; they come from different runs.")
    inputs = {name: tensors[name] for name in model.inputs[1:]}
    started = time.perf_counter()
    with tqdm(total=len(rows), desc=f"attack {model.config.get('architecture')}", unit="record", disable=None) as bar:
        result = l1_attack(model, tensors["x"], tensors["y"], config, inputs=inputs,
                           observed=tensors["mask"].bool(), progress=bar.update)
    seconds = time.perf_counter() - started

    adversarial_margin = _margins(model, tensors["x"] + result.delta_best, tensors["y"], inputs, config.chunk_size)
    records = _records_table(selection, result, adversarial_margin)
    deltas = {
        "record_id": selection["record_id"].to_numpy(),
        "label": selection["label"].to_numpy(),
        "delta_first": result.delta_first.numpy().astype(np.float32),
        "delta_best": result.delta_best.numpy().astype(np.float32),
        "feature_names": np.asarray(feature_spec["feature_names"], dtype=np.str_),
    }
    summary = _summary(records, model, feature_spec, model_input_test, config, seconds, torch_device)
    logger.info("attack: %.1f%% success on %d records in %.1f s (%.1f records/s)", 100 * summary["success_rate"],
                len(records), seconds, len(records) / max(seconds, 1e-9))
    return records, deltas, summary


def _margins(model: nn.Module, x: torch.Tensor, label: torch.Tensor, inputs: Mapping[str, torch.Tensor],
             chunk_size: int) -> np.ndarray:
    """Z_y − Z_y′ of (perturbed) inputs, in the attack's model mode, on the model's device."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad(), input_gradient_mode(model):
        for start in range(0, x.shape[0], chunk_size):
            part = slice(start, start + chunk_size)
            logits = model(x[part].to(device), **{k: v[part].to(device) for k, v in inputs.items()})
            out.append(logit_margin(logits, label[part].to(device)).cpu())
    return torch.cat(out).double().numpy()


def _records_table(selection: pd.DataFrame, result, adversarial_margin: np.ndarray) -> pd.DataFrame:
    """One row per attacked record: outcome, norms of the first and best δ, cost."""
    table = selection[["record_id", "label", "clean_margin"]].copy()
    table["direction"] = pd.array(direction_of(table["label"].to_numpy()), dtype="string")
    table["success"] = result.success.numpy()
    table["lambda"] = result.lambda_best.numpy()
    table["first_iteration"] = result.first_iteration.numpy()
    table["best_iteration"] = result.best_iteration.numpy()
    for which in ("first", "best"):
        for name, value in perturbation_norms(getattr(result, f"delta_{which}")).items():
            table[f"{name}_{which}"] = value.numpy().astype("float64" if name != "l0" else "int64")
    table["adversarial_margin"] = np.where(table["success"], adversarial_margin, np.nan)
    table["runs"] = result.runs.numpy()
    table["forward_passes"] = result.forward_passes.numpy()
    return table


def _summary(records: pd.DataFrame, model: nn.Module, feature_spec: Mapping[str, Any], test: Mapping[str, Any],
             config: AttackConfig, seconds: float, device: torch.device) -> dict[str, Any]:
    """Success rate, mean L0/L1/L∞ per direction, iterations and cost, with the settings used."""
    def stats(frame: pd.DataFrame) -> dict[str, Any]:
        won = frame[frame["success"]]
        return {
            "records": len(frame),
            "success_rate": float(frame["success"].mean()) if len(frame) else float("nan"),
            **{f"mean_{n}_best": float(won[f"{n}_best"].mean()) for n in ("l0", "l1", "linf")},
            **{f"mean_{n}_first": float(won[f"{n}_first"].mean()) for n in ("l0", "l1", "linf")},
            "median_first_iteration": float(won["first_iteration"].median()),
            "mean_forward_passes": float(frame["forward_passes"].mean()),
        }

    return {
        "architecture": model.config.get("architecture"),
        "feature_set": feature_spec.get("feature_set"),
        "test_records": int(len(test["y"])),
        # the source groups of the split the records come from (features.<source>.splits.test_groups)
        "test_groups": sorted({str(g) for g in np.asarray(test["group"])}) if "group" in test else [],
        "attacked_records": len(records),
        "success_rate": float(records["success"].mean()),
        "overall": stats(records),
        "by_direction": {name: stats(frame) for name, frame in records.groupby("direction", sort=True)},
        "seconds": seconds,
        "device": str(device),
        "config": config.as_params(),
    }


def attack_outcome(records: pd.DataFrame, deltas: TensorBundle) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The best δ, labels, success flags and feature names of one attack, after checking that its per-record
    table and its δ tensors list the same records."""
    if not np.array_equal(records["record_id"].to_numpy(), deltas["record_id"]):
        raise ValueError("attack records and δ tensors list different records; they come from different runs.")
    return (deltas["delta_best"], deltas["label"], records["success"].to_numpy(),
            [str(n) for n in deltas["feature_names"]])


def susceptibility_tables(records: pd.DataFrame, deltas: TensorBundle, attack: Mapping[str, Any] | None = None
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GMP, GAP, GPP, S, GANZP, sensitivity per direction/feature/hour of the best δ, and the S_j ranking
    (features with S_j below `attack.susceptible_tolerance` are not susceptible and have no rank)."""
    table = susceptibility_table(*attack_outcome(records, deltas))
    if table.empty:
        # A model the attack cannot flip (e.g. a near-constant one on a tiny cohort) is a finding, not a
        # crash: the tables are empty and the figures and report say so.
        logger.warning("no attack succeeded: there is no perturbation to measure susceptibility on")
    return table, cumulative_ranking(table, susceptible_tolerance(attack))


def clinical_perturbations(records: pd.DataFrame, deltas: TensorBundle, model_input_test: TensorBundle,
                           feature_spec: dict[str, Any]) -> pd.DataFrame:
    """Every changed cell of the best successful δ in clinical units ("Na +4.1 mmol/L at hour 37")."""
    scale = feature_scale(feature_spec)
    if list(scale.names) != [str(n) for n in deltas["feature_names"]]:
        raise ValueError("the feature spec and the δ tensors name different features; they come from different runs.")
    position = pd.Index(np.asarray(model_input_test["record_id"])).get_indexer(deltas["record_id"])
    if (position < 0).any():
        raise ValueError("some attacked records are not in the test model input; they come from different runs.")
    won = records["success"].to_numpy()
    cells = perturbation_cells(deltas["delta_best"][won], np.asarray(model_input_test["X"])[position[won]],
                               deltas["record_id"][won], scale)
    direction = records.set_index("record_id")["direction"]
    cells.insert(1, "direction", direction.loc[cells["record_id"]].to_numpy())
    return cells
