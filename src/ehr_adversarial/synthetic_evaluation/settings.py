"""The `synthetic_evaluation.<source>` parameter block as pydantic models (checked before a run; the
evaluation functions still take plain dicts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ehr_adversarial.synthetic_evaluation.flat_view import SUMMARY_STATS
from ehr_adversarial.training.settings import (
    DssmTraining,
    LogisticRegressionHyperparameters,
    LstmSun2018Training,
)

PositiveInt = Annotated[int, Field(ge=1)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FidelitySettings(_Block):
    acf_lags: list[PositiveInt]
    mmd_max_records: PositiveInt
    discriminator_folds: int = Field(ge=2)
    discriminator_max_records: PositiveInt
    separating_columns: PositiveInt = 10


class GradientBoostingHyperparameters(_Block):
    """Keyword arguments of sklearn's HistGradientBoostingClassifier (synthetic_evaluation.utility)."""

    learning_rate: float = Field(0.1, gt=0)
    max_iter: PositiveInt = 100
    max_leaf_nodes: int | None = Field(31, ge=2)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: PositiveInt = 20
    l2_regularization: float = Field(0.0, ge=0)
    max_features: float = Field(1.0, gt=0, le=1)
    max_bins: int = Field(255, ge=2, le=255)
    early_stopping: Literal["auto"] | bool = "auto"
    validation_fraction: float | int | None = 0.1
    n_iter_no_change: PositiveInt = 10
    tol: float = Field(1e-7, ge=0)
    class_weight: Literal["balanced"] | dict[int, float] | None = None
    verbose: int = 0


class FlatModels(_Block):
    """`utility.flat_models`: the scikit-learn models of synthetic_evaluation.utility.FLAT_MODELS."""

    logistic_regression: LogisticRegressionHyperparameters | None = None
    gradient_boosting: GradientBoostingHyperparameters | None = None


class _MonitorFraction(_Block):
    monitor_fraction: float = Field(gt=0, lt=1)


class LstmSun2018SequenceModel(LstmSun2018Training, _MonitorFraction):
    """The project's LSTM trained with the training loop; early stopping on monitor_fraction."""


class DssmSequenceModel(DssmTraining, _MonitorFraction):
    """The project's DSSM trained with the training loop; early stopping on monitor_fraction."""


class UtilitySettings(_Block):
    n_bootstrap: PositiveInt
    confidence: float = Field(gt=0, lt=1)
    flat_models: FlatModels
    sequence_model: Annotated[LstmSun2018SequenceModel | DssmSequenceModel, Field(discriminator="architecture")] | None = None


class PrivacySettings(_Block):
    attribute_targets: list[str]
    n_neighbors: PositiveInt


class FigureSettings(_Block):
    max_variables: PositiveInt


class Targets(_Block):
    tstr_over_trtr_auroc: float
    mia_auc: float
    pearson_r_means: float


class SyntheticEvaluationSettings(_Block):
    """`synthetic_evaluation.<source>` (synthetic_evaluation.evaluate)."""

    summary_stats: list[Literal[SUMMARY_STATS]] = list(SUMMARY_STATS)
    fidelity: FidelitySettings
    utility: UtilitySettings
    privacy: PrivacySettings
    figures: FigureSettings
    targets: Targets
