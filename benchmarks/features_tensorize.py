# ruff: noqa: T201  (a command-line script: its printed lines are its report)
"""Benchmark: hourly feature tensors for all PhysioNet 2012 records or the scaled MIMIC-III demo,
ours vs a per-patient pandas resample.

Ours: the features pipeline's nodes for one feature set (build_hourly_cells → fit_feature_spec →
build_model_input: binning, forward fill, train-median fill, scaling, mask, delta), vectorised
over the whole long table.
Baseline: what a straightforward pandas implementation does: group the long table by record, and
per record resample("1h").mean() each parameter → reindex to 48 hours → ffill; then the same train-split
fill and scaling, vectorised (so the difference is the per-patient part). The baseline does not
compute delta; ours does.

Both run in this one process run, each in a forked child (so neither inherits the other's
memory): wall time, records/s and the child's peak RSS growth; with --tracemalloc also, in a
second pass, the tracemalloc peak (Python + numpy allocations). The two outputs are compared (mask equal, X equal to 1e-6).

Input, --source physionet2012 (default): the latest `ingestion.timeseries` / `ingestion.static` through
the project's catalog, so run `kedro run --env physionet2012 --pipelines ingestion` first.
--source mimic3 --scale N: the MIMIC-III demo (EHR_MIMIC3_DIR) scaled N× by benchmarks/mimic3_scaled.py
into a temp folder outside the repository, ingested there by the ingestion nodes into a new DuckDB file
(benchmarks/scale_mimic3.py), static built from the cohort; the folder is removed before the timing.
N copies must give N × the demo's stays and timeseries rows under --window-rule (checked against
benchmarks/scale_mimic3.py's DEMO_COUNTS; default: the project's ingestion.mimic3.cohort.window_rule).

    python benchmarks/features_tensorize.py [--env physionet2012] [--feature-set full] [--limit N]
    python benchmarks/features_tensorize.py --source mimic3 --scale N [--feature-set sun2018]
                                            [--window-rule padded|full_window]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))  # for `benchmarks.*` when run as a script
DEFAULT_FEATURE_SET = {"physionet2012": "full", "mimic3": "sun2018"}
# Resampling on a TimedeltaIndex anchors the hourly bins at the first measurement (e.g. 00:07),
# not at admission; a DatetimeIndex starting at midnight bins at whole hours from admission.
ADMISSION = pd.Timestamp("2000-01-01")


def _features_of(params: dict[str, Any], source: str, feature_set: str) -> tuple[dict[str, Any], int]:
    """The source's features parameters (checking that it has `feature_set`) and the seed."""
    features = params["features"][source]
    if feature_set not in features["feature_sets"]:
        raise SystemExit(f"no feature set {feature_set!r}; parameters have {sorted(features['feature_sets'])}")
    return features, int(params["seed"])


