"""The report of an attacked model: its ranking beside the paper's, the hourly trend, stability over
attack seeds, and a markdown report; and an overview over all attacked models."""

from __future__ import annotations

import base64
import io
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from ehr_adversarial.attack import ranking_agreement
from ehr_adversarial.attack.run import run_attack, select_records, susceptibility_tables
from ehr_adversarial.features.bundle import TensorBundle
from ehr_adversarial.glossary import glossary
from ehr_adversarial.reporting.markdown import markdown_table

from .plots import plot_attack_report

logger = logging.getLogger(__name__)

# Columns of the tables, fixed so that an attack without a single success still gives (empty) tables.
STABILITY_COLUMNS = ["direction", "seed_a", "seed_b", "n_features", "spearman", "kendall", "top_k", "top_k_overlap",
                     "shared_records"]
TREND_COLUMNS = ["direction", "spearman", "p_value", "early_mean", "late_mean", "late_over_early", "peak_hour",
                 "window_hours", "rises"]
PAPER_COLUMNS = ["direction", "paper_feature", "feature", "paper_position", "paper_cumulative_s", "our_rank",
                 "our_rank_among_paper_features", "n_paper_features", "n_features", "our_cumulative_s", "agrees"]


def _check_seeds(reporting: Mapping[str, Any], seed: int) -> list[int]:
    seeds = [int(s) for s in reporting.get("stability_seeds") or []]
    if not seeds:
        raise ValueError("reporting.stability_seeds is empty; give at least one attack seed besides params:seed.")
    if seed in seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"reporting.stability_seeds {seeds} must be distinct and differ from params:seed ({seed}).")
    return seeds


