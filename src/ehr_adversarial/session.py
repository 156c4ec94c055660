"""The project's Kedro session: plain pipeline names run on the environment's data source.

The environment names its source in `conf/<env>/globals.yml` (`source: physionet2012 | mimic3`; the catalog
puts the source in every file path). `kedro run --env mimic3_demo --pipelines ingestion` then runs the
registered pipeline `mimic3.ingestion`, and plain `kedro run` runs `mimic3` (that source's study). A pipeline
of another source than the environment's is refused before anything runs, because its outputs would land in
the environment's folders.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.session import KedroSession

from ehr_adversarial.pipeline_registry import DEFAULT_SOURCE, STAGES, STUDIES

PLAIN_NAMES = frozenset({*STAGES, "synthetic"})


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


class StudySession(KedroSession):
    """KedroSession whose `run` maps plain pipeline names to the environment's source (see the module)."""

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
        self._logger.info("data source %s: running %s", source, ", ".join(resolved))
        return super().run(pipeline_names=resolved, **kwargs)
