"""EHRDiff training and sampling on records flattened to one vector each.

A record's vector is [X (48·F), mask (48·F), static (S), y (1), codes (C, where the source has
them)]. Columns whose training values are all 0/1 (mask, y, codes, binary statics) are binary:
their σ_data is `sigma_data_binary` and samples are rounded; the others are continuous, with σ_data
`sigma_data_continuous` and samples clipped to the training range of their column. Each σ_data is a
number (EHRDiff: 0.14 for its sparse MIMIC code matrix) or "auto": the pooled standard deviation of
that kind's training columns.

The label is either a column of the vector (`label: column`, one unconditional model learns the
joint distribution, as EHRDiff's released CinC and MIMIC configurations model their vectors) or a
condition (`label: condition`, the project's default): the vector has no y column, the denoiser
takes y as an input, trained with y dropped for `label_dropout` of the records so that one model
is also the unconditional one; sampling draws y from the training label rates and denoises with
classifier-free guidance `guidance` (0 = the conditional model alone). EHRDiff's code supports
such guidance (`use_cfg`, `n_classes`, `guid_scale`), but its released configurations leave it off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
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
    one_per_group,
    random_batches,
    sample_in_chunks,
)

logger = logging.getLogger(__name__)


LABEL_MODES = ("column", "condition")


def label_mode(params: Mapping[str, Any]) -> str:
    """`label` of the EHRDiff parameters: column (default) or condition."""
    mode = params.get("label", "column")
    if mode not in LABEL_MODES:
        raise ValueError(f"synthesis.<source>.ehrdiff.label is {mode!r}; use 'column' (y is a column of the record) or 'condition'")
    return mode


def record_matrix(bundle: Mapping[str, np.ndarray], codes: np.ndarray | None = None, label_column: bool = True) -> np.ndarray:
    """(N, D) float32: X, mask, static, y (unless the label is a condition) and (optionally) a code
    matrix, flattened per record."""
    n = bundle["X"].shape[0]
    parts = [
        bundle["X"].reshape(n, -1),
        bundle["mask"].reshape(n, -1),
        bundle["static"].reshape(n, -1),
        *([bundle["y"].reshape(n, 1)] if label_column else []),
    ]
    if codes is not None:
        if codes.shape[0] != n:
            raise ValueError(f"code matrix has {codes.shape[0]} rows but the bundle {n} records")
        parts.append(codes)
    matrix = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1)
    check_finite("EHRDiff training matrix", matrix)
    return matrix


def matrix_layout(
    bundle: Mapping[str, np.ndarray], matrix: np.ndarray, code_names: list[str] | None = None, label_column: bool = True
) -> dict[str, Any]:
    """What turns a generated vector back into arrays: block sizes, binary columns, column ranges."""
    _, n_hours, n_features = bundle["X"].shape
    return {
        "n_hours": int(n_hours),
        "n_features": int(n_features),
        "n_static": int(bundle["static"].shape[1]),
        "label_column": bool(label_column),
        "code_names": list(code_names) if code_names is not None else None,
        "binary": binary_columns(matrix).tolist(),
        "low": matrix.min(axis=0).tolist(),
        "high": matrix.max(axis=0).tolist(),
    }


TIME_BASES = ("hours", "dct")


def dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II matrix: row k is the k-th cosine over the n hours (row 0 the mean)."""
    hours, k = np.arange(n), np.arange(n)[:, None]
    basis = np.cos(np.pi * (hours + 0.5) * k / n) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return basis


