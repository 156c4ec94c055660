"""Ingestion: a data source's records → versioned long and static tables (namespace `ingestion`)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
