"""Training pipeline: one modular pipeline per model, namespaced `<source>.<model>`, then a
comparison of all models under `<source>`.

Each model reads the model input of its feature set (`<source>.<feature_set>.model_input_*`,
`.feature_spec`) and the shared `<source>.splits`, and writes `<source>.<model>.*`: the model
(`model` for torch, `estimator` for scikit-learn), CV results, the selected config,
predictions, metrics and figures. Hyperparameters live in `training.<source>.<model>`.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline, node, pipeline

from .nodes import (
    compare_models,
    evaluate_predictions,
    fit_estimator,
    plot_evaluation,
    plot_training_curves,
    predict_estimator,
    predict_torch_model,
    select_estimator_config,
    select_torch_config,
    train_torch_model,
)

# Which feature set each model reads, per source. MIMIC-III builds only `sun2018`.
MODEL_FEATURE_SETS: dict[str, dict[str, str]] = {
    "physionet2012": {"lstm_sun2018": "sun2018", "dssm": "full", "logreg": "full", "gbm": "full"},
    "mimic3": {"lstm_sun2018": "sun2018", "dssm": "sun2018", "logreg": "sun2018", "gbm": "sun2018"},
}
TORCH_MODELS = frozenset({"lstm_sun2018", "dssm"})


def _for_split(func, split: str):
    """`func` with its `split` argument bound, keeping the function's name for kedro-viz."""
    return update_wrapper(partial(func, split=split), func)


def _evaluation_nodes(threshold_predictions: str) -> list[Node]:
    return [
        node(evaluate_predictions,
             [threshold_predictions, "test_predictions", "selected_config", "feature_spec",
              "params:evaluation", "params:seed"],
             "metrics", name="evaluate"),
        node(plot_evaluation, ["test_predictions", "metrics"],
             ["roc_curve", "pr_curve", "calibration_curve"], name="plot_evaluation"),
    ]


def _torch_nodes() -> list[Node]:
    return [
        node(select_torch_config,
             ["model_input_train", "splits", "feature_spec", "params:model_training",
              "params:seed", "params:device"],
             ["cv_results", "selected_config"], name="select_config"),
        node(train_torch_model,
             ["model_input_train", "model_input_validation", "feature_spec", "selected_config",
              "params:seed", "params:device"],
             ["model", "training_history"], name="train"),
        node(_for_split(predict_torch_model, "validation"),
             ["model", "model_input_validation", "feature_spec", "params:device"],
             "validation_predictions", name="predict_validation"),
        node(_for_split(predict_torch_model, "test"),
             ["model", "model_input_test", "feature_spec", "params:device"],
             "test_predictions", name="predict_test"),
        node(plot_training_curves, ["training_history", "selected_config"], "training_curves",
             name="plot_training_curves"),
        *_evaluation_nodes("validation_predictions"),
    ]


def _estimator_nodes() -> list[Node]:
    return [
        node(select_estimator_config,
             ["model_input_train", "splits", "feature_spec", "params:model_training", "params:seed"],
             ["cv_results", "selected_config", "cv_predictions"], name="select_config"),
        node(fit_estimator,
             ["model_input_train", "model_input_validation", "feature_spec", "selected_config",
              "params:seed"],
             "estimator", name="fit"),
        node(_for_split(predict_estimator, "test"), ["estimator", "model_input_test", "feature_spec"],
             "test_predictions", name="predict_test"),
        *_evaluation_nodes("cv_predictions"),
    ]


def create_model_pipeline(source: str, model: str) -> Pipeline:
    """The training of one model on its feature set, under namespace `<source>.<model>`."""
    feature_set = MODEL_FEATURE_SETS[source][model]
    inputs = {name: f"{source}.{feature_set}.{name}" for name in
              ("model_input_train", "model_input_validation", "model_input_test", "feature_spec")}
    inputs["splits"] = f"{source}.splits"
    nodes = _torch_nodes() if model in TORCH_MODELS else _estimator_nodes()
    parameters = {
        "params:model_training": f"params:training.{source}.{model}",
        "params:evaluation": f"params:training.{source}.evaluation",
        "params:seed": "params:seed",
        "params:device": "params:device",
    }
    used = set().union(*(n.inputs for n in nodes))
    return pipeline(
        nodes,
        namespace=f"{source}.{model}",
        inputs=inputs,
        parameters={name: target for name, target in parameters.items() if name in used},
    )


def create_pipeline(source: str = "physionet2012", **kwargs) -> Pipeline:
    """Every model of `source`, then `<source>.model_comparison` over all of them."""
    models = MODEL_FEATURE_SETS[source]
    comparison = node(
        compare_models,
        {model: f"{source}.{model}.metrics" for model in models},
        [f"{source}.model_comparison", f"{source}.model_comparison_report"],
        name="compare_models",
        namespace=source,
    )
    return sum((create_model_pipeline(source, model) for model in models), Pipeline([comparison]))
