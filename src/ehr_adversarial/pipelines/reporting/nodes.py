"""Nodes of the reporting stage: the library's report functions (ehr_adversarial.reporting)."""

from ehr_adversarial.reporting.attack_report import (
    attack_report,
    attack_with_seeds,
    hourly_trend,
    paper_comparison,
    ranking_stability,
    reports_overview,
)

__all__ = ["attack_report", "attack_with_seeds", "hourly_trend", "paper_comparison", "ranking_stability",
           "reports_overview"]
