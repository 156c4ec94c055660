# ruff: noqa: T201  (a command-line script: its printed lines are its report)
"""Benchmark: MIMIC-III ingestion (load + cohort/measurement SQL) at growing scale, DuckDB vs
PostgreSQL side by side, with a pandas read_csv baseline for the load.

For each N the demo is scaled N× (benchmarks/mimic3_scaled.py: new ids, shifted times, same
values) into a temp folder outside the repository; then, each in a fresh child process:

* duckdb:   load_mimic3_tables into a new DuckDB file, then the SQL nodes (feature-item check,
            cohort, vitals + labs, diagnoses);
* postgres: the same into a new PostgreSQL database (COPY); the server is a separate process,
            so its memory is not in the child's peak RSS (the database size on disk is shown);
* pandas:   baseline for the load: pd.read_csv of CHARTEVENTS and LABEVENTS with the MIMIC-III
            types, the way one would hold the tables without a database.

Printed per run: seconds, rows/s (CHARTEVENTS + LABEVENTS rows), the child's peak RSS, and
the check that N copies give exactly N× the demo's cohort and measurements under --window-rule
(DEMO_COUNTS; default: the project's ingestion.mimic3.cohort.window_rule). At the end: the
growth exponent b of time ~ rows^b (least squares on log-log) and the extrapolation to full
MIMIC-III (330,712,483 CHARTEVENTS rows ≈ 436× the demo).

    python benchmarks/scale_mimic3.py [--sizes 1,4,16] [--engines duckdb,postgres,pandas]
                                      [--pandas-max-n 4] [--dsn "host=127.0.0.1 user=postgres dbname=postgres"]
                                      [--window-rule padded|full_window]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_ROOT / "src"), str(PROJECT_ROOT)]

DEMO_DIR = Path(os.environ.get("EHR_MIMIC3_DIR", PROJECT_ROOT.parent / "shared" / "data" / "mimic3_demo"))
TABLES = ["PATIENTS", "ADMISSIONS", "ICUSTAYS", "CHARTEVENTS", "LABEVENTS", "D_ITEMS", "D_LABITEMS", "DIAGNOSES_ICD", "D_ICD_DIAGNOSES"]
DEMO_CHARTEVENTS = 758_355
FULL_CHARTEVENTS = 330_712_483  # MIMIC-III v1.4
# What one copy of the demo gives per ingestion.mimic3.cohort.window_rule: included stays and
# timeseries rows (tests/pipelines/test_ingestion_mimic3.py, docs/data_mimic3.md); N copies must
# give N× these.
DEMO_COUNTS = {"padded": (111, 32_191), "full_window": (72, 24_463)}
DUCKDB_MEMORY_LIMIT = "4GB"  # as conf/base/catalog_01_raw.yml


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). getrusage's ru_maxrss would not do: it
    survives exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def project_parameters() -> dict:
    """The project's parameters in the mimic3_demo environment (base + the MIMIC-III source)."""
    from ehr_adversarial.config import ProjectConfigLoader
    from ehr_adversarial.settings import CONFIG_LOADER_ARGS

    loader = ProjectConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), env="mimic3_demo", **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def default_window_rule() -> str:
    """The project's ingestion.mimic3.cohort.window_rule."""
    return project_parameters()["ingestion"]["mimic3"]["cohort"]["window_rule"]


def ingestion_params(csv_dir: Path, window_rule: str | None = None) -> dict:
    """The MIMIC-III ingestion parameters, reading TABLES from `csv_dir`, with `window_rule`
    (default: the project's)."""
    params = {**project_parameters()["ingestion"]["mimic3"], "csv_dir": str(csv_dir), "tables": TABLES}
    if window_rule is not None:
        params["cohort"] = {**params["cohort"], "window_rule": window_rule}
    return params


def duckdb_in(folder: Path):
    """A new DuckDB database file in `folder`, with the catalog's memory limit."""
    from ehr_adversarial.sources.database import DuckDBDatabase

    return DuckDBDatabase(str(folder / "bench.duckdb"), memory_limit=DUCKDB_MEMORY_LIMIT)


