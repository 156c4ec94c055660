"""Features: long/static tables of a source → splits, hourly tensors, train-split scaler."""

from .pipeline import FEATURE_SETS, create_pipeline

__all__ = ["FEATURE_SETS", "create_pipeline"]
