"""Speed of the batched L1 attack against its physical bound and its baselines, in one run.

On the same trained model and the same correctly classified test records, prints side by side:

1. one attack iteration vs one training step on the same batch (the physical bound), goal ≤ 1.5×;
2. ours vs the batch-1 Python loop of the earlier code (one record at a time, a fixed λ, SGD on
   margin + λ‖δ‖₁ with the L1 subgradient, stop at the first flip):
   a. at the same iteration budget (every record runs all iterations on both sides), goal ≥ 3× (CPU);
   b. the whole attack (ours with its λ search, the loop with its fixed λ), goal ≥ 10× on CPU,
      ≥ 50× on a GPU, with equal or higher success and lower mean L1;
3. ours vs torchattacks EADL1 (batched, the settings of the EAD paper's L1 rule), goal ≥ 3× faster at equal or higher
   success and equal or lower mean L1. Needs the `benchmark` extra (pip install torchattacks --no-deps).

Usage (after `kedro run --pipelines features,training` wrote a model):

    python benchmarks/attack_speed.py --records 100
    python benchmarks/attack_speed.py --model data/06_models/physionet2012/training/lstm_sun2018/model.pt \
        --test data/05_model_input/physionet2012/features/sun2018/model_input_test.npz --records 200 --device cuda

A versioned path (a folder of timestamps) resolves to its latest version.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ehr_adversarial.attack import (
    AttackConfig,
    input_gradient_mode,
    l1_attack,
    logit_margin,
)
from ehr_adversarial.attack.l1_attack import _ista_run
from ehr_adversarial.datasets.torch_model import TorchModelDataset
from ehr_adversarial.torch_utils import resolve_device

ROOT = Path(__file__).resolve().parents[1]
PAPER_LAMBDA = math.sqrt(5e-4 * 1.5e-2)  # the geometric middle of the paper's λ list, for the fixed-λ loop


def latest(path: Path) -> Path:
    """A versioned dataset path (folder of timestamp folders) → the file of its latest version."""
    path = Path(path)
    if path.is_dir():
        version = sorted(p for p in path.iterdir() if p.is_dir())[-1]
        return version / path.name
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def iteration_vs_training_step(model, x, y, device, repeats: int = 5) -> tuple[float, float]:
    """Seconds of one attack iteration (all records active) and of one Adam training step, same batch."""
    config = AttackConfig(lambdas=(1e-6,), max_iterations=repeats, patience=repeats + 1, stall_tol=0.0)
    lambdas = torch.tensor([1e-6], dtype=torch.float64, device=device)
    index = torch.zeros(x.shape[0], dtype=torch.long, device=device)

    def attack():
        # No record leaves the batch: patience beyond the budget, no stall test; one more forward
        # pass than steps, so time repeats + 1 forwards and repeats backwards and divide by repeats.
        with input_gradient_mode(model):
            _ista_run(lambda xa, rows: model(xa), x, y, lambdas, index, None, config)

    attack()  # warm-up
    attack_seconds, _ = timed(attack, device)

    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def train():
        model.train()
        for _ in range(repeats):
            optimiser.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimiser.step()

    train()
    train_seconds, _ = timed(train, device)
    model.load_state_dict(state)
    model.eval()
    return attack_seconds / repeats, train_seconds / repeats


def loop_attack(model, x, y, lam: float, lr: float, iterations: int, stop_at_flip: bool, device) -> dict:
    """The earlier code: one record at a time, SGD on margin + λ‖δ‖₁ (autograd subgradient), clamp to the box."""
    success = np.zeros(len(x), dtype=bool)
    l1 = np.zeros(len(x))
    with input_gradient_mode(model):
        for i in range(len(x)):
            record, label = x[i : i + 1], y[i : i + 1]
            delta = torch.zeros_like(record, requires_grad=True)
            optimiser = torch.optim.SGD([delta], lr=lr)
            for _ in range(iterations):
                margin = logit_margin(model(record + delta), label)
                if stop_at_flip and margin.item() < 0:
                    success[i], l1[i] = True, delta.detach().abs().sum().item()
                    break
                optimiser.zero_grad()
                (margin.clamp(min=0) + lam * delta.abs().sum()).sum().backward()
                optimiser.step()
                with torch.no_grad():
                    delta.copy_(torch.maximum(torch.minimum(delta, 1 - record), -record))
            else:
                if stop_at_flip:
                    with torch.no_grad():
                        if logit_margin(model(record + delta), label).item() < 0:
                            success[i], l1[i] = True, delta.detach().abs().sum().item()
    return {"success": success, "l1": l1}


def eadl1_attack(model, x, y, device) -> dict:
    import torchattacks

    attack = torchattacks.EADL1(model, kappa=0, lr=0.01, binary_search_steps=9, max_iterations=100,
                                initial_const=1e-3, beta=1e-3)
    attack.set_model_training_mode(model_training=False)
    with input_gradient_mode(model):
        adversarial = attack(x, y)
        with torch.no_grad():
            flipped = (logit_margin(model(adversarial), y) < 0).cpu().numpy()
    l1 = (adversarial - x).abs().flatten(1).sum(1).cpu().numpy()
    return {"success": flipped, "l1": np.where(flipped, l1, 0.0)}


def describe(name: str, seconds: float, success: np.ndarray, l1: np.ndarray) -> str:
    mean_l1 = float(l1[success].mean()) if success.any() else float("nan")
    return f"{name:<38} {seconds:9.2f} s   success {100 * success.mean():5.1f} %   mean L1 {mean_l1:7.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data/06_models/physionet2012/training/lstm_sun2018/model.pt")
    parser.add_argument("--test", type=Path, default=ROOT / "data/05_model_input/physionet2012/features/sun2018/model_input_test.npz")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-eadl1", action="store_true")
    args = parser.parse_args()

    import yaml

    defaults = yaml.safe_load((ROOT / "conf/base/parameters_attack.yml").read_text())["attack"]["physionet2012"]
    config = AttackConfig.from_params(defaults)
    device = resolve_device(args.device)
    model = TorchModelDataset(filepath=str(latest(args.model))).load().to(device)
    bundle = np.load(latest(args.test))
    x_all, y_all = torch.as_tensor(bundle["X"]).to(device), torch.as_tensor(bundle["y"]).to(device)
    with torch.no_grad(), input_gradient_mode(model):
        correct = (logit_margin(model(x_all), y_all) > 0).cpu().numpy()
    rng = np.random.default_rng(args.seed)
    labels = bundle["y"]
    half = args.records // 2
    rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(correct & (labels == c)))[: n]
                                   for c, n in ((0, args.records - half), (1, half))]))
    x, y = x_all[rows], y_all[rows]
    print(f"device {device}, torch threads {torch.get_num_threads()}, model {model.config['architecture']} "
          f"{model.config.get('hyperparameters')}, {len(rows)} correctly classified test records "
          f"({int(y.sum())} of label 1), x {tuple(x.shape)}")

    attack_iteration, training_step = iteration_vs_training_step(model, x, y, device)
    print("\n1. physical bound, batch of", len(rows))
    print(f"   one attack iteration {1e3 * attack_iteration:8.1f} ms   one training step {1e3 * training_step:8.1f} ms"
          f"   ratio {attack_iteration / training_step:5.2f}× (goal ≤ 1.5×)")

    budget = 20
    config_fixed = AttackConfig(lambdas=(PAPER_LAMBDA,), lr=config.lr, max_iterations=budget, search="full",
                                patience=budget + 1, stall_tol=0.0, chunk_size=config.chunk_size)
    ours_fixed, _ = timed(lambda: l1_attack(model, x, y, config_fixed), device)
    loop_fixed, _ = timed(lambda: loop_attack(model, x, y, PAPER_LAMBDA, config.lr, budget, False, device), device)
    print(f"\n2a. same budget ({budget} iterations for every record, λ {PAPER_LAMBDA:.2g})")
    print(f"   ours {ours_fixed:8.2f} s   batch-1 loop {loop_fixed:8.2f} s   speed-up {loop_fixed / ours_fixed:6.1f}× (goal ≥ 3× on CPU)")

    ours_seconds, ours = timed(lambda: l1_attack(model, x, y, config), device)
    bisect_config = AttackConfig(**{**config.__dict__, "search": "bisect", "max_iterations": 100})
    bisect_seconds, bisect = timed(lambda: l1_attack(model, x, y, bisect_config), device)
    loop_seconds, loop = timed(lambda: loop_attack(model, x, y, PAPER_LAMBDA, 0.02, 100, True, device), device)
    goal = 50 if device.type == "cuda" else 10
    print("\n2b. whole attack")
    print("   " + describe(f"ours ({config.search}, {len(config.lambdas)} λ, lr {config.lr})", ours_seconds,
                            ours.success.numpy(), ours.norms()["l1"].numpy()))
    print("   " + describe("ours, bisect (5 runs × ≤ 100 it)", bisect_seconds, bisect.success.numpy(),
                            bisect.norms()["l1"].numpy()))
    print("   " + describe(f"batch-1 loop (λ {PAPER_LAMBDA:.2g}, lr 0.02, 100 it)", loop_seconds, loop["success"], loop["l1"]))
    print(f"   forward passes per record: ours {ours.forward_passes.double().mean():.0f}, "
          f"bisect {bisect.forward_passes.double().mean():.0f}")
    print(f"   speed-up {loop_seconds / ours_seconds:6.1f}× (goal ≥ {goal}×)")

    if not args.skip_eadl1:
        eadl1_seconds, eadl1 = timed(lambda: eadl1_attack(model, x, y, device), device)
        print("\n3. torchattacks EADL1 (batched; kappa 0, lr 0.01, 9 binary steps × 100 it, c0 1e-3, beta 1e-3)")
        print("   " + describe("ours", ours_seconds, ours.success.numpy(), ours.norms()["l1"].numpy()))
        print("   " + describe("EADL1", eadl1_seconds, eadl1["success"], eadl1["l1"]))
        print(f"   speed-up {eadl1_seconds / ours_seconds:6.1f}× (goal ≥ 3×)")


if __name__ == "__main__":
    main()
