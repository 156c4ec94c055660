"""The report of an attacked model: its S_j ranking with bootstrap CIs beside the paper's, the hourly trend,
the stability of the map across records and across trained instances of the model, and a markdown report;
and an overview over all attacked models."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from ehr_adversarial.attack import (
    SUSCEPTIBLE_TOLERANCE,
    rank_susceptible,
    ranking_agreement,
    susceptible_scores,
)
from ehr_adversarial.attack.susceptibility import susceptible_tolerance
from ehr_adversarial.glossary import glossary
from ehr_adversarial.reporting.markdown import markdown_table

from .plots import plot_attack_report
from .stability import instance_half_stability

logger = logging.getLogger(__name__)

# Columns of the tables, fixed so that an attack without a single success still gives (empty) tables.
TREND_COLUMNS = ["direction", "spearman", "p_value", "early_mean", "late_mean", "late_over_early", "peak_hour",
                 "window_hours", "rises"]
PAPER_COLUMNS = ["direction", "paper_feature", "feature", "paper_position", "paper_cumulative_s", "our_rank",
                 "our_rank_among_paper_features", "n_paper_features", "n_features", "our_cumulative_s", "susceptible",
                 "agrees"]


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


def _susceptible(ours: pd.DataFrame) -> pd.Series:
    """`susceptible` of a cumulative_susceptibility table (indexed by feature); S_j ≥ the default tolerance
    for a table without the column."""
    frame = ours.set_index("feature")
    if "susceptible" in frame:
        return frame["susceptible"].astype(bool)
    return frame["cumulative_s"] >= SUSCEPTIBLE_TOLERANCE


def paper_comparison(cumulative_susceptibility: pd.DataFrame, reporting: dict[str, Any]) -> pd.DataFrame:
    """Our cumulative S_j ranks of the features the paper's table names, beside the paper's values.

    `reporting.paper_features` maps each of the paper's 19 features to our names (first present wins); the
    n_paper_features both define are ranked among themselves (average ranks for ties, a not-susceptible
    feature counting as S_j = 0, so those tie at the bottom). our_rank is the rank among all our features
    (NaN when not susceptible). A paper top-3 feature agrees when it is in our top `top_k` of the paper's
    features, the paper's last when it is in our bottom `top_k`.
    Columns: PAPER_COLUMNS.
    """
    paper_features: Mapping[str, Sequence[str]] = reporting["paper_features"]
    k = int(reporting.get("top_k", 5))
    rows = []
    for direction, entries in reporting["paper_ranking"].items():
        ours = cumulative_susceptibility[cumulative_susceptibility["direction"] == direction]
        if ours.empty:
            logger.warning("no successful attack in direction %s; it is left out of the paper comparison", direction)
            continue
        scores = ours.set_index("feature")["cumulative_s"].astype(float)
        susceptible = _susceptible(ours)
        ranks = (ours.set_index("feature")["rank"].astype(float) if "rank" in ours
                 else rank_susceptible(scores.where(susceptible, 0.0)))
        mapped = {p: _paper_feature(scores.index, c) for p, c in paper_features.items()}
        present = list(dict.fromkeys(f for f in mapped.values() if f is not None))
        among = scores.where(susceptible, 0.0).loc[present].rank(ascending=False, method="average")
        n_paper = len(present)
        for entry in entries:
            paper_name, position = entry["feature"], str(entry["position"])
            if paper_name not in paper_features:
                raise ValueError(f"reporting.paper_ranking names {paper_name!r}, which reporting.paper_features lacks.")
            feature = mapped[paper_name]
            rank = float(among[feature]) if feature is not None else None
            if rank is None:
                agrees = None
            elif position == "last":
                agrees = rank > n_paper - k
            else:
                agrees = rank <= k
            rows.append({
                "direction": direction, "paper_feature": paper_name, "feature": feature,
                "paper_position": position, "paper_cumulative_s": float(entry["cumulative_s"]),
                "our_rank": float(ranks[feature]) if feature else None,
                "our_rank_among_paper_features": rank, "n_paper_features": n_paper,
                "n_features": len(scores), "our_cumulative_s": float(scores[feature]) if feature else None,
                "susceptible": bool(susceptible[feature]) if feature else None,
                "agrees": agrees,
            })
    table = pd.DataFrame(rows, columns=PAPER_COLUMNS)
    for column in ("our_rank", "our_rank_among_paper_features", "our_cumulative_s"):
        table[column] = table[column].astype("float64")
    for column in ("susceptible", "agrees"):
        table[column] = table[column].astype("boolean")
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


def _number(value: float) -> str:
    """A rank: 3, 4.5 (average ranks of ties), other fractions (percentiles) to one decimal; "–" when missing."""
    if value is None or pd.isna(value):
        return "–"
    return f"{round(float(value), 1):g}"


def _interval(low: float, high: float, spec: str = ".3g") -> str:
    if pd.isna(low) or pd.isna(high):
        return "–"
    return f"[{format(low, spec)}, {format(high, spec)}]"


def _paper_section(comparison: pd.DataFrame, ranking: pd.DataFrame, top_k: int, tolerance: float,
                   n_defined: int) -> list[str]:
    lines = []
    for direction, frame in comparison.groupby("direction", sort=True):
        ours = ranking[(ranking["direction"] == direction) & ranking["rank"].notna()].sort_values("rank")
        n_paper = int(frame["n_paper_features"].iloc[0])
        lines += [f"### {direction}", "",
                  "Our top features: " + (", ".join(f"{r.feature} ({r.cumulative_s:.3g})"
                                                   for r in ours.head(top_k).itertuples()) or "none") + ".", "",
                  f"{n_paper} of the paper's {n_defined} features are in our feature set (n_paper_features); "
                  "our ranks among them are average ranks, and a feature "
                  f"that is not susceptible (S_j < {tolerance:g}) counts as S_j = 0, tied at the bottom.", ""]
        shown = frame[["paper_feature", "paper_position", "paper_cumulative_s", "feature", "our_rank",
                       "our_rank_among_paper_features", "our_cumulative_s", "susceptible", "agrees"]].copy()
        for column in ("our_rank", "our_rank_among_paper_features"):
            shown[column] = shown[column].map(_number)
        shown = shown.rename(columns={
            "paper_feature": "paper's feature", "paper_position": "paper's position",
            "paper_cumulative_s": "paper's S_j", "feature": "ours", "our_rank": "our rank (all)",
            "our_rank_among_paper_features": f"our rank (of {n_paper} paper features)",
            "our_cumulative_s": "our S_j"})
        lines += [markdown_table(shown), ""]
        for row in frame.itertuples():
            if row.feature is None:
                lines.append(f"- {row.paper_feature}: not in this feature set, cannot compare.")
                continue
            where = "top" if row.paper_position != "last" else "bottom"
            verdict = "agrees" if row.agrees else "differs"
            place = f"ranks {_number(row.our_rank_among_paper_features)} of {row.n_paper_features}"
            if not row.susceptible:
                place = f"is not susceptible (tied at the bottom: {_number(row.our_rank_among_paper_features)} " \
                        f"of {row.n_paper_features})"
            lines.append(f"- {row.paper_feature} (paper: {row.paper_position}): ours {place} → {verdict} "
                         f"(criterion: in our {where} {top_k}).")
        lines.append("")
    return lines


def _ranking_section(intervals: pd.DataFrame, tolerance: float, confidence: float) -> list[str]:
    level = f"{100 * confidence:g} %"
    lines = ["## Cumulative susceptibility S_j", "",
             f"S_j = Σ_t S(j, t) per feature with its {level} CI, and its rank with a CI: a percentile bootstrap over "
             "the successful records of the direction (records drawn with replacement). S_j rests on a maximum "
             "(GMP), and a resample lacks some records, so resampled S_j lean low: the interval shows the spread "
             "over records, it is not bias-corrected, and the point may lie near or above its upper end. Ranks are "
             f"over the susceptible features only (1 = most susceptible; ties share the average rank); a feature "
             f"with S_j < {tolerance:g} is not susceptible and has no rank. In the rank CI a resample where a "
             "feature falls below the tolerance places it below every susceptible one. \"Susceptible in resamples\" "
             "is the share of resamples where S_j ≥ the tolerance.", ""]
    for direction, frame in intervals.groupby("direction", sort=True):
        ranked = frame[frame["susceptible"].astype(bool)].sort_values(["rank", "feature"])
        lines += [f"### {direction} ({int(frame['n_records'].iloc[0])} successful records)", ""]
        if len(ranked):
            table = pd.DataFrame({
                "rank": ranked["rank"].map(_number),
                f"rank {level} CI": [f"{_number(lo)}–{_number(hi)}" if pd.notna(lo) else "–"
                                     for lo, hi in zip(ranked["rank_ci_low"], ranked["rank_ci_high"], strict=True)],
                "feature": ranked["feature"],
                "S_j": ranked["cumulative_s"].map(lambda v: f"{v:.3g}"),
                f"S_j {level} CI": [_interval(lo, hi) for lo, hi in
                                    zip(ranked["ci_low"], ranked["ci_high"], strict=True)],
                "susceptible in resamples": ranked["share_susceptible"].map(
                    lambda v: "–" if pd.isna(v) else f"{100 * v:.0f} %"),
            })
            lines += [markdown_table(table), ""]
        else:
            lines += ["No feature is susceptible.", ""]
        rest = frame[~frame["susceptible"].astype(bool)].sort_values("feature")
        if len(rest):
            lines += [f"Not susceptible (S_j < {tolerance:g}), not ranked: " + ", ".join(rest["feature"]) + ".", ""]
        else:
            lines += [f"Every feature is susceptible (S_j ≥ {tolerance:g}).", ""]
    return lines


def _meets(rho: float, overlap: float, target: float, top_k_target: int) -> str:
    """"met" when ρ ≥ target and the top-k overlap ≥ its target (a rounding error short counts as met)."""
    ok = pd.notna(rho) and rho >= target - 1e-9 and pd.notna(overlap) and overlap >= top_k_target - 1e-9
    return "met" if ok else "**not met**"


def _record_stability_section(stability: pd.DataFrame, reporting: Mapping[str, Any], tolerance: float) -> list[str]:
    target = float(reporting.get("stability_target", 0.8))
    k = int(stability["top_k"].iloc[0]) if len(stability) else int(reporting.get("top_k", 5))
    k_target = min(int(reporting.get("stability_top_k_target", 4)), k)  # k is smaller with fewer features
    lines = ["## Stability across records", "",
             f"The successful records of each direction are split at random into two disjoint halves "
             f"({int(reporting.get('split_half_repeats', 50))} times), and the S_j of one half is compared with the "
             f"other's: Spearman ρ, and how many of the {k} most susceptible features of one half are among the other's "
             f"(S_j < {tolerance:g} counts as 0). Each half has half the records, so two samples of the full size "
             f"would typically agree better. Target: median ρ ≥ {target:g} and mean top-{k} overlap ≥ "
             f"{k_target}/{k}.", ""]
    if stability.empty:
        return lines + ["No direction has successful records to split.", ""]
    table = pd.DataFrame({
        "direction": stability["direction"], "successful records": stability["n_records"],
        "records per half": stability["n_per_half"], "splits": stability["n_splits"],
        "median ρ": stability["spearman_median"],
        "ρ 5th–95th percentile": [_interval(lo, hi, ".3f") for lo, hi in
                                  zip(stability["spearman_low"], stability["spearman_high"], strict=True)],
        f"mean top-{k} overlap": stability["top_k_overlap_mean"],
        f"least top-{k} overlap": [_number(v) for v in stability["top_k_overlap_min"]],
    })
    lines += [markdown_table(table), ""]
    minimum = int(reporting.get("min_records_per_half", 25))
    for row in stability.itertuples():
        if not bool(row.enough_records):
            lines.append(f"- {row.direction}: too few successful records ({row.n_records}, {row.n_per_half} per half "
                         f"< {minimum}) for a split-half coefficient.")
            continue
        lines.append(f"- {row.direction}: median ρ {row.spearman_median:.3f}, mean top-{k} overlap "
                     f"{row.top_k_overlap_mean:.1f}/{k} → target "
                     f"{_meets(row.spearman_median, row.top_k_overlap_mean, target, k_target)}.")
    return lines + [""]


def _instance_section(ranking: pd.DataFrame, instance_rankings: pd.DataFrame, instance_stability: pd.DataFrame,
                      reporting: Mapping[str, Any], tolerance: float) -> list[str]:
    lines = ["## Stability across model instances", ""]
    if instance_rankings.empty:
        return lines + ["One trained instance: set `training.<source>.<model>.n_instances` ≥ 3 to measure how far "
                        "the map depends on the training seed.", ""]
    target = float(reporting.get("stability_target", 0.8))
    k = int(instance_stability["top_k"].iloc[0]) if len(instance_stability) else int(reporting.get("top_k", 5))
    k_target = min(int(reporting.get("stability_top_k_target", 4)), k)  # k is smaller with fewer features
    n_instances = instance_rankings["instance"].nunique()
    lines += [f"The served model averages the logits of {n_instances} instances trained alike from different seeds. "
              "Each instance is attacked alone, on the same records: a class-balanced draw from the attack's "
              "selection among the records every instance classifies correctly. Per pair of instances: Spearman ρ "
              f"and Kendall τ of S_j, and the overlap of their top {k} (S_j < {tolerance:g} counts as 0). Target: "
              f"ρ ≥ {target:g} and top-{k} overlap ≥ {k_target}/{k} for every pair.", ""]
    attacked = (instance_rankings.groupby(["direction", "instance"], sort=True)
                .agg(**{"records attacked": ("n_attacked", "first"), "successful records": ("n_records", "first"),
                        "success": ("success_rate", "first"), "susceptible features": ("susceptible", "sum")})
                .reset_index())
    lines += [markdown_table(attacked), ""]

    def worst_per_direction(agreements: pd.DataFrame) -> list[str]:
        """The lowest ρ and top-k overlap of each direction's rows against the targets."""
        return [f"- {direction}: lowest ρ {frame['spearman'].min():.3f}, least top-{k} overlap "
                f"{int(frame['top_k_overlap'].min())}/{k} → target "
                f"{_meets(frame['spearman'].min(), frame['top_k_overlap'].min(), target, k_target)}."
                for direction, frame in agreements.groupby("direction", sort=True)] + [""]

    if len(instance_stability):
        lines += [markdown_table(instance_stability.drop(columns=["n_features"], errors="ignore")), "",
                  *worst_per_direction(instance_stability)]
    halves = instance_half_stability(instance_rankings, tolerance, k)
    if len(halves):
        lines += ["Disjoint halves of the instances: the mean map of one half against the mean map of the other, for "
                  "every split (what an ensemble map of half the instances predicts about the other half):", "",
                  markdown_table(halves), "", *worst_per_direction(halves)]
    lines += ["The mean map (S_j averaged over the instances) beside the served model's S_j (its own attack, on all "
              "of the attack's records):", ""]
    for direction, frame in instance_rankings.groupby("direction", sort=True):
        mean_map = frame.groupby("feature")["cumulative_s"].mean()
        served = ranking[ranking["direction"] == direction].set_index("feature")["cumulative_s"]
        if served.empty:
            lines.append(f"- {direction}: the served model has no successful attack here.")
            continue
        shared = served.index.intersection(mean_map.index)
        agreement = ranking_agreement(susceptible_scores(served.loc[shared], tolerance),
                                      susceptible_scores(mean_map.loc[shared], tolerance), k)
        lines.append(f"- {direction}: Spearman ρ {agreement['spearman']:.3f}, top-{agreement['top_k']} overlap "
                     f"{agreement['top_k_overlap']}/{agreement['top_k']} (served: {', '.join(agreement['top_a'])}; "
                     f"mean map: {', '.join(agreement['top_b'])}).")
    return lines + [""]


