"""Synthetic attack: are models trained on synthetic data susceptible where the real-data model is?

Per generator g (GENERATOR_FEATURE_SETS[source]) and torch model m (`synthetic_attack.<source>.models`),
namespaced `<source>.<g>_<m>`:
- train_on_synthetic: m's selected config (`<source>.<m>.selected_config`) trained on
  `<source>.<g>.synthetic`, early stopping on a held-out share of the synthetic data → `model`;
- evaluate_on_real_test: its predictions and metrics on the real test split → `test_metrics`;
- the attack pipeline (ehr_adversarial.pipelines.attack) on the real test split → `attack_*`,
  `cumulative_susceptibility`, ...
With `real_baseline_seeds` (default [1, 2, 3]) the same recipe also trains m on the real training
split once per seed s, namespace `<source>.real_retrained_s<s>_<m>`: the ρ models trained on real
data reach, against which the synthetic-trained models' ρ is read.
Then one comparison under `<source>`: `<source>.synthetic_attack_comparison` (table),
`_report` (markdown) and `_figure`, against the real `<source>.<m>.cumulative_susceptibility`.
See docs/synthetic_attack.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial, update_wrapper
from typing import Any

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines.attack import create_model_pipeline as attack_pipeline
from ehr_adversarial.pipelines.synthesis import GENERATOR_FEATURE_SETS
from ehr_adversarial.pipelines.training import MODEL_FEATURE_SETS, TORCH_MODELS

from .nodes import REAL, baseline_name, baseline_seed, compare_susceptibility, evaluate_on_real_test, train_on_synthetic


def default_models(source: str) -> list[str]:
    """The torch models of `source` that read the feature set every generator of `source` learns."""
    feature_sets = set(GENERATOR_FEATURE_SETS.get(source, {}).values())
    return [m for m, fs in MODEL_FEATURE_SETS.get(source, {}).items() if m in TORCH_MODELS and {fs} == feature_sets]


def model_pairs(source: str, generators: Iterable[str], models: Iterable[str]) -> list[tuple[str, str]]:
    """Every (generator, model) pair; fails on unknown names and on feature sets that differ."""
    if source not in GENERATOR_FEATURE_SETS:
        raise ValueError(f"no generators defined for source {source!r}; known: {sorted(GENERATOR_FEATURE_SETS)}")
    known_generators = GENERATOR_FEATURE_SETS[source]
    generators, models = list(generators), list(models)
    if not generators or not models:
        raise ValueError(f"synthetic_attack.{source} needs at least one generator and one model "
                         f"(generators {generators}, models {models})")
    for generator in generators:
        if generator not in known_generators:
            raise ValueError(f"unknown generator {generator!r} for {source}; known: {sorted(known_generators)}")
    for model in models:
        if model not in TORCH_MODELS or model not in MODEL_FEATURE_SETS[source]:
            raise ValueError(
                f"synthetic_attack.{source}.models names {model!r}, which is not a torch model of {source}; "
                f"use some of {sorted(TORCH_MODELS & set(MODEL_FEATURE_SETS[source]))} "
                "(conf/base/parameters_synthetic_attack.yml)")
    for generator in generators:
        for model in models:
            generator_set, model_set = known_generators[generator], MODEL_FEATURE_SETS[source][model]
            if generator_set != model_set:
                raise ValueError(
                    f"{model} reads the {model_set!r} features of {source} but {generator} synthesises "
                    f"{generator_set!r}: a model trained on that synthetic data could not be attacked on "
                    f"the real test split of its own features; remove {model} from "
                    f"synthetic_attack.{source}.models (conf/base/parameters_synthetic_attack.yml); "
                    f"models that fit: {default_models(source)}")
    return [(g, m) for m in models for g in generators]


def _named(func, **bound):
    """`func` with keyword arguments bound, keeping the function's name for kedro-viz."""
    return update_wrapper(partial(func, **bound), func)


