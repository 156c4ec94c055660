"""Which stack of models, chosen on the validation split only.

Reads every model's held-out validation predictions from the latest training run (`kedro run --pipelines
ingestion,features,training`) and scores candidate stacks by repeated stratified k-fold CV inside the
validation split: the two combiners of the project's `stack`, the plain mean of the members' logits (scored as
it is: it has nothing to fit but the Platt scaling, which leaves AUROC and AUPRC as they are) and a logistic
regression on the members' logits at several C (scored out of fold), for several member sets. The test split
is never read.

    python benchmarks/stack_selection.py [--source physionet2012] [--repeats 20]

Prints one row per candidate: mean out-of-fold AUROC and AUPRC over the repeats, with their spread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ehr_adversarial.pipeline_registry import STUDIES
from ehr_adversarial.reporting.latest import newest_version
from ehr_adversarial.training.stacking import member_logits

ROOT = Path(__file__).resolve().parents[1]


def candidate_sets(members: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    torch_and_trees = tuple(m for m in members if m in ("dssm", "gbm", "logreg"))
    return {"all": members,
            "all but lstm_sun2018": tuple(m for m in members if m != "lstm_sun2018"),
            "dssm + gbm + logreg": torch_and_trees,
            "dssm + gbm": tuple(m for m in torch_and_trees if m != "logreg"),
            "gbm + logreg": tuple(m for m in torch_and_trees if m != "dssm")}


def scores(y: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    return roc_auc_score(y, prob), average_precision_score(y, prob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="physionet2012")
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the stratified k-fold split")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    study = STUDIES[args.source]
    folder = ROOT / "data/07_model_output" / args.source / "training"
    predictions = {m: pd.read_parquet(newest_version(folder / m / "validation_predictions.parquet"))
                   for m in study.models}
    logits, y = member_logits(predictions, "validation")
    print(f"validation split: {y.size} records, {int(y.sum())} deaths; {args.repeats} x {args.folds}-fold CV\n")

    rows = []
    for member in logits.columns:
        rows.append({"candidate": member, "combiner": "single model",
                     **dict(zip(("auroc", "auprc"), scores(y, logits[member].to_numpy()), strict=True)),
                     "auroc_sd": 0.0, "auprc_sd": 0.0})
    for name, members in candidate_sets(tuple(study.models)).items():
        if len(members) < 2:
            continue
        x = logits[list(members)]
        rows.append({"candidate": name, "combiner": "mean logit",
                     **dict(zip(("auroc", "auprc"), scores(y, x.mean(axis=1).to_numpy()), strict=True)),
                     "auroc_sd": 0.0, "auprc_sd": 0.0})
        for c in (0.1, 1.0, 10.0):
            repeat_scores = []
            for repeat in range(args.repeats):
                folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=repeat)
                prob = cross_val_predict(LogisticRegression(C=c, max_iter=1000), x, y, cv=folds,
                                         method="predict_proba")[:, 1]
                repeat_scores.append(scores(y, prob))
            repeat_scores = np.array(repeat_scores)
            rows.append({"candidate": name, "combiner": f"logistic stack, C={c:g}",
                         "auroc": repeat_scores[:, 0].mean(), "auprc": repeat_scores[:, 1].mean(),
                         "auroc_sd": repeat_scores[:, 0].std(), "auprc_sd": repeat_scores[:, 1].std()})
    table = pd.DataFrame(rows)
    print("| members | combiner | AUROC (sd over repeats) | AUPRC (sd) |\n|---|---|---|---|")
    for row in table.itertuples():
        print(f"| {row.candidate} | {row.combiner} | {row.auroc:.4f} ({row.auroc_sd:.4f}) | "
              f"{row.auprc:.4f} ({row.auprc_sd:.4f}) |")


if __name__ == "__main__":
    main()
