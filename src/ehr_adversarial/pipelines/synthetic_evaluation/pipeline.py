"""Synthetic-data evaluation: one modular pipeline per generator, namespaced `<source>.<generator>`,
a TRTR reference per feature set, and a comparison of all generators under `<source>`.

Per generator it reads `<source>.<generator>.synthetic` and the real bundles of the generator's
feature set (`<source>.<feature_set>.model_input_{train,validation,test}`, `.feature_spec`; on
MIMIC-III, for generators that write ICD-9 codes, the same bundles with their code matrices,
`<source>.<feature_set>_codes.model_input_*`):
- fidelity against the real train split (what the generator learnt from);
- utility: TSTR (train on synthetic) vs TRTR (train on real train), both tested on the real
  test split; TRTR is computed once per feature set (`<source>.<feature_set>.trtr_predictions`);
- privacy against the real validation split as holdout: records of the train split's
  population (same set letter) that the generator never saw.
Settings live in `synthetic_evaluation.<source>` (parameters_synthetic_evaluation.yml).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines.synthesis import CODE_SOURCES, GENERATOR_FEATURE_SETS

from .nodes import (
    attach_codes,
    compare_generators,
    evaluate_fidelity,
    evaluate_privacy,
    evaluate_utility,
    plot_dcr_histogram,
    plot_mean_scatter,
    plot_variable_distributions,
    predict_mortality,
)

# On sources with diagnoses (CODE_SOURCES) these generators also write a code matrix, so their
# real comparators get one too (the synthesis pipeline builds code_matrix_train for them).
CODE_GENERATORS = frozenset({"ehrdiff", "synehrgy"})
SPLITS = ("train", "validation", "test")

def _named(func, **bound):
    """`func` with keyword arguments bound, keeping the function's name for kedro-viz."""
    return update_wrapper(partial(func, **bound), func)


def _parameters(source: str) -> dict[str, str]:
    return {
        "params:synthetic_evaluation": f"params:synthetic_evaluation.{source}",
        "params:seed": "params:seed",
        "params:device": "params:device",
    }


def generator_pipeline(generator: str) -> Pipeline:
    """Fidelity, utility (TSTR) and privacy of one generator's `synthetic` bundle, with figures.

    Free inputs: synthetic, model_input_train/_validation/_test, feature_spec, trtr_predictions
    and the parameters; create_pipeline maps the real ones to the generator's feature set.
    """
    settings = "params:synthetic_evaluation"
    return Pipeline(
        [
            node(evaluate_fidelity, ["synthetic", "model_input_train", "feature_spec", settings, "params:seed"],
                 ["fidelity_metrics", "variable_statistics"], name="evaluate_fidelity"),
            node(predict_mortality,
                 ["synthetic", "model_input_test", "feature_spec", settings, "params:seed", "params:device"],
                 "tstr_predictions", name="train_on_synthetic_test_on_real"),
            node(evaluate_utility, ["trtr_predictions", "tstr_predictions", settings, "params:seed"],
                 "utility_metrics", name="evaluate_utility"),
            node(evaluate_privacy,
                 ["synthetic", "model_input_train", "model_input_validation", "feature_spec", settings, "params:seed"],
                 ["privacy_metrics", "privacy_distances"], name="evaluate_privacy"),
            node(_named(plot_mean_scatter, generator=generator), ["variable_statistics", "fidelity_metrics"],
                 "mean_scatter", name="plot_mean_scatter"),
            node(_named(plot_variable_distributions, generator=generator),
                 ["synthetic", "model_input_train", "feature_spec", settings], "variable_distributions",
                 name="plot_variable_distributions"),
            node(_named(plot_dcr_histogram, generator=generator), ["privacy_distances", "privacy_metrics"],
                 "dcr_histogram", name="plot_dcr_histogram"),
        ]
    )


def trtr_pipeline() -> Pipeline:
    """The real-data reference: every utility model trained on the real train split, tested on test."""
    return Pipeline(
        [
            node(predict_mortality,
                 ["model_input_train", "model_input_test", "feature_spec", "params:synthetic_evaluation",
                  "params:seed", "params:device"],
                 "trtr_predictions", name="train_on_real_test_on_real")
        ]
    )


def coded_inputs_pipeline(source: str, feature_set: str) -> Pipeline:
    """The real bundles of `feature_set` with their ICD-9 code matrices: `<source>.<feature_set>_codes.model_input_<split>`."""
    return Pipeline(
        [
            node(attach_codes,
                 [f"{source}.{feature_set}.model_input_{split}", f"{source}.static", f"{source}.diagnoses",
                  f"{source}.code_matrix_train"],
                 f"{source}.{feature_set}_codes.model_input_{split}",
                 name=f"attach_codes_{split}", namespace=f"{source}.{feature_set}_codes")
            for split in SPLITS
        ]
    )


def evaluation_pipeline(source: str, generator_feature_sets: Mapping[str, str], code_generators=frozenset()) -> Pipeline:
    """TRTR per real input, the evaluation of each generator (name → its feature set), the comparison.

    Generators in `code_generators` are compared with real bundles that carry codes, read from
    `<source>.<feature_set>_codes.*` (built by coded_inputs_pipeline).
    """
    generators = tuple(generator_feature_sets)
    if not generators:
        raise ValueError(f"no generators to evaluate for {source}")
    # the real inputs a generator is compared with: its feature set, with codes or without
    real_inputs = {g: f"{fs}_codes" if g in code_generators else fs for g, fs in generator_feature_sets.items()}
    references = [
        pipeline(trtr_pipeline(), namespace=f"{source}.{key}",
                 inputs={"feature_spec": f"{source}.{key.removesuffix('_codes')}.feature_spec"},
                 parameters=_parameters(source))
        for key in sorted(set(real_inputs.values()))
    ]
    coded = [coded_inputs_pipeline(source, key.removesuffix("_codes"))
             for key in sorted(set(real_inputs.values())) if key.endswith("_codes")]
    evaluations = []
    for generator, fs in generator_feature_sets.items():
        key = real_inputs[generator]
        real = {f"model_input_{split}": f"{source}.{key}.model_input_{split}" for split in SPLITS}
        real |= {"feature_spec": f"{source}.{fs}.feature_spec", "trtr_predictions": f"{source}.{key}.trtr_predictions"}
        evaluations.append(
            pipeline(generator_pipeline(generator), namespace=f"{source}.{generator}", inputs=real,
                     parameters=_parameters(source))
        )
    sections = {
        f"{g}__{section}": f"{source}.{g}.{section}_metrics"
        for g in generators for section in ("fidelity", "utility", "privacy")
    }
    comparison = node(
        _named(compare_generators, generators=generators),
        {"params": f"params:synthetic_evaluation.{source}", **sections},
        [f"{source}.synthetic_comparison", f"{source}.synthetic_comparison_report"],
        name="compare_generators",
        namespace=source,
    )
    return sum(coded + references + evaluations, Pipeline([comparison]))


def create_pipeline(source: str = "physionet2012", **kwargs) -> Pipeline:
    """The evaluation of every generator of `source` (GENERATOR_FEATURE_SETS)."""
    if source not in GENERATOR_FEATURE_SETS:
        raise ValueError(f"no generators defined for source {source!r}; known: {sorted(GENERATOR_FEATURE_SETS)}")
    generators = GENERATOR_FEATURE_SETS[source]
    code_generators = CODE_GENERATORS & set(generators) if source in CODE_SOURCES else frozenset()
    return evaluation_pipeline(source, generators, code_generators)
