"""Why susceptibility sits where it does in time: beside S_t, the gradient the attack starts from and how much
of each hour was measured.

The L1 attack moves a cell only when the margin's gradient there outweighs λ (the proximal step zeroes the
rest), so an hour with S_t = 0 is explained either by the model (its gradient w.r.t. that hour is tiny: the
recurrence forgets early hours) or by the optimiser (the gradient is there but smaller than elsewhere, and the
L1 step spends the budget on the larger cells). The share of measured cells per hour shows whether the
susceptible hours are the measured ones or the imputed ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ehr_adversarial.attack.l1_attack import input_gradient_mode, logit_margin
from ehr_adversarial.attack.susceptibility import DIRECTIONS, direction_of
from ehr_adversarial.features.bundle import TensorBundle
from ehr_adversarial.torch_utils import resolve_device
from ehr_adversarial.training.torch_loop import to_tensors

TIME_PROFILE_COLUMNS = ["direction", "hour", "gradient", "gradient_share", "measured_share", "n_records"]


def margin_gradient(model: nn.Module, bundle: TensorBundle, chunk_size: int, device: torch.device) -> np.ndarray:
    """|∂(Z_y − Z_y′)/∂x| per record, hour and feature at the unperturbed records (N, T, F), in eval-mode logits."""
    tensors = to_tensors(bundle, torch.device("cpu"))
    model = model.to(device)
    out = []
    with input_gradient_mode(model):
        for start in range(0, tensors["x"].shape[0], chunk_size):
            part = slice(start, start + chunk_size)
            x = tensors["x"][part].to(device).requires_grad_(True)
            inputs = {name: tensors[name][part].to(device) for name in model.inputs[1:]}
            margin = logit_margin(model(x, **inputs), tensors["y"][part].to(device))
            (gradient,) = torch.autograd.grad(margin.sum(), x)
            out.append(gradient.abs().cpu())
    return torch.cat(out).double().numpy()


def time_profile(model: nn.Module, model_input_test: TensorBundle, selection: pd.DataFrame, attack: dict[str, Any],
                 device: str) -> pd.DataFrame:
    """Per direction and hour, over the attacked records: the mean Σ_j |∂margin/∂x(t, j)| (`gradient`), its
    share of the record's total over all hours (`gradient_share`, mean over records) and the share of the
    hour's cells that were measured (`measured_share`)."""
    rows = selection["row"].to_numpy()
    chosen = {name: np.asarray(value)[rows] for name, value in model_input_test.items()}
    gradient = margin_gradient(model, chosen, int(attack.get("chunk_size", 512)), resolve_device(device))
    per_hour = gradient.sum(2)  # (N, T)
    share = per_hour / np.maximum(per_hour.sum(1, keepdims=True), 1e-30)
    measured = np.asarray(chosen["mask"], dtype=bool).mean(2)  # (N, T)
    direction = direction_of(selection["label"].to_numpy())
    frames = []
    for name in DIRECTIONS.values():
        members = direction == name
        if not members.any():
            continue
        frames.append(pd.DataFrame({
            "direction": name, "hour": np.arange(per_hour.shape[1]), "gradient": per_hour[members].mean(0),
            "gradient_share": share[members].mean(0), "measured_share": measured[members].mean(0),
            "n_records": int(members.sum())}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TIME_PROFILE_COLUMNS)
