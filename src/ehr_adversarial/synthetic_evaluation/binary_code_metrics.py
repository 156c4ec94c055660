"""EHRDiff's metrics for binary code matrices, real against synthetic.

- dimension-wise probability (prevalence): the share of rows that carry each code, and the Pearson r
  of the real and synthetic prevalences over the codes (EHRDiff's "CC"), with the prevalence plot;
- MMD² with an RBF kernel (synthetic_evaluation.fidelity.mmd_rbf, median-heuristic bandwidth);
- nearest-neighbour privacy: the Hamming distance of each synthetic row to its nearest real train row,
  against the same distance for the real holdout rows (which the model never saw), and the share of
  synthetic rows that copy a train row exactly (against the holdout rows that equal some train row:
  sparse binary rows coincide by chance, so copies need that yardstick).

Every number also has its real-data reference (holdout against train), the level a perfect generator
reaches at this sample size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ehr_adversarial.synthesis.binary_codes import HOLDOUT, TRAIN

from .fidelity import mmd_rbf


def dimension_wise_probability(codes: np.ndarray) -> np.ndarray:
    """(C,) share of the rows that carry each code (0 for no rows)."""
    codes = np.asarray(codes, dtype=np.float64)
    return codes.mean(axis=0) if len(codes) else np.zeros(codes.shape[1])


def prevalence_correlation(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Pearson r of two prevalence vectors; NaN when either is constant."""
    real, synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    if len(real) < 2 or real.std() == 0 or synthetic.std() == 0:
        return float("nan")
    return float(np.corrcoef(real, synthetic)[0, 1])


def nearest_hamming(queries: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(Q,) Hamming distance of each query row to its nearest reference row (binary matrices)."""
    reference_t = torch.as_tensor(np.asarray(reference), dtype=torch.float32)
    ref_ones = reference_t.sum(dim=1)
    out = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = torch.as_tensor(np.asarray(queries[start : start + chunk]), dtype=torch.float32)
        # |a − b|₁ = |a| + |b| − 2 a·b for 0/1 vectors
        distances = q.sum(dim=1, keepdim=True) + ref_ones[None, :] - 2.0 * q @ reference_t.T
        out[start : start + chunk] = distances.min(dim=1).values.round().long().numpy()
    return out


def nearest_neighbour_privacy(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """Nearest-train-row Hamming distances of the synthetic and the holdout rows, and exact copies."""
    synthetic_nn, holdout_nn = nearest_hamming(synthetic, train), nearest_hamming(holdout, train)
    return {
        "synthetic_nn_hamming_mean": float(synthetic_nn.mean()),
        "synthetic_nn_hamming_median": float(np.median(synthetic_nn)),
        "holdout_nn_hamming_mean": float(holdout_nn.mean()),
        "holdout_nn_hamming_median": float(np.median(holdout_nn)),
        "synthetic_exact_copy_share": float((synthetic_nn == 0).mean()),
        "holdout_exact_match_share": float((holdout_nn == 0).mean()),
    }


def code_mmd(real: np.ndarray, synthetic: np.ndarray, max_records: int | None = 5000, seed: int = 0) -> float:
    """Unbiased MMD² (RBF kernel, median-heuristic bandwidth) between two binary code matrices."""
    columns = [f"c{i}" for i in range(np.asarray(real).shape[1])]
    frame = lambda codes: pd.DataFrame(np.asarray(codes, dtype=np.float64), columns=columns)  # noqa: E731
    return mmd_rbf(frame(real), frame(synthetic), max_records=max_records, seed=seed)["mmd2"]


def prevalence_table(code_matrix: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per code: its prevalence in the real train rows, the real holdout rows and the synthetic rows."""
    if list(synthetic["code_names"]) != list(code_matrix["code_names"]):
        raise ValueError("the synthetic rows have other columns than the code matrix")
    split = np.asarray(code_matrix["split"])
    return pd.DataFrame({
        "code": np.asarray(code_matrix["code_names"], dtype=str),
        "train": dimension_wise_probability(code_matrix["codes"][split == TRAIN]),
        "holdout": dimension_wise_probability(code_matrix["codes"][split == HOLDOUT]),
        "synthetic": dimension_wise_probability(synthetic["codes"]),
    })


def code_fidelity(
    code_matrix: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray], max_records: int | None = 5000, seed: int = 0
) -> tuple[dict[str, Any], pd.DataFrame]:
    """All metrics (synthetic against the real train rows, and holdout against train as the reference)
    and the prevalence table."""
    split = np.asarray(code_matrix["split"])
    train, holdout = code_matrix["codes"][split == TRAIN], code_matrix["codes"][split == HOLDOUT]
    fake = np.asarray(synthetic["codes"])
    table = prevalence_table(code_matrix, synthetic)
    metrics: dict[str, Any] = {
        "n_train": int(len(train)),
        "n_holdout": int(len(holdout)),
        "n_synthetic": int(len(fake)),
        "n_codes": int(train.shape[1]),
        "codes_per_row_train": float(train.sum(axis=1).mean()),
        "codes_per_row_holdout": float(holdout.sum(axis=1).mean()),
        "codes_per_row_synthetic": float(fake.sum(axis=1).mean()) if len(fake) else 0.0,
        "empty_row_share_synthetic": float((fake.sum(axis=1) == 0).mean()) if len(fake) else 0.0,
        "prevalence_r_synthetic_train": prevalence_correlation(table["train"], table["synthetic"]),
        "prevalence_r_holdout_train": prevalence_correlation(table["train"], table["holdout"]),
        "prevalence_mae_synthetic_train": float((table["train"] - table["synthetic"]).abs().mean()),
        "prevalence_mae_holdout_train": float((table["train"] - table["holdout"]).abs().mean()),
        "mmd2_synthetic_train": code_mmd(train, fake, max_records, seed),
        "mmd2_holdout_train": code_mmd(train, holdout, max_records, seed),
        **nearest_neighbour_privacy(train, holdout, fake),
    }
    return metrics, table


