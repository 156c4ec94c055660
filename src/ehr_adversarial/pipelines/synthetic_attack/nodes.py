"""Nodes of the synthetic-attack stage: retraining on synthetic (or real) data, the real-test evaluation
and the comparison of rankings (ehr_adversarial.synthetic_attack.compare); the attack itself is the attack
stage's modular pipeline."""

from ehr_adversarial.synthetic_attack.compare import (
    compare_susceptibility,
    evaluate_on_real_test,
    train_on_synthetic,
)

__all__ = ["compare_susceptibility", "evaluate_on_real_test", "train_on_synthetic"]
