"""Torch models (`lstm_sun2018`, `dssm`): k-fold CV over candidate configs on the train split, training with
early stopping on the validation split, optionally a refit on train + validation for the epochs found, predictions.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ehr_adversarial.models import (
    InstanceEnsemble,
    build_model,
    check_model_matches_data,
    instances,
)
from ehr_adversarial.torch_utils import resolve_device
from ehr_adversarial.training.selection import (
    DEFAULT_THREADS,
    candidate_configs,
    check_model_input,
    cv_folds,
    merge_config,
    prediction_frame,
    select_best,
)
from ehr_adversarial.training.torch_loop import (
    death_probability,
    fit_calibration,
    limited_threads,
    predict_logits,
    subset,
    to_tensors,
    train_model,
)

logger = logging.getLogger(__name__)


def torch_model_config(training: Mapping[str, Any], feature_spec: Mapping[str, Any]) -> dict[str, Any]:
    """What a saved torch model carries to rebuild it: architecture, hyperparameters, feature names."""
    return {
        "architecture": training["architecture"],
        "hyperparameters": dict(training.get("hyperparameters", {})),
        "feature_set": feature_spec["feature_set"],
        "feature_names": list(feature_spec["feature_names"]),
        "static_names": list(feature_spec["static_names"]),
        "n_hours": int(feature_spec["n_hours"]),
        "n_features": len(feature_spec["feature_names"]),
        "n_static": len(feature_spec["static_names"]),
    }


def _train_once(config: Mapping[str, Any], feature_spec: Mapping[str, Any], train, monitor_set,
                seed: int, description: str, epoch_states: list | None = None) -> tuple[nn.Module, pd.DataFrame]:
    with limited_threads(config.get("n_threads", DEFAULT_THREADS)):
        return train_model(torch_model_config(config, feature_spec), config, train, monitor_set, seed, description,
                           epoch_states)


def _train_instances(configs: list[Mapping[str, Any]], feature_spec: Mapping[str, Any],
                     train: Mapping[str, np.ndarray], monitor_set: Mapping[str, np.ndarray] | None, seed: int,
                     descriptions: list[str], device: torch.device,
                     every_epoch: bool = False) -> list[tuple[nn.Module, pd.DataFrame, list | None]]:
    """Instance k trained with `configs[k]` from seed + k (on CPU side by side in `n_processes` worker processes,
    each on its own `n_threads`; the same weights as one after the other), as CPU modules with their histories
    and, `every_epoch`, every epoch's weights (all max_epochs trained: see torch_loop.fit)."""
    processes = _instance_processes(configs[0], len(configs), device)
    jobs = [(configs[k], feature_spec, seed + k, descriptions[k], every_epoch) for k in range(len(configs))]
    start = time.perf_counter()
    if processes > 1:
        # spawn, not fork: a forked child inherits the parent's OpenMP state and can hang in its first kernel
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_receive_data, initargs=(train, monitor_set)) as pool:
            results = list(pool.map(_fit_received, jobs))
    else:
        _receive_data(train, monitor_set, device)
        try:
            results = [_fit_received(job) for job in jobs]
        finally:
            _receive_data(None, None)
    fitted = []
    for description, (model_config, state, history, seconds, epoch_states) in zip(descriptions, results, strict=True):
        member = build_model(model_config)
        member.load_state_dict(state)
        member.config = model_config
        fitted.append((member.eval(), history, epoch_states))
        best = history.loc[history["best"]].iloc[0]
        score = (f"train loss {best['train_loss']:.4f}" if np.isnan(best["auprc"])  # a refit monitors nothing
                 else f"monitor AUPRC {best['auprc']:.4f}")
        logger.info("%s: kept epoch %d of %d, %s, %.1f s", description, int(best["epoch"]), len(history), score,
                    seconds)
    logger.info("%d instance(s) in %d process(es): %.1f s", len(configs), processes, time.perf_counter() - start)
    return fitted


