"""Synthesis pipeline, namespace `synthesis`: one nested pipeline per generator (`synthesis.<generator>`).

Each generator learns one feature set (`features.<feature_set>.model_input_train`) and writes
`synthesis.<generator>.synthetic`, a bundle shaped like model_input (see the synthetic-EHR contract), whose values
are snapped to the train split's value lattices and point masses (`lattice`, synthesis.lattice) as the last step.
Models are versioned datasets:
- ehrdiff:  model → synthetic
- synehrgy: tokenizer + train_tokens → model → synthetic_tokens → synthetic_timeseries /
            synthetic_static / synthetic_codes (ingestion-style tables) → synthetic
- kmimic:   static_vae → temporal_vae → latent_gan (each a node; later ones load the earlier
            models from the catalog) → synthetic
Sources with diagnoses (MIMIC-III) add `synthesis.code_matrix_train`, the training records' ICD-9
category matrix, which EHRDiff models jointly with the tensors and SynEHRgy writes as code tokens.
Each generator also runs again from other seeds (`synthesis.<generator>_rep<k>`: the same settings, seed + k;
the registry's `generator_repeats`), so that every synthetic headline has a spread over generator seeds.

`create_codes_pipeline`: EHRDiff on binary code matrices, namespace `synthesis.ehrdiff_codes` (sources with
diagnoses), EHRDiff's MIMIC-III setting on its own, apart from the tensor study: `ingestion.diagnoses` →
code_matrix (patients × ICD-9 3-digit categories, train/holdout split, vocabulary of the train rows) → model →
synthetic (binary rows) → fidelity (prevalence r, MMD², nearest-neighbour privacy) + prevalence (per code) →
prevalence_plot. The registry puts the ingestion steps that extract the diagnoses in front
(`<source>.ehrdiff_codes`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from kedro.pipeline import Pipeline, node, pipeline

from ehr_adversarial.pipelines import seeded

from . import nodes

RUN = ["params:generator", "params:seed", "params:device"]


def ehrdiff_pipeline(codes: bool, seed_offset: int = 0) -> Pipeline:
    train = (node(seeded(nodes.train_ehrdiff_with_codes, seed_offset), ["model_input_train", "code_matrix_train", *RUN],
                  "model", name="train_ehrdiff") if codes
             else node(seeded(nodes.train_ehrdiff, seed_offset), ["model_input_train", *RUN], "model",
                       name="train_ehrdiff"))
    sample = node(seeded(nodes.sample_ehrdiff, seed_offset),
                  ["model", "splits", "feature_spec", "model_input_train", *RUN], "synthetic", name="sample_ehrdiff")
    return Pipeline([train, sample])


def synehrgy_pipeline(codes: bool, seed_offset: int = 0) -> Pipeline:
    tables = ["synthetic_timeseries", "synthetic_static", *(["synthetic_codes"] if codes else [])]
    tensors_inputs = [*tables, *(["tokenizer"] if codes else []), "feature_spec", "params:features", "params:feature_set",
                      "model_input_train", "params:generator"]
    return Pipeline([
        node(nodes.tokenize_train_records_with_codes if codes else nodes.tokenize_train_records,
             ["timeseries", "static", "splits", *(["code_matrix_train"] if codes else []), "params:generator"],
             ["tokenizer", "train_tokens"], name="tokenize_train_records"),
        node(seeded(nodes.train_synehrgy, seed_offset), ["train_tokens", "tokenizer", *RUN], "model", name="train_synehrgy"),
        node(seeded(nodes.sample_synehrgy, seed_offset), ["model", "tokenizer", "splits", *RUN], "synthetic_tokens", name="sample_synehrgy"),
        node(nodes.detokenize_synthetic_with_codes if codes else nodes.detokenize_synthetic,
             ["synthetic_tokens", "tokenizer"], tables, name="detokenize_synthetic"),
        node(nodes.synthetic_tensors_with_codes if codes else nodes.synthetic_tensors, tensors_inputs, "synthetic",
             name="synthetic_tensors"),
    ])


def kmimic_pipeline(codes: bool, seed_offset: int = 0) -> Pipeline:
    return Pipeline([
        node(seeded(nodes.train_kmimic_static_vae, seed_offset), ["model_input_train", *RUN], "static_vae", name="train_static_vae"),
        node(seeded(nodes.train_kmimic_temporal_vae, seed_offset), ["model_input_train", *RUN], "temporal_vae", name="train_temporal_vae"),
        node(seeded(nodes.train_kmimic_latent_gan, seed_offset), ["static_vae", "temporal_vae", "model_input_train", *RUN], "latent_gan",
             name="train_latent_gan"),
        node(seeded(nodes.sample_kmimic, seed_offset),
             ["static_vae", "temporal_vae", "latent_gan", "splits", "feature_spec", "model_input_train", *RUN],
             "synthetic", name="sample_kmimic"),
    ])


GENERATOR_PIPELINES = {"ehrdiff": ehrdiff_pipeline, "synehrgy": synehrgy_pipeline, "kmimic": kmimic_pipeline}
GENERATORS = tuple(GENERATOR_PIPELINES)


def create_pipeline(source: str, generators: Mapping[str, str],
                    code_generators: Collection[str] = frozenset(),
                    repeats: Mapping[str, tuple[str, int]] | None = None) -> Pipeline:
    """Every generator of `generators` (generator → the feature set it learns); those in `code_generators`
    also learn the training records' ICD-9 category matrix. `repeats` (label → (generator, seed offset)) adds
    the same generator trained and sampled again from `seed + offset`, namespace `synthesis.<label>`."""
    runs = {generator: (generator, 0) for generator in generators} | dict(repeats or {})
    unknown = sorted({generator for generator, _ in runs.values()} - set(GENERATOR_PIPELINES))
    if unknown:
        raise ValueError(f"unknown generator(s) {', '.join(unknown)}; known: {', '.join(GENERATORS)}")
    missing = sorted({generator for generator, _ in runs.values()} - set(generators))
    if missing:
        raise ValueError(f"repeats name generator(s) {', '.join(missing)} that are not among the generators")
    parts = []
    for label, (generator, seed_offset) in runs.items():
        feature_set = generators[generator]
        inner = GENERATOR_PIPELINES[generator](generator in code_generators, seed_offset)
        inputs = {"timeseries": "ingestion.timeseries", "static": "ingestion.static", "splits": "features.splits",
                  "code_matrix_train": "synthesis.code_matrix_train",
                  "model_input_train": f"features.{feature_set}.model_input_train",
                  "feature_spec": f"features.{feature_set}.feature_spec"}
        parameters = {"params:generator": f"params:synthesis.{source}.{generator}",
                      "params:features": f"params:features.{source}",
                      "params:feature_set": f"params:features.{source}.feature_sets.{feature_set}",
                      "params:seed": "params:seed", "params:device": "params:device"}
        used = inner.inputs()
        parts.append(pipeline(inner, namespace=f"synthesis.{label}",
                              inputs={k: v for k, v in inputs.items() if k in used},
                              parameters={k: v for k, v in parameters.items() if k in used}))
    code_users = [g for g in generators if g in code_generators]
    if code_users:
        feature_set = generators[code_users[0]]
        parts.append(Pipeline([node(
            nodes.build_code_matrix,
            [f"features.{feature_set}.model_input_train", "ingestion.static", "ingestion.diagnoses"],
            "synthesis.code_matrix_train", name="build_code_matrix", namespace="synthesis")]))
    return sum(parts, Pipeline([]))


CODES_NAMESPACE = "synthesis.ehrdiff_codes"


def create_codes_pipeline(source: str) -> Pipeline:
    """The binary-code EHRDiff of `source`, reading `ingestion.diagnoses` and `synthesis.<source>.ehrdiff_codes`."""
    inner = Pipeline([
        node(nodes.code_matrix_node, ["diagnoses", "params:generator", "params:seed"], "code_matrix",
             name="build_code_matrix"),
        node(nodes.fit_code_ehrdiff, ["code_matrix", *RUN], "model", name="train_ehrdiff"),
        node(nodes.sample_code_ehrdiff, ["model", "code_matrix", *RUN], "synthetic", name="sample_ehrdiff"),
        node(nodes.evaluate_codes_node, ["code_matrix", "synthetic", "params:generator", "params:seed"],
             ["fidelity", "prevalence"], name="evaluate_codes"),
        node(nodes.prevalence_plot_node, ["prevalence", "fidelity"], "prevalence_plot", name="plot_prevalence"),
    ])
    return pipeline(inner, namespace=CODES_NAMESPACE, inputs={"diagnoses": "ingestion.diagnoses"},
                    parameters={"params:generator": f"params:synthesis.{source}.ehrdiff_codes",
                                "params:seed": "params:seed", "params:device": "params:device"})
