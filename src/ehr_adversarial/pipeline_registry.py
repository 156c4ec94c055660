"""Project pipelines.

Each data source has its own namespaced pipelines (`physionet2012.ingestion`,
`mimic3.features`, ...). The plain names (`ingestion`, `features`, `training`, ...)
point at the source the run environment selects with `params:source`
(set by `ActiveEnvironmentHook`), so `kedro run --env mimic3_demo --pipelines ingestion`
runs the MIMIC-III ingestion.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Pipeline

SOURCES = ("physionet2012", "mimic3")
DEFAULT_SOURCE = "physionet2012"
# Order matters: it is the order of the default run.
STAGES = ("ingestion", "features", "training", "attack", "reporting", "synthesis", "synthetic_evaluation",
          "synthetic_attack")
DEFAULT_RUN = ("ingestion", "features", "training")

_active_source = DEFAULT_SOURCE
# The run's parameters, for stages whose shape they set (synthetic_attack.<source>.models);
# ActiveEnvironmentHook keeps them current. Empty: every stage uses its defaults.
_run_parameters: dict[str, Any] = {}


def active_source() -> str:
    """The data source the plain pipeline names point at."""
    return _active_source


def set_active_source(source: str) -> None:
    """Select the data source; fails on unknown names."""
    global _active_source
    if source not in SOURCES:
        raise ValueError(
            f"params:source is {source!r}; it must be one of {', '.join(SOURCES)} "
            "(set it in conf/<env>/parameters.yml)."
        )
    _active_source = source


def set_run_parameters(parameters: Mapping[str, Any]) -> bool:
    """Keep the run's parameters for `create_pipeline(parameters=...)`; True when they changed."""
    global _run_parameters
    parameters = copy.deepcopy(dict(parameters))
    changed = parameters != _run_parameters
    _run_parameters = parameters
    return changed


def _stage_pipeline(stage: str, source: str) -> Pipeline | None:
    """`create_pipeline(source=...)` of `ehr_adversarial.pipelines.<stage>`, if that stage exists."""
    try:
        module = importlib.import_module(f"ehr_adversarial.pipelines.{stage}")
    except ModuleNotFoundError as exc:
        if exc.name == f"ehr_adversarial.pipelines.{stage}":
            return None
        raise
    return module.create_pipeline(source=source, parameters=_run_parameters)


def register_pipelines() -> dict[str, Pipeline]:
    """Register every stage per source, plus plain names for the active source."""
    registry: dict[str, Pipeline] = {}
    for source in SOURCES:
        for stage in STAGES:
            pipe = _stage_pipeline(stage, source)
            if pipe is not None and pipe.nodes:
                registry[f"{source}.{stage}"] = pipe
    for stage in STAGES:
        if f"{_active_source}.{stage}" in registry:
            registry[stage] = registry[f"{_active_source}.{stage}"]
    registry["__default__"] = sum(
        (registry[stage] for stage in DEFAULT_RUN if stage in registry), Pipeline([])
    )
    return registry
