"""Known-answer tests of the batched L1 attack: linear models whose minimal flip is analytic, a tiny LSTM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ehr_adversarial.attack import (
    AttackConfig,
    input_gradient_mode,
    l1_attack,
    log_spaced_lambdas,
    logit_margin,
    perturbation_norms,
    polish_perturbation,
    refine_perturbation,
)


class LinearLogits(nn.Module):
    """Z_0 = 0, Z_1 = w·x + b, so the margin of label 1 is w·x + b and of label 0 is −(w·x + b)."""

    def __init__(self, weight: torch.Tensor, bias: float):
        super().__init__()
        self.weight = nn.Parameter(weight.double().flatten())
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.weight + self.bias
        return torch.stack([torch.zeros_like(z), z], 1)


def minimal_flip(weight: np.ndarray, bias: float, x: np.ndarray, label: int) -> np.ndarray:
    """The minimal-L1 δ that brings the margin to 0 inside the box, computed greedily by hand.

    Each coordinate buys |w_j| of margin per unit of L1, up to its room before the [0, 1] bound,
    so the cheapest δ spends on the largest |w_j| first.
    """
    sign = 1.0 if label == 1 else -1.0  # the margin is sign·(w·x + b)
    need = sign * (weight @ x + bias)
    delta = np.zeros_like(x)
    for j in np.argsort(-np.abs(weight), kind="stable"):
        if need <= 0:
            break
        push = -sign * np.sign(weight[j])  # the direction in which x_j lowers the margin
        room = 1.0 - x[j] if push > 0 else x[j]
        step = min(room, need / abs(weight[j]))
        delta[j] = push * step
        need -= abs(weight[j]) * step
    assert need <= 1e-12, "the test record cannot be flipped inside the box"
    return delta


WEIGHT = torch.tensor([[4.0, -2.0, 1.0], [0.5, -0.25, 0.1]])  # (T=2, F=3)
BIAS = 1.0
# λ = 0.9·|w_k| moves exactly the k steepest coordinates, the k-th slowly, so some λ on the list
# moves the coordinates the optimum needs and no other.
LAMBDAS = (4.5, 3.6, 1.8, 0.9, 0.45)
RECORDS = torch.tensor([
    [[0.9, 0.9, 0.5], [0.5, 0.5, 0.5]],  # label 1, margin 3.475: the first coordinate alone, interior
    [[0.3, 0.6, 0.5], [0.5, 0.5, 0.5]],  # label 1, margin 1.675: the first hits 0, the second (w < 0) goes up
    [[0.2, 0.5, 0.9], [0.5, 0.5, 0.5]],  # label 1, margin 1.875: the first two hit their bounds, the third ends
    [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]],  # label 0, margin 1.25: the attack raises the first coordinate
    [[0.05, 0.9, 0.1], [0.2, 0.8, 0.1]],  # label 0, margin 0.59: likewise, from near 0
], dtype=torch.float64)
LABELS = torch.tensor([1, 1, 1, 0, 0])


@pytest.fixture
def linear() -> LinearLogits:
    model = LinearLogits(WEIGHT, BIAS)
    assert (logit_margin(model(RECORDS), LABELS) > 0).all()  # every record starts correctly classified
    return model


@pytest.mark.parametrize("search", ["full", "bisect", "descending", "continuation"])
def test_attack_finds_the_analytic_minimal_l1_flip_and_stays_in_the_box(linear, search):
    lr = 0.005
    # A continuation run spends its whole budget walking the list, long enough at each λ here.
    budget = {"max_iterations": 3000, "steps_per_lambda": 600} if search == "continuation" else {"max_iterations": 1500}
    config = AttackConfig(lambdas=LAMBDAS, lr=lr, patience=50, search=search, **budget)
    result = l1_attack(linear, RECORDS, LABELS, config)
    assert result.success.all()
    for i, (x, label) in enumerate(zip(RECORDS, LABELS, strict=True)):
        expected = minimal_flip(WEIGHT.flatten().numpy(), BIAS, x.flatten().numpy(), int(label))
        found = result.delta_best[i].flatten().numpy()
        # The iterates move ≤ lr·max|w| per step, so the best flip overshoots the boundary by about that.
        assert np.abs(found - expected).sum() < 4 * lr * 4.0, (i, found, expected)
        assert found.__abs__().sum() >= np.abs(expected).sum() - 1e-12  # nothing beats the optimum
    for delta in (result.delta_first, result.delta_best):
        adversarial = RECORDS + delta
        assert adversarial.min() >= -1e-12 and adversarial.max() <= 1 + 1e-12
        assert (logit_margin(linear(adversarial), LABELS) < 0).all()  # both δ really flip the label


def test_bisect_tries_log2_of_the_list_and_matches_the_full_sweep(linear):
    config = AttackConfig(lambdas=LAMBDAS, lr=0.005, max_iterations=1500, patience=50, search="full")
    full = l1_attack(linear, RECORDS, LABELS, config)
    bisect = l1_attack(linear, RECORDS, LABELS, AttackConfig(**{**config.__dict__, "search": "bisect"}))
    assert (full.runs == len(LAMBDAS)).all()
    assert (bisect.runs <= math.ceil(math.log2(len(LAMBDAS) + 1))).all()
    assert bisect.forward_passes.sum() < full.forward_passes.sum()
    torch.testing.assert_close(bisect.norms()["l1"], full.norms()["l1"], atol=0.03, rtol=0)


def test_first_success_iteration_is_the_analytic_step_count():
    # One coordinate with w = 2, λ = 0.5: δ grows by lr·(|w| − λ) per step from 0 and the margin
    # 2·x + b falls by |w| times that, so the first flip is at k = ⌊m / (lr·(|w| − λ)·|w|)⌋ + 1.
    model = LinearLogits(torch.tensor([[2.0]]), -0.5)
    x = torch.tensor([[[0.8]]], dtype=torch.float64)  # margin m = 1.1 for label 1
    lr, lam = 0.01, 0.5
    expected = math.floor(1.1 / (lr * 1.5 * 2.0)) + 1
    result = l1_attack(model, x, torch.tensor([1]), AttackConfig(lambdas=(lam,), lr=lr, patience=0, max_iterations=100))
    assert int(result.first_iteration[0]) == expected == int(result.best_iteration[0])
    assert int(result.forward_passes[0]) == expected + 1  # δ_0 … δ_k evaluated, then the record left the batch
    torch.testing.assert_close(result.delta_first[0, 0, 0], torch.tensor(-expected * lr * 1.5, dtype=torch.float64))
    torch.testing.assert_close(result.delta_first, result.delta_best)


def test_budget_too_short_is_a_failure_with_no_delta():
    model = LinearLogits(torch.tensor([[2.0]]), -0.5)
    x = torch.tensor([[[0.8]]], dtype=torch.float64)
    result = l1_attack(model, x, torch.tensor([1]), AttackConfig(lambdas=(0.5,), lr=0.01, max_iterations=10))
    assert not result.success[0] and result.first_iteration[0] == -1 and math.isnan(result.lambda_best[0])
    assert int(result.forward_passes[0]) == 11 and (result.delta_best == 0).all()


def test_best_is_never_larger_than_first_and_patience_zero_keeps_the_first(linear):
    common = dict(lambdas=(1.8,), lr=0.02, max_iterations=500)
    stop_at_flip = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common, patience=0))
    keep_going = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common, patience=100))
    torch.testing.assert_close(stop_at_flip.delta_first, stop_at_flip.delta_best)
    assert (stop_at_flip.first_iteration == stop_at_flip.best_iteration).all()
    # The first flip does not depend on what happens after it.
    torch.testing.assert_close(keep_going.delta_first, stop_at_flip.delta_first)
    assert (keep_going.first_iteration == stop_at_flip.first_iteration).all()
    first, best = keep_going.norms("first")["l1"], keep_going.norms("best")["l1"]
    assert (best <= first).all() and (best < first).any()
    assert (keep_going.best_iteration >= keep_going.first_iteration).all()


def test_refinement_prunes_to_the_needed_cell_and_stops_at_the_boundary(linear):
    # Record 0 (label 1, margin 3.475) flips by lowering its first coordinate (w = 4) alone by
    # 3.475 / 4; the given δ overshoots that and also moves three cells it does not need.
    x, label = RECORDS[:1], LABELS[:1]
    delta = torch.tensor([[[-0.9, 0.05, -0.1], [-0.02, 0.0, -0.3]]], dtype=torch.float64)
    assert logit_margin(linear(x + delta), label) < 0
    steps = 30
    refined, passes = refine_perturbation(lambda xa, rows: linear(xa), x, label, delta, torch.tensor([0]), steps)
    expected = torch.zeros_like(delta)
    expected[0, 0, 0] = -3.475 / 4
    torch.testing.assert_close(refined, expected, atol=1e-6, rtol=0)
    assert logit_margin(linear(x + refined), label) < 0  # still flips: only verified candidates are kept
    assert int(passes[0]) <= 2 * steps


def test_scaling_reaches_a_linear_boundary_in_one_aimed_pass_where_bisection_needs_every_step(linear):
    # One needed cell, three times past the boundary: no pruning step can help, and the margin along α·δ is
    # linear, so the regula falsi's first aim lands just past the boundary. Bisection would spend all steps.
    x, label = RECORDS[:1], LABELS[:1]
    delta = torch.zeros(1, 2, 3, dtype=torch.float64)
    delta[0, 0, 0] = -3 * 3.475 / 4
    steps = 20
    refined, passes = refine_perturbation(lambda xa, rows: linear(xa), x, label, delta, torch.tensor([0]), steps)
    expected = torch.zeros_like(delta)
    expected[0, 0, 0] = -3.475 / 4
    torch.testing.assert_close(refined, expected, atol=1e-5, rtol=0)
    margin = logit_margin(linear(x + refined), label)
    assert -3.475 * 2.0 ** -steps <= margin < 0  # past the boundary by no more than the precision asked
    assert int(passes[0]) <= 3  # the margin at δ, the clean margin, one aimed candidate


def test_margins_the_caller_measured_save_the_refinements_passes_and_change_nothing(linear):
    x, label = RECORDS[:1], LABELS[:1]
    delta = torch.zeros(1, 2, 3, dtype=torch.float64)
    delta[0, 0, 0] = -3 * 3.475 / 4
    forward = lambda xa, rows: linear(xa)  # noqa: E731
    alone, passes_alone = refine_perturbation(forward, x, label, delta, torch.tensor([0]), 20)
    given, passes_given = refine_perturbation(forward, x, label, delta, torch.tensor([0]), 20,
                                              logit_margin(linear(x), label).double(),
                                              logit_margin(linear(x + delta), label).double())
    torch.testing.assert_close(given, alone)
    assert int(passes_given[0]) == int(passes_alone[0]) - 2
    # NaN means "not measured": that margin costs its pass again
    _, passes_nan = refine_perturbation(forward, x, label, delta, torch.tensor([0]), 20,
                                        torch.tensor([math.nan], dtype=torch.float64), None)
    assert int(passes_nan[0]) == int(passes_alone[0])


def test_the_attack_refines_without_passing_the_clean_record_again(linear):
    common = dict(lambdas=LAMBDAS, lr=0.05, max_iterations=300, patience=0)
    searched = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common))
    refined = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common, refine=True))
    flipped = searched.success & (searched.norms()["l1"] > 0)
    rows = torch.nonzero(flipped).squeeze(1)
    x, label, delta = RECORDS[rows], LABELS[rows], searched.delta_best[rows]
    forward = lambda xa, which: linear(xa)  # noqa: E731
    alone, passes_alone = refine_perturbation(forward, x, label, delta, torch.arange(len(rows)), 10)
    _, passes_given = refine_perturbation(forward, x, label, delta, torch.arange(len(rows)), 10,
                                          logit_margin(linear(x), label).double(),
                                          logit_margin(linear(x + delta), label).double())
    # the search measured the clean margin (its first iterate) and the margin of its best δ, and hands them on
    assert (passes_given < passes_alone).all()
    assert (refined.forward_passes[rows] == searched.forward_passes[rows] + passes_given).all()
    torch.testing.assert_close(refined.delta_best[rows], alone)


def test_refinement_never_grows_l1_keeps_the_flip_and_the_box(linear):
    common = dict(lambdas=LAMBDAS, lr=0.05, max_iterations=300, patience=0)
    plain = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common))
    refined = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common, refine=True))
    assert plain.success.all() and refined.success.all()
    torch.testing.assert_close(refined.delta_first, plain.delta_first)  # the search itself is unchanged
    plain_l1, refined_l1 = plain.norms()["l1"], refined.norms()["l1"]
    assert (refined_l1 <= plain_l1 + 1e-12).all() and (refined_l1 < plain_l1).any()
    assert (refined.norms()["l0"] <= plain.norms()["l0"]).all()
    adversarial = RECORDS + refined.delta_best
    assert adversarial.min() >= -1e-12 and adversarial.max() <= 1 + 1e-12
    assert (logit_margin(linear(adversarial), LABELS) < 0).all()
    assert (refined.forward_passes > plain.forward_passes).all()  # the refinement's passes are counted
    for i, (x, label) in enumerate(zip(RECORDS, LABELS, strict=True)):  # and nothing beats the optimum
        optimum = np.abs(minimal_flip(WEIGHT.flatten().numpy(), BIAS, x.flatten().numpy(), int(label))).sum()
        assert float(refined_l1[i]) >= optimum - 1e-9


def spread_flip() -> torch.Tensor:
    """A flipping δ for every record that moves every cell to its bound on the margin-lowering side."""
    sign = torch.where(LABELS == 1, 1.0, -1.0).double().view(-1, 1, 1)
    push = -sign * WEIGHT.double().sign()
    return push * torch.where(push > 0, 1 - RECORDS, RECORDS)


def test_polishing_moves_the_mass_onto_the_steep_cells_where_pruning_and_scaling_keep_the_direction(linear):
    delta, rows = spread_flip(), torch.arange(len(RECORDS))
    assert (logit_margin(linear(RECORDS + delta), LABELS) < 0).all()
    forward = lambda xa, which: linear(xa)  # noqa: E731
    optimum = np.array([np.abs(minimal_flip(WEIGHT.flatten().numpy(), BIAS, x.flatten().numpy(), int(y))).sum()
                        for x, y in zip(RECORDS, LABELS, strict=True)])
    refined, _ = refine_perturbation(forward, RECORDS, LABELS, delta, rows, 30)
    refined_ratio = perturbation_norms(refined)["l1"].numpy() / optimum
    assert (refined_ratio[1:4] > 3.0).all()  # records 1–3: the optimum moves cells the scaled δ keeps small
    with input_gradient_mode(linear):
        polished, passes, improved, margins = polish_perturbation(forward, RECORDS, LABELS, refined, rows,
                                                                  AttackConfig(lambdas=(1.0,), polish_steps=40))
    assert (passes == 40).all()  # one gradient pass per step
    assert improved.tolist() == [False, True, True, True, False]  # records 0 and 4 were already optimal
    # the margin it reports for an improved δ is that δ's; NaN where it kept the δ it was given
    torch.testing.assert_close(margins[improved], logit_margin(linear(RECORDS + polished), LABELS)[improved])
    assert margins[~improved].isnan().all()
    polished_l1 = perturbation_norms(polished)["l1"].numpy()
    assert (polished_l1 <= perturbation_norms(refined)["l1"].numpy() + 1e-12).all()
    assert (polished_l1 / optimum < 1.2).all()  # from 3–4.3× after pruning and scaling
    assert (logit_margin(linear(RECORDS + polished), LABELS) < 0).all()
    assert (RECORDS + polished).min() >= -1e-12 and (RECORDS + polished).max() <= 1 + 1e-12


def test_polishing_in_the_attack_never_grows_l1_and_counts_its_passes(linear):
    common = dict(lambdas=LAMBDAS, lr=0.05, max_iterations=300, patience=0, refine=True)
    refined = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common))
    polished = l1_attack(linear, RECORDS, LABELS, AttackConfig(**common, polish_steps=5))
    assert polished.success.all()
    torch.testing.assert_close(polished.delta_first, refined.delta_first)
    assert (polished.norms()["l1"] <= refined.norms()["l1"] + 1e-12).all()
    assert (polished.forward_passes >= refined.forward_passes + 5).all()
    assert (logit_margin(linear(RECORDS + polished.delta_best), LABELS) < 0).all()


def test_polishing_moves_only_the_cells_the_mask_allows(linear):
    observed = torch.ones_like(RECORDS, dtype=torch.bool)
    observed[:, 0, 0] = False  # the steepest coordinate may not move
    delta = spread_flip() * observed
    rows = torch.tensor([2])
    assert logit_margin(linear(RECORDS[2:3] + delta[2:3]), LABELS[2:3]) < 0
    with input_gradient_mode(linear):
        polished, _, improved, _ = polish_perturbation(lambda xa, which: linear(xa), RECORDS, LABELS, delta, rows,
                                                       AttackConfig(lambdas=(1.0,), polish_steps=20),
                                                       cell_mask=observed.double())
    assert improved.all() and (polished[0][~observed[2]] == 0).all()
    assert logit_margin(linear(RECORDS[2:3] + polished), LABELS[2:3]) < 0


def test_an_already_misclassified_record_needs_no_perturbation(linear):
    x = torch.tensor([[[0.1, 0.9, 0.1], [0.1, 0.9, 0.1]]], dtype=torch.float64)  # w·x + b < 0: predicted 0
    result = l1_attack(linear, x, torch.tensor([1]), AttackConfig(lambdas=LAMBDAS, patience=10))
    assert result.success[0] and result.first_iteration[0] == 0 and result.best_iteration[0] == 0
    assert (result.delta_best == 0).all() and int(result.runs[0]) == 1 and int(result.forward_passes[0]) == 1


def test_a_lambda_above_every_gradient_stalls_at_zero_after_one_pass(linear):
    lambdas = (5.0, 6.0, 7.0)  # > max|w| = 4: soft thresholding keeps δ at exactly 0
    result = l1_attack(linear, RECORDS, LABELS, AttackConfig(lambdas=lambdas, search="bisect"))
    assert not result.success.any()
    assert (result.runs == 2).all() and (result.forward_passes == 2).all()  # two bisection runs, one pass each


def test_observed_only_perturbs_observed_cells_and_finds_the_masked_optimum(linear):
    observed = torch.ones_like(RECORDS, dtype=torch.bool)
    observed[:, 0, 0] = False  # the steepest coordinate may not move
    config = AttackConfig(lambdas=LAMBDAS, lr=0.005, max_iterations=1500, patience=50, observed_only=True,
                          search="bisect")
    record = slice(2, 3)
    result = l1_attack(linear, RECORDS[record], LABELS[record], config, observed=observed[record])
    assert result.success[0]
    assert (result.delta_best[~observed[record]] == 0).all() and (result.delta_first[~observed[record]] == 0).all()
    masked_weight = WEIGHT.flatten().numpy().copy()
    masked_weight[0] = 0.0
    # On the masked problem the first coordinate is fixed; its contribution moves into the bias.
    bias = BIAS + float(WEIGHT[0, 0] * RECORDS[2, 0, 0])
    expected = minimal_flip(masked_weight, bias, RECORDS[2].flatten().numpy(), 1)
    assert np.count_nonzero(expected) == 2
    assert np.abs(result.delta_best[0].flatten().numpy() - expected).sum() < 0.08


class TinyLSTM(nn.Module):
    """LSTM over time + static features, dropout inside and between layers, two logits."""

    def __init__(self, n_features: int = 4, n_static: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(n_features, 8, num_layers=2, batch_first=True, dropout=0.3)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(8 + n_static, 2)

    def forward(self, x: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(torch.cat([self.dropout(out[:, -1]), static], 1))


@pytest.fixture
def lstm_case():
    torch.manual_seed(0)
    model = TinyLSTM().double()
    x = torch.rand(11, 6, 4, dtype=torch.float64)
    static = torch.rand(11, 2, dtype=torch.float64)
    with torch.no_grad(), input_gradient_mode(model):
        # A steeper head centred on these records: both classes predicted, margins a short attack can cross.
        model.head.weight[:, :8] *= 20
        logits = model(x, static)
        model.head.bias[1] -= (logits[:, 1] - logits[:, 0]).mean()
        label = model(x, static).argmax(1)  # attack the model's own predictions: all correctly classified
    return model, x, static, label


def test_input_gradient_mode_is_deterministic_and_restores_the_model(lstm_case):
    model, x, static, _ = lstm_case
    model.train()
    with input_gradient_mode(model):
        assert model.lstm.training and model.lstm.dropout == 0 and not model.dropout.training
        assert not any(p.requires_grad for p in model.parameters())
        adversarial = x.clone().requires_grad_(True)
        out = model(adversarial, static)
        torch.testing.assert_close(out, model(x, static), rtol=0, atol=0)
        (grad,) = torch.autograd.grad(out[:, 1].sum(), adversarial)
        assert grad.abs().sum() > 0
    assert model.training and model.lstm.training and model.dropout.training and model.lstm.dropout == 0.3
    assert all(p.requires_grad for p in model.parameters())


def test_chunked_attack_equals_the_unchunked_one_on_an_lstm(lstm_case):
    model, x, static, label = lstm_case
    lambdas = log_spaced_lambdas(5e-4, 1.5e-2, 7)
    results = [
        l1_attack(model, x, label, AttackConfig(lambdas=lambdas, lr=0.05, max_iterations=60, chunk_size=size),
                  inputs={"static": static})
        for size in (3, 64)
    ]
    assert results[0].success.all()  # the smoke test is only meaningful if the records flip
    assert len(set(label.tolist())) == 2 and len(set(results[0].first_iteration.tolist())) > 3
    for name in ("success", "first_iteration", "best_iteration", "runs", "forward_passes"):
        assert torch.equal(getattr(results[0], name), getattr(results[1], name)), name
    for name in ("lambda_best", "delta_first", "delta_best"):
        torch.testing.assert_close(getattr(results[0], name), getattr(results[1], name), equal_nan=True)
    flipped = results[0].success
    adversarial = x + results[0].delta_best
    with torch.no_grad(), input_gradient_mode(model):
        margins = logit_margin(model(adversarial, static), label)
    assert (margins[flipped] < 0).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1 + 1e-12


def test_norms_count_cells_and_sizes():
    delta = torch.zeros(2, 3, 2)
    delta[0, 1, 0], delta[0, 2, 1], delta[1, 0, 0] = 0.5, -0.25, -1.0
    norms = perturbation_norms(delta)
    assert norms["l0"].tolist() == [2, 1]
    assert norms["l1"].tolist() == [0.75, 1.0] and norms["linf"].tolist() == [0.5, 1.0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lambdas": ()}, "lambdas is empty"),
        ({"lambdas": (0.01, -0.1)}, "finite and ≥ 0"),
        ({"kappa": -1.0}, "kappa must be ≥ 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"max_iterations": 0}, "max_iterations must be ≥ 1"),
        ({"search": "random"}, "search is 'random'"),
        ({"refine_steps": 0}, "refine_steps must be ≥ 1"),
        ({"polish_steps": -1}, "polish_steps must be ≥ 0"),
        ({"polish_shrink": 1.0}, r"polish_shrink must lie in \(0, 1\)"),
        ({"polish_top_k": 0}, "polish_top_k must be ≥ 1"),
        ({"polish_step_size": 0.0}, "polish_step_size must be > 0"),
    ],
)
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        AttackConfig(**{"lambdas": (0.01,), **settings})


def test_bad_inputs_are_clear_errors(linear):
    config = AttackConfig(lambdas=(0.5,))
    with pytest.raises(ValueError, match="no records to attack"):
        l1_attack(linear, RECORDS[:0], LABELS[:0], config)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        l1_attack(linear, RECORDS * 2, LABELS, config)
    with pytest.raises(ValueError, match="labels have shape"):
        l1_attack(linear, RECORDS, LABELS[:2], config)
    with pytest.raises(ValueError, match="no observation mask"):
        l1_attack(linear, RECORDS, LABELS, AttackConfig(lambdas=(0.5,), observed_only=True))


def test_lambda_list_is_log_spaced_like_the_paper():
    lambdas = log_spaced_lambdas(5e-4, 1.5e-2, 25)
    assert len(lambdas) == 25 and lambdas[0] == pytest.approx(5e-4) and lambdas[-1] == pytest.approx(1.5e-2)
    ratios = np.diff(np.log(lambdas))
    assert np.allclose(ratios, ratios[0])
    assert AttackConfig(lambdas=lambdas).lambdas == tuple(sorted(lambdas, reverse=True))


def test_continuation_starts_below_the_steepest_gradient_and_walks_down_until_the_flip():
    # One coordinate, w = 2: λ ≥ 2 would keep δ at 0, so the run starts at 1.9. At lr 0.01, δ grows by
    # lr·(2 − λ) per step and the margin 1.1 falls by twice that: 4 steps at λ = 1.9 (δ 0.004, margin
    # 1.092), 4 at λ = 1.0 (δ 0.044, margin 1.012), then λ = 0.5, the last, 0.03 per step: 34 more
    # steps, so the first flip is at iteration 42.
    model = LinearLogits(torch.tensor([[2.0]]), -0.5)
    x = torch.tensor([[[0.8]]], dtype=torch.float64)
    config = AttackConfig(lambdas=(3.0, 1.9, 1.0, 0.5), lr=0.01, patience=0, steps_per_lambda=4,
                          search="continuation")
    result = l1_attack(model, x, torch.tensor([1]), config)
    assert result.success[0] and int(result.runs[0]) == 1
    assert int(result.first_iteration[0]) == 42 and float(result.lambda_best[0]) == 0.5
    expected = -(4 * 0.001 + 4 * 0.01 + 34 * 0.015)
    torch.testing.assert_close(result.delta_first[0, 0, 0], torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError, match="steps_per_lambda must be ≥ 1"):
        AttackConfig(lambdas=(0.1,), steps_per_lambda=0)


@pytest.mark.parametrize("search", ["full", "bisect", "descending", "continuation"])
def test_progress_counts_each_record_once_as_it_finishes(linear, search):
    updates: list[int] = []
    config = AttackConfig(lambdas=LAMBDAS, lr=0.005, patience=50, search=search, max_iterations=1500,
                          steps_per_lambda=300, chunk_size=len(RECORDS))
    l1_attack(linear, RECORDS, LABELS, config, progress=updates.append)
    assert sum(updates) == len(RECORDS) and min(updates) >= 0
    if search in ("continuation", "descending"):
        # One chunk holds every record, yet the count moves as records finish, not once per chunk
        # (`full` and `bisect` try the same number of λ for every record, so those finish together).
        assert len([n for n in updates if n > 0]) > 1, updates


def test_forward_fill_propagation_equals_re_imputing_the_changed_measurements():
    """A change to measured values, re-imputed by the features code (forward fill, gap fill, scaling), moves
    the scaled tensor exactly as `propagate_forward_fill` moves it."""
    from ehr_adversarial.attack.l1_attack import last_observed_hour, propagate_forward_fill
    from ehr_adversarial.features.tensorize import forward_fill, scale_unit

    rng = np.random.default_rng(3)
    cells = rng.uniform(40, 60, size=(4, 12, 3))
    cells[rng.random(cells.shape) < 0.7] = np.nan  # most hours unmeasured
    cells[0, :, 2] = np.nan  # a channel never measured
    low, high, fill = np.array([30.0, 30, 30]), np.array([70.0, 70, 70]), np.array([50.0, 50, 50])

    def impute(values):
        filled, _ = forward_fill(values)
        return scale_unit(np.where(np.isnan(filled), fill, filled), low, high).astype(np.float64)

    observed = ~np.isnan(cells)
    change = np.where(observed, rng.uniform(-5, 5, size=cells.shape), 0.0)  # clinical units, inside [low, high]
    expected = impute(cells + change) - impute(cells)
    propagated = propagate_forward_fill(torch.tensor(change / (high - low)), last_observed_hour(torch.tensor(observed)))
    np.testing.assert_allclose(propagated.numpy(), expected, atol=1e-6)
    # an hour before the first measurement is filled with a constant and does not move
    first = np.argmax(observed, axis=1)
    assert all((propagated[n, : first[n, f], f] == 0).all() for n in range(4) for f in range(2) if observed[n, :, f].any())


@pytest.mark.parametrize("shrinking", [{}, {"refine": True, "polish_steps": 10}], ids=["search", "refined, polished"])
def test_forward_fill_attack_moves_measurements_and_the_hours_filled_from_them(linear, shrinking):
    """Only measured cells move of their own accord; a filled cell moves with its source, and the reported δ
    (what the model saw) flips the record; the refinement and the polish keep all of it."""
    from ehr_adversarial.attack.l1_attack import last_observed_hour

    observed = torch.zeros_like(RECORDS, dtype=torch.bool)
    observed[:, 0, :] = True  # hour 0 measured, hour 1 filled from it
    config = AttackConfig(lambdas=LAMBDAS, lr=0.005, max_iterations=1500, patience=50, observed_only=True,
                          forward_fill=True, search="bisect", **shrinking)
    record = slice(2, 3)
    x = RECORDS[record]
    # hour 1 holds the forward-filled values of hour 0, as the features stage leaves them
    x = torch.stack([x[:, 0], x[:, 0]], dim=1)
    result = l1_attack(linear, x, LABELS[record], config, observed=observed[record])
    assert result.success[0]
    delta = result.delta_best[0]
    assert torch.equal(delta[1], delta[0]) and delta[0].abs().sum() > 0
    source = last_observed_hour(observed[record])
    assert (source >= 0).all()
    with torch.no_grad():
        assert float(logit_margin(linear(x + result.delta_best), LABELS[record])[0]) < 0
    assert ((x + result.delta_best) >= 0).all() and ((x + result.delta_best) <= 1).all()
    # a measurement at hour 0 acts through both hours' weights: the optimum of the summed linear model
    expected = minimal_flip((WEIGHT[0] + WEIGHT[1]).numpy(), BIAS, x[0, 0].numpy(), 1)
    assert np.abs(delta[0].numpy() - expected).sum() < 0.08
    with pytest.raises(ValueError, match="forward_fill needs observed_only"):
        AttackConfig(lambdas=LAMBDAS, forward_fill=True)