def pair_pipeline(source: str, generator: str, model: str) -> Pipeline:
    """Train `model`'s architecture on `generator`'s data, score and attack it on the real test split.

    A baseline `generator` (`baseline_name(seed)`) trains on the real training split with its own seed.
    """
    feature_set = MODEL_FEATURE_SETS[source][model]
    seed = baseline_seed(generator)
    training_data = (f"{source}.{feature_set}.model_input_train" if seed is not None
                     else f"{source}.{generator}.synthetic")
    namespace = f"{source}.{generator}_{model}"
    parameters = {"params:synthetic_attack": f"params:synthetic_attack.{source}", "params:seed": "params:seed",
                  "params:device": "params:device"}
    training = pipeline(
        [
            node(train_on_synthetic if seed is None else _named(train_on_synthetic, seed=seed),
                 {"synthetic": "synthetic", "selected_config": "selected_config", "feature_spec": "feature_spec",
                  "params": "params:synthetic_attack", "device": "params:device",
                  **({"seed": "params:seed"} if seed is None else {})},
                 ["model", "training_history"], name="train_on_synthetic"),
            node(_named(evaluate_on_real_test,
                        trained_on="synthetic" if seed is None else f"real training split, seed {seed}"),
                 ["model", "model_input_test", "feature_spec", "params:synthetic_attack", "params:seed",
                  "params:device"],
                 ["test_predictions", "test_metrics"], name="evaluate_on_real_test"),
        ],
        namespace=namespace,
        inputs={"synthetic": training_data,
                "selected_config": f"{source}.{model}.selected_config",
                "feature_spec": f"{source}.{feature_set}.feature_spec",
                "model_input_test": f"{source}.{feature_set}.model_input_test"},
        parameters=parameters,
    )
    return training + attack_pipeline(source, model, namespace=namespace)


def synthetic_attack_pipeline(source: str, generators: Iterable[str], models: Iterable[str],
                              baseline_seeds: Iterable[int] = (1, 2, 3)) -> Pipeline:
    """Every (generator, model) pair, each model also retrained on the real training split by the
    same recipe once per seed of `baseline_seeds`, then the comparison with the real-data models' rankings."""
    pairs = model_pairs(source, generators, models)
    seeds = list(baseline_seeds) if isinstance(baseline_seeds, (list, tuple)) else None
    if (seeds is None or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ValueError(f"synthetic_attack.{source}.real_baseline_seeds must be a list of distinct integers (or [] "
                         f"for no baseline); got {baseline_seeds!r} (conf/base/parameters_synthetic_attack.yml)")
    pairs += [(baseline_name(s), m) for m in dict.fromkeys(m for _, m in pairs) for s in seeds]
    sections: dict[str, str] = {}
    for model in dict.fromkeys(m for _, m in pairs):
        for key, dataset in ((REAL, model), *((g, f"{g}_{model}") for g, m in pairs if m == model)):
            metrics = "metrics" if key == REAL else "test_metrics"
            sections |= {f"{key}__{model}__ranking": f"{source}.{dataset}.cumulative_susceptibility",
                         f"{key}__{model}__summary": f"{source}.{dataset}.attack_summary",
                         f"{key}__{model}__metrics": f"{source}.{dataset}.{metrics}"}
    comparison = node(
        _named(compare_susceptibility, pairs=tuple(pairs)),
        {"params": f"params:synthetic_attack.{source}", **sections},
        [f"{source}.synthetic_attack_comparison", f"{source}.synthetic_attack_report",
         f"{source}.synthetic_attack_figure"],
        name="compare_susceptibility",
        namespace=source,
    )
    return sum((pair_pipeline(source, g, m) for g, m in pairs), Pipeline([comparison]))


def create_pipeline(source: str = "physionet2012", parameters: Mapping[str, Any] | None = None, **kwargs) -> Pipeline:
    """Every generator of `source` × the models of `synthetic_attack.<source>.models` in the run's
    parameters (the registry passes them; without them, default_models(source))."""
    settings = ((parameters or {}).get("synthetic_attack") or {}).get(source) or {}
    models = settings.get("models")
    return synthetic_attack_pipeline(source, GENERATOR_FEATURE_SETS.get(source, {}),
                                     default_models(source) if models is None else models,
                                     baseline_seeds=settings.get("real_baseline_seeds", (1, 2, 3)))
