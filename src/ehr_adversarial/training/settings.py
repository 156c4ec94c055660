"""The `training.<source>` parameter block as pydantic models (checked before a run; the training
functions still take plain dicts).

A source's block holds `evaluation` and one block per model. A model block's `cv.grid` entries
override the block's own settings (training.selection.candidate_configs), so each entry is checked
as a partial block: the same keys and types, none required.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ehr_adversarial.models.hourly_summary import MEASUREMENT_SUMMARIES, SUMMARIES
from ehr_adversarial.models.lstm_sun2018 import READOUTS
from ehr_adversarial.training.torch_models import REFIT_EPOCH_RULES

Monitor = Literal["auprc", "auroc", "loss"]
SummaryName = Literal[tuple(SUMMARIES)]  # what a torch model's `input_summary` may list
MeasurementSummaryName = Literal[tuple(MEASUREMENT_SUMMARIES)]  # and its `measurement_summary`
ClassWeight = Literal["balanced", "none"]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


def partial(model: type[BaseModel]) -> type[BaseModel]:
    """`model` with every field optional (default None) and unknown keys refused: a grid entry."""
    fields: dict[str, Any] = {
        name: ((Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation) | None, None)
        for name, field in model.model_fields.items()
    }
    return create_model(f"{model.__name__.strip('_')}GridEntry", __config__=ConfigDict(extra="forbid"), **fields)


Entry = TypeVar("Entry", bound=BaseModel)


class EvaluationSettings(_Block):
    """`training.<source>.evaluation`: bootstrap CIs of the test metrics and the decision threshold's rule."""

    n_bootstrap: int = Field(ge=1)
    confidence: float = Field(gt=0, lt=1)
    threshold_rule: Literal["min_se_ppv", "f1"] = "min_se_ppv"


