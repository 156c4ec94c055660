"""Which training settings of the DSSM close its gap to the best model, chosen by CV only.

Every variant is the project's `dssm` training block with some settings changed; each is scored by k-fold CV on the
train split (set-a without the validation records, the folds of `features.splits`), the protocol the training
stage uses for model selection, one instance per fit. The yardstick is `gbm` (gradient boosting on per-record
summaries of the same `full` tensors) on the same folds. The test split (set-b) is never read.

Usage (after `kedro run --pipelines features` wrote the full model input):

    python benchmarks/dssm_ablation.py --data data --folds 2 --epochs 15

Prints one row per variant: mean held-out AUROC/AUPRC over the folds, the gap to the GBM, seconds.
"""

from __future__ import annotations

from lstm_ablation import run_cli

from ehr_adversarial.training.selection import merge_config

# ehr_classification's shape (two LSTM layers, weight decay 1e-4); the project's block sets one layer and 1e-3.
EHR_CLASSIFICATION = {"hyperparameters": {"num_layers": 2}, "optimizer": {"weight_decay": 0.0001}}
# variant → overrides of the project's dssm block (merged key by key)
VARIANTS: dict[str, dict] = {
    "ehr_classification": EHR_CLASSIFICATION,
    "lr 3e-3": merge_config(EHR_CLASSIFICATION, {"optimizer": {"lr": 0.003}}),
    "hidden 64": merge_config(EHR_CLASSIFICATION, {"hyperparameters": {"hidden_size": 64}}),
    "dropout 0.3": merge_config(EHR_CLASSIFICATION, {"hyperparameters": {"dropout": 0.3}}),
    "weight decay 1e-3": merge_config(EHR_CLASSIFICATION, {"optimizer": {"weight_decay": 0.001}}),
    "batch 64": merge_config(EHR_CLASSIFICATION, {"batch_size": 64}),
    "one LSTM layer": merge_config(EHR_CLASSIFICATION, {"hyperparameters": {"num_layers": 1}}),
    "one LSTM layer, weight decay 1e-3 (project)": {},
    "project, hidden 64": {"hyperparameters": {"hidden_size": 64}},
    "project, dropout 0.3": {"hyperparameters": {"dropout": 0.3}},
    "project, weight decay 3e-3": {"optimizer": {"weight_decay": 0.003}},
    "project, lr 2e-3": {"optimizer": {"lr": 0.002}},
    "project, + per-feature mean, min, max, last of x": {"hyperparameters": {
        "input_summary": ["mean", "min", "max", "last"]}},
    "project, + per-feature mean and last value of x": {"hyperparameters": {"input_summary": ["mean", "last"]}},
    "project, lr halved after 2 epochs without gain": {"lr_plateau": {"factor": 0.5, "patience": 2}},
}


if __name__ == "__main__":
    run_cli(__doc__, "dssm", "full", "gbm", VARIANTS)
