"""Adversarial training (training.adversarial and the `adversarial` option of torch_loop.fit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from ehr_adversarial.attack import AttackConfig, l1_attack, logit_margin
from ehr_adversarial.models import build_model
from ehr_adversarial.torch_utils import seed_everything
from ehr_adversarial.training.adversarial import l1_pgd, project_l1_ball, project_l1_box
from ehr_adversarial.training.settings import LstmSun2018Training
from ehr_adversarial.training.torch_loop import fit, to_tensors

FIT = {"batch_size": 64, "max_epochs": 30, "patience": 30, "monitor": "loss", "class_weight": "balanced",
       "amp": False, "optimizer": {"lr": 0.05}, "grad_clip": None}


def test_l1_ball_projection_on_hand_made_cases():
    v = torch.tensor([[3.0, 1.0], [1.0, 1.0], [0.2, -0.3], [-4.0, 2.0]], dtype=torch.float64)
    got = project_l1_ball(v, torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    expected = torch.tensor([[2.0, 0.0], [0.5, 0.5], [0.2, -0.3], [-1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(got, expected)
    assert (project_l1_ball(v, 0.0) == 0).all()


def test_l1_box_projection_is_feasible_and_the_nearest_feasible_point():
    # box only binds: x = 0.5 gives room ±0.5, the ball (radius 2) is not reached
    v = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    half = torch.full_like(v, 0.5)
    torch.testing.assert_close(project_l1_box(v, -half, half, 2.0), torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    # without a box it is the L1-ball projection
    inf = torch.full((5, 7), float("inf"), dtype=torch.float64)
    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    torch.testing.assert_close(project_l1_box(w, -inf, inf, 1.5), project_l1_ball(w, 1.5), atol=1e-10, rtol=0)

    generator = torch.Generator().manual_seed(1)
    x = torch.rand(20, 6, generator=generator, dtype=torch.float64)
    lower, upper = -x, 1 - x
    v = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    p = project_l1_box(v, lower, upper, 0.8)
    assert (p.abs().sum(1) <= 0.8 + 1e-9).all()
    assert (p >= lower - 1e-12).all() and (p <= upper + 1e-12).all()
    # no feasible point is nearer to v: random feasible points (box-clipped, scaled into the ball) and points
    # near p (a projection is a global minimiser of a convex problem, so a local check suffices too)
    for _ in range(200):
        q = torch.minimum(torch.maximum(torch.randn(20, 6, generator=generator, dtype=torch.float64), lower), upper)
        near = torch.minimum(torch.maximum(p + 0.01 * torch.randn(20, 6, generator=generator, dtype=torch.float64),
                                           lower), upper)
        for candidate in (q, near):
            candidate = candidate * (0.8 / candidate.abs().sum(1, keepdim=True)).clamp(max=1)
            assert ((v - p).norm(dim=1) <= (v - candidate).norm(dim=1) + 1e-9).all()


def _lstm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model({"architecture": "lstm_sun2018", "n_hours": 6, "n_features": 3, "n_static": 0,
                        "hyperparameters": {"hidden_size": 8, "fc_size": 4, "dropout": 0.5}}).double()


def test_the_crafted_perturbation_lowers_the_margin_and_respects_budget_and_box():
    model = _lstm().train()
    generator = torch.Generator().manual_seed(0)
    batch = {"x": torch.rand(16, 6, 3, generator=generator, dtype=torch.float64), "y": torch.arange(16) % 2}
    delta = l1_pgd(model, batch, l1_budget=0.5, steps=5, top_k=3)
    assert model.training and all(p.requires_grad for p in model.parameters())  # mode restored
    assert (delta.flatten(1).abs().sum(1) <= 0.5 + 1e-9).all()
    assert ((batch["x"] + delta) >= -1e-12).all() and ((batch["x"] + delta) <= 1 + 1e-12).all()
    model.eval()
    with torch.no_grad():
        clean = logit_margin(model(batch["x"]), batch["y"])
        attacked = logit_margin(model(batch["x"] + delta), batch["y"])
    assert (attacked < clean).all()
    assert float((clean - attacked).mean()) > 0
    torch.testing.assert_close(l1_pgd(model, batch, 0.5, 5, 3), delta)  # deterministic


def test_settings_check_the_adversarial_block():
    block = {"architecture": "lstm_sun2018", "optimizer": {}, "batch_size": 8, "max_epochs": 1, "patience": 0,
             "monitor": "loss", "class_weight": "none"}
    assert LstmSun2018Training(**block).adversarial is None
    parsed = LstmSun2018Training(**block, adversarial={"l1_budget": 2.0})
    assert (parsed.adversarial.steps, parsed.adversarial.weight) == (5, 0.5)
    for bad in ({"l1_budget": 0}, {"l1_budget": 1.0, "weight": 1.5}, {"l1_budget": 1.0, "steps": 0},
                {"l1_budget": 1.0, "epsilon": 1}):
        with pytest.raises(ValidationError):
            LstmSun2018Training(**block, adversarial=bad)


def _bundle(n: int, seed: int) -> dict:
    """x in [0, 1], (n, 4, 6): one cell (hour 0 of feature 0) carries the label with a wide shift (±0.25), the
    20 cells of features 1–5 each with a small one (±0.06), all with noise 0.1. A plain fit leans on the one
    strong cell, which a small L1 change to that cell alone flips; an L1-robust fit spreads its weight."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    sign = 2 * y - 1
    x = 0.5 + rng.normal(0, 0.1, (n, 4, 6))
    x[:, 0, 0] += 0.25 * sign
    x[:, :, 1:] += 0.06 * sign[:, None, None]
    return {"X": np.clip(x, 0, 1), "mask": np.ones_like(x, bool), "delta": np.zeros_like(x),
            "static": np.zeros((n, 1)), "y": y}


