"""Custom Kedro datasets (referenced from the catalog as `ehr_adversarial.datasets.<module>.<Class>`)."""
