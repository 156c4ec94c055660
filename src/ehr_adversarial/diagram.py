"""A picture of a registered pipeline for the README: its namespaces (stages, and the models or feature
sets inside them) as a Mermaid flowchart, left to right, with an arrow wherever one reads what another
writes.

    python -m ehr_adversarial.diagram               # print the default pipeline's diagram
    python -m ehr_adversarial.diagram --write README.md   # replace the diagram between the README's markers
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from kedro.pipeline import Pipeline

BEGIN, END = "<!-- pipeline-diagram:begin -->", "<!-- pipeline-diagram:end -->"


def _box(namespace: str | None) -> str:
    """A node's box: its namespace down to two levels (`training.dssm`), or `other`."""
    return ".".join(namespace.split(".")[:2]) if namespace else "other"


def mermaid(pipe: Pipeline) -> str:
    """The namespaces of `pipe` as a Mermaid flowchart, one subgraph per stage."""
    producer = {output: _box(node.namespace) for node in pipe.nodes for output in node.outputs}
    boxes = list(dict.fromkeys(_box(node.namespace) for node in pipe.nodes))
    edges = dict.fromkeys(
        (producer[name], _box(node.namespace))
        for node in pipe.nodes for name in node.inputs
        if name in producer and producer[name] != _box(node.namespace)
    )
    stages: dict[str, list[str]] = {}
    for box in boxes:
        stages.setdefault(box.split(".")[0], []).append(box)
    ident = {box: re.sub(r"\W", "_", box) for box in boxes}
    # A nested pipeline is labelled by its name (a model, a feature set), a stage's own nodes by theirs.
    own = {box: [node.name.split(".")[-1] for node in pipe.nodes if _box(node.namespace) == box] for box in boxes}
    label = {box: box.split(".", 1)[1] if "." in box else own[box][0] if len(own[box]) == 1 else f"{len(own[box])} steps"
             for box in boxes}
    lines = ["flowchart LR"]
    for stage, members in stages.items():
        lines.append(f"  subgraph {stage}")
        lines += [f"    {ident[box]}[\"{label[box]}\"]" for box in members]
        lines.append("  end")
    lines += [f"  {ident[a]} --> {ident[b]}" for a, b in edges]
    return "\n".join(lines)


def readme_block(pipe: Pipeline) -> str:
    return f"{BEGIN}\n```mermaid\n{mermaid(pipe)}\n```\n{END}"


def write_into(path: Path, pipe: Pipeline) -> None:
    """Replace the diagram between the markers of `path` (a markdown file)."""
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} … {END} markers to put the diagram between")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + readme_block(pipe) + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="__default__", help="registered pipeline name")
    parser.add_argument("--write", type=Path, help="markdown file whose diagram block to replace")
    args = parser.parse_args(argv)
    from ehr_adversarial.pipeline_registry import register_pipelines

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = register_pipelines()[args.pipeline]
    if args.write:
        write_into(args.write, pipe)
    else:
        sys.stdout.write(readme_block(pipe) + "\n")


if __name__ == "__main__":
    main()