def change_time_basis(matrix: torch.Tensor, layout: Mapping[str, Any], basis: str, inverse: bool = False) -> torch.Tensor:
    """The X block of record vectors (N, D) in another basis over the hours, per feature; the rest as is.

    `dct`: each feature's 48 values become their DCT coefficients. EDM scales the network's output by
    each column's σ_data, so in the hours basis every hour gets errors of the between-record spread
    (~0.2) independently, and the series jitter; in the DCT basis the high-frequency coefficients
    have a small σ_data of their own, and so small errors. Orthonormal: `inverse` is the transpose.
    """
    if basis == "hours":
        return matrix
    if basis not in TIME_BASES:
        raise ValueError(f"synthesis.<source>.ehrdiff.time_basis is {basis!r}; use one of {', '.join(TIME_BASES)}")
    T, F = layout["n_hours"], layout["n_features"]
    cosines = torch.as_tensor(dct_matrix(T), dtype=matrix.dtype, device=matrix.device)
    series = matrix[:, : T * F].reshape(-1, T, F)
    changed = torch.einsum("tk,ntf->nkf" if inverse else "kt,ntf->nkf", cosines, series)
    return torch.cat((changed.reshape(-1, T * F), matrix[:, T * F :]), dim=1)


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


def column_loss_weight(sigma_data: np.ndarray, kind: str) -> np.ndarray:
    """Per column, a factor on EDM's loss weight. `equal` (EDM): every column's error counts in units
    of its own σ_data. `sigma_data`: σ_data² / mean σ_data², so errors count in the data's own units.
    In the DCT basis that matters: with `equal` the 36 level coefficients weigh as little as any of
    the 1,692 high-frequency ones, and the levels, which carry the label, are learnt poorly."""
    if kind == "equal":
        return np.ones_like(sigma_data)
    if kind == "sigma_data":
        return (sigma_data**2 / np.mean(sigma_data**2)).astype(np.float32)
    raise ValueError(f"synthesis.<source>.ehrdiff.column_loss_weight is {kind!r}; use 'equal' (EDM) or 'sigma_data'")


def denoiser_hyperparameters(params: Mapping[str, Any], layout: Mapping[str, Any]) -> dict[str, Any]:
    """The denoiser's part of the model config: EHRDiff's MLP (`hidden_dims`) or the temporal
    transformer (`temporal: {d_model, n_layers, n_heads, patch_hours}` and the record layout)."""
    kind = params.get("denoiser", "mlp")
    if kind == "mlp":
        return {"denoiser": "mlp", "hidden_dims": list(params["hidden_dims"])}
    if kind == "temporal":
        temporal = params["temporal"]
        return {
            "denoiser": "temporal",
            "n_hours": int(layout["n_hours"]),
            "n_features": int(layout["n_features"]),
            **{key: int(temporal[key]) for key in ("d_model", "n_layers", "n_heads", "patch_hours")},
        }
    raise ValueError(f"synthesis.<source>.ehrdiff.denoiser is {kind!r}; use 'mlp' (EHRDiff's MLP) or 'temporal'")