def attack_report(
    attack_summary: dict[str, Any],
    model_metrics: dict[str, Any],
    cumulative_susceptibility: pd.DataFrame,
    susceptibility: pd.DataFrame,
    paper_table: pd.DataFrame,
    trend: pd.DataFrame,
    ranking_intervals: pd.DataFrame,
    hourly_intervals: pd.DataFrame,
    record_stability: pd.DataFrame,
    instance_rankings: pd.DataFrame,
    instance_stability: pd.DataFrame,
    attack_modes: pd.DataFrame,
    mode_hours: pd.DataFrame,
    time_profile: pd.DataFrame,
    attack: dict[str, Any],
    reporting: dict[str, Any],
) -> tuple[Figure, str]:
    """The report's figure and a markdown report of one model's attack: results, the S_j ranking with its
    CIs, the ranking beside the paper's, the hourly trend, the stability across records and across trained
    instances, and the figure embedded.

    One node makes both because a saved figure cannot be loaded back (MatplotlibDataset saves only).
    """
    report_figure = plot_attack_report(cumulative_susceptibility, ranking_intervals, hourly_intervals, paper_table,
                                       trend, instance_rankings)
    k = int(reporting.get("top_k", 5))
    tolerance = susceptible_tolerance(attack)
    success_target = float(reporting.get("success_target", 0.99))
    test = model_metrics["test"]
    model = model_metrics.get("model") or attack_summary["architecture"]
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
    lines += _ranking_section(ranking_intervals, tolerance, float(reporting.get("confidence", 0.95)))
    lines += ["## Cumulative susceptibility beside the paper (Sun et al. 2018)", "",
              "The paper's table (MIMIC-III, its LSTM) is known to us only by its first three features and its "
              "last one per direction (Sun et al., KDD 2018); we place each of them in our ranking.", "",
              *_paper_section(paper_table, cumulative_susceptibility, k, tolerance,
                             len(reporting.get("paper_features", {})))]
    agree = paper_table["agrees"].dropna()
    lines += [f"In all, {int(agree.sum())} of {len(agree)} of the paper's named positions agree with ours.", ""]
    lines += ["## Does susceptibility rise at later hours?", "",
              "Spearman correlation of the hour with S_t = Σ_j S(j, t), and the mean of S_t over the first and the "
              f"last {int(trend['window_hours'].iloc[0])} hours. The figure's middle panel shows S_t with its "
              "bootstrap CI over records (a band).", "",
              markdown_table(trend.drop(columns="window_hours"), ".3g"), ""]
    for row in trend.itertuples():
        claim = "rises at later hours, as the paper reports" if row.rises else "does not rise at later hours"
        peak = hourly_intervals[(hourly_intervals["direction"] == row.direction)
                                & (hourly_intervals["hour"] == row.peak_hour)]
        at_peak = ""
        if len(peak):
            p = peak.iloc[0]
            at_peak = f"; S_t at the peak hour {row.peak_hour}: {p['s_t']:.3g} {_interval(p['ci_low'], p['ci_high'])}"
        lines.append(f"- {row.direction}: susceptibility {claim} (ρ = {row.spearman:.2f}, p = {row.p_value:.2g}, "
                     f"late/early = {row.late_over_early:.2f}{at_peak}).")
    lines += ["", *_time_profile_section(time_profile, hourly_intervals, mode_hours)]
    lines += _modes_section(attack_modes)
    lines += ["", *_record_stability_section(record_stability, reporting, tolerance)]
    lines += _instance_section(cumulative_susceptibility, instance_rankings, instance_stability, reporting, tolerance)
    lines += ["## Figure", "",
              "Left: cumulative S_j with its bootstrap CI (paper-named features red with the paper's position, "
              "not-susceptible features grey); middle: S_t = Σ_j S(j, t) over hours with its CI band; right: each "
              "trained instance's S_j against the served model's (points on the diagonal = the instances agree; "
              "empty for a single instance).", "",
              f"![attack report figure](data:image/png;base64,{_figure_png(report_figure)})", "",
              "Heatmaps of S, GPP and GMP, norm histograms and S over hours are the attack pipeline's figures "
              "(`attack` datasets of this model in data/08_reporting).", ""]
    return report_figure, "\n".join(lines)


