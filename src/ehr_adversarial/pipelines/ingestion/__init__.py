"""Ingestion: real records of a data source → versioned long and static tables."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