def load_inputs(env: str, feature_set: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], int]:
    """PhysioNet 2012 timeseries, static, the source's features parameters, and the seed, through the catalog."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT, env=env) as session:
        context = session.load_context()
        timeseries = context.catalog.load("ingestion.timeseries")
        static = context.catalog.load("ingestion.static")
        params = context.params
    return timeseries, static, *_features_of(params, "physionet2012", feature_set)


def load_scaled_mimic3(
    scale: int, feature_set: str, window_rule: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], int]:
    """MIMIC-III demo scaled `scale`×, ingested with DuckDB in a temp folder (removed afterwards)
    under `window_rule` (default: the project's): timeseries, static, the features parameters,
    and the seed."""
    from benchmarks.mimic3_scaled import scale_demo
    from benchmarks.scale_mimic3 import (
        DEMO_COUNTS,
        DEMO_DIR,
        TABLES,
        default_window_rule,
        duckdb_in,
        ingest,
        ingestion_params,
        project_parameters,
    )
    from ehr_adversarial.sources.mimic3 import build_static

    window_rule = window_rule or default_window_rule()
    demo_included, demo_timeseries = DEMO_COUNTS[window_rule]
    started = time.perf_counter()
    csv_dir, rows = scale_demo(DEMO_DIR, scale, TABLES)
    try:
        scaled = time.perf_counter() - started
        ingested = ingest(duckdb_in(csv_dir), ingestion_params(csv_dir, window_rule))
    finally:
        shutil.rmtree(csv_dir, ignore_errors=True)
    timeseries, static = ingested["timeseries"], build_static(ingested["cohort"])
    print(f"MIMIC-III demo x{scale} (window_rule {window_rule}): {rows['CHARTEVENTS']:,} CHARTEVENTS rows "
          f"scaled in {scaled:.1f} s, DuckDB load {ingested['load_s']:.1f} s + SQL {ingested['sql_s']:.1f} s")
    if (len(static), len(timeseries)) != (demo_included * scale, demo_timeseries * scale):
        raise SystemExit(f"scaled ingestion gave {len(static)} stays and {len(timeseries):,} rows, expected "
                         f"{demo_included * scale} and {demo_timeseries * scale:,} ({scale} × the demo)")
    return timeseries, static, *_features_of(project_parameters(), "mimic3", feature_set)


def ours(timeseries, static, splits, features, feature_set):
    from ehr_adversarial.features.model_input import (
        build_hourly_cells,
        build_model_input,
        fit_feature_spec,
    )

    definition = features["feature_sets"][feature_set]
    cells = build_hourly_cells(timeseries, splits, features, definition, feature_set_name=feature_set)
    spec = fit_feature_spec(cells, static, splits, features, definition, feature_set_name=feature_set)
    bundles = build_model_input(cells, static, splits, spec)
    return _stack(bundles)


def pandas_per_patient(timeseries, static, splits, features, feature_set):
    n_hours = int(features["n_hours"])
    names = [str(n) for n in features["feature_sets"][feature_set]["dynamic"]]
    if any(not isinstance(n, str) for n in features["feature_sets"][feature_set]["dynamic"]):
        raise SystemExit("the baseline handles plain feature lists only (PhysioNet: --feature-set full)")
    records = np.sort(splits["record_id"].to_numpy())
    position = pd.Series(np.arange(records.size), index=records)
    window = timeseries[timeseries["parameter"].isin(names) & (timeseries["minutes"] < 60 * n_hours)]
    window = window[window["record_id"].isin(records)]
    window = window.assign(time=ADMISSION + pd.to_timedelta(window["minutes"], unit="min"))
    hours = pd.date_range(ADMISSION, periods=n_hours, freq="1h")

    cells = np.full((records.size, n_hours, len(names)), np.nan, dtype=np.float32)
    filled = cells.copy()
    for record_id, rows in window.groupby("record_id", sort=False):
        # Hourly resample of each parameter (pivoting on the exact time first and resampling
        # after would average per-timestamp means when a timestamp repeats).
        hourly = rows.pivot_table(
            index=pd.Grouper(key="time", freq="1h"), columns="parameter", values="value", aggfunc="mean"
        ).reindex(index=hours, columns=names)
        cells[position[record_id]] = hourly.to_numpy()
        filled[position[record_id]] = hourly.ffill().to_numpy()

    mask = ~np.isnan(cells)
    train = np.isin(records, splits.loc[splits["split"] == "train", "record_id"])
    observed = cells[train].reshape(-1, len(names))
    p05, median, p95 = np.nanpercentile(observed, [5, 50, 95], axis=0)
    fill = np.array([features.get("gap_fill", {}).get(n, m) for n, m in zip(names, median, strict=True)])
    p05, p95 = np.where(p95 > p05, p05, p95 - 1.0), p95  # constant features (MechVent): [v − 1, v]
    filled = np.where(np.isnan(filled), fill, filled)
    X = np.clip((filled - p05) / (p95 - p05), 0.0, 1.0).astype(np.float32)
    return {"record_id": records, "X": X, "mask": mask}


def _stack(bundles) -> dict[str, np.ndarray]:
    """The split bundles back in record order, for comparison with the baseline."""
    record_id = np.concatenate([b["record_id"] for b in bundles])
    order = np.argsort(record_id)
    return {
        "record_id": record_id[order],
        "X": np.concatenate([b["X"] for b in bundles])[order],
        "mask": np.concatenate([b["mask"] for b in bundles])[order],
    }


def _vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _child(func: Callable, args: tuple, trace: bool, conn) -> None:
    logging.disable(logging.INFO)
    rss_start = _vm_rss_kb()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    result = func(*args)
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_start  # KiB on Linux
    conn.send((seconds, rss_growth * 1024, traced_peak, result if not trace else None))
    conn.close()


def measure(func: Callable, args: tuple, trace: bool) -> tuple[float, int, int, Any]:
    """Run func(*args) in a forked child: seconds, peak RSS growth (bytes), tracemalloc peak, result."""
    parent, child = mp.get_context("fork").Pipe(duplex=False)
    process = mp.get_context("fork").Process(target=_child, args=(func, args, trace, child))
    process.start()
    out = parent.recv()
    process.join()
    if process.exitcode:
        raise SystemExit(f"{func.__name__} failed in its child process (exit code {process.exitcode})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=sorted(DEFAULT_FEATURE_SET), default="physionet2012")
    parser.add_argument("--env", default="physionet2012", help="Kedro env of the PhysioNet catalog")
    parser.add_argument("--scale", type=int, default=1, help="mimic3: copies of every demo patient")
    parser.add_argument("--feature-set", help="default: full (physionet2012), sun2018 (mimic3)")
    parser.add_argument("--limit", type=int, default=0, help="only N evenly spaced records (0 = all)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of ours (median reported)")
    parser.add_argument("--baseline-repeat", type=int, default=1, help="timed runs of the baseline (median reported)")
    parser.add_argument("--tracemalloc", action="store_true", help="also a traced pass per implementation (slow)")
    parser.add_argument("--window-rule", choices=("padded", "full_window"),
                        help="mimic3: ingestion.mimic3.cohort.window_rule (default: the project's, padded)")
    args = parser.parse_args()

    from ehr_adversarial.features.splits import make_splits

    args.feature_set = args.feature_set or DEFAULT_FEATURE_SET[args.source]
    if args.source == "mimic3":
        timeseries, static, features, seed = load_scaled_mimic3(args.scale, args.feature_set, args.window_rule)
    else:
        timeseries, static, features, seed = load_inputs(args.env, args.feature_set)
    if args.limit:
        # Evenly spaced record ids, so that every split group keeps some records.
        static = static.sort_values("record_id").iloc[np.linspace(0, len(static) - 1, args.limit).astype(int)]
        timeseries = timeseries[timeseries["record_id"].isin(static["record_id"])]
    splits = make_splits(static, features, seed)
    inputs = (timeseries, static, splits, features, args.feature_set)
    n = len(splits)
    print(f"{n} records, {len(timeseries):,} long rows, feature set {args.feature_set!r}; "
          f"{platform.processor() or platform.machine()}, {mp.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    results = {}
    for name, func, repeats in (("ours", ours, args.repeat), ("pandas per-patient", pandas_per_patient, args.baseline_repeat)):
        timed = [measure(func, inputs, trace=False) for _ in range(repeats)]
        seconds = statistics.median(t[0] for t in timed)
        rss = max(t[1] for t in timed)
        traced = measure(func, inputs, trace=True)[2] if args.tracemalloc else 0
        results[name] = {"seconds": seconds, "rss": rss, "traced": traced, "output": timed[0][3]}
        traced_text = f", tracemalloc peak {traced / 2**20:.0f} MiB" if args.tracemalloc else ""
        print(f"{name}: {seconds:.2f} s, {n / seconds:.0f} records/s, peak RSS +{rss / 2**20:.0f} MiB{traced_text}")

    a, b = results["ours"], results["pandas per-patient"]
    np.testing.assert_array_equal(a["output"]["record_id"], b["output"]["record_id"])
    np.testing.assert_array_equal(a["output"]["mask"], b["output"]["mask"])
    np.testing.assert_allclose(a["output"]["X"], b["output"]["X"], atol=1e-6)
    print("outputs agree (mask equal, X within 1e-6)")
    memory = f"peak RSS growth {a['rss'] / max(b['rss'], 1):.2f}x"
    if args.tracemalloc:
        memory += f", tracemalloc peak {a['traced'] / max(b['traced'], 1):.2f}x"
    print(f"ratio: ours is {b['seconds'] / a['seconds']:.1f}x faster (records/s); {memory} of the baseline's")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
