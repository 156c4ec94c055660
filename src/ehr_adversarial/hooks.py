"""Project hooks."""

from __future__ import annotations

import os

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines

from ehr_adversarial import pipeline_registry


class ActiveEnvironmentHook:
    """Points the source-agnostic pipeline names (`ingestion`, `features`, ...) at the
    data source that the run environment names in `params:source`.

    Every source keeps its own namespaced pipelines (`physionet2012.ingestion`, ...);
    `kedro run --env mimic3_demo --pipelines features` then means the MIMIC-III one. It also
    hands the run's parameters to the registry, for stages whose nodes depend on them.
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        source = context.params.get("source", pipeline_registry.DEFAULT_SOURCE)
        # Some stages take their shape from parameters (synthetic_attack's models).
        changed = pipeline_registry.set_run_parameters(context.params)
        if source != pipeline_registry.active_source():
            pipeline_registry.set_active_source(source)
            changed = True
        if changed:
            # Pipelines may have been registered for the old source or parameters; register them again.
            pipelines.configure(pipeline_registry.__name__)


class TelemetryOffHook:
    """Keeps kedro-telemetry quiet unless a user opts in explicitly."""

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
