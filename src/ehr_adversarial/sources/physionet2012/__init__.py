"""PhysioNet/CinC Challenge 2012 ingestion: record files + outcomes → long and static tables.

Each record file (`set-<x>/<RecordID>.txt`) is CSV `Time,Parameter,Value`; the rows at 00:00
named in `descriptors` describe the stay (RecordID, Age, Gender, Height, ICUType, Weight) and
the rest are measurements. Every data line of every file ends up in exactly one place: a
time-series row, a static value, or `rejected_rows` with its reason, so

    lines = timeseries rows + descriptor values kept + rejected rows.

Quirks of the real files and what happens to them:
- value == missing_marker (−1)                → rejected, reason `missing_marker` (static gets NaN)
- empty Parameter field                       → rejected, `empty_parameter`
- all three fields empty (blank line)         → rejected, `blank_line`
- a Parameter the configuration doesn't know  → rejected, `unknown_parameter`
- a descriptor seen again in the same record  → rejected, `repeated_descriptor` (the first one wins)
- Weight: the first 00:00 row is the admission weight (static); any later Weight row,
  including a second one at 00:00, is a time-series measurement
- time after window_minutes                   → rejected, `outside_window`
- value outside ranges[parameter]             → rejected, `out_of_range`
Malformed input that the real data does not carry is an error naming file and line: a wrong
header, a wrong number of fields, an unparseable time ("1x:30") or value, a RecordID row that
disagrees with the file name.
"""

from ehr_adversarial.sources.physionet2012.fetch import fetch_physionet2012
from ehr_adversarial.sources.physionet2012.read import (
    read_physionet2012_outcomes,
    read_physionet2012_records,
)
from ehr_adversarial.sources.physionet2012.tables import (
    build_physionet2012_static,
    build_physionet2012_timeseries,
    classify_physionet2012_rows,
    collect_physionet2012_rejected_rows,
    parse_physionet2012_records,
    physionet2012_descriptors,
    summarize_physionet2012_ingestion,
)

__all__ = [
    "build_physionet2012_static",
    "build_physionet2012_timeseries",
    "classify_physionet2012_rows",
    "collect_physionet2012_rejected_rows",
    "fetch_physionet2012",
    "parse_physionet2012_records",
    "physionet2012_descriptors",
    "read_physionet2012_outcomes",
    "read_physionet2012_records",
    "summarize_physionet2012_ingestion",
]
