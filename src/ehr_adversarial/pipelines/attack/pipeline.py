"""Attack pipeline: one modular pipeline per trained torch model, namespaced `<source>.<model>`.

Each reads `<source>.<model>.model` and the test model input and feature spec of the model's
feature set, and writes `<source>.<model>.attack_*` (selection, per-record results, δ tensors,
summary, perturbations in clinical units) and the susceptibility tables. Settings live in
`attack.<source>` (conf/base/parameters_attack.yml); see docs/attack.md.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines.training import MODEL_FEATURE_SETS, TORCH_MODELS

from .nodes import clinical_perturbations, run_attack, select_records, susceptibility_tables
from .plots import (
    plot_attack_histograms,
    plot_cumulative_ranking,
    plot_susceptibility_heatmaps,
    plot_susceptibility_over_hours,
)


def create_model_pipeline(source: str, model: str, namespace: str | None = None) -> Pipeline:
    """The attack of one trained `model` (an architecture of MODEL_FEATURE_SETS[source]) on the
    test split of its feature set, under `namespace` (default `<source>.<model>`; the
    synthetic_attack stage attacks `<source>.<generator>_<model>.model` this way)."""
    feature_set = MODEL_FEATURE_SETS[source][model]
    nodes = [
        node(select_records,
             ["model", "model_input_test", "feature_spec", "params:attack", "params:seed", "params:device"],
             "attack_selection", name="select_records"),
        node(run_attack,
             ["model", "model_input_test", "attack_selection", "feature_spec", "params:attack", "params:seed",
              "params:device"],
             ["attack_records", "attack_deltas", "attack_summary"], name="run_attack"),
        node(susceptibility_tables, ["attack_records", "attack_deltas"],
             ["susceptibility", "cumulative_susceptibility"], name="susceptibility"),
        node(clinical_perturbations, ["attack_records", "attack_deltas", "model_input_test", "feature_spec"],
             "attack_perturbations", name="clinical_perturbations"),
        node(plot_susceptibility_heatmaps, "susceptibility", "susceptibility_heatmaps",
             name="plot_susceptibility_heatmaps"),
        node(plot_cumulative_ranking, "cumulative_susceptibility", "cumulative_susceptibility_plot",
             name="plot_cumulative_ranking"),
        node(plot_attack_histograms, "attack_records", "attack_histograms", name="plot_attack_histograms"),
        node(plot_susceptibility_over_hours, "susceptibility", "susceptibility_over_hours",
             name="plot_susceptibility_over_hours"),
    ]
    return pipeline(
        nodes,
        namespace=namespace or f"{source}.{model}",
        inputs={name: f"{source}.{feature_set}.{name}" for name in ("model_input_test", "feature_spec")},
        parameters={"params:attack": f"params:attack.{source}", "params:seed": "params:seed",
                    "params:device": "params:device"},
    )


def create_pipeline(source: str = "physionet2012", **kwargs) -> Pipeline:
    """The attack of every torch model of `source` (the scikit-learn baselines have no gradients)."""
    models = [model for model in MODEL_FEATURE_SETS[source] if model in TORCH_MODELS]
    return sum((create_model_pipeline(source, model) for model in models), Pipeline([]))