def _instance_processes(config: Mapping[str, Any], n_instances: int, device: torch.device) -> int:
    """`n_processes` of the block; null: one per `n_threads` of the CPUs this process may use, at most one per
    instance. One on CUDA (the instances share the device)."""
    if device.type != "cpu":
        return 1
    wanted = config.get("n_processes")
    if wanted is None:
        wanted = len(os.sched_getaffinity(0)) // int(config.get("n_threads", DEFAULT_THREADS))
    return max(1, min(int(wanted), n_instances))


_DATA: dict[str, Any] = {}


def _receive_data(train, monitor_set, device: torch.device | None = None) -> None:
    """What the instances train on, once per worker process (not once per instance)."""
    _DATA.clear()
    if train is not None:
        device = device or torch.device("cpu")
        _DATA.update(train=to_tensors(train, device),
                     monitor=None if monitor_set is None else to_tensors(monitor_set, device))


def _fit_received(job) -> tuple[dict[str, Any], dict[str, torch.Tensor], pd.DataFrame, float, list | None]:
    config, feature_spec, seed, description, every_epoch = job
    start = time.perf_counter()
    epoch_states = [] if every_epoch else None
    member, history = _train_once(config, feature_spec, _DATA["train"], _DATA["monitor"], seed, description,
                                  epoch_states)
    return (member.config, {k: v.cpu() for k, v in member.state_dict().items()}, history,
            time.perf_counter() - start, epoch_states)


