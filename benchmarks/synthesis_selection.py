# ruff: noqa: T201  (a command-line script: its printed table is its report)
"""Choose a generator's settings on the real VALIDATION split: train, sample and score candidate settings.

Every candidate is a set of overrides merged into the generator's block `synthesis.<source>.<generator>`
(conf/base/parameters_synthesis.yml, as `kedro run` resolves it: conf/base plus the run environment). For each
one the generator is trained on the train split and sampled exactly as the synthesis pipeline does it (the stage
functions of ehr_adversarial.synthesis.stages, lattice snapping included, one seed for every candidate), then
scored (candidates that differ only in `lattice` share one trained and sampled generator, each snapping a copy of
its output):

- utility on the real validation split: TSTR vs TRTR AUROC (and the ratio, with its paired bootstrap CI) of the
  flat models of `synthetic_evaluation.<source>.utility.flat_models` (evaluate.predict_mortality /
  evaluate_utility); TRTR (real train → validation) is computed once; the sequence model only with
  `--sequence-model` (slow);
- fidelity against the real train split (synthetic_evaluation.fidelity on the flat views): Pearson r of the
  column means/prevalences, mean KS, correlation mean |Δ|, co-measurement (mean |Δ| of the Jaccard index of
  every pair of variables' observed hours), the most separating column (rank test), the label rate, and the
  cross-validated GBM detection AUC (real vs synthetic; `--no-detection` skips it).
  `--full-fidelity` runs the pipeline's whole evaluate_fidelity instead (MMD², PRDC, per-column and per-kind
  detectors: minutes per candidate), with the validation split as the detectors' floor; the table then adds the
  kind of column (missing_rate, std, ...) whose columns together give the candidate away most.

The test split is never read: it is reserved for the final report and the privacy holdout. The inputs are the
latest versions the features pipeline wrote (`features.<feature_set>.model_input_{train,validation}`,
`.feature_spec`, `features.splits`, whose record ids keep synthetic ids from colliding with real ones;
SynEHRgy adds `ingestion.timeseries` / `ingestion.static`, of which its tokenizer stage keeps the train records
only, as in the pipeline, and generators that learn ICD-9 codes on a source
with diagnoses (MIMIC-III) add `ingestion.static` / `ingestion.diagnoses`). The feature set of a generator is
the registry's (`pipeline_registry.STUDIES[source].generators`).

Usage (after `kedro run --pipelines ingestion,features`):

    python benchmarks/synthesis_selection.py --generator ehrdiff \\
        --candidate "" --candidate "sampler.guidance=0" --candidate "label=column" \\
        [--source physionet2012] [--env ENV] [--seed 2012] [--device auto] [--data data] [--threads N] \\
        [--max-steps N] [--n-samples N] [--select-by tstr_ratio] [--sequence-model] [--no-detection] \\
        [--full-fidelity]
    python benchmarks/synthesis_selection.py --generator kmimic --list-keys

Candidates (`--candidate`, repeatable; none given = the configured defaults alone):
- `""`: the configured block as it is;
- `key=value[,key=value ...]`: dotted keys into the block (`sampler.guidance=0`, `temporal_vae.beta=0.01`,
  `lattice.max_levels=50`), values parsed as YAML (`[256, 256]`, `null`, `true`, `1e-3`); commas inside
  brackets, braces or quotes do not separate overrides (`hidden_dims=[512, 512],time_dim=256`);
- a YAML mapping `{sampler: {guidance: 0}, label: column}`: nested mappings are merged like dotted keys.
A key must exist in the configured block or in the generator's settings model (synthesis.settings); an unknown
key is an error naming it and the known keys (`--list-keys` prints them). Each merged block is checked against
the settings model before anything trains.
`--max-steps N` caps every `max_steps` of each block (K-MIMIC: all three stages) and `--n-samples N` caps the
number of synthetic records (`train` counts as the training records): for smoke runs; the caps are recorded.

Selection (`--select-by`, ties go to the earlier candidate; failed candidates are never chosen):
- `tstr_ratio` (default): the highest mean over the flat models of TSTR/TRTR AUROC on the validation split;
- `r_means`: the highest Pearson r of means; `ks_mean`: the lowest mean KS; `detection_auc`: the lowest GBM
  detection AUC; `label_rate`: the smallest |synthetic − real train| label rate.

Output: the markdown table on stdout, and `selection.json` (command line, resolved settings and metrics of every
candidate, input versions, seed, device, machine, torch threads) plus `selection.md` in a new folder
`data/08_reporting/<source>/synthesis_selection/<generator>/<version>/` (Kedro's version string, UTC), whose path
is printed last. An earlier run's folder is never overwritten. A candidate whose training or scoring fails is
logged and recorded with its error; the others still run.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import re
import shlex
import sys
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError

ROOT = Path(__file__).resolve().parents[1]
FEATURES_COMMAND = "kedro run --pipelines ingestion,features"
FLAT_LABELS = {"logistic_regression": "logreg", "gradient_boosting": "GBM"}

logger = logging.getLogger("synthesis_selection")


class SelectionError(ValueError):
    """A problem with the command line, the settings or the inputs: reported before anything trains."""


# ------------------------------------------------------------------------------ candidates


def _settings_models() -> dict[str, type[BaseModel]]:
    from ehr_adversarial.synthesis.settings import EhrdiffSettings, KmimicSettings, SynehrgySettings

    return {"ehrdiff": EhrdiffSettings, "synehrgy": SynehrgySettings, "kmimic": KmimicSettings}


def split_overrides(text: str) -> list[str]:
    """`text` split at the commas outside brackets, braces and quotes."""
    parts, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote or depth:
        raise SelectionError(f"candidate {text!r}: unbalanced brackets or quotes")
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_value(text: str) -> Any:
    """A value as YAML; `1e-3` (a string to YAML 1.1) as the float it means."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SelectionError(f"value {text!r} is not valid YAML: {exc}") from exc
    return float(value) if isinstance(value, str) and _FLOAT.fullmatch(value) else value


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf; an empty mapping is a leaf."""
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def parse_candidate(text: str) -> dict[str, Any]:
    """A candidate's overrides, dotted key → value: "" (none), `k=v,k.sub=v` or a YAML mapping."""
    text = text.strip()
    if not text:
        return {}
    pairs: list[tuple[str, Any]] = []
    if text.startswith("{"):
        mapping = parse_value(text)
        if not isinstance(mapping, Mapping):
            raise SelectionError(f"candidate {text!r}: a YAML mapping must be one `{{key: value, ...}}`")
        pairs = list(_flatten(mapping))
    else:
        for part in split_overrides(text):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise SelectionError(f"candidate {text!r}: {part!r} is not `key=value`")
            parsed = parse_value(value.strip())
            if isinstance(parsed, Mapping) and parsed:
                pairs += [(f"{key.strip()}.{sub}", v) for sub, v in _flatten(parsed)]
            else:
                pairs.append((key.strip(), parsed))
    overrides: dict[str, Any] = {}
    for key, value in pairs:
        if key in overrides:
            raise SelectionError(f"candidate {text!r} sets {key!r} twice")
        overrides[key] = value
    clashes = [(a, b) for a in overrides for b in overrides if b.startswith(a + ".")]
    if clashes:
        raise SelectionError(f"candidate {text!r} sets both {clashes[0][0]!r} and {clashes[0][1]!r}")
    return overrides


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted key of a pydantic settings model, nested models included."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(prefix + name)
        for sub in _models_in(info.annotation):
            keys |= model_keys(sub, f"{prefix}{name}.")
    return keys


