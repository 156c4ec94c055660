"""Nodes of the synthetic-data evaluation: fidelity, utility (TSTR vs TRTR), privacy, figures
and the comparison across generators.

The metrics themselves live in ehr_adversarial.synthetic_evaluation (plain functions);
these nodes turn bundles into flat views with the feature spec's names and collect the
results as JSON-able dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ehr_adversarial.reporting.markdown import format_cell
from ehr_adversarial.synthesis.stages import build_code_matrix
from ehr_adversarial.synthetic_evaluation import fidelity, privacy, quality, repeats, utility
from ehr_adversarial.synthetic_evaluation.flat_view import LABEL, align_columns, flat_view

from . import plots

logger = logging.getLogger(__name__)


def _flat(bundle: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any], params: Mapping[str, Any]) -> pd.DataFrame:
    """The flat view of `bundle` with the feature spec's names."""
    return flat_view(bundle, feature_spec["feature_names"], feature_spec["static_names"], params["summary_stats"])


def _check_bundles(synthetic: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], feature_spec: Mapping[str, Any]) -> None:
    """Synthetic and real bundles must describe the same feature set, down to the hours."""
    if "X" in synthetic and "X" in real and synthetic["X"].shape[1:] != real["X"].shape[1:]:
        raise ValueError(
            f"synthetic X has (hours, features) {synthetic['X'].shape[1:]} but the real "
            f"{feature_spec.get('feature_set', '?')!r} bundle {real['X'].shape[1:]}; the generator was "
            "trained on another feature set or n_hours (see the synthesis feature set of this generator)"
        )
    if "codes" in synthetic and "codes" not in real:
        raise ValueError(
            "the synthetic bundle has a code matrix but the real bundle has none; give the real bundles "
            "their codes (the same code_names) before evaluating"
        )


