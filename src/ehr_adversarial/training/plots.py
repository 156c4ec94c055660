"""Figures of the training pipeline (matplotlib Figure objects, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve


def _ci(metrics: Mapping[str, Any], name: str) -> str:
    m = metrics["test"][name]
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def roc_figure(predictions: pd.DataFrame, metrics: Mapping[str, Any], title: str) -> Figure:
    """ROC curve of the test predictions with AUROC and its 95 % CI."""
    fpr, tpr, _ = roc_curve(predictions["y_true"], predictions["y_prob"])
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"AUROC {_ci(metrics, 'auroc')}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title}: ROC (test)")
    ax.legend(loc="lower right")
    return fig


def pr_figure(predictions: pd.DataFrame, metrics: Mapping[str, Any], title: str) -> Figure:
    """Precision-recall curve of the test predictions with AUPRC and the prevalence line."""
    precision, recall, _ = precision_recall_curve(predictions["y_true"], predictions["y_prob"])
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    ax.plot(recall, precision, label=f"AUPRC {_ci(metrics, 'auprc')}")
    prevalence = float(np.mean(predictions["y_true"]))
    ax.axhline(prevalence, linestyle="--", color="grey", label=f"prevalence {prevalence:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall (test)",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return fig


def calibration_figure(predictions: pd.DataFrame, metrics: Mapping[str, Any], title: str,
                       n_bins: int = 10) -> Figure:
    """Reliability diagram (quantile bins) and the histogram of predicted probabilities."""
    observed, predicted = calibration_curve(predictions["y_true"], predictions["y_prob"],
                                            n_bins=n_bins, strategy="quantile")
    fig = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.plot(predicted, observed, marker="o", label=f"Brier {_ci(metrics, 'brier')}")
    top.set(ylabel="observed death rate", title=f"{title}: calibration (test)")
    top.legend(loc="upper left")
    bottom.hist(predictions["y_prob"], bins=20, range=(0, 1), color="grey")
    bottom.set(xlabel="predicted P(death)", ylabel="records")
    return fig


def training_curves_figure(history: pd.DataFrame, title: str) -> Figure:
    """Loss and validation AUROC/AUPRC per epoch; the kept (best) epoch is marked. A history with an
    `instance` column (several instances trained alike) draws one faint line per instance."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    runs = list(history.groupby("instance")) if "instance" in history else [(0, history)]
    alpha = 1.0 if len(runs) == 1 else 0.6
    for k, run in runs:
        first = k == runs[0][0]
        left.plot(run["epoch"], run["train_loss"], color="C0", alpha=alpha, label="train loss" if first else None)
        left.plot(run["epoch"], run["monitor_loss"], color="C1", alpha=alpha,
                  label="validation loss" if first else None)
        right.plot(run["epoch"], run["auroc"], color="C2", alpha=alpha, label="validation AUROC" if first else None)
        right.plot(run["epoch"], run["auprc"], color="C3", alpha=alpha, label="validation AUPRC" if first else None)
        for epoch in run.loc[run["best"], "epoch"]:
            for ax in (left, right):
                ax.axvline(epoch, linestyle=":", color="grey")
    for ax in (left, right):
        ax.set(xlabel="epoch")
        ax.legend()
    instances = f", {len(runs)} instances" if len(runs) > 1 else ""
    left.set(ylabel="weighted cross-entropy", title=f"{title}{instances}: loss")
    right.set(title=f"{title}: validation (dotted: kept epoch)")
    return fig
