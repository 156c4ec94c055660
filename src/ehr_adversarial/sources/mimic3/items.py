"""The itemids of each feature, checked against D_ITEMS / D_LABITEMS before any measurement is read."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ehr_adversarial.sources.database import Database
from ehr_adversarial.sources.mimic3.schema import FEATURE_ITEM_TYPES, SOURCE_TABLES, query_concept


def _item_rows(parameter: str, table: str, items: dict, valid: dict | None, fahrenheit: bool) -> list[dict]:
    valid = valid or {}
    unknown = set(valid) - {"above", "below", "at_most"}
    if unknown:
        raise ValueError(f"ingestion.mimic3.features.{parameter}: unknown range keys {sorted(unknown)}; use above, below, at_most")
    return [
        {
            "parameter": parameter,
            "source_table": table,
            "itemid": int(itemid),
            "expected_label": str(label),
            "fahrenheit": fahrenheit,
            "above": valid.get("above"),
            "below": valid.get("below"),
            "at_most": valid.get("at_most"),
        }
        for itemid, label in items.items()
    ]


def feature_items_table(features: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (feature, itemid) with its source table, expected label and valid range,
    from `ingestion.mimic3.features`."""
    rows: list[dict] = []
    for parameter, spec in features.items():
        table = spec.get("table")
        if table not in SOURCE_TABLES:
            raise ValueError(f"ingestion.mimic3.features.{parameter}.table is {table!r}; use one of {SOURCE_TABLES}")
        rows += _item_rows(parameter, table, spec["items"], spec.get("valid"), False)
        if spec.get("fahrenheit_items"):
            rows += _item_rows(parameter, table, spec["fahrenheit_items"], spec.get("fahrenheit_valid"), True)
    items = pd.DataFrame(rows, columns=list(FEATURE_ITEM_TYPES))
    duplicated = items.loc[items.duplicated(["source_table", "itemid"], keep=False)]
    if not duplicated.empty:
        raise ValueError(f"ingestion.mimic3.features: itemids used by more than one feature: {duplicated[['parameter', 'itemid']].to_dict('records')}")
    return items.astype({"itemid": "int64", "fahrenheit": "bool", "above": "float64", "below": "float64", "at_most": "float64"})


def _label_key(label: Any) -> str:
    return " ".join(str(label).split()).lower() if isinstance(label, str) else ""


def check_feature_items(database: Database, load_summary: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """The configured itemids, verified against D_ITEMS / D_LABITEMS: each must exist, be
    charted in the table it is read from, and carry the expected label. Returns the items
    with what the dictionaries say (`load_summary` only orders this node after the load)."""
    items = feature_items_table(params["features"])
    with database.connect() as conn:
        conn.create_temp_table("feature_items", items, FEATURE_ITEM_TYPES)
        found = query_concept(conn, "feature_items_check")
    checked = items.merge(
        found[["source_table", "itemid", "found_label", "found_linksto", "found_source"]].astype({"itemid": "int64"}),
        on=["source_table", "itemid"],
        how="left",
    )
    problems = []
    for row in checked.itertuples():  # ~30 configured items, not data rows
        if not isinstance(row.found_label, str):
            problems.append(f"{row.parameter} itemid {row.itemid}: not in {'D_ITEMS' if row.source_table == 'chartevents' else 'D_LABITEMS'}")
        elif row.found_linksto != row.source_table:
            problems.append(f"{row.parameter} itemid {row.itemid}: D_ITEMS says it is charted in {row.found_linksto}, not {row.source_table}")
        elif _label_key(row.found_label) != _label_key(row.expected_label):
            problems.append(f"{row.parameter} itemid {row.itemid}: labelled {row.found_label!r}, expected {row.expected_label!r}")
    if problems:
        raise ValueError(
            "ingestion.mimic3.features does not match the MIMIC-III dictionaries:\n  " + "\n  ".join(problems)
        )
    return checked