def attach_codes(
    bundle: Mapping[str, np.ndarray], static: pd.DataFrame, diagnoses: pd.DataFrame, code_matrix_train: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The real bundle with its records' ICD-9 category matrix in the generators' code columns.

    The columns are those of the training code matrix the generators learnt
    (`code_matrix_train["code_names"]`); a category absent from the training records has
    no column (a generator cannot produce it either).
    """
    own = build_code_matrix(bundle, static, diagnoses)
    names = np.asarray(code_matrix_train["code_names"]).astype(str)
    column = pd.Index(own["code_names"]).get_indexer(names)
    codes = np.zeros((len(bundle["y"]), len(names)), dtype=np.uint8)
    codes[:, column >= 0] = own["codes"][:, column[column >= 0]]
    return {**bundle, "codes": codes, "code_names": names}


def _ks_summary(table: pd.DataFrame) -> dict[str, Any]:
    worst = table.nlargest(5, "ks_statistic")
    return {
        "mean": float(table["ks_statistic"].mean()),
        "median": float(table["ks_statistic"].median()),
        "max": float(table["ks_statistic"].max()),
        "worst": dict(zip(worst["variable"], worst["ks_statistic"].astype(float), strict=True)),
    }


def _mean_columns(columns: Sequence[str]) -> list[str]:
    """The columns whose mean is a variable's mean or prevalence: statics, <feature>.mean, codes, label."""
    return [c for c in columns if c.startswith(("static.", "code.")) or c.endswith(".mean") or c == LABEL]


def _sample_level_fidelity(real: pd.DataFrame, synth: pd.DataFrame, settings: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """α-precision / β-recall / authenticity and PRDC on equal-sized, seeded subsamples of both
    tables, z-scored by the (whole) real train table's columns."""
    real_sample, synth_sample = quality.equal_size_samples(real, synth, settings.get("quality_max_records", 5000), seed)
    real_z, synth_z = quality.standardise(real, real_sample, synth_sample)
    return {
        "alpha_precision": quality.alpha_precision_beta_recall_authenticity(real_z, synth_z),
        "prdc": quality.prdc(real_z, synth_z, k=settings.get("prdc_k", 5)),
    }


def _discriminator(
    real: pd.DataFrame, synth: pd.DataFrame, real_holdout: Mapping[str, np.ndarray] | None,
    feature_spec: Mapping[str, Any], params: Mapping[str, Any], seed: int,
) -> dict[str, Any]:
    """fidelity.discriminator_report with the `fidelity` settings; the holdout's flat view gives the floor."""
    settings = params["fidelity"]
    holdout = None
    if real_holdout is not None:
        holdout = align_columns(real, _flat(real_holdout, feature_spec, params), "holdout")
    return fidelity.discriminator_report(
        real, synth, holdout,
        families=settings.get("discriminator_families", fidelity.DETECTOR_FAMILIES),
        n_splits=settings["discriminator_folds"], max_records=settings["discriminator_max_records"],
        per_column_top=settings.get("giveaway_columns", 10), per_column_folds=settings.get("per_column_folds", 3),
        per_column_max_records=settings.get("per_column_max_records", 2000),
        per_column_max_iter=settings.get("per_column_max_iter", 30), seed=seed,
    )


def evaluate_fidelity(
    synthetic: Mapping[str, np.ndarray],
    real_train: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
    real_holdout: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fidelity of the synthetic bundle against the real training split: metrics and the
    per-variable table (means, stds, NaN rates, KS). `real_holdout` (real records the generator
    never saw) gives the detectors' noise floor: the same detectors on real holdout vs real train."""
    _check_bundles(synthetic, real_train, feature_spec)
    real, synth = _flat(real_train, feature_spec, params), _flat(synthetic, feature_spec, params)
    synth = align_columns(real, synth)
    settings = params["fidelity"]
    table = fidelity.variable_statistics(real, synth)
    column_distances = quality.column_distances(real, synth, n_bins=settings.get("column_bins", 20))
    table = table.merge(column_distances, on="variable", how="left", validate="one_to_one")
    means = _mean_columns(real.columns)
    missing_rate = table[table["variable"].str.endswith(".missing_rate")]
    metrics: dict[str, Any] = {
        "n_real": len(real),
        "n_synthetic": len(synth),
        "n_columns": real.shape[1],
        "pearson_r": {
            "all_columns": fidelity.dimension_wise_pearson(real, synth),
            "means": fidelity.dimension_wise_pearson(real[means], synth[means]),
        },
        "ks": _ks_summary(table),
        "missing_rate_mean_abs_diff": float((missing_rate["mean_real"] - missing_rate["mean_synthetic"]).abs().mean())
        if len(missing_rate) else None,
        "correlation_distance": fidelity.correlation_distance(real, synth),
        "mmd": fidelity.mmd_rbf(real, synth, max_records=settings["mmd_max_records"], seed=seed),
        "discriminator": _discriminator(real, synth, real_holdout, feature_spec, params, seed),
        "separating_columns": fidelity.separating_columns(real, synth, top=settings.get("separating_columns", 10)),
    }
    codes = [c for c in real.columns if c.startswith("code.")]
    if codes:
        metrics["pearson_r"]["codes"] = fidelity.dimension_wise_pearson(real[codes], synth[codes])
        metrics["nonzero_code_columns"] = {"real": int((real[codes].sum() > 0).sum()), "synthetic": int((synth[codes].sum() > 0).sum()), "of": len(codes)}
    metrics.update(_sample_level_fidelity(real, synth, settings, seed))
    metrics["column_distances"] = quality.summarise_column_distances(column_distances)
    logger.info(
        "fidelity: α-precision %.3f, β-recall %.3f, authenticity %.3f; PRDC %.3f / %.3f / %.3f / %.3f",
        metrics["alpha_precision"]["delta_precision_alpha"], metrics["alpha_precision"]["delta_recall_beta"],
        metrics["alpha_precision"]["authenticity"],
        *(metrics["prdc"][m] for m in ("precision", "recall", "density", "coverage")),
    )
    if "mask" in synthetic and "mask" in real_train:
        metrics["co_measurement"] = fidelity.co_measurement(real_train["mask"], synthetic["mask"],
                                                            feature_spec["feature_names"])
    if "X" in synthetic:
        metrics["autocorrelation"] = fidelity.autocorrelation_difference(
            real_train["X"], synthetic["X"], settings["acf_lags"], feature_spec["feature_names"]
        )
    logger.info(
        "fidelity: r(means) %.3f, mean KS %.3f, MMD² %.4f, discriminator AUC %.3f",
        metrics["pearson_r"]["means"], metrics["ks"]["mean"], metrics["mmd"]["mmd2"], metrics["discriminator"]["auc"],
    )
    return metrics, table


def predict_mortality(
    train_bundle: Mapping[str, np.ndarray],
    test_bundle: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
    device: str,
) -> pd.DataFrame:
    """Train every utility model on `train_bundle` (real train for TRTR, synthetic for TSTR) and
    predict P(death) on the real test bundle: record_id, y_true and one column per model."""
    _check_bundles(train_bundle, test_bundle, feature_spec)
    settings = params["utility"]
    train, test = _flat(train_bundle, feature_spec, params), _flat(test_bundle, feature_spec, params)
    train = align_columns(test, train, "training")
    features = [c for c in test.columns if c != LABEL]
    predictions = pd.DataFrame({"record_id": test.index.to_numpy(), "y_true": test_bundle["y"].astype(np.int64)})
    for kind, hyperparameters in settings["flat_models"].items():
        predictions[kind] = utility.fit_predict_flat(
            kind, train[features].to_numpy(), train_bundle["y"], test[features].to_numpy(), seed, **hyperparameters
        )
    if "X" in train_bundle and settings.get("sequence_model"):
        predictions[settings["sequence_model"]["architecture"]] = utility.fit_predict_sequence_model(
            train_bundle, test_bundle, settings["sequence_model"], seed, device
        )
    return predictions


def evaluate_utility(trtr_predictions: pd.DataFrame, tstr_predictions: pd.DataFrame, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """TSTR vs TRTR AUROC/AUPRC per model with paired bootstrap CIs on the real test split."""
    if not trtr_predictions[["record_id", "y_true"]].equals(tstr_predictions[["record_id", "y_true"]]):
        raise ValueError(
            "the TRTR and TSTR predictions cover different test records; both must come from the same "
            "model_input_test (re-run the synthetic_evaluation pipeline as a whole)"
        )
    models = [c for c in trtr_predictions.columns if c not in ("record_id", "y_true")]
    missing = sorted(set(models) - set(tstr_predictions.columns))
    if missing:
        raise ValueError(f"TSTR predictions lack model(s) {missing}; TRTR has {models}")
    settings = params["utility"]
    y = trtr_predictions["y_true"].to_numpy()
    result = {
        model: utility.tstr_trtr(
            y, trtr_predictions[model].to_numpy(), tstr_predictions[model].to_numpy(),
            settings["n_bootstrap"], seed, settings["confidence"],
        )
        for model in models
    }
    for model, scores in result.items():
        logger.info("utility %s: TSTR AUROC %.3f vs TRTR %.3f", model, scores["tstr"]["auroc"]["value"], scores["trtr"]["auroc"]["value"])
    return {"models": result, "n_test": int(len(y)), "n_test_positive": int(y.sum())}


def evaluate_privacy(
    synthetic: Mapping[str, np.ndarray],
    real_train: Mapping[str, np.ndarray],
    real_holdout: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """DCR/NNDR/exact matches with the holdout→train baseline, membership inference against the
    holdout, attribute inference; and the distances for the histograms."""
    _check_bundles(synthetic, real_train, feature_spec)
    train = _flat(real_train, feature_spec, params)
    holdout, synth = _flat(real_holdout, feature_spec, params), _flat(synthetic, feature_spec, params)
    overlap = np.intersect1d(train.index, holdout.index)
    if overlap.size:
        raise ValueError(f"{overlap.size} record(s) are in both the train and the holdout split (e.g. {overlap[:5].tolist()}); the holdout must be unseen")
    settings = params["privacy"]
    summary, distances = privacy.distance_metrics(synth, train, holdout, seed)
    summary["membership_inference"] = privacy.membership_inference_auc(synth, train, holdout, seed)
    targets = [t for t in settings["attribute_targets"] if t in train.columns]
    skipped = sorted(set(settings["attribute_targets"]) - set(targets))
    if skipped:
        logger.warning("attribute inference: target(s) %s are not in this feature set; skipped", skipped)
    summary["attribute_inference"] = privacy.attribute_inference(synth, train, holdout, targets, settings["n_neighbors"], seed)
    domias = {"density": "knn", "n_neighbors": 1, "pca_components": None, **settings.get("domias", {})}
    summary["domias"] = privacy.domias_membership_inference(synth, train, holdout, seed=seed, **domias)
    summary["identifiability"] = privacy.identifiability(synth, train, holdout, seed)
    logger.info(
        "privacy: MIA AUC %.3f, DOMIAS AUC %.3f, identifiability %.3f, exact matches %.3f, DCR median %.3f (baseline %.3f)",
        summary["membership_inference"]["auc"], summary["domias"]["auc"], summary["identifiability"]["score"],
        summary["exact_match_rate"], summary["dcr_synthetic_to_train"]["median"], summary["dcr_holdout_to_train"]["median"],
    )
    return summary, distances


# ---------------------------------------------------------------- figures


def plot_mean_scatter(variable_statistics: pd.DataFrame, fidelity_metrics: Mapping[str, Any], generator: str) -> Figure:
    """Real vs synthetic column means / prevalences."""
    return plots.mean_scatter_figure(variable_statistics, fidelity_metrics, generator)


def plot_variable_distributions(
    synthetic: Mapping[str, np.ndarray],
    real_train: Mapping[str, np.ndarray],
    feature_spec: Mapping[str, Any],
    params: Mapping[str, Any],
    generator: str,
) -> Figure:
    """Histograms of the first `figures.max_variables` mean/prevalence columns, real vs synthetic."""
    real, synth = _flat(real_train, feature_spec, params), _flat(synthetic, feature_spec, params)
    columns = _mean_columns(real.columns)[: int(params["figures"]["max_variables"])]
    return plots.variable_distributions_figure(real, align_columns(real, synth), columns, generator)


def plot_dcr_histogram(distances: pd.DataFrame, privacy_metrics: Mapping[str, Any], generator: str) -> Figure:
    """Distance-to-closest-record histograms with the real→real baseline."""
    return plots.dcr_histogram_figure(distances, privacy_metrics, generator)


# ---------------------------------------------------------------- comparison


DETECTOR_LABELS = {"gbm": "GBM", "logistic_regression": "logreg", "mlp": "MLP"}


def _detector_columns(discriminator: Mapping[str, Any]) -> dict[str, Any]:
    """Comparison-table cells of fidelity.discriminator_report: per detector family its AUC and its
    floor (real holdout vs real train), the top giveaway column and the list of giveaway columns."""
    floor = (discriminator.get("floor") or {}).get("families", {})
    row: dict[str, Any] = {}
    for family, scores in discriminator.get("families", {}).items():
        row[f"detector_{family}_auc"] = scores["auc"]
        row[f"detector_{family}_floor"] = floor.get(family, {}).get("auc")
    giveaways = (discriminator.get("per_column") or {}).get("columns", [])
    row["top_giveaway_column"] = giveaways[0]["column"] if giveaways else None
    row["top_giveaway_auc"] = giveaways[0]["auc"] if giveaways else None
    row["giveaway_columns"] = "; ".join(
        f"{g['column']} {format_cell(g['auc'])} (rank test {format_cell(g['mann_whitney_auc'])}; real mode share "
        f"{format_cell(g['real_mode_share'])}, synthetic {format_cell(g['synthetic_share_at_real_mode'])})"
        for g in giveaways)
    groups = (discriminator.get("per_group") or {}).get("groups", [])
    row["giveaway_groups"] = "; ".join(f"{g['group']} ({g['n_columns']}) {format_cell(g['auc'])}" for g in groups)
    return row


def _comparison_row(generator: str, fid: Mapping[str, Any], util: Mapping[str, Any], priv: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "generator": generator,
        "n_synthetic": fid["n_synthetic"],
        "pearson_r_means": fid["pearson_r"]["means"],
        "pearson_r_all": fid["pearson_r"]["all_columns"],
        "ks_mean": fid["ks"]["mean"],
        "corr_frobenius": fid["correlation_distance"]["frobenius"],
        "corr_mean_abs_diff": fid["correlation_distance"]["mean_abs_diff"],
        "mmd2": fid["mmd"]["mmd2"],
        "acf_mean_abs_diff": fid.get("autocorrelation", {}).get("mean_abs_diff"),
        "co_measurement_mean_abs_diff": fid.get("co_measurement", {}).get("mean_abs_diff"),
        "discriminator_auc": fid["discriminator"]["auc"],
        "most_separating_column": fid["separating_columns"][0]["column"] if fid.get("separating_columns") else None,
        "most_separating_auc": fid["separating_columns"][0]["auc"] if fid.get("separating_columns") else None,
    }
    row.update(_detector_columns(fid["discriminator"]))
    row.update(
        {
            "alpha_precision": fid["alpha_precision"]["delta_precision_alpha"],
            "beta_recall": fid["alpha_precision"]["delta_recall_beta"],
            "authenticity": fid["alpha_precision"]["authenticity"],
            **{f"prdc_{m}": fid["prdc"][m] for m in ("precision", "recall", "density", "coverage")},
            "wasserstein_mean": fid["column_distances"]["wasserstein"]["mean"],
            "jensen_shannon_mean": fid["column_distances"]["jensen_shannon"]["mean"],
        }
    )
    for model, scores in util["models"].items():
        for metric in ("auroc", "auprc"):
            row[f"{model}_trtr_{metric}"] = scores["trtr"][metric]["value"]
            row[f"{model}_tstr_{metric}"] = scores["tstr"][metric]["value"]
            row[f"{model}_tstr_{metric}_ci_low"] = scores["tstr"][metric]["ci_low"]
            row[f"{model}_tstr_{metric}_ci_high"] = scores["tstr"][metric]["ci_high"]
            row[f"{model}_ratio_{metric}"] = scores["tstr_over_trtr"][metric]["value"]
    row.update(
        {
            "mia_auc": priv["membership_inference"]["auc"],
            "dcr_median_synthetic_to_train": priv["dcr_synthetic_to_train"]["median"],
            "dcr_median_holdout_to_train": priv["dcr_holdout_to_train"]["median"],
            "dcr_ratio_to_baseline": priv["dcr_median_ratio_to_baseline"],
            "share_closer_to_train": priv["share_closer_to_train"],
            "nndr_median": priv["nndr_synthetic_to_train"]["median"],
            "nndr_median_baseline": priv["nndr_holdout_to_train"]["median"],
            "exact_match_rate": priv["exact_match_rate"],
            "distinct_nearest_share": priv["distinct_nearest_share"],
            "domias_auc": priv["domias"]["auc"],
            "identifiability": priv["identifiability"]["score"],
            "identifiability_at_holdout_size": priv["identifiability"]["score_at_holdout_size"],
            "identifiability_holdout_baseline": priv["identifiability"]["holdout_baseline"],
        }
    )
    for target, scores in priv["attribute_inference"].items():
        row[f"attribute_{target}_auc_members"] = scores["auc_members"]
        row[f"attribute_{target}_auc_non_members"] = scores["auc_non_members"]
    return row


def comparison_markdown(table: pd.DataFrame, models: Sequence[str], targets: Mapping[str, float],
                        seed_section: str = "") -> str:
    """The comparison as markdown: the targets, `seed_section` (the spread over generator seeds), then one row
    per generator run in each block."""

    def block(heading: str, columns: Sequence[tuple[str, Any]]) -> list[str]:
        """columns: (label, column name or function of the row)."""
        # a label's own pipes (corr mean |Δ|) escaped, or they split the header into more cells than the rows have
        lines = [f"## {heading}", "", "| generator | " + " | ".join(label.replace("|", "\\|") for label, _ in columns) + " |",
                 "|---|" + "---|" * len(columns)]
        for _, row in table.iterrows():
            cells = [value(row) if callable(value) else format_cell(row.get(value)) for _, value in columns]
            lines.append(f"| {row['generator']} | " + " | ".join(cells) + " |")
        return lines + [""]

    utility_columns: list[tuple[str, Any]] = []
    for model in models:
        utility_columns += [(f"{model} TRTR AUROC", f"{model}_trtr_auroc"), (f"{model} TSTR AUROC", f"{model}_tstr_auroc"),
                            (f"{model} TSTR/TRTR", f"{model}_ratio_auroc"), (f"{model} TSTR AUPRC", f"{model}_tstr_auprc")]
    attribute_targets = [c.removeprefix("attribute_").removesuffix("_auc_members")
                         for c in table.columns if c.startswith("attribute_") and c.endswith("_auc_members")]
    attribute_columns = [
        (f"{target} inference AUROC members / non-members",
         lambda row, t=target: f"{format_cell(row[f'attribute_{t}_auc_members'])} / {format_cell(row[f'attribute_{t}_auc_non_members'])}")
        for target in attribute_targets
    ]
    families = [c.removeprefix("detector_").removesuffix("_auc") for c in table.columns
                if c.startswith("detector_") and c.endswith("_auc")]
    detector_columns: list[tuple[str, Any]] = [
        (f"{DETECTOR_LABELS.get(f, f)} AUC", f"detector_{f}_auc") for f in families
    ] + [(f"floor: real holdout vs train ({' / '.join(DETECTOR_LABELS.get(f, f) for f in families)})",
          lambda row: " / ".join(format_cell(row.get(f"detector_{f}_floor")) for f in families)),
         ("top giveaway column (per-column AUC)",
          lambda row: f"{format_cell(row.get('top_giveaway_column'))} ({format_cell(row.get('top_giveaway_auc'))})")]
    giveaway_lines = ["## What gives each generator away", "",
                      "Per-column detectors (gradient boosting on one column alone), highest AUC first; the rank test "
                      "is the Mann–Whitney AUC of the same column, the shares are those of the most common real value.", ""]
    for _, row in table.iterrows():
        giveaway_lines.append(f"- **{row['generator']}**: {row.get('giveaway_columns') or '—'}")
    if "giveaway_groups" in table.columns:
        giveaway_lines += ["", "By kind of column (gradient boosting on all columns of one kind together; number of "
                           "columns in brackets), highest AUC first:", ""]
        for _, row in table.iterrows():
            giveaway_lines.append(f"- **{row['generator']}**: {row.get('giveaway_groups') or '—'}")
    lines = [
        "# Synthetic data: generators compared",
        "",
        f"Targets: TSTR AUROC ≥ {targets['tstr_over_trtr_auroc']} × TRTR; membership-inference AUC ≤ "
        f"{targets['mia_auc']}; mean/prevalence Pearson r ≥ {targets['pearson_r_means']}; discriminator AUC "
        "as low as possible (0.5 ideal). docs/synthetic_evaluation.md explains every metric.",
        "",
        *([seed_section, "Below, every run has its own row (`<generator>_rep<k>`: trained and sampled from seed + k).", ""]
          if seed_section else []),
        *block("Fidelity (synthetic vs real train)", [
            ("records", "n_synthetic"), ("r means", "pearson_r_means"), ("r all", "pearson_r_all"), ("mean KS", "ks_mean"),
            ("corr ‖Δ‖F", "corr_frobenius"), ("corr mean |Δ|", "corr_mean_abs_diff"), ("MMD²", "mmd2"),
            ("ACF mean |Δ|", "acf_mean_abs_diff"), ("co-measurement mean abs Δ Jaccard", "co_measurement_mean_abs_diff"),
            ("discriminator AUC", "discriminator_auc"),
            ("most separating column (AUC)",
             lambda row: f"{format_cell(row.get('most_separating_column'))} ({format_cell(row.get('most_separating_auc'))})")]),
        *(block("Detection (real train vs synthetic; the floor is real holdout vs real train, 0.5 ideal)", detector_columns)
          if families else []),
        *(giveaway_lines + [""] if "giveaway_columns" in table.columns else []),
        *block("Sample-level fidelity (synthetic vs real train, z-scored by the real train columns)", [
            ("α-precision", "alpha_precision"), ("β-recall", "beta_recall"), ("authenticity", "authenticity"),
            ("PRDC precision", "prdc_precision"), ("PRDC recall", "prdc_recall"), ("PRDC density", "prdc_density"),
            ("PRDC coverage", "prdc_coverage"), ("mean Wasserstein (SD)", "wasserstein_mean"),
            ("mean Jensen–Shannon", "jensen_shannon_mean")]),
        *block("Utility (real held-out test split)", utility_columns),
        *block("Privacy (holdout = real records the generator never saw)", [
            ("MIA AUC", "mia_auc"), ("DCR median syn→train", "dcr_median_synthetic_to_train"),
            ("DCR median holdout→train (baseline)", "dcr_median_holdout_to_train"), ("DCR ratio", "dcr_ratio_to_baseline"),
            ("share closer to train", "share_closer_to_train"), ("NNDR median", "nndr_median"),
            ("NNDR baseline", "nndr_median_baseline"), ("exact matches", "exact_match_rate"),
            ("distinct nearest records", "distinct_nearest_share"), ("DOMIAS AUC", "domias_auc"),
            ("identifiability", "identifiability"),
            ("identifiability at holdout size / holdout baseline",
             lambda row: f"{format_cell(row.get('identifiability_at_holdout_size'))} / "
                         f"{format_cell(row.get('identifiability_holdout_baseline'))}"),
            *attribute_columns]),
    ]
    return "\n".join(lines) + "\n"


# Headline metrics summarised over each generator's runs (comparison column → label in the seed summary).
SEED_SUMMARY_METRICS = {
    "pearson_r_means": "r means", "ks_mean": "mean KS", "mmd2": "MMD²",
    "co_measurement_mean_abs_diff": "co-measurement mean abs Δ Jaccard",
    "detector_gbm_auc": "detection AUC, GBM", "detector_logistic_regression_auc": "detection AUC, logreg",
    "detector_mlp_auc": "detection AUC, MLP", "detector_gbm_floor": "detection floor (real holdout), GBM",
    "alpha_precision": "α-precision", "beta_recall": "β-recall", "authenticity": "authenticity",
    "prdc_precision": "PRDC precision", "prdc_recall": "PRDC recall", "prdc_density": "PRDC density",
    "prdc_coverage": "PRDC coverage", "wasserstein_mean": "mean Wasserstein (SD)",
    "jensen_shannon_mean": "mean Jensen–Shannon", "mia_auc": "MIA AUC", "domias_auc": "DOMIAS AUC",
    "identifiability": "identifiability", "dcr_ratio_to_baseline": "DCR ratio to baseline",
    "exact_match_rate": "exact matches",
}


def seed_summary_markdown(summary: pd.DataFrame) -> str:
    """The seed summary as markdown: per generator, mean ± SD [min, max] over its runs and, for utility, the
    interval that pools the runs and the test bootstrap."""
    if summary.empty:
        return ""
    lines = ["## Over generator seeds", "",
             "Each generator trained and sampled from each seed (`<generator>` = seed, `<generator>_rep<k>` = seed + k). "
             "Utility intervals pool the runs and the bootstrap of the test records (each replicate resamples the test "
             "records and takes one run); other rows give the runs' range.", ""]
    for generator, rows in summary.groupby("generator", sort=False):
        n_runs = int(rows["n_runs"].max())
        lines += [f"### {generator} ({n_runs} run{'s' if n_runs != 1 else ''})", "", "| metric | mean ± SD | range over runs | 95 % interval (runs + test bootstrap) |",
                  "|---|---|---|---|"]
        for _, row in rows.iterrows():
            interval = (f"[{format_cell(row['ci_low'])}, {format_cell(row['ci_high'])}]"
                        if pd.notna(row["ci_low"]) else "—")
            lines.append(f"| {row['metric']} | {format_cell(row['mean'])} ± {format_cell(row['sd'])} | "
                         f"{format_cell(row['min'])} – {format_cell(row['max'])} | {interval} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _pooled_utility(
    runs: Mapping[str, tuple[str, int]], real_inputs: Mapping[str, str], models: Sequence[str],
    params: Mapping[str, Any], seed: int, sections: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """generator → model → repeats.pooled_tstr_trtr over the generator's runs."""
    settings = params["utility"]
    pooled: dict[str, dict[str, Any]] = {}
    for generator, key in real_inputs.items():
        labels = [label for label, (g, _) in runs.items() if g == generator]
        trtr = sections[f"trtr__{key}"]
        for label in labels:
            tstr = sections[f"{label}__tstr"]
            if not trtr[["record_id", "y_true"]].equals(tstr[["record_id", "y_true"]]):
                raise ValueError(f"the TSTR predictions of {label} and the TRTR predictions of {key} cover different "
                                 "test records; re-run the synthetic_evaluation pipeline as a whole")
        y = trtr["y_true"].to_numpy()
        pooled[generator] = {
            model: repeats.pooled_tstr_trtr(
                y, trtr[model].to_numpy(), [sections[f"{label}__tstr"][model].to_numpy() for label in labels],
                settings["n_bootstrap"], seed, settings["confidence"])
            for model in models
        }
    return pooled


def compare_generators(
    generators: Sequence[str],
    params: Mapping[str, Any],
    seed: int = 0,
    runs: Mapping[str, tuple[str, int]] | None = None,
    real_inputs: Mapping[str, str] | None = None,
    **sections: Any,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """One row per generator run (`generators`: the runs' labels) from its `<label>__fidelity/__utility/__privacy`
    metrics; the seed summary (per generator of `runs`, label → (generator, seed offset); utility pooled from the
    `<label>__tstr` and `trtr__<real input>` predictions, `real_inputs`: generator → its real input); and the
    markdown of both."""
    runs = dict(runs or {label: (label, 0) for label in generators})
    table = pd.DataFrame([
        _comparison_row(label, sections[f"{label}__fidelity"], sections[f"{label}__utility"], sections[f"{label}__privacy"])
        for label in generators
    ])
    table.insert(1, "run_of", [runs[label][0] for label in generators])
    table.insert(2, "seed_offset", [runs[label][1] for label in generators])
    models = list(sections[f"{generators[0]}__utility"]["models"])
    pooled = _pooled_utility(runs, real_inputs, models, params, seed, sections) if real_inputs else {}
    summary = repeats.seed_summary(table, runs, SEED_SUMMARY_METRICS, pooled)
    return table, summary, comparison_markdown(table, models, params["targets"], seed_summary_markdown(summary))
