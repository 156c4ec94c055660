"""The three generators: known answers for their pieces (EDM schedule, preconditioning, loss,
Heun sampler, gradient penalty, KV-cache decoding), the shared bundle writer, and each generator
trained a few steps on the REAL PhysioNet 2012 / MIMIC-III demo training split."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog
from torch import nn

from ehr_adversarial.models.ehrdiff import EHRDiff, edm_sigmas, heun_sample
from ehr_adversarial.models.gpt import GPT
from ehr_adversarial.models.kmimic import gradient_penalty
from ehr_adversarial.synthesis import ehrdiff, kmimic, synehrgy
from ehr_adversarial.synthesis.common import (
    SYNTHETIC_ID_START,
    BundleWriter,
    build_generator,
    impute_like_features,
    one_hot_groups,
    one_per_group,
    output_array,
    scaled_fill,
    synthetic_record_ids,
)
from ehr_adversarial.synthesis.tokenizer import BOS, EOS, RecordTokenizer
from tests.conftest import project_parameters


def _quick(generator: dict, steps: int = 3) -> dict:
    """A generator's project parameters with few training steps (the tests check plumbing, not quality)."""
    block = copy.deepcopy(generator)
    for stage in ("static_vae", "temporal_vae", "latent_gan"):
        if stage in block:
            block[stage]["max_steps"] = steps
    if "max_steps" in block:
        block["max_steps"] = steps
    return block


def _random_bundle(n: int = 40, hours: int = 48, features: int = 5, statics: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = rng.random((n, hours, features)) < 0.3
    X, delta = impute_like_features(rng.random((n, hours, features)).astype(np.float32), mask, np.full(features, 0.5, np.float32))
    static = rng.random((n, statics)).astype(np.float32)
    static[:, 0] = rng.random(n) < 0.5  # a binary static column
    return {"X": X, "mask": mask, "delta": delta, "static": static, "y": (np.arange(n) % 4 == 0).astype(np.int64),
            "record_id": np.arange(1000, 1000 + n, dtype=np.int64)}


# ---------------------------------------------------------------------------------- EHRDiff


def test_edm_sigmas_follow_the_karras_schedule():
    sigmas = edm_sigmas(32, 0.02, 80.0, 7.0).numpy()
    assert len(sigmas) == 33 and sigmas[0] == pytest.approx(80.0) and sigmas[31] == pytest.approx(0.02) and sigmas[32] == 0
    i = 10
    expected = (80.0 ** (1 / 7) + i / 31 * (0.02 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert sigmas[i] == pytest.approx(expected)
    assert (np.diff(sigmas) < 0).all()


def test_preconditioning_keeps_clean_data_at_zero_noise_and_uses_the_noise_alone_at_large_noise():
    torch.manual_seed(0)
    model = EHRDiff(6, hidden_dims=(16,), time_dim=8, sigma_data=[0.14, 0.14, 0.14, 0.5, 0.5, 0.5])
    x = torch.rand(3, 6, dtype=torch.float64)
    np.testing.assert_allclose(model(x, torch.full((3,), 1e-9)).detach(), x, atol=1e-8)
    # c_skip = σd²/(σ² + σd²) per column
    with torch.no_grad():
        model.net.blocks[-1].out[1].weight.zero_()
        model.net.blocks[-1].out[1].bias.zero_()
    sigma = torch.full((3,), 2.0)
    c_skip = model.sigma_data.double() ** 2 / (4.0 + model.sigma_data.double() ** 2)
    np.testing.assert_allclose(model(x, sigma).detach(), c_skip * x, rtol=1e-6)


def test_edm_loss_matches_an_independent_computation():
    torch.manual_seed(1)
    model = EHRDiff(4, hidden_dims=(8,), time_dim=8, sigma_data=0.14)
    with torch.no_grad():  # F ≡ 0, so D(x + n; σ) = c_skip·(x + n)
        model.net.blocks[-1].out[1].weight.zero_()
        model.net.blocks[-1].out[1].bias.zero_()
    x = torch.rand(64, 4)
    torch.manual_seed(5)
    loss = model.loss(x, p_mean=-1.2, p_std=1.2).item()
    torch.manual_seed(5)  # the same draws, in the same order
    sigma = np.exp(torch.randn(64, 1).numpy().astype(np.float64) * 1.2 - 1.2)
    noise = torch.randn(64, 4).numpy().astype(np.float64)
    sd = 0.14
    denoised = sd**2 / (sigma**2 + sd**2) * (x.numpy() + noise * sigma)
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    assert loss == pytest.approx(float(np.mean(weight * (denoised - x.numpy()) ** 2)), rel=1e-5)


class GaussianDenoiser(nn.Module):
    """The exact denoiser of data ~ N(μ, s²) per column: E[x | x + σn] = μ + s²/(s² + σ²)(x_σ − μ)."""

    def __init__(self, mu: float, s: float):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.reshape(-1, 1).to(x.dtype)
        return self.mu + self.s**2 / (self.s**2 + sigma**2) * (x - self.mu)


def test_heun_sampler_with_the_exact_denoiser_reproduces_the_data_distribution():
    latents = torch.randn(6000, 3, generator=torch.Generator().manual_seed(0))
    samples = heun_sample(GaussianDenoiser(0.3, 0.1), latents, num_steps=32, sigma_min=0.02, sigma_max=80.0, rho=7.0)
    # along the exact ODE x(σ) − μ = (x(σ_max) − μ)·√(s² + σ²)/√(s² + σ_max²), so σ_max·z ends at
    # μ + s·z (up to s·μ/σ_max); Heun's error over 32 steps is small
    assert samples.mean().item() == pytest.approx(0.3, abs=0.003)
    assert samples.std().item() == pytest.approx(0.1, rel=0.03)


def test_ehrdiff_trains_and_samples_the_contract_bundle_reproducibly():
    bundle = _random_bundle()
    matrix = ehrdiff.record_matrix(bundle)
    assert matrix.shape == (40, 2 * 48 * 5 + 4 + 1)
    layout = ehrdiff.matrix_layout(bundle, matrix)
    binary = np.asarray(layout["binary"])
    assert binary[48 * 5 : 2 * 48 * 5].all() and binary[-1] and binary[2 * 48 * 5]  # mask, y, binary static
    # the hours basis, in which σ_data is each matrix column's own (the DCT basis has its own test below)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["ehrdiff"]) | {"hidden_dims": [32], "time_dim": 16,
                                                                                    "time_basis": "hours"}
    # EHRDiff's own setting: uncentred, σ_data 0.14 for binary columns, pooled std for the others
    seed_setting = params | {"center": False, "sigma_data_binary": 0.14, "sigma_data_continuous": "auto"}
    seed_model = ehrdiff.fit_ehrdiff(matrix, layout, seed_setting, "cpu", seed=3)
    assert seed_model.config["hyperparameters"]["sigma_data"][48 * 5] == pytest.approx(0.14)  # a mask column
    assert seed_model.config["hyperparameters"]["sigma_data"][0] == pytest.approx(matrix[:, ~binary].std(), rel=1e-5)
    assert seed_model.config["offset"] == [0.0] * matrix.shape[1]
    # ours: centred columns, each with its own σ_data (at least the floor)
    model = ehrdiff.fit_ehrdiff(matrix, layout, params | {"center": True, "sigma_data_binary": "column", "sigma_data_continuous": "column"}, "cpu", seed=3)
    np.testing.assert_allclose(model.config["offset"], matrix.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.config["hyperparameters"]["sigma_data"], np.maximum(matrix.std(axis=0), 0.02), rtol=1e-4)
    fill = np.full(5, 0.5, np.float32)
    first = ehrdiff.sample_ehrdiff(model, 7, params | {"sample_batch_size": 3}, "cpu", 11, fill, bundle["record_id"])
    again = ehrdiff.sample_ehrdiff(model, 7, params | {"sample_batch_size": 3}, "cpu", 11, fill, bundle["record_id"])
    _check_contract(first, 7, 48, 5, 4, bundle["record_id"])
    assert set(np.unique(first["static"][:, 0])) <= {0.0, 1.0}
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])


