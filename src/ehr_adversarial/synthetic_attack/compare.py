"""The synthetic attack: retrain a real model's architecture on synthetic data, score it on the real
test split, and compare its susceptibility ranking with the real-data model's.

The attack itself is the attack stage's, run on the retrained model (see the pipeline registry).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import t as student_t
from torch import nn

from ehr_adversarial.attack import DIRECTIONS, ranking_agreement
from ehr_adversarial.reporting.markdown import format_cell
from ehr_adversarial.synthetic_evaluation.repeats import spread
from ehr_adversarial.synthetic_evaluation.utility import with_delta
from ehr_adversarial.torch_utils import resolve_device
from ehr_adversarial.training import (
    DEFAULT_THREADS,
    check_model_input,
    predict_torch_model,
    torch_model_config,
)
from ehr_adversarial.training.metrics import bootstrap_metrics
from ehr_adversarial.training.torch_loop import limited_threads, train_with_monitor_split

from . import plots

logger = logging.getLogger(__name__)

REAL = "real"  # the `generator` of the reference rows: the model trained on real data


class RetrainedModel(NamedTuple):
    """One model the stage trains and attacks: `label` names its training data in the tables (a generator run:
    `ehrdiff`, `ehrdiff_rep1`, ...; or `real_retrained_s<seed>` for the baseline), `model` the real model whose
    recipe it repeats, `seed` the training seed of a baseline on the real training split (None: trained on
    synthetic data), `group` what its repeats share (the generator; the baseline's `real_retrained`)."""

    label: str
    model: str
    seed: int | None = None
    group: str = ""

    @property
    def is_baseline(self) -> bool:
        return self.seed is not None

    @property
    def family(self) -> str:
        return self.group or self.label


def train_on_synthetic(
    synthetic: Mapping[str, np.ndarray],
    selected_config: Mapping[str, Any],
    feature_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
    device: str,
) -> tuple[nn.Module, pd.DataFrame]:
    """The real model's selected config (architecture, hyperparameters, optimiser, epochs) trained
    on the synthetic bundle; early stopping watches `params.monitor_fraction` of the synthetic
    records, so no real record is seen before the test."""
    bundle = with_delta(synthetic)  # generators may leave delta out; it follows from the mask
    check_model_input(bundle, feature_spec, "the synthetic bundle")
    config = {**selected_config, "monitor_fraction": float(params["monitor_fraction"])}
    start = time.perf_counter()
    with limited_threads(config.get("n_threads", DEFAULT_THREADS)):
        model, history = train_with_monitor_split(
            bundle, torch_model_config(config, feature_spec), config, seed, resolve_device(device),
            f"{config['architecture']} on synthetic data",
        )
    logger.info("%s trained on %d synthetic records in %.1f s", config["architecture"], len(bundle["y"]),
                time.perf_counter() - start)
    return model.cpu(), history


def evaluate_on_real_test(
    model: nn.Module,
    model_input_test: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
    device: str,
    trained_on: str = "synthetic",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """P(death) on the real test split and its metrics with bootstrap CIs (how good the attacked model is).

    The threshold is the decision the attack flips, argmax of the logits: P ≥ sigmoid(−shift)
    once the class-weight prior shift is removed from the probabilities.
    """
    predictions = predict_torch_model(model, model_input_test, feature_spec, device, split="test")
    threshold = 1.0 / (1.0 + math.exp(model.config["probability_shift"]))
    evaluation = params["evaluation"]
    test = bootstrap_metrics(predictions["y_true"], predictions["y_prob"], threshold,
                             n_bootstrap=int(evaluation["n_bootstrap"]), seed=seed,
                             confidence=float(evaluation["confidence"]))
    logger.info("synthetic-trained %s on the real test split: AUROC %.3f, AUPRC %.3f",
                model.config["architecture"], test["auroc"]["value"], test["auprc"]["value"])
    metrics = {
        "model": model.config["architecture"],
        "feature_set": feature_spec["feature_set"],
        "trained_on": trained_on,
        "threshold": threshold,
        "threshold_rule": "argmax of the logits (the decision the attack flips)",
        "n_test": int(len(predictions)),
        "n_test_positive": int(predictions["y_true"].sum()),
        "test": test,
    }
    return predictions, metrics


# ---------------------------------------------------------------- ranking comparison


def _scores(ranking: pd.DataFrame, direction: str, what: str) -> pd.Series:
    """cumulative_s per feature of one direction; features must be unique."""
    if not {"direction", "feature", "cumulative_s"} <= set(ranking.columns):
        raise ValueError(f"{what} has columns {list(ranking.columns)}; a cumulative_susceptibility table of the "
                         "attack pipeline has direction, feature, cumulative_s and rank")
    frame = ranking[ranking["direction"] == direction]
    duplicated = frame["feature"][frame["feature"].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"{what} lists feature(s) {list(duplicated)[:5]} twice in direction {direction}; "
                         "it is not a cumulative_susceptibility table of the attack pipeline")
    return frame.set_index("feature")["cumulative_s"].astype(float)


def _no_agreement(direction: str, n_features: int) -> dict[str, Any]:
    return {"direction": direction, "n_features": n_features, "spearman_rho": np.nan, "spearman_p": np.nan,
            "kendall_tau": np.nan, "kendall_p": np.nan, "top_k_overlap": np.nan, "top_k_features": ""}


def agreement_by_direction(
    real: pd.DataFrame, attacked: pd.DataFrame, top_k: int, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per attack direction: Spearman ρ and Kendall τ of cumulative S_j (attacked vs real) and the
    overlap of the top-k features; and the per-feature scores side by side.

    A direction either model has no ranking for (no successful attack there) gets NaN.
    """
    if int(top_k) < 1:
        raise ValueError(f"synthetic_attack.top_k is {top_k}; it must be ≥ 1")
    rows, pairs = [], []
    for direction in DIRECTIONS.values():
        real_s = _scores(real, direction, f"the real model's ranking ({what})")
        other_s = _scores(attacked, direction, what)
        if real_s.empty or other_s.empty:
            logger.warning("%s, %s: no ranking of the %s (no successful attack in that direction)", what,
                           direction, "real model" if real_s.empty else "attacked model")
            rows.append(_no_agreement(direction, max(len(real_s), len(other_s))))
            continue
        if set(real_s.index) != set(other_s.index):
            raise ValueError(
                f"{what} ranks other features than the real model in direction {direction}: only real "
                f"{sorted(set(real_s.index) - set(other_s.index))[:5]}, only {what} "
                f"{sorted(set(other_s.index) - set(real_s.index))[:5]}; both models must read the same "
                "feature set (re-run the attack of both on the same features run)"
            )
        other_s = other_s.loc[real_s.index]
        agreement = ranking_agreement(real_s, other_s, top_k)
        top_real, top_other = agreement["top_a"], agreement["top_b"]
        rows.append({"direction": direction, "n_features": agreement["n_features"],
                     "spearman_rho": agreement["spearman"], "spearman_p": agreement["spearman_p"],
                     "kendall_tau": agreement["kendall"], "kendall_p": agreement["kendall_p"],
                     "top_k_overlap": agreement["top_k_overlap"], "top_k_features": ", ".join(top_other)})
        pairs.append(pd.DataFrame({
            "direction": direction, "feature": real_s.index, "s_real": real_s.to_numpy(),
            "s_attacked": other_s.to_numpy(),
            "rank_real": real_s.rank(ascending=False, method="min").to_numpy(),
            "rank_attacked": other_s.rank(ascending=False, method="min").to_numpy(),
            "top_k_real": real_s.index.isin(top_real),
        }))
    return pd.DataFrame(rows), pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame()


def _attack_columns(summary: Mapping[str, Any], direction: str) -> dict[str, float]:
    stats = summary.get("by_direction", {}).get(direction)
    if stats is None:
        return {"attacked_records": 0, "success_rate": np.nan, "mean_l1_best": np.nan, "mean_l0_best": np.nan}
    return {"attacked_records": int(stats["records"]), "success_rate": float(stats["success_rate"]),
            "mean_l1_best": float(stats["mean_l1_best"]), "mean_l0_best": float(stats["mean_l0_best"])}


def compare_susceptibility(
    retrained: Sequence[RetrainedModel], params: Mapping[str, Any], **sections: Any
) -> tuple[pd.DataFrame, str, Figure]:
    """Each synthetic-trained model's susceptibility ranking against its real-data model's.

    `retrained` are the models the stage trained; `sections` hold per real model `real__<model>__ranking`,
    `__summary`, `__metrics` and per pair `<generator>__<model>__ranking`, `__summary`, `__metrics`
    (cumulative_susceptibility, attack_summary and test metrics). Returns one row per model ×
    generator × direction (the real model's own row first, ρ = 1), the markdown report and the figure.
    """
    top_k = int(params["top_k"])
    retrained = [RetrainedModel(*entry) for entry in retrained]
    models = list(dict.fromkeys(entry.model for entry in retrained))
    rows, scatter = [], {}
    # the figure shows one run of each generator (its first seed) and of the baseline, the tables every run
    pictured = {next(e.label for e in retrained if e.model == entry.model and e.family == entry.family)
                for entry in retrained}
    for model in models:
        real = sections[f"{REAL}__{model}__ranking"]
        for generator in [REAL, *(entry.label for entry in retrained if entry.model == model)]:
            key = f"{generator}__{model}"
            what = model if generator == REAL else f"{generator}_{model}"
            agreement, side_by_side = agreement_by_direction(real, sections[f"{key}__ranking"], top_k, what)
            metrics = sections[f"{key}__metrics"]["test"]
            for _, row in agreement.iterrows():
                rows.append({"model": model, "generator": generator, **row.to_dict(), "top_k": top_k,
                             **_attack_columns(sections[f"{key}__summary"], row["direction"]),
                             "test_auroc": float(metrics["auroc"]["value"]),
                             "test_auprc": float(metrics["auprc"]["value"])})
            if generator in pictured:
                scatter[(model, generator)] = side_by_side
    table = pd.DataFrame(rows)
    columns = ["model", "generator", "direction", "n_features", "spearman_rho", "spearman_p", "kendall_tau",
               "kendall_p", "top_k", "top_k_overlap", "top_k_features", "attacked_records", "success_rate",
               "mean_l1_best", "mean_l0_best", "test_auroc", "test_auprc"]
    table = table[columns]
    baselines = {entry.label for entry in retrained if entry.is_baseline}
    return (table, comparison_markdown(table, baselines, over_seeds(table, retrained)),
            plots.agreement_figure(scatter, table))


# ---------------------------------------------------------------- report


def _reading(table: pd.DataFrame, baselines: Collection[str]) -> list[str]:
    """A few sentences drawn from the numbers, with the caveats that limit them; `baselines` are the
    `generator` labels of the models retrained on the real training split."""
    lines = []
    is_baseline = table["generator"].isin(list(baselines))
    synthetic = table[(table["generator"] != REAL) & ~is_baseline]
    baseline = table[is_baseline]
    for (model, direction), frame in table[table["generator"] != REAL].groupby(["model", "direction"], sort=True):
        k = int(frame["top_k"].iloc[0])
        parts = [f"{g} ρ = {format_cell(r, '.2f')} ({int(o) if not np.isnan(o) else '–'}/{k} top features shared)"
                 for g, r, o in zip(frame["generator"], frame["spearman_rho"], frame["top_k_overlap"], strict=True)]
        lines.append(f"- {model}, {direction}: " + "; ".join(parts) + ".")
    rho = synthetic["spearman_rho"]
    if rho.notna().any():
        if (rho.dropna() >= 0.7).all():
            verdict = "every synthetic-trained model ranks the features much like the real model (ρ ≥ 0.7)"
        elif (rho.dropna() < 0.3).all():
            verdict = "no synthetic-trained model ranks the features like the real model (ρ < 0.3 throughout)"
        else:
            verdict = (f"agreement varies (ρ from {rho.min():.2f} to {rho.max():.2f}): some synthetic-trained "
                       "models share the real model's susceptible features, others do not")
        lines.append(f"- Overall, {verdict}.")
    for (model, direction), frame in baseline.groupby(["model", "direction"], sort=True):
        floors = frame["spearman_rho"].dropna()
        others = synthetic[(synthetic["model"] == model) & (synthetic["direction"] == direction)]
        if floors.empty or others.empty:
            continue
        ceiling = float(floors.mean())
        spread = f" (from {floors.min():.2f} to {floors.max():.2f} over {len(floors)} seeds)" if len(floors) > 1 else ""
        reach = ", ".join(f"{g} {r / ceiling:.0%}" for g, r in zip(others["generator"], others["spearman_rho"], strict=True)
                          if not np.isnan(r))
        lines.append(f"- {model}, {direction}: retrained on real data by the same recipe, the model reaches "
                     f"ρ = {ceiling:.2f}{spread} against the real model; that is about as high as ρ can be expected "
                     f"to get. Relative to it: {reach or 'no synthetic ρ'}.")
    weak = synthetic[synthetic["test_auroc"] < 0.6][["model", "generator", "test_auroc"]].drop_duplicates()
    for _, row in weak.iterrows():
        lines.append(f"- {row['generator']}_{row['model']} reaches only AUROC {row['test_auroc']:.3f} on the real "
                     "test split: a model that learnt little mortality signal has little reason to share the real "
                     "model's susceptible features, so its ranking says more about the generator than about the task.")
    if rho.isna().any():
        lines.append("- ρ/τ are blank where a model (the real one included) had no successful attack in that "
                     "direction, or a constant ranking.")
    lines.append("- Each model is attacked on the test records *it* classifies correctly, so the attacked record sets "
                 "differ between models; ρ compares where perturbations land, not the same patients.")
    if baseline.empty:
        lines.append("- No real-vs-real baseline was run (no real-baseline seeds in the registry), so how high ρ gets between two "
                     "models trained on real data is not known; read ρ against that caveat.")
    return lines


def over_seeds(table: pd.DataFrame, retrained: Sequence[RetrainedModel], confidence: float = 0.95) -> pd.DataFrame:
    """Per model, group of runs (a generator over its seeds, the real baseline over its seeds) and direction: the
    number of runs, mean Spearman ρ with its standard deviation, range and a t-interval over the runs (what a
    new generator seed would give; it holds the generator's training variance, not the records'), mean top-k
    overlap and test AUROC."""
    family = {entry.label: entry.family for entry in retrained}
    rows = []
    runs = table[table["generator"] != REAL].assign(group=lambda t: t["generator"].map(family))
    for (model, group, direction), frame in runs.groupby(["model", "group", "direction"], sort=False):
        rho = spread(frame["spearman_rho"].to_numpy(dtype=float))
        n = rho["n"]
        sd = rho["sd"] if n > 1 else float("nan")
        half = float(student_t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else float("nan")
        rows.append({"model": model, "group": group, "direction": direction, "runs": len(frame),
                     "rho_mean": rho["mean"], "rho_sd": sd, "rho_min": rho["min"], "rho_max": rho["max"],
                     "rho_ci_low": rho["mean"] - half, "rho_ci_high": rho["mean"] + half,
                     "top_k_overlap_mean": float(frame["top_k_overlap"].mean()),
                     "test_auroc_mean": float(frame["test_auroc"].mean()),
                     "test_auroc_sd": float(frame["test_auroc"].std(ddof=1)) if len(frame) > 1 else float("nan")})
    return pd.DataFrame(rows)


def _seeds_markdown(summary: pd.DataFrame, k: int) -> list[str]:
    if summary.empty or (summary["runs"] < 2).all():
        return []
    lines = ["## Over generator seeds", "",
             "Each generator trained and sampled from several seeds (and the real baseline retrained from several "
             "seeds), each run's model attacked alike: mean ρ ± sd over the runs, its range and a 95 % t-interval "
             "over the runs (the variance between generator seeds; with 3 runs it is wide).", "",
             f"| model | runs of | direction | runs | ρ mean ± sd | ρ range | 95 % interval | mean top-{k} shared "
             "| test AUROC mean ± sd |", "|" + "---|" * 9]
    for row in summary.itertuples():
        lines.append(f"| {row.model} | {row.group} | {row.direction} | {row.runs} | {format_cell(row.rho_mean, '.2f')} "
                     f"± {format_cell(row.rho_sd, '.2f')} | {format_cell(row.rho_min, '.2f')} – "
                     f"{format_cell(row.rho_max, '.2f')} | [{format_cell(row.rho_ci_low, '.2f')}, "
                     f"{format_cell(row.rho_ci_high, '.2f')}] | {format_cell(row.top_k_overlap_mean, '.1f')}/{k} | "
                     f"{format_cell(row.test_auroc_mean)} ± {format_cell(row.test_auroc_sd)} |")
    return lines + [""]


def comparison_markdown(table: pd.DataFrame, baselines: Collection[str] = (),
                        summary: pd.DataFrame | None = None) -> str:
    """The comparison table as markdown, and a short reading of it."""
    k = int(table["top_k"].iloc[0]) if len(table) else 5
    header = (f"| model | trained on | direction | Spearman ρ (p) | Kendall τ (p) | top-{k} shared | top-{k} features "
              "| attacked | success | mean L1 | mean L0 | test AUROC | test AUPRC |")
    lines = [
        "# Do models trained on synthetic data share the real model's susceptible features?",
        "",
        "Each real-data torch model's architecture and selected hyperparameters were retrained on each "
        "generator's synthetic data, scored on the real test split and attacked there with the same L1 "
        "attack (docs/synthetic_attack.md). ρ and τ compare the cumulative susceptibility S_j of every "
        "feature with the real-data model's, per attack direction; the row trained on `real` is the "
        "real-data model itself (ρ = 1 by construction), the rows trained on `real_retrained_s<seed>` are the "
        "same architecture retrained on the real training split by the synthetic models' recipe (the baseline).",
        "",
        header,
        "|" + "---|" * 13,
    ]
    for _, row in table.iterrows():
        overlap = "–" if pd.isna(row["top_k_overlap"]) else f"{int(row['top_k_overlap'])}/{k}"
        lines.append(
            f"| {row['model']} | {row['generator']} | {row['direction']} | "
            f"{format_cell(row['spearman_rho'])} ({format_cell(row['spearman_p'], '.3f')}) | "
            f"{format_cell(row['kendall_tau'])} ({format_cell(row['kendall_p'], '.3f')}) | "
            f"{overlap} | {row['top_k_features']} | {row['attacked_records']} | {format_cell(row['success_rate'])} | "
            f"{format_cell(row['mean_l1_best'])} | {format_cell(row['mean_l0_best'], '.1f')} | "
            f"{format_cell(row['test_auroc'])} | {format_cell(row['test_auprc'])} |"
        )
    lines += ["", *_seeds_markdown(summary if summary is not None else pd.DataFrame(), k)]
    lines += ["## Reading", "", *_reading(table, baselines)]
    return "\n".join(lines) + "\n"
