"""Markdown tables for the reports the pipelines write."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def format_cell(value: Any, spec: str = ".3f") -> str:
    """One table cell: numbers by `spec`, missing values (None, NaN, NA) as "–", the rest as text."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return format(value, spec)
    return str(value)


def markdown_table(frame: pd.DataFrame, spec: str = ".3f") -> str:
    """`frame` as a markdown table, its columns as the header."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(format_cell(v, spec) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
