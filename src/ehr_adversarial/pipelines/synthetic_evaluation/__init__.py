"""Synthetic-data evaluation: fidelity, utility and privacy of every generator's output."""

from .pipeline import GENERATOR_FEATURE_SETS, create_pipeline

__all__ = ["GENERATOR_FEATURE_SETS", "create_pipeline"]
