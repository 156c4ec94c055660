"""Training: k-fold CV model selection, refit, a single held-out test evaluation, per model."""

from .pipeline import MODEL_FEATURE_SETS, TORCH_MODELS, create_model_pipeline, create_pipeline

__all__ = ["MODEL_FEATURE_SETS", "TORCH_MODELS", "create_model_pipeline", "create_pipeline"]
