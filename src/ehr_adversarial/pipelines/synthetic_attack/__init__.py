"""Synthetic attack: models trained on synthetic data, attacked on the real test split, their susceptibility
rankings compared with the real-data models' (namespace `synthetic_attack`, one nested pipeline per
retrained model)."""

from .pipeline import comparison_pipeline, namespace_of, retraining_pipeline

__all__ = ["comparison_pipeline", "namespace_of", "retraining_pipeline"]