def test_temporal_denoiser_patches_hours_and_puts_every_column_back_in_place():
    # With no layers, identity projections and no final norm, F(x) must return x itself: every X and
    # mask column goes through its own hour's patch and comes back to the same place, the rest too.
    T, F, S, P = 48, 5, 4, 4
    n_columns = 2 * T * F + S + 1
    model = EHRDiff(n_columns, time_dim=8, sigma_data=0.3, denoiser="temporal", n_hours=T, n_features=F,
                    d_model=2 * F * P, n_layers=0, n_heads=2, patch_hours=P)
    net = model.net
    assert len(net.position) == T // P + 1  # 12 patches of 4 hours, and the rest
    with torch.no_grad():
        for layer in (net.hour_in, net.hour_out):
            layer.weight.copy_(torch.eye(2 * F * P))
            layer.bias.zero_()
        net.rest_in.weight.copy_(torch.eye(2 * F * P, S + 1))
        net.rest_out.weight.copy_(torch.eye(S + 1, 2 * F * P))
        for param in (net.rest_in.bias, net.rest_out.bias, net.position, net.time_proj.weight, net.time_proj.bias):
            param.zero_()
    net.norm = nn.Identity()
    x = torch.rand(3, n_columns)
    np.testing.assert_allclose(net(x, torch.zeros(3)).detach(), x, atol=1e-6)
    # and with layers, information flows between hours: a change in the last hour moves the first
    model = EHRDiff(n_columns, time_dim=8, sigma_data=0.3, denoiser="temporal", n_hours=T, n_features=F, d_model=16, n_layers=2, n_heads=2)
    shifted = x.clone()
    shifted[:, T * F - 1] += 1.0  # X of the last hour, last feature
    out, out_shifted = model(x, torch.ones(3)), model(shifted, torch.ones(3))
    assert out.shape == (3, n_columns)
    assert (out[:, :F] - out_shifted[:, :F]).abs().max() > 1e-4  # X of hour 0


def test_temporal_denoiser_refuses_a_patch_that_does_not_divide_the_hours_and_unknown_denoisers():
    with pytest.raises(ValueError, match="patch_hours must divide the 48 hours"):
        EHRDiff(2 * 48 * 5 + 3, denoiser="temporal", n_hours=48, n_features=5, patch_hours=5)
    with pytest.raises(ValueError, match="columns beyond X and mask"):
        EHRDiff(2 * 48 * 5, denoiser="temporal", n_hours=48, n_features=5)
    with pytest.raises(ValueError, match="denoiser is 'unet'"):
        EHRDiff(10, denoiser="unet")
    bundle = _random_bundle(n=8)
    matrix = ehrdiff.record_matrix(bundle)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["ehrdiff"]) | {"denoiser": "conv"}
    with pytest.raises(ValueError, match=r"synthesis.<source>.ehrdiff.denoiser is 'conv'"):
        ehrdiff.fit_ehrdiff(matrix, ehrdiff.matrix_layout(bundle, matrix), params, "cpu", seed=0)


@pytest.mark.parametrize("denoiser", ["mlp", "temporal"])
def test_ehrdiff_denoisers_train_sample_and_rebuild_from_their_config(denoiser: str):
    bundle = _random_bundle()
    matrix = ehrdiff.record_matrix(bundle)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["ehrdiff"]) | {
        "denoiser": denoiser, "hidden_dims": [32], "time_dim": 16, "temporal": {"d_model": 16, "n_layers": 1, "n_heads": 2, "patch_hours": 6}}
    model = ehrdiff.fit_ehrdiff(matrix, ehrdiff.matrix_layout(bundle, matrix), params, "cpu", seed=3)
    hyper = model.config["hyperparameters"]
    assert hyper["denoiser"] == denoiser
    if denoiser == "temporal":
        assert (hyper["n_hours"], hyper["n_features"], hyper["patch_hours"]) == (48, 5, 6) and "hidden_dims" not in hyper
    rebuilt = build_generator(model.config)  # what TorchModelDataset does on load
    rebuilt.load_state_dict(model.state_dict())
    x, sigma = torch.rand(4, matrix.shape[1]), torch.full((4,), 0.5)
    np.testing.assert_allclose(rebuilt(x, sigma).detach(), model(x, sigma).detach(), rtol=1e-5, atol=1e-6)
    synthetic = ehrdiff.sample_ehrdiff(model, 5, params | {"sample_batch_size": 2}, "cpu", 11, np.full(5, 0.5, np.float32), bundle["record_id"])
    _check_contract(synthetic, 5, 48, 5, 4, bundle["record_id"])


def test_dct_time_basis_is_orthonormal_touches_only_x_and_puts_a_constant_series_in_its_first_coefficient():
    layout = {"n_hours": 48, "n_features": 3}
    cosines = ehrdiff.dct_matrix(48)
    np.testing.assert_allclose(cosines @ cosines.T, np.eye(48), atol=1e-10)
    matrix = torch.rand(6, 2 * 48 * 3 + 4, dtype=torch.float64)
    coefficients = ehrdiff.change_time_basis(matrix, layout, "dct")
    np.testing.assert_allclose(coefficients[:, 48 * 3 :], matrix[:, 48 * 3 :])  # mask and the rest untouched
    np.testing.assert_allclose(ehrdiff.change_time_basis(coefficients, layout, "dct", inverse=True), matrix, atol=1e-12)
    assert ehrdiff.change_time_basis(matrix, layout, "hours") is matrix
    constant = torch.zeros(1, 2 * 48 * 3 + 4, dtype=torch.float64)
    constant[0, : 48 * 3] = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64).repeat(48)  # hour-major: (48, 3)
    series = ehrdiff.change_time_basis(constant, layout, "dct")[0, : 48 * 3].reshape(48, 3)
    np.testing.assert_allclose(series[0], np.array([0.2, 0.5, 0.9]) * np.sqrt(48))
    np.testing.assert_allclose(series[1:], 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="time_basis is 'fourier'"):
        ehrdiff.change_time_basis(matrix, layout, "fourier")
    # trained in the DCT basis: σ_data is each coefficient's spread, samples come back in hours
    bundle = _random_bundle()
    raw = ehrdiff.record_matrix(bundle)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["ehrdiff"]) | {"time_basis": "dct", "hidden_dims": [32], "time_dim": 16}
    model = ehrdiff.fit_ehrdiff(raw, ehrdiff.matrix_layout(bundle, raw), params, "cpu", seed=3)
    assert model.config["time_basis"] == "dct"
    transformed = ehrdiff.change_time_basis(torch.as_tensor(raw), {"n_hours": 48, "n_features": 5}, "dct").numpy()
    np.testing.assert_allclose(model.config["offset"], transformed.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.config["hyperparameters"]["sigma_data"], np.maximum(transformed.std(axis=0), 0.02), rtol=1e-3)
    synthetic = ehrdiff.sample_ehrdiff(model, 6, params, "cpu", 0, np.full(5, 0.5, np.float32), bundle["record_id"])
    _check_contract(synthetic, 6, 48, 5, 4, bundle["record_id"])


def test_column_loss_weight_counts_errors_in_the_data_units_and_multiplies_the_edm_weight():
    sigma_data = np.array([0.1, 0.2, 0.4], np.float32)
    np.testing.assert_array_equal(ehrdiff.column_loss_weight(sigma_data, "equal"), [1, 1, 1])
    weight = ehrdiff.column_loss_weight(sigma_data, "sigma_data")
    np.testing.assert_allclose(weight, sigma_data**2 / np.mean(sigma_data**2), rtol=1e-6)
    assert weight.mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="column_loss_weight is 'inverse'"):
        ehrdiff.column_loss_weight(sigma_data, "inverse")
    torch.manual_seed(0)
    model = EHRDiff(3, hidden_dims=(8,), time_dim=8, sigma_data=sigma_data.tolist())
    x = torch.rand(16, 3)
    torch.manual_seed(1)
    plain = model.loss(x)
    torch.manual_seed(1)
    scaled = model.loss(x, column_weight=torch.tensor([2.0, 2.0, 2.0]))
    assert scaled.item() == pytest.approx(2 * plain.item(), rel=1e-6)


