"""EHRDiff on binary code matrices: one 0/1 vector of ICD-9 diagnoses per patient (or admission).

This is EHRDiff's MIMIC-III setting (Yuan et al., TMLR 2024, following medGAN): every row is the
set of diagnosis codes of a patient, all admissions pooled, rolled up to 3-digit ICD-9 categories;
the denoiser learns the flat {0, 1} vector by continuous diffusion, and a sampled vector is
thresholded at 0.5.

- `build_code_matrix`: rows = patients (or admissions) with at least one code in the diagnoses
  extraction (sources/sql/diagnoses.sql), split at random into train and holdout rows; columns = the
  codes (3-digit categories, or full codes) that occur in the train rows, optionally the `top_n` most
  frequent there. Holdout rows keep only those columns; the vocabulary never sees them.
- `fit_code_ehrdiff` / `sample_code_ehrdiff`: models.ehrdiff's MLP denoiser and Heun sampler on the
  train rows (synthesis.ehrdiff.fit_ehrdiff with an all-binary layout).

The module knows nothing about Kedro; the functions with a `params` argument are the pipeline's nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from ehr_adversarial.models.ehrdiff import EHRDiff, heun_sample
from ehr_adversarial.torch_utils import resolve_device, seed_everything

from .common import SYNTHETIC_GROUP, chunks, synthetic_record_ids
from .ehrdiff import fit_ehrdiff

logger = logging.getLogger(__name__)

Bundle = dict[str, np.ndarray]

ROW_KEYS = {"patients": "subject_id", "admissions": "hadm_id"}
CODE_COLUMNS = {"3digit": "icd9_3digit", "full": "icd9_code"}
TRAIN, HOLDOUT = "train", "holdout"


def split_rows(n: int, holdout_fraction: float, seed: int) -> np.ndarray:
    """(n,) 'train' / 'holdout': a seeded random round(holdout_fraction · n) rows are held out."""
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must lie strictly between 0 and 1, got {holdout_fraction}")
    n_holdout = round(holdout_fraction * n)
    if n_holdout < 1 or n_holdout >= n:
        raise ValueError(f"{n} rows cannot be split into train and holdout with holdout_fraction {holdout_fraction}")
    split = np.full(n, TRAIN, dtype=object)
    split[np.random.default_rng(seed).permutation(n)[:n_holdout]] = HOLDOUT
    return split.astype(str)


def build_code_matrix(
    diagnoses: pd.DataFrame,
    rows: str = "patients",
    codes: str = "3digit",
    top_n: int | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> Bundle:
    """The binary row × code matrix of every row with a code, its train/holdout split and vocabulary.

    Returns codes (N, C) uint8, code_names (C,) str, record_id (N,) int64 (subject_id or hadm_id,
    ascending) and split (N,) str. The C columns are the codes of the train rows (ascending), or the
    `top_n` of them that most train rows have (ties broken by code)."""
    if rows not in ROW_KEYS:
        raise ValueError(f"rows is {rows!r}; use one of {', '.join(ROW_KEYS)}")
    if codes not in CODE_COLUMNS:
        raise ValueError(f"codes is {codes!r}; use one of {', '.join(CODE_COLUMNS)}")
    key, code = ROW_KEYS[rows], CODE_COLUMNS[codes]
    pairs = diagnoses[[key, code]].dropna().drop_duplicates()
    pairs = pairs.assign(**{key: pairs[key].astype(np.int64), code: pairs[code].astype(str)})
    record_id = np.sort(pairs[key].unique())
    split = split_rows(len(record_id), holdout_fraction, seed)
    row = pd.Index(record_id).get_indexer(pairs[key])
    in_train = split[row] == TRAIN
    counts = pairs.loc[in_train, code].value_counts()
    counts = counts.rename_axis("code").reset_index(name="rows").sort_values(["rows", "code"], ascending=[False, True])
    if top_n is not None:
        counts = counts.head(top_n)
    code_names = np.sort(counts["code"].to_numpy(str))
    column = pd.Index(code_names).get_indexer(pairs[code])
    matrix = np.zeros((len(record_id), len(code_names)), dtype=np.uint8)
    kept = column >= 0
    matrix[row[kept], column[kept]] = 1
    logger.info(
        "code matrix: %d %s (%d train, %d holdout) x %d ICD-9 %s codes from the train rows",
        len(record_id), rows, int((split == TRAIN).sum()), int((split == HOLDOUT).sum()), len(code_names), codes,
    )
    return {"codes": matrix, "code_names": code_names.astype(str), "record_id": record_id, "split": split}


def code_matrix_node(diagnoses: pd.DataFrame, params: Mapping[str, Any], seed: int) -> Bundle:
    """build_code_matrix with the `matrix` block of the parameters."""
    matrix = params["matrix"]
    return build_code_matrix(diagnoses, matrix["rows"], matrix["codes"], matrix.get("top_n"), matrix["holdout_fraction"], seed)


def train_rows(code_matrix: Mapping[str, np.ndarray], split: str = TRAIN) -> np.ndarray:
    """The rows of one split as float32."""
    return np.asarray(code_matrix["codes"][np.asarray(code_matrix["split"]) == split], dtype=np.float32)


def code_layout(code_names: list[str], matrix: np.ndarray) -> dict[str, Any]:
    """The layout fit_ehrdiff needs for a record of binary codes only."""
    return {
        "n_hours": 0,
        "n_features": 0,
        "n_static": 0,
        "label_column": True,
        "code_names": list(code_names),
        "binary": [True] * matrix.shape[1],
        "low": [0.0] * matrix.shape[1],
        "high": [1.0] * matrix.shape[1],
    }


def fit_code_ehrdiff(code_matrix: Mapping[str, np.ndarray], params: Mapping[str, Any], seed: int, device: str) -> EHRDiff:
    """EHRDiff (models.ehrdiff, MLP denoiser) on the train rows of the code matrix; the EMA model."""
    matrix = train_rows(code_matrix)
    if matrix.shape[1] == 0:
        raise ValueError("the code matrix has no columns: the train rows carry no code")
    return fit_ehrdiff(matrix, code_layout(code_matrix["code_names"].tolist(), matrix), {**params, "time_basis": "hours"}, device, seed)


@torch.no_grad()
def sample_code_ehrdiff(
    model: EHRDiff, code_matrix: Mapping[str, np.ndarray], params: Mapping[str, Any], seed: int, device: str
) -> Bundle:
    """`n_samples` synthetic rows (an integer, or `train` for as many as the train rows): Heun-sampled
    vectors plus the training offset, thresholded at 0.5. Returns codes (N, C) uint8, code_names,
    record_id (new ids no real row has) and group 'synthetic'."""
    n = params["n_samples"]
    n = int(model.config["n_train_records"]) if n == "train" else int(n)
    sampler = params["sampler"]
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    model.to(torch_device).eval()
    offset = torch.as_tensor(model.config["offset"], dtype=torch.float32, device=torch_device)
    out = np.empty((n, model.n_columns), dtype=np.uint8)
    try:
        for rows in chunks(n, params["sample_batch_size"], "EHRDiff code sampling"):
            latents = torch.randn(rows.stop - rows.start, model.n_columns, generator=generator).to(torch_device)
            x = heun_sample(model, latents, sampler["num_steps"], sampler["sigma_min"], sampler["sigma_max"], sampler["rho"])
            out[rows] = ((x + offset) > 0.5).cpu().numpy()
    finally:
        model.cpu()
    logger.info("EHRDiff: %d synthetic rows, %.2f codes per row", n, float(out.sum(axis=1).mean()) if n else 0.0)
    return {
        "codes": out,
        "code_names": np.asarray(code_matrix["code_names"], dtype=str),
        "record_id": synthetic_record_ids(n, np.asarray(code_matrix["record_id"])),
        "group": np.full(n, SYNTHETIC_GROUP),
    }
