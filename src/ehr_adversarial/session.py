"""The project's Kedro session: plain pipeline names run on the environment's data source.

The environment names its source in `conf/<env>/globals.yml` (`source: physionet2012 | mimic3`; the catalog
puts the source in every file path). `kedro run --env mimic3_demo --pipelines ingestion` then runs the
registered pipeline `mimic3.ingestion`, and plain `kedro run` runs `mimic3` (that source's study). A pipeline
of another source than the environment's is refused before anything runs, because its outputs would land in
the environment's folders.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession
from kedro.pipeline import Pipeline

from ehr_adversarial.hooks import saved_file
from ehr_adversarial.parameters import check_parameters
from ehr_adversarial.pipeline_registry import DEFAULT_SOURCE, STAGES, STANDALONE, STUDIES

PLAIN_NAMES = frozenset({*STAGES, "synthetic", *STANDALONE})


def source_pipeline_name(name: str, source: str) -> str:
    """The registered pipeline that `name` means in an environment whose data source is `source`."""
    if name == "__default__":
        return source
    if name in PLAIN_NAMES:
        return f"{source}.{name}"
    for other in STUDIES:
        if other != source and (name == other or name.startswith(f"{other}.")):
            raise ValueError(
                f"pipeline {name!r} runs on {other}, but this environment's data source is {source} "
                f"(`source` in conf/<env>/globals.yml); run it with an environment of {other} "
                f"(e.g. `--env {'physionet2012' if other == 'physionet2012' else 'mimic3_demo'}`), or name the stage "
                f"without a source ({name.split('.', 1)[-1] if '.' in name else '__default__'!r})."
            )
    return name


class RunVersions:
    """Knows the version folders a run writes (`<filepath>/<run id>/`) and removes them if the run fails.

    A run that fails or is interrupted must leave nothing that the next run would load as the latest version
    of a dataset, so every file this run saved so far goes, and earlier versions stay as they were."""

    def __init__(self) -> None:
        self.folders: list[Path] = []

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        files = (saved_file(catalog.get(name), run_params["run_id"]) for name in pipeline.all_outputs())
        self.folders = [file.parent for file in files if file is not None]

    @hook_impl
    def after_pipeline_run(self) -> None:
        # Every node finished and saved: what fails after this point (another hook) keeps the run's versions.
        self.folders = []

    def remove(self) -> list[Path]:
        removed = [folder for folder in self.folders if folder.exists()]
        for folder in removed:
            shutil.rmtree(folder)
        return removed


class StudySession(KedroSession):
    """KedroSession whose `run` maps plain pipeline names to the environment's source (see the module),
    and whose failed runs leave no versions behind (`RunVersions`)."""

    def environment_source(self) -> str:
        loader = self._get_config_loader()
        source = loader["globals"].get("source", DEFAULT_SOURCE)
        if source not in STUDIES:
            env = loader.env or loader.default_run_env
            raise ValueError(f"`source` in conf/{env}/globals.yml (or conf/base/globals.yml) is {source!r}; "
                             f"it must be one of {', '.join(STUDIES)}.")
        return source

    def run(self, pipeline_name: str | None = None, pipeline_names: list[str] | None = None,
            **kwargs: Any) -> dict[str, Any]:
        names = pipeline_names or ([pipeline_name] if pipeline_name else ["__default__"])
        source = self.environment_source()
        resolved = [source_pipeline_name(name, source) for name in names]
        # Every parameter is checked before any node runs: a typo or a bad value stops the run here.
        check_parameters(self.load_context().params)
        self._logger.info("data source %s: running %s", source, ", ".join(resolved))
        versions = RunVersions()
        self._hook_manager.register(versions)
        try:
            return super().run(pipeline_names=resolved, **kwargs)
        except BaseException:
            removed = versions.remove()
            if removed:
                logging.getLogger("ehr_adversarial").warning(
                    "the run did not finish: removed the %d version folder(s) it had written (run %s)",
                    len(removed), self.store["session_id"])
            raise
        finally:
            self._hook_manager.unregister(versions)