class Linear(nn.Module):
    inputs = ("x",)

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1))


def _train(adversarial: dict | None, seed: int = 3) -> nn.Module:
    generator = seed_everything(seed)
    train, monitor = to_tensors(_bundle(256, 0), torch.device("cpu")), to_tensors(_bundle(128, 1), torch.device("cpu"))
    model, _ = fit(Linear(), train, monitor, {**FIT, "adversarial": adversarial}, generator)
    return model


def _median_l1_to_flip(model: nn.Module) -> tuple[float, float]:
    test = to_tensors(_bundle(64, 2), torch.device("cpu"))
    with torch.no_grad():
        correct = logit_margin(model(test["x"]), test["y"]) > 0
    config = AttackConfig(lambdas=(0.05, 0.02, 0.01, 0.005, 0.002), lr=0.05, max_iterations=300, refine=True)
    result = l1_attack(model, test["x"][correct], test["y"][correct], config)
    l1 = result.norms()["l1"].numpy()
    return float(np.median(np.where(result.success.numpy(), l1, np.inf))), float(correct.double().mean())


def test_adversarial_training_is_reproducible_and_raises_the_l1_needed_to_flip():
    adversarial = {"l1_budget": 0.6, "steps": 4, "weight": 0.5, "top_k": 4}
    robust = _train(adversarial)
    again = _train(adversarial)
    for a, b in zip(robust.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    plain = _train(None)
    plain_l1, plain_accuracy = _median_l1_to_flip(plain)
    robust_l1, robust_accuracy = _median_l1_to_flip(robust)
    assert robust_accuracy > 0.9 and plain_accuracy > 0.9  # measured: 1.0 and 1.0
    assert robust_l1 > 2 * plain_l1, (plain_l1, robust_l1)  # measured: 0.40 → 1.29


def test_fit_with_adversarial_training_runs_on_an_lstm():
    generator = seed_everything(0)
    data = _bundle(64, 0)
    data["X"] = data["X"][:, :, :3].repeat(2, axis=1)[:, :6]  # (n, 6, 3) for the small LSTM
    tensors = to_tensors(data, torch.device("cpu"))
    model = build_model({"architecture": "lstm_sun2018", "n_hours": 6, "n_features": 3, "n_static": 0,
                         "hyperparameters": {"hidden_size": 8, "fc_size": 4, "dropout": 0.5}})
    model, history = fit(model, tensors, tensors, {**FIT, "max_epochs": 2, "batch_size": 32,
                                                   "adversarial": {"l1_budget": 1.0, "steps": 2, "weight": 0.5}},
                         generator)
    assert len(history) == 2 and np.isfinite(history["train_loss"]).all() and not model.training