BLOCK_HOURS = 12  # the time profile's blocks of hours


def _block_shares(values: pd.Series) -> list[float]:
    """Shares of a per-hour series (index hour) in consecutive blocks of BLOCK_HOURS hours."""
    total = float(values.sum())
    blocks = values.groupby(values.index // BLOCK_HOURS).sum()
    return [float(v) / total if total > 0 else float("nan") for v in blocks]


def _time_profile_section(profile: pd.DataFrame, hourly_intervals: pd.DataFrame, mode_hours: pd.DataFrame) -> list[str]:
    """Why S_t sits where it does: per block of hours the share of S_t (refined and first δ), of the margin's
    gradient at the unperturbed record, and the share of measured cells; then which cause the numbers support."""
    if profile.empty:
        return []
    lines = ["## Why susceptibility sits where it does in time", "",
             f"Per block of {BLOCK_HOURS} hours: the share of S_t (the refined δ of the headline and the first "
             "successful δ), the share of the margin's gradient |∂(Z_y − Z_y′)/∂x| at the unperturbed records (where "
             "the attack starts), and the share of cells that were measured. The L1 step moves a cell only when its "
             "gradient outweighs λ, so S_t can be no broader than the gradient; the refinement then keeps the fewest "
             "largest cells.", ""]
    rows, verdicts = [], []
    for direction, frame in profile.groupby("direction", sort=True):
        frame = frame.set_index("hour").sort_index()
        s_t = hourly_intervals[hourly_intervals["direction"] == direction].set_index("hour")["s_t"].sort_index()
        first = mode_hours[(mode_hours["direction"] == direction) & (mode_hours["mode"] == "first")]
        first_t = first.set_index("hour")["s_t"].sort_index() if len(first) else pd.Series(dtype=float)
        shares = {"S_t (refined δ)": _block_shares(s_t), "S_t (first δ)": _block_shares(first_t) if len(first_t) else [],
                  "gradient": _block_shares(frame["gradient"])}
        measured = frame["measured_share"].groupby(frame.index // BLOCK_HOURS).mean()
        for what, values in shares.items():
            rows.append({"direction": direction, "share of": what,
                         **{f"h {b * BLOCK_HOURS}–{(b + 1) * BLOCK_HOURS - 1}": v for b, v in enumerate(values)}})
        rows.append({"direction": direction, "share of": "cells measured",
                     **{f"h {b * BLOCK_HOURS}–{(b + 1) * BLOCK_HOURS - 1}": float(v) for b, v in measured.items()}})
        last_s, last_g = shares["S_t (refined δ)"][-1], shares["gradient"][-1]
        model_part = (f"the model's gradient already leans to the last {BLOCK_HOURS} hours ({100 * last_g:.0f} % of it)"
                      if last_g >= 0.5 else
                      f"the model's gradient is spread over the window (the last {BLOCK_HOURS} hours hold "
                      f"{100 * last_g:.0f} % of it)")
        optimiser_part = (f"and the attack concentrates it further: those hours hold {100 * last_s:.0f} % of S_t"
                          if last_s > last_g + 0.1 else f"and S_t follows it ({100 * last_s:.0f} % there)")
        if shares["S_t (first δ)"]:
            first_last = shares["S_t (first δ)"][-1]
            optimiser_part += (f"; the first successful δ puts {100 * first_last:.0f} % there, so the refinement's "
                               "pruning to the largest cells sharpens the profile" if last_s > first_last + 0.05 else
                               f"; the first successful δ puts {100 * first_last:.0f} % there as well, so the "
                               "concentration comes from the gradient steps, not the refinement")
        spread = float(measured.max() - measured.min())
        imputation_part = (f"The share of measured cells is flat over the window ({100 * measured.min():.0f}–"
                           f"{100 * measured.max():.0f} %), so imputation does not explain the profile."
                           if spread < 0.1 else
                           f"The share of measured cells varies over the window ({100 * measured.min():.0f}–"
                           f"{100 * measured.max():.0f} %).")
        verdicts.append(f"- {direction}: {model_part}, {optimiser_part}. {imputation_part}")
    return [*lines, markdown_table(pd.DataFrame(rows), ".2f"), "", *verdicts, ""]


def _modes_section(modes: pd.DataFrame) -> list[str]:
    """The map under other choices of δ, on the same records."""
    if modes.empty:
        return []
    shown = modes.rename(columns={"description": "δ", "n_records": "records", "success_rate": "success",
                                  "mean_l1": "mean L1", "mean_l1_measured": "L1 on measured cells",
                                  "mean_l0": "mean L0", "imputed_share": "changed cells imputed",
                                  "at_bound_share": "changed cells at a clip bound",
                                  "spearman_vs_headline": "ρ vs headline",
                                  "top_k_overlap_vs_headline": "top-k shared", "top_features": "top features"})
    shown = shown.drop(columns=["mode", "top_k"])
    return ["## Other choices of δ", "",
            f"On {int(modes['n_records'].max())} records per direction drawn from the attacked ones: the headline "
            "map uses the refined δ (the smallest successful δ after pruning and scaling); the paper reports the "
            "first successful δ; the measurement-consistent attack moves measured cells only and carries each change "
            "into the hours the features stage fills from it (so its “changed cells imputed” are those filled "
            "hours, and its L1 on measured cells is what it minimises). “At a clip bound”: the cell's scaled value "
            "was 0 or 1, i.e. the value was winsorised at the train split's p05/p95, so the starting value is the "
            "bound, not the measurement.", "",
            markdown_table(shown, ".3g"), ""]


def reports_overview(models: Sequence[str], attack: Mapping[str, Any] | None = None,
                     reporting: Mapping[str, Any] | None = None, **sections: Any) -> str:
    """One table over the attacked `models` of a source: success, L1, paper agreement, trend, stability.

    `sections` holds per model `<model>__summary`, `<model>__paper`, `<model>__trend`, `<model>__records`
    (split-half stability), `<model>__instances` (instance stability, empty for a single instance) and
    `<model>__instance_rankings` (each instance's S_j, for the agreement of disjoint halves of the instances,
    with the tolerance of `attack` and the top k of `reporting`).
    """
    rows = []
    for model in sorted(models):
        summary, paper = sections[f"{model}__summary"], sections[f"{model}__paper"]
        trend, records = sections[f"{model}__trend"], sections[f"{model}__records"]
        instances = sections[f"{model}__instances"]
        for direction, s in summary["by_direction"].items():
            agree = paper.loc[paper["direction"] == direction, "agrees"].dropna()
            t = trend[trend["direction"] == direction]
            halves = records.loc[records["direction"] == direction, "spearman_median"]
            pairs = instances.loc[instances["direction"] == direction, "spearman"] if len(instances) else pd.Series(dtype=float)
            each = sections.get(f"{model}__instance_rankings")
            instance_halves = (instance_half_stability(each[each["direction"] == direction],
                                                       susceptible_tolerance(attack),
                                                       int((reporting or {}).get("top_k", 5)))
                               if each is not None and len(each) else pd.DataFrame({"spearman": []}))
            rows.append({
                "model": model, "direction": direction, "records": s["records"], "success": s["success_rate"],
                "mean L1": s["mean_l1_best"], "mean L0": s["mean_l0_best"],
                "paper positions agreeing": f"{int(agree.sum())}/{len(agree)}",
                "hour trend ρ": float(t["spearman"].iloc[0]) if len(t) else float("nan"),
                "split-half ρ (median)": float(halves.iloc[0]) if len(halves) else float("nan"),
                "instance ρ (min)": float(pairs.astype(float).min()) if len(pairs) else float("nan"),
                "instance halves ρ (min)": (float(instance_halves["spearman"].min()) if len(instance_halves)
                                            else float("nan")),
            })
    return "\n".join(["# Attack reports overview", "", markdown_table(pd.DataFrame(rows)), "",
                      "Each model's own report (`reporting.<model>.report`) explains the columns; \"–\" is a number "
                      "not measured (too few records per half, or a model of one trained instance).", "",
                      *glossary(sorted(models)), ""])