def block_keys(block: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key of a (nested) settings mapping, intermediate ones included."""
    keys: set[str] = set()
    for key, value in block.items():
        keys.add(prefix + key)
        if isinstance(value, Mapping):
            keys |= block_keys(value, f"{prefix}{key}.")
    return keys


def known_keys(block: Mapping[str, Any], model: type[BaseModel] | None) -> list[str]:
    """The keys a candidate may set: those of the configured block and of its settings model."""
    return sorted(block_keys(block) | (model_keys(model) if model is not None else set()))


def validate_overrides(overrides: Mapping[str, Any], block: Mapping[str, Any], model: type[BaseModel] | None,
                       where: str) -> None:
    """An unknown key is a SelectionError naming it and the known keys."""
    known = known_keys(block, model)
    for key in overrides:
        if key not in known:
            close = get_close_matches(key, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SelectionError(f"unknown setting {key!r} for {where}{hint}; known keys: {', '.join(known)}")


def merge_overrides(block: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `block` with each dotted key set; a non-mapping on the way (`lattice: true` under
    `lattice.max_levels`) becomes a mapping."""
    merged = copy.deepcopy(dict(block))
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        node = merged
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = copy.deepcopy(value)
    return merged


def check_settings(settings: Mapping[str, Any], model: type[BaseModel] | None, where: str) -> None:
    """The merged block against the generator's settings model, as a run's parameter check does."""
    if model is None:
        return
    try:
        model.model_validate(dict(settings))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors())
        raise SelectionError(f"invalid settings for {where}: {problems}") from exc


