"""Synthesis: EHRDiff, SynEHRgy and K-MIMIC generators trained on the train split of a source."""

from .pipeline import CODE_SOURCES, GENERATOR_FEATURE_SETS, create_pipeline

__all__ = ["CODE_SOURCES", "GENERATOR_FEATURE_SETS", "create_pipeline"]