def test_guidance_is_the_classifier_free_combination_and_label_dropout_gives_the_unconditional_loss():
    torch.manual_seed(0)
    model = EHRDiff(6, hidden_dims=(16,), time_dim=8, sigma_data=0.3, n_classes=2)
    x, sigma, label = torch.rand(5, 6), torch.full((5,), 0.7), torch.tensor([0, 1, 1, 0, 1])
    conditional, unconditional = model(x, sigma, label), model(x, sigma)
    assert (conditional - unconditional).abs().max() > 1e-4  # the label is an input
    np.testing.assert_allclose(model(x, sigma, torch.full((5,), 2)).detach(), unconditional.detach())  # index 2 = no label
    np.testing.assert_allclose(model.guided(label, 0.0)(x, sigma).detach(), conditional.detach())
    np.testing.assert_allclose(model.guided(label, 1.5)(x, sigma).detach(), (2.5 * conditional - 1.5 * unconditional).detach(), rtol=1e-5, atol=1e-6)
    torch.manual_seed(3)
    dropped = model.loss(x, label=label, label_dropout=1.0)
    torch.manual_seed(3)  # label_dropout 1: every label replaced by "no label"; the extra draw is the dropout's
    sigma_draw = torch.exp(torch.randn(5, 1) * 1.2 - 1.2)
    noise = torch.randn_like(x)
    torch.rand(5)
    weight = (sigma_draw**2 + 0.09) / (sigma_draw * 0.3) ** 2
    expected = (weight * (model(x + noise * sigma_draw, sigma_draw) - x) ** 2).mean()
    assert dropped.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="trained without labels"):
        EHRDiff(6, hidden_dims=(16,), time_dim=8).guided(label)


def test_label_conditional_ehrdiff_learns_what_each_label_looks_like():
    # Records of label 1 are high (0.8 everywhere), of label 0 low (0.2): a conditional model must
    # give each sampled label its own level, and draw the labels at the training rates.
    rng = np.random.default_rng(0)
    bundle = _random_bundle(n=200, hours=4, features=2, statics=2)
    y = (rng.random(200) < 0.25).astype(np.int64)
    bundle["y"] = y
    level = np.where(y == 1, 0.8, 0.2).astype(np.float32)
    bundle["X"][:] = level[:, None, None] + rng.normal(0, 0.02, bundle["X"].shape).astype(np.float32)
    bundle["mask"][:] = True
    matrix = ehrdiff.record_matrix(bundle, label_column=False)
    assert matrix.shape == (200, 2 * 4 * 2 + 2)  # no y column
    layout = ehrdiff.matrix_layout(bundle, matrix, label_column=False)
    params = project_parameters()["synthesis"]["physionet2012"]["ehrdiff"] | {
        "label": "condition", "label_dropout": 0.1, "hidden_dims": [64, 64], "time_dim": 16, "max_steps": 400, "batch_size": 64,
        "learning_rate": 1e-3}
    with pytest.raises(ValueError, match="labels exactly when the record matrix has no label column"):
        ehrdiff.fit_ehrdiff(matrix, layout, params, "cpu", 0)
    model = ehrdiff.fit_ehrdiff(matrix, layout, params, "cpu", 0, labels=y)
    assert model.config["hyperparameters"]["n_classes"] == 2
    np.testing.assert_allclose(model.config["label_rates"], [1 - y.mean(), y.mean()])
    synthetic = ehrdiff.sample_ehrdiff(model, 400, params, "cpu", 1, np.full(2, 0.5, np.float32), bundle["record_id"])
    _check_contract(synthetic, 400, 4, 2, 2, bundle["record_id"])
    assert synthetic["y"].mean() == pytest.approx(y.mean(), abs=0.06)
    by_label = [synthetic["X"][synthetic["y"] == k].mean() for k in (0, 1)]
    np.testing.assert_allclose(by_label, [0.2, 0.8], atol=0.08)
    with pytest.raises(ValueError, match="ehrdiff.label is 'token'"):
        ehrdiff.label_mode({"label": "token"})


def _check_contract(synthetic: dict, n: int, hours: int, features: int, statics: int, real_ids: np.ndarray) -> None:
    """The synthetic-EHR contract: model_input's arrays, shapes and dtypes; new record ids."""
    assert synthetic["X"].shape == synthetic["mask"].shape == synthetic["delta"].shape == (n, hours, features)
    assert synthetic["X"].dtype == np.float32 and synthetic["mask"].dtype == bool and synthetic["delta"].dtype == np.float32
    assert synthetic["static"].shape == (n, statics) and synthetic["static"].dtype == np.float32
    assert synthetic["y"].shape == (n,) and synthetic["y"].dtype == np.int64 and set(np.unique(synthetic["y"])) <= {0, 1}
    assert synthetic["record_id"].dtype == np.int64 and len(set(synthetic["record_id"])) == n
    assert not set(synthetic["record_id"]) & set(real_ids.tolist())
    for name in ("X", "delta", "static"):
        assert np.isfinite(synthetic[name]).all(), name
    assert 0.0 <= synthetic["X"].min() and synthetic["X"].max() <= 1.0
    # delta is 0 exactly where a cell is observed
    np.testing.assert_array_equal(synthetic["delta"] == 0, synthetic["mask"])


# ---------------------------------------------------------------------------------- shared pieces


def test_reimputation_forward_fills_and_fills_before_the_first_observation():
    X = np.array([[[0.9], [0.2], [0.7], [0.4]]], dtype=np.float32)
    mask = np.array([[[False], [True], [False], [True]]])
    filled, delta = impute_like_features(X, mask, np.array([0.5], np.float32))
    np.testing.assert_allclose(filled[0, :, 0], [0.5, 0.2, 0.2, 0.4])
    np.testing.assert_allclose(delta[0, :, 0], [1.0, 0.0, 0.25, 0.0])


def test_scaled_fill_maps_the_spec_fill_onto_the_unit_scale():
    spec = {"feature_names": ["HR", "MechVent"],
            "scaler": {"HR": {"p05": 60.0, "p95": 120.0, "fill": 90.0}, "MechVent": {"p05": 0.0, "p95": 1.0, "fill": 0.0}}}
    np.testing.assert_allclose(scaled_fill(spec), [0.5, 0.0])


def test_synthetic_ids_never_meet_real_ones():
    assert synthetic_record_ids(3, np.array([132539, 142673])).tolist() == [SYNTHETIC_ID_START, SYNTHETIC_ID_START + 1, SYNTHETIC_ID_START + 2]
    assert synthetic_record_ids(2, np.array([SYNTHETIC_ID_START + 5])).tolist() == [SYNTHETIC_ID_START + 6, SYNTHETIC_ID_START + 7]


def test_outputs_beyond_the_memory_budget_go_through_a_temporary_file():
    small = output_array((10, 4), np.float32, max_in_memory_mb=1)
    assert not isinstance(small, np.memmap)
    big = output_array((1024, 1024), np.float32, max_in_memory_mb=1)  # 4 MiB
    assert isinstance(big, np.memmap)
    path = big.filename
    assert Path(path).exists()
    writer = BundleWriter(5, 48, 3, 2, np.zeros(3, np.float32), max_in_memory_mb=0)
    writer.write(slice(0, 5), X=np.ones((5, 48, 3)), mask=np.ones((5, 48, 3), bool), static=np.zeros((5, 2)), y=np.zeros(5))
    assert isinstance(writer.arrays["X"], np.memmap) and writer.bundle(np.array([1]))["X"].min() == 1.0
    del big
    import gc

    gc.collect()
    assert not Path(path).exists()


# ---------------------------------------------------------------------------------- GPT