def fit_ehrdiff(
    matrix: np.ndarray, layout: dict[str, Any], params: Mapping[str, Any], device: str, seed: int, labels: np.ndarray | None = None
) -> EHRDiff:
    """Train the denoiser on training records; returns the EMA model (eval mode, on CPU).

    `labels` (N,) make it a label-conditional model (the matrix then has no label column)."""
    if (labels is None) != layout.get("label_column", True):
        raise ValueError("give EHRDiff the labels exactly when the record matrix has no label column (label: condition)")
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    binary = np.array(layout["binary"])
    time_basis = params.get("time_basis", "hours")
    matrix = change_time_basis(torch.as_tensor(matrix), layout, time_basis).numpy()
    if time_basis != "hours":  # coefficients of a 0/1 series are not 0/1 (they are rounded back in hours)
        binary[: layout["n_hours"] * layout["n_features"]] = False
    # centring makes every column zero-mean, as EDM's preconditioning assumes; EHRDiff does not centre
    offset = matrix.mean(axis=0) if params["center"] else np.zeros(matrix.shape[1], dtype=np.float32)
    matrix = matrix - offset
    sigma_data = column_sigma_data(matrix, binary, params["sigma_data_binary"], params["sigma_data_continuous"])
    config = {
        "architecture": "ehrdiff",
        "hyperparameters": {
            "n_columns": int(matrix.shape[1]),
            "time_dim": int(params["time_dim"]),
            "sigma_data": sigma_data.tolist(),
            **denoiser_hyperparameters(params, layout),
        },
        "layout": layout,
        "offset": offset.astype(float).tolist(),
        "time_basis": time_basis,
        "n_train_records": int(matrix.shape[0]),
    }
    if labels is not None:
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2)
        config["hyperparameters"]["n_classes"] = len(counts)
        config["label_rates"] = (counts / counts.sum()).tolist()
    model = build_generator(config).to(torch_device)
    ema = AveragedModel(model, avg_fn=ema_average(params["ema_decay"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["learning_rate"], weight_decay=params["weight_decay"])
    data = torch.as_tensor(matrix, device=torch_device)
    targets = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64), device=torch_device)
    column_weight = torch.as_tensor(column_loss_weight(sigma_data, params.get("column_loss_weight", "equal")), device=torch_device)
    dropout = float(params.get("label_dropout", 0.0))
    model.train()
    bar = random_batches(len(data), params["batch_size"], params["max_steps"], generator, "EHRDiff training")
    for step, index in bar:
        index = index.to(torch_device)
        label = None if targets is None else targets[index]
        loss = model.loss(data[index], params["p_mean"], params["p_std"], label, dropout, column_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update_parameters(model)
        if step % 100 == 0:
            logger.info("EHRDiff step %d: loss %.4f", step, loss.item())
    trained = ema.module.cpu().eval()
    trained.config = config
    return trained


def fit_ehrdiff_on_bundle(
    bundle: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    device: str,
    seed: int,
    codes: np.ndarray | None = None,
    code_names: list[str] | None = None,
) -> EHRDiff:
    """fit_ehrdiff on a model_input bundle (and code matrix), with the label as params["label"] says."""
    label_column = label_mode(params) == "column"
    matrix = record_matrix(bundle, codes, label_column)
    layout = matrix_layout(bundle, matrix, code_names, label_column)
    return fit_ehrdiff(matrix, layout, params, device, seed, None if label_column else bundle["y"])


def sample_ehrdiff(
    model: EHRDiff, n_samples: int, params: Mapping[str, Any], device: str, seed: int, fill: np.ndarray, real_ids: np.ndarray,
    static_groups: Sequence[Sequence[int]] = (),
) -> dict[str, np.ndarray]:
    """n_samples synthetic records (the contract's bundle): Heun-sampled vectors, chunk by chunk. Each one-hot
    group of static columns (`static_groups`, common.one_hot_groups) becomes its highest generated column."""
    layout = model.config["layout"]
    T, F, S = layout["n_hours"], layout["n_features"], layout["n_static"]
    a, b = T * F, 2 * T * F
    sampler = params["sampler"]

    label_column = layout.get("label_column", True)
    codes_from = b + S + int(label_column)

    def draw(n: int, generator: torch.Generator, torch_device: torch.device) -> dict[str, np.ndarray]:
        denoiser = model
        if not label_column:  # y first, from the training rates; then records of that label
            y = torch.multinomial(torch.as_tensor(model.config["label_rates"]), n, replacement=True, generator=generator)
            denoiser = model.guided(y.to(torch_device), float(sampler.get("guidance", 0.0)))
        latents = torch.randn(n, model.n_columns, generator=generator).to(torch_device)
        x = heun_sample(denoiser, latents, sampler["num_steps"], sampler["sigma_min"], sampler["sigma_max"], sampler["rho"])
        x = x + torch.as_tensor(model.config["offset"], device=torch_device)
        x = change_time_basis(x, layout, model.config.get("time_basis", "hours"), inverse=True)
        x = bound_columns(x, one_per_group(x > 0.5, x, static_groups, offset=b), layout).cpu().numpy()
        return {
            "X": x[:, :a].reshape(n, T, F),
            "mask": x[:, a:b].reshape(n, T, F) > 0.5,
            "static": x[:, b : b + S],
            "y": x[:, b + S].round().astype(np.int64) if label_column else y.numpy(),
            "codes": x[:, codes_from:].astype(np.uint8) if layout["code_names"] is not None else None,
        }

    writer = BundleWriter(n_samples, T, F, S, fill, layout["code_names"], params["max_in_memory_mb"])
    sample_in_chunks([model], writer, params, device, seed, "EHRDiff sampling", draw)
    return writer.bundle(real_ids)
