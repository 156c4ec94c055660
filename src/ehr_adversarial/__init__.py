"""ehr_adversarial: ICU cohorts, mortality models, adversarial susceptibility and synthetic EHR."""

__version__ = "0.1.0"