def select_torch_config(
    model_input_train: Mapping[str, np.ndarray],
    splits: pd.DataFrame,
    feature_spec: Mapping[str, Any],
    training: Mapping[str, Any],
    seed: int,
    device: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """k-fold CV on the train split over `training.cv.grid`; returns per-fold scores and the
    selected training config (the grid point with the best mean held-out-fold score)."""
    check_model_input(model_input_train, feature_spec, "model_input_train")
    cv = training.get("cv", {})
    fold, held_out = cv_folds(model_input_train, splits, cv.get("max_folds", 99))
    tensors = to_tensors(model_input_train, resolve_device(device))
    candidates = candidate_configs(training)
    rows = []
    for c, candidate in enumerate(candidates):
        candidate_cv = merge_config(candidate, {"max_epochs": cv.get("max_epochs", candidate["max_epochs"])})
        for f in held_out:
            start = time.perf_counter()
            _, history = _train_once(candidate_cv, feature_spec, subset(tensors, np.flatnonzero(fold != f)),
                                     subset(tensors, np.flatnonzero(fold == f)), seed,
                                     f"CV candidate {c} fold {f}")
            best = history.loc[history["best"]].iloc[0]
            rows.append({"candidate": c, "fold": f, "best_epoch": int(best["epoch"]),
                         "auroc": best["auroc"], "auprc": best["auprc"], "loss": best["monitor_loss"],
                         "seconds": time.perf_counter() - start})
    cv_results = pd.DataFrame(rows)
    monitor = training["monitor"]
    if monitor == "loss":
        cv_results["neg_loss"] = -cv_results["loss"]
        monitor = "neg_loss"
    return cv_results, select_best(cv_results, candidates, monitor)


def train_torch_model(
    model_input_train: Mapping[str, np.ndarray],
    model_input_validation: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    selected_config: Mapping[str, Any],
    seed: int,
    device: str,
    model: str | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train the selected config on the whole train split, early-stopping on the validation split; `model` is
    the model's name in the study (`lstm_pooled`), which the progress lines show (default: its architecture).

    With `n_instances` K > 1, K instances are trained alike from seeds seed, seed + 1, …, each with its
    own early stopping (with `kept_epoch: median`, all trained every epoch and kept at one shared epoch:
    keep_shared_epoch), and returned as one `InstanceEnsemble` (mean of their logits); the history
    then has an `instance` column. Instance 0 is the model a single-instance run trains. With
    `calibration: platt` the model's probabilities are Platt-scaled on the validation split
    (`model.config["calibration"]`).
    """
    check_model_input(model_input_train, feature_spec, "model_input_train")
    check_model_input(model_input_validation, feature_spec, "model_input_validation")
    torch_device = resolve_device(device)
    validation = to_tensors(model_input_validation, torch_device)
    n_instances = int(selected_config.get("n_instances", 1))
    kept_epoch = selected_config.get("kept_epoch", "own")
    shared = kept_epoch != "own" and n_instances > 1
    fitted = _train_instances([selected_config] * n_instances, feature_spec, model_input_train, model_input_validation,
                              seed, [f"{_instance_name(model, selected_config, k)} early-stopped"
                                     for k in range(n_instances)], torch_device, every_epoch=shared)
    if shared:
        fitted = keep_shared_epoch(fitted, kept_epoch, model or selected_config["architecture"])
    members = [member for member, _, _ in fitted]
    histories = [history.assign(instance=k) for k, (_, history, _) in enumerate(fitted)]
    model = _one_model(members)
    history = histories[0].drop(columns="instance") if n_instances == 1 else pd.concat(histories, ignore_index=True)
    if selected_config.get("calibration", "none") == "platt":
        # on the validation split, as the decision threshold (the test split never enters)
        logits = predict_logits(model.to(torch_device), validation, int(model.config["batch_size"]))
        calibration = fit_calibration(logits, model_input_validation["y"], model.config["probability_shift"])
        if calibration is not None:
            model.config["calibration"] = {**calibration, "fitted_on": "validation"}
        model = model.cpu()
    return model, history


def refit_torch_model(
    model_input_train: Mapping[str, np.ndarray],
    model_input_validation: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    selected_config: Mapping[str, Any],
    early_stopped: nn.Module,
    seed: int,
    device: str,
    model: str | None = None,
) -> nn.Module:
    """With `refit_on: train_and_validation`, each instance of `early_stopped` (`train_torch_model`) trained
    afresh from its seed on train + validation for the epochs its early stopping kept (`kept_epochs` in its
    config: best epoch + 1; with `refit_epochs: median`, every instance for the median of those), the last epoch
    kept, as the baselines are refit after CV; otherwise (`refit_on: train`, the default) `early_stopped` itself.

    The refit model carries the early-stopped model's Platt calibration, fitted on validation records those
    instances never saw; its validation predictions would be in-sample, so the decision threshold, calibration
    and stacking read the early-stopped model's (the training pipeline wires them so). `model.config["refit"]`
    records the records and epochs of each instance.
    """
    refit_on = selected_config.get("refit_on", "train")
    if refit_on == "train":
        return early_stopped
    if refit_on != "train_and_validation":
        raise ValueError(f"refit_on is {refit_on!r}; use train or train_and_validation")
    check_model_input(model_input_train, feature_spec, "model_input_train")
    check_model_input(model_input_validation, feature_spec, "model_input_validation")
    combined = {name: np.concatenate([model_input_train[name], model_input_validation[name]])
                for name in ("X", "mask", "delta", "static", "y")}
    kept_epochs = early_stopped.config.get("kept_epochs")
    kept_epochs = [kept_epochs] if isinstance(kept_epochs, int) else kept_epochs
    n_instances = len(instances(early_stopped))
    if not isinstance(kept_epochs, list) or len(kept_epochs) != n_instances:
        raise ValueError(f"the early-stopped model ({n_instances} instance(s)) does not say how many epochs each "
                         f"instance kept (`kept_epochs` in its config is {kept_epochs!r}); train it again with this "
                         "version of the project")
    epochs = refit_epoch_counts([int(e) for e in kept_epochs], selected_config.get("refit_epochs", "own"))
    fitted = _train_instances([merge_config(selected_config, {"max_epochs": e}) for e in epochs], feature_spec,
                              combined, None, seed,
                              [f"{_instance_name(model, selected_config, k)} refit on train + validation "
                               f"({epochs[k]} epochs)" for k in range(n_instances)], resolve_device(device))
    refit = _one_model([member for member, _, _ in fitted])
    if "calibration" in early_stopped.config:
        refit.config["calibration"] = {**early_stopped.config["calibration"],
                                       "fitted_on": "validation, early-stopped instances"}
    refit.config["refit"] = {"on": "train_and_validation", "records": int(combined["y"].shape[0]),
                             "epochs": epochs}
    return refit


def keep_shared_epoch(fitted: list[tuple[nn.Module, pd.DataFrame, list]], rule: str,
                      name: str) -> list[tuple[nn.Module, pd.DataFrame, None]]:
    """`kept_epoch: median`: the instances (trained all max_epochs, every epoch's weights kept) keep the weights of
    the epochs `rule` (REFIT_EPOCH_RULES, as the refit's) gives from the epochs their own early stopping would keep
    (best epoch + 1): with median, all the median, rounded half up; `history["best"]` marks it, `own_best` each
    instance's best, and `kept_epochs` is the kept count."""
    own = [int(history.loc[history["best"], "epoch"].iloc[0]) for _, history, _ in fitted]
    counts = refit_epoch_counts([epoch + 1 for epoch in own], rule)
    logger.info("%s: the instances' best epochs %s; they keep epochs %s", name, own, [e - 1 for e in counts])
    shared = []
    for (member, history, epoch_states), epochs in zip(fitted, counts, strict=True):
        member.load_state_dict(epoch_states[epochs - 1])
        member.config["kept_epochs"] = epochs
        history = history.assign(own_best=history["best"], best=history["epoch"] == epochs - 1)
        shared.append((member.eval(), history, None))
    return shared


# refit_epochs → the epochs each instance's refit trains, from the epochs each instance's early stopping kept
REFIT_EPOCH_RULES = {
    "own": lambda kept: list(kept),
    # rounded half up: [11, 15, 16] → 15 each, [8, 15] → 12 each
    "median": lambda kept: [int(math.floor(float(np.median(kept)) + 0.5))] * len(kept),
}


def refit_epoch_counts(kept_epochs: list[int], rule: str) -> list[int]:
    """Epochs each instance's refit trains: its own kept epochs (`own`) or, for all, their median (`median`)."""
    if rule not in REFIT_EPOCH_RULES:
        raise ValueError(f"refit_epochs is {rule!r}; use {' or '.join(REFIT_EPOCH_RULES)}")
    return REFIT_EPOCH_RULES[rule](kept_epochs)


def _instance_name(model: str | None, config: Mapping[str, Any], k: int) -> str:
    return (model or config["architecture"]) + (f" instance {k}" if int(config.get("n_instances", 1)) > 1 else "")


def _one_model(members: list[nn.Module]) -> nn.Module:
    """One member as it is, or several as one `InstanceEnsemble` (mean logit). train_model put the class weights'
    prior shift, the batch size and `kept_epochs` on each member's config; the ensemble takes the first's, and
    `kept_epochs` of each member as a list (a saved ensemble keeps only its own config)."""
    if len(members) == 1:
        return members[0]
    ensemble = InstanceEnsemble(members).eval()
    ensemble.config = {**members[0].config, "n_instances": len(members),
                       "kept_epochs": [int(member.config["kept_epochs"]) for member in members]}
    for member in members:
        member.config["n_instances"] = 1
    return ensemble


def predict_torch_model(
    model: nn.Module,
    model_input: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    device: str,
    split: str = "test",
) -> pd.DataFrame:
    """P(death) per record of the `split` bundle (eval mode, prior shift removed)."""
    check_model_input(model_input, feature_spec, "model input")
    check_model_matches_data(model.config, model_input, feature_spec, "the model input")
    torch_device = resolve_device(device)
    model = model.to(torch_device)
    with limited_threads(DEFAULT_THREADS):
        logits = predict_logits(model, to_tensors(model_input, torch_device),
                                model.config.get("batch_size", 256))
    prob = death_probability(logits, model.config["probability_shift"], model.config.get("calibration"))
    return prediction_frame(model_input, prob, split)
