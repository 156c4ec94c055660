"""EHRDiff: an EDM-preconditioned MLP denoiser for flat patient records.

A record is one vector x of D columns (binary codes and masks, continuous values in [0, 1]).
Following EDM (Karras et al. 2022) as EHRDiff uses it:

- the denoiser D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise) wraps an MLP F whose blocks add a
  projection of the noise-level embedding to their input, then apply ReLU and a Linear layer;
- training draws ln σ ~ N(P_mean, P_std²) = N(−1.2, 1.2²) and weights the squared error by
  (σ² + σ_d²)/(σ·σ_d)²;
- sampling integrates the probability-flow ODE with Heun's method over the EDM discretisation
  σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, then σ_N = 0.

σ_data may differ per column (a (D,) buffer): binary columns use 0.14 as EHRDiff does for the
MIMIC code matrix, continuous ones their own spread. The module knows nothing about Kedro.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class NoiseEmbedding(nn.Module):
    """Sinusoidal embedding of c_noise = ln(σ)/4, then a small MLP (as in EHRDiff)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device) / max(half - 1, 1))
        angles = c_noise[:, None].float() * freqs[None, :]
        return self.mlp(torch.cat((angles.sin(), angles.cos()), dim=-1))


class Block(nn.Module):
    """h = Linear(ReLU(x + W_t·t_emb))."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int):
        super().__init__()
        self.time_proj = nn.Linear(time_dim, dim_in)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(dim_in, dim_out))

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        return self.out(x + self.time_proj(t_emb))


class MLPDenoiserNet(nn.Module):
    """F(x, c_noise): D → hidden_dims[0] → … → hidden_dims[-1] → D, every block time-conditioned."""

    def __init__(self, n_columns: int, hidden_dims: tuple[int, ...] = (1024, 384, 384, 384, 1024), time_dim: int = 384):
        super().__init__()
        dims = (n_columns, *hidden_dims, n_columns)
        self.embed = NoiseEmbedding(time_dim)
        self.blocks = nn.ModuleList(Block(a, b, time_dim) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        t_emb = self.embed(c_noise)
        for block in self.blocks:
            x = block(x, t_emb)
        return x


class EHRDiff(nn.Module):
    """EDM-preconditioned denoiser D(x; σ) around MLPDenoiserNet.

    `sigma_data` is a scalar or one value per column.
    """

    def __init__(
        self,
        n_columns: int,
        hidden_dims: tuple[int, ...] = (1024, 384, 384, 384, 1024),
        time_dim: int = 384,
        sigma_data: float | list[float] = 0.14,
    ):
        super().__init__()
        self.n_columns = n_columns
        self.net = MLPDenoiserNet(n_columns, tuple(hidden_dims), time_dim)
        sigma_data = torch.as_tensor(sigma_data, dtype=torch.float32).expand(n_columns).clone()
        self.register_buffer("sigma_data", sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Denoised estimate of x given noise level σ of shape (B,) or (B, 1)."""
        sigma = sigma.reshape(-1, 1).to(x.dtype)
        sd = self.sigma_data.to(x.dtype)
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
        c_in = 1.0 / torch.sqrt(sigma**2 + sd**2)
        c_noise = sigma.log().reshape(-1) / 4.0
        return c_skip * x + c_out * self.net((c_in * x).float(), c_noise).to(x.dtype)

    def loss(self, x: torch.Tensor, p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
        """EDM loss: ln σ ~ N(p_mean, p_std²), weight (σ² + σ_d²)/(σ·σ_d)²."""
        sigma = torch.exp(torch.randn(x.shape[0], 1, device=x.device) * p_std + p_mean)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        denoised = self(x + torch.randn_like(x) * sigma, sigma)
        return (weight * (denoised - x) ** 2).mean()


def edm_sigmas(num_steps: int = 32, sigma_min: float = 0.02, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """The EDM noise levels σ_0 > … > σ_{N−1}, then σ_N = 0 (float64)."""
    i = torch.arange(num_steps, dtype=torch.float64)
    steps = (sigma_max ** (1 / rho) + i / max(num_steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat((steps, torch.zeros(1, dtype=torch.float64)))


@torch.no_grad()
def heun_sample(
    model: EHRDiff,
    latents: torch.Tensor,
    num_steps: int = 32,
    sigma_min: float = 0.02,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """Deterministic EDM sampler (Heun, 2nd order; Euler on the last step). latents ~ N(0, I)."""
    sigmas = edm_sigmas(num_steps, sigma_min, sigma_max, rho).to(latents.device)
    x = latents.to(torch.float64) * sigmas[0]
    batch = x.shape[0]
    for sigma_cur, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        denoised = model(x, sigma_cur.expand(batch)).to(torch.float64)
        d_cur = (x - denoised) / sigma_cur
        x_next = x + (sigma_next - sigma_cur) * d_cur
        if sigma_next > 0:
            denoised = model(x_next, sigma_next.expand(batch)).to(torch.float64)
            d_next = (x_next - denoised) / sigma_next
            x_next = x + (sigma_next - sigma_cur) * (0.5 * d_cur + 0.5 * d_next)
        x = x_next
    return x.float()
