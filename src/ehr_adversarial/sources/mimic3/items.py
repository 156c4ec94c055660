"""The itemids of each feature, checked against D_ITEMS / D_LABITEMS before any measurement is read."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ehr_adversarial.sources.database import Database
from ehr_adversarial.sources.mimic3.schema import FEATURE_ITEM_TYPES, SOURCE_TABLES, query_concept


def _specimen(parameter: str, table: str, specimen: dict | None) -> dict[str, Any]:
    """The specimen restriction of a feature: {specimen_itemid, specimen_label, specimen}, all
    None without one. `specimen: {item: {50800: Specimen Type}, value: ART}` keeps a LABEVENTS
    row only when the specimen recorded at its charttime is ART."""
    if not specimen:
        return {"specimen_itemid": None, "specimen_label": None, "specimen": None}
    where = f"ingestion.mimic3.features.{parameter}.specimen"
    unknown = set(specimen) - {"item", "value"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use item, value")
    if table != "labevents":
        raise ValueError(f"{where}: only LABEVENTS features have a specimen; {parameter} is read from {table}")
    item, value = specimen.get("item"), specimen.get("value")
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f"{where}.item is {item!r}; give one itemid with its D_LABITEMS label, e.g. {{50800: Specimen Type}}")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}.value is {value!r}; give the specimen text, e.g. ART")
    ((itemid, label),) = item.items()
    return {"specimen_itemid": int(itemid), "specimen_label": str(label), "specimen": value}


def _item_rows(parameter: str, table: str, items: dict, valid: dict | None, fahrenheit: bool,
               specimen: dict[str, Any]) -> list[dict]:
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
            **specimen,
        }
        for itemid, label in items.items()
    ]


def feature_items_table(features: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per (feature, itemid) with its source table, expected label, valid range and
    specimen restriction, from `ingestion.mimic3.features`."""
    rows: list[dict] = []
    for parameter, spec in features.items():
        table = spec.get("table")
        if table not in SOURCE_TABLES:
            raise ValueError(f"ingestion.mimic3.features.{parameter}.table is {table!r}; use one of {SOURCE_TABLES}")
        specimen = _specimen(parameter, table, spec.get("specimen"))
        rows += _item_rows(parameter, table, spec["items"], spec.get("valid"), False, specimen)
        if spec.get("fahrenheit_items"):
            rows += _item_rows(parameter, table, spec["fahrenheit_items"], spec.get("fahrenheit_valid"), True, specimen)
    items = pd.DataFrame(rows, columns=list(FEATURE_ITEM_TYPES))
    duplicated = items.loc[items.duplicated(["source_table", "itemid"], keep=False)]
    if not duplicated.empty:
        raise ValueError(f"ingestion.mimic3.features: itemids used by more than one feature: {duplicated[['parameter', 'itemid']].to_dict('records')}")
    # A specimen item is a label, not a measurement: it must not be a feature's item as well.
    measured = set(items.loc[items["source_table"] == "labevents", "itemid"].astype("int64"))
    clash = sorted(int(i) for i in items["specimen_itemid"].dropna().unique() if int(i) in measured)
    if clash:
        raise ValueError(f"ingestion.mimic3.features: itemid(s) {clash} are both a specimen item and a feature's item")
    return items.astype({"itemid": "int64", "fahrenheit": "bool", "above": "float64", "below": "float64",
                         "at_most": "float64", "specimen_itemid": "Int64", "specimen_label": "object",
                         "specimen": "object"})


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
        found[["source_table", "itemid", "found_label", "found_linksto", "found_source", "found_specimen_label"]]
        .astype({"itemid": "int64"}),
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
        if pd.notna(row.specimen_itemid):
            where = f"{row.parameter} specimen itemid {row.specimen_itemid}"
            if not isinstance(row.found_specimen_label, str):
                problems.append(f"{where}: not in D_LABITEMS")
            elif _label_key(row.found_specimen_label) != _label_key(row.specimen_label):
                problems.append(f"{where}: labelled {row.found_specimen_label!r}, expected {row.specimen_label!r}")
    problems = list(dict.fromkeys(problems))  # a specimen item shared by several itemids: said once
    if problems:
        raise ValueError(
            "ingestion.mimic3.features does not match the MIMIC-III dictionaries:\n  " + "\n  ".join(problems)
        )
    return checked
