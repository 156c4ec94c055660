"""Nodes of the synthesis stage: the generators' training, sampling and (de)tokenising steps
(ehr_adversarial.synthesis.stages)."""

from ehr_adversarial.synthesis.binary_codes import (
    code_matrix_node,
    fit_code_ehrdiff,
    sample_code_ehrdiff,
)
from ehr_adversarial.synthesis.stages import (
    build_code_matrix,
    detokenize_synthetic,
    detokenize_synthetic_with_codes,
    sample_ehrdiff,
    sample_kmimic,
    sample_synehrgy,
    synthetic_tensors,
    synthetic_tensors_with_codes,
    tokenize_train_records,
    tokenize_train_records_with_codes,
    train_ehrdiff,
    train_ehrdiff_with_codes,
    train_kmimic_latent_gan,
    train_kmimic_static_vae,
    train_kmimic_temporal_vae,
    train_synehrgy,
)
from ehr_adversarial.synthetic_evaluation.binary_code_metrics import (
    evaluate_codes_node,
    prevalence_plot_node,
)

__all__ = [
    "build_code_matrix",
    "code_matrix_node",
    "evaluate_codes_node",
    "fit_code_ehrdiff",
    "prevalence_plot_node",
    "sample_code_ehrdiff",
    "train_ehrdiff",
    "train_ehrdiff_with_codes",
    "sample_ehrdiff",
    "tokenize_train_records",
    "tokenize_train_records_with_codes",
    "train_synehrgy",
    "sample_synehrgy",
    "detokenize_synthetic",
    "detokenize_synthetic_with_codes",
    "synthetic_tensors",
    "synthetic_tensors_with_codes",
    "train_kmimic_static_vae",
    "train_kmimic_temporal_vae",
    "train_kmimic_latent_gan",
    "sample_kmimic",
]
