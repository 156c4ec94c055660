"""Synthesis pipeline: one modular pipeline per generator, namespaced `<source>.<generator>`.

Each generator learns one feature set of its source (GENERATOR_FEATURE_SETS) from
`<source>.<feature_set>.model_input_train` and writes `<source>.<generator>.synthetic`, a bundle
shaped like model_input (see the synthetic-EHR contract). Models are versioned datasets:
- ehrdiff:  model → synthetic
- synehrgy: tokenizer + train_tokens → model → synthetic_tokens → synthetic_timeseries /
            synthetic_static / synthetic_codes (ingestion-style tables) → synthetic
- kmimic:   static_vae → temporal_vae → latent_gan (each a node; later ones load the earlier
            models from the catalog) → synthetic
Sources with diagnoses (MIMIC-III) add `<source>.code_matrix_train`, the training records' ICD-9
category matrix, which EHRDiff models jointly with the tensors and SynEHRgy writes as code tokens.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from . import nodes

# Which generators run on which source, and the feature set each one learns.
GENERATOR_FEATURE_SETS: dict[str, dict[str, str]] = {
    "physionet2012": {"ehrdiff": "full", "synehrgy": "full", "kmimic": "full"},
    "mimic3": {"ehrdiff": "sun2018", "synehrgy": "sun2018", "kmimic": "sun2018"},
}
# Sources whose ingestion writes `<source>.diagnoses` (a code matrix exists).
CODE_SOURCES = frozenset({"mimic3"})

def _ehrdiff(codes: bool) -> Pipeline:
    train = (
        node(nodes.train_ehrdiff_with_codes, ["model_input_train", "code_matrix_train", "params:generator", "params:seed", "params:device"], "model", name="train_ehrdiff")
        if codes
        else node(nodes.train_ehrdiff, ["model_input_train", "params:generator", "params:seed", "params:device"], "model", name="train_ehrdiff")
    )
    sample = node(
        nodes.sample_ehrdiff,
        ["model", "splits", "feature_spec", "params:generator", "params:seed", "params:device"],
        "synthetic",
        name="sample_ehrdiff",
    )
    return Pipeline([train, sample])


def _synehrgy(codes: bool) -> Pipeline:
    if codes:
        tokenize = node(
            nodes.tokenize_train_records_with_codes,
            ["timeseries", "static", "splits", "code_matrix_train", "params:generator"],
            ["tokenizer", "train_tokens"],
            name="tokenize_train_records",
        )
        tensors = node(
            nodes.synthetic_tensors_with_codes,
            ["synthetic_timeseries", "synthetic_static", "synthetic_codes", "tokenizer", "feature_spec", "params:features", "params:feature_set"],
            "synthetic",
            name="synthetic_tensors",
        )
        detokenize = node(
            nodes.detokenize_synthetic_with_codes,
            ["synthetic_tokens", "tokenizer"],
            ["synthetic_timeseries", "synthetic_static", "synthetic_codes"],
            name="detokenize_synthetic",
        )
    else:
        tokenize = node(
            nodes.tokenize_train_records,
            ["timeseries", "static", "splits", "params:generator"],
            ["tokenizer", "train_tokens"],
            name="tokenize_train_records",
        )
        tensors = node(
            nodes.synthetic_tensors,
            ["synthetic_timeseries", "synthetic_static", "feature_spec", "params:features", "params:feature_set"],
            "synthetic",
            name="synthetic_tensors",
        )
        detokenize = node(
            nodes.detokenize_synthetic,
            ["synthetic_tokens", "tokenizer"],
            ["synthetic_timeseries", "synthetic_static"],
            name="detokenize_synthetic",
        )
    return Pipeline(
        [
            tokenize,
            node(nodes.train_synehrgy, ["train_tokens", "tokenizer", "params:generator", "params:seed", "params:device"], "model", name="train_synehrgy"),
            node(nodes.sample_synehrgy, ["model", "tokenizer", "splits", "params:generator", "params:seed", "params:device"], "synthetic_tokens", name="sample_synehrgy"),
            detokenize,
            tensors,
        ]
    )


def _kmimic(codes: bool) -> Pipeline:
    run = ["params:generator", "params:seed", "params:device"]
    return Pipeline(
        [
            node(nodes.train_kmimic_static_vae, ["model_input_train", *run], "static_vae", name="train_static_vae"),
            node(nodes.train_kmimic_temporal_vae, ["model_input_train", *run], "temporal_vae", name="train_temporal_vae"),
            node(nodes.train_kmimic_latent_gan, ["static_vae", "temporal_vae", "model_input_train", *run], "latent_gan", name="train_latent_gan"),
            node(
                nodes.sample_kmimic,
                ["static_vae", "temporal_vae", "latent_gan", "splits", "feature_spec", *run],
                "synthetic",
                name="sample_kmimic",
            ),
        ]
    )


_GENERATOR_PIPELINES = {"ehrdiff": _ehrdiff, "synehrgy": _synehrgy, "kmimic": _kmimic}


def _only_used(pipe: Pipeline, mapping: dict[str, str]) -> dict[str, str]:
    """The entries of a namespace mapping whose names the pipeline actually reads."""
    used = pipe.inputs()
    return {inner: outer for inner, outer in mapping.items() if inner in used}


def create_generator_pipeline(source: str, generator: str) -> Pipeline:
    """One generator of `source` under the namespace `<source>.<generator>`."""
    fs = GENERATOR_FEATURE_SETS[source][generator]
    inner = _GENERATOR_PIPELINES[generator](source in CODE_SOURCES)
    inputs = {name: f"{source}.{name}" for name in ("timeseries", "static", "splits", "code_matrix_train")}
    inputs |= {name: f"{source}.{fs}.{name}" for name in ("model_input_train", "feature_spec")}
    parameters = {
        "params:generator": f"params:synthesis.{source}.{generator}",
        "params:features": f"params:features.{source}",
        "params:feature_set": f"params:features.{source}.feature_sets.{fs}",
        "params:seed": "params:seed",
        "params:device": "params:device",
    }
    return pipeline(
        inner,
        namespace=f"{source}.{generator}",
        inputs=_only_used(inner, inputs),
        parameters=_only_used(inner, parameters),
    )


def create_pipeline(source: str = "physionet2012", generators: tuple[str, ...] | None = None, **kwargs) -> Pipeline:
    """Every generator of `source` (or those named); a source without generators gets an empty pipeline."""
    if source not in GENERATOR_FEATURE_SETS:
        return Pipeline([])
    feature_sets = GENERATOR_FEATURE_SETS[source]
    generators = tuple(generators or feature_sets)
    unknown = sorted(set(generators) - set(feature_sets))
    if unknown:
        raise ValueError(f"unknown generator(s) {unknown} for {source}; known: {sorted(feature_sets)}")
    parts = [create_generator_pipeline(source, g) for g in generators]
    code_users = [g for g in generators if g in ("ehrdiff", "synehrgy")]
    if source in CODE_SOURCES and code_users:
        fs = feature_sets[code_users[0]]
        parts.append(
            Pipeline(
                [
                    node(
                        nodes.build_code_matrix,
                        [f"{source}.{fs}.model_input_train", f"{source}.static", f"{source}.diagnoses"],
                        f"{source}.code_matrix_train",
                        name="build_code_matrix",
                        namespace=source,
                    )
                ]
            )
        )
    return sum(parts, Pipeline([]))
