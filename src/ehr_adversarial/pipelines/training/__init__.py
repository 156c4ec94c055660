"""Training: k-fold CV model selection, refit and a single held-out test evaluation per model
(namespace `training`, one nested pipeline per model), then a comparison of all models."""

from .pipeline import create_pipeline, model_pipeline

__all__ = ["create_pipeline", "model_pipeline"]
