"""Reporting: the attack's results beside the paper, the hourly trend and the stability over seeds."""

from .pipeline import create_model_pipeline, create_pipeline

__all__ = ["create_model_pipeline", "create_pipeline"]
