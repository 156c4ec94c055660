"""Synthetic headlines over generator seeds: each generator trained and sampled from several seeds.

One generator run is one draw from the generator's training randomness; a TSTR AUROC from one run hides how
much another seed would move it. Utility intervals here pool both sources of variance: every bootstrap
replicate draws the test records (class-stratified, as utility.bootstrap_indices) and one of the runs (the
replicates cycle through them), so the percentile interval is that of the mixture of the runs' bootstrap
distributions, whose variance is the mean within-run variance plus the variance between runs. Other metrics
(fidelity, detection, privacy) are summarised by their mean, standard deviation and range over the runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from ehr_adversarial.synthetic_evaluation.utility import bootstrap_indices
from ehr_adversarial.training.metrics import average_precision_rows, roc_auc_rows

METRICS = {"auroc": (roc_auc_score, roc_auc_rows), "auprc": (average_precision_score, average_precision_rows)}


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation (ddof 1; 0 for one value), min, max and count of `values`."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()), "n": int(values.size)}


def pooled_tstr_trtr(
    y_test: np.ndarray,
    trtr_score: np.ndarray,
    tstr_scores: Sequence[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """TSTR AUROC/AUPRC and TSTR/TRTR over several generator runs, each scored on the same real test records.

    Per metric: `tstr` and `ratio` hold the runs' spread (mean, sd, min, max, n, per_run) and the pooled
    percentile interval (ci_low, ci_high) over bootstrap replicates that each resample the test records and
    take one run; `trtr` is the one real-data reference with its bootstrap interval on the same replicates."""
    y = np.asarray(y_test).astype(int)
    runs = [np.asarray(s, dtype=np.float64) for s in tstr_scores]
    if not runs:
        raise ValueError("pooled_tstr_trtr needs the predictions of at least one generator run")
    trtr = np.asarray(trtr_score, dtype=np.float64)
    lengths = {len(y), len(trtr), *(len(r) for r in runs)}
    if len(lengths) != 1:
        raise ValueError(f"test labels, TRTR and TSTR predictions differ in length ({sorted(lengths)}); "
                         "all must score the same real test records")
    indices = bootstrap_indices(y, n_boot, seed)
    y_rows = y[indices]
    run_of_replicate = np.arange(n_boot) % len(runs)
    low, high = (1 - confidence) / 2, 1 - (1 - confidence) / 2
    result: dict[str, Any] = {"n_runs": len(runs), "n_test": int(len(y)), "n_bootstrap": int(n_boot)}
    for metric, (score_of, rows_of) in METRICS.items():
        trtr_rows = rows_of(y_rows, trtr[indices])
        tstr_rows = np.empty(n_boot)
        for run, score in enumerate(runs):
            chosen = run_of_replicate == run
            tstr_rows[chosen] = rows_of(y_rows[chosen], score[indices[chosen]])
        trtr_point = float(score_of(y, trtr))
        tstr_points = [float(score_of(y, score)) for score in runs]
        result[metric] = {
            "trtr": {"value": trtr_point, "ci_low": float(np.quantile(trtr_rows, low)),
                     "ci_high": float(np.quantile(trtr_rows, high))},
            "tstr": {**spread(tstr_points), "per_run": tstr_points,
                     "ci_low": float(np.quantile(tstr_rows, low)), "ci_high": float(np.quantile(tstr_rows, high))},
            "ratio": {**spread([p / trtr_point for p in tstr_points]), "per_run": [p / trtr_point for p in tstr_points],
                      "ci_low": float(np.quantile(tstr_rows / trtr_rows, low)),
                      "ci_high": float(np.quantile(tstr_rows / trtr_rows, high))},
        }
    return result


def seed_summary(
    comparison: pd.DataFrame,
    runs: Mapping[str, tuple[str, int]],
    metrics: Mapping[str, str],
    utility: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """Long table, one row per generator and metric: mean, sd, min, max, n_runs, ci_low/ci_high (utility only).

    `comparison`: one row per run (column `generator` = the run's label); `runs`: label → (generator, seed
    offset); `metrics`: comparison column → its label in the summary; `utility`: generator → model →
    pooled_tstr_trtr result."""
    rows = []
    by_label = comparison.set_index("generator")
    for generator in dict.fromkeys(g for g, _ in runs.values()):
        labels = [label for label, (g, _) in runs.items() if g == generator and label in by_label.index]
        for model, pooled in utility.get(generator, {}).items():
            for metric in METRICS:
                for kind in ("tstr", "ratio"):
                    cell = pooled[metric][kind]
                    rows.append({"generator": generator, "metric": f"{model} {'TSTR' if kind == 'tstr' else 'TSTR/TRTR'} "
                                 f"{metric.upper()}", **{k: cell[k] for k in ("mean", "sd", "min", "max")},
                                 "n_runs": cell["n"], "ci_low": cell["ci_low"], "ci_high": cell["ci_high"]})
        for column, label in metrics.items():
            if column not in by_label.columns:
                continue
            values = pd.to_numeric(by_label.loc[labels, column], errors="coerce").tolist()
            cell = spread(values)
            rows.append({"generator": generator, "metric": label, **{k: cell[k] for k in ("mean", "sd", "min", "max")},
                         "n_runs": cell["n"], "ci_low": np.nan, "ci_high": np.nan})
    return pd.DataFrame(rows, columns=["generator", "metric", "mean", "sd", "min", "max", "n_runs", "ci_low", "ci_high"])