def resolve_candidate(text: str, block: Mapping[str, Any], model: type[BaseModel] | None,
                      where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A candidate string → (its overrides, the merged and checked settings block)."""
    overrides = parse_candidate(text)
    validate_overrides(overrides, block, model, where)
    settings = merge_overrides(block, overrides)
    check_settings(settings, model, f"{where} with candidate {text!r}")
    return overrides, settings


def apply_caps(settings: Mapping[str, Any], max_steps: int | None, n_samples: int | None, n_train: int) -> dict[str, Any]:
    """`settings` with every `max_steps` (at any depth) at most `max_steps`, and `n_samples` at most
    `n_samples` (`train` = n_train)."""
    capped = copy.deepcopy(dict(settings))

    def cap(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                cap(value)
            elif key == "max_steps" and max_steps is not None:
                node[key] = min(int(value), max_steps)

    cap(capped)
    if n_samples is not None:
        current = n_train if capped["n_samples"] == "train" else int(capped["n_samples"])
        capped["n_samples"] = min(current, n_samples)
    return capped


def describe(overrides: Mapping[str, Any]) -> str:
    """A candidate's overrides as one line; none = `defaults`."""
    if not overrides:
        return "defaults"
    return ", ".join(f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
                     for key, value in overrides.items())


# ------------------------------------------------------------------------------ inputs


@dataclass
class Inputs:
    """What the runs read, and the version of each versioned file."""

    train: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    feature_spec: dict[str, Any]
    splits: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # ingestion.<name>
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # dataset → path, version


def latest_version(folder: Path, what: str, env_hint: str = "") -> Path:
    """The newest complete version `<folder>/<version>/<folder.name>` of a versioned dataset file."""
    from ehr_adversarial.reporting.latest import newest_version

    try:
        return newest_version(folder)
    except FileNotFoundError:
        raise SelectionError(
            f"missing input {what}: no version of {folder}/<version>/{folder.name}; run "
            f"`{FEATURES_COMMAND}{env_hint}` first") from None


def input_paths(data: Path, source: str, feature_set: str, tables: Sequence[str]) -> dict[str, Path]:
    """The versioned folders of the catalog entries (conf/base/catalog_0{2,4,5}_*.yml) the runs read."""
    model_input = data / "05_model_input" / source / "features" / feature_set
    feature = data / "04_feature" / source / "features"
    paths = {
        f"features.{feature_set}.model_input_train": model_input / "model_input_train.npz",
        f"features.{feature_set}.model_input_validation": model_input / "model_input_validation.npz",
        f"features.{feature_set}.feature_spec": feature / feature_set / "feature_spec.json",
        "features.splits": feature / "splits.parquet",
    }
    for table in tables:
        paths[f"ingestion.{table}"] = data / "02_intermediate" / source / "ingestion" / f"{table}.parquet"
    return paths


def load_file(path: Path) -> Any:
    """One dataset file, read with the class its catalog entry names."""
    from ehr_adversarial.datasets.tensors import TensorBundleDataset

    if path.suffix == ".npz":
        return dict(TensorBundleDataset(filepath=str(path)).load())
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return pd.read_parquet(path)


def load_inputs(data: Path, source: str, feature_set: str, tables: Sequence[str], env_hint: str = "") -> Inputs:
    """The latest version of every input; a warning when they come from different runs."""
    files = {name: latest_version(folder, name, env_hint)
             for name, folder in input_paths(data, source, feature_set, tables).items()}
    versions = {name: {"path": str(path), "version": path.parent.name} for name, path in files.items()}
    distinct = {entry["version"] for name, entry in versions.items() if name.startswith("features.")}
    if len(distinct) > 1:
        logger.warning("the features inputs come from different runs (versions %s); rerun `%s`",
                       sorted(distinct), FEATURES_COMMAND)
    loaded = {name: load_file(path) for name, path in files.items()}
    for name, path in files.items():
        logger.info("input %s: %s", name, path)
    prefix = f"features.{feature_set}."
    return Inputs(train=loaded[prefix + "model_input_train"], validation=loaded[prefix + "model_input_validation"],
                  feature_spec=loaded[prefix + "feature_spec"], splits=loaded["features.splits"],
                  tables={name.removeprefix("ingestion."): loaded[name] for name in files if name.startswith("ingestion.")},
                  versions=versions)


# ------------------------------------------------------------------------------ training, sampling


@dataclass
class Generation:
    synthetic: dict[str, np.ndarray]
    train_seconds: float
    sample_seconds: float


def generate(generator: str, settings: dict[str, Any], inputs: Inputs, parameters: Mapping[str, Any], source: str,
             feature_set: str, codes: dict[str, np.ndarray] | None, seed: int, device: str) -> Generation:
    """Train `generator` on the train split and sample it, through the synthesis pipeline's stage functions
    in the pipeline's order (synthesis/pipeline.py), lattice snapping included."""
    from ehr_adversarial.synthesis import stages

    train, spec, splits = inputs.train, inputs.feature_spec, inputs.splits
    start = time.perf_counter()
    if generator == "ehrdiff":
        model = (stages.train_ehrdiff_with_codes(train, codes, settings, seed, device) if codes is not None
                 else stages.train_ehrdiff(train, settings, seed, device))
        trained = time.perf_counter()
        synthetic = stages.sample_ehrdiff(model, splits, spec, train, settings, seed, device)
    elif generator == "kmimic":
        static_vae = stages.train_kmimic_static_vae(train, settings, seed, device)
        temporal_vae = stages.train_kmimic_temporal_vae(train, settings, seed, device)
        latent_gan = stages.train_kmimic_latent_gan(static_vae, temporal_vae, train, settings, seed, device)
        trained = time.perf_counter()
        synthetic = stages.sample_kmimic(static_vae, temporal_vae, latent_gan, splits, spec, train, settings, seed, device)
    elif generator == "synehrgy":
        timeseries, static = inputs.tables["timeseries"], inputs.tables["static"]
        if codes is not None:
            tokenizer, tokens = stages.tokenize_train_records_with_codes(timeseries, static, splits, codes, settings)
        else:
            tokenizer, tokens = stages.tokenize_train_records(timeseries, static, splits, settings)
        model = stages.train_synehrgy(tokens, tokenizer, settings, seed, device)
        trained = time.perf_counter()
        generated = stages.sample_synehrgy(model, tokenizer, splits, settings, seed, device)
        features = parameters["features"][source]
        feature_set_params = features["feature_sets"][feature_set]
        if codes is not None:
            syn_timeseries, syn_static, syn_codes = stages.detokenize_synthetic_with_codes(generated, tokenizer)
            synthetic = stages.synthetic_tensors_with_codes(syn_timeseries, syn_static, syn_codes, tokenizer, spec,
                                                            features, feature_set_params, train, settings)
        else:
            syn_timeseries, syn_static = stages.detokenize_synthetic(generated, tokenizer)
            synthetic = stages.synthetic_tensors(syn_timeseries, syn_static, spec, features, feature_set_params,
                                                 train, settings)
    else:
        raise SelectionError(f"unknown generator {generator!r}")
    done = time.perf_counter()
    return Generation(dict(synthetic), trained - start, done - trained)


# ------------------------------------------------------------------------------ scoring


def _flat(bundle: Mapping[str, np.ndarray], spec: Mapping[str, Any], evaluation: Mapping[str, Any]) -> pd.DataFrame:
    from ehr_adversarial.synthetic_evaluation.flat_view import flat_view

    return flat_view(bundle, spec["feature_names"], spec["static_names"], evaluation["summary_stats"])


def score_fidelity(synthetic: Mapping[str, np.ndarray], real_train: Mapping[str, np.ndarray], inputs: Inputs,
                   evaluation: Mapping[str, Any], seed: int, detection: bool, full: bool,
                   real_validation: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The selection's fidelity metrics against the real train split (synthetic_evaluation.fidelity)."""
    from ehr_adversarial.synthetic_evaluation import evaluate, fidelity
    from ehr_adversarial.synthetic_evaluation.flat_view import align_columns

    label_rate = float(np.mean(synthetic["y"])) if "y" in synthetic else float("nan")
    if full:
        metrics, _ = evaluate.evaluate_fidelity(synthetic, real_train, inputs.feature_spec, evaluation, seed,
                                                real_holdout=real_validation)
        families = metrics["discriminator"].get("families", {})
        separating = metrics.get("separating_columns") or [{}]
        kinds = (metrics["discriminator"].get("per_group") or {}).get("groups") or [{}]
        return {"pearson_r_means": metrics["pearson_r"]["means"], "ks_mean": metrics["ks"]["mean"],
                "co_measurement": metrics.get("co_measurement"),
                "corr_mean_abs_diff": metrics["correlation_distance"]["mean_abs_diff"],
                "most_separating_column": separating[0].get("column"), "most_separating_auc": separating[0].get("auc"),
                "label_rate": label_rate,
                "detection_auc": families.get("gbm", {}).get("auc", metrics["discriminator"]["auc"]),
                "most_telling_kind": kinds[0].get("group"), "most_telling_kind_auc": kinds[0].get("auc"),
                "evaluate_fidelity": metrics}
    real = _flat(real_train, inputs.feature_spec, evaluation)
    synth = align_columns(real, _flat(synthetic, inputs.feature_spec, evaluation))
    table = fidelity.variable_statistics(real, synth)
    means = evaluate._mean_columns(real.columns)  # the columns of the pipeline's `pearson_r.means`
    separating = fidelity.separating_columns(real, synth, top=5)
    result: dict[str, Any] = {
        "pearson_r_means": fidelity.dimension_wise_pearson(real[means], synth[means]),
        "pearson_r_all": fidelity.dimension_wise_pearson(real, synth),
        "ks_mean": float(table["ks_statistic"].mean()),
        "ks": evaluate._ks_summary(table),
        "corr_mean_abs_diff": fidelity.correlation_distance(real, synth)["mean_abs_diff"],
        "most_separating_column": separating[0]["column"] if separating else None,
        "most_separating_auc": separating[0]["auc"] if separating else None,
        "separating_columns": separating,
        "label_rate": label_rate,
        "detection_auc": None,
    }
    if "mask" in synthetic:
        result["co_measurement"] = fidelity.co_measurement(real_train["mask"], synthetic["mask"],
                                                           inputs.feature_spec["feature_names"])
    if detection:
        settings = evaluation["fidelity"]
        result["detection"] = fidelity.discriminator_auc(real, synth, n_splits=settings["discriminator_folds"],
                                                         max_records=settings["discriminator_max_records"],
                                                         seed=seed, family="gbm")
        result["detection_auc"] = result["detection"]["auc"]
    return result


def utility_summary(utility: Mapping[str, Any], flat_models: Sequence[str]) -> dict[str, Any]:
    """Per model TSTR/TRTR AUROC and the ratio; the mean ratio over the flat models."""
    models = utility["models"]
    summary = {model: {"trtr_auroc": s["trtr"]["auroc"]["value"], "tstr_auroc": s["tstr"]["auroc"]["value"],
                       "ratio_auroc": s["tstr_over_trtr"]["auroc"]["value"],
                       "ratio_auroc_ci": [s["tstr_over_trtr"]["auroc"]["ci_low"], s["tstr_over_trtr"]["auroc"]["ci_high"]]}
               for model, s in models.items()}
    ratios = [summary[m]["ratio_auroc"] for m in flat_models if m in summary]
    return {"models": summary, "mean_flat_ratio_auroc": float(np.mean(ratios)) if ratios else float("nan")}


# ------------------------------------------------------------------------------ selection, report


@dataclass(frozen=True)
class Rule:
    description: str
    value: Callable[[Mapping[str, Any], float], float]  # (candidate row, real label rate) → the score
    higher_is_better: bool


SELECT_BY: dict[str, Rule] = {
    "tstr_ratio": Rule("highest mean TSTR/TRTR AUROC over the flat models on the validation split",
                       lambda row, _: row["utility"]["mean_flat_ratio_auroc"], True),
    "r_means": Rule("highest Pearson r of the column means (synthetic vs real train)",
                    lambda row, _: row["fidelity"]["pearson_r_means"], True),
    "ks_mean": Rule("lowest mean KS statistic (synthetic vs real train)",
                    lambda row, _: row["fidelity"]["ks_mean"], False),
    "detection_auc": Rule("lowest GBM detection AUC (real train vs synthetic)",
                          lambda row, _: row["fidelity"]["detection_auc"], False),
    "label_rate": Rule("smallest |synthetic - real train| label rate",
                       lambda row, real: abs(row["fidelity"]["label_rate"] - real), False),
}


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float, np.floating)) and math.isfinite(value)