def attack_with_seeds(
    model,
    model_input_test: TensorBundle,
    feature_spec: dict[str, Any],
    attack: dict[str, Any],
    reporting: dict[str, Any],
    seed: int,
    device: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The attack repeated with each of `reporting.stability_seeds`: their S_j rankings and records.

    The attack itself is deterministic (δ starts at 0); a seed changes which correctly classified
    records are drawn, so the rankings show how much the susceptible locations depend on the sample.
    """
    rankings, records = [], []
    for extra_seed in _check_seeds(reporting, seed):
        selection = select_records(model, model_input_test, feature_spec, attack, extra_seed, device)
        attacked, deltas, _ = run_attack(model, model_input_test, selection, feature_spec, attack, extra_seed, device)
        _, ranking = susceptibility_tables(attacked, deltas)
        rankings.append(ranking.assign(seed=extra_seed))
        records.append(attacked[["record_id", "direction", "success"]].assign(seed=extra_seed))
    return pd.concat(rankings, ignore_index=True), pd.concat(records, ignore_index=True)


def ranking_stability(
    cumulative_susceptibility: pd.DataFrame,
    attack_records: pd.DataFrame,
    seed_rankings: pd.DataFrame,
    seed_records: pd.DataFrame,
    reporting: dict[str, Any],
    seed: int,
) -> pd.DataFrame:
    """Agreement of the cumulative S_j rankings of every pair of attack seeds, per direction.

    Columns: direction, seed_a, seed_b, n_features, spearman, kendall, top_k, top_k_overlap (how many
    of one seed's k most susceptible features are among the other's, see `ranking_agreement`),
    shared_records (Jaccard index of the successful records attacked).
    """
    k = int(reporting.get("top_k", 5))
    rankings = pd.concat([cumulative_susceptibility.assign(seed=seed), seed_rankings], ignore_index=True)
    records = pd.concat([attack_records[["record_id", "direction", "success"]].assign(seed=seed), seed_records],
                        ignore_index=True)
    rows = []
    for direction, frame in rankings.groupby("direction", sort=True):
        scores = frame.pivot(index="feature", columns="seed", values="cumulative_s")
        won = records[(records["direction"] == direction) & records["success"]]
        for seed_a, seed_b in itertools.combinations(sorted(scores.columns), 2):
            pair = scores[[seed_a, seed_b]].dropna()
            agreement = ranking_agreement(pair[seed_a], pair[seed_b], k)
            ids_a = set(won.loc[won["seed"] == seed_a, "record_id"])
            ids_b = set(won.loc[won["seed"] == seed_b, "record_id"])
            rows.append({
                "direction": direction, "seed_a": int(seed_a), "seed_b": int(seed_b),
                **{key: agreement[key] for key in ("n_features", "spearman", "kendall", "top_k", "top_k_overlap")},
                "shared_records": len(ids_a & ids_b) / max(len(ids_a | ids_b), 1),
            })
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def hourly_trend(susceptibility: pd.DataFrame, reporting: dict[str, Any]) -> pd.DataFrame:
    """Does susceptibility rise at later hours (the paper's claim)? Per direction, over Σ_j S(j, t).

    Columns: direction, spearman (hour vs Σ_j S), p_value, early_mean and late_mean (the first and
    last `trend_window_hours` hours), late_over_early, peak_hour, rises (ρ > 0 at p < alpha).
    """
    window = int(reporting.get("trend_window_hours", 12))
    alpha = float(reporting.get("trend_alpha", 0.05))
    scores = susceptibility[susceptibility["metric"] == "S"]
    rows = []
    for direction, frame in scores.groupby("direction", sort=True):
        by_hour = frame.groupby("hour")["value"].sum().sort_index()
        if len(by_hour) < 2 * window:
            raise ValueError(f"reporting.trend_window_hours is {window}, but only {len(by_hour)} hours exist; "
                             "it must be at most half of them.")
        result = stats.spearmanr(by_hour.index, by_hour.to_numpy())
        rho, p = float(result.statistic), float(result.pvalue)
        early, late = float(by_hour.iloc[:window].mean()), float(by_hour.iloc[-window:].mean())
        rows.append({
            "direction": direction, "spearman": rho, "p_value": p, "early_mean": early, "late_mean": late,
            "late_over_early": late / early if early > 0 else float("inf"),
            "peak_hour": int(by_hour.idxmax()), "window_hours": window,
            "rises": bool(np.isfinite(rho) and rho > 0 and p < alpha),
        })
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


def _paper_feature(names: Sequence[str], candidates: Sequence[str]) -> str | None:
    """Our name of one of the paper's features: the first candidate the feature set has."""
    return next((c for c in candidates if c in names), None)


def paper_comparison(cumulative_susceptibility: pd.DataFrame, reporting: dict[str, Any]) -> pd.DataFrame:
    """Our cumulative S_j ranks of the features the paper's table names, beside the paper's values.

    `reporting.paper_features` maps each of the paper's 19 features to our names (first present wins);
    our rank is given among all our features and among the paper's features present in ours.
    Columns: direction, paper_feature, feature, paper_position, paper_cumulative_s, our_rank,
    our_rank_among_paper_features, n_paper_features, n_features, our_cumulative_s, agrees.
    """
    paper_features: Mapping[str, Sequence[str]] = reporting["paper_features"]
    k = int(reporting.get("top_k", 5))
    rows = []
    for direction, entries in reporting["paper_ranking"].items():
        ours = cumulative_susceptibility[cumulative_susceptibility["direction"] == direction]
        if ours.empty:
            logger.warning("no successful attack in direction %s; it is left out of the paper comparison", direction)
            continue
        scores = ours.set_index("feature")["cumulative_s"]
        mapped = {p: _paper_feature(scores.index, c) for p, c in paper_features.items()}
        present = scores.loc[[f for f in mapped.values() if f is not None]]
        among = present.rank(ascending=False, method="min")
        n_paper = len(present)
        for entry in entries:
            paper_name, position = entry["feature"], str(entry["position"])
            if paper_name not in paper_features:
                raise ValueError(f"reporting.paper_ranking names {paper_name!r}, which reporting.paper_features lacks.")
            feature = mapped[paper_name]
            rank = int(among[feature]) if feature is not None else None
            if rank is None:
                agrees = None
            elif position == "last":
                agrees = rank > n_paper - k
            else:
                agrees = rank <= k
            rows.append({
                "direction": direction, "paper_feature": paper_name, "feature": feature,
                "paper_position": position, "paper_cumulative_s": float(entry["cumulative_s"]),
                "our_rank": int(ours.set_index("feature").loc[feature, "rank"]) if feature else None,
                "our_rank_among_paper_features": rank, "n_paper_features": n_paper,
                "n_features": len(scores), "our_cumulative_s": float(scores[feature]) if feature else None,
                "agrees": agrees,
            })
    table = pd.DataFrame(rows, columns=PAPER_COLUMNS)
    for column in ("our_rank", "our_rank_among_paper_features"):
        table[column] = table[column].astype("Int64")
    table["agrees"] = table["agrees"].astype("boolean")
    return table


def _figure_png(figure: Figure) -> str:
    """The figure as a base64 PNG, so the report carries it (the report is one versioned file)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _groups(summary: Mapping[str, Any], before: str = "", after: str = "") -> str:
    """E.g. "group b" (with `before` and `after` around it): the source groups of the test split the attacked
    records come from (features.<source>.splits.test_groups); "" for a summary that does not name them."""
    groups = summary.get("test_groups") or []
    return f"{before}group {'+'.join(groups)}{after}" if groups else ""


def _attack_section(summary: Mapping[str, Any]) -> list[str]:
    rows = []
    for direction, s in summary["by_direction"].items():
        rows.append({"direction": direction, "records": s["records"], "success": s["success_rate"],
                     "mean L0": s["mean_l0_best"], "mean L1": s["mean_l1_best"], "mean L∞": s["mean_linf_best"],
                     "median iteration of first success": s["median_first_iteration"]})
    return [
        f"{summary['attacked_records']} correctly classified test records attacked "
        f"(of {summary['test_records']}{_groups(summary, before=' in ')}), "
        f"success {100 * summary['success_rate']:.1f} % in {summary['seconds']:.0f} s on {summary['device']} "
        f"(search `{summary['config']['search']}`, ≤ {summary['config']['max_iterations']} iterations). "
        "Norms are of the smallest successful δ, in scaled units ([0, 1] per feature).", "",
        markdown_table(pd.DataFrame(rows)),
    ]


def _paper_section(comparison: pd.DataFrame, ranking: pd.DataFrame, top_k: int) -> list[str]:
    lines = []
    for direction, frame in comparison.groupby("direction", sort=True):
        ours = ranking[ranking["direction"] == direction].sort_values("rank")
        lines += [f"### {direction}", "",
                  "Our top features: " + ", ".join(f"{r.feature} ({r.cumulative_s:.2f})"
                                                  for r in ours.head(top_k).itertuples()) + ".", ""]
        shown = frame[["paper_feature", "paper_position", "paper_cumulative_s", "feature", "our_rank",
                       "our_rank_among_paper_features", "our_cumulative_s", "agrees"]].rename(columns={
            "paper_feature": "paper's feature", "paper_position": "paper's position",
            "paper_cumulative_s": "paper's S_j", "feature": "ours", "our_rank": "our rank (all)",
            "our_rank_among_paper_features": f"our rank (of {int(frame['n_paper_features'].iloc[0])} paper features)",
            "our_cumulative_s": "our S_j"})
        lines += [markdown_table(shown), ""]
        for row in frame.itertuples():
            if row.feature is None:
                lines.append(f"- {row.paper_feature}: not in this feature set, cannot compare.")
                continue
            where = "top" if row.paper_position != "last" else "bottom"
            verdict = "agrees" if row.agrees else "differs"
            lines.append(f"- {row.paper_feature} (paper: {row.paper_position}): ours ranks "
                         f"{row.our_rank_among_paper_features} of {row.n_paper_features} → {verdict} "
                         f"(criterion: in our {where} {top_k}).")
        lines.append("")
    return lines


def attack_report(
    attack_summary: dict[str, Any],
    model_metrics: dict[str, Any],
    cumulative_susceptibility: pd.DataFrame,
    susceptibility: pd.DataFrame,
    paper_table: pd.DataFrame,
    trend: pd.DataFrame,
    stability: pd.DataFrame,
    seed_rankings: pd.DataFrame,
    reporting: dict[str, Any],
) -> tuple[Figure, str]:
    """The report's figure and a markdown report of one model's attack: results, ranking beside the
    paper's, hourly trend, stability across seeds, and the figure embedded.

    One node makes both because a saved figure cannot be loaded back (MatplotlibDataset saves only).
    """
    report_figure = plot_attack_report(cumulative_susceptibility, susceptibility, paper_table, trend, seed_rankings)
    k = int(reporting.get("top_k", 5))
    target = float(reporting.get("stability_target", 0.9))
    success_target = float(reporting.get("success_target", 0.99))
    test = model_metrics["test"]
    model = attack_summary["architecture"]
    lines = [
        f"# Adversarial susceptibility of `{model}` ({attack_summary['feature_set']} features)", "",
        f"The attacked model scores AUROC {test['auroc']['value']:.3f} [{test['auroc']['ci_low']:.3f}, "
        f"{test['auroc']['ci_high']:.3f}] and AUPRC {test['auprc']['value']:.3f} on its test split "
        f"({_groups(attack_summary, after=': ')}{model_metrics['n_test']} records, "
        f"{model_metrics['n_test_positive']} deaths).", "",
    ]
    if model_metrics["n_test_positive"] < int(reporting.get("min_positives", 50)):
        lines += ["**Warning:** the test split is too small for meaningful numbers (fewer than "
                  f"{reporting.get('min_positives', 50)} deaths); this report shows the pipeline's shape, not findings.", ""]
    lines += ["## Attack", "", *_attack_section(attack_summary), ""]
    meets = attack_summary["success_rate"] >= success_target
    lines += [f"Success target ≥ {100 * success_target:.0f} %: {'met' if meets else '**not met**'}.", ""]
    if cumulative_susceptibility.empty:
        lines += ["## No successful attack", "",
                  "The attack flipped none of the attacked records, so there is no perturbation to rank, no "
                  "hourly trend and no stability to measure. Raise `attack.max_iterations` or the λ range, or "
                  "look at the model: a near-constant model has (almost) no gradient to follow.", ""]
        return report_figure, "\n".join(lines)
    lines += ["## Cumulative susceptibility beside the paper (Sun et al. 2018)", "",
              "The paper's table (MIMIC-III, its LSTM) is known to us only by its first three features and its "
              "last one per direction (Sun et al., KDD 2018); we place each of them in our ranking.", "",
              *_paper_section(paper_table, cumulative_susceptibility, k)]
    agree = paper_table["agrees"].dropna()
    lines += [f"In all, {int(agree.sum())} of {len(agree)} of the paper's named positions agree with ours.", ""]
    lines += ["## Does susceptibility rise at later hours?", "",
              "Spearman correlation of the hour with Σ_j S(j, t), and the mean of Σ_j S over the first and the last "
              f"{int(trend['window_hours'].iloc[0])} hours.", "",
              markdown_table(trend.drop(columns="window_hours"), ".3g"), ""]
    for row in trend.itertuples():
        claim = "rises at later hours, as the paper reports" if row.rises else "does not rise at later hours"
        lines.append(f"- {row.direction}: susceptibility {claim} (ρ = {row.spearman:.2f}, p = {row.p_value:.2g}, "
                     f"late/early = {row.late_over_early:.2f}).")
    lines += ["", "## Stability across attack seeds", "",
              "Each seed draws its own sample of correctly classified records (the attack itself is deterministic). "
              f"Target: Spearman ρ of cumulative S_j ≥ {target} for every pair of seeds.", "",
              markdown_table(stability), ""]
    worst = stability.groupby("direction")["spearman"].min()
    for direction, rho in worst.items():
        status = "met" if rho >= target else "**not met**"
        lines.append(f"- {direction}: lowest ρ {rho:.3f} → target {status}.")
    lines += ["", "## Figure", "",
              "Left: cumulative S_j (paper-named features marked with the paper's position); middle: Σ_j S(j, t) "
              "over hours; right: S_j of each further seed against the first seed's.", "",
              f"![attack report figure](data:image/png;base64,{_figure_png(report_figure)})", "",
              "Heatmaps of S, GPP and GMP, norm histograms and S over hours are the attack pipeline's figures "
              "(`attack` datasets of this model in data/08_reporting).", ""]
    return report_figure, "\n".join(lines)


def reports_overview(models: Sequence[str], **sections: Any) -> str:
    """One table over the attacked `models` of a source: success, L1, paper agreement, trend, stability.

    `sections` holds per model `<model>__summary`, `<model>__paper`, `<model>__trend`, `<model>__stability`.
    """
    rows = []
    for model in sorted(models):
        summary, paper = sections[f"{model}__summary"], sections[f"{model}__paper"]
        trend, stability = sections[f"{model}__trend"], sections[f"{model}__stability"]
        for direction, s in summary["by_direction"].items():
            agree = paper.loc[paper["direction"] == direction, "agrees"].dropna()
            t = trend[trend["direction"] == direction]
            rows.append({
                "model": model, "direction": direction, "records": s["records"], "success": s["success_rate"],
                "mean L1": s["mean_l1_best"], "mean L0": s["mean_l0_best"],
                "paper positions agreeing": f"{int(agree.sum())}/{len(agree)}",
                "hour trend ρ": float(t["spearman"].iloc[0]) if len(t) else float("nan"),
                "min seed ρ": float(stability.loc[stability["direction"] == direction, "spearman"].min()),
            })
    return "\n".join(["# Attack reports overview", "", markdown_table(pd.DataFrame(rows)), "",
                      "Each model's own report (`reporting.<model>.report`) explains the columns.", "",
                      *glossary(sorted(models)), ""])
