"""Nodes of the attack stage: the library's attack run, susceptibility tables and figures
(ehr_adversarial.attack)."""

from ehr_adversarial.attack.plots import (
    plot_attack_histograms,
    plot_cumulative_ranking,
    plot_susceptibility_heatmaps,
    plot_susceptibility_over_hours,
)
from ehr_adversarial.attack.run import (
    clinical_perturbations,
    run_attack,
    select_records,
    susceptibility_tables,
)

__all__ = [
    "clinical_perturbations",
    "plot_attack_histograms",
    "plot_cumulative_ranking",
    "plot_susceptibility_heatmaps",
    "plot_susceptibility_over_hours",
    "run_attack",
    "select_records",
    "susceptibility_tables",
]
