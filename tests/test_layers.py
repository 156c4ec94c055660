"""The layout is the map: Kedro-free library packages below, thin stage pipelines above, imports downward only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ehr_adversarial"
LIBRARY = ("sources", "features", "models", "training", "attack", "reporting", "synthesis", "synthetic_evaluation",
           "synthetic_attack", "serving")


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def test_no_module_outside_pipelines_imports_a_pipeline_except_the_registry():
    offending = []
    for path in PACKAGE.rglob("*.py"):
        if "pipelines" in path.relative_to(PACKAGE).parts or path.name == "pipeline_registry.py":
            continue
        offending += [f"{path.relative_to(PACKAGE)}: {name}" for name in sorted(_imports(path))
                      if name.startswith("ehr_adversarial.pipelines")]
    assert offending == []


def test_no_pipeline_imports_another_stage():
    offending = []
    for stage in (PACKAGE / "pipelines").iterdir():
        if not stage.is_dir() or stage.name.startswith("__"):
            continue
        for path in stage.glob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                if parts[:2] == ["ehr_adversarial", "pipelines"] and len(parts) > 2 and parts[2] not in (stage.name, "bound", "seeded"):
                    offending.append(f"pipelines/{stage.name}/{path.name}: {name}")
    assert offending == []


def test_stage_folders_hold_only_nodes_and_wiring():
    for stage in (PACKAGE / "pipelines").iterdir():
        if stage.is_dir() and not stage.name.startswith("__"):
            assert {p.name for p in stage.glob("*.py")} == {"__init__.py", "nodes.py", "pipeline.py"}, stage.name


def test_library_packages_import_without_kedro():
    """Every module of the library packages imports in a fresh interpreter in which Kedro cannot be imported."""
    script = f"""
import importlib, pkgutil, sys
class NoKedro:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("kedro", "kedro_datasets", "kedro_viz"):
            raise ImportError("library code imported " + name)
sys.meta_path.insert(0, NoKedro())
for package in {LIBRARY!r}:
    module = importlib.import_module("ehr_adversarial." + package)
    for info in pkgutil.walk_packages(module.__path__, prefix=module.__name__ + "."):
        importlib.import_module(info.name)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_pipelines_hold_under_a_third_of_the_source():
    def lines(paths) -> int:
        return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)

    assert lines((PACKAGE / "pipelines").rglob("*.py")) < lines(PACKAGE.rglob("*.py")) / 3