def ingest(database, params: dict) -> dict:
    """The MIMIC-III ingestion nodes on `database`: load and SQL seconds, and the nodes' outputs
    (load summary, cohort, timeseries, rejected rows, diagnoses)."""
    from ehr_adversarial.sources import mimic3

    started = time.perf_counter()
    _, summary = mimic3.load_mimic3_tables(database, params)
    loaded = time.perf_counter()
    items = mimic3.check_feature_items(database, summary, params)
    cohort = mimic3.build_cohort(database, summary, params)
    timeseries, rejected = mimic3.extract_measurements(database, cohort, items)
    diagnoses = mimic3.extract_diagnoses(database, summary)
    done = time.perf_counter()
    return {
        "load_s": loaded - started,
        "sql_s": done - loaded,
        "summary": summary,
        "cohort": cohort,
        "timeseries": timeseries,
        "rejected": rejected,
        "diagnoses": diagnoses,
    }


def _run_nodes(database, params: dict) -> dict:
    out = ingest(database, params)
    tables = out["summary"]["tables"]
    return {
        "load_s": out["load_s"],
        "sql_s": out["sql_s"],
        "rows": tables["chartevents"]["rows"] + tables["labevents"]["rows"],
        "included": int(out["cohort"]["included"].sum()),
        "timeseries": len(out["timeseries"]),
        "rejected": len(out["rejected"]),
        "diagnoses": len(out["diagnoses"]),
    }


