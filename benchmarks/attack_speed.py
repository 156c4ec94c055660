"""Speed of the batched L1 attack against its physical bound and against fairly tuned baselines, in one run.

Ours is the project's attack (`ehr_adversarial.attack.l1_attack`) with the settings of
conf/base/parameters_attack.yml (`attack.physionet2012`), not tuned here. The records are correctly classified
test records, class-balanced, drawn with `--seed`: `--records` timed records and, disjoint from them,
`--tune-records` tuning records (`--tune-records 0`: the grid search runs on the timed records themselves).
The run prints:

1. physical bound: one attack iteration (all records active) vs one Adam training step on the same batch,
   ratio ours/training step, goal ≤ 1.5×;
2. same budget: ours vs the batch-1 Python loop of the earlier code (one record at a time, a fixed λ, SGD on
   margin + λ‖δ‖₁ with the L1 subgradient), both 20 iterations for every record (no stop at the flip), at ours'
   lr and λ = 2.7e-3; speed-up = loop time / ours time, goal ≥ 3× (CPU);
3. grid search, on the tuning records, of each baseline's step size and budget:
   - batch-1 loop (stop at the first flip): lr × fixed λ × max iterations;
   - torchattacks EADL1 (batched, κ 0): lr × binary-search steps × iterations × initial c × β;
   - ART ElasticNet (`art.attacks.evasion.ElasticNet`, batched over all records, decision_rule "L1", κ 0):
     lr × max_iter × binary_search_steps × initial c × β;
   `--grid quick|full` picks the grid (GRIDS below). A baseline's best setting is the one that reaches
   success ≥ ours (on the same tuning records) at the lowest mean L1 of its successful records; if none
   does, the one with the highest success, then the lowest mean L1 (ties: fewer passes). Smaller budgets
   are read off one run at the largest, exactly: the loop stops at the first flip, so a record that flips
   at iteration k ≤ B gives the same δ with budget B; EADL1 and ART run their binary-search steps one after
   the other (steps < 10 in torchattacks, which repeats the last step from 10 on), so the result after s
   steps is the result of a run with s steps. The grid table also names the cheapest setting (fewest
   passes) that reaches equal quality on the tuning records;
4. time to equal quality: ours vs each baseline at its best setting on the timed records, timed `--repeats`
   times, interleaved (ours, loop, ours, EADL1, ours, ART, then again), with wall time, success, mean and
   median L1 of the successful records, forward and backward passes per record (records through the model,
   counted by a wrapper: a backward pass is a gradient that reaches the model's input), speed-up =
   baseline time / ours time of the same repeat (median [min–max]), and whether the baseline reached equal
   quality (success ≥ ours and mean L1 ≤ 1.05 × ours). Goals: ≥ 5× faster than the best-tuned loop;
   ≥ 3× faster than the best-tuned EADL1 with lower mean L1 (and success ≥ EADL1's); ART: reported only;
5. a markdown table of all comparisons for docs/benchmarks.md.

Success and L1 of every method are measured the same way after the attack (untimed): the label flips when
the logit margin of x + δ is < 0, L1 = Σ|δ| of the returned δ.

EADL1 runs through a subclass that measures its L1/L2 terms and its shrinkage from the original records:
torchattacks 3.5.1 wraps its copy of the records in an nn.Parameter that shares their storage, so its first
gradient step also moves the reference by −lr·∇ (harmless at lr·c ≈ 1e-5, not at tuned settings). Every
model call of the baselines goes through a wrapper that counts records and ignores train()/eval(), so the
model stays as `input_gradient_mode` sets it (recurrent layers in train mode for the cuDNN backward, no
dropout); torchattacks and ART would otherwise switch it.

Needs the `benchmark` extra: `pip install adversarial-robustness-toolbox` and
`pip install --no-deps torchattacks==3.5.1`. A baseline whose package is missing (or fails) is reported as
unavailable, with the reason.

Usage (after `kedro run --pipelines features,training` wrote a model):

    python benchmarks/attack_speed.py --records 200
    python benchmarks/attack_speed.py --model data/06_models/physionet2012/training/lstm_sun2018/model.pt \
        --test data/05_model_input/physionet2012/features/sun2018/model_input_test.npz --records 200 \
        --tune-records 100 --repeats 3 --grid full --device cuda

A versioned path (a folder of timestamps) resolves to its latest version.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# One parser of "key=value,…" overrides for both scripts (a script's folder, benchmarks/, is on sys.path).
from attack_optimality import overrides
from torch import nn

from ehr_adversarial.attack import (
    AttackConfig,
    input_gradient_mode,
    l1_attack,
    logit_margin,
)
from ehr_adversarial.attack.l1_attack import _ista_run
from ehr_adversarial.datasets.torch_model import TorchModelDataset
from ehr_adversarial.reporting.latest import newest_version
from ehr_adversarial.torch_utils import resolve_device

ROOT = Path(__file__).resolve().parents[1]
PAPER_LAMBDA = math.sqrt(5e-4 * 1.5e-2)  # the geometric middle of the paper's λ list, for the fixed-λ loop
SAME_BUDGET = 20  # iterations of the same-budget comparison
EQUAL_L1 = 1.05  # equal quality: success ≥ ours and mean L1 ≤ EQUAL_L1 × ours
GOALS = {"loop": 5.0, "eadl1": 3.0}  # speed-up goals at the best settings (ART: reported only)

# Per baseline, the values of each setting; the budget axis (loop: max_iterations, EADL1/ART:
# binary_search_steps) comes from one run at its largest value.
GRIDS: dict[str, dict[str, dict[str, tuple]]] = {
    "quick": {
        "loop": {"lr": (0.02, 1.0), "lam": (PAPER_LAMBDA, 5e-2), "max_iterations": (50, 100)},
        "eadl1": {"lr": (0.01, 0.1), "max_iterations": (30, 100), "initial_const": (1e-3, 1e-1),
                  "beta": (1e-3,), "binary_search_steps": (1, 5, 9)},
        "art": {"lr": (0.01, 0.1), "max_iterations": (30,), "initial_const": (1e-3,),
                "beta": (1e-3, 1e-2), "binary_search_steps": (1, 5, 9)},
    },
    "full": {
        "loop": {"lr": (0.02, 0.1, 0.3, 1.0, 3.0), "lam": (5e-4, PAPER_LAMBDA, 1.5e-2, 5e-2, 1.5e-1),
                 "max_iterations": (25, 50, 100, 200)},
        "eadl1": {"lr": (0.01, 0.1, 1.0), "max_iterations": (10, 30, 100), "initial_const": (1e-3, 1e-1, 10.0),
                  "beta": (1e-3, 1e-2), "binary_search_steps": (1, 3, 5, 9)},
        "art": {"lr": (0.01, 0.1, 1.0), "max_iterations": (10, 30, 100), "initial_const": (1e-3,),
                "beta": (1e-3, 1e-2, 1e-1), "binary_search_steps": (1, 3, 5, 9)},
    },
}
BUDGET_AXIS = {"loop": "max_iterations", "eadl1": "binary_search_steps", "art": "binary_search_steps"}
NAMES = {"loop": "batch-1 loop", "eadl1": "torchattacks EADL1", "art": "ART ElasticNet"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


class CountingModel(nn.Module):
    """The model every attack calls: counts the records through forward passes and the records whose
    gradient reaches the input (backward passes); train()/eval() do nothing, so the wrapped model stays in
    the mode `input_gradient_mode` set (attack libraries switch modes on their own)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.training = False
        self.forward_rows = 0
        self.backward_rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_rows += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            x = x.view_as(x)  # a fresh node per call: a hook on a reused leaf would pile up
            x.register_hook(self._count_backward)
        return self.model(x)

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backward_rows += grad.shape[0]

    def train(self, mode: bool = True) -> CountingModel:
        return self

    def reset(self) -> None:
        self.forward_rows = self.backward_rows = 0

    def passes(self, n: int) -> tuple[float, float]:
        return self.forward_rows / n, self.backward_rows / n


