"""K-MIMIC-style generator: two VAEs and a conditional WGAN-GP in their joint latent space.

1. StaticVAE: an MLP VAE over the static vector s (S,) with a 32-dimensional latent.
2. TemporalVAE: a bidirectional-LSTM encoder over the hourly sequence [x, mask] (48, 2F) into a
   256-dimensional latent; an LSTM decoder reads the latent at every step and emits the values
   (sigmoid, in [0, 1]) and the mask logits.
3. LatentGenerator / LatentCritic: a WGAN-GP conditioned on the outcome y ∈ {0, 1}, trained on
   one posterior draw per training record from each encoder, z = μ + σ·ε, concatenated
   [z_static, z_temporal] and standardised (synthesis.kmimic.encode_latents). The gradient
   penalty is λ·(‖∇_ẑ C(ẑ, y)‖₂ − 1)² at random interpolates ẑ.

The decoders are deterministic in their latent: they return the parameters of each column's
likelihood, not a draw from it: the temporal decoder the values' means (sigmoid, [0, 1]) and the
mask logits, the static decoder the continuous columns' means and the binary columns' logits.
Sampling (synthesis.kmimic.sample_kmimic) is z ~ N(0, I) and y → G(z, y) → split → the two
decoders → a draw: Bernoulli masks and binary statics, and (value_noise) Gaussian noise around the
value means. The modules know nothing about Kedro; the training loops live in
ehr_adversarial.synthesis.kmimic.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


def mlp(dims: tuple[int, ...], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ N(0, I)) summed over latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()


class StaticVAE(nn.Module):
    """s (B, S) → latent (B, latent_dim) → reconstruction (B, S) (linear output)."""

    def __init__(self, n_static: int, latent_dim: int = 32, hidden: int = 128):
        super().__init__()
        self.encoder = mlp((n_static, hidden, hidden), nn.ReLU)
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = mlp((latent_dim, hidden, hidden, n_static), nn.ReLU)

    def encode(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.encoder(s))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Deterministic in z: continuous columns' means and binary columns' logits (B, S)."""
        return self.decoder(z)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(s)
        return self.decode(reparameterise(mu, logvar)), mu, logvar


class TemporalVAE(nn.Module):
    """[x, mask] (B, T, 2F) → latent (B, latent_dim) → values (B, T, F) in [0, 1] and mask logits."""

    def __init__(self, n_features: int, n_steps: int = 48, latent_dim: int = 256, hidden: int = 128, num_layers: int = 1):
        super().__init__()
        self.n_features = n_features
        self.n_steps = n_steps
        self.encoder = nn.LSTM(2 * n_features, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(2 * hidden * num_layers, latent_dim)
        self.to_logvar = nn.Linear(2 * hidden * num_layers, latent_dim)
        # the decoder sees the latent and a learned embedding of the hour at every step
        self.step_embedding = nn.Embedding(n_steps, 16)
        self.decoder = nn.LSTM(latent_dim + 16, hidden, num_layers=num_layers, batch_first=True)
        self.to_values = nn.Linear(hidden, n_features)
        self.to_mask = nn.Linear(hidden, n_features)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h_n, _) = self.encoder(torch.cat((x, mask.to(x.dtype)), dim=-1))
        h = torch.cat(tuple(h_n), dim=-1)  # every layer, both directions
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The likelihood's parameters at latent z, deterministic: the values' means in [0, 1] (B, T, F)
        and the mask logits (B, T, F). Sampling draws from them (synthesis.kmimic.sample_kmimic)."""
        steps = self.step_embedding.weight[None].expand(z.shape[0], -1, -1)
        h, _ = self.decoder(torch.cat((z[:, None, :].expand(-1, self.n_steps, -1), steps), dim=-1))
        return torch.sigmoid(self.to_values(h)), self.to_mask(h)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        mu, logvar = self.encode(x, mask)
        values, mask_logits = self.decode(reparameterise(mu, logvar))
        return values, mask_logits, mu, logvar


class LatentGenerator(nn.Module):
    """G(z, y): noise (B, noise_dim) and label (B,) → joint latent (B, latent_dim).

    The GAN works on standardised latents; the buffers hold that standardisation (so forward()
    returns latents in the VAEs' own scale) and the training label rate for sampling y.
    """

    def __init__(self, latent_dim: int, noise_dim: int = 128, hidden: int = 256, n_classes: int = 2):
        super().__init__()
        self.noise_dim = noise_dim
        self.label_embedding = nn.Embedding(n_classes, 16)
        self.net = mlp((noise_dim + 16, hidden, hidden, latent_dim), nn.ReLU)
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))
        self.register_buffer("label_rates", torch.full((n_classes,), 1.0 / n_classes))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Standardised latent (what the critic sees)."""
        return self.net(torch.cat((z, self.label_embedding(y)), dim=-1))

    def latent(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Latent in the VAEs' scale."""
        return self(z, y) * self.latent_std + self.latent_mean


class LatentCritic(nn.Module):
    """C(h, y): joint latent and label → an unbounded score (Wasserstein critic, no sigmoid)."""

    def __init__(self, latent_dim: int, hidden: int = 256, n_classes: int = 2):
        super().__init__()
        self.label_embedding = nn.Embedding(n_classes, 16)
        self.net = mlp((latent_dim + 16, hidden, hidden, 1), lambda: nn.LeakyReLU(0.2))

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat((h, self.label_embedding(y)), dim=-1)).squeeze(-1)


def gradient_penalty(critic: LatentCritic, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(‖∇ C(ẑ, y)‖₂ − 1)²] at ẑ = ε·real + (1 − ε)·fake."""
    eps = torch.rand(real.shape[0], 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed, y).sum(), mixed, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()
