"""Attack: trained model + test tensors → per-record adversarial perturbations and susceptibility."""

from .pipeline import create_model_pipeline, create_pipeline

__all__ = ["create_model_pipeline", "create_pipeline"]
