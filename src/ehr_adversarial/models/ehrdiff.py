"""EHRDiff: an EDM-preconditioned denoiser for flat patient records.

A record is one vector x of D columns (binary codes and masks, continuous values in [0, 1]).
Following EDM (Karras et al. 2022) as EHRDiff uses it:

- the denoiser D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise) wraps a network F: EHRDiff's MLP,
  whose blocks add a projection of the noise-level embedding to their input, then apply ReLU and
  a Linear layer (`denoiser="mlp"`), or ours, a transformer over the hours of the record
  (`denoiser="temporal"`), for vectors laid out as [X (T·F), mask (T·F), the rest];
- training draws ln σ ~ N(P_mean, P_std²) = N(−1.2, 1.2²) and weights the squared error by
  (σ² + σ_d²)/(σ·σ_d)²;
- sampling integrates the probability-flow ODE with Heun's method over the EDM discretisation
  σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, then σ_N = 0;
- optionally (`n_classes` > 0) the denoiser is conditioned on a class label, with "no label" as
  one more class, so that sampling can use classifier-free guidance (Ho & Salimans 2022).

σ_data may differ per column (a (D,) buffer): binary columns use 0.14 as EHRDiff does for the
MIMIC code matrix, continuous ones their own spread. The module knows nothing about Kedro.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

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
        self.blocks = nn.ModuleList(Block(a, b, time_dim) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        t_emb = self.embed(c_noise) if cond is None else self.embed(c_noise) + cond
        for block in self.blocks:
            x = block(x, t_emb)
        return x


class TemporalDenoiserNet(nn.Module):
    """F(x, c_noise) for x = [X (T·F), mask (T·F), rest (statics, label, codes)].

    The MLP sees the 48 hours as unrelated columns and never learns how smooth a trajectory is or
    that a variable unmeasured in one hour tends to stay unmeasured; here every `patch_hours`
    consecutive hours are one token ([X, mask] of those hours → d_model, as a vision transformer
    patches an image), the rest is one more token, and pre-norm transformer layers let every
    stretch of the stay attend to every other. The noise embedding is added to the tokens before
    each layer. Patches keep the cost near the MLP's on a CPU (48 hourly tokens cost ~10× more).
    """

    def __init__(
        self,
        n_columns: int,
        n_hours: int,
        n_features: int,
        d_model: int = 128,
        n_layers: int = 3,
        n_heads: int = 4,
        time_dim: int = 128,
        patch_hours: int = 4,
    ):
        super().__init__()
        self.n_hours, self.n_features, self.patch_hours = n_hours, n_features, patch_hours
        n_rest = n_columns - 2 * n_hours * n_features
        if n_rest < 1:
            raise ValueError(f"a temporal EHRDiff needs columns beyond X and mask: {n_columns} columns for {n_hours} x {n_features}")
        if patch_hours < 1 or n_hours % patch_hours:
            raise ValueError(f"patch_hours must divide the {n_hours} hours of a record, got {patch_hours}")
        patch = 2 * n_features * patch_hours
        self.hour_in = nn.Linear(patch, d_model)
        self.rest_in = nn.Linear(n_rest, d_model)
        self.position = nn.Parameter(torch.randn(n_hours // patch_hours + 1, d_model) * 0.02)
        self.embed = NoiseEmbedding(time_dim)
        self.time_proj = nn.Linear(time_dim, d_model)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.hour_out = nn.Linear(d_model, patch)
        self.rest_out = nn.Linear(d_model, n_rest)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        batch, T, F, P = x.shape[0], self.n_hours, self.n_features, self.patch_hours
        # (B, T, 2F) hours → (B, T/P, P·2F) patches
        hours = torch.cat((x[:, : T * F].reshape(batch, T, F), x[:, T * F : 2 * T * F].reshape(batch, T, F)), dim=-1)
        patches = hours.reshape(batch, T // P, P * 2 * F)
        h = torch.cat((self.rest_in(x[:, 2 * T * F :]).unsqueeze(1), self.hour_in(patches)), dim=1) + self.position
        t_emb = self.embed(c_noise) if cond is None else self.embed(c_noise) + cond
        t_emb = self.time_proj(t_emb).unsqueeze(1)
        for layer in self.layers:
            h = layer(h + t_emb)
        h = self.norm(h)
        hours = self.hour_out(h[:, 1:]).reshape(batch, T, 2 * F)
        return torch.cat((hours[..., :F].reshape(batch, T * F), hours[..., F:].reshape(batch, T * F), self.rest_out(h[:, 0])), dim=1)


class EHRDiff(nn.Module):
    """EDM-preconditioned denoiser D(x; σ) around MLPDenoiserNet or TemporalDenoiserNet.

    `sigma_data` is a scalar or one value per column. The temporal denoiser needs the record's
    `n_hours` and `n_features` (its vector's layout). With `n_classes` > 0 the denoiser is
    conditioned on a class label (an embedding added to the noise embedding); label index
    `n_classes` means "no label", the unconditional model that classifier-free guidance needs.
    """

    def __init__(
        self,
        n_columns: int,
        hidden_dims: tuple[int, ...] = (1024, 384, 384, 384, 1024),
        time_dim: int = 384,
        sigma_data: float | list[float] = 0.14,
        denoiser: str = "mlp",
        n_hours: int = 0,
        n_features: int = 0,
        d_model: int = 128,
        n_layers: int = 3,
        n_heads: int = 4,
        patch_hours: int = 4,
        n_classes: int = 0,
    ):
        super().__init__()
        self.n_columns, self.n_classes = n_columns, n_classes
        self.label_embed = nn.Embedding(n_classes + 1, time_dim) if n_classes else None
        if denoiser == "mlp":
            self.net = MLPDenoiserNet(n_columns, tuple(hidden_dims), time_dim)
        elif denoiser == "temporal":
            self.net = TemporalDenoiserNet(n_columns, n_hours, n_features, d_model, n_layers, n_heads, time_dim, patch_hours)
        else:
            raise ValueError(f"EHRDiff denoiser is {denoiser!r}; use 'mlp' (EHRDiff's) or 'temporal'")
        sigma_data = torch.as_tensor(sigma_data, dtype=torch.float32).expand(n_columns).clone()
        self.register_buffer("sigma_data", sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Denoised estimate of x given noise level σ of shape (B,) or (B, 1) (and, for a
        conditional model, labels (B,) in 0 … n_classes; None or n_classes: unconditional)."""
        sigma = sigma.reshape(-1, 1).to(x.dtype)
        sd = self.sigma_data.to(x.dtype)
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
        c_in = 1.0 / torch.sqrt(sigma**2 + sd**2)
        c_noise = sigma.log().reshape(-1) / 4.0
        cond = None
        if self.label_embed is not None:
            if label is None:
                label = torch.full((x.shape[0],), self.n_classes, dtype=torch.long, device=x.device)
            cond = self.label_embed(label)
        return c_skip * x + c_out * self.net((c_in * x).float(), c_noise, cond).to(x.dtype)

    def loss(
        self,
        x: torch.Tensor,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        label: torch.Tensor | None = None,
        label_dropout: float = 0.0,
        column_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """EDM loss: ln σ ~ N(p_mean, p_std²), weight (σ² + σ_d²)/(σ·σ_d)² (times `column_weight`
        (D,), if given). A conditional model's labels are replaced by "no label" with probability
        `label_dropout` (classifier-free guidance)."""
        sigma = torch.exp(torch.randn(x.shape[0], 1, device=x.device) * p_std + p_mean)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        if column_weight is not None:
            weight = weight * column_weight
        noised = x + torch.randn_like(x) * sigma
        if label is not None and label_dropout > 0:
            dropped = torch.rand(label.shape, device=label.device) < label_dropout
            label = torch.where(dropped, torch.full_like(label, self.n_classes), label)
        denoised = self(noised, sigma, label)
        return (weight * (denoised - x) ** 2).mean()

    def guided(self, label: torch.Tensor, guidance: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The denoiser of the labelled records, for heun_sample: D(x; σ, label), or with
        classifier-free guidance w > 0, (1 + w)·D(x; σ, label) − w·D(x; σ, no label)."""
        if self.label_embed is None:
            raise ValueError("this EHRDiff was trained without labels (label: column); it cannot be conditioned")

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            conditional = self(x, sigma, label)
            if guidance == 0:
                return conditional
            return (1.0 + guidance) * conditional - guidance * self(x, sigma, None)

        return denoise


def edm_sigmas(num_steps: int = 32, sigma_min: float = 0.02, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """The EDM noise levels σ_0 > … > σ_{N−1}, then σ_N = 0 (float64)."""
    i = torch.arange(num_steps, dtype=torch.float64)
    steps = (sigma_max ** (1 / rho) + i / max(num_steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat((steps, torch.zeros(1, dtype=torch.float64)))


@torch.no_grad()
def heun_sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    num_steps: int = 32,
    sigma_min: float = 0.02,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """Deterministic EDM sampler (Heun, 2nd order; Euler on the last step). latents ~ N(0, I);
    `model` is a denoiser D(x, σ): an EHRDiff, or EHRDiff.guided(labels) for labelled records."""
    sigmas = edm_sigmas(num_steps, sigma_min, sigma_max, rho).to(latents.device)
    x = latents.to(torch.float64) * sigmas[0]
    batch = x.shape[0]
    for sigma_cur, sigma_next in itertools.pairwise(sigmas):
        denoised = model(x, sigma_cur.expand(batch)).to(torch.float64)
        d_cur = (x - denoised) / sigma_cur
        x_next = x + (sigma_next - sigma_cur) * d_cur
        if sigma_next > 0:
            denoised = model(x_next, sigma_next.expand(batch)).to(torch.float64)
            d_next = (x_next - denoised) / sigma_next
            x_next = x + (sigma_next - sigma_cur) * (0.5 * d_cur + 0.5 * d_next)
        x = x_next
    return x.float()
