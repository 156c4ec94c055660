"""The catalog against the registered pipelines: what nodes read must be loadable."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ehr_adversarial.pipeline_registry import register_pipelines

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAVE_ONLY_TYPES = {"matplotlib.MatplotlibDataset"}  # kedro-datasets cannot load these back


def _save_only_patterns() -> list[re.Pattern]:
    patterns = []
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("catalog_*.yml")):
        for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(entry, dict) and entry.get("type") in SAVE_ONLY_TYPES:
                patterns.append(re.compile("^" + re.sub(r"\\\{[^}]+\\\}", ".+", re.escape(name)) + "$"))
    return patterns


def test_no_node_reads_a_save_only_dataset():
    """A figure saved through MatplotlibDataset cannot feed another node in a real run
    (in-memory test runs would not notice)."""
    patterns = _save_only_patterns()
    assert patterns, "the catalog declares figures; the pattern parsing found none"
    read = {name for pipe in register_pipelines().values() for node in pipe.nodes for name in node.inputs}
    offending = sorted(name for name in read if any(p.match(name) for p in patterns))
    assert offending == [], f"nodes read figures that cannot be loaded: {offending}"
