"""Nodes of the synthesis pipeline: train each generator on the train split, then sample.

Every generator reads only training records (`model_input_train`, or the `train` rows of
`splits` for the long tables SynEHRgy tokenises) and writes the contract's synthetic bundle.
`splits` also gives every real record id, so synthetic ids never collide with one, and
`feature_spec` gives the gap fill with which generated tensors are re-imputed.

Every generator's tensors pass through `snap_to_train_lattice` last: with `lattice` on (the
default), generated values take the discrete structure of the real train split's values
(per-feature lattices and point masses, synthesis.lattice).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ehr_adversarial.features.model_input import build_hourly_cells, build_model_input
from ehr_adversarial.synthesis import ehrdiff, kmimic, lattice, synehrgy
from ehr_adversarial.synthesis.common import SYNTHETIC_GROUP, one_hot_groups, scaled_fill
from ehr_adversarial.synthesis.tokenizer import RecordTokenizer, TokenCorpus

logger = logging.getLogger(__name__)

Bundle = dict[str, np.ndarray]


def _n_samples(generator: dict[str, Any], n_train: int) -> int:
    """`n_samples` of a generator's parameters: an integer, or "train" for as many as the train split."""
    value = generator["n_samples"]
    if value == "train":
        return int(n_train)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"synthesis.<source>.<generator>.n_samples is {value!r}; use a count ≥ 0 or 'train'")
    return value


def _train_ids(splits: pd.DataFrame) -> np.ndarray:
    return splits.loc[splits["split"] == "train", "record_id"].to_numpy(np.int64)


def snap_to_train_lattice(
    synthetic: Bundle, model_input_train: Bundle, feature_spec: dict[str, Any], generator: dict[str, Any]
) -> Bundle:
    """The post-processing every generator's synthetic bundle passes through: X (observed cells, then
    re-imputed) and static snapped onto the value lattices and point masses of the real train split
    (synthesis.lattice), unless the generator's `lattice` setting is false. Writes into the bundle's arrays."""
    settings = lattice.lattice_settings(generator.get("lattice", True))
    if settings is None:
        return synthetic
    fitted = lattice.fit_lattice(model_input_train, **settings)

    def count(structure: str) -> str:
        return "/".join(str(sum(structure in c for c in fitted.get(kind, []))) for kind in ("X", "static"))

    logger.info("lattice: snapping to %s lattice column(s), imposing point masses on %s and training quantiles on %s "
                "(time series / static)", count("levels"), count("point_masses"), count("quantiles"))
    return lattice.apply_lattice(synthetic, fitted, scaled_fill(feature_spec), in_place=True)


# ------------------------------------------------------------------------------ codes (MIMIC-III)


def build_code_matrix(model_input_train: Bundle, static: pd.DataFrame, diagnoses: pd.DataFrame) -> Bundle:
    """Binary record × ICD-9 category matrix of the training records (categories seen in them).

    A record (ICU stay) carries the diagnoses of its hospital admission (static.hadm_id).
    """
    record_id = model_input_train["record_id"]
    admissions = static.set_index("record_id").loc[record_id, "hadm_id"].to_numpy(np.int64)
    pairs = pd.DataFrame({"row": np.arange(len(record_id)), "hadm_id": admissions}).merge(
        diagnoses[["hadm_id", "icd9_3digit"]], on="hadm_id"
    )
    code_names, column = np.unique(pairs["icd9_3digit"].astype(str).to_numpy(), return_inverse=True)
    codes = np.zeros((len(record_id), len(code_names)), dtype=np.uint8)
    codes[pairs["row"].to_numpy(), column] = 1
    logger.info("code matrix: %d training records x %d ICD-9 categories", *codes.shape)
    return {"codes": codes, "code_names": code_names.astype(str), "record_id": record_id}


def _codes_long(code_matrix: Bundle) -> pd.DataFrame:
    rows, cols = np.nonzero(code_matrix["codes"])
    return pd.DataFrame({"record_id": code_matrix["record_id"][rows], "code": code_matrix["code_names"][cols]})


# ------------------------------------------------------------------------------ EHRDiff


def train_ehrdiff(model_input_train: Bundle, generator: dict[str, Any], seed: int, device: str) -> nn.Module:
    """EHRDiff on the flattened training records (X, mask, static and y, as a column or a condition)."""
    return ehrdiff.fit_ehrdiff_on_bundle(model_input_train, generator, device, seed)


