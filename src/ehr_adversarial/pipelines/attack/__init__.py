"""Attack: a trained model + test tensors → per-record adversarial perturbations and susceptibility
(namespace `attack`, one nested pipeline per attacked model)."""

from .pipeline import create_model_pipeline, create_pipeline

__all__ = ["create_model_pipeline", "create_pipeline"]
