"""`latest/`: one stable folder with the newest version of every report a source's runs have written.

Versioned report files live at `<root>/<stage>/.../<file>/<run id>/<file>`, which a reader has to search.
After each successful run the project copies the files that run saved to `<root>/latest/<stage>/.../<file>`
and rewrites `<root>/latest/index.md`, which links each one with the run that wrote it. A copy replaces
only the same report of an earlier run; the versioned files are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePath

from ehr_adversarial.glossary import glossary

LATEST = "latest"
RUNS_FILE = "runs.json"


@dataclass(frozen=True)
class LatestResult:
    """A report file one run saved: its dataset name and the versioned file."""

    name: str
    path: Path

    def root(self, source: str) -> Path:
        """The reporting root of `source`: the path up to its `source` folder."""
        parts = self.path.parts
        if source not in parts:
            raise ValueError(f"{self.path} is not under a folder named {source!r}")
        return Path(*parts[: parts.index(source) + 1])

    def relative_to(self, source: str) -> PurePath:
        """The report's place below the root, without the version folder."""
        inside = self.path.relative_to(self.root(source))
        return PurePath(*inside.parts[:-2])  # drop `<run id>/<file>`


def newest_version(path: Path | str) -> Path:
    """A versioned dataset's path `<file>` (a folder of `<run id>/<file>`) → the file of its newest complete
    version; a plain file is returned as it is. Run ids sort by time, so the newest is the last."""
    path = Path(path)
    if path.is_file():
        return path
    versions = sorted(v for v in path.iterdir() if (v / path.name).is_file()) if path.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"no version of {path}/<run id>/{path.name}: run the pipeline that writes it "
                                "first (the docs of each benchmark name the command)")
    return versions[-1] / path.name


def write_latest(results: list[LatestResult], source: str, run_id: str) -> Path:
    """Copies `results` into `<root>/latest/`, records `run_id` for each, rewrites the index; returns it."""
    latest = results[0].root(source) / LATEST
    latest.mkdir(parents=True, exist_ok=True)
    runs_file = latest / RUNS_FILE
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    for result in results:
        target = latest / result.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(result.path, partial)
        os.replace(partial, target)  # a reader sees the old copy or the new one, never half of one
        runs[str(result.relative_to(source).as_posix())] = {"dataset": result.name, "run": run_id}
    _replace_text(runs_file, json.dumps(dict(sorted(runs.items())), indent=2) + "\n")
    index = latest / "index.md"
    _replace_text(index, index_markdown(runs, source))
    return index


def index_markdown(runs: dict[str, dict[str, str]], source: str) -> str:
    """The index page: every report in `latest/` by stage, with its dataset and run, and what names mean."""
    lines = [f"# Latest results: {source}", "",
             "The newest version of each report, copied here after every successful run. The versioned "
             "originals stay in the stage folders beside this one (load one with `--load-versions`).", ""]
    stages: dict[str, list[str]] = {}
    for relative, entry in sorted(runs.items()):
        stages.setdefault(relative.split("/", 1)[0], []).append(
            f"- [{relative}]({relative}) — `{entry['dataset']}`, run {entry['run']}")
    for stage, entries in stages.items():
        lines += [f"## {stage}", "", *entries, ""]
    names = [part for relative in runs for part in PurePath(relative).parts]
    explained = glossary(names)
    if explained:
        lines += ["## Names", "", *explained, ""]
    return "\n".join(lines)


def _replace_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
