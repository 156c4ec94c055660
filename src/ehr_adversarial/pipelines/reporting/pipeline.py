"""Reporting pipeline, namespace `reporting`: one nested pipeline per attacked model (`reporting.<model>`)
and `reporting.overview` over all of them.

Per model it reads the attack's outputs (`attack.<model>.summary`, `.records`, `.susceptibility`,
`.cumulative_susceptibility`), the trained model and its test metrics, repeats the attack with further
seeds for the stability check, and writes `reporting.<model>.paper_comparison`, `.hourly_trend`,
`.seed_rankings`, `.seed_stability`, `.report_figure` and `.report` (markdown with the figure inside).
Settings: `reporting.<source>` (conf/base/parameters_reporting.yml); see docs/attack.md, "The report".
"""

from __future__ import annotations

from collections.abc import Mapping

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines import bound

from . import nodes


def model_report_pipeline() -> Pipeline:
    """The report of one attacked model (free inputs: model, metrics, model_input_test, feature_spec and
    the attack's summary, records, susceptibility, cumulative_susceptibility)."""
    return Pipeline([
        node(nodes.attack_with_seeds,
             ["model", "model_input_test", "feature_spec", "params:attack", "params:reporting", "params:seed",
              "params:device"],
             ["seed_rankings", "seed_records"], name="attack_with_seeds"),
        node(nodes.ranking_stability,
             ["cumulative_susceptibility", "records", "seed_rankings", "seed_records", "params:reporting",
              "params:seed"],
             "seed_stability", name="ranking_stability"),
        node(nodes.hourly_trend, ["susceptibility", "params:reporting"], "hourly_trend", name="hourly_trend"),
        node(nodes.paper_comparison, ["cumulative_susceptibility", "params:reporting"], "paper_comparison",
             name="paper_comparison"),
        node(nodes.attack_report,
             ["summary", "metrics", "cumulative_susceptibility", "susceptibility", "paper_comparison",
              "hourly_trend", "seed_stability", "seed_rankings", "params:reporting"],
             ["report_figure", "report"], name="attack_report"),
    ])


def create_pipeline(source: str, models: Mapping[str, str]) -> Pipeline:
    """The report of every attacked model in `models` (model → its feature set), then the overview."""
    parts = []
    for model, feature_set in models.items():
        attack = {name: f"attack.{model}.{name}"
                  for name in ("summary", "records", "susceptibility", "cumulative_susceptibility")}
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
                                             ("stability", "reporting", "seed_stability"))}
    overview = node(bound(nodes.reports_overview, models=tuple(models)), sections, "reporting.overview",
                    name="reports_overview", namespace="reporting")
    return sum(parts, Pipeline([overview]))
