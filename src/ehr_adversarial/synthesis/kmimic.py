"""K-MIMIC training (three stages) and sampling.

1. fit_static_vae: the static vector (N, S); squared error on continuous columns, binary
   cross-entropy on binary ones (gender, ICU-type one-hots: the decoder gives their logits), plus β·KL.
2. fit_temporal_vae: [X, mask] (N, 48, 2F); squared error on X, binary cross-entropy on the mask,
   plus β·KL.
3. fit_latent_gan: latents of the training records drawn from both encoders' posteriors
   (z = μ + σ·ε, not μ alone: the decoders were trained on such draws, and a collapsed dimension's
   μ ≈ 0 decodes to something no record looks like), concatenated and standardised, are the "real"
   data of a WGAN-GP conditioned on y (λ_gp 10, 5 critic steps per
   generator step, Adam 1e-4 with β (0, 0.9)).
Sampling draws y from the training label rates, z ~ N(0, I), decodes G(z, y) with both decoders,
draws each mask cell and each binary static from its decoded probability (Bernoulli: a rate of 0.3
stays 0.3 instead of rounding to 0), and clips continuous statics to their training range. With
`value_noise: residual_ar1` (the default) each hourly value is drawn from the likelihood the
squared error implies: the decoded mean plus Gaussian noise with the feature's residual std on
observed training cells, autocorrelated across hours like the training residuals (AR(1), both
stored with the temporal VAE), clipped to [0, 1]; the mean alone is too smooth, and independent
noise (`residual`) jitters hour to hour.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ehr_adversarial.models.kmimic import (
    LatentCritic,
    LatentGenerator,
    StaticVAE,
    TemporalVAE,
    gradient_penalty,
    kl_divergence,
    reparameterise,
)
from ehr_adversarial.torch_utils import resolve_device, seed_everything

from .common import (
    BundleWriter,
    binary_columns,
    bound_columns,
    build_generator,
    check_finite,
    one_per_group,
    random_batches,
    sample_in_chunks,
)

logger = logging.getLogger(__name__)


def _logit(p: np.ndarray) -> torch.Tensor:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    return torch.as_tensor(np.log(p / (1 - p)), dtype=torch.float32)


def _train_vae(model, batches, loss_fn, params, desc):
    optimizer = torch.optim.Adam(model.parameters(), lr=params["learning_rate"])
    model.train()
    for step, index in batches:
        loss = loss_fn(index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            logger.info("%s step %d: loss %.4f", desc, step, loss.item())
    return model.cpu().eval()


def fit_static_vae(static: np.ndarray, params: Mapping[str, Any], device: str, seed: int) -> StaticVAE:
    """Stage 1: the static VAE on the training statics."""
    check_finite("static", static)
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    config = {
        "architecture": "kmimic_static_vae",
        "hyperparameters": {"n_static": int(static.shape[1]), "latent_dim": int(params["latent_dim"]), "hidden": int(params["hidden"])},
        "binary": binary_columns(static).tolist(),
        "low": static.min(axis=0).tolist(),
        "high": static.max(axis=0).tolist(),
    }
    model = build_generator(config)
    # start the decoder at the training means (logits for binary columns): short runs converge faster
    means = static.mean(axis=0)
    with torch.no_grad():
        model.decoder[-1].bias.copy_(torch.where(torch.as_tensor(config["binary"]), _logit(means), torch.as_tensor(means, dtype=torch.float32)))
    model = model.to(torch_device)
    data = torch.as_tensor(static, dtype=torch.float32, device=torch_device)
    binary = torch.as_tensor(config["binary"], device=torch_device)

    def loss_fn(index):
        s = data[index.to(torch_device)]
        recon, mu, logvar = model(s)
        error = F.mse_loss(recon[:, ~binary], s[:, ~binary], reduction="sum")
        error = error + F.binary_cross_entropy_with_logits(recon[:, binary], s[:, binary], reduction="sum")
        return error / len(s) + params["beta"] * kl_divergence(mu, logvar)

    batches = random_batches(len(data), params["batch_size"], params["max_steps"], generator, "K-MIMIC static VAE")
    trained = _train_vae(model, batches, loss_fn, params, "static VAE")
    trained.config = config
    return trained


def fit_temporal_vae(X: np.ndarray, mask: np.ndarray, params: Mapping[str, Any], device: str, seed: int) -> TemporalVAE:
    """Stage 2: the temporal VAE on the training tensors."""
    check_finite("X", X)
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    config = {
        "architecture": "kmimic_temporal_vae",
        "hyperparameters": {
            "n_features": int(X.shape[2]),
            "n_steps": int(X.shape[1]),
            "latent_dim": int(params["latent_dim"]),
            "hidden": int(params["hidden"]),
            "num_layers": int(params["num_layers"]),
        },
    }
    model = build_generator(config)
    with torch.no_grad():  # start at the training means: values through the sigmoid, mask rates as logits
        model.to_values.bias.copy_(_logit(X.mean(axis=(0, 1))))
        model.to_mask.bias.copy_(_logit(mask.mean(axis=(0, 1))))
    model = model.to(torch_device)
    data_x = torch.as_tensor(X, dtype=torch.float32, device=torch_device)
    data_m = torch.as_tensor(mask, dtype=torch.float32, device=torch_device)

    def loss_fn(index):
        index = index.to(torch_device)
        x, m = data_x[index], data_m[index]
        values, mask_logits, mu, logvar = model(x, m)
        recon = F.mse_loss(values, x, reduction="sum") + F.binary_cross_entropy_with_logits(mask_logits, m, reduction="sum")
        return recon / len(x) + params["beta"] * kl_divergence(mu, logvar)

    batches = random_batches(len(data_x), params["batch_size"], params["max_steps"], generator, "K-MIMIC temporal VAE")
    trained = _train_vae(model, batches, loss_fn, params, "temporal VAE")
    trained.config = {**config, **observed_residual_statistics(trained, X, mask, int(params["batch_size"]))}
    return trained


@torch.no_grad()
def observed_residual_statistics(model: TemporalVAE, X: np.ndarray, mask: np.ndarray, batch_size: int) -> dict[str, list[float]]:
    """Per feature, of r = x − (decoded posterior mean) on the training records:

    - `residual_std`: the root-mean-square of r over observed cells, the noise of the Gaussian
      likelihood that the squared-error loss implies;
    - `residual_lag1_autocorrelation`: the correlation of r in consecutive hours both observed.

    Sampling adds the noise back (`value_noise`, as TVAE samples with its learnt σ): the decoder's
    mean alone is a smoothed trajectory, and independent noise makes it jitter hour to hour where
    the real residual is mostly a slow drift away from the decoded level."""
    n_features = X.shape[2]
    squared, observed = torch.zeros(n_features, dtype=torch.float64), torch.zeros(n_features, dtype=torch.float64)
    lagged, lead_sq, lag_sq = (torch.zeros(n_features, dtype=torch.float64) for _ in range(3))
    for start in range(0, len(X), batch_size):
        x = torch.as_tensor(X[start : start + batch_size], dtype=torch.float32)
        m = torch.as_tensor(mask[start : start + batch_size], dtype=torch.float32)
        mu, _ = model.encode(x, m)
        values, _ = model.decode(mu)
        r = ((x - values) * m).double()
        squared += (r**2).sum(dim=(0, 1))
        observed += m.sum(dim=(0, 1)).double()
        pair = (m[:, 1:] * m[:, :-1]).double()
        lagged += (r[:, 1:] * r[:, :-1] * pair).sum(dim=(0, 1))
        lead_sq += (r[:, 1:] ** 2 * pair).sum(dim=(0, 1))
        lag_sq += (r[:, :-1] ** 2 * pair).sum(dim=(0, 1))
    autocorrelation = torch.where(lead_sq * lag_sq > 0, lagged / (lead_sq * lag_sq).sqrt().clamp(min=1e-12), torch.zeros(()))
    return {
        "residual_std": (squared / observed.clamp(min=1)).sqrt().tolist(),
        "residual_lag1_autocorrelation": autocorrelation.clamp(0.0, 0.999).tolist(),
    }


def residual_noise(shape: torch.Size, std: torch.Tensor, autocorrelation: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, T, F) stationary AR(1) noise per feature: e_0 = σ·ε_0, e_t = φ·e_{t−1} + σ·√(1 − φ²)·ε_t,
    so every hour has std σ and consecutive hours correlation φ (φ = 0: independent noise)."""
    eps = torch.randn(shape, generator=generator) * std
    noise = torch.empty(shape)
    noise[:, 0] = eps[:, 0]
    innovation = (1.0 - autocorrelation**2).sqrt()
    for t in range(1, shape[1]):
        noise[:, t] = autocorrelation * noise[:, t - 1] + innovation * eps[:, t]
    return noise