def select(rows: Sequence[Mapping[str, Any]], rule_name: str, real_label_rate: float) -> tuple[int | None, list[float | None]]:
    """The index of the chosen candidate by `rule_name` (None when no candidate has a score) and every score."""
    rule = SELECT_BY[rule_name]
    scores: list[float | None] = []
    for row in rows:
        value = None if "error" in row else rule.value(row, real_label_rate)
        scores.append(float(value) if _finite(value) else None)
    best = None
    for index, value in enumerate(scores):
        if value is not None and (best is None or (value > scores[best] if rule.higher_is_better else value < scores[best])):
            best = index
    return best, scores


def _cell(value: Any, spec: str = ".3f") -> str:
    from ehr_adversarial.reporting.markdown import format_cell

    return format_cell(value, spec)


def _generation_cells(index: int, row: Mapping[str, Any]) -> list[str]:
    """Training and sampling seconds (sampling with the post-processing); a candidate that reused another's
    generator run names it and adds only its own post-processing."""
    timing, first = row["timing"], row.get("generator_run_of", index)
    postprocess = timing.get("postprocess_s", 0.0)
    if first == index:
        return [_cell(timing["train_s"], ".1f"), _cell(timing["sample_s"] + postprocess, ".1f")]
    return [f"#{first}'s", f"#{first}'s + {_cell(postprocess, '.1f')}"]


