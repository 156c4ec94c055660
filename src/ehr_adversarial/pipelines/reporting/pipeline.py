"""Reporting pipeline, namespace `reporting`: one nested pipeline per attacked model (`reporting.<model>`)
and `reporting.overview` over all of them.

Per model it reads the attack's outputs (`attack.<model>.summary`, `.selection`, `.records`, `.deltas`,
`.susceptibility`, `.cumulative_susceptibility`), the trained model and its test metrics, and writes
`reporting.<model>.ranking_intervals` and `.hourly_intervals` (bootstrap CIs of S_j, its rank and S_t),
`.record_stability` (split-half agreement), `.instance_rankings` and `.instance_stability` (each trained
instance of the model attacked alone; empty for a single instance), `.paper_comparison`, `.hourly_trend`,
`.report_figure` and `.report` (markdown with the figure inside).
Settings: `reporting.<source>` (conf/base/parameters_reporting.yml); see docs/attack.md, "The report".
"""

from __future__ import annotations

from collections.abc import Mapping

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines import bound

from . import nodes


def model_report_pipeline() -> Pipeline:
    """The report of one attacked model (free inputs: model, metrics, model_input_test, feature_spec and
    the attack's summary, selection, records, deltas, susceptibility, cumulative_susceptibility)."""
    return Pipeline([
        node(nodes.susceptibility_intervals,
             ["records", "deltas", "params:attack", "params:reporting", "params:seed"],
             ["ranking_intervals", "hourly_intervals"], name="susceptibility_intervals"),
        node(nodes.record_stability, ["records", "deltas", "params:attack", "params:reporting", "params:seed"],
             "record_stability", name="record_stability"),
        node(nodes.attack_instances,
             ["model", "model_input_test", "selection", "feature_spec", "params:attack", "params:reporting",
              "params:seed", "params:device"],
             ["instance_rankings", "instance_stability"], name="attack_instances"),
        node(nodes.compare_attack_modes,
             ["model", "model_input_test", "selection", "records", "deltas", "feature_spec", "params:attack",
              "params:reporting", "params:seed", "params:device"],
             ["attack_modes", "mode_rankings", "mode_hours"], name="compare_attack_modes"),
        node(nodes.time_profile, ["model", "model_input_test", "selection", "params:attack", "params:device"],
             "time_profile", name="time_profile"),
        node(nodes.hourly_trend, ["susceptibility", "params:reporting"], "hourly_trend", name="hourly_trend"),
        node(nodes.paper_comparison, ["cumulative_susceptibility", "params:reporting"], "paper_comparison",
             name="paper_comparison"),
        node(nodes.attack_report,
             ["summary", "metrics", "cumulative_susceptibility", "susceptibility", "paper_comparison",
              "hourly_trend", "ranking_intervals", "hourly_intervals", "record_stability", "instance_rankings",
              "instance_stability", "attack_modes", "mode_hours", "time_profile", "params:attack",
              "params:reporting"],
             ["report_figure", "report"], name="attack_report"),
    ])


def create_pipeline(source: str, models: Mapping[str, str]) -> Pipeline:
    """The report of every attacked model in `models` (model → its feature set), then the overview."""
    parts = []
    for model, feature_set in models.items():
        attack = {name: f"attack.{model}.{name}"
                  for name in ("summary", "selection", "records", "deltas", "susceptibility", "cumulative_susceptibility")}
        parts.append(pipeline(
            model_report_pipeline(),
            namespace=f"reporting.{model}",
            inputs={**attack, "model": f"training.{model}.model", "metrics": f"training.{model}.metrics",
                    "model_input_test": f"features.{feature_set}.model_input_test",
                    "feature_spec": f"features.{feature_set}.feature_spec"},
            parameters={"params:attack": f"params:attack.{source}", "params:reporting": f"params:reporting.{source}",
                        "params:seed": "params:seed", "params:device": "params:device"},
        ))
    sections = {f"{model}__{part}": f"{stage}.{model}.{dataset}"
                for model in models
                for part, stage, dataset in (("summary", "attack", "summary"), ("paper", "reporting", "paper_comparison"),
                                             ("trend", "reporting", "hourly_trend"),
                                             ("records", "reporting", "record_stability"),
                                             ("instances", "reporting", "instance_stability"),
                                             ("instance_rankings", "reporting", "instance_rankings"))}
    sections |= {"attack": f"params:attack.{source}", "reporting": f"params:reporting.{source}"}
    overview = node(bound(nodes.reports_overview, models=tuple(models)), sections, "reporting.overview",
                    name="reports_overview", namespace="reporting")
    return sum(parts, Pipeline([overview]))


def robustness_pipeline(source: str, pairs: Mapping[str, str]) -> Pipeline:
    """`reporting.robustness`: each adversarially trained model of `pairs` (robust → plain model) beside the plain
    model, from both models' test metrics and attacks."""
    models = sorted({*pairs, *pairs.values()})
    sections = {f"{model}__{part}": f"{stage}.{model}.{dataset}"
                for model in models
                for part, stage, dataset in (("metrics", "training", "metrics"), ("records", "attack", "records"),
                                             ("cumulative", "attack", "cumulative_susceptibility"))}
    return Pipeline([node(bound(nodes.robustness_comparison, pairs=dict(pairs)),
                          {"reporting": f"params:reporting.{source}", **sections},
                          ["reporting.robustness", "reporting.robustness_agreement", "reporting.robustness_report"],
                          name="robustness_comparison", namespace="reporting")])
