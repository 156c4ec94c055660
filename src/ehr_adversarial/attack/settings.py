"""The `attack.<source>` parameter block as a pydantic model (checked before a run; the attack still
reads the plain dict through attack.run and AttackConfig.from_params)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ehr_adversarial.attack.l1_attack import SEARCHES


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LambdaRange(_Block):
    """`lambdas: {low, high, count}`: count λ values log-spaced from low to high."""

    low: float = Field(gt=0)
    high: float = Field(gt=0)
    count: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LambdaRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


Lambda = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class AttackSettings(_Block):
    """`attack.<source>` (attack.run.select_records, attack.l1_attack.AttackConfig; defaults are theirs)."""

    n_records: Literal["all"] | Annotated[int, Field(ge=1)] | None = "all"
    if_fewer: Literal["all", "error"] = "all"
    class_balanced: bool = True
    lambdas: LambdaRange | Annotated[list[Lambda], Field(min_length=1)]
    lr: float = Field(0.02, gt=0, allow_inf_nan=False)
    kappa: float = Field(0.0, ge=0, allow_inf_nan=False)
    max_iterations: int = Field(100, ge=1)
    patience: int = Field(10, ge=0)
    search: Literal[SEARCHES] = "continuation"
    steps_per_lambda: int = Field(4, ge=1)
    refine: bool = False
    refine_steps: int = Field(10, ge=1)
    polish_steps: int = Field(0, ge=0)
    polish_shrink: float = Field(0.9, gt=0, lt=1)
    polish_top_k: int = Field(10, ge=1)
    polish_step_size: float = Field(0.5, gt=0, allow_inf_nan=False)
    observed_only: bool = False
    forward_fill: bool = False
    stall_tol: float = Field(1e-7, ge=0)
    chunk_size: int = Field(512, ge=1)
    # S_j below this is "not susceptible" and left out of the rankings (attack.susceptibility).
    susceptible_tolerance: float = Field(1e-3, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _forward_fill_moves_measurements(self) -> AttackSettings:
        if self.forward_fill and not self.observed_only:
            raise ValueError("forward_fill needs observed_only: true (it moves measured cells and the hours filled "
                             "from them)")
        return self
