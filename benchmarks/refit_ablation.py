"""Does refitting a torch model on train + validation, for the epoch count early stopping found, beat the
early-stopped model? Scored by CV on the train split only (the test split is never read).

The baselines refit on train + validation after CV (4000 records on PhysioNet 2012); the torch models train on
the 3200 train records and keep the 800 validation records for early stopping, calibration and the threshold.
This benchmark measures what the extra records are worth to a torch model, the way the training stage would use
them: for each held-out fold f of the train split's CV folds, the next fold m plays the validation split,

- **early-stopped**: trained on the other folds, early-stopping on m (the training stage's model today);
- **refit**: trained afresh (same seed) on the other folds and m together for the early-stopped model's best
  epoch count + 1 (`training.torch_loop.fit` without a monitor set), the last epoch kept;

and both are scored on f. Both are single instances of the block's configuration. The refit's probabilities use
what the training stage gives it, fitted on m by the early-stopped model: the Platt calibration and the decision
threshold (max min(Se, PPV)); so besides AUROC/AUPRC the table shows min(Se, PPV) at that threshold and the
Brier score on f for both models, which says whether the calibration and threshold carry over to the refit.

Usage (after `kedro run --pipelines features` wrote the model input):

    python benchmarks/refit_ablation.py --model lstm_pooled --seeds 2012 2013 2014 [--set patience=25]

Prints, per seed and fold, both held-out AUROC/AUPRC, and the mean paired difference with its spread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ehr_adversarial.datasets.tensors import TensorBundleDataset
from ehr_adversarial.reporting.latest import newest_version
from ehr_adversarial.training import predict_torch_model, refit_torch_model, train_torch_model
from ehr_adversarial.training.metrics import binary_metrics, choose_threshold
from ehr_adversarial.training.selection import cv_folds

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("auroc", "auprc", "min_se_ppv", "brier")
FEATURE_SET = {"lstm_sun2018": "sun2018", "lstm_pooled": "sun2018", "dssm": "full"}


def held_out_scores(model, bundle, spec, threshold: float) -> dict[str, float]:
    y, prob = bundle["y"], predict_torch_model(model, bundle, spec, "cpu")["y_prob"].to_numpy()
    return {"auroc": float(roc_auc_score(y, prob)), "auprc": float(average_precision_score(y, prob)),
            "min_se_ppv": binary_metrics(y, prob, threshold)["min_se_ppv"], "brier": brier_score_loss(y, prob)}


def rows_of(bundle: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {name: value[index] for name, value in bundle.items()}


def compare(model_name: str, data: Path, seeds: list[int], max_folds: int, same_steps: bool = False,
            overrides: dict | None = None) -> pd.DataFrame:
    """The training stage's own functions (`train_torch_model`, `refit_torch_model`, `predict_torch_model`) on
    folds of the train split: one instance, the block's calibration (with `overrides` of its top-level keys), the
    refit's epochs as the stage sets them."""
    feature_set = FEATURE_SET[model_name]
    features = data / "04_feature" / "physionet2012" / "features"
    bundle = TensorBundleDataset(filepath=str(newest_version(
        data / "05_model_input" / "physionet2012" / "features" / feature_set / "model_input_train.npz"))).load()
    spec = json.loads(newest_version(features / feature_set / "feature_spec.json").read_text())
    splits = pd.read_parquet(newest_version(features / "splits.parquet"))
    block = yaml.safe_load((ROOT / "conf" / "base" / "parameters_training.yml").read_text())
    block = {**block["training"]["physionet2012"][model_name], **(overrides or {}), "n_instances": 1}
    fold, held_out = cv_folds(bundle, splits, max_folds)
    all_folds = sorted(int(f) for f in np.unique(fold) if f >= 0)
    rows = []
    for seed in seeds:
        for f in held_out:
            m = all_folds[(all_folds.index(f) + 1) % len(all_folds)]
            fit_set = rows_of(bundle, np.flatnonzero((fold != f) & (fold != m)))
            validation, test = rows_of(bundle, np.flatnonzero(fold == m)), rows_of(bundle, np.flatnonzero(fold == f))
            start = time.perf_counter()
            stopped, _ = train_torch_model(fit_set, validation, spec, block, seed, "cpu", f"seed {seed} fold {f}")
            if same_steps:  # as many optimiser steps as the early-stopped model took, over more records
                n_fit = fit_set["y"].size
                stopped.config["kept_epochs"] = max(1, round(stopped.config["kept_epochs"] * n_fit
                                                             / (n_fit + validation["y"].size)))
            refit = refit_torch_model(fit_set, validation, spec, {**block, "refit_on": "train_and_validation"},
                                      stopped, seed, "cpu", f"seed {seed} fold {f}")
            threshold = choose_threshold(validation["y"],
                                         predict_torch_model(stopped, validation, spec, "cpu")["y_prob"].to_numpy())
            a = held_out_scores(stopped, test, spec, threshold)
            b = held_out_scores(refit, test, spec, threshold)
            rows.append({"seed": seed, "fold": f, "epochs": refit.config["refit"]["epochs"][0],
                         **{f"{metric}_{name}": scores[metric] for metric in METRICS
                            for name, scores in (("early_stopped", a), ("refit", b))},
                         "seconds": time.perf_counter() - start})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--model", default="lstm_pooled", choices=sorted(FEATURE_SET))
    parser.add_argument("--seeds", type=int, nargs="+", default=[2012])
    parser.add_argument("--folds", type=int, default=5, help="held-out folds of the train split's CV")
    parser.add_argument("--same-steps", action="store_true",
                        help="refit for as many optimiser steps as the early-stopped model took (fewer epochs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a top-level key of the block (YAML value), e.g. patience=25: two runs with "
                             "the same seeds and folds compare settings of the early-stopped model pairwise")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: use KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    table = compare(args.model, args.data, args.seeds, args.folds, args.same_steps, overrides)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for metric in METRICS:
        diff = table[f"{metric}_refit"] - table[f"{metric}_early_stopped"]
        # lower is better for the Brier score
        print(f"{metric}: early-stopped {table[f'{metric}_early_stopped'].mean():.4f}, "
              f"refit {table[f'{metric}_refit'].mean():.4f}, refit − early-stopped {diff.mean():+.4f} "
              f"(SD {diff.std(ddof=1):.4f}, better in {(diff > 0).sum()} of {len(diff)} fits)")


if __name__ == "__main__":
    main()