def evaluate_codes_node(
    code_matrix: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray], params: Mapping[str, Any], seed: int
) -> tuple[dict[str, Any], pd.DataFrame]:
    """code_fidelity with the `mmd_max_records` of the parameters."""
    return code_fidelity(code_matrix, synthetic, params.get("mmd_max_records", 5000), seed)


def prevalence_figure(table: pd.DataFrame, metrics: Mapping[str, Any] | None = None) -> Figure:
    """EHRDiff's dimension-wise probability plot: per code, real train prevalence (x) against synthetic
    (and real holdout) prevalence (y), with the diagonal."""
    figure = Figure(figsize=(5, 5))
    ax = figure.subplots()
    top = float(max(table[["train", "holdout", "synthetic"]].to_numpy().max(), 0.05)) * 1.05
    ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--", label="y = x")
    r_h = prevalence_correlation(table["train"], table["holdout"])
    r_s = prevalence_correlation(table["train"], table["synthetic"])
    ax.scatter(table["train"], table["holdout"], s=10, alpha=0.5, color="tab:grey", label=f"real holdout (r = {r_h:.3f})")
    ax.scatter(table["train"], table["synthetic"], s=10, alpha=0.7, color="tab:blue", label=f"EHRDiff (r = {r_s:.3f})")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="prevalence, real train rows", ylabel="prevalence, holdout / synthetic rows")
    sizes = f"{metrics['n_train']} train, {metrics['n_holdout']} holdout rows; " if metrics else ""
    ax.set_title(f"Dimension-wise probability ({sizes}{len(table)} codes)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure


def prevalence_plot_node(prevalence: pd.DataFrame, fidelity: Mapping[str, Any]) -> Figure:
    """prevalence_figure for the pipeline."""
    return prevalence_figure(prevalence, fidelity)
