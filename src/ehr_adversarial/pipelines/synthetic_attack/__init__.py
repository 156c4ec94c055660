"""Synthetic attack: models trained on synthetic data, attacked on the real test split, their
susceptibility rankings compared with the real-data models'."""

from .pipeline import create_pipeline, default_models, model_pairs, synthetic_attack_pipeline

__all__ = ["create_pipeline", "default_models", "model_pairs", "synthetic_attack_pipeline"]
