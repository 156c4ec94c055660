"""One final evaluation on the test split (threshold chosen on validation or out-of-fold predictions), its
figures, and the comparison of all models.

Every model hands over predictions (record_id, y_true, y_prob) for the validation and the test split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ehr_adversarial.glossary import glossary
from ehr_adversarial.training import plots
from ehr_adversarial.training.metrics import (
    METRICS,
    THRESHOLD_RULES,
    binary_metrics,
    bootstrap_metrics,
    choose_threshold,
    hosmer_lemeshow,
)


def _describe_split(predictions: pd.DataFrame) -> str:
    """E.g. "test (group b)": the split and the source groups its records come from."""
    splits = "+".join(sorted(predictions["split"].astype(str).unique()))
    return f"{splits} (group {'+'.join(sorted(predictions['group'].astype(str).unique()))})"


def evaluate_predictions(
    threshold_predictions: pd.DataFrame,
    test_predictions: pd.DataFrame,
    selected_config: Mapping[str, Any],
    feature_spec: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    seed: int,
    model: str | None = None,
) -> dict[str, Any]:
    """The single final evaluation on the test split, metrics with 95 % bootstrap CIs; `model` is the
    model's name in the study (`gbm`), which figures and tables show beside its method.

    The decision threshold (for min(Se, PPV), F1, precision, recall) maximises `evaluation.threshold_rule`
    (min(Se, PPV) unless set to F1) on `threshold_predictions`:
    the validation split for torch models, the out-of-fold CV predictions of the train split
    for the baselines. Their metrics there are reported for reference.
    """
    rule = str(evaluation.get("threshold_rule", "min_se_ppv"))
    threshold = choose_threshold(threshold_predictions["y_true"], threshold_predictions["y_prob"], rule)
    test = bootstrap_metrics(test_predictions["y_true"], test_predictions["y_prob"], threshold,
                             n_bootstrap=int(evaluation["n_bootstrap"]), seed=seed,
                             confidence=float(evaluation["confidence"]))
    threshold_split = _describe_split(threshold_predictions)
    return {
        "model": model or selected_config.get("architecture", selected_config.get("estimator")),
        "method": selected_config.get("architecture", selected_config.get("estimator")),
        "feature_set": feature_spec["feature_set"],
        "threshold": threshold,
        "threshold_rule": f"maximises {THRESHOLD_RULES[rule]} on the predictions of {threshold_split}",
        "n_test": int(len(test_predictions)),
        "n_test_positive": int(test_predictions["y_true"].sum()),
        "test_split": _describe_split(test_predictions),
        "test": test,
        "hosmer_lemeshow": hosmer_lemeshow(test_predictions["y_true"], test_predictions["y_prob"]),
        "threshold_split": {"name": threshold_split, "n": int(len(threshold_predictions)),
                            **binary_metrics(threshold_predictions["y_true"],
                                             threshold_predictions["y_prob"], threshold)},
        "cv": dict(selected_config.get("cv", {})),
        "refit_on": selected_config.get("refit_on", "train"),
    }


def plot_evaluation(test_predictions: pd.DataFrame, metrics: Mapping[str, Any]) -> tuple[Figure, Figure, Figure]:
    """ROC, precision-recall and calibration figures of the test predictions."""
    title = f"{metrics['model']} ({metrics['feature_set']})"
    return (plots.roc_figure(test_predictions, metrics, title),
            plots.pr_figure(test_predictions, metrics, title),
            plots.calibration_figure(test_predictions, metrics, title))


def plot_training_curves(history: pd.DataFrame, selected_config: Mapping[str, Any], model: str | None = None) -> Figure:
    """Training/validation loss and validation AUROC/AUPRC per epoch of the refit, titled by the model's name."""
    return plots.training_curves_figure(history, model or selected_config["architecture"])


