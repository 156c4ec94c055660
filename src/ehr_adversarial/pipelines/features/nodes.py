"""Nodes of the features stage: the library's split and tensor functions (ehr_adversarial.features);
the pipeline binds each feature set's name."""

from ehr_adversarial.features.model_input import (
    build_hourly_cells,
    build_model_input,
    fit_feature_spec,
)
from ehr_adversarial.features.splits import make_splits

__all__ = ["build_hourly_cells", "build_model_input", "fit_feature_spec", "make_splits"]
