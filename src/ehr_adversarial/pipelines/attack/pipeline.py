"""Attack pipeline, namespace `attack`: one nested pipeline per attacked torch model (`attack.<model>`).

Each reads the trained model and the test model input and feature spec of the model's feature set, and
writes `attack.<model>.*`: the selected records, per-record results, δ tensors, summary, perturbations in
clinical units, the susceptibility tables and figures. Settings: `attack.<source>`
(conf/base/parameters_attack.yml); see docs/attack.md. The same modular pipeline attacks the models the
synthetic_attack stage trains, under its own namespace.
"""

from __future__ import annotations

from collections.abc import Mapping

from kedro.pipeline import Pipeline, node, pipeline

from . import nodes


def attack_pipeline() -> Pipeline:
    """The attack of one `model` on `model_input_test` (free inputs: model, model_input_test, feature_spec,
    params:attack, params:seed, params:device)."""
    return Pipeline([
        node(nodes.select_records,
             ["model", "model_input_test", "feature_spec", "params:attack", "params:seed", "params:device"],
             "selection", name="select_records"),
        node(nodes.run_attack,
             ["model", "model_input_test", "selection", "feature_spec", "params:attack", "params:seed",
              "params:device"],
             ["records", "deltas", "summary"], name="run_attack"),
        node(nodes.susceptibility_tables, ["records", "deltas", "params:attack"],
             ["susceptibility", "cumulative_susceptibility"],
             name="susceptibility"),
        node(nodes.clinical_perturbations, ["records", "deltas", "model_input_test", "feature_spec"],
             "perturbations", name="clinical_perturbations"),
        node(nodes.plot_susceptibility_heatmaps, "susceptibility", "susceptibility_heatmaps",
             name="plot_susceptibility_heatmaps"),
        node(nodes.plot_cumulative_ranking, "cumulative_susceptibility", "cumulative_susceptibility_plot",
             name="plot_cumulative_ranking"),
        node(nodes.plot_attack_histograms, "records", "histograms", name="plot_attack_histograms"),
        node(nodes.plot_susceptibility_over_hours, "susceptibility", "susceptibility_over_hours",
             name="plot_susceptibility_over_hours"),
    ])


def create_model_pipeline(source: str, namespace: str, model: str, feature_set: str) -> Pipeline:
    """The attack of the trained model `model` (a dataset name) on the test split of `feature_set`,
    under `namespace`."""
    return pipeline(
        attack_pipeline(),
        namespace=namespace,
        inputs={"model": model, "model_input_test": f"features.{feature_set}.model_input_test",
                "feature_spec": f"features.{feature_set}.feature_spec"},
        parameters={"params:attack": f"params:attack.{source}", "params:seed": "params:seed",
                    "params:device": "params:device"},
    )


def create_pipeline(source: str, models: Mapping[str, str]) -> Pipeline:
    """The attack of every trained torch model in `models` (model → its feature set), `attack.<model>`."""
    return sum((create_model_pipeline(source, f"attack.{model}", f"training.{model}.model", feature_set)
                for model, feature_set in models.items()), Pipeline([]))
