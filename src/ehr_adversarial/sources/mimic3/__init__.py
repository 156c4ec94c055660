"""MIMIC-III ingestion: CSV(.gz) tables → database (DuckDB or PostgreSQL) → cohort and the
paper's 19 features as versioned tables in the ingestion contract.

Nodes that talk to the database take the `database` handle the catalog supplies
(`ehr_adversarial.datasets.database.DatabaseDataset`): loading tables and running SQL IS
their job, and the heavy joins belong in the database, not in pandas. The SQL lives in
`ehr_adversarial/sources/sql/*.sql` and is the same for both engines.
"""

from ehr_adversarial.sources.mimic3.cohort import build_cohort, build_static, cohort_attrition
from ehr_adversarial.sources.mimic3.extract import (
    extract_diagnoses,
    extract_measurements,
    summarise_ingestion,
)
from ehr_adversarial.sources.mimic3.files import (
    file_columns,
    find_table_file,
    read_checksum_list,
    read_csv_header,
    resolve_tables,
    verify_checksum,
)
from ehr_adversarial.sources.mimic3.items import check_feature_items, feature_items_table
from ehr_adversarial.sources.mimic3.load import load_mimic3_tables
from ehr_adversarial.sources.mimic3.schema import REJECTED_DTYPES, SCHEMA, TIMESERIES_DTYPES

__all__ = [
    "REJECTED_DTYPES",
    "SCHEMA",
    "TIMESERIES_DTYPES",
    "build_cohort",
    "build_static",
    "check_feature_items",
    "cohort_attrition",
    "extract_diagnoses",
    "extract_measurements",
    "feature_items_table",
    "file_columns",
    "find_table_file",
    "load_mimic3_tables",
    "read_checksum_list",
    "read_csv_header",
    "resolve_tables",
    "summarise_ingestion",
    "verify_checksum",
]
