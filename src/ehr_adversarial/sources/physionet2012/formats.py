"""The PhysioNet 2012 file formats: headers, names, row kinds and reasons for rejecting a row."""

from __future__ import annotations

import re

RECORD_HEADER = "Time,Parameter,Value"
OUTCOME_HEADER = "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"
OUTCOME_COLUMNS = {
    "RecordID": "record_id",
    "SAPS-I": "saps_i",
    "SOFA": "sofa",
    "Length_of_stay": "length_of_stay",
    "Survival": "survival",
    "In-hospital_death": "label",
}
# Descriptor → static column.
STATIC_COLUMNS = {"Age": "age", "Gender": "gender", "Height": "height", "Weight": "weight"}
# Weight is a descriptor (admission weight) AND a time series; the other descriptors are static only.
TIMESERIES_DESCRIPTOR = "Weight"
RECORD_FILE = re.compile(r"(?:^|/)(\d+)\.txt$")
TIME_PATTERN = r"^\d{1,3}:[0-5]\d$"
NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
ERRORS_SHOWN = 5
KINDS = ("timeseries", "descriptor", "rejected")
REJECT_REASONS = (
    "blank_line",
    "empty_parameter",
    "unknown_parameter",
    "repeated_descriptor",
    "missing_marker",
    "outside_window",
    "out_of_range",
)
