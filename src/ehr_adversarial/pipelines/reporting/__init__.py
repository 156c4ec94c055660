"""Reporting: each attacked model's susceptibility beside the paper, the hourly trend and the stability
over attack seeds (namespace `reporting`, one nested pipeline per model), and an overview."""

from .pipeline import create_pipeline, robustness_pipeline

__all__ = ["create_pipeline", "robustness_pipeline"]
