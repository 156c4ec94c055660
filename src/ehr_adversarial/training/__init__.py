"""Training and honest evaluation of mortality models, independent of Kedro.

- `torch_loop`: the torch training loop (class weights, early stopping, deterministic on CPU);
- `selection`: input checks, the train split's CV folds, candidate configs and the choice among them;
- `torch_models`: CV selection, refit and prediction of the torch models (`lstm_sun2018`, `dssm`);
- `baselines`: the scikit-learn baselines (`logreg`, `gbm`) on per-record summary statistics;
- `stacking`: a logistic regression over several models' logits, fitted on their validation predictions;
- `evaluation`, `metrics`, `plots`: the single test evaluation with bootstrap CIs, its figures and the
  comparison of all models.
"""

from ehr_adversarial.training.baselines import (
    fit_estimator,
    held_out_validation_predictions,
    predict_estimator,
    select_estimator_config,
)
from ehr_adversarial.training.evaluation import (
    compare_models,
    comparison_markdown,
    evaluate_predictions,
    plot_evaluation,
    plot_training_curves,
)
from ehr_adversarial.training.selection import DEFAULT_THREADS, check_model_input
from ehr_adversarial.training.stacking import evaluate_stack, fit_stack, predict_stack
from ehr_adversarial.training.torch_models import (
    predict_torch_model,
    refit_torch_model,
    select_torch_config,
    torch_model_config,
    train_torch_model,
)

__all__ = [
    "DEFAULT_THREADS",
    "check_model_input",
    "compare_models",
    "comparison_markdown",
    "evaluate_predictions",
    "evaluate_stack",
    "fit_estimator",
    "fit_stack",
    "held_out_validation_predictions",
    "plot_evaluation",
    "plot_training_curves",
    "predict_estimator",
    "predict_stack",
    "predict_torch_model",
    "refit_torch_model",
    "select_estimator_config",
    "select_torch_config",
    "torch_model_config",
    "train_torch_model",
]