def _reference_greedy(model: GPT, idx: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy decoding re-running the whole sequence at every step (no cache)."""
    for _ in range(n):
        logits, _ = model(idx)
        idx = torch.cat((idx, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return idx


def test_cached_generation_equals_full_recomputation():
    torch.manual_seed(0)
    model = GPT(30, block_size=32, n_layer=2, n_head=2, n_embd=16).eval()
    with torch.no_grad():
        model.wte.weight.mul_(50)  # sharpen the logits so that greedy choices are unambiguous
    start = torch.tensor([[1, 4], [1, 7]])
    cached = model.generate(start, 20, top_k=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_array_equal(cached, _reference_greedy(model, start, 20))


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(30, block_size=16, n_layer=2, n_head=2, n_embd=16).eval()
    a = torch.tensor([[1, 5, 6, 7, 8]])
    b = torch.tensor([[1, 5, 6, 9, 2]])
    with torch.no_grad():
        np.testing.assert_allclose(model(a)[0][0, :3], model(b)[0][0, :3], atol=1e-6)


def test_generation_respects_the_grammar_and_runs_past_the_context():
    torch.manual_seed(0)
    model = GPT(12, block_size=8, n_layer=1, n_head=2, n_embd=16).eval()
    allowed = torch.zeros(3, 12, dtype=torch.bool)
    allowed[0, 5] = True           # first new token: 5
    allowed[1, [6, 7]] = True      # second: 6 or 7
    allowed[2, [8, 9, 10]] = True  # all later ones
    out = model.generate(torch.ones(4, 1, dtype=torch.long), 30, top_k=5, generator=torch.Generator().manual_seed(1), allowed=allowed)
    assert out.shape == (4, 31)  # 30 new tokens with a context of 8: the cache was rebuilt
    assert (out[:, 1] == 5).all() and torch.isin(out[:, 2], torch.tensor([6, 7])).all()
    assert torch.isin(out[:, 3:], torch.tensor([8, 9, 10])).all()


def test_generation_stops_once_every_sequence_has_ended_and_pads_with_eos():
    torch.manual_seed(0)
    model = GPT(6, block_size=16, n_layer=1, n_head=1, n_embd=8).eval()
    allowed = torch.zeros(2, 6, dtype=torch.bool)
    allowed[0, 3] = True
    allowed[1, [2, 4]] = True  # EOS = 2 or a value
    out = model.generate(torch.full((16, 1), BOS), 50, eos_id=EOS, generator=torch.Generator().manual_seed(0), allowed=allowed)
    ended = out == EOS
    assert ended.any(dim=1).all() and out.shape[1] < 51
    first = ended.int().argmax(dim=1)
    for row, k in enumerate(first.tolist()):
        assert (out[row, k:] == EOS).all()


# ---------------------------------------------------------------------------------- K-MIMIC


class LinearCritic(nn.Module):
    def __init__(self, weight: list[float]):
        super().__init__()
        self.weight = torch.tensor(weight)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return h @ self.weight


def test_gradient_penalty_of_a_linear_critic_is_its_gradient_norm_deviation():
    real, fake, y = torch.randn(16, 2), torch.randn(16, 2), torch.zeros(16, dtype=torch.long)
    assert gradient_penalty(LinearCritic([0.6, 0.8]), real, fake, y).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(LinearCritic([2.0, 0.0]), real, fake, y).item() == pytest.approx(1.0)


def test_kmimic_stages_train_in_order_and_sample_the_contract_bundle():
    bundle = _random_bundle(n=48, features=4)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["kmimic"])
    params["temporal_vae"]["hidden"] = 16
    static_vae = kmimic.fit_static_vae(bundle["static"], params["static_vae"], "cpu", 0)
    temporal_vae = kmimic.fit_temporal_vae(bundle["X"], bundle["mask"], params["temporal_vae"], "cpu", 0)
    gan = kmimic.fit_latent_gan(static_vae, temporal_vae, bundle["static"], bundle["X"], bundle["mask"], bundle["y"], params["latent_gan"], "cpu", 0)
    assert gan.config["hyperparameters"]["latent_dim"] == 32 + 256
    np.testing.assert_allclose(gan.label_rates.numpy(), [0.75, 0.25])
    synthetic = kmimic.sample_kmimic(static_vae, temporal_vae, gan, 9, params | {"sample_batch_size": 4}, "cpu", 0,
                                     np.full(4, 0.5, np.float32), bundle["record_id"])
    _check_contract(synthetic, 9, 48, 4, 4, bundle["record_id"])
    assert set(np.unique(synthetic["static"][:, 0])) <= {0.0, 1.0}
    low, high = bundle["static"].min(0), bundle["static"].max(0)
    assert ((synthetic["static"] >= low - 1e-6) & (synthetic["static"] <= high + 1e-6)).all()


def test_kmimic_residual_statistics_are_those_of_the_error_on_observed_cells_and_value_noise_adds_them():
    bundle = _random_bundle(n=48, features=4)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["kmimic"])
    params["temporal_vae"]["hidden"] = 16
    temporal_vae = kmimic.fit_temporal_vae(bundle["X"], bundle["mask"], params["temporal_vae"], "cpu", 0)
    with torch.no_grad():  # by hand: decode the posterior means, RMS of the error where observed
        x, m = torch.as_tensor(bundle["X"], dtype=torch.float32), torch.as_tensor(bundle["mask"], dtype=torch.float32)
        values, _ = temporal_vae.decode(temporal_vae.encode(x, m)[0])
        expected = (((values - x) ** 2 * m).sum((0, 1)) / m.sum((0, 1))).sqrt().numpy()
        residual = (x - values).numpy()
    np.testing.assert_allclose(temporal_vae.config["residual_std"], expected, rtol=1e-5)
    assert len(temporal_vae.config["residual_std"]) == 4
    # lag-1 autocorrelation by hand: the correlation (about 0) of the error in consecutive hours both observed
    for f in range(4):
        both = bundle["mask"][:, 1:, f] & bundle["mask"][:, :-1, f]
        lead, lag = residual[:, 1:, f][both], residual[:, :-1, f][both]
        by_hand = max(0.0, float((lead * lag).sum() / np.sqrt((lead**2).sum() * (lag**2).sum())))
        assert temporal_vae.config["residual_lag1_autocorrelation"][f] == pytest.approx(by_hand, abs=1e-5)
    static_vae = kmimic.fit_static_vae(bundle["static"], params["static_vae"], "cpu", 0)
    gan = kmimic.fit_latent_gan(static_vae, temporal_vae, bundle["static"], bundle["X"], bundle["mask"], bundle["y"],
                                params["latent_gan"], "cpu", 0)
    fill, ids = np.full(4, 0.5, np.float32), bundle["record_id"]
    # where every cell is observed, X is the decoded mean (none) or the mean plus the residual noise
    temporal_vae.to_mask.bias.data.fill_(50.0)
    mean = kmimic.sample_kmimic(static_vae, temporal_vae, gan, 400, params | {"value_noise": "none"}, "cpu", 0, fill, ids)
    noisy = kmimic.sample_kmimic(static_vae, temporal_vae, gan, 400, params | {"value_noise": "residual"}, "cpu", 0, fill, ids)
    assert mean["mask"].all() and noisy["mask"].all()
    spread = (noisy["X"] - mean["X"]).std(axis=(0, 1))
    inside = (mean["X"] > 0.2) & (mean["X"] < 0.8)  # away from the clamp at 0 and 1
    assert inside.mean() > 0.5
    np.testing.assert_allclose(spread, expected, rtol=0.15)
    # residual_ar1: the same spread, now correlated hour to hour as the stored autocorrelation says
    temporal_vae.config["residual_lag1_autocorrelation"] = [0.9, 0.5, 0.0, 0.8]
    drifting = kmimic.sample_kmimic(static_vae, temporal_vae, gan, 400, params | {"value_noise": "residual_ar1"}, "cpu", 0, fill, ids)
    noise = drifting["X"] - mean["X"]
    np.testing.assert_allclose(noise.std(axis=(0, 1)), expected, rtol=0.2)
    lag1 = [np.corrcoef(noise[:, 1:, f].ravel(), noise[:, :-1, f].ravel())[0, 1] for f in range(4)]
    np.testing.assert_allclose(lag1, [0.9, 0.5, 0.0, 0.8], atol=0.08)
    with pytest.raises(ValueError, match="value_noise is 'gaussian'"):
        kmimic.sample_kmimic(static_vae, temporal_vae, gan, 4, params | {"value_noise": "gaussian"}, "cpu", 0, fill, ids)
    del temporal_vae.config["residual_lag1_autocorrelation"]  # a temporal VAE saved before it was stored
    with pytest.raises(ValueError, match="before residual_lag1_autocorrelation was stored; retrain"):
        kmimic.sample_kmimic(static_vae, temporal_vae, gan, 4, params | {"value_noise": "residual_ar1"}, "cpu", 0, fill, ids)


def test_residual_noise_is_stationary_ar1_with_the_given_std_and_autocorrelation():
    std, phi = torch.tensor([0.1, 0.3]), torch.tensor([0.0, 0.95])
    noise = kmimic.residual_noise(torch.Size((20000, 48, 2)), std, phi, torch.Generator().manual_seed(0)).numpy()
    for hour in (0, 24, 47):  # every hour has the marginal std: stationary from the first hour on
        np.testing.assert_allclose(noise[:, hour].std(axis=0), [0.1, 0.3], rtol=0.03)
    for lag in (1, 4):  # AR(1): corr(e_t, e_{t+k}) = φ^k
        corr = [np.corrcoef(noise[:, lag:, f].ravel(), noise[:, :-lag, f].ravel())[0, 1] for f in range(2)]
        np.testing.assert_allclose(corr, [0.0, 0.95**lag], atol=0.02)


def _tiny_kmimic(features: int = 3) -> tuple[dict, dict, nn.Module, nn.Module, nn.Module]:
    bundle = _random_bundle(n=32, features=features)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["kmimic"], steps=2)
    params["temporal_vae"].update(hidden=8, latent_dim=8)
    params["static_vae"].update(hidden=8, latent_dim=4)
    params["latent_gan"].update(hidden=16, noise_dim=4)
    static_vae = kmimic.fit_static_vae(bundle["static"], params["static_vae"], "cpu", 0)
    temporal_vae = kmimic.fit_temporal_vae(bundle["X"], bundle["mask"], params["temporal_vae"], "cpu", 0)
    gan = kmimic.fit_latent_gan(static_vae, temporal_vae, bundle["static"], bundle["X"], bundle["mask"], bundle["y"],
                                params["latent_gan"], "cpu", 0)
    return bundle, params, static_vae, temporal_vae, gan


def test_kmimic_sampling_is_seeded_and_draws_from_the_deterministic_decoders():
    bundle, params, static_vae, temporal_vae, gan = _tiny_kmimic()
    fill, ids = np.full(3, 0.5, np.float32), bundle["record_id"]

    def sample(seed: int, n: int = 64, **change) -> dict:
        return kmimic.sample_kmimic(static_vae, temporal_vae, gan, n, params | {"sample_batch_size": 16, **change}, "cpu", seed, fill, ids)

    first, again, other = sample(7), sample(7), sample(8)
    for key in ("X", "mask", "static", "y"):
        np.testing.assert_array_equal(first[key], again[key])  # a fixed seed: the same records
    assert not np.array_equal(first["X"], other["X"]) and not np.array_equal(first["mask"], other["mask"])
    # the decoders return the likelihood's parameters, deterministically: the same latent, the same output
    z = torch.randn(5, 8)
    with torch.no_grad():
        (v1, m1), (v2, m2) = temporal_vae.decode(z), temporal_vae.decode(z)
        assert torch.equal(v1, v2) and torch.equal(m1, m2) and torch.equal(static_vae.decode(z[:, :4]), static_vae.decode(z[:, :4]))
        # every record from one latent: the generator's output layer outputs 0, i.e. the latent mean
        gan.net[-1].weight.zero_()
        gan.net[-1].bias.zero_()
        latent = gan.latent_mean[None]
        split = gan.config["static_latent_dim"]
        values, mask_logits = temporal_vae.decode(latent[:, split:])
        values, rate = values[0].numpy(), torch.sigmoid(mask_logits[0]).numpy()
        static_logits = static_vae.decode(latent[:, :split])[0].numpy()
    mean = sample(3, n=2000, value_noise="none")
    observed = mean["mask"]
    # value_noise none: every observed value is the decoded mean itself ...
    np.testing.assert_allclose(mean["X"][observed], np.broadcast_to(values, mean["X"].shape)[observed], atol=1e-6)
    # ... yet the masks and the binary static are draws: they differ between records, at the decoded rates
    assert len({row.tobytes() for row in mean["mask"]}) > 1900
    np.testing.assert_allclose(mean["mask"].mean(axis=0), rate, atol=0.05)
    assert mean["static"][:, 0].mean() == pytest.approx(1 / (1 + np.exp(-static_logits[0])), abs=0.04)
    # value_noise residual_ar1 (the default): values are draws around the mean, so two records from one latent differ
    noisy = sample(3, n=2000)
    both = noisy["mask"][0] & noisy["mask"][1]
    assert both.any() and not np.allclose(noisy["X"][0][both], noisy["X"][1][both])
    assert np.abs(noisy["X"][noisy["mask"]] - np.broadcast_to(values, noisy["X"].shape)[noisy["mask"]]).mean() > 0.01


def test_kmimic_gan_learns_posterior_draws_not_posterior_means():
    bundle, params, static_vae, temporal_vae, _ = _tiny_kmimic()
    torch.manual_seed(0)
    first = kmimic.encode_latents(static_vae, temporal_vae, bundle["static"], bundle["X"], bundle["mask"], 16, torch.device("cpu"))
    second = kmimic.encode_latents(static_vae, temporal_vae, bundle["static"], bundle["X"], bundle["mask"], 16, torch.device("cpu"))
    with torch.no_grad():
        mu_static, _ = static_vae.encode(torch.as_tensor(bundle["static"]))
        mu_temporal, _ = temporal_vae.encode(torch.as_tensor(bundle["X"]), torch.as_tensor(bundle["mask"], dtype=torch.float32))
    means = torch.cat((mu_static, mu_temporal), dim=1)
    assert first.shape == means.shape and not torch.allclose(first, second)
    assert (first - means).abs().mean() > 0.1  # z = μ + σ·ε with σ ≈ 1 after two training steps


def test_a_one_hot_group_gets_exactly_one_column_the_highest_or_a_draw_in_proportion():
    spec = {"static_names": ["age", "gender", "icu_type=CCU", "icu_type=CSRU", "icu_type=MICU", "unit=A", "unit=B", "single=x"],
            "static_one_hot": {"icu_type": ["CCU", "CSRU", "MICU"], "unit": ["A", "B"], "single": ["x"]}}
    assert one_hot_groups(spec) == [[2, 3, 4], [5, 6]]  # a variable with one level is no group
    scores = torch.tensor([[0.9, 0.1, 0.6, 0.7, 0.2, 0.1, 0.2, 0.9], [0.2, 0.8, 0.1, 0.2, 0.3, 0.4, 0.3, 0.1]])
    chosen = one_per_group(scores > 0.5, scores, one_hot_groups(spec))
    assert chosen.tolist() == [[True, False, False, True, False, False, True, True],
                               [False, True, False, False, True, True, False, False]]  # other columns as they were
    groups = [[1, 2, 3]]
    probabilities = torch.tensor([[0.0, 0.1, 0.3, 0.6]]).repeat(20000, 1)
    drawn = one_per_group(torch.zeros(20000, 4, dtype=torch.bool), probabilities, groups, generator=torch.Generator().manual_seed(0))
    assert (drawn[:, 1:].sum(dim=1) == 1).all() and not drawn[:, 0].any()
    np.testing.assert_allclose(drawn[:, 1:].float().mean(dim=0).numpy(), [0.1, 0.3, 0.6], atol=0.015)


# ---------------------------------------------------------------------------------- lattice


def _lattice_bundles(n: int = 400, seed: int = 0) -> tuple[dict, dict]:
    """A real-like train bundle (feature 0: a 13-level score; 1: continuous with point masses at 0 (10 %)
    and at the gap fill 0.5 (30 %); 2: continuous; 3: 1 whenever observed) and a continuous synthetic one."""
    rng = np.random.default_rng(seed)
    hours, features = 48, 4
    mask = rng.random((n, hours, features)) < 0.3
    x = rng.random((n, hours, features)).astype(np.float32)
    x[:, :, 0] = (rng.integers(0, 13, (n, hours)) / 12).astype(np.float32)
    u = rng.random((n, hours))
    x[:, :, 1] = np.where(u < 0.1, 0.0, np.where(u < 0.4, 0.5, x[:, :, 1])).astype(np.float32)
    x[:, :, 3] = 1.0
    fill = np.array([0.5, 0.5, 0.5, 0.0], np.float32)
    X, delta = impute_like_features(x, mask, fill)
    static = np.c_[rng.random(n) < 0.4, rng.integers(30, 90, n) / 60.0, np.where(rng.random(n) < 0.45, 0.55, rng.random(n))]
    train = {"X": X, "mask": mask, "delta": delta, "static": static.astype(np.float32), "y": (rng.random(n) < 0.2).astype(np.int64),
             "record_id": np.arange(n, dtype=np.int64)}
    smask = rng.random((n, hours, features)) < 0.3
    sX, sdelta = impute_like_features(rng.random((n, hours, features)).astype(np.float32), smask, fill)
    synthetic = {"X": sX, "mask": smask, "delta": sdelta, "static": rng.random((n, 3)).astype(np.float32),
                 "y": train["y"][::-1].copy(), "record_id": np.arange(n, dtype=np.int64) + SYNTHETIC_ID_START}
    return train, synthetic


def test_lattice_learns_levels_point_masses_or_nothing():
    from ehr_adversarial.synthesis import lattice

    train, _ = _lattice_bundles()
    fitted = lattice.fit_lattice(train, **lattice.DEFAULTS)
    assert fitted["X"][0] == {"levels": [float(np.float32(k / 12)) for k in range(13)]}
    assert fitted["X"][1]["point_masses"] == [0.5, 0.0] and fitted["X"][1]["shares"] == pytest.approx([0.3, 0.1], abs=0.02)
    assert fitted["X"][2] == {} and fitted["X"][3] == {"levels": [1.0]}
    assert fitted["static"][0] == {"levels": [0.0, 1.0]}
    ages = np.asarray(fitted["static"][1]["levels"], np.float32)  # the commonest of 60 ages that hold 99 % of records
    assert len(ages) <= 60 and np.isin(train["static"][:, 1], ages).mean() >= 0.99
    assert list(fitted["static"][2]) == ["point_masses", "shares"]
    # `coverage`: the few levels must hold that share of the cells; `max_levels`: at most that many
    assert "levels" not in lattice.fit_column(np.r_[np.zeros(98), np.linspace(0.1, 1, 2)], coverage=1.0, max_levels=2)
    assert lattice.fit_column(np.r_[np.zeros(99), 0.3], coverage=0.99, max_levels=1) == {"levels": [0.0]}
    assert lattice.lattice_settings(True) == lattice.DEFAULTS and lattice.lattice_settings(False) is None
    assert lattice.lattice_settings({"max_levels": 20})["max_levels"] == 20
    with pytest.raises(ValueError, match="unknown lattice setting"):
        lattice.lattice_settings({"levels": 20})


def test_lattice_snaps_lattice_features_imposes_point_masses_and_leaves_the_rest():
    from ehr_adversarial.synthesis import lattice

    train, synthetic = _lattice_bundles()
    fill = np.array([0.5, 0.5, 0.5, 0.0], np.float32)
    before = copy.deepcopy(synthetic)
    snapped = lattice.snap_like_train(synthetic, train, fill, lattice.DEFAULTS)
    for key in before:  # not in place unless asked
        np.testing.assert_array_equal(synthetic[key], before[key])
    X, mask = snapped["X"], snapped["mask"]
    levels = np.unique(train["X"][:, :, 0][train["mask"][:, :, 0]])
    assert np.isin(X[:, :, 0][mask[:, :, 0]], levels).all() and (X[:, :, 3][mask[:, :, 3]] == 1.0).all()
    # the nearest level: no observed value moved by more than half a level's spacing
    assert np.abs(X[:, :, 0] - before["X"][:, :, 0])[mask[:, :, 0]].max() <= 1 / 24 + 1e-6
    # a feature with neither stays as it was, everywhere
    np.testing.assert_array_equal(X[:, :, 2], before["X"][:, :, 2])
    # point masses: the training share of the generated observed cells, taken from the nearest ones
    real1, synth1, old1 = train["X"][:, :, 1][train["mask"][:, :, 1]], X[:, :, 1][mask[:, :, 1]], before["X"][:, :, 1][mask[:, :, 1]]
    for mass in (0.0, 0.5):
        assert np.mean(synth1 == mass) == pytest.approx(np.mean(real1 == mass), abs=0.002)
    moved = synth1 != old1
    assert (synth1[moved] == 0.5).sum() + (synth1[moved] == 0.0).sum() == moved.sum()
    to_fill = synth1 == 0.5
    assert np.abs(old1[to_fill] - 0.5).max() <= np.abs(old1[~to_fill & ~(synth1 == 0.0)] - 0.5).min()
    np.testing.assert_array_equal(synth1[~moved], old1[~moved])
    # unobserved hours are re-imputed from the snapped values; mask, delta, labels untouched
    again, delta = impute_like_features(X, mask, fill)
    np.testing.assert_array_equal(again, X)
    np.testing.assert_array_equal(delta, before["delta"])
    for key in ("mask", "delta", "y", "record_id"):
        np.testing.assert_array_equal(snapped[key], before[key])
    # statics: binary and level columns on their lattice, the point mass at its share
    assert set(np.unique(snapped["static"][:, 0])) <= {0.0, 1.0}
    assert np.isin(snapped["static"][:, 1], np.unique(train["static"][:, 1])).all()
    assert np.mean(snapped["static"][:, 2] == np.float32(0.55)) == pytest.approx(np.mean(train["static"][:, 2] == np.float32(0.55)), abs=0.003)
    # in place: the bundle's own arrays, the same result
    in_place = lattice.snap_like_train(synthetic, train, fill, lattice.DEFAULTS, in_place=True)
    assert in_place["X"] is synthetic["X"]
    np.testing.assert_array_equal(in_place["X"], X)
    with pytest.raises(ValueError, match="another feature set"):
        lattice.apply_lattice({**before, "X": before["X"][:, :, :3], "mask": before["mask"][:, :, :3]},
                              lattice.fit_lattice(train), fill[:3])


def test_quantile_marginals_give_each_column_the_training_distribution_in_the_generated_order():
    from ehr_adversarial.synthesis import lattice

    train, synthetic = _lattice_bundles()
    fill = np.array([0.5, 0.5, 0.5, 0.0], np.float32)
    settings = lattice.lattice_settings({"marginals": "quantiles"})
    fitted = lattice.fit_lattice(train, **settings)
    assert [list(c) for c in fitted["X"]] == [["quantiles"], ["quantiles"], ["quantiles"], ["levels"]]
    assert [list(c) for c in fitted["static"]] == [["levels"], ["quantiles"], ["quantiles"]]  # a binary column is snapped
    mapped = lattice.apply_lattice(synthetic, fitted, fill)
    X, mask = mapped["X"], mapped["mask"]
    for j in range(3):
        real, generated, old = (train["X"][:, :, j][train["mask"][:, :, j]], X[:, :, j][mask[:, :, j]],
                                synthetic["X"][:, :, j][mask[:, :, j]])
        assert np.isin(generated, real).all()  # training values only: levels and point masses included
        # the same distribution: quantiles agree to the grid's resolution, the point masses' shares too
        probabilities = np.linspace(0.01, 0.99, 99)
        assert np.abs(np.quantile(generated, probabilities) - np.quantile(real, probabilities)).max() <= 1 / 12 + 1e-6
        for value in (0.0, 0.5):
            assert np.mean(generated == value) == pytest.approx(np.mean(real == value), abs=0.005)
        # the generator's order is kept: a monotone map of the generated values
        order = np.lexsort((generated, old))  # by generated value, then by the mapped one within ties
        assert (np.diff(generated[order]) >= 0).all()
    assert (X[:, :, 3][mask[:, :, 3]] == 1.0).all()
    assert set(np.unique(mapped["static"][:, 0])) <= {0.0, 1.0}
    assert np.mean(mapped["static"][:, 2] == np.float32(0.55)) == pytest.approx(np.mean(train["static"][:, 2] == np.float32(0.55)), abs=0.005)
    np.testing.assert_array_equal(impute_like_features(X, mask, fill)[0], X)  # unobserved hours re-imputed
    with pytest.raises(ValueError, match="lattice.marginals"):
        lattice.lattice_settings({"marginals": "ranks"})
    assert lattice.map_to_quantiles(np.array([3.0, 1.0, 2.0]), np.array([10.0, 20.0, 30.0])).tolist() == [30.0, 10.0, 20.0]
    tied = lattice.map_to_quantiles(np.zeros(1000), np.linspace(0, 1, 1001))  # ties: no order by position
    assert np.unique(tied).size > 900 and tied.min() < 0.01 and tied.max() > 0.99
    assert abs(np.corrcoef(np.arange(1000), tied)[0, 1]) < 0.1


def test_training_observation_counts_give_each_feature_the_training_count_distribution_without_moving_values():
    from ehr_adversarial.synthesis import lattice

    train, synthetic = _lattice_bundles()
    train["mask"][: int(0.7 * len(train["y"])), :, 2] = False  # feature 2 is never measured in 70 % of the records
    fill = np.array([0.5, 0.5, 0.5, 0.0], np.float32)
    train["X"], train["delta"] = impute_like_features(train["X"], train["mask"], fill)
    settings = lattice.lattice_settings({"observation_counts": "training"})
    fitted = lattice.fit_lattice(train, **settings)
    assert len(fitted["observation_counts"]) == 4
    out = lattice.apply_lattice(synthetic, fitted, fill)
    real_counts, counts, generated = train["mask"].sum(axis=1), out["mask"].sum(axis=1), synthetic["mask"].sum(axis=1)
    for j in range(4):  # the same distribution of observed hours per record, in the generator's order of records
        np.testing.assert_allclose(np.quantile(counts[:, j], np.linspace(0, 1, 21)),
                                   np.quantile(real_counts[:, j], np.linspace(0, 1, 21)), atol=1)
        order = np.lexsort((counts[:, j], generated[:, j]))
        assert (np.diff(counts[order, j]) >= 0).all()
    assert np.mean(counts[:, 2] == 0) == pytest.approx(0.7, abs=0.01)
    # hours are only removed from, or only added to, a record's feature; an added hour repeats the value shown there
    added, removed = out["mask"] & ~synthetic["mask"], synthetic["mask"] & ~out["mask"]
    assert added.any() and removed.any() and not (added.any(axis=1) & removed.any(axis=1)).any()
    for j in (1, 2):  # features whose values are otherwise kept (point masses aside)
        kept = ~removed[:, :, j].any(axis=1)
        free = np.asarray(fitted["X"][j].get("point_masses", []))
        same = np.isclose(out["X"][kept, :, j], synthetic["X"][kept, :, j]) | np.isin(out["X"][kept, :, j], free)
        assert same.all()
    again, delta = impute_like_features(out["X"], out["mask"], fill)
    np.testing.assert_array_equal(again, out["X"])
    np.testing.assert_array_equal(delta, out["delta"])  # delta follows the new mask
    for key in ("y", "record_id"):
        np.testing.assert_array_equal(out[key], synthetic[key])
    with pytest.raises(ValueError, match="lattice.observation_counts"):
        lattice.lattice_settings({"observation_counts": "real"})


def test_measurement_groups_measure_together_what_training_measures_together():
    from ehr_adversarial.synthesis import lattice

    train, synthetic = _lattice_bundles()
    fill = np.array([0.5, 0.5, 0.5, 0.0], np.float32)
    # feature 2 is drawn with feature 1: at a record's first draw always; later on in even records, never in odd ones
    mask = train["mask"]
    first = mask[:, :, 1] & (np.cumsum(mask[:, :, 1], axis=1) == 1)
    even = (np.arange(len(mask)) % 2 == 0)[:, None]
    mask[:, :, 2] = np.where(even, mask[:, :, 1], first)
    train["X"], train["delta"] = impute_like_features(train["X"], mask, fill)
    settings = lattice.lattice_settings({"observation_counts": "training", "measurement_groups": "training",
                                         "group_min_jaccard": 0.5})  # the pair's Jaccard index is about 0.55
    fitted = lattice.fit_lattice(train, **settings)
    (group,) = fitted["measurement_groups"]  # features 0 and 3 are drawn apart from everything
    assert group["members"] == [1, 2] and group["patterns"] == [[1, 0], [1, 1]]
    assert group["first_shares"] == [0.0, 1.0]
    np.testing.assert_allclose(group["transitions"][0], [1.0, 0.0])  # once alone, alone for good
    events = mask[:, :, 1].sum(axis=1)
    apart = np.sum(~even[:, 0] & (events >= 2))  # odd records: the first draw together, the second alone
    assert group["transitions"][1][0] == pytest.approx(apart / (apart + np.sum(np.maximum(events - 1, 0)[even[:, 0]])))

    grouped = lattice.impose_measurement_groups(synthetic["mask"], fitted["measurement_groups"])
    one, two = grouped[:, :, 1], grouped[:, :, 2]
    assert not (two & ~one).any()  # feature 2 only with feature 1: no training pattern has it alone
    # feature 2 holds a prefix of the group's events: the first always, then together until once apart
    together = two.sum(axis=1)
    np.testing.assert_array_equal(two, one & (np.cumsum(one, axis=1) <= together[:, None]))
    assert (together[one.any(axis=1)] >= 1).all() and (together < one.sum(axis=1)).any()
    # the group's number of events takes the training records' distribution
    np.testing.assert_allclose(np.quantile(one.sum(axis=1), np.linspace(0, 1, 21)),
                               np.quantile(mask[:, :, 1].sum(axis=1), np.linspace(0, 1, 21)), atol=1)
    np.testing.assert_array_equal(grouped[:, :, [0, 3]], synthetic["mask"][:, :, [0, 3]])

    # then every feature's count takes its training distribution, a member's hours staying within its group's events
    out = lattice.apply_lattice(synthetic, fitted, fill)
    for j in range(4):  # (the record that must gain the most may run out of its group's events)
        np.testing.assert_allclose(np.quantile(out["mask"][:, :, j].sum(axis=1), np.linspace(0, 0.95, 20)),
                                   np.quantile(mask[:, :, j].sum(axis=1), np.linspace(0, 0.95, 20)), atol=1)
    assert not (out["mask"][:, :, [1, 2]] & ~grouped[:, :, [1]]).any()
    again, delta = impute_like_features(out["X"], out["mask"], fill)
    np.testing.assert_array_equal(again, out["X"])
    np.testing.assert_array_equal(delta, out["delta"])  # delta follows the new mask
    # with the generator's counts, the events are the hours any member was drawn at
    generated = lattice.apply_lattice(synthetic, lattice.fit_lattice(train, **{**settings, "observation_counts": "generated"}), fill)
    np.testing.assert_array_equal(generated["mask"][:, :, 1], synthetic["mask"][:, :, 1] | synthetic["mask"][:, :, 2])
    np.testing.assert_array_equal(generated["mask"][:, :, [0, 3]], synthetic["mask"][:, :, [0, 3]])
    # a higher bar groups nothing, and the mask stays the generator's
    assert lattice.fit_lattice(train, **{**settings, "group_min_jaccard": 1.0})["measurement_groups"] == []
    with pytest.raises(ValueError, match="lattice.measurement_groups"):
        lattice.lattice_settings({"measurement_groups": "real"})
    with pytest.raises(ValueError, match="lattice.group_min_jaccard"):
        lattice.lattice_settings({"group_min_jaccard": 0})


def test_every_generator_stage_snaps_unless_the_lattice_is_off():
    from ehr_adversarial.synthesis import stages

    train, synthetic = _lattice_bundles()
    names = [f"f{j}" for j in range(4)]
    spec = {"feature_names": names, "scaler": {n: {"fill": f, "p05": 0.0, "p95": 1.0} for n, f in zip(names, [0.5, 0.5, 0.5, 0.0], strict=True)}}
    off = stages.snap_to_train_lattice(copy.deepcopy(synthetic), train, spec, {"lattice": False})
    np.testing.assert_array_equal(off["X"], synthetic["X"])
    on = stages.snap_to_train_lattice(copy.deepcopy(synthetic), train, spec, {})  # on by default
    assert np.isin(on["X"][:, :, 0][on["mask"][:, :, 0]], np.unique(train["X"][:, :, 0][train["mask"][:, :, 0]])).all()
    assert not np.array_equal(on["X"], synthetic["X"])


# ---------------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_ehrdiff_on_real_physionet_training_records(physionet2012_features: DataCatalog):
    train = physionet2012_features.load("features.full.model_input_train")
    splits = physionet2012_features.load("features.splits")
    assert train["X"].shape == (3200, 48, 36)
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["ehrdiff"])
    model = ehrdiff.fit_ehrdiff_on_bundle(train, params, "cpu", 0)  # the project's setting: label as a condition
    assert model.config["n_train_records"] == 3200
    assert model.n_columns == 2 * 48 * 36 + 8 and not model.config["layout"]["label_column"]
    assert model.config["label_rates"][1] == pytest.approx(train["y"].mean())
    spec = physionet2012_features.load("features.full.feature_spec")
    groups = one_hot_groups(spec)
    assert groups == [[4, 5, 6, 7]]  # icu_type=CCU, CSRU, MICU, SICU
    synthetic = ehrdiff.sample_ehrdiff(model, 50, params, "cpu", 0, scaled_fill(spec), splits["record_id"].to_numpy(), groups)
    _check_contract(synthetic, 50, 48, 36, 8, splits["record_id"].to_numpy())
    np.testing.assert_array_equal(synthetic["static"][:, 4:8].sum(axis=1), 1.0)  # one ICU type per record, as in real ones


@pytest.mark.slow
def test_synehrgy_on_real_physionet_training_records(physionet2012_features: DataCatalog):
    splits = physionet2012_features.load("features.splits")
    train_ids = splits.loc[splits["split"] == "train", "record_id"]
    timeseries = physionet2012_features.load("ingestion.timeseries")
    static = physionet2012_features.load("ingestion.static")
    train_ts = timeseries[timeseries["record_id"].isin(train_ids)]
    train_static = static[static["record_id"].isin(train_ids)]
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["synehrgy"]) | {"max_new_tokens": 200}
    tokenizer = RecordTokenizer.fit(train_ts, train_static)
    corpus = tokenizer.tokenize(train_ts, train_static)
    assert len(corpus["record_id"]) == 3200
    model = synehrgy.fit_gpt(corpus, tokenizer.vocab_size, params, "cpu", 0)
    generated = synehrgy.sample_corpus(model, 12, params, "cpu", 0, splits["record_id"].to_numpy(), tokenizer.grammar())
    assert len(generated["record_id"]) == 12 and generated["tokens"].dtype == np.int32
    decoded_ts, decoded_static, _ = tokenizer.detokenize(generated)
    # the grammar gives every record its covariates and a label: none is dropped
    assert len(decoded_static) == 12 and decoded_static["label"].isin([0, 1]).all()
    assert decoded_static["icu_type"].isin(["CCU", "CSRU", "MICU", "SICU"]).all()
    assert set(decoded_ts["parameter"]) <= set(tokenizer.variables)
    assert decoded_ts["minutes"].between(0, 2880).all() and decoded_ts["minutes"].dtype == np.int32


@pytest.mark.slow
def test_kmimic_on_real_physionet_training_records(physionet2012_features: DataCatalog):
    train = physionet2012_features.load("features.full.model_input_train")
    splits = physionet2012_features.load("features.splits")
    params = _quick(project_parameters()["synthesis"]["physionet2012"]["kmimic"])
    static_vae = kmimic.fit_static_vae(train["static"], params["static_vae"], "cpu", 0)
    temporal_vae = kmimic.fit_temporal_vae(train["X"], train["mask"], params["temporal_vae"], "cpu", 0)
    gan = kmimic.fit_latent_gan(static_vae, temporal_vae, train["static"], train["X"], train["mask"], train["y"], params["latent_gan"], "cpu", 0)
    # the label rate of the real train split: 443 deaths of 3200 (features pipeline, stratified)
    assert gan.label_rates[1].item() == pytest.approx(443 / 3200)
    spec = physionet2012_features.load("features.full.feature_spec")
    synthetic = kmimic.sample_kmimic(static_vae, temporal_vae, gan, 30, params, "cpu", 0, scaled_fill(spec),
                                     splits["record_id"].to_numpy(), one_hot_groups(spec))
    _check_contract(synthetic, 30, 48, 36, 8, splits["record_id"].to_numpy())
    np.testing.assert_array_equal(synthetic["static"][:, 4:8].sum(axis=1), 1.0)  # one ICU type per record


@pytest.mark.slow
def test_ehrdiff_with_the_real_mimic3_code_matrix(mimic3_features: DataCatalog, mimic3_demo_dir: Path):
    from ehr_adversarial.synthesis.stages import build_code_matrix

    train = mimic3_features.load("features.sun2018.model_input_train")
    static = mimic3_features.load("ingestion.static")
    codes = build_code_matrix(train, static, mimic3_features.load("ingestion.diagnoses"))
    # independently from the CSV: the 3-character categories (4 for E-codes) of the train stays' admissions
    raw = pd.read_csv(mimic3_demo_dir / "DIAGNOSES_ICD.csv.gz", dtype={"icd9_code": str}).dropna(subset=["icd9_code"])
    raw["category"] = np.where(raw["icd9_code"].str.startswith("E"), raw["icd9_code"].str[:4], raw["icd9_code"].str[:3])
    admissions = static.set_index("record_id").loc[train["record_id"], "hadm_id"]
    expected = [sorted(set(raw.loc[raw["hadm_id"] == h, "category"])) for h in admissions]
    assert codes["code_names"].tolist() == sorted(set().union(*map(set, expected)))
    assert [sorted(codes["code_names"][np.flatnonzero(row)].tolist()) for row in codes["codes"]] == expected
    assert codes["codes"].dtype == np.uint8

    params = _quick(project_parameters()["synthesis"]["mimic3"]["ehrdiff"])
    model = ehrdiff.fit_ehrdiff_on_bundle(train, params, "cpu", 0, codes["codes"], codes["code_names"].tolist())
    assert model.n_columns == 2 * 48 * 19 + 7 + len(codes["code_names"])  # the label is a condition, no column
    real_ids = mimic3_features.load("features.splits")["record_id"].to_numpy()
    fill = scaled_fill(mimic3_features.load("features.sun2018.feature_spec"))
    synthetic = ehrdiff.sample_ehrdiff(model, 20, params, "cpu", 0, fill, real_ids)
    _check_contract(synthetic, 20, 48, 19, 7, real_ids)
    assert synthetic["codes"].shape == (20, len(codes["code_names"])) and synthetic["codes"].dtype == np.uint8
    assert set(np.unique(synthetic["codes"])) <= {0, 1}
    np.testing.assert_array_equal(synthetic["code_names"], codes["code_names"])


def test_synehrgy_training_windows_start_at_records_in_the_asked_share():
    record_starts = torch.tensor([0, 500, 1000, 1500])
    generator = torch.Generator().manual_seed(0)
    aligned = synehrgy._window_starts(record_starts, 1800, 4000, 1.0, generator)
    assert set(aligned.tolist()) == {0, 500, 1000, 1500}
    mixed = synehrgy._window_starts(record_starts, 1800, 4000, 0.5, generator)
    share = torch.isin(mixed, record_starts).float().mean().item()
    assert 0.45 < share < 0.56  # half aligned, plus the few random starts that hit a record's start
    anywhere = synehrgy._window_starts(record_starts, 1800, 4000, 0.0, generator)
    assert torch.isin(anywhere, record_starts).float().mean().item() < 0.01 and anywhere.max() < 1800
