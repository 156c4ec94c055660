"""Trained models over HTTP: `ModelService` (records in; P(death), decision and susceptible locations out) and
its FastAPI app. `kedro serve` loads a model of the catalog into them."""

from ehr_adversarial.serving.app import create_app
from ehr_adversarial.serving.service import ModelService

__all__ = ["ModelService", "create_app"]
