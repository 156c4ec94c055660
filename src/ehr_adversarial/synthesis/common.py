"""Pieces every generator shares: model configs, record ids, column kinds, chunking, the bundle.

Every generator returns the synthetic bundle of the synthetic-EHR contract: the arrays of a
model_input bundle (X (N, 48, F) float32 in [0, 1], mask bool, delta float32, static (N, S) float32,
y int64, record_id int64, group str) plus `codes` uint8 (N, C) and `code_names` (C,) for code data.
"""

from __future__ import annotations

import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ehr_adversarial.features.tensorize import (
    forward_fill,
    hours_since_observed,
    scale_unit,
)
from ehr_adversarial.models import build_model
from ehr_adversarial.torch_utils import resolve_device, seed_everything

logger = logging.getLogger(__name__)

# Synthetic records get ids from here on; real ids (PhysioNet 132539…, MIMIC-III icustay ids
# 200001…) are far below, and synthetic_record_ids checks that they never meet.
SYNTHETIC_ID_START = 900_000_000
SYNTHETIC_GROUP = "synthetic"


def build_generator(config: Mapping[str, Any]) -> nn.Module:
    """A fresh generator module for `config` = {"architecture", "hyperparameters", ...}.

    Generators live in the project's one model registry, so TorchModelDataset rebuilds them too.
    """
    return build_model(config)


def synthetic_record_ids(n: int, real_ids: np.ndarray) -> np.ndarray:
    """n new record ids that no real record has."""
    start = max(SYNTHETIC_ID_START, int(np.max(real_ids, initial=0)) + 1)
    return np.arange(start, start + n, dtype=np.int64)


def binary_columns(matrix: np.ndarray) -> np.ndarray:
    """Per column of a (N, D) matrix: True where every value is 0 or 1."""
    return ((matrix == 0) | (matrix == 1)).all(axis=0)


def check_finite(name: str, array: np.ndarray) -> None:
    """Generators need complete inputs: fail naming the array and the first bad cell."""
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite entries (first at index {tuple(int(i) for i in np.argwhere(bad)[0])}); "
            "the features pipeline should deliver imputed, scaled arrays"
        )


def output_array(shape: tuple[int, ...], dtype: Any, max_in_memory_mb: float) -> np.ndarray:
    """An empty array for generated records; backed by a temporary file when larger than the budget.

    Sampling writes chunk by chunk into it, so a sample count larger than the memory holds pages to
    disk instead of failing. The file is removed when the array is garbage-collected.
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size <= max_in_memory_mb * 2**20:
        return np.empty(shape, dtype=dtype)
    handle, path = tempfile.mkstemp(suffix=".npy", prefix="synthetic-")
    os.close(handle)
    logger.info("output of %.1f GiB exceeds max_in_memory_mb; writing it through %s", size / 2**30, path)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    weakref.finalize(array, os.remove, path)
    return array


def chunks(n: int, chunk_size: int, desc: str) -> Iterator[slice]:
    """Consecutive slices of at most chunk_size covering range(n), with a progress bar."""
    if n < 0 or chunk_size < 1:
        raise ValueError(f"need n_samples ≥ 0 and a chunk size ≥ 1, got {n} and {chunk_size}")
    with tqdm(total=n, desc=desc, unit="rec", disable=None) as bar:
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            yield slice(start, stop)
            bar.update(stop - start)


def random_batches(n: int, batch_size: int, steps: int, generator: torch.Generator, desc: str) -> Iterator[tuple[int, torch.Tensor]]:
    """`steps` index batches drawn epoch by epoch (each epoch a fresh permutation), with a progress bar."""
    if n == 0:
        raise ValueError("no training records: the train split is empty")
    batch_size = min(batch_size, n)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for step in tqdm(range(steps), desc=desc, unit="step", disable=None):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        yield step, order[cursor : cursor + batch_size]
        cursor += batch_size


def ema_average(decay: float):
    """avg_fn for torch.optim.swa_utils.AveragedModel: EMA with the usual warm-up min(decay, (1+n)/(10+n))."""

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        rate = min(decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
        return rate * averaged + (1.0 - rate) * current

    return average


def scaled_fill(feature_spec: Mapping[str, Any]) -> np.ndarray:
    """Per feature, the gap fill of the features pipeline (train median or a set constant) on the [0, 1] scale."""
    scaler = feature_spec["scaler"]
    names = feature_spec["feature_names"]
    fill, low, high = (np.array([scaler[n][key] for n in names], dtype=np.float32) for key in ("fill", "p05", "p95"))
    return scale_unit(fill, low, high)


def impute_like_features(X: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generated values where mask is set, forward-filled elsewhere, `fill` before a first observation.

    This restores the invariant of the features pipeline's tensors (an unobserved hour repeats the
    last observed value) on generated tensors, with its own kernels; returns (X, delta).
    """
    cells = np.where(mask, X, np.nan).astype(np.float32)
    filled, last_seen = forward_fill(cells)
    filled = np.where(np.isnan(filled), fill[None, None, :], filled).astype(np.float32)
    return filled, hours_since_observed(last_seen, X.shape[1])


