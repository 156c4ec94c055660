"""The `synthetic_attack.<source>` parameter block as a pydantic model (checked before a run; the
comparison functions still take plain dicts). The attack settings are `attack.<source>`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ehr_adversarial.training.settings import EvaluationSettings


class SyntheticAttackSettings(BaseModel):
    """`synthetic_attack.<source>` (synthetic_attack.compare)."""

    model_config = ConfigDict(extra="forbid")

    monitor_fraction: float = Field(gt=0, lt=1)
    evaluation: EvaluationSettings
    top_k: int = Field(ge=1)
