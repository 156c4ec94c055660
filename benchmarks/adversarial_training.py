"""Adversarial training of `lstm_pooled`: clean accuracy, robust margin and susceptibility map, with and without.

Both models are the project's `lstm_pooled` block (conf/base/parameters_training.yml, one instance, no CV: the
block's own settings) trained on the train split with early stopping on the validation split; the second adds
`adversarial: {l1_budget, steps, weight, top_k}` (training.adversarial: sparse L1 PGD inside the training loop).
Each is scored on the test split (AUROC/AUPRC with bootstrap CIs, training.metrics.bootstrap_metrics) and attacked
with the project's attack (attack.run.select_records / run_attack, the `attack.physionet2012` block) on the same
number of class-balanced, correctly classified test records. Adversarial training is not part of the default run.

Usage (after `kedro run --pipelines ingestion,features` wrote the sun2018 model input):

    python benchmarks/adversarial_training.py --records 200 --l1-budget 2 --steps 5 --weight 0.5

Prints per model: clean AUROC/AUPRC with CIs, attack success rate, median L1 and L0 of the best δ over the
successful records (records the attack could not flip count as +inf in the medians), the share of attacked
records flipped within fixed L1 budgets (a robust-accuracy curve: 1 − that share), and the Spearman ρ and top-5
overlap of the two models' cumulative S_j per direction.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ehr_adversarial.attack.run import run_attack, select_records
from ehr_adversarial.attack.susceptibility import (
    cumulative_ranking,
    ranking_agreement,
    susceptibility_table,
)
from ehr_adversarial.datasets.tensors import TensorBundleDataset
from ehr_adversarial.reporting.latest import newest_version
from ehr_adversarial.training.metrics import bootstrap_metrics, choose_threshold
from ehr_adversarial.training.settings import LstmSun2018Training
from ehr_adversarial.training.torch_loop import limited_threads
from ehr_adversarial.training.torch_models import predict_torch_model, train_torch_model

ROOT = Path(__file__).resolve().parents[1]
SEED = 2012


def subsample(bundle: dict, fraction: float, seed: int) -> dict:
    """A stratified `fraction` of a bundle's records (all of them at 1)."""
    if fraction >= 1:
        return bundle
    rng = np.random.default_rng(seed)
    y = np.asarray(bundle["y"])
    rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[: max(1, int(fraction * (y == c).sum()))]
                                   for c in (0, 1)]))
    return {name: np.asarray(value)[rows] for name, value in bundle.items()}


