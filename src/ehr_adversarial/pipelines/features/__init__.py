"""Features: ingestion tables → splits, then per feature set hourly tensors and the train-split scaler
(namespace `features`, one nested pipeline per feature set)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
