"""Nodes of the reporting stage: the library's report functions (ehr_adversarial.reporting)."""

from ehr_adversarial.attack.time_profile import time_profile
from ehr_adversarial.reporting.attack_modes import compare_attack_modes
from ehr_adversarial.reporting.attack_report import (
    attack_report,
    hourly_trend,
    paper_comparison,
    reports_overview,
)
from ehr_adversarial.reporting.robustness import robustness_comparison
from ehr_adversarial.reporting.stability import (
    attack_instances,
    record_stability,
    susceptibility_intervals,
)

__all__ = ["attack_instances", "attack_report", "compare_attack_modes", "hourly_trend", "paper_comparison",
           "record_stability", "reports_overview", "robustness_comparison", "susceptibility_intervals", "time_profile"]
