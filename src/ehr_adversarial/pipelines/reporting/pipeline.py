"""Reporting pipeline: a report of each attacked model, namespaced `<source>.<model>` like the attack,
and an overview of all of them under `<source>`.

Per torch model it reads the attack's outputs (`attack_summary`, `attack_records`,
`susceptibility`, `cumulative_susceptibility`), the model and its test metrics, repeats the attack
with further seeds for the stability check, and writes `<source>.<model>.attack_paper_comparison`,
`.attack_hourly_trend`, `.attack_seed_rankings`, `.attack_seed_stability`, `.attack_report_figure`
and `.attack_report` (markdown with the figure inside). Settings: `reporting.<source>`
(conf/base/parameters_reporting.yml); see docs/attack.md, "The report".
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines.training import MODEL_FEATURE_SETS, TORCH_MODELS

from .nodes import attack_report, attack_with_seeds, hourly_trend, paper_comparison, ranking_stability, reports_overview


def create_model_pipeline(source: str, model: str) -> Pipeline:
    """The attack report of one trained model, under namespace `<source>.<model>`."""
    feature_set = MODEL_FEATURE_SETS[source][model]
    nodes = [
        node(attack_with_seeds,
             ["model", "model_input_test", "feature_spec", "params:attack", "params:reporting", "params:seed",
              "params:device"],
             ["attack_seed_rankings", "attack_seed_records"], name="attack_with_seeds"),
        node(ranking_stability,
             ["cumulative_susceptibility", "attack_records", "attack_seed_rankings", "attack_seed_records",
              "params:reporting", "params:seed"],
             "attack_seed_stability", name="ranking_stability"),
        node(hourly_trend, ["susceptibility", "params:reporting"], "attack_hourly_trend", name="hourly_trend"),
        node(paper_comparison, ["cumulative_susceptibility", "params:reporting"], "attack_paper_comparison",
             name="paper_comparison"),
        node(attack_report,
             ["attack_summary", "metrics", "cumulative_susceptibility", "susceptibility", "attack_paper_comparison",
              "attack_hourly_trend", "attack_seed_stability", "attack_seed_rankings", "params:reporting"],
             ["attack_report_figure", "attack_report"], name="attack_report"),
    ]
    return pipeline(
        nodes,
        namespace=f"{source}.{model}",
        inputs={name: f"{source}.{feature_set}.{name}" for name in ("model_input_test", "feature_spec")},
        parameters={"params:attack": f"params:attack.{source}", "params:reporting": f"params:reporting.{source}",
                    "params:seed": "params:seed", "params:device": "params:device"},
    )


def create_pipeline(source: str = "physionet2012", **kwargs) -> Pipeline:
    """The report of every attacked (torch) model of `source`, then `<source>.attack_reports_overview`."""
    models = [model for model in MODEL_FEATURE_SETS[source] if model in TORCH_MODELS]
    sections = {
        f"{model}__{part}": f"{source}.{model}.{dataset}"
        for model in models
        for part, dataset in (("summary", "attack_summary"), ("paper", "attack_paper_comparison"),
                              ("trend", "attack_hourly_trend"), ("stability", "attack_seed_stability"))
    }
    overview = node(reports_overview, sections, f"{source}.attack_reports_overview", name="reports_overview",
                    namespace=source)
    return sum((create_model_pipeline(source, model) for model in models), Pipeline([overview]))