@dataclass
class Outcome:
    """One attack of a set of records: time, per-record success and L1 (0 where it failed), passes per record."""

    seconds: float
    success: np.ndarray
    l1: np.ndarray
    forward: float
    backward: float
    estimated_time: bool = False  # seconds scaled from a longer run (a smaller budget read off it)

    @property
    def rate(self) -> float:
        return float(self.success.mean())

    @property
    def mean_l1(self) -> float:
        return float(self.l1[self.success].mean()) if self.success.any() else math.nan

    @property
    def median_l1(self) -> float:
        return float(np.median(self.l1[self.success])) if self.success.any() else math.nan

    def quality(self) -> str:
        return f"{100 * self.rate:.1f} %, mean L1 {self.mean_l1:.2f}"


@torch.no_grad()
def judge(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adversarial: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Success (the margin of the returned record is < 0) and L1 of δ (0 where it failed), the same for all."""
    adversarial = adversarial.to(device=x.device, dtype=x.dtype)
    with input_gradient_mode(model):
        success = (logit_margin(model(adversarial), y) < 0).cpu().numpy()
    l1 = (adversarial - x).abs().flatten(1).sum(1, dtype=torch.float64).cpu().numpy()
    return success, np.where(success, l1, 0.0)


def run_counted(probe: CountingModel, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                attack: Callable[[], torch.Tensor]) -> Outcome:
    """Time `attack()` (→ adversarial records) on the counting model, then judge it (untimed)."""
    probe.reset()
    with input_gradient_mode(probe.model):
        seconds, adversarial = timed(attack, device)
    forward, backward = probe.passes(len(x))
    success, l1 = judge(probe.model, x, y, adversarial)
    return Outcome(seconds, success, l1, forward, backward)


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


# --- ours ---------------------------------------------------------------------------------------------------


def ours_attack(probe: CountingModel, x, y, config: AttackConfig, device) -> Outcome:
    def attack():
        result = l1_attack(probe, x, y, config)
        return x + result.delta_best.to(x.device)

    return run_counted(probe, x, y, device, attack)


# --- the batch-1 loop of the earlier code -------------------------------------------------------------------


def loop_attack(model, x, y, lam: float, lr: float, iterations: int, stop_at_flip: bool) -> dict:
    """The earlier code: one record at a time, SGD on margin + λ‖δ‖₁ (autograd subgradient), clamp to the box.

    With `stop_at_flip`, δ_0 … δ_iterations are checked in turn and the first that flips is kept (`flip`:
    its index, -1 if none); without, every record runs all iterations (no check)."""
    n = len(x)
    flip = np.full(n, -1)
    l1 = np.zeros(n)
    adversarial = x.clone()
    for i in range(n):
        record, label = x[i : i + 1], y[i : i + 1]
        delta = torch.zeros_like(record, requires_grad=True)
        optimiser = torch.optim.SGD([delta], lr=lr)
        for k in range(iterations + 1):
            last = k == iterations
            if last and not stop_at_flip:
                break
            with torch.set_grad_enabled(not last):
                margin = logit_margin(model(record + delta), label)
            if stop_at_flip and margin.item() < 0:
                flip[i], l1[i] = k, delta.detach().abs().sum().item()
                adversarial[i] = (record + delta).detach()[0]
                break
            if last:
                break
            optimiser.zero_grad()
            (margin.clamp(min=0) + lam * delta.abs().sum()).sum().backward()
            optimiser.step()
            with torch.no_grad():
                delta.copy_(torch.maximum(torch.minimum(delta, 1 - record), -record))
        if not stop_at_flip:
            adversarial[i] = (record + delta).detach()[0]
    return {"flip": flip, "l1": l1, "adversarial": adversarial}


def loop_run(probe, x, y, setting: dict, device) -> Outcome:
    return run_counted(probe, x, y, device, lambda: loop_attack(
        probe, x, y, setting["lam"], setting["lr"], setting["max_iterations"], True)["adversarial"])


def loop_tune(probe, x, y, grid: dict, device, report: Callable[[str], None]) -> list[tuple[dict, Outcome]]:
    """Every (lr, λ) once at the largest budget; each smaller budget B keeps the records that flipped by δ_B."""
    budgets = sorted(grid["max_iterations"])
    rows = []
    for lr, lam in itertools.product(grid["lr"], grid["lam"]):
        probe.reset()
        with input_gradient_mode(probe.model):
            seconds, out = timed(lambda lr=lr, lam=lam: loop_attack(probe, x, y, lam, lr, budgets[-1], True), device)
        full_passes = probe.forward_rows + probe.backward_rows
        success_all, l1_all = judge(probe.model, x, y, out["adversarial"])
        for budget in budgets:
            flipped = (out["flip"] >= 0) & (out["flip"] <= budget)
            # δ_k is checked after k steps: k + 1 forwards and k backwards, budget B at most B + 1 and B.
            steps = np.where(flipped, out["flip"], budget)
            forward, backward = float((steps + 1).mean()), float(steps.mean())
            share = (forward + backward) * len(x) / full_passes
            rows.append(({"lr": lr, "lam": lam, "max_iterations": budget},
                         Outcome(seconds * share, success_all & flipped, np.where(flipped, l1_all, 0.0), forward,
                                 backward, estimated_time=budget != budgets[-1])))
        report(f"lr {lr:g}, λ {lam:.2g}: {seconds:.1f} s at {budgets[-1]} iterations, {rows[-1][1].quality()}")
    return rows


# --- torchattacks EADL1 -------------------------------------------------------------------------------------


def eadl1_class():
    import torchattacks

    class EADL1(torchattacks.EADL1):
        """torchattacks' EADL1, measured from the original records, with a snapshot after each binary-search step.

        torchattacks 3.5.1 makes y_k = nn.Parameter(images), which shares the storage of `images`, and its
        first step `y_k -= lr·grad` then moves `images` (the reference of the L1/L2 terms and of the
        shrinkage) by −lr·grad; here those use a copy of the records taken before the attack."""

        def forward(self, images, labels):
            self._reference = images.clone().detach()
            self._final = None
            self.snapshots = []
            return super().forward(images, labels)

        def L1_loss(self, x1, x2):  # noqa: N802 (torchattacks' name)
            return super().L1_loss(x1, self._reference)

        def L2_loss(self, x1, x2):  # noqa: N802
            return super().L2_loss(x1, self._reference)

        def FISTA(self, images, x_k, y_k):  # noqa: N802
            return super().FISTA(self._reference, x_k, y_k)

        def adjust_best_result(self, adv_img, labels, output, cost, bestl1, bestscore, o_bestl1, o_bestscore,
                               final_adv_images):
            self._final = final_adv_images
            return super().adjust_best_result(adv_img, labels, output, cost, bestl1, bestscore, o_bestl1,
                                              o_bestscore, final_adv_images)

        def adjust_constant(self, labels, bestscore, const, upper_bound, lower_bound):
            super().adjust_constant(labels, bestscore, const, upper_bound, lower_bound)
            if self.snapshot is not None:
                final = self._reference if self._final is None else self._final
                self.snapshots.append(self.snapshot(final))

    return EADL1


def eadl1_attack(probe, setting: dict, snapshot=None):
    attack = eadl1_class()(probe, kappa=0, lr=setting["lr"], binary_search_steps=setting["binary_search_steps"],
                           max_iterations=setting["max_iterations"], initial_const=setting["initial_const"],
                           beta=setting["beta"])
    attack.snapshot = snapshot
    return attack


def eadl1_run(probe, x, y, setting: dict, device) -> Outcome:
    attack = eadl1_attack(probe, setting)
    return run_counted(probe, x, y, device, lambda: attack(x, y))


# --- ART ElasticNet -----------------------------------------------------------------------------------------


def art_attack(probe, x: torch.Tensor, setting: dict, device, snapshot=None):
    from art.attacks.evasion import ElasticNet
    from art.estimators.classification import PyTorchClassifier

    class SnapshotElasticNet(ElasticNet):
        """ART's ElasticNet with a snapshot of its best records after each binary-search step."""

        def _generate_batch(self, x_batch, y_batch):
            self._best_dist = np.full(x_batch.shape[0], np.inf)
            self._best_attack = x_batch.copy()
            return super()._generate_batch(x_batch, y_batch)

        def _generate_bss(self, x_batch, y_batch, c_batch):
            best_dist, best_label, best_attack = super()._generate_bss(x_batch, y_batch, c_batch)
            if snapshot is not None:  # the running best, as _generate_batch keeps it
                better = best_dist < self._best_dist
                self._best_attack[better] = best_attack[better]
                self._best_dist[better] = best_dist[better]
                snapshots.append(snapshot(torch.from_numpy(self._best_attack)))
            return best_dist, best_label, best_attack

    with torch.no_grad():
        classes = probe.model(x[:1]).shape[1]
    classifier = PyTorchClassifier(model=probe, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=classes, clip_values=(0.0, 1.0),
                                   device_type="gpu" if device.type == "cuda" else "cpu")
    snapshots: list = []
    attack = SnapshotElasticNet(classifier, confidence=0.0, targeted=False, learning_rate=setting["lr"],
                                binary_search_steps=setting["binary_search_steps"], max_iter=setting["max_iterations"],
                                beta=setting["beta"], initial_const=setting["initial_const"], batch_size=len(x),
                                decision_rule="L1", verbose=False)
    return attack, snapshots


def art_run(probe, x, y, setting: dict, device) -> Outcome:
    attack, _ = art_attack(probe, x, setting, device)
    labels = y.cpu().numpy()
    return run_counted(probe, x, y, device, lambda: torch.from_numpy(
        attack.generate(x.detach().cpu().numpy().astype(np.float32), labels)))


# --- grid search of EADL1 and ART (binary-search steps read off one run) ------------------------------------


def search_steps_tune(kind: str, probe, x, y, grid: dict, device,
                      report: Callable[[str], None]) -> list[tuple[dict, Outcome]]:
    steps = sorted(grid["binary_search_steps"])
    if kind == "eadl1" and steps[-1] >= 10:
        raise ValueError("torchattacks repeats its last binary-search step from 10 steps on; keep them < 10.")
    rows = []
    axes = ("lr", "max_iterations", "initial_const", "beta")
    for values in itertools.product(*(grid[a] for a in axes)):
        setting = {**dict(zip(axes, values, strict=True)), "binary_search_steps": steps[-1]}
        snaps: list[tuple[float, torch.Tensor, int, int]] = []
        start: list[float] = []

        def snapshot(best, _snaps=snaps, _start=start):
            sync(device)
            _snaps.append((time.perf_counter() - _start[0], best.detach().clone(), probe.forward_rows,
                           probe.backward_rows))

        probe.reset()
        with input_gradient_mode(probe.model):
            if kind == "eadl1":
                attack = eadl1_attack(probe, setting, snapshot)
                sync(device)
                start.append(time.perf_counter())
                attack(x, y)
            else:
                attack, _ = art_attack(probe, x, setting, device, snapshot)
                sync(device)
                start.append(time.perf_counter())
                attack.generate(x.detach().cpu().numpy().astype(np.float32), y.cpu().numpy())
        for s in steps:
            seconds, best, forward, backward = snaps[s - 1]
            success, l1 = judge(probe.model, x, y, best)
            rows.append(({**setting, "binary_search_steps": s},
                         Outcome(seconds, success, l1, forward / len(x), backward / len(x))))
        report(", ".join(f"{a} {v:g}" for a, v in setting.items()) + f": {snaps[-1][0]:.1f} s, "
               + rows[-1][1].quality())
    return rows


# --- selection and reporting --------------------------------------------------------------------------------


def order_key(outcome: Outcome, reference: Outcome) -> tuple:
    """Sort key of the selection rule: reaching ours' success first, then lowest mean L1 (then fewest passes);
    without any reaching it, the highest success first."""
    reaches = outcome.rate >= reference.rate - 1e-12
    l1 = outcome.mean_l1 if outcome.success.any() else math.inf
    passes = outcome.forward + outcome.backward
    return (0, l1, passes) if reaches else (1, -outcome.rate, l1, passes)


def equal_quality(outcome: Outcome, reference: Outcome) -> bool:
    return outcome.rate >= reference.rate - 1e-12 and outcome.mean_l1 <= EQUAL_L1 * reference.mean_l1


def describe_setting(kind: str, setting: dict) -> str:
    if kind == "loop":
        return f"lr {setting['lr']:g}, λ {setting['lam']:.2g}, ≤ {setting['max_iterations']} it, stop at flip"
    return (f"lr {setting['lr']:g}, {setting['binary_search_steps']} binary-search steps × "
            f"{setting['max_iterations']} it, c₀ {setting['initial_const']:g}, β {setting['beta']:g}")


def grid_text(grid: dict) -> str:
    return "; ".join(f"{a} {', '.join(f'{v:.2g}' for v in values)}" for a, values in grid.items())


def print_grid(kind: str, rows: list[tuple[dict, Outcome]], reference: Outcome, show: int = 10) -> None:
    ranked = sorted(rows, key=lambda row: order_key(row[1], reference))
    print(f"   {len(rows)} settings, the first {min(show, len(rows))} by the selection rule "
          "(~ s: scaled from the run at the largest budget):")
    for setting, outcome in ranked[:show]:
        seconds = f"{'~' if outcome.estimated_time else ' '}{outcome.seconds:7.2f} s"
        print(f"   {describe_setting(kind, setting):<62} {seconds}  success {100 * outcome.rate:5.1f} %  "
              f"mean L1 {outcome.mean_l1:7.3f}  median {outcome.median_l1:7.3f}  "
              f"passes fwd {outcome.forward:6.1f} bwd {outcome.backward:6.1f}")
    equal = [row for row in rows if equal_quality(row[1], reference)]
    if equal:
        setting, outcome = min(equal, key=lambda row: (row[1].forward + row[1].backward, row[1].seconds))
        print(f"   cheapest setting at equal quality: {describe_setting(kind, setting)} "
              f"({outcome.forward:.0f} + {outcome.backward:.0f} passes per record, {outcome.seconds:.2f} s, "
              f"{outcome.quality()})")
    else:
        print(f"   no setting reaches equal quality (success ≥ {100 * reference.rate:.1f} % and mean L1 ≤ "
              f"{EQUAL_L1 * reference.mean_l1:.2f}) on the tuning records")


def spread(values: list[float], fmt: str = "{:.2f}", unit: str = "") -> str:
    return (f"{fmt.format(statistics.median(values))}{unit} "
            f"[{fmt.format(min(values))}–{fmt.format(max(values))}]")


def describe(name: str, outcome: Outcome) -> str:
    return (f"{name:<22} {outcome.seconds:9.2f} s  success {100 * outcome.rate:5.1f} %  mean L1 {outcome.mean_l1:7.3f}"
            f"  median L1 {outcome.median_l1:7.3f}  passes per record fwd {outcome.forward:6.1f} "
            f"bwd {outcome.backward:6.1f}")


def select_rows(correct: np.ndarray, labels: np.ndarray, counts: list[int], seed: int) -> list[np.ndarray]:
    """Disjoint class-balanced sets of correctly classified records, `counts` records each (half of label 1)."""
    rng = np.random.default_rng(seed)
    pools = {c: rng.permutation(np.flatnonzero(correct & (labels == c))) for c in (0, 1)}
    need = {0: sum(n - n // 2 for n in counts), 1: sum(n // 2 for n in counts)}
    for c in (0, 1):
        if need[c] > len(pools[c]):
            raise SystemExit(f"only {len(pools[c])} correctly classified test records of label {c}; "
                             f"{need[c]} needed (lower --records or --tune-records).")
    sets, used = [], {0: 0, 1: 0}
    for n in counts:
        take = {0: n - n // 2, 1: n // 2}
        sets.append(np.sort(np.concatenate([pools[c][used[c] : used[c] + take[c]] for c in (0, 1)])))
        for c in (0, 1):
            used[c] += take[c]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data/06_models/physionet2012/training/lstm_sun2018/model.pt")
    parser.add_argument("--test", type=Path, default=ROOT / "data/05_model_input/physionet2012/features/sun2018/model_input_test.npz")
    parser.add_argument("--records", type=int, default=200, help="timed records (class-balanced, correct)")
    parser.add_argument("--tune-records", type=int, default=100,
                        help="grid-search records, disjoint from the timed ones; 0: search on the timed records")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method, interleaved")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-eadl1", action="store_true")
    parser.add_argument("--skip-art", action="store_true")
    parser.add_argument("--setting", type=overrides, default={},
                        help='overrides of ours\' settings, e.g. "polish_steps=0" (default: the configured ones)')
    args = parser.parse_args()
    if args.repeats < 1 or args.records < 2 or args.tune_records < 0:
        parser.error("--repeats ≥ 1, --records ≥ 2 and --tune-records ≥ 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    run_start = time.perf_counter()

    import yaml

    defaults = yaml.safe_load((ROOT / "conf/base/parameters_attack.yml").read_text())["attack"]["physionet2012"]
    config = AttackConfig.from_params({**defaults, **args.setting})
    device = resolve_device(args.device)
    model = TorchModelDataset(filepath=str(newest_version(args.model))).load().to(device)
    model.eval()
    probe = CountingModel(model)
    bundle = np.load(newest_version(args.test))
    x_all, y_all = torch.as_tensor(bundle["X"]).to(device), torch.as_tensor(bundle["y"]).to(device)
    with torch.no_grad(), input_gradient_mode(model):
        correct = (logit_margin(model(x_all), y_all) > 0).cpu().numpy()
    if args.tune_records:
        rows, tune_rows = select_rows(correct, bundle["y"], [args.records, args.tune_records], args.seed)
        tuning = f"a tuning subset of {len(tune_rows)} other records (disjoint, class-balanced, correct)"
    else:
        (rows,) = select_rows(correct, bundle["y"], [args.records], args.seed)
        tune_rows = rows
        tuning = "the timed records themselves"
    x, y = x_all[rows], y_all[rows]
    x_tune, y_tune = x_all[tune_rows], y_all[tune_rows]
    model_config = getattr(model, "config", {})
    print(f"device {device}, torch threads {torch.get_num_threads()}, model {model_config.get('architecture')} "
          f"{model_config.get('hyperparameters')}, {len(rows)} correctly classified test records "
          f"({int(y.sum())} of label 1), x {tuple(x.shape)}; grid search on {tuning}; {args.repeats} repeats; "
          f"grid {args.grid}")
    print(f"ours: {config.search}, {len(config.lambdas)} λ {min(config.lambdas):.2g}–{max(config.lambdas):.2g}, "
          f"lr {config.lr}, ≤ {config.max_iterations} it, patience {config.patience}, refine {config.refine}, "
          f"polish {config.polish_steps} steps (conf/base/parameters_attack.yml"
          f"{f', overridden by {args.setting}' if args.setting else ''}; not tuned here)", flush=True)

    runners = {"loop": loop_run, "eadl1": eadl1_run, "art": art_run}
    unavailable: dict[str, str] = {}
    if args.skip_eadl1:
        unavailable["eadl1"] = "skipped (--skip-eadl1)"
    if args.skip_art:
        unavailable["art"] = "skipped (--skip-art)"
    for kind, module in (("eadl1", "torchattacks"), ("art", "art")):
        if kind not in unavailable:
            try:
                __import__(module)
            except Exception as exc:  # noqa: BLE001 (any import failure makes the baseline unavailable)
                unavailable[kind] = f"cannot import {module}: {type(exc).__name__}: {exc}"
    baselines = [kind for kind in ("loop", "eadl1", "art") if kind not in unavailable]

    # 1 and 2a: physical bound and same budget, interleaved repeats.
    bound, same = [], []
    config_fixed = AttackConfig(lambdas=(PAPER_LAMBDA,), lr=config.lr, max_iterations=SAME_BUDGET, search="full",
                                patience=SAME_BUDGET + 1, stall_tol=0.0, chunk_size=config.chunk_size)
    for _ in range(args.repeats):
        bound.append(iteration_vs_training_step(model, x, y, device))
        ours_fixed, _ = timed(lambda: l1_attack(model, x, y, config_fixed), device)
        with input_gradient_mode(model):
            loop_fixed, _ = timed(lambda: loop_attack(model, x, y, PAPER_LAMBDA, config.lr, SAME_BUDGET, False),
                                  device)
        same.append((ours_fixed, loop_fixed))
    print(f"\n1. physical bound, batch of {len(rows)}")
    print(f"   one attack iteration {spread([1e3 * a for a, _ in bound], '{:.1f}', ' ms')}   one training step "
          f"{spread([1e3 * t for _, t in bound], '{:.1f}', ' ms')}   ratio "
          f"{spread([a / t for a, t in bound], unit='×')} (goal ≤ 1.5×)")
    print(f"\n2a. same budget ({SAME_BUDGET} iterations for every record, λ {PAPER_LAMBDA:.2g}, lr {config.lr})")
    print(f"   ours {spread([o for o, _ in same], unit=' s')}   batch-1 loop {spread([b for _, b in same], unit=' s')}"
          f"   speed-up {spread([b / o for o, b in same], '{:.1f}', '×')} (goal ≥ 3× on CPU)", flush=True)

    # 3: grid search on the tuning records.
    reference = ours_attack(probe, x_tune, y_tune, config, device)
    print(f"\n3. grid search on {tuning} ({args.grid} grid); ours there: {reference.quality()}, "
          f"{reference.seconds:.2f} s")
    best: dict[str, dict] = {}
    for kind in list(baselines):
        grid = GRIDS[args.grid][kind]
        print(f"\n   {NAMES[kind]}: {grid_text(grid)} (budget axis {BUDGET_AXIS[kind]} read off the largest)",
              flush=True)

        def report(line: str) -> None:
            print(f"     {line}", flush=True)

        try:
            if kind == "loop":
                tuned = loop_tune(probe, x_tune, y_tune, grid, device, report)
            else:
                tuned = search_steps_tune(kind, probe, x_tune, y_tune, grid, device, report)
        except Exception as exc:  # noqa: BLE001 (a failing library is reported, the others go on)
            if kind == "loop":
                raise
            unavailable[kind] = f"failed in the grid search: {type(exc).__name__}: {exc}"
            baselines.remove(kind)
            print(f"   {NAMES[kind]} unavailable: {unavailable[kind]}")
            continue
        print_grid(kind, tuned, reference)
        best[kind] = min(tuned, key=lambda row: order_key(row[1], reference))[0]
        print(f"   best: {describe_setting(kind, best[kind])}")

    # 4: time to equal quality, interleaved repeats (ours before each baseline).
    times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in baselines}
    outcomes: dict[str, tuple[Outcome, Outcome]] = {}
    drift: list[str] = []
    for _ in range(args.repeats):
        for kind in list(baselines):
            ours = ours_attack(probe, x, y, config, device)
            try:
                theirs = runners[kind](probe, x, y, best[kind], device)
            except Exception as exc:  # noqa: BLE001
                if kind == "loop":
                    raise
                unavailable[kind] = f"failed in the timed run: {type(exc).__name__}: {exc}"
                baselines.remove(kind)
                continue
            times[kind].append((ours.seconds, theirs.seconds))
            if kind in outcomes:
                first_ours, first_theirs = outcomes[kind]
                for name, a, b in (("ours", first_ours, ours), (NAMES[kind], first_theirs, theirs)):
                    if not (np.array_equal(a.success, b.success) and np.allclose(a.l1, b.l1)):
                        drift.append(name)
            else:
                outcomes[kind] = (ours, theirs)
    print(f"\n4. time to equal quality on the {len(rows)} timed records, {args.repeats} interleaved repeats "
          "(quality of the first repeat)")
    for kind in baselines:
        ours, theirs = outcomes[kind]
        pairs = times[kind]
        print(f"   {NAMES[kind]} at its best setting: {describe_setting(kind, best[kind])}")
        print("   " + describe("ours", ours))
        print("   " + describe(NAMES[kind], theirs))
        print(f"   time ours {spread([o for o, _ in pairs], unit=' s')}, {NAMES[kind]} "
              f"{spread([b for _, b in pairs], unit=' s')}, speed-up (baseline / ours) "
              f"{spread([b / o for o, b in pairs], '{:.1f}', '×')}; equal quality "
              f"(success ≥ ours, mean L1 ≤ {EQUAL_L1} × ours): {'yes' if equal_quality(theirs, ours) else 'no'}")
    for kind, reason in unavailable.items():
        print(f"   {NAMES[kind]}: unavailable ({reason})")
    if drift:
        print(f"   note: success or L1 differed between repeats for {sorted(set(drift))}")

    # 5: the table for docs/benchmarks.md.
    print("\n5. markdown table (docs/benchmarks.md)\n")
    print("| comparison | ours (median [min–max]) | baseline | ratio (median [min–max]) | quality (success, mean L1) "
          "| goal |")
    print("|---|---|---|---|---|---|")
    ratios = [a / t for a, t in bound]
    print(f"| one attack iteration vs one training step (batch {len(rows)}) "
          f"| {spread([1e3 * a for a, _ in bound], '{:.1f}', ' ms')} | {spread([1e3 * t for _, t in bound], '{:.1f}', ' ms')} "
          f"| {spread(ratios, unit='×')} | – | ≤ 1.5× {'✓' if statistics.median(ratios) <= 1.5 else '✗'} |")
    speedups = [b / o for o, b in same]
    print(f"| same budget, {SAME_BUDGET} iterations × {len(rows)} records, vs the batch-1 loop (λ {PAPER_LAMBDA:.2g}, "
          f"lr {config.lr:g}) | {spread([o for o, _ in same], unit=' s')} | {spread([b for _, b in same], unit=' s')} "
          f"| {spread(speedups, '{:.1f}', '× faster')} | – | ≥ 3× {'✓' if statistics.median(speedups) >= 3 else '✗'} |")
    for kind in baselines:
        ours, theirs = outcomes[kind]
        pairs = times[kind]
        speedups = [b / o for o, b in pairs]
        median = statistics.median(speedups)
        quality = (f"ours {100 * ours.rate:.1f} %, {ours.mean_l1:.2f}; baseline {100 * theirs.rate:.1f} %, "
                   f"{theirs.mean_l1:.2f}; equal quality: {'yes' if equal_quality(theirs, ours) else 'no'}")
        if kind == "loop":
            goal = f"≥ {GOALS['loop']:g}× {'✓' if median >= GOALS['loop'] else '✗'}"
        elif kind == "eadl1":
            met = median >= GOALS["eadl1"] and ours.mean_l1 < theirs.mean_l1 and ours.rate >= theirs.rate
            goal = f"≥ {GOALS['eadl1']:g}× at lower L1 {'✓' if met else '✗'}"
        else:
            goal = "report only"
        print(f"| whole attack vs best-tuned {NAMES[kind]} ({describe_setting(kind, best[kind])}) "
              f"| {spread([o for o, _ in pairs], unit=' s')} | {spread([b for _, b in pairs], unit=' s')} "
              f"| {spread(speedups, '{:.1f}', '× faster')} | {quality} | {goal} |")
    for kind, reason in unavailable.items():
        print(f"| whole attack vs {NAMES[kind]} | – | unavailable | – | {reason} | – |")
    print(f"\ngrid search on {tuning}; passes are records through the model per record; whole run "
          f"{time.perf_counter() - run_start:.0f} s")


if __name__ == "__main__":
    main()
