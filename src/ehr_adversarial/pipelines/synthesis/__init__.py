"""Synthesis: EHRDiff, SynEHRgy and K-MIMIC generators trained on the train split
(namespace `synthesis`, one nested pipeline per generator)."""

from .pipeline import GENERATORS, create_codes_pipeline, create_pipeline

__all__ = ["GENERATORS", "create_codes_pipeline", "create_pipeline"]
