"""How close the default attack's L1 comes to an exhaustive reference, on a fixed sample of records.

The reference spends far more effort than the default to find a smaller flipping δ: every λ of a long list
(`search: full`, a fresh proximal-gradient run per λ), many iterations per run, patience after the first flip, the
same refinement and a long polish (`--reference-polish-steps`). Per attack direction the script prints the median
over the records both flip of L1(default) / L1(reference) (goal ≤ 1.02) and its 90th percentile, the success
rates, and the forward passes per record of each.

The model is one trained instance (`instances(model)[k]`, `--instance`), so the reference stays affordable on a
CPU; the records are the first `--records` correctly classified test records, half of each label (seeded).

`--setting` (repeatable) adds rows for other settings of the default attack, given as overrides
(`"patience=10"`, `"lr=0.1,refine=false"`): each is scored against the same reference, with its median L0, its
forward passes per record (a gradient step counts as one) and its time (one torch thread).

Usage (after `kedro run` wrote a model):

    python benchmarks/attack_optimality.py --model-name lstm_pooled --records 60
    python benchmarks/attack_optimality.py --model-name dssm --setting "patience=10" --setting "refine=false"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from ehr_adversarial.attack import AttackConfig, l1_attack, log_spaced_lambdas, logit_margin
from ehr_adversarial.datasets.tensors import TensorBundleDataset
from ehr_adversarial.datasets.torch_model import TorchModelDataset
from ehr_adversarial.models import instances
from ehr_adversarial.reporting.latest import newest_version
from ehr_adversarial.training.torch_loop import predict_logits, to_tensors

ROOT = Path(__file__).resolve().parents[1]
FEATURE_SET = {"lstm_sun2018": "sun2018", "lstm_pooled": "sun2018", "dssm": "full"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--model-name", default="lstm_pooled", choices=sorted(FEATURE_SET))
    parser.add_argument("--instance", type=int, default=0)
    parser.add_argument("--records", type=int, default=60)
    parser.add_argument("--reference-lambdas", type=int, default=40, help="log-spaced λ of the reference sweep")
    parser.add_argument("--reference-iterations", type=int, default=400)
    parser.add_argument("--reference-patience", type=int, default=50)
    parser.add_argument("--reference-polish-steps", type=int, default=50,
                        help="polish steps after the reference's refinement (the default's polish, run longer)")
    parser.add_argument("--seed", type=int, default=2012)
    parser.add_argument("--setting", action="append", default=[], type=overrides,
                        help='overrides of the default attack, e.g. "patience=10,lr=0.1" (repeatable)')
    args = parser.parse_args()
    torch.set_num_threads(1)

    model_path = args.data / "06_models" / "physionet2012" / "training" / args.model_name / "model.pt"
    model = instances(TorchModelDataset(filepath=str(newest_version(model_path))).load())[args.instance]
    test = TensorBundleDataset(filepath=str(newest_version(args.data / "05_model_input" / "physionet2012" / "features"
                                                 / FEATURE_SET[args.model_name] / "model_input_test.npz"))).load()
    tensors = to_tensors(test, torch.device("cpu"))
    correct = (logit_margin(predict_logits(model, tensors, 512), tensors["y"]) > 0).numpy()
    rng = np.random.default_rng(args.seed)
    rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(correct & (test["y"] == label)))[: args.records // 2]
                                   for label in (0, 1)]))
    x, y = tensors["x"][rows], tensors["y"][rows]
    inputs = {name: tensors[name][rows] for name in model.inputs[1:]}

    params = yaml.safe_load((ROOT / "conf" / "base" / "parameters_attack.yml").read_text())["attack"]["physionet2012"]
    default = AttackConfig.from_params(params)
    low, high = min(default.lambdas), max(default.lambdas)
    reference = AttackConfig(lambdas=log_spaced_lambdas(low / 5, high, args.reference_lambdas), lr=default.lr,
                             max_iterations=args.reference_iterations, patience=args.reference_patience,
                             search="full", refine=True, refine_steps=default.refine_steps,
                             polish_steps=args.reference_polish_steps, polish_shrink=default.polish_shrink,
                             polish_top_k=default.polish_top_k, polish_step_size=default.polish_step_size,
                             chunk_size=default.chunk_size)
    configs = {"default": default, "reference": reference}
    configs |= {",".join(f"{k}={v}" for k, v in setting.items()): AttackConfig(**{**default.as_params(), **setting})
                for setting in args.setting}
    results, seconds = {}, {}
    for name, config in configs.items():
        start = time.perf_counter()
        results[name] = l1_attack(model, x, y, config, inputs=inputs)
        seconds[name] = time.perf_counter() - start
        print(f"{name}: {seconds[name]:.1f} s", flush=True)

    label = y.numpy()
    reference_row = setting_row("reference", results["reference"], results["reference"], label, seconds["reference"])
    print(f"{args.model_name} instance {args.instance}, {len(rows)} records ({int((label == 0).sum())} 0→1, "
          f"{int((label == 1).sum())} 1→0); the reference: median L1 {reference_row['0→1 median L1']:.3f} (0→1), "
          f"{reference_row['1→0 median L1']:.3f} (1→0), success {reference_row['0→1 success']:.3f} / "
          f"{reference_row['1→0 success']:.3f}, {reference_row['passes']:.1f} forward passes per record")
    print("The default and every --setting against the reference (over the records both flip; ratio = median of "
          "L1 / the reference's L1, p90 its 90th percentile; goal ≤ 1.02):")
    print(pd.DataFrame([setting_row(name, result, results["reference"], label, seconds[name])
                        for name, result in results.items() if name != "reference"])
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def overrides(text: str) -> dict[str, object]:
    """`"a=1,b=true"` → {"a": 1, "b": True}: values read as YAML scalars."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"--setting {text!r}: give key=value pairs separated by commas.")
    known = set(AttackConfig.__dataclass_fields__)
    unknown = [key for key, _ in pairs if key.strip() not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"--setting {text!r}: {unknown} are not attack settings ({sorted(known)}).")
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def setting_row(name: str, result, reference, label: np.ndarray, seconds: float) -> dict[str, object]:
    """One setting's L1 against the reference per direction, its cells changed, passes and time."""
    row: dict[str, object] = {"setting": name}
    norms, reference_l1 = result.norms(), reference.norms()["l1"].double().numpy()
    for direction, value in (("0→1", 0), ("1→0", 1)):
        both = (label == value) & result.success.numpy() & reference.success.numpy()
        l1 = norms["l1"].double().numpy()[both]
        row[f"{direction} success"] = float(result.success.numpy()[label == value].mean())
        row[f"{direction} median L1"] = float(np.median(l1))
        row[f"{direction} ratio"] = float(np.median(l1 / reference_l1[both]))
        row[f"{direction} ratio p90"] = float(np.percentile(l1 / reference_l1[both], 90))
        row[f"{direction} median L0"] = float(np.median(norms["l0"].numpy()[both]))
    row["passes"] = float(result.forward_passes.double().mean())
    row["seconds"] = seconds
    return row


if __name__ == "__main__":
    main()
