"""Synthetic attack, namespace `synthetic_attack`: are models trained on synthetic data susceptible where
the real-data model is?

Per retrained model (`synthetic_attack.<label>_<model>`, label = a generator, or `real_retrained_s<seed>`
for the baseline on the real training split):
- train_on_synthetic: the real model's selected config (`training.<model>.selected_config`) trained on the
  generator's `synthesis.<generator>.synthetic` (or the real training split with the baseline's seed), early
  stopping on a held-out share of that training data → `model`;
- evaluate_on_real_test: predictions and metrics on the real test split → `test_metrics`;
- the attack stage's modular pipeline on the real test split (composed in the registry).
Then one comparison: `synthetic_attack.comparison` (table), `.report` (markdown) and `.figure`, against the
real `attack.<model>.cumulative_susceptibility`. See docs/synthetic_attack.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines import bound
from ehr_adversarial.synthetic_attack.compare import REAL, RetrainedModel

from . import nodes


def namespace_of(retrained: RetrainedModel) -> str:
    return f"synthetic_attack.{retrained.label}_{retrained.model}"


def retraining_pipeline(source: str, retrained: RetrainedModel, feature_set: str) -> Pipeline:
    """Train `retrained.model`'s recipe on the generator's data (or, for a baseline, on the real training split
    with its seed) and score it on the real test split of `feature_set`."""
    if retrained.is_baseline:
        train = node(bound(nodes.train_on_synthetic, seed=retrained.seed),
                     {"synthetic": "training_data", "selected_config": "selected_config", "feature_spec": "feature_spec",
                      "params": "params:synthetic_attack", "device": "params:device"},
                     ["model", "training_history"], name="train_on_synthetic")
        training_data = f"features.{feature_set}.model_input_train"
        trained_on = f"real training split, seed {retrained.seed}"
    else:
        train = node(nodes.train_on_synthetic,
                     ["training_data", "selected_config", "feature_spec", "params:synthetic_attack", "params:seed",
                      "params:device"],
                     ["model", "training_history"], name="train_on_synthetic")
        training_data = f"synthesis.{retrained.label}.synthetic"
        trained_on = "synthetic"
    evaluate = node(bound(nodes.evaluate_on_real_test, trained_on=trained_on),
                    ["model", "model_input_test", "feature_spec", "params:synthetic_attack", "params:seed",
                     "params:device"],
                    ["test_predictions", "test_metrics"], name="evaluate_on_real_test")
    return pipeline(
        [train, evaluate],
        namespace=namespace_of(retrained),
        inputs={"training_data": training_data, "selected_config": f"training.{retrained.model}.selected_config",
                "feature_spec": f"features.{feature_set}.feature_spec",
                "model_input_test": f"features.{feature_set}.model_input_test"},
        parameters={"params:synthetic_attack": f"params:synthetic_attack.{source}", "params:seed": "params:seed",
                    "params:device": "params:device"},
    )


def comparison_pipeline(source: str, retrained: Sequence[RetrainedModel]) -> Pipeline:
    """Each retrained model's susceptibility ranking against its real-data model's."""
    sections: dict[str, str] = {}
    for model in dict.fromkeys(entry.model for entry in retrained):
        datasets = {REAL: (f"attack.{model}", f"training.{model}.metrics")}
        datasets |= {entry.label: (namespace_of(entry), f"{namespace_of(entry)}.test_metrics")
                     for entry in retrained if entry.model == model}
        for label, (attack, metrics) in datasets.items():
            sections |= {f"{label}__{model}__ranking": f"{attack}.cumulative_susceptibility",
                         f"{label}__{model}__summary": f"{attack}.summary",
                         f"{label}__{model}__metrics": metrics}
    return Pipeline([node(
        bound(nodes.compare_susceptibility, retrained=tuple(retrained)),
        {"params": f"params:synthetic_attack.{source}", **sections},
        ["synthetic_attack.comparison", "synthetic_attack.report", "synthetic_attack.figure"],
        name="compare_susceptibility", namespace="synthetic_attack",
    )])