def train_ehrdiff_with_codes(
    model_input_train: Bundle, code_matrix_train: Bundle, generator: dict[str, Any], seed: int, device: str
) -> nn.Module:
    """EHRDiff on the flattened training records plus their ICD-9 code matrix."""
    if not np.array_equal(code_matrix_train["record_id"], model_input_train["record_id"]):
        raise ValueError("the code matrix and model_input_train list different records; rebuild the code matrix")
    return ehrdiff.fit_ehrdiff_on_bundle(model_input_train, generator, device, seed, code_matrix_train["codes"], code_matrix_train["code_names"].tolist())


def sample_ehrdiff(
    model: nn.Module, splits: pd.DataFrame, feature_spec: dict[str, Any], model_input_train: Bundle,
    generator: dict[str, Any], seed: int, device: str,
) -> Bundle:
    """Synthetic records from a trained EHRDiff, snapped to the train split's lattices."""
    n = _n_samples(generator, model.config["n_train_records"])
    synthetic = ehrdiff.sample_ehrdiff(model, n, generator, device, seed, scaled_fill(feature_spec), splits["record_id"].to_numpy(),
                                       one_hot_groups(feature_spec))
    return snap_to_train_lattice(synthetic, model_input_train, feature_spec, generator)


# ------------------------------------------------------------------------------ SynEHRgy


def _tokenize_train(
    timeseries: pd.DataFrame, static: pd.DataFrame, splits: pd.DataFrame, codes: pd.DataFrame | None, generator: dict[str, Any]
) -> tuple[dict[str, Any], TokenCorpus]:
    train = _train_ids(splits)
    timeseries = timeseries[timeseries["record_id"].isin(train)]
    static = static[static["record_id"].isin(train)]
    tokenizer = RecordTokenizer.fit(timeseries, static, codes, **generator["tokenizer"])
    return tokenizer.to_dict(), tokenizer.tokenize(timeseries, static, codes)


def tokenize_train_records(
    timeseries: pd.DataFrame, static: pd.DataFrame, splits: pd.DataFrame, generator: dict[str, Any]
) -> tuple[dict[str, Any], TokenCorpus]:
    """Fit the tokenizer on the training records and tokenise them."""
    return _tokenize_train(timeseries, static, splits, None, generator)


def tokenize_train_records_with_codes(
    timeseries: pd.DataFrame, static: pd.DataFrame, splits: pd.DataFrame, code_matrix_train: Bundle, generator: dict[str, Any]
) -> tuple[dict[str, Any], TokenCorpus]:
    """Fit the tokenizer on the training records (with their ICD-9 categories) and tokenise them."""
    return _tokenize_train(timeseries, static, splits, _codes_long(code_matrix_train), generator)


def train_synehrgy(train_tokens: TokenCorpus, tokenizer: dict[str, Any], generator: dict[str, Any], seed: int, device: str) -> nn.Module:
    """The GPT on the training token corpus."""
    return synehrgy.fit_gpt(train_tokens, RecordTokenizer.from_dict(tokenizer).vocab_size, generator, device, seed)


def sample_synehrgy(
    model: nn.Module, tokenizer: dict[str, Any], splits: pd.DataFrame, generator: dict[str, Any], seed: int, device: str
) -> TokenCorpus:
    """Generated token sequences, one per synthetic record, constrained to the record grammar."""
    n = _n_samples(generator, model.config["n_train_records"])
    grammar = RecordTokenizer.from_dict(tokenizer).grammar()
    return synehrgy.sample_corpus(model, n, generator, device, seed, splits["record_id"].to_numpy(), grammar)


