"""Project hooks."""

from __future__ import annotations

import os

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl


class TelemetryOffHook:
    """Keeps kedro-telemetry quiet unless a user opts in explicitly."""

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
