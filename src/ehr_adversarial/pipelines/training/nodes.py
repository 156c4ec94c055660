"""Nodes of the training stage: the library's selection, fitting, prediction and evaluation functions
(ehr_adversarial.training); the pipeline binds the split a prediction is for."""

from ehr_adversarial.training import (
    compare_models,
    evaluate_predictions,
    evaluate_stack,
    fit_estimator,
    fit_stack,
    held_out_validation_predictions,
    plot_evaluation,
    plot_training_curves,
    predict_estimator,
    predict_stack,
    predict_torch_model,
    refit_torch_model,
    select_estimator_config,
    select_torch_config,
    train_torch_model,
)

__all__ = [
    "compare_models",
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
    "train_torch_model",
]
