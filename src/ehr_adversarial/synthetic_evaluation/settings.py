"""The `synthetic_evaluation.<source>` parameter block as pydantic models (checked before a run; the
evaluation functions still take plain dicts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ehr_adversarial.synthetic_evaluation.fidelity import DETECTOR_FAMILIES
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
    # detector families (synthetic_evaluation.fidelity.DETECTOR_FAMILIES), the first one is `discriminator.auc`
    discriminator_families: list[Literal[DETECTOR_FAMILIES]] = Field(default_factory=lambda: list(DETECTOR_FAMILIES), min_length=1)
    # per-column detectors: one GBM per flat-view column on its own (fidelity.per_column_detectors)
    per_column_folds: int = Field(3, ge=2)
    per_column_max_records: PositiveInt = 2000
    per_column_max_iter: PositiveInt = 30
    giveaway_columns: PositiveInt = 10
    separating_columns: PositiveInt = 10
    # α-precision / β-recall / authenticity and PRDC (synthetic_evaluation.quality)
    quality_max_records: PositiveInt = 5000
    prdc_k: PositiveInt = 5
    column_bins: int = Field(20, ge=2)


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


class DomiasSettings(_Block):
    """`privacy.domias`: the density estimator of the DOMIAS attack (privacy.domias_scores)."""

    density: Literal["knn", "kde"] = "knn"
    n_neighbors: PositiveInt = 1
    pca_components: PositiveInt | None = None


class PrivacySettings(_Block):
    attribute_targets: list[str]
    n_neighbors: PositiveInt
    domias: DomiasSettings = DomiasSettings()


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