@torch.no_grad()
def encode_latents(static_vae: StaticVAE, temporal_vae: TemporalVAE, static: np.ndarray, X: np.ndarray, mask: np.ndarray, batch_size: int, device: torch.device) -> torch.Tensor:
    """One posterior draw [z_static, z_temporal] per record (N, latent_s + latent_t), on CPU."""
    static_vae, temporal_vae = static_vae.to(device).eval(), temporal_vae.to(device).eval()
    parts = []
    for start in range(0, len(X), batch_size):
        rows = slice(start, start + batch_size)
        z_s = reparameterise(*static_vae.encode(torch.as_tensor(static[rows], dtype=torch.float32, device=device)))
        z_t = reparameterise(*temporal_vae.encode(
            torch.as_tensor(X[rows], dtype=torch.float32, device=device), torch.as_tensor(mask[rows], dtype=torch.float32, device=device)
        ))
        parts.append(torch.cat((z_s, z_t), dim=1).cpu())
    static_vae.cpu(), temporal_vae.cpu()
    return torch.cat(parts)


def fit_latent_gan(
    static_vae: StaticVAE,
    temporal_vae: TemporalVAE,
    static: np.ndarray,
    X: np.ndarray,
    mask: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, Any],
    device: str,
    seed: int,
) -> LatentGenerator:
    """Stage 3: the conditional WGAN-GP on the two encoders' latents of the training records."""
    generator = seed_everything(seed)
    torch_device = resolve_device(device)
    latents = encode_latents(static_vae, temporal_vae, static, X, mask, params["batch_size"], torch_device)
    mean, std = latents.mean(0), latents.std(0).clamp_min(1e-6)
    real = ((latents - mean) / std).to(torch_device)
    labels = torch.as_tensor(y, dtype=torch.long, device=torch_device)
    n_classes = int(max(2, int(labels.max()) + 1))
    config = {
        "architecture": "kmimic_latent_generator",
        "hyperparameters": {
            "latent_dim": int(real.shape[1]),
            "noise_dim": int(params["noise_dim"]),
            "hidden": int(params["hidden"]),
            "n_classes": n_classes,
        },
        "static_latent_dim": int(static_vae.to_mu.out_features),
        "n_train_records": int(len(real)),
    }
    gen = build_generator(config).to(torch_device)
    gen.latent_mean.copy_(mean)
    gen.latent_std.copy_(std)
    gen.label_rates.copy_(torch.bincount(labels, minlength=n_classes).float() / len(labels))
    critic = LatentCritic(real.shape[1], int(params["hidden"]), n_classes).to(torch_device)
    betas = tuple(float(b) for b in params["betas"])
    opt_g = torch.optim.Adam(gen.parameters(), lr=params["learning_rate"], betas=betas)
    opt_c = torch.optim.Adam(critic.parameters(), lr=params["learning_rate"], betas=betas)
    batches = random_batches(len(real), params["batch_size"], params["max_steps"] * params["critic_steps"], generator, "K-MIMIC WGAN-GP (critic steps)")
    for step, index in batches:
        index = index.to(torch_device)
        h, c = real[index], labels[index]
        z = torch.randn(len(h), gen.noise_dim, device=torch_device)
        fake = gen(z, c).detach()
        loss_c = critic(fake, c).mean() - critic(h, c).mean() + params["lambda_gp"] * gradient_penalty(critic, h, fake, c)
        opt_c.zero_grad(set_to_none=True)
        loss_c.backward()
        opt_c.step()
        if (step + 1) % params["critic_steps"] == 0:
            z = torch.randn(len(h), gen.noise_dim, device=torch_device)
            loss_g = -critic(gen(z, c), c).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            if step // params["critic_steps"] % 100 == 0:
                logger.info("WGAN-GP generator step %d: critic %.4f, generator %.4f", step // params["critic_steps"], loss_c.item(), loss_g.item())
    trained = gen.cpu().eval()
    trained.config = config
    return trained


# none: the decoder's mean; residual: + independent Gaussian noise of the residual std;
# residual_ar1: + AR(1) noise of that std and the residual's lag-1 autocorrelation.
VALUE_NOISE = ("none", "residual", "residual_ar1")


def sample_kmimic(
    static_vae: StaticVAE, temporal_vae: TemporalVAE, latent_generator: LatentGenerator, n_samples: int,
    params: Mapping[str, Any], device: str, seed: int, fill: np.ndarray, real_ids: np.ndarray,
    static_groups: Sequence[Sequence[int]] = (),
) -> dict[str, np.ndarray]:
    """n_samples synthetic records (the contract's bundle): decoded generator latents, chunk by chunk. Each
    one-hot group of static columns (`static_groups`, common.one_hot_groups) is one categorical draw, with
    probabilities proportional to its columns' decoded probabilities."""
    split = latent_generator.config["static_latent_dim"]
    value_noise = params.get("value_noise", "none")
    if value_noise not in VALUE_NOISE:
        raise ValueError(f"synthesis kmimic value_noise is {value_noise!r}; use one of {', '.join(VALUE_NOISE)}")
    needs = {"residual": "residual_std", "residual_ar1": "residual_lag1_autocorrelation"}.get(value_noise)
    if needs and needs not in temporal_vae.config:
        raise ValueError(f"synthesis kmimic value_noise is {value_noise}, but the temporal VAE was trained before "
                         f"{needs} was stored; retrain it (kedro run --pipelines synthesis --namespaces <source>.kmimic)")
    residual_std = torch.as_tensor(temporal_vae.config.get("residual_std", 0.0), dtype=torch.float32)
    autocorrelation = torch.as_tensor(temporal_vae.config.get("residual_lag1_autocorrelation", 0.0) if value_noise == "residual_ar1" else 0.0,
                                      dtype=torch.float32)

    def draw(n: int, generator: torch.Generator, torch_device: torch.device) -> dict[str, np.ndarray]:
        y = torch.multinomial(latent_generator.label_rates.cpu(), n, replacement=True, generator=generator)
        z = torch.randn(n, latent_generator.noise_dim, generator=generator)
        h = latent_generator.latent(z.to(torch_device), y.to(torch_device))
        static = static_vae.decode(h[:, :split])
        probabilities = torch.sigmoid(static)
        draws = torch.rand(static.shape, generator=generator).to(torch_device) < probabilities
        draws = one_per_group(draws, probabilities, static_groups, generator=generator)
        static = bound_columns(static, draws, static_vae.config)
        values, mask_logits = temporal_vae.decode(h[:, split:])
        if value_noise != "none":  # a draw from the likelihood, not its mean (see observed_residual_statistics)
            values = (values + residual_noise(values.shape, residual_std, autocorrelation, generator).to(torch_device)).clamp(0.0, 1.0)
        uniform = torch.rand(mask_logits.shape, generator=generator).to(torch_device)
        mask = uniform < torch.sigmoid(mask_logits)
        return {"X": values.cpu().numpy(), "mask": mask.cpu().numpy(), "static": static.cpu().numpy(), "y": y.numpy()}

    n_static = static_vae.decoder[-1].out_features
    writer = BundleWriter(n_samples, temporal_vae.n_steps, temporal_vae.n_features, n_static, fill, None, params["max_in_memory_mb"])
    models = (static_vae, temporal_vae, latent_generator)
    sample_in_chunks(models, writer, params, device, seed, "K-MIMIC sampling", draw)
    return writer.bundle(real_ids)
