"""The torch training loop the training nodes share: batches, early stopping, prediction, and
`train_model` / `train_with_monitor_split`, the one recipe every torch model of the project is
fitted with (training refit and CV, TSTR/TRTR utility, synthetic-trained models of the attack).

Whole splits live on the device as tensors (a PhysioNet split is a few tens of MB),
batches are index slices in an order drawn from a seeded generator, so a CPU run
is reproducible and no DataLoader workers are needed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from threadpoolctl import threadpool_limits
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ehr_adversarial.models import build_model, model_inputs
from ehr_adversarial.torch_utils import seed_everything
from ehr_adversarial.training.adversarial import adversarial_batch, adversarial_loss_weight

logger = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]


@contextlib.contextmanager
def limited_threads(n_threads: int) -> Iterator[None]:
    """Run torch and the OpenMP/BLAS pools (scikit-learn) on `n_threads` threads, then restore.

    On a small shared CPU, two-thread OpenMP kernels slow down many times over when another
    process holds a core (measured: 8 s vs 0.16 s per DSSM batch); one thread stays predictable.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        with threadpool_limits(int(n_threads)):
            yield
    finally:
        torch.set_num_threads(previous)


def to_tensors(bundle: Mapping[str, np.ndarray], device: torch.device) -> Tensors:
    """The model inputs of a tensor bundle (x, mask, delta, static) and y, on `device`."""
    return {
        "x": torch.as_tensor(bundle["X"], dtype=torch.float32, device=device),
        "mask": torch.as_tensor(bundle["mask"], device=device).to(torch.float32),
        "delta": torch.as_tensor(bundle["delta"], dtype=torch.float32, device=device),
        "static": torch.as_tensor(bundle["static"], dtype=torch.float32, device=device),
        "y": torch.as_tensor(bundle["y"], dtype=torch.long, device=device),
    }


def subset(tensors: Tensors, index: np.ndarray) -> Tensors:
    """The records at `index` of every tensor."""
    idx = torch.as_tensor(index, dtype=torch.long, device=tensors["y"].device)
    return {name: value[idx] for name, value in tensors.items()}


def class_weights(y: np.ndarray, mode: str) -> np.ndarray:
    """Loss weights per class: `balanced` = N / (2 · N_class) (each class weighs half), `none` = 1."""
    if mode == "none":
        return np.ones(2)
    if mode == "balanced":
        counts = np.bincount(np.asarray(y), minlength=2).astype(np.float64)
        return counts.sum() / (2.0 * counts)
    raise ValueError(f"class_weight is {mode!r}; use 'balanced' or 'none'")


def prior_shift(weights: np.ndarray) -> float:
    """log(w1 / w0): what class weights add to the log-odds; subtract it to get calibrated odds."""
    return float(math.log(weights[1] / weights[0]))


def _autocast(device: torch.device, amp: bool):
    # fp16 autocast on CUDA only; CPU runs stay in fp32 so that they are reproducible.
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


@torch.no_grad()
def predict_logits(model: nn.Module, tensors: Tensors, batch_size: int, amp: bool = False) -> torch.Tensor:
    """Eval-mode logits (N, 2) in fp32."""
    model.eval()
    device = tensors["y"].device
    out = []
    for start in range(0, tensors["y"].shape[0], batch_size):
        batch = {k: v[start : start + batch_size] for k, v in tensors.items()}
        with _autocast(device, amp):
            out.append(model(*model_inputs(model, batch)).float())
    return torch.cat(out)


def death_probability(logits: torch.Tensor, shift: float, calibration: Mapping[str, Any] | None = None) -> np.ndarray:
    """P(death) from 2 logits, with the class-weight prior shift removed and, when given, the Platt calibration
    (`fit_calibration`) applied to the log-odds."""
    log_odds = (logits[:, 1] - logits[:, 0]).double() - shift
    if calibration:
        log_odds = float(calibration["slope"]) * log_odds + float(calibration["intercept"])
    return torch.sigmoid(log_odds).cpu().numpy()


