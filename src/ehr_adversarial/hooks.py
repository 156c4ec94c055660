"""Project hooks: inputs from earlier runs checked before any node, one progress line per node, and the latest
results where a user looks for them."""

from __future__ import annotations

import logging
import time
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset
from kedro.io.core import VersionNotFoundError
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from ehr_adversarial.reporting.latest import LatestResult, write_latest

logger = logging.getLogger("ehr_adversarial")

# The headline report of each study, the first one a run produced is named in the run's last line.
HEADLINE_REPORTS = ("reporting.overview", "training.model_comparison_report", "synthetic_attack.report",
                    "synthetic_evaluation.comparison_report")


class NodeProgressHook:
    """One INFO line per finished node, `[k/n] name (seconds)`, in place of Kedro's per-dataset lines."""

    def __init__(self) -> None:
        self._total = 0
        self._done = 0
        self._started: dict[str, float] = {}

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline) -> None:
        self._total, self._done, self._started = len(pipeline.nodes), 0, {}

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        self._done += 1
        seconds = time.perf_counter() - self._started.pop(node.name, time.perf_counter())
        logger.info("[%d/%d] %s (%.1f s)", self._done, self._total, node.name, seconds)

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        seconds = time.perf_counter() - self._started.pop(node.name, time.perf_counter())
        logger.error("[%d/%d] %s failed after %.1f s", self._done + 1, self._total, node.name, seconds)


class EarlierRunsHook:
    """Before any node runs: every versioned dataset the pipeline reads but does not write (what an earlier run
    saved) must have a version, or the run stops at once with one error naming each missing dataset, its file
    and the stage that writes it. Without this, a pipeline such as `robust` would train for half an hour and
    only then fail to load the default run's attack."""

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        missing = []
        for name in sorted(pipeline.inputs()):
            if name.startswith("params:") or name == "parameters":
                continue
            dataset = catalog.get(name)
            if not isinstance(dataset, AbstractVersionedDataset):
                continue
            try:
                dataset.resolve_load_version()
            except VersionNotFoundError:
                stage = name.split(".", 1)[0]
                missing.append(f"{name} ({getattr(dataset, '_filepath', '?')}), written by the `{stage}` stage")
        if missing:
            raise ValueError(
                "this run reads what earlier runs saved, and finds no version of:\n  " + "\n  ".join(missing)
                + "\nRun the stages that write them first (`kedro run` runs the whole study), or name a saved "
                "version with --load-versions.")


def saved_file(dataset: Any, version: str) -> Path | None:
    """Where a versioned file dataset saves `version` (`<filepath>/<version>/<name>`); None for other datasets
    (kedro-datasets' versioned datasets keep the path and version in `_filepath` and `_version`)."""
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None or getattr(dataset, "_version", None) is None:
        return None
    return Path(str(PurePosixPath(filepath) / version / PurePosixPath(filepath).name))


def layer_of(dataset: Any) -> str | None:
    return ((getattr(dataset, "metadata", None) or {}).get("kedro-viz") or {}).get("layer")


class LatestResultsHook:
    """After a successful run, copies the reporting-layer files it saved to `<reporting root>/latest/`
    (one stable place, replaced by the next successful run; the versioned files stay as they are), writes
    an index there, and ends the run with one line that names it."""

    def __init__(self) -> None:
        self._source: str | None = None

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        self._source = context.config_loader["globals"].get("source")

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        version = run_params["run_id"]
        results = []
        for name in sorted(pipeline.all_outputs()):
            dataset = catalog.get(name)
            path = saved_file(dataset, version) if dataset is not None else None
            if path is not None and layer_of(dataset) == "reporting" and path.is_file():
                results.append(LatestResult(name, path))
        if not results or self._source is None:
            return
        index = write_latest(results, self._source, version)
        headline = next((r for name in HEADLINE_REPORTS for r in results if r.name == name), None)
        if headline is not None:
            logger.info("Results: %s (every report: %s)",
                        _shown(index.parent / headline.relative_to(self._source)), _shown(index))
        else:
            logger.info("Results: %s", _shown(index))


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


__all__ = ["LatestResultsHook", "NodeProgressHook"]
