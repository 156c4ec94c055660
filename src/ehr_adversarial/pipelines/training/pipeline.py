"""Training pipeline, namespace `training`: one nested pipeline per model (`training.<model>`), then
`training.model_comparison` over all of them.

Each model reads the model input of its feature set (`features.<feature_set>.model_input_*`, `.feature_spec`)
and `features.splits`, and writes `training.<model>.*`: the model (`model` for torch, `estimator` for
scikit-learn), CV results, the selected config, predictions, metrics and figures. Hyperparameters live in
`training.<source>.<model>` (conf/base/parameters_training.yml).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from kedro.pipeline import Node, Pipeline, node, pipeline

from ehr_adversarial.pipelines import bound

from . import nodes


def _evaluation_nodes(threshold_predictions: str, model: str) -> list[Node]:
    return [
        node(bound(nodes.evaluate_predictions, model=model),
             [threshold_predictions, "test_predictions", "selected_config", "feature_spec", "params:evaluation",
              "params:seed"],
             "metrics", name="evaluate"),
        node(nodes.plot_evaluation, ["test_predictions", "metrics"], ["roc_curve", "pr_curve", "calibration_curve"],
             name="plot_evaluation"),
    ]


def torch_model_pipeline(model: str) -> Pipeline:
    """CV selection, refit with early stopping on validation, predictions and evaluation of a torch model."""
    return Pipeline([
        node(nodes.select_torch_config,
             ["model_input_train", "splits", "feature_spec", "params:model_training", "params:seed", "params:device"],
             ["cv_results", "selected_config"], name="select_config"),
        node(nodes.train_torch_model,
             ["model_input_train", "model_input_validation", "feature_spec", "selected_config", "params:seed",
              "params:device"],
             ["model", "training_history"], name="train"),
        node(bound(nodes.predict_torch_model, split="validation"),
             ["model", "model_input_validation", "feature_spec", "params:device"], "validation_predictions",
             name="predict_validation"),
        node(bound(nodes.predict_torch_model, split="test"),
             ["model", "model_input_test", "feature_spec", "params:device"], "test_predictions", name="predict_test"),
        node(bound(nodes.plot_training_curves, model=model), ["training_history", "selected_config"], "training_curves",
             name="plot_training_curves"),
        *_evaluation_nodes("validation_predictions", model),
    ])


def estimator_pipeline(model: str) -> Pipeline:
    """CV selection (out-of-fold predictions), refit on train + validation, prediction and evaluation of a
    scikit-learn baseline."""
    return Pipeline([
        node(nodes.select_estimator_config,
             ["model_input_train", "splits", "feature_spec", "params:model_training", "params:seed"],
             ["cv_results", "selected_config", "cv_predictions"], name="select_config"),
        node(nodes.fit_estimator,
             ["model_input_train", "model_input_validation", "feature_spec", "selected_config", "params:seed"],
             "estimator", name="fit"),
        node(bound(nodes.predict_estimator, split="test"), ["estimator", "model_input_test", "feature_spec"],
             "test_predictions", name="predict_test"),
        *_evaluation_nodes("cv_predictions", model),
    ])


def create_pipeline(source: str, models: Mapping[str, str], torch_models: Collection[str]) -> Pipeline:
    """Every model of `models` (model → the feature set it reads); those in `torch_models` are torch models,
    the others scikit-learn baselines."""
    parts = []
    for model, feature_set in models.items():
        inner = torch_model_pipeline(model) if model in torch_models else estimator_pipeline(model)
        inputs = {name: f"features.{feature_set}.{name}"
                  for name in ("model_input_train", "model_input_validation", "model_input_test", "feature_spec")}
        parameters = {"params:model_training": f"params:training.{source}.{model}",
                      "params:evaluation": f"params:training.{source}.evaluation",
                      "params:seed": "params:seed", "params:device": "params:device"}
        used = inner.inputs()
        parts.append(pipeline(
            inner,
            namespace=f"training.{model}",
            inputs={**{k: v for k, v in inputs.items() if k in used}, "splits": "features.splits"},
            parameters={k: v for k, v in parameters.items() if k in used},
        ))
    comparison = node(nodes.compare_models, {model: f"training.{model}.metrics" for model in models},
                      ["training.model_comparison", "training.model_comparison_report"], name="compare_models",
                      namespace="training")
    return sum(parts, Pipeline([comparison]))