def fit_calibration(logits: torch.Tensor, y: np.ndarray, shift: float) -> dict[str, Any] | None:
    """Platt scaling: P(death) = σ(a·s + b) on the prior-shifted log-odds s, a and b by maximum likelihood on
    held-out predictions (a monotone map: rankings, AUROC and the attack's decision stay as they were). None
    when the fit would reverse or flatten the ranking (a ≤ 0: no usable signal)."""
    score = ((logits[:, 1] - logits[:, 0]).double() - shift).cpu().numpy().reshape(-1, 1)
    fitted = LogisticRegression(C=1e6, max_iter=1000).fit(score, np.asarray(y))
    slope, intercept = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    if not slope > 0:
        logger.warning("Platt calibration skipped: the held-out log-odds give slope %.3g", slope)
        return None
    return {"method": "platt", "slope": slope, "intercept": intercept, "n": int(score.shape[0])}


def _scores(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    if y.min() == y.max():
        return {"auroc": float("nan"), "auprc": float("nan")}
    return {"auroc": float(roc_auc_score(y, prob)), "auprc": float(average_precision_score(y, prob))}


def fit(
    model: nn.Module,
    train: Tensors,
    monitor_set: Tensors | None,
    config: Mapping[str, Any],
    generator: torch.Generator,
    description: str = "training",
    epoch_states: list[dict[str, torch.Tensor]] | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train with Adam on class-weighted cross-entropy; keep the epoch best on `monitor_set`, or, when
    `monitor_set` is None, train all `max_epochs` and keep the last (a refit for an epoch count found before).
    Given a list `epoch_states`, every epoch's weights are appended to it (on the CPU) and all `max_epochs` train,
    whatever the patience, so that another epoch than the best can be kept afterwards.

    `config` keys: batch_size, max_epochs, patience, monitor (auprc | auroc | loss),
    class_weight, amp, optimizer {lr, betas, weight_decay}, grad_clip, optionally ema_decay (monitor and keep an
    exponential moving average of the weights), lr_plateau {factor, patience} (multiply the learning rate by
    factor after patience epochs without a better monitored score) and adversarial
    {l1_budget, steps, weight, top_k, step_size}: each batch's loss is then (1 − weight)·loss(x) +
    weight·loss(x + δ), δ from a few steps of sparse L1 PGD (training.adversarial).
    Returns the model with the best epoch's weights (in eval mode) and the history.
    """
    device = train["y"].device
    weights = class_weights(train["y"].cpu().numpy(), config["class_weight"])
    shift = prior_shift(weights)
    loss_weight = torch.as_tensor(weights, dtype=torch.float32, device=device)
    optimizer_args = dict(config["optimizer"])
    if "betas" in optimizer_args:
        optimizer_args["betas"] = tuple(optimizer_args["betas"])
    optimizer = torch.optim.Adam(model.parameters(), **optimizer_args)
    amp = bool(config.get("amp", False)) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    monitor = config["monitor"]
    if monitor not in ("auprc", "auroc", "loss"):
        raise ValueError(f"monitor is {monitor!r}; use auprc, auroc or loss")
    batch_size = int(config["batch_size"])
    n = train["y"].shape[0]
    y_monitor = monitor_set["y"].cpu().numpy() if monitor_set is not None else None
    adversarial = config.get("adversarial")
    adversarial_weight = adversarial_loss_weight(config)
    # With ema_decay, an exponential moving average of the weights is updated after every step, and it is the
    # averaged model that is monitored and kept (less seed-to-seed variance than the last step's weights).
    averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(config["ema_decay"])), use_buffers=True)
                if config.get("ema_decay") else None)
    kept = averaged.module if averaged is not None else model
    plateau = config.get("lr_plateau")
    # "better" as early stopping counts it: any rise of the monitored score (no relative threshold)
    scheduler = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=float(plateau["factor"]),
                                                            patience=int(plateau["patience"]), threshold=0.0,
                                                            threshold_mode="abs")
                 if plateau else None)

    best_score, best_epoch, best_state, history = -math.inf, -1, None, []
    epochs = tqdm(range(int(config["max_epochs"])), desc=description, unit="epoch", leave=False, disable=None)
    for epoch in epochs:
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            batch = {k: v[order[start : start + batch_size]] for k, v in train.items()}
            # adversarial training: δ crafted in fp32 before the batch's forward passes (no random numbers drawn)
            perturbed = adversarial_batch(model, batch, adversarial) if adversarial_weight > 0 else None
            with _autocast(device, amp):
                logits = model(*model_inputs(model, batch))
                loss = F.cross_entropy(logits.float(), batch["y"], weight=loss_weight)
                if perturbed is not None:
                    adversarial_logits = model(*model_inputs(model, perturbed))
                    adversarial_loss = F.cross_entropy(adversarial_logits.float(), batch["y"], weight=loss_weight)
                    loss = (1.0 - adversarial_weight) * loss + adversarial_weight * adversarial_loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.get("grad_clip"):
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), float(config["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            if averaged is not None:
                averaged.update_parameters(model)
            total += float(loss.detach()) * batch["y"].shape[0]

        row = {"epoch": epoch, "train_loss": total / n, "lr": optimizer.param_groups[0]["lr"]}
        if epoch_states is not None:
            epoch_states.append({k: v.detach().cpu().clone() for k, v in kept.state_dict().items()})
        if monitor_set is None:
            history.append({**row, "monitor_loss": math.nan, "auroc": math.nan, "auprc": math.nan})
            best_epoch = epoch
            epochs.set_postfix(loss=f"{row['train_loss']:.4f}")
            continue
        logits = predict_logits(kept, monitor_set, batch_size, amp)
        monitor_loss = float(F.cross_entropy(logits, monitor_set["y"], weight=loss_weight))
        row.update({"monitor_loss": monitor_loss, **_scores(y_monitor, death_probability(logits, shift))})
        history.append(row)
        score = -monitor_loss if monitor == "loss" else row[monitor]
        if scheduler is not None:
            scheduler.step(score)
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(kept.state_dict())
        epochs.set_postfix(loss=f"{row['train_loss']:.4f}", auprc=f"{row['auprc']:.3f}",
                           best_epoch=best_epoch)
        if epoch - best_epoch >= int(config["patience"]) and epoch_states is None:
            break

    history = pd.DataFrame(history)
    history["best"] = history["epoch"] == best_epoch
    if monitor_set is None:
        best_state = kept.state_dict()
        logger.info("%s: %d epochs, train loss %.4f", description, len(history), history["train_loss"].iloc[-1])
    else:
        logger.info("%s: best epoch %d of %d, monitor %s = %.4f", description, best_epoch,
                    len(history), monitor, history.loc[best_epoch, monitor if monitor != "loss" else "monitor_loss"])
    model.load_state_dict(best_state)
    return model.eval(), history


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, monitor) record indices: `fraction` of each class held out for early stopping."""
    rng = np.random.default_rng(seed)
    fit_index, monitor_index = [], []
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(y == label))
        n_monitor = max(1, int(round(fraction * len(members))))
        monitor_index.append(members[:n_monitor])
        fit_index.append(members[n_monitor:])
    return np.sort(np.concatenate(fit_index)), np.sort(np.concatenate(monitor_index))


def train_model(
    model_config: Mapping[str, Any],
    config: Mapping[str, Any],
    train: Tensors,
    monitor_set: Tensors,
    seed: int,
    description: str,
    epoch_states: list[dict[str, torch.Tensor]] | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """A freshly seeded `build_model(model_config)` fitted on `train`, early-stopping on `monitor_set` (with a list
    `epoch_states`, every epoch's weights are appended to it and all max_epochs train: see `fit`).

    The model's config then carries what prediction and the attack need besides the weights:
    `probability_shift` (the log-odds the class weights add; predictions subtract it so that
    probabilities match the training prevalence) and `batch_size`; and `kept_epochs`, the epochs behind the kept
    weights (best epoch + 1; what a refit on more records trains for; an ensemble lists its instances').
    """
    generator = seed_everything(seed)
    model = build_model(model_config).to(train["y"].device)
    model, history = fit(model, train, monitor_set, config, generator, description, epoch_states)
    model.config["kept_epochs"] = int(history.loc[history["best"], "epoch"].iloc[0]) + 1
    model.config["probability_shift"] = prior_shift(class_weights(train["y"].cpu().numpy(), config["class_weight"]))
    model.config["batch_size"] = int(config["batch_size"])
    return model, history


def train_with_monitor_split(
    bundle: Mapping[str, np.ndarray],
    model_config: Mapping[str, Any],
    config: Mapping[str, Any],
    seed: int,
    device: torch.device,
    description: str,
) -> tuple[nn.Module, pd.DataFrame]:
    """`train_model` on one bundle: a stratified `config["monitor_fraction"]` of its own records
    watches early stopping, the rest trains, so no other data (no real record) is needed."""
    y = np.asarray(bundle["y"]).astype(np.int64)
    tensors = to_tensors(bundle, device)
    fit_index, monitor_index = stratified_holdout(y, float(config["monitor_fraction"]), seed)
    return train_model(model_config, config, subset(tensors, fit_index), subset(tensors, monitor_index), seed,
                       description)
