"""Adversarial training: L1-bounded perturbations of x crafted inside the training loop (`fit`).

For each batch, a few steps of sparse L1 projected gradient descent on the logit margin Z_y − max_{c≠y} Z_c
(the quantity the project's attack drives below 0) find δ with ‖δ‖₁ ≤ l1_budget and x + δ ∈ [0, 1] per record;
the model then trains on (1 − weight)·loss(x) + weight·loss(x + δ). The steps follow the sparse L1 descent of
Tramèr & Boneh (2019, "SLIDE"): each step moves the `top_k` cells of a record with the largest |gradient| (among
those that can still move in that direction), each in proportion to its gradient, by an L1 length `step_size`
in all (`top_k` = 1 is steepest L1 descent; SLIDE moves them by sign(gradient)), then δ is projected back onto the L1 ball ∩ box (the exact Euclidean projection, `project_l1_box`).

Gradients are taken w.r.t. the input only, with the model in the attack's eval-like mode
(`torch_utils.input_gradient_mode`: dropout off, RNNs in train mode with dropout 0), so crafting draws no random
numbers and a CPU run stays reproducible with the run's seed. Only x, the model's first input, is perturbed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ehr_adversarial.models import model_inputs
from ehr_adversarial.torch_utils import input_gradient_mode

BISECTION_STEPS = 60


def project_l1_ball(v: Tensor, radius: float | Tensor) -> Tensor:
    """Euclidean projection of each row of `v` (B, D) onto {w : ‖w‖₁ ≤ radius} (Duchi et al. 2008, sort-based)."""
    radius = torch.as_tensor(radius, dtype=v.dtype, device=v.device).expand(v.shape[0])
    size = v.abs()
    ordered = size.sort(1, descending=True).values
    cumulative = ordered.cumsum(1)
    k = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    rho = (ordered - (cumulative - radius[:, None]) / k > 0).sum(1).clamp(min=1)
    theta = ((cumulative.gather(1, (rho - 1)[:, None]).squeeze(1) - radius) / rho).clamp(min=0)
    projected = v.sign() * (size - theta[:, None]).clamp(min=0)
    return torch.where((size.sum(1) <= radius)[:, None], v, projected)


def project_l1_box(v: Tensor, lower: Tensor, upper: Tensor, radius: float | Tensor) -> Tensor:
    """Euclidean projection of each row of `v` (B, D) onto {w : ‖w‖₁ ≤ radius, lower ≤ w ≤ upper}, lower ≤ 0 ≤ upper.

    The problem separates per cell once the L1 constraint has its multiplier θ ≥ 0: w_i = clip(soft(v_i, θ),
    lower_i, upper_i), and θ is the smallest value whose w has ‖w‖₁ ≤ radius (0 when the clipped v is already in
    the ball); ‖w(θ)‖₁ falls monotonically in θ, so θ is found by bisection (in float64, to ~1e-16 of max|v|).
    Without a box (±inf) this is `project_l1_ball`.
    """
    radius = torch.as_tensor(radius, dtype=torch.float64, device=v.device).expand(v.shape[0])
    v64, lower64, upper64 = v.double(), lower.double(), upper.double()
    clipped = torch.minimum(torch.maximum(v64, lower64), upper64)
    inside = clipped.abs().sum(1) <= radius
    cap = torch.where(v64 >= 0, upper64, -lower64)  # the largest |w_i| the box allows on v_i's side
    size = v64.abs()

    def shrunk(theta: Tensor) -> Tensor:
        return torch.minimum((size - theta[:, None]).clamp(min=0), cap)

    low = torch.zeros_like(radius)
    high = size.amax(1)
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        over = shrunk(middle).sum(1) > radius
        low = torch.where(over, middle, low)
        high = torch.where(over, high, middle)
    projected = v64.sign() * shrunk(high)  # high: the feasible side of the bisection
    return torch.where(inside[:, None], clipped, projected).to(v.dtype)


def sparse_descent_direction(descent: Tensor, point: Tensor, top_k: int, allowed: Tensor | None = None) -> Tensor:
    """The step of unit L1 length per row of (B, D) `descent` (the direction that lowers the margin) at `point`
    (x + δ, in [0, 1]): the `top_k` cells with the largest |descent| that can still move that way inside the box
    (and are `allowed`, when given), each in proportion to its descent (`top_k` = 1: steepest L1 descent); a row
    where no cell can move gets zeros."""
    movable = ((descent > 0) & (point < 1)) | ((descent < 0) & (point > 0))
    if allowed is not None:
        movable &= allowed
    top = torch.where(movable, descent.abs(), torch.zeros_like(descent)).topk(top_k, dim=1)
    step = torch.zeros_like(descent).scatter_(1, top.indices, descent.gather(1, top.indices) * (top.values > 0))
    return step / step.abs().sum(1, keepdim=True).clamp(min=torch.finfo(step.dtype).tiny)


def _margin(logits: Tensor, label: Tensor) -> Tensor:
    """Z_y − max_{c≠y} Z_c per record (as attack.l1_attack.logit_margin; training sits below attack)."""
    true = logits.gather(1, label[:, None]).squeeze(1)
    return true - logits.scatter(1, label[:, None], float("-inf")).amax(1)


def l1_pgd(model: nn.Module, batch: Mapping[str, Tensor], l1_budget: float, steps: int, top_k: int = 10,
           step_size: float | None = None) -> Tensor:
    """δ (like batch["x"]) with ‖δ_r‖₁ ≤ l1_budget and x + δ ∈ [0, 1] per record r that lowers the margin of y.

    `steps` sparse steps of L1 length `step_size` (default 2·l1_budget/steps) on the `top_k` cells per record with
    the largest |∂margin/∂x| that can still move, each followed by `project_l1_box`. The model's mode and
    parameters' requires_grad are restored afterwards; no gradient reaches the parameters.
    """
    if tuple(model.inputs[:1]) != ("x",):
        raise ValueError(f"{type(model).__name__} takes {model.inputs}; adversarial training perturbs x, "
                         "which must be its first input.")
    step_size = 2.0 * l1_budget / steps if step_size is None else float(step_size)
    x = batch["x"].detach()
    others = model_inputs(model, batch)[1:]
    label = batch["y"]
    n = x.shape[0]
    flat_x = x.reshape(n, -1)
    lower, upper = -flat_x, 1.0 - flat_x
    k = min(int(top_k), flat_x.shape[1])
    delta = torch.zeros_like(flat_x)
    with input_gradient_mode(model), torch.enable_grad():
        for _ in range(int(steps)):
            moving = delta.clone().requires_grad_(True)
            margin = _margin(model((x + moving.view_as(x)), *others).float(), label)
            (gradient,) = torch.autograd.grad(margin.sum(), moving)
            step = sparse_descent_direction(-gradient, flat_x + delta, k)
            delta = project_l1_box(delta + step_size * step, lower, upper, l1_budget)
    return delta.view_as(x).detach()


def adversarial_loss_weight(config: Mapping[str, Any]) -> float:
    """The weight of the adversarial loss of a training config; 0 when adversarial training is off."""
    adversarial = config.get("adversarial")
    return float(adversarial["weight"]) if adversarial else 0.0


def adversarial_batch(model: nn.Module, batch: Mapping[str, Tensor], adversarial: Mapping[str, Any]) -> dict[str, Tensor]:
    """`batch` with x replaced by x + δ from `l1_pgd` with the block's `adversarial` settings."""
    delta = l1_pgd(model, batch, float(adversarial["l1_budget"]), int(adversarial.get("steps", 5)),
                   int(adversarial.get("top_k", 10)), adversarial.get("step_size"))
    return {**batch, "x": batch["x"] + delta}
