"""Nodes of the synthetic-evaluation stage: the library's evaluation steps and figures
(ehr_adversarial.synthetic_evaluation.evaluate); the pipeline binds each generator's name."""

from ehr_adversarial.synthetic_evaluation.evaluate import (
    attach_codes,
    compare_generators,
    evaluate_fidelity,
    evaluate_privacy,
    evaluate_utility,
    plot_dcr_histogram,
    plot_mean_scatter,
    plot_variable_distributions,
    predict_mortality,
)

__all__ = [
    "attach_codes",
    "compare_generators",
    "evaluate_fidelity",
    "evaluate_privacy",
    "evaluate_utility",
    "plot_dcr_histogram",
    "plot_mean_scatter",
    "plot_variable_distributions",
    "predict_mortality",
]
