"""EHRDiff training and sampling on records flattened to one vector each.

A record's vector is [X (48·F), mask (48·F), static (S), y (1), codes (C, where the source has
them)]. Columns whose training values are all 0/1 (mask, y, codes, binary statics) are binary:
their σ_data is `sigma_data_binary` and samples are rounded; the others are continuous, with σ_data
`sigma_data_continuous` and samples clipped to the training range of their column. Each σ_data is a
number (EHRDiff: 0.14 for its sparse MIMIC code matrix) or "auto": the pooled standard deviation of
that kind's training columns. The label is a column, so one model learns the joint distribution.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from ehr_adversarial.models.ehrdiff import EHRDiff, heun_sample
from ehr_adversarial.torch_utils import resolve_device, seed_everything

from .common import (
    BundleWriter,
    binary_columns,
    bound_columns,
    build_generator,
    check_finite,
    ema_average,
    random_batches,
    sample_in_chunks,
)

logger = logging.getLogger(__name__)


def record_matrix(bundle: Mapping[str, np.ndarray], codes: np.ndarray | None = None) -> np.ndarray:
    """(N, D) float32: X, mask, static, y and (optionally) a code matrix, flattened per record."""
    n = bundle["X"].shape[0]
    parts = [
        bundle["X"].reshape(n, -1),
        bundle["mask"].reshape(n, -1),
        bundle["static"].reshape(n, -1),
        bundle["y"].reshape(n, 1),
    ]
    if codes is not None:
        if codes.shape[0] != n:
            raise ValueError(f"code matrix has {codes.shape[0]} rows but the bundle {n} records")
        parts.append(codes)
    matrix = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1)
    check_finite("EHRDiff training matrix", matrix)
    return matrix


def matrix_layout(bundle: Mapping[str, np.ndarray], matrix: np.ndarray, code_names: list[str] | None = None) -> dict[str, Any]:
    """What turns a generated vector back into arrays: block sizes, binary columns, column ranges."""
    _, n_hours, n_features = bundle["X"].shape
    return {
        "n_hours": int(n_hours),
        "n_features": int(n_features),
        "n_static": int(bundle["static"].shape[1]),
        "code_names": list(code_names) if code_names is not None else None,
        "binary": binary_columns(matrix).tolist(),
        "low": matrix.min(axis=0).tolist(),
        "high": matrix.max(axis=0).tolist(),
    }


SIGMA_DATA_FLOOR = 0.02  # a constant training column would otherwise get σ_data = 0


def column_sigma_data(matrix: np.ndarray, binary: np.ndarray, binary_value: float | str, continuous_value: float | str) -> np.ndarray:
    """σ_data per column, per kind: a number; "auto" = the pooled standard deviation of that kind's
    columns; "column" = each column's own standard deviation (at least SIGMA_DATA_FLOOR)."""
    own = np.maximum(matrix.std(axis=0), SIGMA_DATA_FLOOR)

    def resolve(value: float | str, columns: np.ndarray) -> np.ndarray | float:
        if value == "column":
            return own
        if value == "auto":
            return float(matrix[:, columns].std()) if columns.any() else 0.5
        return float(value)

    return np.where(binary, resolve(binary_value, binary), resolve(continuous_value, ~binary)).astype(np.float32)


def fit_ehrdiff(matrix: np.ndarray, layout: dict[str, Any], params: Mapping[str, Any], device: str, seed: int) -> EHRDiff:
    """Train the denoiser on training records; returns the EMA model (eval mode, on CPU)."""
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    binary = np.asarray(layout["binary"])
    # centring makes every column zero-mean, as EDM's preconditioning assumes; EHRDiff does not centre
    offset = matrix.mean(axis=0) if params["center"] else np.zeros(matrix.shape[1], dtype=np.float32)
    matrix = matrix - offset
    sigma_data = column_sigma_data(matrix, binary, params["sigma_data_binary"], params["sigma_data_continuous"])
    config = {
        "architecture": "ehrdiff",
        "hyperparameters": {
            "n_columns": int(matrix.shape[1]),
            "hidden_dims": list(params["hidden_dims"]),
            "time_dim": int(params["time_dim"]),
            "sigma_data": sigma_data.tolist(),
        },
        "layout": layout,
        "offset": offset.astype(float).tolist(),
        "n_train_records": int(matrix.shape[0]),
    }
    model = build_generator(config).to(torch_device)
    ema = AveragedModel(model, avg_fn=ema_average(params["ema_decay"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["learning_rate"], weight_decay=params["weight_decay"])
    data = torch.as_tensor(matrix, device=torch_device)
    model.train()
    bar = random_batches(len(data), params["batch_size"], params["max_steps"], generator, "EHRDiff training")
    for step, index in bar:
        loss = model.loss(data[index.to(torch_device)], params["p_mean"], params["p_std"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update_parameters(model)
        if step % 100 == 0:
            logger.info("EHRDiff step %d: loss %.4f", step, loss.item())
    trained = ema.module.cpu().eval()
    trained.config = config
    return trained


def sample_ehrdiff(
    model: EHRDiff, n_samples: int, params: Mapping[str, Any], device: str, seed: int, fill: np.ndarray, real_ids: np.ndarray
) -> dict[str, np.ndarray]:
    """n_samples synthetic records (the contract's bundle): Heun-sampled vectors, chunk by chunk."""
    layout = model.config["layout"]
    T, F, S = layout["n_hours"], layout["n_features"], layout["n_static"]
    a, b = T * F, 2 * T * F
    sampler = params["sampler"]

    def draw(n: int, generator: torch.Generator, torch_device: torch.device) -> dict[str, np.ndarray]:
        latents = torch.randn(n, model.n_columns, generator=generator).to(torch_device)
        x = heun_sample(model, latents, sampler["num_steps"], sampler["sigma_min"], sampler["sigma_max"], sampler["rho"])
        x = x + torch.as_tensor(model.config["offset"], device=torch_device)
        x = bound_columns(x, x > 0.5, layout).cpu().numpy()
        return {
            "X": x[:, :a].reshape(n, T, F),
            "mask": x[:, a:b].reshape(n, T, F) > 0.5,
            "static": x[:, b : b + S],
            "y": x[:, b + S].round().astype(np.int64),
            "codes": x[:, b + S + 1 :].astype(np.uint8) if layout["code_names"] is not None else None,
        }

    writer = BundleWriter(n_samples, T, F, S, fill, layout["code_names"], params["max_in_memory_mb"])
    sample_in_chunks([model], writer, params, device, seed, "EHRDiff sampling", draw)
    return writer.bundle(real_ids)
