"""Nodes of the ingestion stage: the sources' own functions (ehr_adversarial.sources), each a step from
files or a database to the ingestion tables; they take the `ingestion.<source>` parameter block."""

from ehr_adversarial.sources.mimic3 import (
    build_cohort,
    build_static,
    check_feature_items,
    extract_diagnoses,
    extract_measurements,
    load_mimic3_tables,
    summarise_ingestion,
)
from ehr_adversarial.sources.physionet2012 import (
    build_physionet2012_static,
    build_physionet2012_timeseries,
    classify_physionet2012_rows,
    collect_physionet2012_rejected_rows,
    fetch_physionet2012,
    read_physionet2012_outcomes,
    read_physionet2012_records,
    summarize_physionet2012_ingestion,
)

__all__ = [
    "build_cohort",
    "build_physionet2012_static",
    "build_physionet2012_timeseries",
    "build_static",
    "check_feature_items",
    "classify_physionet2012_rows",
    "collect_physionet2012_rejected_rows",
    "extract_diagnoses",
    "extract_measurements",
    "fetch_physionet2012",
    "load_mimic3_tables",
    "read_physionet2012_outcomes",
    "read_physionet2012_records",
    "summarise_ingestion",
    "summarize_physionet2012_ingestion",
]
