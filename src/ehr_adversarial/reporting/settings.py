"""The `reporting.<source>` parameter block as a pydantic model (checked before a run; the report
functions still take plain dicts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ehr_adversarial.attack.susceptibility import DIRECTIONS


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaperRankingEntry(_Block):
    """One published row of the paper's cumulative S_j table: its position (1, 2, ... or last)."""

    feature: str
    position: Literal["last"] | int
    cumulative_s: float


class ReportingSettings(_Block):
    """`reporting.<source>` (reporting.attack_report; defaults are its own)."""

    stability_target: float = Field(0.8, ge=-1, le=1)
    stability_top_k_target: int = Field(4, ge=0)
    n_bootstrap: int = Field(200, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    split_half_repeats: int = Field(50, ge=1)
    min_records_per_half: int = Field(25, ge=2)
    instance_records: int = Field(300, ge=2)
    mode_records: int = Field(300, ge=2)
    success_target: float = Field(0.99, ge=0, le=1)
    top_k: int = Field(5, ge=1)
    trend_window_hours: int = Field(12, ge=1)
    trend_alpha: float = Field(0.05, gt=0, lt=1)
    min_positives: int = Field(50, ge=0)
    robustness_budgets: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0],
                                                                     min_length=1)
    paper_features: dict[str, list[str]]
    paper_ranking: dict[Literal[tuple(DIRECTIONS.values())], list[PaperRankingEntry]]

    @model_validator(mode="after")
    def _top_k_target_fits(self) -> ReportingSettings:
        if self.stability_top_k_target > self.top_k:
            raise ValueError(f"stability_top_k_target ({self.stability_top_k_target}) exceeds top_k ({self.top_k})")
        return self

    @model_validator(mode="after")
    def _ranked_features_are_mapped(self) -> ReportingSettings:
        unknown = sorted({entry.feature for entries in self.paper_ranking.values() for entry in entries}
                         - set(self.paper_features))
        if unknown:
            raise ValueError(f"paper_ranking names {unknown}, which paper_features lacks")
        return self