def markdown_report(report: Mapping[str, Any]) -> str:
    """The selection as markdown: the context, one row per candidate, the choice."""
    rows, models = report["candidates"], report["evaluation"]["models"]
    trtr = report["evaluation"]["trtr_auroc"]
    label = {m: FLAT_LABELS.get(m, m) for m in models}
    header = ["#", "candidate"]
    for model in models:
        header += [f"{label[model]} TSTR", f"{label[model]} TSTR/TRTR"]
    header += ["mean TSTR/TRTR (flat)", "r means", "mean KS", "co-measurement mean abs Δ Jaccard",
               f"label rate (real {report['real_label_rate']:.3f})", "detection AUC", "most separating column (AUC)",
               "train s", "sample s", "score s"]
    align = ["---:", "---", *["---:"] * (2 * len(models) + 6), "---", *["---:"] * 3]
    # with --full-fidelity: the kind of column (missing_rate, std, ...) whose columns together give it away most
    by_kind = any("most_telling_kind" in row.get("fidelity", {}) for row in rows)
    if by_kind:
        header.insert(header.index("train s"), "most telling kind of column (AUC)")
        align.insert(len(align) - 3, "---")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for index, row in enumerate(rows):
        chosen = index == report["chosen"]
        name = f"`{row['candidate']}`" if row["overrides"] else "defaults"
        cells = [str(index), f"**{name}** (chosen)" if chosen else name]
        if "error" in row:
            cells += [f"failed: {row['error']}"] + [""] * (len(header) - 3)
        else:
            util, fid, timing = row["utility"], row["fidelity"], row["timing"]
            for model in models:
                scores = util["models"].get(model, {})
                cells += [_cell(scores.get("tstr_auroc")), _cell(scores.get("ratio_auroc"))]
            co_measurement = fid.get("co_measurement") or {}
            cells += [_cell(util["mean_flat_ratio_auroc"]), _cell(fid["pearson_r_means"]), _cell(fid["ks_mean"]),
                      _cell(co_measurement.get("mean_abs_diff")), _cell(fid["label_rate"]), _cell(fid["detection_auc"]),
                      f"{_cell(fid['most_separating_column'])} ({_cell(fid['most_separating_auc'])})",
                      *([f"{_cell(fid.get('most_telling_kind'))} ({_cell(fid.get('most_telling_kind_auc'))})"]
                        if by_kind else []),
                      *_generation_cells(index, row), _cell(timing["score_s"], ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    rule = SELECT_BY[report["select_by"]]
    chosen = report["chosen"]
    choice = (f"**Chosen: #{chosen} {rows[chosen]['candidate'] or 'defaults'}** by `--select-by {report['select_by']}` "
              f"({rule.description}; score {_cell(report['scores'][chosen], '.4f')})." if chosen is not None
              else f"No candidate could be scored by `--select-by {report['select_by']}`.")
    caps = {k: v for k, v in report["caps"].items() if v is not None}
    context = [
        f"# Settings selection: {report['generator']} on {report['source']} (feature set `{report['feature_set']}`)",
        "",
        f"Trained on the train split ({report['n_train']} records); utility on the real validation split "
        f"({report['evaluation']['n_validation']} records, label rate {report['evaluation']['validation_label_rate']:.3f}; "
        "the test split is not read); fidelity against the real train split. TRTR AUROC on validation: "
        + ", ".join(f"{label[m]} {trtr[m]:.3f}" for m in models) + ". "
        f"Seed {report['seed']}, device {report.get('device_resolved', report['device'])}, {report['torch_threads']} torch thread(s)"
        + (f", caps {caps}" if caps else "") + ".",
        "",
        *lines,
        "",
        choice,
        "",
        "Inputs: " + "; ".join(f"`{name}` {entry['version']}" for name, entry in report["inputs"].items()) + ".",
        "",
        f"Command: `{report['command']}`",
    ]
    return "\n".join(context) + "\n"


def output_folder(data: Path, source: str, generator: str) -> Path:
    """A new folder `08_reporting/<source>/synthesis_selection/<generator>/<version>` (never an existing one)."""
    from kedro.io.core import generate_timestamp

    parent = data / "08_reporting" / source / "synthesis_selection" / generator
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        folder = parent / generate_timestamp()
        try:
            folder.mkdir()
        except FileExistsError:
            time.sleep(0.002)
            continue
        return folder
    raise RuntimeError(f"could not create a new version folder under {parent}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pd.Timestamp, Path)):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# ------------------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True, choices=sorted(_settings_models()))
    parser.add_argument("--candidate", action="append", dest="candidates", metavar="OVERRIDES",
                        help='overrides of the generator block ("" = the configured defaults); repeatable')
    parser.add_argument("--source", default=None, help="data source (default: the run environment's globals)")
    parser.add_argument("--env", default=None, help="Kedro run environment whose conf/ the settings come from")
    parser.add_argument("--seed", type=int, default=None, help="default: params:seed")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda[:N] (default: params:device)")
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="the project's data folder")
    parser.add_argument("--threads", type=int, default=None, help="torch and OpenMP/BLAS threads (default: as they are)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every max_steps of each block (smoke runs)")
    parser.add_argument("--n-samples", type=int, default=None, help="cap the number of synthetic records (smoke runs)")
    parser.add_argument("--select-by", choices=sorted(SELECT_BY), default="tstr_ratio")
    parser.add_argument("--sequence-model", action="store_true", help="also TSTR/TRTR of utility.sequence_model (slow)")
    parser.add_argument("--no-detection", action="store_true", help="skip the GBM detection AUC")
    parser.add_argument("--full-fidelity", action="store_true",
                        help="the pipeline's whole evaluate_fidelity per candidate (minutes each)")
    parser.add_argument("--list-keys", action="store_true", help="print the keys a candidate may set, then exit")
    return parser


def project_parameters(env: str | None) -> dict[str, Any]:
    """The parameters and globals as `kedro run --env <env>` resolves them."""
    from ehr_adversarial import settings

    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(ROOT / "conf"), env=env, **settings.CONFIG_LOADER_ARGS)
    return {"parameters": loader["parameters"], "globals": loader["globals"]}


def _threads(n: int | None):
    if n is None:
        return nullcontext()
    from ehr_adversarial.training.torch_loop import limited_threads

    return limited_threads(n)


@contextmanager
def _step(message: str, *args: Any) -> Iterator[None]:
    logger.info(message + " ...", *args)
    start = time.perf_counter()
    yield
    logger.info(message + ": %.1f s", *args, time.perf_counter() - start)


def run(args: argparse.Namespace, argv: Sequence[str]) -> Path:
    """The whole selection; returns the output folder."""
    import torch

    from ehr_adversarial.pipeline_registry import STUDIES
    from ehr_adversarial.synthetic_evaluation import evaluate
    from ehr_adversarial.torch_utils import resolve_device

    config = project_parameters(args.env)
    parameters = config["parameters"]
    source = args.source or config["globals"]["source"]
    if source not in STUDIES:
        raise SelectionError(f"unknown source {source!r}; known: {', '.join(STUDIES)}")
    study = STUDIES[source]
    if args.generator not in study.generators:
        raise SelectionError(f"{source} has no generator {args.generator!r}; its generators: {', '.join(study.generators)}")
    feature_set = study.generators[args.generator]
    try:
        block = parameters["synthesis"][source][args.generator]
        evaluation = copy.deepcopy(parameters["synthetic_evaluation"][source])
    except KeyError as exc:
        raise SelectionError(f"no settings block {exc} for synthesis/synthetic_evaluation.{source} in conf/") from exc
    model = _settings_models().get(args.generator)
    where = f"synthesis.{source}.{args.generator}"
    if args.list_keys:
        print("\n".join(known_keys(block, model)))
        return Path()
    candidates = args.candidates if args.candidates else [""]
    resolved = [resolve_candidate(text, block, model, where) for text in candidates]  # all checked before training
    for name, value in (("--max-steps", args.max_steps), ("--n-samples", args.n_samples), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise SelectionError(f"{name} must be ≥ 1; got {value}")

    seed = int(parameters["seed"] if args.seed is None else args.seed)
    device = str(args.device or parameters.get("device", "auto"))
    codes_needed = args.generator in study.code_generators
    tables = (["timeseries", "static"] if args.generator == "synehrgy" else []) + (
        ["static", "diagnoses"] if codes_needed else [])
    env_hint = f" --env {args.env}" if args.env else ""
    inputs = load_inputs(args.data, source, feature_set, list(dict.fromkeys(tables)), env_hint)
    n_train = len(inputs.train["y"])
    logger.info("%s on %s/%s: %d train, %d validation records; %d candidate(s); seed %d, device %s",
                args.generator, source, feature_set, n_train, len(inputs.validation["y"]), len(candidates), seed, device)

    evaluation["utility"]["sequence_model"] = evaluation["utility"].get("sequence_model") if args.sequence_model else None
    flat_models = list(evaluation["utility"]["flat_models"])
    real_train, real_validation, codes = inputs.train, inputs.validation, None
    if codes_needed:
        from ehr_adversarial.synthesis.stages import build_code_matrix

        static, diagnoses = inputs.tables["static"], inputs.tables["diagnoses"]
        codes = build_code_matrix(inputs.train, static, diagnoses)
        real_train = evaluate.attach_codes(inputs.train, static, diagnoses, codes)
        real_validation = evaluate.attach_codes(inputs.validation, static, diagnoses, codes)

    from ehr_adversarial.synthesis import stages

    rows: list[dict[str, Any]] = []
    generations: dict[str, tuple[int, Generation]] = {}  # settings but `lattice` → (first candidate, unsnapped output)
    with _threads(args.threads):
        torch_threads = torch.get_num_threads()
        with _step("TRTR: %s on real train → validation", ", ".join(flat_models)):
            trtr = evaluate.predict_mortality(real_train, real_validation, inputs.feature_spec, evaluation, seed, device)
        for index, ((overrides, settings), text) in enumerate(zip(resolved, candidates, strict=True)):
            settings = apply_caps(settings, args.max_steps, args.n_samples, n_train)
            row: dict[str, Any] = {"candidate": text, "overrides": overrides, "description": describe(overrides),
                                   "settings": settings}
            logger.info("candidate #%d of %d: %s", index, len(candidates), row["description"])
            try:
                # Candidates that differ only in the post-processing (`lattice`) share one trained and sampled
                # generator: the stages snap as their last step, so snapping a copy of the unsnapped output is
                # what the pipeline would produce with the candidate's settings.
                key = json.dumps({k: v for k, v in settings.items() if k != "lattice"}, sort_keys=True, default=str)
                if key not in generations:
                    generations[key] = (index, generate(args.generator, {**settings, "lattice": False}, inputs,
                                                        parameters, source, feature_set, codes, seed, device))
                first, raw = generations[key]
                row["generator_run_of"] = first
                start = time.perf_counter()
                synthetic = stages.snap_to_train_lattice({k: np.array(v, copy=True) for k, v in raw.synthetic.items()},
                                                         inputs.train, inputs.feature_spec, settings)
                generation = Generation(synthetic, raw.train_seconds, raw.sample_seconds)
                postprocess_seconds = time.perf_counter() - start
                start = time.perf_counter()
                with _step("candidate #%d: TSTR on validation", index):
                    tstr = evaluate.predict_mortality(generation.synthetic, real_validation, inputs.feature_spec,
                                                      evaluation, seed, device)
                    utility = evaluate.evaluate_utility(trtr, tstr, evaluation, seed)
                with _step("candidate #%d: fidelity against train", index):
                    row["fidelity"] = score_fidelity(generation.synthetic, real_train, inputs, evaluation, seed,
                                                     not args.no_detection, args.full_fidelity, real_validation)
                row["utility"] = {**utility_summary(utility, flat_models), "evaluate_utility": utility}
                row["n_synthetic"] = len(generation.synthetic["y"])
                row["timing"] = {"train_s": generation.train_seconds, "sample_s": generation.sample_seconds,
                                 "postprocess_s": postprocess_seconds, "score_s": time.perf_counter() - start}
                logger.info("candidate #%d: mean TSTR/TRTR %.3f, r means %.3f, mean KS %.3f", index,
                            row["utility"]["mean_flat_ratio_auroc"], row["fidelity"]["pearson_r_means"],
                            row["fidelity"]["ks_mean"])
            except Exception as exc:  # one failed candidate must not lose the others' hours
                logger.exception("candidate #%d (%s) failed", index, row["description"])
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)

    real_label_rate = float(np.mean(inputs.train["y"]))
    chosen, scores = select(rows, args.select_by, real_label_rate)
    models = [m for m in trtr.columns if m not in ("record_id", "y_true")]
    from sklearn.metrics import roc_auc_score

    report: dict[str, Any] = {
        "command": shlex.join(["python", str(Path(__file__).resolve().relative_to(ROOT)), *argv]),
        "argv": list(argv),
        "source": source, "generator": args.generator, "feature_set": feature_set, "env": args.env,
        "seed": seed, "device": device, "device_resolved": str(resolve_device(device)), "torch_threads": torch_threads,
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "inputs": inputs.versions,
        "note": "model_input_test is never read; features.splits is read for its record ids only (synthetic ids "
                "avoid every real one, as in the pipeline)",
        "n_train": n_train,
        "real_label_rate": real_label_rate,
        "configured_block": block,
        "caps": {"max_steps": args.max_steps, "n_samples": args.n_samples},
        "evaluation": {"split": "validation", "n_validation": int(len(real_validation["y"])),
                       "validation_label_rate": float(np.mean(real_validation["y"])),
                       "models": models, "flat_models": flat_models,
                       "trtr_auroc": {m: float(roc_auc_score(trtr["y_true"], trtr[m])) for m in models},
                       "settings": evaluation},
        "select_by": args.select_by, "rule": SELECT_BY[args.select_by].description,
        "scores": scores, "chosen": chosen,
        "chosen_candidate": rows[chosen]["candidate"] if chosen is not None else None,
        "candidates": rows,
    }
    markdown = markdown_report(report)
    folder = output_folder(args.data, source, args.generator)
    (folder / "selection.json").write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    (folder / "selection.md").write_text(markdown)
    print(markdown)
    print(f"wrote {folder / 'selection.json'} and selection.md")
    if all("error" in row for row in rows):
        raise RuntimeError(f"every candidate failed; see {folder / 'selection.json'}")
    return folder


def main(argv: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO)  # conf/logging.yml (loaded with the project) leaves the root at WARNING
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    try:
        return run(args, argv)
    except SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
