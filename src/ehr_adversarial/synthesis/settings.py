"""The `synthesis.<source>` parameter block as pydantic models, one per generator (checked before a
run; the generators still take plain dicts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from ehr_adversarial.synthesis.ehrdiff import LABEL_MODES, TIME_BASES
from ehr_adversarial.synthesis.kmimic import VALUE_NOISE

PositiveInt = Annotated[int, Field(ge=1)]
Probability = Annotated[float, Field(ge=0, le=1)]
# A number, `auto` (pooled std of that kind's train columns) or `column` (each column's own std).
SigmaData = Literal["auto", "column"] | Annotated[float, Field(gt=0)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sampling(_Block):
    """What every generator block has: how many records to draw and in what chunks."""

    # An integer, or `train` for as many as the training records (synthesis.stages._n_samples).
    n_samples: Literal["train"] | Annotated[StrictInt, Field(ge=0)]
    sample_batch_size: PositiveInt
    max_in_memory_mb: float = Field(gt=0)


class TemporalDenoiser(_Block):
    d_model: PositiveInt
    n_layers: PositiveInt
    n_heads: PositiveInt
    patch_hours: PositiveInt


class EhrdiffSampler(_Block):
    """Heun sampling with EDM's discretisation; guidance w ≥ 0 (0 = the conditional model)."""

    guidance: float = Field(0.0, ge=0)
    num_steps: PositiveInt
    sigma_min: float = Field(gt=0)
    sigma_max: float = Field(gt=0)
    rho: float = Field(gt=0)


class EhrdiffSettings(_Sampling):
    """`synthesis.<source>.ehrdiff` (synthesis.ehrdiff)."""

    denoiser: Literal["mlp", "temporal"] = "mlp"
    hidden_dims: list[PositiveInt] | None = None
    temporal: TemporalDenoiser | None = None
    time_dim: PositiveInt
    time_basis: Literal[TIME_BASES] = "hours"
    column_loss_weight: Literal["equal", "sigma_data"] = "equal"
    label: Literal[LABEL_MODES] = "column"
    label_dropout: Probability = 0.0
    center: bool
    sigma_data_binary: SigmaData
    sigma_data_continuous: SigmaData
    p_mean: float
    p_std: float = Field(gt=0)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    ema_decay: Probability
    batch_size: PositiveInt
    max_steps: PositiveInt
    sampler: EhrdiffSampler

    @model_validator(mode="after")
    def _denoiser_settings(self) -> EhrdiffSettings:
        needed = {"mlp": "hidden_dims", "temporal": "temporal"}[self.denoiser]
        if getattr(self, needed) is None:
            raise ValueError(f"denoiser {self.denoiser} needs {needed}")
        return self


class TokenizerSettings(_Block):
    """`synthesis.<source>.synehrgy.tokenizer`: keyword arguments of RecordTokenizer.fit."""

    n_bins: PositiveInt = 10
    binning: Literal["uniform", "quantile"] = "quantile"
    trim_quantiles: tuple[Probability, Probability] = (0.005, 0.995)
    continuous_covariates: list[str] = ["age", "height", "weight"]
    categorical_covariates: list[str] = ["gender", "icu_type"]
    gap_edges_hours: list[Annotated[float, Field(ge=0)]] | None = None
    time_resolution_minutes: PositiveInt = 60
    window_minutes: PositiveInt = 2880
    on_unknown: Literal["error", "unk"] = "error"


class SynehrgySettings(_Sampling):
    """`synthesis.<source>.synehrgy` (synthesis.synehrgy, models.gpt)."""

    tokenizer: TokenizerSettings = TokenizerSettings()
    n_layer: PositiveInt
    n_head: PositiveInt
    n_embd: PositiveInt
    block_size: PositiveInt
    dropout: float = Field(ge=0, lt=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    grad_clip: float = Field(gt=0)
    batch_size: PositiveInt
    record_start_fraction: Probability = 0.0
    max_steps: PositiveInt
    temperature: float = Field(gt=0)
    top_k: PositiveInt | None
    max_new_tokens: PositiveInt


class _Vae(_Block):
    latent_dim: PositiveInt
    hidden: PositiveInt
    beta: float = Field(ge=0)
    learning_rate: float = Field(gt=0)
    batch_size: PositiveInt
    max_steps: PositiveInt


class StaticVaeSettings(_Vae):
    pass


class TemporalVaeSettings(_Vae):
    num_layers: PositiveInt


class LatentGanSettings(_Block):
    noise_dim: PositiveInt
    hidden: PositiveInt
    lambda_gp: float = Field(ge=0)
    critic_steps: PositiveInt
    learning_rate: float = Field(gt=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]]
    batch_size: PositiveInt
    max_steps: PositiveInt


class KmimicSettings(_Sampling):
    """`synthesis.<source>.kmimic` (synthesis.kmimic)."""

    value_noise: Literal[VALUE_NOISE] = "none"
    static_vae: StaticVaeSettings
    temporal_vae: TemporalVaeSettings
    latent_gan: LatentGanSettings


class SynthesisSettings(_Block):
    """`synthesis.<source>`: one block per generator (synthesis.GENERATORS in the pipelines)."""

    ehrdiff: EhrdiffSettings | None = None
    synehrgy: SynehrgySettings | None = None
    kmimic: KmimicSettings | None = None
