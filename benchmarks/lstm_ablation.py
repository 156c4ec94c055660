"""Which additions make the LSTM of Sun et al. (2018) competent on its own `sun2018` inputs, chosen by CV only.

Every variant is the project's `lstm_sun2018` training block with some settings changed (the model's inputs and
read-out, then the training of `lstm_pooled`: learning rate, width, dropout, weight decay); each is scored by
k-fold CV on the train split (set-a without the validation records, the folds of `features.splits`), the same
protocol the training stage uses for model selection. The yardstick is `gbm_sun2018` (gradient boosting on
per-record summaries of the same tensors) scored on the same folds. The test split (set-b) is never read.

Usage (after `kedro run --pipelines features` wrote the sun2018 model input):

    python benchmarks/lstm_ablation.py --data data --folds 2 --epochs 15

Prints one row per variant: mean held-out AUROC/AUPRC over the folds, the gap to the GBM, seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from ehr_adversarial.datasets.tensors import TensorBundleDataset
from ehr_adversarial.reporting.latest import newest_version
from ehr_adversarial.training import select_estimator_config, select_torch_config
from ehr_adversarial.training.selection import merge_config

ROOT = Path(__file__).resolve().parents[1]
POOLED = {"hyperparameters": {"use_static": True, "readout": "pooled"}}
FOUR = ["mean", "min", "max", "last"]
SUMMARISED = merge_config(POOLED, {"hyperparameters": {"input_summary": FOUR}})
MEASURED = merge_config(SUMMARISED, {"hyperparameters": {"measurement_summary": ["measured_share", "hours_since_last"]}})
# variant → overrides of the lstm_sun2018 block (merged key by key)
VARIANTS: dict[str, dict] = {
    "paper (x, last state)": {},
    "+ mask, delta": {"hyperparameters": {"use_mask": True, "use_delta": True}},
    "+ mask, delta, static": {"hyperparameters": {"use_mask": True, "use_delta": True, "use_static": True}},
    "+ mask, delta, static, pooled read-out": {"hyperparameters": {"use_mask": True, "use_delta": True,
                                                                   "use_static": True, "readout": "pooled"}},
    "+ static, pooled read-out": POOLED,
    "pooled, lr 3e-3": merge_config(POOLED, {"optimizer": {"lr": 0.003}}),
    "pooled, hidden 64": merge_config(POOLED, {"hyperparameters": {"hidden_size": 64}}),
    "pooled, dropout 0.3": merge_config(POOLED, {"hyperparameters": {"dropout": 0.3}}),
    "pooled, weight decay 1e-3": merge_config(POOLED, {"optimizer": {"weight_decay": 0.001}}),
    "pooled, EMA of the weights (decay 0.98 per step)": merge_config(POOLED, {"ema_decay": 0.98}),
    "pooled, EMA of the weights (decay 0.995 per step)": merge_config(POOLED, {"ema_decay": 0.995}),
    "pooled, + per-feature mean, min, max, last of x (lstm_pooled)": SUMMARISED,
    "pooled, mean, min, max, last, + per-feature share of hours measured and hours since the last measurement":
        MEASURED,
    "pooled, mean, min, max, last, + per-feature share of hours measured": merge_config(SUMMARISED, {
        "hyperparameters": {"measurement_summary": ["measured_share"]}}),
    "pooled, mean, min, max, last, measurement summaries, + per-feature mean absolute deviation of x": merge_config(
        MEASURED, {"hyperparameters": {"input_summary": [*FOUR, "mad"]}}),
    "pooled, mean, min, max, last, measurement summaries, + per-feature first hour of x": merge_config(
        MEASURED, {"hyperparameters": {"input_summary": [*FOUR, "first"]}}),
    "pooled, + per-feature mean and last value of x": merge_config(POOLED, {"hyperparameters": {
        "input_summary": ["mean", "last"]}}),
    "pooled, lr halved after 2 epochs without gain": merge_config(POOLED, {"lr_plateau": {"factor": 0.5,
                                                                                          "patience": 2}}),
}


def score_variants(block_name: str, feature_set: str, yardstick: str, variants: dict[str, dict],
                   names: list[str], data: Path, folds: int, epochs: int, seed: int = 2012) -> pd.DataFrame:
    """Mean held-out AUROC/AUPRC over `folds` CV folds of the train split: the GBM `yardstick`, then the torch
    block `block_name` with each named variant's overrides."""
    features = data / "04_feature" / "physionet2012" / "features"
    train = TensorBundleDataset(filepath=str(newest_version(
        data / "05_model_input" / "physionet2012" / "features" / feature_set / "model_input_train.npz"))).load()
    spec = json.loads(newest_version(features / feature_set / "feature_spec.json").read_text())
    splits = pd.read_parquet(newest_version(features / "splits.parquet"))
    blocks = yaml.safe_load((ROOT / "conf" / "base" / "parameters_training.yml").read_text())["training"]["physionet2012"]

    rows = []
    gbm = copy.deepcopy(blocks[yardstick])
    gbm["cv"] = {"max_folds": folds, "grid": [{}]}
    start = time.perf_counter()
    cv, _, _ = select_estimator_config(train, splits, spec, gbm, seed)
    rows.append({"model": f"{yardstick} (yardstick)", "auroc": cv["auroc"].mean(), "auprc": cv["auprc"].mean(),
                 "seconds": time.perf_counter() - start})
    for name in names:
        block = merge_config(copy.deepcopy(blocks[block_name]), variants[name])
        block["cv"] = {"max_folds": folds, "max_epochs": epochs, "grid": [{}]}
        start = time.perf_counter()
        cv, _ = select_torch_config(train, splits, spec, block, seed, "cpu")
        rows.append({"model": f"{block_name} {name}", "auroc": cv["auroc"].mean(), "auprc": cv["auprc"].mean(),
                     "seconds": time.perf_counter() - start})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["auroc_gap_to_gbm"] = table["auroc"] - table["auroc"].iloc[0]
    return table


def run_cli(description: str, block_name: str, feature_set: str, yardstick: str, variants: dict[str, dict]) -> None:
    """Parse the command line (--data, --folds, --epochs, --variants) and print the table of `score_variants`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--folds", type=int, default=2, help="held-out folds of the train split's CV")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per CV fit (early stopping inside)")
    parser.add_argument("--variants", nargs="*", default=list(variants))
    parser.add_argument("--seed", type=int, default=2012, help="training seed of every fit (the folds stay)")
    args = parser.parse_args()
    table = score_variants(block_name, feature_set, yardstick, variants, args.variants, args.data, args.folds,
                           args.epochs, args.seed)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    run_cli(__doc__, "lstm_sun2018", "sun2018", "gbm_sun2018", VARIANTS)