def detokenize_synthetic(synthetic_tokens: TokenCorpus, tokenizer: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generated sequences as ingestion-style tables: timeseries and static (split_group 'synthetic')."""
    timeseries, static, _ = detokenize_synthetic_with_codes(synthetic_tokens, tokenizer)
    return timeseries, static


def detokenize_synthetic_with_codes(
    synthetic_tokens: TokenCorpus, tokenizer: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Generated sequences as ingestion-style tables: timeseries, static and codes (record_id, code)."""
    timeseries, static, codes = RecordTokenizer.from_dict(tokenizer).detokenize(synthetic_tokens)
    static["split_group"] = SYNTHETIC_GROUP
    logger.info("SynEHRgy: %d synthetic records with %d measurements", len(static), len(timeseries))
    return timeseries, static, codes


def synthetic_tensors(
    synthetic_timeseries: pd.DataFrame,
    synthetic_static: pd.DataFrame,
    feature_spec: dict[str, Any],
    features: dict[str, Any],
    feature_set: dict[str, Any],
    model_input_train: Bundle | None = None,
    generator: dict[str, Any] | None = None,
) -> Bundle:
    """The features pipeline's tensors of the synthetic tables, scaled with the REAL train-split spec,
    then snapped to the train split's lattices (`model_input_train`, `generator["lattice"]`; skipped
    without them).

    A small sample may lack a rare variable altogether, which the features pipeline (rightly, for
    real data) rejects as a configuration error; here such a variable is left out of the binning
    and its feature stays unobserved (mask 0, gap fill).
    """
    splits = pd.DataFrame({"record_id": synthetic_static["record_id"].to_numpy(np.int64), "split": "train", "group": SYNTHETIC_GROUP})
    present = set(synthetic_timeseries["parameter"].unique())
    dynamic = []
    for name, sources in feature_spec["sources"].items():
        kept = [source for source in sources if source in present]
        if kept:
            dynamic.append({name: kept})
    if len(dynamic) < len(feature_spec["feature_names"]):
        logger.warning(
            "synthetic records lack every source of feature(s) %s; they stay unobserved",
            sorted(set(feature_spec["feature_names"]) - {next(iter(d)) for d in dynamic}),
        )
    cells = build_hourly_cells(synthetic_timeseries, splits, features, {**feature_set, "dynamic": dynamic}, feature_spec["feature_set"])
    names = list(feature_spec["feature_names"])
    values = np.full(cells["values"].shape[:2] + (len(names),), np.nan, dtype=cells["values"].dtype)
    values[:, :, [names.index(str(n)) for n in cells["feature_names"]]] = cells["values"]
    cells = {**cells, "values": values, "feature_names": np.asarray(names, dtype=str)}
    bundle, _, _ = build_model_input(cells, synthetic_static, splits, feature_spec)
    if model_input_train is None or generator is None:
        return bundle
    return snap_to_train_lattice(bundle, model_input_train, feature_spec, generator)


def synthetic_tensors_with_codes(
    synthetic_timeseries: pd.DataFrame,
    synthetic_static: pd.DataFrame,
    synthetic_codes: pd.DataFrame,
    tokenizer: dict[str, Any],
    feature_spec: dict[str, Any],
    features: dict[str, Any],
    feature_set: dict[str, Any],
    model_input_train: Bundle | None = None,
    generator: dict[str, Any] | None = None,
) -> Bundle:
    """synthetic_tensors plus the records' generated ICD-9 categories as a code matrix."""
    bundle = synthetic_tensors(synthetic_timeseries, synthetic_static, feature_spec, features, feature_set,
                               model_input_train, generator)
    code_names = np.asarray(RecordTokenizer.from_dict(tokenizer).codes, dtype=str)
    rows = pd.Index(bundle["record_id"]).get_indexer(synthetic_codes["record_id"])
    cols = pd.Index(code_names).get_indexer(synthetic_codes["code"].astype(str))
    codes = np.zeros((len(bundle["record_id"]), len(code_names)), dtype=np.uint8)
    codes[rows[rows >= 0], cols[rows >= 0]] = 1
    return {**bundle, "codes": codes, "code_names": code_names}


# ------------------------------------------------------------------------------ K-MIMIC


def train_kmimic_static_vae(model_input_train: Bundle, generator: dict[str, Any], seed: int, device: str) -> nn.Module:
    """K-MIMIC stage 1: the static VAE."""
    return kmimic.fit_static_vae(model_input_train["static"], generator["static_vae"], device, seed)


def train_kmimic_temporal_vae(model_input_train: Bundle, generator: dict[str, Any], seed: int, device: str) -> nn.Module:
    """K-MIMIC stage 2: the temporal VAE."""
    return kmimic.fit_temporal_vae(model_input_train["X"], model_input_train["mask"], generator["temporal_vae"], device, seed)


def train_kmimic_latent_gan(
    static_vae: nn.Module, temporal_vae: nn.Module, model_input_train: Bundle, generator: dict[str, Any], seed: int, device: str
) -> nn.Module:
    """K-MIMIC stage 3: the conditional WGAN-GP on the two VAEs' latents (returns its generator)."""
    b = model_input_train
    return kmimic.fit_latent_gan(static_vae, temporal_vae, b["static"], b["X"], b["mask"], b["y"], generator["latent_gan"], device, seed)


def sample_kmimic(
    static_vae: nn.Module,
    temporal_vae: nn.Module,
    latent_gan: nn.Module,
    splits: pd.DataFrame,
    feature_spec: dict[str, Any],
    model_input_train: Bundle,
    generator: dict[str, Any],
    seed: int,
    device: str,
) -> Bundle:
    """Synthetic records from the three K-MIMIC stages, snapped to the train split's lattices."""
    n = _n_samples(generator, latent_gan.config["n_train_records"])
    synthetic = kmimic.sample_kmimic(
        static_vae, temporal_vae, latent_gan, n, generator, device, seed, scaled_fill(feature_spec), splits["record_id"].to_numpy(),
        one_hot_groups(feature_spec),
    )
    return snap_to_train_lattice(synthetic, model_input_train, feature_spec, generator)
