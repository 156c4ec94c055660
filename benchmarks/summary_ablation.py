"""What the summary-statistics baselines gain from richer summaries, unclipped values, other GBM settings and
averaging with the logistic regression — chosen by CV only.

Every variant is scored by 5-fold stratified CV over set-a's train + validation records (the records the default
run's baselines refit on) of feature set `full`; set-b is never read. The base is the project's `gbm` block on
`training.summary_features` of the scaled tensors (winsorised at the train split's p05/p95).

Variants:
- unclipped: the same summaries of the hourly values in clinical units (the features stage's `hourly_cells`),
  so the extremes beyond p05/p95 survive;
- + trend etc.: the unclipped summaries plus per feature the least-squares slope over measured hours, the
  time-weighted (forward-filled) mean, the sum and the sum of the first 24 h;
- tuned: learning rate 0.03, 400 trees, 15 leaves;
- 1 seed: the project's GBM as one estimator instead of the soft vote of `n_seeds` copies from consecutive seeds;
- logreg (C 0.003) and the rank average of the GBM and the logistic regression.

Usage (after `kedro run --pipelines ingestion,features`):

    python benchmarks/summary_ablation.py --data data --repeats 3

With `--repeats R` every variant is scored on R different 5-fold splits (seeds seed, seed + 1, …); the table gives
the mean and the range over the repeats.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.stats import rankdata
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ehr_adversarial.datasets.tensors import TensorBundleDataset
from ehr_adversarial.reporting.latest import newest_version
from ehr_adversarial.training.summary_features import summary_statistics

ROOT = Path(__file__).resolve().parents[1]


def trend_statistics(values: np.ndarray, mask: np.ndarray, names: list[str], index: pd.Index) -> pd.DataFrame:
    """Per feature: slope over the measured hours, time-weighted mean, sum, sum of the first 24 h."""
    observed = np.where(mask, values, np.nan)
    n, hours, n_features = observed.shape
    hour = np.where(mask, np.arange(hours)[None, :, None].astype(float), np.nan)
    count = mask.sum(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        centred_hour = hour - np.nanmean(hour, 1, keepdims=True)
        covariance = np.nansum(centred_hour * (observed - np.nanmean(observed, 1, keepdims=True)), 1)
        variance = np.nansum(centred_hour ** 2, 1)
        slope = np.where((count >= 2) & (variance > 0), covariance / np.where(variance > 0, variance, 1), np.nan)
        filled = pd.DataFrame(observed.transpose(0, 2, 1).reshape(-1, hours)).ffill(axis=1).to_numpy()
        time_weighted = np.nanmean(filled.reshape(n, n_features, hours), 2)
    total = np.where(count > 0, np.nansum(observed, 1), np.nan)
    first_day = np.where(count > 0, np.nansum(observed[:, : hours // 2], 1), np.nan)
    columns = {}
    for j, name in enumerate(names):
        columns |= {f"{name}__slope": slope[:, j], f"{name}__time_weighted_mean": time_weighted[:, j],
                    f"{name}__sum": total[:, j], f"{name}__sum_first24h": first_day[:, j]}
    return pd.DataFrame(columns, index=index)


def cross_validated(features: pd.DataFrame, y: np.ndarray, make, seed: int) -> np.ndarray:
    prob = np.zeros(len(y))
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, y):
        prob[held] = make().fit(features.iloc[fit], y[fit]).predict_proba(features.iloc[held])[:, 1]
    return prob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--seed", type=int, default=2012)
    parser.add_argument("--repeats", type=int, default=1, help="5-fold splits per variant (seeds seed, seed + 1, ...)")
    args = parser.parse_args()

    inputs = args.data / "05_model_input" / "physionet2012" / "features" / "full"
    bundles = [TensorBundleDataset(filepath=str(newest_version(inputs / f"model_input_{split}.npz"))).load()
               for split in ("train", "validation")]
    bundle = {key: np.concatenate([b[key] for b in bundles]) for key in ("X", "mask", "static", "y", "record_id")}
    cells = TensorBundleDataset(filepath=str(newest_version(
        args.data / "04_feature" / "physionet2012" / "features" / "full" / "hourly_cells.npz"))).load()
    spec = json.loads(newest_version(args.data / "04_feature" / "physionet2012" / "features" / "full" /
                             "feature_spec.json").read_text())
    names, statics = spec["feature_names"], spec["static_names"]
    position = pd.Series(np.arange(len(cells["record_id"])), index=cells["record_id"])
    values = cells["values"][position.loc[bundle["record_id"]].to_numpy()].astype(np.float64)
    unclipped = {**bundle, "X": np.where(bundle["mask"], values, 0.0)}
    y = np.asarray(bundle["y"])

    blocks = yaml.safe_load((ROOT / "conf" / "base" / "parameters_training.yml").read_text())["training"]
    gbm_block = blocks["physionet2012"]["gbm"]
    gbm, n_seeds = dict(gbm_block["hyperparameters"]), int(gbm_block.get("n_seeds", 1))
    clipped = summary_statistics(bundle, names, statics)
    raw = summary_statistics(unclipped, names, statics)
    with_trend = pd.concat([raw, trend_statistics(values, bundle["mask"], names, raw.index)], axis=1)

    def gbm_with(seeds: int = n_seeds, **changes):
        def make():
            copies = [HistGradientBoostingClassifier(random_state=args.seed + k, early_stopping=False,
                                                     **{**gbm, **changes}) for k in range(seeds)]
            return copies[0] if seeds == 1 else VotingClassifier([(f"seed_{k}", c) for k, c in enumerate(copies)],
                                                                 voting="soft")
        return make

    def logreg():
        return make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                             StandardScaler(), LogisticRegression(C=0.003, class_weight="balanced", max_iter=3000))

    default = f"gbm, clipped summaries (project default: {n_seeds} seed(s))"
    variants = {
        default: (clipped, gbm_with()),
        "gbm, 1 seed, clipped summaries": (clipped, gbm_with(seeds=1)),
        "gbm, unclipped summaries": (raw, gbm_with()),
        "gbm, unclipped + trend, time-weighted mean, sums": (with_trend, gbm_with()),
        "gbm tuned (lr 0.03, 400 trees, 15 leaves), unclipped": (raw, gbm_with(learning_rate=0.03, max_iter=400,
                                                                               max_leaf_nodes=15)),
        "logreg C 0.003, clipped summaries": (clipped, logreg),
    }
    scores: dict[str, list[tuple[float, float]]] = {}
    columns, seconds = {}, {}
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        predictions = {}
        for name, (features, make) in variants.items():
            start = time.perf_counter()
            predictions[name] = cross_validated(features, y, make, seed)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            columns[name] = features.shape[1]
            scores.setdefault(name, []).append((roc_auc_score(y, predictions[name]),
                                                average_precision_score(y, predictions[name])))
            print(f"split {seed}: {name}: AUROC {scores[name][-1][0]:.4f}, AUPRC {scores[name][-1][1]:.4f}", flush=True)
        average = rankdata(predictions[default]) + rankdata(predictions["logreg C 0.003, clipped summaries"])
        scores.setdefault("rank average of gbm and logreg (clipped)", []).append(
            (roc_auc_score(y, average), average_precision_score(y, average)))
    rows = []
    for name, values in scores.items():
        values = np.asarray(values)
        rows.append({"variant": name, "columns": columns.get(name, np.nan),
                     "auroc": values[:, 0].mean(), "auroc_range": f"{values[:, 0].min():.4f}–{values[:, 0].max():.4f}",
                     "auprc": values[:, 1].mean(), "auprc_range": f"{values[:, 1].min():.4f}–{values[:, 1].max():.4f}",
                     "seconds": seconds.get(name, 0.0) / args.repeats})
    table = pd.DataFrame(rows)
    table["auroc_vs_default"] = table["auroc"] - table["auroc"].iloc[0]
    print(f"5-fold CV on {len(y)} set-a records ({int(y.sum())} deaths), {args.repeats} split(s); mean over splits")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
