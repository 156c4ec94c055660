"""Ingestion pipeline, namespace `ingestion`.

Every source writes the same outputs (`ingestion.timeseries`, `ingestion.static`, `ingestion.rejected_rows`,
`ingestion.summary`), so one features pipeline serves all of them; MIMIC-III adds its cohort and diagnoses.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from . import nodes


def _physionet2012() -> Pipeline:
    return Pipeline([
        node(nodes.fetch_physionet2012, "params:ingestion", "raw_manifest", name="fetch_physionet2012"),
        node(nodes.read_physionet2012_records, "raw_manifest", ["record_files", "raw_rows"],
             name="read_physionet2012_records"),
        node(nodes.read_physionet2012_outcomes, "raw_manifest", "outcomes", name="read_physionet2012_outcomes"),
        node(nodes.classify_physionet2012_rows, ["raw_rows", "params:ingestion"], "classified_rows",
             name="classify_physionet2012_rows"),
        node(nodes.build_physionet2012_timeseries, "classified_rows", "timeseries",
             name="build_physionet2012_timeseries"),
        node(nodes.collect_physionet2012_rejected_rows, "classified_rows", "rejected_rows",
             name="collect_physionet2012_rejected_rows"),
        node(nodes.build_physionet2012_static, ["classified_rows", "record_files", "outcomes", "params:ingestion"],
             "static", name="build_physionet2012_static"),
        node(nodes.summarize_physionet2012_ingestion, ["classified_rows", "static", "raw_manifest"], "summary",
             name="summarize_physionet2012_ingestion"),
    ])


def _mimic3() -> Pipeline:
    return Pipeline([
        node(nodes.load_mimic3_tables, ["database", "params:ingestion"], ["raw_manifest", "load_summary"],
             name="load_mimic3_tables"),
        node(nodes.check_feature_items, ["database", "load_summary", "params:ingestion"], "feature_items",
             name="check_feature_items"),
        node(nodes.build_cohort, ["database", "load_summary", "params:ingestion"], "cohort", name="build_cohort"),
        node(nodes.extract_measurements, ["database", "cohort", "feature_items"], ["timeseries", "rejected_rows"],
             name="extract_measurements"),
        node(nodes.build_static, "cohort", "static", name="build_static"),
        node(nodes.extract_diagnoses, ["database", "load_summary"], "diagnoses", name="extract_diagnoses"),
        node(nodes.summarise_ingestion,
             ["load_summary", "cohort", "feature_items", "timeseries", "rejected_rows", "diagnoses",
              "params:ingestion"],
             "summary", name="summarise_ingestion"),
    ])


SOURCE_PIPELINES = {"physionet2012": _physionet2012, "mimic3": _mimic3}


def create_pipeline(source: str) -> Pipeline:
    """The ingestion of `source` (physionet2012 | mimic3) under the namespace `ingestion`."""
    if source not in SOURCE_PIPELINES:
        raise ValueError(f"no ingestion for source {source!r}; known: {sorted(SOURCE_PIPELINES)}")
    return pipeline(
        SOURCE_PIPELINES[source](),
        namespace="ingestion",
        parameters={"params:ingestion": f"params:ingestion.{source}"},
    )
