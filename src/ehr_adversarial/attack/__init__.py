"""The adversarial attack of Sun et al. (2018) and its susceptibility metrics, independent of Kedro."""

from .clinical_units import FeatureScale, feature_scale, perturbation_cells, to_clinical
from .l1_attack import (
    AttackConfig,
    AttackResult,
    input_gradient_mode,
    l1_attack,
    log_spaced_lambdas,
    logit_margin,
    perturbation_norms,
    refine_perturbation,
)
from .susceptibility import (
    DIRECTIONS,
    METRICS,
    cumulative_ranking,
    cumulative_susceptibility,
    direction_of,
    metric_grid,
    ranking_agreement,
    susceptibility,
    susceptibility_table,
    top_features,
)

__all__ = [
    "AttackConfig",
    "AttackResult",
    "DIRECTIONS",
    "FeatureScale",
    "METRICS",
    "cumulative_ranking",
    "cumulative_susceptibility",
    "direction_of",
    "feature_scale",
    "input_gradient_mode",
    "l1_attack",
    "log_spaced_lambdas",
    "logit_margin",
    "metric_grid",
    "ranking_agreement",
    "perturbation_cells",
    "perturbation_norms",
    "refine_perturbation",
    "susceptibility",
    "susceptibility_table",
    "to_clinical",
    "top_features",
]