def worker(engine: str, csv_dir: Path, dsn: str, window_rule: str) -> dict:
    """One engine on one scaled folder, in this (fresh) process."""
    if engine == "pandas":
        import pandas as pd

        from ehr_adversarial.sources.sql import table_columns

        pandas_types = {"INTEGER": "Int32", "SMALLINT": "Int16", "DOUBLE PRECISION": "float64"}
        started, rows = time.perf_counter(), 0
        frames = []
        for table in ("chartevents", "labevents"):
            columns = table_columns()[table]
            frames.append(
                pd.read_csv(
                    csv_dir / f"{table.upper()}.csv.gz",
                    dtype={name: pandas_types.get(sql_type, "str") for name, sql_type, _ in columns if sql_type != "TIMESTAMP"},
                    parse_dates=[name for name, sql_type, _ in columns if sql_type == "TIMESTAMP"],
                    date_format="%Y-%m-%d %H:%M:%S",
                )
            )
            rows += len(frames[-1])
        return {"load_s": time.perf_counter() - started, "sql_s": None, "rows": rows, "peak_rss_mb": _peak_rss_mb()}

    params = ingestion_params(csv_dir, window_rule)
    if engine == "duckdb":
        database = duckdb_in(csv_dir)
        result = _run_nodes(database, params)
        result["db_mb"] = Path(database.path).stat().st_size / 2**20
    else:
        from ehr_adversarial.sources.database import PostgresDatabase

        admin = PostgresDatabase.from_dsn(dsn)
        name = f"ehr_adversarial_bench_{os.getpid()}"
        database = admin.create_database(name)
        try:
            result = _run_nodes(database, params)
            with database.connect() as conn:
                result["db_mb"] = float(conn.scalar("SELECT pg_database_size(current_database())")) / 2**20
        finally:
            admin.drop_database(name)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _fit_exponent(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(b, a) of log y = a + b log x, least squares."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    b = sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / sum((x - mx) ** 2 for x in lx)
    return b, my - b * mx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--engines", default="duckdb,postgres,pandas")
    parser.add_argument("--pandas-max-n", type=int, default=4, help="largest N for the pandas baseline")
    parser.add_argument("--dsn", default=os.environ.get("EHR_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"))
    parser.add_argument("--window-rule", choices=sorted(DEMO_COUNTS),
                        help="ingestion.mimic3.cohort.window_rule (default: the project's, padded)")
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "CSV_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.window_rule = args.window_rule or default_window_rule()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]), args.dsn, args.window_rule)))
        return
    demo_included, demo_timeseries = DEMO_COUNTS[args.window_rule]

    from benchmarks.mimic3_scaled import scale_demo

    sizes = [int(n) for n in args.sizes.split(",")]
    engines = args.engines.split(",")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
          f"load average {os.getloadavg()[0]:.1f}; window_rule {args.window_rule} "
          f"({demo_included} stays, {demo_timeseries:,} measurements per copy)")
    header = f"{'N':>4} {'CE rows':>11} {'engine':>8} {'load s':>8} {'rows/s':>10} {'SQL s':>7} {'peak RSS MB':>11} {'db MB':>7}  check"
    print(header)
    results: dict[str, list[tuple[int, dict]]] = {engine: [] for engine in engines}
    for n in sizes:
        started = time.perf_counter()
        csv_dir, rows = scale_demo(DEMO_DIR, n, TABLES)
        generated = time.perf_counter() - started
        print(f"{n:>4} {rows['CHARTEVENTS']:>11,} {'(gen)':>8} {generated:>8.1f}   scaled demo in {csv_dir}")
        try:
            for engine in engines:
                if engine == "pandas" and n > args.pandas_max_n:
                    continue
                child = subprocess.run(
                    [sys.executable, __file__, "--dsn", args.dsn, "--window-rule", args.window_rule,
                     "--worker", engine, str(csv_dir)],
                    capture_output=True, text=True, check=False,
                )
                if child.returncode != 0:
                    print(f"{n:>4} {engine:>20} FAILED:\n{child.stderr[-3000:]}")
                    continue
                result = json.loads(child.stdout.strip().splitlines()[-1])
                results[engine].append((n, result))
                check = ""
                if result.get("sql_s") is not None:
                    ok = result["included"] == demo_included * n and result["timeseries"] == demo_timeseries * n
                    check = f"{'ok' if ok else 'MISMATCH'}: {result['included']} stays, {result['timeseries']:,} measurements"
                sql = f"{result['sql_s']:>7.1f}" if result.get("sql_s") is not None else f"{'-':>7}"
                print(
                    f"{n:>4} {rows['CHARTEVENTS']:>11,} {engine:>8} {result['load_s']:>8.1f} "
                    f"{result['rows'] / result['load_s']:>10,.0f} {sql} {result['peak_rss_mb']:>11,.0f} "
                    f"{result.get('db_mb', float('nan')):>7,.0f}  {check}"
                )
        finally:
            shutil.rmtree(csv_dir, ignore_errors=True)

    print("\nside by side (load seconds, ratio to duckdb):")
    for n in sizes:
        cells = {engine: dict(runs).get(n) for engine, runs in results.items()}
        base = cells.get("duckdb")
        parts = [
            f"{engine} {cell['load_s']:.1f}s" + (f" ({cell['load_s'] / base['load_s']:.2f}x)" if base and engine != "duckdb" else "")
            for engine, cell in cells.items() if cell
        ]
        print(f"  N={n}: " + ", ".join(parts))

    factor = FULL_CHARTEVENTS / DEMO_CHARTEVENTS
    print(f"\ngrowth exponents (time ~ rows^b) and extrapolation to full MIMIC-III (N ≈ {factor:.0f}):")
    for engine, runs in results.items():
        if len(runs) < 2:
            continue
        ns = [n for n, _ in runs]
        for key in ("load_s", "sql_s", "peak_rss_mb"):
            values = [r[key] for _, r in runs]
            if any(v is None or v <= 0 for v in values):
                continue
            b, a = _fit_exponent([float(n) for n in ns], values)
            if key == "peak_rss_mb":
                # Memory has a fixed part (interpreter, libraries): extrapolate the growth per copy.
                slope = (values[-1] - values[0]) / max(ns[-1] - ns[0], 1)
                linear = values[0] + slope * (factor - ns[0])
                print(f"  {engine:>8} {key:>12}: b = {b:.2f}; at N={factor:.0f}: fit {math.exp(a) * factor**b:,.0f} MB, "
                      f"linear growth {linear:,.0f} MB")
            else:
                print(f"  {engine:>8} {key:>12}: b = {b:.2f}; at N={factor:.0f}: fit {math.exp(a) * factor**b:,.0f} s, "
                      f"linear from N={ns[-1]} {values[-1] * factor / ns[-1]:,.0f} s")


if __name__ == "__main__":
    main()