class AdamSettings(_Block):
    """Keyword arguments of torch.optim.Adam (training.torch_loop.fit)."""

    lr: float = Field(1e-3, gt=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    amsgrad: bool = False


class LstmSun2018Hyperparameters(_Block):
    """Keyword arguments of models.lstm_sun2018.LSTMSun2018 (shapes come from the data)."""

    hidden_size: int = Field(128, ge=1)
    bidirectional: bool = False
    dropout: float = Field(0.5, ge=0, lt=1)
    fc_size: int = Field(32, ge=1)
    n_classes: int = Field(2, ge=2)
    use_mask: bool = False
    use_delta: bool = False
    use_static: bool = False
    readout: Literal[READOUTS] = "last"
    input_summary: list[SummaryName] = []
    measurement_summary: list[MeasurementSummaryName] = []


class DssmHyperparameters(_Block):
    """Keyword arguments of models.dssm.DSSM (shapes come from the data)."""

    hidden_size: int = Field(32, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    n_heads: int = Field(4, ge=1)
    static_size: int = Field(32, ge=1)
    classifier_size: int = Field(64, ge=1)
    use_mask: bool = True
    use_delta: bool = True
    n_classes: int = Field(2, ge=2)
    input_summary: list[SummaryName] = []


class TorchCV(_Block, Generic[Entry]):
    """`cv` of a torch model block: folds held out, epochs per CV fit, the candidates."""

    max_folds: int = Field(99, ge=1)
    max_epochs: int | None = Field(None, ge=1)
    grid: list[Entry] | None = None


class AdversarialTrainingSettings(_Block):
    """`adversarial` of a torch block: train on x + δ, δ from sparse L1 PGD on the logit margin with
    ‖δ‖₁ ≤ l1_budget per record (training.adversarial); absent or null = plain training."""

    l1_budget: float = Field(gt=0)
    steps: int = Field(5, ge=1, le=100)
    weight: float = Field(0.5, gt=0, le=1)
    top_k: int = Field(10, ge=1)
    step_size: float | None = Field(None, gt=0)


class LrPlateauSettings(_Block):
    """`lr_plateau` of a torch block: the learning rate is multiplied by `factor` after `patience` epochs without a
    better monitored score (torch's ReduceLROnPlateau); absent or null = a constant learning rate."""

    factor: float = Field(gt=0, lt=1)
    patience: int = Field(ge=0)


class _TorchTraining(_Block):
    """Settings every torch model block shares (training.torch_loop.fit, training.torch_models)."""

    optimizer: AdamSettings
    batch_size: int = Field(ge=1)
    max_epochs: int = Field(ge=1)
    patience: int = Field(ge=0)
    monitor: Monitor
    class_weight: ClassWeight
    grad_clip: float | None = Field(None, ge=0)
    amp: bool = False
    n_threads: int = Field(1, ge=1)
    # CPU worker processes that train the instances side by side; null: one per n_threads of the usable CPUs
    n_processes: int | None = Field(None, ge=1)
    n_instances: int = Field(1, ge=1)
    calibration: Literal["platt", "none"] = "none"
    adversarial: AdversarialTrainingSettings | None = None
    # Exponential moving average of the weights over optimizer steps (decay per step); the averaged weights are
    # what is monitored, kept and served. None: the raw weights.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    lr_plateau: LrPlateauSettings | None = None
    # train: the early-stopped instances are the model; train_and_validation: each is then trained afresh on both
    # splits for the epochs its early stopping kept (training.torch_models.refit_torch_model).
    refit_on: Literal["train", "train_and_validation"] = "train"
    # own: each instance refits for the epochs its own early stopping kept; median: every instance for the median
    # of those (instances trained for different lengths attribute the prediction to different inputs).
    refit_epochs: Literal[tuple(REFIT_EPOCH_RULES)] = "own"
    # own: each early-stopped instance keeps its own best epoch; median: every instance trains all max_epochs and
    # all keep the weights of the median of their best epochs (training.torch_models.keep_shared_epoch)
    kept_epoch: Literal[tuple(REFIT_EPOCH_RULES)] = "own"

    @model_validator(mode="after")
    def _refit_has_no_monitored_score(self):
        if self.refit_on == "train_and_validation" and self.lr_plateau is not None:
            raise ValueError("lr_plateau lowers the learning rate on the monitored validation score, and a refit on "
                             "train + validation has none; set refit_on: train or remove lr_plateau")
        return self


class _LstmSun2018Core(_TorchTraining):
    architecture: Literal["lstm_sun2018"]
    hyperparameters: LstmSun2018Hyperparameters = LstmSun2018Hyperparameters()


class LstmSun2018Training(_LstmSun2018Core):
    cv: TorchCV[partial(_LstmSun2018Core)] = TorchCV()


class _DssmCore(_TorchTraining):
    architecture: Literal["dssm"]
    hyperparameters: DssmHyperparameters = DssmHyperparameters()


class DssmTraining(_DssmCore):
    cv: TorchCV[partial(_DssmCore)] = TorchCV()


class LogisticRegressionHyperparameters(_Block):
    """Keyword arguments of sklearn's LogisticRegression that the block may set (training.baselines)."""

    C: float = Field(1.0, gt=0)
    penalty: Literal["l1", "l2", "elasticnet"] | None = "l2"
    l1_ratio: float | None = Field(None, ge=0, le=1)
    solver: Literal["lbfgs", "liblinear", "newton-cg", "newton-cholesky", "sag", "saga"] = "lbfgs"
    tol: float = Field(1e-4, gt=0)
    fit_intercept: bool = True
    intercept_scaling: float = 1.0
    dual: bool = False
    warm_start: bool = False
    n_jobs: int | None = None
    verbose: int = 0


class HistGradientBoostingHyperparameters(_Block):
    """Keyword arguments of sklearn's HistGradientBoostingClassifier that the block may set."""

    learning_rate: float = Field(0.1, gt=0)
    max_iter: int = Field(100, ge=1)
    max_leaf_nodes: int | None = Field(31, ge=2)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    max_features: float = Field(1.0, gt=0, le=1)
    max_bins: int = Field(255, ge=2, le=255)
    loss: Literal["log_loss"] = "log_loss"
    categorical_features: Any = "from_dtype"
    monotonic_cst: Any = None
    interaction_cst: Any = None
    warm_start: bool = False
    scoring: Any = "loss"
    validation_fraction: float | int | None = 0.1
    n_iter_no_change: int = Field(10, ge=1)
    tol: float = Field(1e-7, ge=0)
    verbose: int = 0


class BaselineCV(_Block, Generic[Entry]):
    """`cv` of a baseline block: folds held out, the candidates."""

    max_folds: int = Field(99, ge=1)
    grid: list[Entry] | None = None


class _BaselineTraining(_Block):
    """Settings every scikit-learn baseline block shares (training.baselines)."""

    class_weight: ClassWeight = "none"
    monitor: Literal["auprc", "auroc"]
    refit_on: Literal["train", "train_and_validation"] = "train"
    n_threads: int = Field(1, ge=1)
    # The final fits average this many copies from consecutive seeds (soft vote); CV ranks candidates with one.
    n_seeds: int = Field(1, ge=1)


class _LogisticRegressionCore(_BaselineTraining):
    estimator: Literal["logistic_regression"]
    hyperparameters: LogisticRegressionHyperparameters = LogisticRegressionHyperparameters()


class LogisticRegressionTraining(_LogisticRegressionCore):
    cv: BaselineCV[partial(_LogisticRegressionCore)] = BaselineCV()


class _HistGradientBoostingCore(_BaselineTraining):
    estimator: Literal["hist_gradient_boosting"]
    hyperparameters: HistGradientBoostingHyperparameters = HistGradientBoostingHyperparameters()


class HistGradientBoostingTraining(_HistGradientBoostingCore):
    cv: BaselineCV[partial(_HistGradientBoostingCore)] = BaselineCV()


class StackSettings(_Block):
    """`training.<source>.stack`: the logistic regression over the members' logits (training.stacking)."""

    combiner: Literal["mean_logit", "logistic"] = "mean_logit"
    C: float = Field(1.0, gt=0)  # logistic combiner: inverse L2 strength on the members' weights
    n_folds: int = Field(5, ge=2)  # out-of-fold folds inside the validation split (threshold, validation scores)


class TrainingSettings(_Block):
    """`training.<source>`: the test evaluation and one block per model of the source's study (a model
    added to the pipeline registry's table needs its block here)."""

    evaluation: EvaluationSettings
    lstm_sun2018: LstmSun2018Training | None = None
    lstm_pooled: LstmSun2018Training | None = None
    lstm_pooled_adversarial: LstmSun2018Training | None = None
    dssm: DssmTraining | None = None
    logreg: LogisticRegressionTraining | None = None
    gbm: HistGradientBoostingTraining | None = None
    gbm_sun2018: HistGradientBoostingTraining | None = None
    stack: StackSettings | None = None
