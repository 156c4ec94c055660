"""Synthetic-data evaluation, namespace `synthetic_evaluation`: one nested pipeline per generator run
(`synthetic_evaluation.<label>`: each generator's main run and its repeats from other seeds, `<generator>_rep<k>`),
a TRTR reference per real input, and a comparison of all runs with each generator's spread over its seeds.

The real splits have three disjoint roles: train (what generators and TRTR models learn from), validation
(every choice of generator settings, benchmarks/synthesis_selection.py; this stage never reads it) and the
holdout, the test split (the final report and the privacy non-members). Per generator run it reads
`synthesis.<label>.synthetic` and the real bundles of the generator's feature set
(`features.<feature_set>.model_input_{train,test}`, `.feature_spec`; on sources with diagnoses, for generators that
write ICD-9 codes, the same bundles with their code matrices, `synthetic_evaluation.<feature_set>_codes.model_input_*`):
- fidelity against the real train split (what the generator learnt from), with the detectors' noise floor
  (the same detectors on the real holdout against the real train split);
- utility: TSTR (train on synthetic) vs TRTR (train on real train), both tested on the real holdout;
  TRTR is computed once per real input (`synthetic_evaluation.<feature_set>.trtr_predictions`);
- privacy against the real holdout: records of the train split's population that the generator never saw.
The comparison (`synthetic_evaluation.comparison`, one row per run) comes with `synthetic_evaluation.seed_summary`
(per generator and headline metric: mean, SD and range over its runs; utility with an interval pooling the
generator seeds and the test bootstrap, synthetic_evaluation.repeats) and one markdown report of both.
Settings live in `synthetic_evaluation.<source>` (parameters_synthetic_evaluation.yml).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines import bound

from . import nodes

SETTINGS = "params:synthetic_evaluation"


def generator_pipeline(generator: str) -> Pipeline:
    """Fidelity, utility (TSTR) and privacy of one generator's `synthetic` bundle, with figures.

    Free inputs: synthetic, model_input_train, model_input_test (the holdout), feature_spec, trtr_predictions and
    the parameters."""
    return Pipeline([
        node(nodes.evaluate_fidelity,
             ["synthetic", "model_input_train", "feature_spec", SETTINGS, "params:seed", "model_input_test"],
             ["fidelity_metrics", "variable_statistics"], name="evaluate_fidelity"),
        node(nodes.predict_mortality,
             ["synthetic", "model_input_test", "feature_spec", SETTINGS, "params:seed", "params:device"],
             "tstr_predictions", name="train_on_synthetic_test_on_real"),
        node(nodes.evaluate_utility, ["trtr_predictions", "tstr_predictions", SETTINGS, "params:seed"],
             "utility_metrics", name="evaluate_utility"),
        node(nodes.evaluate_privacy,
             ["synthetic", "model_input_train", "model_input_test", "feature_spec", SETTINGS, "params:seed"],
             ["privacy_metrics", "privacy_distances"], name="evaluate_privacy"),
        node(bound(nodes.plot_mean_scatter, generator=generator), ["variable_statistics", "fidelity_metrics"],
             "mean_scatter", name="plot_mean_scatter"),
        node(bound(nodes.plot_variable_distributions, generator=generator),
             ["synthetic", "model_input_train", "feature_spec", SETTINGS], "variable_distributions",
             name="plot_variable_distributions"),
        node(bound(nodes.plot_dcr_histogram, generator=generator), ["privacy_distances", "privacy_metrics"],
             "dcr_histogram", name="plot_dcr_histogram"),
    ])


def trtr_pipeline() -> Pipeline:
    """The real-data reference: every utility model trained on the real train split, tested on test."""
    return Pipeline([
        node(nodes.predict_mortality,
             ["model_input_train", "model_input_test", "feature_spec", SETTINGS, "params:seed", "params:device"],
             "trtr_predictions", name="train_on_real_test_on_real"),
    ])


def coded_inputs_pipeline(feature_set: str) -> Pipeline:
    """The real train and holdout bundles of `feature_set` with their ICD-9 code matrices:
    `synthetic_evaluation.<feature_set>_codes.model_input_<split>`."""
    return Pipeline([
        node(nodes.attach_codes,
             [f"features.{feature_set}.model_input_{split}", "ingestion.static", "ingestion.diagnoses",
              "synthesis.code_matrix_train"],
             f"synthetic_evaluation.{feature_set}_codes.model_input_{split}",
             name=f"attach_codes_{split}", namespace=f"synthetic_evaluation.{feature_set}_codes")
        for split in ("train", "test")
    ])


def create_pipeline(source: str, generators: Mapping[str, str],
                    code_generators: Collection[str] = frozenset(),
                    runs: Mapping[str, tuple[str, int]] | None = None) -> Pipeline:
    """TRTR per real input, the evaluation of each run of `generators` (generator → its feature set; `runs`:
    label → (generator, seed offset), default one run per generator), the comparison. Generators in
    `code_generators` also write an ICD-9 code matrix, so they are compared with real bundles that carry codes."""
    if not generators:
        raise ValueError(f"no generators to evaluate for {source}")
    runs = {g: (g, 0) for g in generators} | dict(runs or {})
    missing = sorted({g for g, _ in runs.values()} - set(generators))
    if missing:
        raise ValueError(f"runs name generator(s) {', '.join(missing)} that are not among the generators")
    parameters = {SETTINGS: f"params:synthetic_evaluation.{source}", "params:seed": "params:seed",
                  "params:device": "params:device"}
    # The real inputs a generator is compared with: its feature set, with codes or without.
    real_inputs = {g: f"{fs}_codes" if g in code_generators else fs for g, fs in generators.items()}

    def real_bundles(key: str) -> dict[str, str]:
        stage = "synthetic_evaluation" if key.endswith("_codes") else "features"
        return {f"model_input_{split}": f"{stage}.{key}.model_input_{split}" for split in ("train", "test")}

    parts = [coded_inputs_pipeline(key.removesuffix("_codes"))
             for key in sorted(set(real_inputs.values())) if key.endswith("_codes")]
    parts += [
        pipeline(trtr_pipeline(), namespace=f"synthetic_evaluation.{key}",
                 inputs={**real_bundles(key), "feature_spec": f"features.{key.removesuffix('_codes')}.feature_spec"},
                 parameters=parameters)
        for key in sorted(set(real_inputs.values()))
    ]
    for label, (generator, _) in runs.items():
        key = real_inputs[generator]
        parts.append(pipeline(
            generator_pipeline(label), namespace=f"synthetic_evaluation.{label}",
            inputs={**real_bundles(key), "synthetic": f"synthesis.{label}.synthetic",
                    "feature_spec": f"features.{generators[generator]}.feature_spec",
                    "trtr_predictions": f"synthetic_evaluation.{key}.trtr_predictions"},
            parameters=parameters,
        ))
    sections = {f"{label}__{section}": f"synthetic_evaluation.{label}.{section}_metrics"
                for label in runs for section in ("fidelity", "utility", "privacy")}
    sections |= {f"{label}__tstr": f"synthetic_evaluation.{label}.tstr_predictions" for label in runs}
    sections |= {f"trtr__{key}": f"synthetic_evaluation.{key}.trtr_predictions" for key in sorted(set(real_inputs.values()))}
    comparison = node(
        bound(nodes.compare_generators, generators=tuple(runs), runs=runs, real_inputs=real_inputs),
        {"params": f"params:synthetic_evaluation.{source}", "seed": "params:seed", **sections},
        ["synthetic_evaluation.comparison", "synthetic_evaluation.seed_summary",
         "synthetic_evaluation.comparison_report"],
        name="compare_generators", namespace="synthetic_evaluation",
    )
    return sum(parts, Pipeline([comparison]))
