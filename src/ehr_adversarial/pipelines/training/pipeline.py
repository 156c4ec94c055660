"""Training pipeline, namespace `training`: one nested pipeline per model (`training.<model>`), the stack of
the study's stack members (`training.stack`, where the source has one), then `training.model_comparison` over
all of them.

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
    """CV selection, training with early stopping on validation, the refit on train + validation where the
    settings ask for it (else the early-stopped model passes through), predictions and evaluation of a torch model.
    Validation predictions come from the early-stopped model: the refit has seen those records."""
    return Pipeline([
        node(nodes.select_torch_config,
             ["model_input_train", "splits", "feature_spec", "params:model_training", "params:seed", "params:device"],
             ["cv_results", "selected_config"], name="select_config"),
        node(bound(nodes.train_torch_model, model=model),
             ["model_input_train", "model_input_validation", "feature_spec", "selected_config", "params:seed",
              "params:device"],
             ["early_stopped_model", "training_history"], name="train"),
        node(bound(nodes.predict_torch_model, split="validation"),
             ["early_stopped_model", "model_input_validation", "feature_spec", "params:device"],
             "validation_predictions", name="predict_validation"),
        node(bound(nodes.refit_torch_model, model=model),
             ["model_input_train", "model_input_validation", "feature_spec", "selected_config", "early_stopped_model",
              "params:seed", "params:device"],
             "model", name="refit"),
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
        node(nodes.held_out_validation_predictions,
             ["model_input_train", "model_input_validation", "feature_spec", "selected_config", "params:seed"],
             "validation_predictions", name="predict_validation_held_out"),
        *_evaluation_nodes("cv_predictions", model),
    ])


def stack_pipeline(source: str, members: Mapping[str, str]) -> Pipeline:
    """`training.stack`: the logits of `members` (model → its feature set) combined as
    `training.<source>.stack.combiner` says, fitted on their held-out validation predictions, applied to their
    test predictions and evaluated like a model."""
    fit_inputs = {"stacking": f"params:training.{source}.stack", "seed": "params:seed",
                  **{m: f"training.{m}.validation_predictions" for m in members}}
    return Pipeline([
        node(bound(nodes.fit_stack, member_feature_sets=dict(members)), fit_inputs,
             ["training.stack.estimator", "training.stack.selected_config", "training.stack.validation_predictions"],
             name="fit_stack"),
        node(nodes.predict_stack, {"stacker": "training.stack.estimator",
                                   **{m: f"training.{m}.test_predictions" for m in members}},
             "training.stack.test_predictions", name="predict_stack"),
        node(nodes.evaluate_stack,
             ["training.stack.validation_predictions", "training.stack.test_predictions",
              "training.stack.selected_config", f"params:training.{source}.evaluation", "params:seed"],
             "training.stack.metrics", name="evaluate_stack"),
        node(nodes.plot_evaluation, ["training.stack.test_predictions", "training.stack.metrics"],
             ["training.stack.roc_curve", "training.stack.pr_curve", "training.stack.calibration_curve"],
             name="plot_stack_evaluation"),
    ], namespace="training.stack", prefix_datasets_with_namespace=False)


def model_pipeline(source: str, model: str, feature_set: str, is_torch: bool) -> Pipeline:
    """`training.<model>`: a torch model or a scikit-learn baseline on `feature_set`, with its settings
    `training.<source>.<model>`."""
    inner = torch_model_pipeline(model) if is_torch else estimator_pipeline(model)
    inputs = {name: f"features.{feature_set}.{name}"
              for name in ("model_input_train", "model_input_validation", "model_input_test", "feature_spec")}
    parameters = {"params:model_training": f"params:training.{source}.{model}",
                  "params:evaluation": f"params:training.{source}.evaluation",
                  "params:seed": "params:seed", "params:device": "params:device"}
    used = inner.inputs()
    return pipeline(
        inner,
        namespace=f"training.{model}",
        inputs={**{k: v for k, v in inputs.items() if k in used}, "splits": "features.splits"},
        parameters={k: v for k, v in parameters.items() if k in used},
    )


def create_pipeline(source: str, models: Mapping[str, str], torch_models: Collection[str],
                    stack_members: Collection[str] = ()) -> Pipeline:
    """Every model of `models` (model → the feature set it reads); those in `torch_models` are torch models,
    the others scikit-learn baselines; with `stack_members`, also `stack` over those models."""
    parts = [model_pipeline(source, model, feature_set, model in torch_models) for model, feature_set in models.items()]
    compared = [*models, "stack"] if stack_members else list(models)
    if stack_members:
        parts.append(stack_pipeline(source, {m: models[m] for m in stack_members}))
    comparison = node(nodes.compare_models, {model: f"training.{model}.metrics" for model in compared},
                      ["training.model_comparison", "training.model_comparison_report"], name="compare_models",
                      namespace="training")
    return sum(parts, Pipeline([comparison]))
