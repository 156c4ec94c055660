"""The `synthesis.<source>` parameter block as pydantic models, one per generator (checked before a
run; the generators still take plain dicts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from ehr_adversarial.synthesis.binary_codes import CODE_COLUMNS, ROW_KEYS
from ehr_adversarial.synthesis.ehrdiff import LABEL_MODES, TIME_BASES
from ehr_adversarial.synthesis.kmimic import VALUE_NOISE
from ehr_adversarial.synthesis.lattice import DEFAULTS as LATTICE_DEFAULTS

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


class LatticeSettings(_Block):
    """`lattice` as a mapping: the thresholds of synthesis.lattice (true = these defaults)."""

    max_levels: PositiveInt = LATTICE_DEFAULTS["max_levels"]
    coverage: Probability = LATTICE_DEFAULTS["coverage"]
    point_mass_share: Probability = LATTICE_DEFAULTS["point_mass_share"]
    # point_masses: columns that are not a lattice keep their values but the point masses' shares;
    # quantiles: every column of more than two values takes the training column's empirical quantiles
    marginals: Literal["point_masses", "quantiles"] = LATTICE_DEFAULTS["marginals"]
    # generated: keep the generator's mask; training: each feature's observed hours per record take the
    # training records' distribution of counts (hours removed or added at random, in the generator's order)
    observation_counts: Literal["generated", "training"] = LATTICE_DEFAULTS["observation_counts"]
    # generated: each variable's flags as the generator drew them; training: the variables measured together in
    # the train split (Jaccard of their hourly flags >= group_min_jaccard) share the generated events, each event
    # taking a training pattern of members (the chemistry panel, the blood count, the blood gas, ...)
    measurement_groups: Literal["generated", "training"] = LATTICE_DEFAULTS["measurement_groups"]
    group_min_jaccard: float = Field(LATTICE_DEFAULTS["group_min_jaccard"], gt=0, le=1)


class _Lattice(_Block):
    """Snap generated values to the train split's value lattices and point masses (synthesis.lattice):
    true (default thresholds), false, or a mapping of thresholds."""

    lattice: Annotated[bool, Field(strict=True)] | LatticeSettings = True


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


class EhrdiffSettings(_Sampling, _Lattice):
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


class CodeMatrixSettings(_Block):
    """`synthesis.<source>.ehrdiff_codes.matrix` (synthesis.binary_codes.build_code_matrix)."""

    rows: Literal[tuple(ROW_KEYS)] = "patients"
    codes: Literal[tuple(CODE_COLUMNS)] = "3digit"
    top_n: PositiveInt | None = None
    holdout_fraction: float = Field(0.2, gt=0, lt=1)


class EhrdiffCodesSettings(EhrdiffSettings):
    """`synthesis.<source>.ehrdiff_codes`: EHRDiff on the binary code matrix alone
    (synthesis.binary_codes): the MLP denoiser on a vector of codes, no label, no time axis."""

    matrix: CodeMatrixSettings
    mmd_max_records: PositiveInt | None = 5000

    @model_validator(mode="after")
    def _codes_only(self) -> EhrdiffCodesSettings:
        if self.denoiser != "mlp" or self.time_basis != "hours" or self.label != "column":
            raise ValueError("a code matrix has no hours and no label: use denoiser mlp, time_basis hours, label column")
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


class SynehrgySettings(_Sampling, _Lattice):
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


class KmimicSettings(_Sampling, _Lattice):
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
    ehrdiff_codes: EhrdiffCodesSettings | None = None
