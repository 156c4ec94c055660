"""Synthetic-data evaluation: fidelity, utility and privacy of every generator's output
(namespace `synthetic_evaluation`, one nested pipeline per generator), and their comparison."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