def compare_models(**metrics: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """One row per model (test metrics with CIs), sorted by AUPRC, and the same as markdown."""
    rows = []
    for name, m in metrics.items():
        row = {"model": name, "method": m.get("method"), "feature_set": m["feature_set"], "n_test": m["n_test"],
               "n_test_positive": m["n_test_positive"], "test_split": m.get("test_split", "test"),
               "threshold": m["threshold"], "threshold_rule": m.get("threshold_rule", "")}
        for metric in METRICS:
            row[metric] = m["test"][metric]["value"]
            row[f"{metric}_ci_low"] = m["test"][metric]["ci_low"]
            row[f"{metric}_ci_high"] = m["test"][metric]["ci_high"]
        row["hosmer_lemeshow_h"] = m["hosmer_lemeshow"]["h"]
        row["hosmer_lemeshow_p"] = m["hosmer_lemeshow"]["p_value"]
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("auprc", ascending=False, ignore_index=True)
    # The yardstick of each model: a gradient-boosting model on summaries of the same feature set.
    gbm_auroc = table[table["method"] == SAME_INPUT_BASELINE].groupby("feature_set")["auroc"].max()
    table["auroc_gap_to_same_input_gbm"] = [
        row.auroc - gbm_auroc[row.feature_set] if row.method != SAME_INPUT_BASELINE and row.feature_set in gbm_auroc
        else float("nan") for row in table.itertuples()]
    return table, comparison_markdown(table)


SAME_INPUT_BASELINE = "hist_gradient_boosting"
METRIC_LABELS = {"auroc": "AUROC", "auprc": "AUPRC", "min_se_ppv": "min(Se, PPV)", "f1": "F1",
                 "precision": "precision", "recall": "recall", "brier": "Brier"}


def _rule_text(table: pd.DataFrame) -> str:
    """The threshold rule of the models without the split they differ in: "maximises min(Se, PPV)"."""
    rules = sorted({str(rule).split(" on the predictions")[0] for rule in table["threshold_rule"] if rule})
    return " / ".join(rules) or "maximises F1"


def comparison_markdown(table: pd.DataFrame, min_positives: int = 50) -> str:
    """The comparison table as markdown, with a warning when the test set is too small to mean much."""
    header = ("| model | feature set | " + " | ".join(METRIC_LABELS[m] for m in METRICS)
              + " | threshold | H-L H (p) | ΔAUROC vs same-input GBM |")
    lines = ["# Model comparison on the held-out test split", "",
             "Point estimate [95 % bootstrap CI]. min(Se, PPV) is the score of event 1 of the PhysioNet/CinC "
             "Challenge 2012; it, F1, precision and recall are taken at a threshold chosen on held-out "
             "predictions the test split never enters (the validation split for the torch models, "
             "out-of-fold CV predictions for the baselines): per model, the threshold "
             f"{_rule_text(table)}. H-L H is the Hosmer–Lemeshow statistic over "
             "deciles of predicted risk (event 2 of the challenge; lower is better calibrated), with its "
             "χ²(8) p-value. ΔAUROC compares a model with the gradient-boosting model on per-record summaries "
             "of the same feature set, the yardstick for what those inputs allow.", "", header,
             "|" + "---|" * (len(METRICS) + 5)]
    for _, row in table.iterrows():
        cells = [f"{row[m]:.3f} [{row[f'{m}_ci_low']:.3f}, {row[f'{m}_ci_high']:.3f}]" for m in METRICS]
        gap = row.get("auroc_gap_to_same_input_gbm", float("nan"))
        cells += [f"{row['threshold']:.3f}", f"{row['hosmer_lemeshow_h']:.1f} ({row['hosmer_lemeshow_p']:.3f})",
                  "–" if pd.isna(gap) else f"{gap:+.3f}"]
        lines.append(f"| {row['model']} | {row['feature_set']} | " + " | ".join(cells) + " |")
    n_test, n_pos = int(table["n_test"].iloc[0]), int(table["n_test_positive"].iloc[0])
    groups = str(table["test_split"].iloc[0]).partition("(")[2].rstrip(")")
    lines += ["", f"Test split: {n_test} records, {n_pos} deaths" + (f" ({groups})." if groups else ".")]
    if n_pos < min_positives:
        lines.append(f"**Warning:** with fewer than {min_positives} deaths in the test split these "
                     "numbers are not meaningful (the confidence intervals show how wide they are).")
    lines += ["", "Models and feature sets:", "", *glossary([*table["model"], *table["feature_set"]])]
    return "\n".join(lines) + "\n"