class BundleWriter:
    """Collects generated records chunk by chunk into the synthetic bundle of the contract.

    Each chunk is post-processed as it arrives (X clipped to [0, 1] and re-imputed like the features
    pipeline does, deltas computed), so the full sample never exists twice in memory; arrays larger
    than `max_in_memory_mb` live in temporary files (see output_array).
    """

    def __init__(
        self,
        n: int,
        n_hours: int,
        n_features: int,
        n_static: int,
        fill: np.ndarray,
        code_names: list[str] | None = None,
        max_in_memory_mb: float = 4096,
    ):
        self.n = n
        self.fill = np.asarray(fill, dtype=np.float32)
        self.code_names = code_names
        series = (n, n_hours, n_features)
        self.arrays = {
            "X": output_array(series, np.float32, max_in_memory_mb),
            "mask": output_array(series, np.bool_, max_in_memory_mb),
            "delta": output_array(series, np.float32, max_in_memory_mb),
            "static": output_array((n, n_static), np.float32, max_in_memory_mb),
            "y": output_array((n,), np.int64, max_in_memory_mb),
        }
        if code_names is not None:
            self.arrays["codes"] = output_array((n, len(code_names)), np.uint8, max_in_memory_mb)

    def write(self, rows: slice, X, mask, static, y, codes=None) -> None:
        """Store generated records `rows` (numpy arrays of the chunk)."""
        mask = np.asarray(mask).astype(bool)
        X, delta = impute_like_features(np.clip(np.asarray(X, dtype=np.float32), 0.0, 1.0), mask, self.fill)
        self.arrays["X"][rows] = X
        self.arrays["mask"][rows] = mask
        self.arrays["delta"][rows] = delta
        self.arrays["static"][rows] = static
        self.arrays["y"][rows] = y
        if codes is not None:
            self.arrays["codes"][rows] = codes

    def bundle(self, real_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The finished bundle, with new record ids that no real record has."""
        out = dict(self.arrays)
        out["record_id"] = synthetic_record_ids(self.n, real_ids)
        out["group"] = np.full(self.n, SYNTHETIC_GROUP)
        if self.code_names is not None:
            out["code_names"] = np.asarray(self.code_names, dtype=str)
        return out


def one_hot_groups(feature_spec: Mapping[str, Any]) -> list[list[int]]:
    """Indices in `static_names` of the static columns that one-hot encode one categorical variable, for each
    variable of the features stage's `static_one_hot` with at least two levels (ICU type on PhysioNet). A real
    record has exactly one of them set; generated binary flags decided column by column do not."""
    index = {name: i for i, name in enumerate(feature_spec["static_names"])}
    groups = [[index[f"{column}={level}"] for level in levels] for column, levels in feature_spec["static_one_hot"].items()]
    return [columns for columns in groups if len(columns) >= 2]


def one_per_group(binary_values: torch.Tensor, scores: torch.Tensor, groups: Sequence[Sequence[int]], offset: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """`binary_values` with each one-hot group (column indices + `offset`) set to exactly one column: the
    group's highest score, or, with a `generator`, one drawn with probabilities proportional to the scores
    (non-negative: probabilities)."""
    out = binary_values.clone()
    for group in groups:
        columns = torch.as_tensor([offset + c for c in group], device=scores.device)
        group_scores = scores[:, columns]
        if generator is None:
            chosen = group_scores.argmax(dim=1)
        else:
            weights = group_scores.clamp_min(0).cpu() + 1e-12
            chosen = torch.multinomial(weights, 1, generator=generator).squeeze(1).to(scores.device)
        out[:, columns] = torch.nn.functional.one_hot(chosen, len(group)).to(out.dtype)
    return out


def bound_columns(values: torch.Tensor, binary_values: torch.Tensor, layout: Mapping[str, Any]) -> torch.Tensor:
    """Generated columns as the training data has them: binary columns (layout["binary"]) take
    `binary_values` (0/1), the others are clipped to their training range [layout["low"], layout["high"]]."""
    binary, low, high = (torch.as_tensor(layout[key], device=values.device) for key in ("binary", "low", "high"))
    return torch.where(binary, binary_values.float(), torch.minimum(torch.maximum(values, low), high))


@torch.no_grad()
def sample_in_chunks(
    models: Sequence[nn.Module],
    writer: BundleWriter,
    params: Mapping[str, Any],
    device: str,
    seed: int,
    desc: str,
    draw: Callable[[int, torch.Generator, torch.device], Mapping[str, np.ndarray]],
) -> None:
    """Fill `writer` with records `draw(n, generator, device)` makes, params["sample_batch_size"] at a time.

    The draws are seeded by `seed`; `models` sit on the device in eval mode while they run and go
    back to the CPU afterwards.
    """
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    for model in models:
        model.to(torch_device).eval()
    try:
        for rows in chunks(writer.n, params["sample_batch_size"], desc):
            writer.write(rows, **draw(rows.stop - rows.start, generator, torch_device))
    finally:
        for model in models:
            model.cpu()