def evaluate(name: str, block: dict, data: dict, spec: dict, attack: dict, budgets: list[float],
             n_bootstrap: int) -> tuple[dict, pd.DataFrame]:
    """Train, score and attack one model; the summary row and its cumulative S_j per direction and feature."""
    start = time.perf_counter()
    model, history = train_torch_model(data["train"], data["validation"], spec, block, SEED, "cpu")
    train_seconds = time.perf_counter() - start
    validation = predict_torch_model(model, data["validation"], spec, "cpu", "validation")
    test = predict_torch_model(model, data["test"], spec, "cpu", "test")
    threshold = choose_threshold(validation["y_true"].to_numpy(), validation["y_prob"].to_numpy())
    scores = bootstrap_metrics(test["y_true"].to_numpy(), test["y_prob"].to_numpy(), threshold, n_bootstrap, SEED)
    selection = select_records(model, data["test"], spec, attack, SEED, "cpu")
    start = time.perf_counter()
    records, deltas, _ = run_attack(model, data["test"], selection, spec, attack, SEED, "cpu")
    attack_seconds = time.perf_counter() - start
    won = records["success"].to_numpy()
    l1 = np.where(won, records["l1_best"], np.inf)
    l0 = np.where(won, records["l0_best"], np.inf)
    row = {"model": name, "epochs": len(history), "train_s": round(train_seconds),
           **{f"{m}": f"{scores[m]['value']:.3f} [{scores[m]['ci_low']:.3f}, {scores[m]['ci_high']:.3f}]"
              for m in ("auroc", "auprc")},
           "auroc_value": scores["auroc"]["value"], "records": len(records), "success": float(won.mean()),
           "median_l1": float(np.median(l1)), "median_l0": float(np.median(l0)),
           **{f"flipped_l1<={b:g}": float((l1 <= b).mean()) for b in budgets}, "attack_s": round(attack_seconds)}
    table = susceptibility_table(deltas["delta_best"], deltas["label"], won, spec["feature_names"])
    ranking = cumulative_ranking(table, float(attack.get("susceptible_tolerance", 1e-3)))
    print(json.dumps({k: v for k, v in row.items()}, default=str), flush=True)
    return row, ranking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--records", type=int, default=200, help="class-balanced correct test records to attack")
    parser.add_argument("--l1-budget", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--max-epochs", type=int, default=None, help="cap on the block's max_epochs")
    parser.add_argument("--train-fraction", type=float, default=1.0, help="stratified share of the train split")
    parser.add_argument("--budgets", type=float, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    inputs = args.data / "05_model_input" / "physionet2012" / "features" / "sun2018"
    data = {split: TensorBundleDataset(filepath=str(newest_version(inputs / f"model_input_{split}.npz"))).load()
            for split in ("train", "validation", "test")}
    data["train"] = subsample(data["train"], args.train_fraction, SEED)
    spec = json.loads(newest_version(args.data / "04_feature" / "physionet2012" / "features" / "sun2018"
                             / "feature_spec.json").read_text())
    training = yaml.safe_load((ROOT / "conf" / "base" / "parameters_training.yml").read_text())["training"]
    block = copy.deepcopy(training["physionet2012"]["lstm_pooled"])
    block.pop("cv", None)
    block["n_instances"] = 1
    if args.max_epochs:
        block["max_epochs"] = min(int(block["max_epochs"]), args.max_epochs)
    robust = {**block, "adversarial": {"l1_budget": args.l1_budget, "steps": args.steps, "weight": args.weight,
                                        "top_k": args.top_k}}
    LstmSun2018Training(**robust)  # the settings check of a run
    attack = yaml.safe_load((ROOT / "conf" / "base" / "parameters_attack.yml").read_text())["attack"]["physionet2012"]
    attack = {**attack, "n_records": args.records}
    print(f"train records {len(data['train']['y'])}, test records {len(data['test']['y'])}, "
          f"adversarial {robust['adversarial']}, max_epochs {block['max_epochs']}", flush=True)

    rows, rankings = [], []
    for name, config in (("lstm_pooled", block), ("lstm_pooled + adversarial", robust)):
        with limited_threads(1):  # one thread stays predictable on a shared CPU (training.torch_loop)
            row, ranking = evaluate(name, config, data, spec, attack, args.budgets, args.n_bootstrap)
        rows.append(row)
        rankings.append(ranking)
    table = pd.DataFrame(rows).drop(columns="auroc_value")
    print(table.T.to_string(header=False, float_format=lambda v: f"{v:.3f}"))
    print(f"clean AUROC change {rows[1]['auroc_value'] - rows[0]['auroc_value']:+.4f}, "
          f"median L1 ratio {rows[1]['median_l1'] / rows[0]['median_l1']:.2f}")
    for direction in sorted(set(rankings[0]["direction"]) & set(rankings[1]["direction"])):
        a, b = (r[r["direction"] == direction].set_index("feature")["cumulative_s"] for r in rankings)
        agreement = ranking_agreement(a, b.reindex(a.index, fill_value=0.0), top_k=5)
        print(f"{direction}: Spearman ρ of cumulative S_j {agreement['spearman']:.2f}, top-5 overlap "
              f"{agreement['top_k_overlap']}/5 (plain {agreement['top_a']}, adversarial {agreement['top_b']})")


if __name__ == "__main__":
    main()
