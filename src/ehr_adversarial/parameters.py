"""Typed checking of the whole merged parameter tree before any node runs.

Each stage keeps its settings model next to the code that reads them (`<stage>/settings.py`); this module
checks a merged tree (conf/base, the run environment and `--params`) against them: top-level keys are `seed`,
`device` and the stage names, each stage holds one block per data source, and each block must validate
against its stage's model. Every problem is reported at once, in one `ValueError`, one line per problem:
`<full.path>: <message> (got <value>; allowed: ...)`. The stages still read the plain dicts.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ehr_adversarial.attack.settings import AttackSettings
from ehr_adversarial.features.settings import FeatureSettings
from ehr_adversarial.reporting.settings import ReportingSettings
from ehr_adversarial.sources.settings import Mimic3Ingestion, Physionet2012Ingestion
from ehr_adversarial.synthesis.settings import SynthesisSettings
from ehr_adversarial.synthetic_attack.settings import SyntheticAttackSettings
from ehr_adversarial.synthetic_evaluation.settings import SyntheticEvaluationSettings
from ehr_adversarial.training.settings import TrainingSettings

SOURCES = ("physionet2012", "mimic3")

# stage → source → the model of its `<stage>.<source>` block.
STAGE_MODELS: dict[str, dict[str, type[BaseModel]]] = {
    "ingestion": {"physionet2012": Physionet2012Ingestion, "mimic3": Mimic3Ingestion},
    "features": dict.fromkeys(SOURCES, FeatureSettings),
    "training": dict.fromkeys(SOURCES, TrainingSettings),
    "attack": dict.fromkeys(SOURCES, AttackSettings),
    "reporting": dict.fromkeys(SOURCES, ReportingSettings),
    "synthesis": dict.fromkeys(SOURCES, SynthesisSettings),
    "synthetic_evaluation": dict.fromkeys(SOURCES, SyntheticEvaluationSettings),
    "synthetic_attack": dict.fromkeys(SOURCES, SyntheticAttackSettings),
}


class SharedSettings(BaseModel):
    """The top-level settings every pipeline shares (conf/base/parameters.yml)."""

    model_config = ConfigDict(extra="forbid")

    seed: Annotated[int, Field(strict=True, ge=0, lt=2**32)]
    # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    device: Annotated[str, StringConstraints(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = "auto"


def check_parameters(params: Mapping[str, Any]) -> None:
    """Check the merged parameters; raise one ValueError listing every problem, or return None."""
    problems: list[str] = []
    known = [*SharedSettings.model_fields, *STAGE_MODELS]
    for key in params:
        if key not in known:
            problems.append(f"{key}: unknown setting (allowed: {', '.join(known)})")
    shared = {key: params[key] for key in SharedSettings.model_fields if key in params}
    problems += _validate(SharedSettings, shared, ())
    for stage, models in STAGE_MODELS.items():
        blocks = params.get(stage)
        if blocks is None:
            continue
        if not isinstance(blocks, Mapping):
            problems.append(f"{stage}: must be a mapping of data source to settings (got {_show(blocks)}; "
                            f"allowed: {', '.join(models)})")
            continue
        for source, block in blocks.items():
            if source not in models:
                problems.append(f"{stage}.{source}: unknown data source (allowed: {', '.join(models)})")
            else:
                problems += _validate(models[source], block, (stage, source))
    if problems:
        raise ValueError(
            "invalid parameters (conf/base/parameters_<stage>.yml, conf/<env>/, --params):\n  "
            + "\n  ".join(problems)
        )


def _validate(model: type[BaseModel], block: Any, prefix: tuple[str, ...]) -> list[str]:
    """One line per problem of `block` against `model`; errors of a union's members are merged."""
    try:
        model.model_validate(block)
        return []
    except ValidationError as error:
        errors = error.errors()
    grouped: dict[tuple, list[dict[str, Any]]] = {}
    for item in errors:
        path = _input_path(block, item["loc"], item["type"] == "missing")
        grouped.setdefault(path, []).append(item)
    return [_line(model, block, prefix, path, items) for path, items in grouped.items()]


def _input_path(block: Any, loc: tuple, missing: bool) -> tuple:
    """The error location as keys of the input: pydantic's union-member tags are left out."""
    path, node = [], block
    for position, key in enumerate(loc):
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, Sequence) and not isinstance(node, str) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        elif missing and isinstance(node, Mapping) and position == len(loc) - 1:
            pass  # a missing key
        else:
            continue
        path.append(key)
    return tuple(path)


_SHAPE_ERRORS = {"list_type", "dict_type", "tuple_type", "model_type", "model_attributes_type"}


def _line(model: type[BaseModel], block: Any, prefix: tuple, path: tuple, items: list[dict[str, Any]]) -> str:
    name = ".".join(str(part) for part in (*prefix, *path)) or "(top level)"
    kinds = {item["type"] for item in items}
    if "extra_forbidden" in kinds:
        allowed = _allowed_keys(model, block, path[:-1])
        return f"{name}: unknown setting (allowed: {', '.join(allowed) if allowed else 'none'})"
    if kinds == {"missing"}:
        return f"{name}: missing required setting"
    # Of a union's members, the one the value's shape fits says what is wrong (a dict is not a list).
    items = [item for item in items if item["type"] not in _SHAPE_ERRORS] or items
    messages, allowed = [], []
    for item in items:
        expected = (item.get("ctx") or {}).get("expected")
        if item["type"] == "literal_error" and expected:
            allowed += re.findall(r"'([^']*)'", expected)
            messages.append(f"should be {expected}")
        else:
            messages.append(item["msg"].removeprefix("Value error, ").replace("Input should be", "should be"))
    value = items[0].get("input")
    text = f"{name}: {' or '.join(dict.fromkeys(messages))} (got {_show(value)}"
    return text + (f"; allowed: {', '.join(allowed)})" if allowed else ")")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _members(annotation: Any) -> list[Any]:
    """The types an annotation may hold: Annotated, Optional and unions unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [member for arg in typing.get_args(annotation) for member in _members(arg)]
    return [annotation]


def _allowed_keys(model: type[BaseModel], block: Any, path: tuple) -> list[str]:
    """The field names of the model(s) at `path` of `model`, for an unknown key there."""
    candidates: list[Any] = [model]
    node = block
    for key in path:
        following = []
        for member in _narrow(candidates, node):
            origin = typing.get_origin(member)
            if isinstance(member, type) and issubclass(member, BaseModel) and key in member.model_fields:
                following.append(member.model_fields[key].annotation)
            elif origin in (list, tuple) and isinstance(key, int):
                following.append(typing.get_args(member)[0])
            elif origin is dict:
                following.append(typing.get_args(member)[1])
        candidates = following
        node = node[key] if isinstance(node, Mapping | Sequence) and not isinstance(node, str) else None
    models = [m for m in _narrow(candidates, node) if isinstance(m, type) and issubclass(m, BaseModel)]
    return list(dict.fromkeys(name for m in models for name in m.model_fields))


def _narrow(candidates: list[Any], node: Any) -> list[Any]:
    """The members of `candidates`; of several models, those whose Literal fields `node` matches
    (the member of a discriminated union that its tag names)."""
    members = [m for c in candidates for m in _members(c)]
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) < 2 or not isinstance(node, Mapping):
        return members
    matching = [m for m in models if all(
        typing.get_origin(f.annotation) is not Literal or node.get(k) in typing.get_args(f.annotation)
        for k, f in m.model_fields.items() if k in node)]
    return matching or members
