"""Ingestion pipeline, namespaced by data source.

Every source writes the same outputs (`<source>.timeseries`, `<source>.static`,
`<source>.rejected_rows`, `<source>.ingestion_summary`) so that the features pipeline
downstream is one modular pipeline for all of them.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, pipeline

from .mimic3 import create_mimic3_pipeline
from .physionet2012 import create_physionet2012_pipeline

_SOURCE_PIPELINES = {
    "physionet2012": create_physionet2012_pipeline,
    "mimic3": create_mimic3_pipeline,
}


def create_pipeline(source: str = "physionet2012", **kwargs) -> Pipeline:
    """The ingestion of `source`, under the namespace `source`."""
    return pipeline(
        _SOURCE_PIPELINES[source](),
        namespace=source,
        parameters={"params:ingestion": f"params:ingestion.{source}"},
    )
