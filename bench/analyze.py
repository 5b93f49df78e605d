#!/usr/bin/env python3
"""Benchmark: learnlake analyze vs DuckDB running the same SQL (queries/*.sql)
over the same Parquet lake, in the same run.

    bench/analyze.py LAKE_DIR [--zone Europe/London] [--weeks N] [--repeat R] [--bin PATH]

DuckDB gets the project's query files with a thin dialect shim (macros for
local_date/local_hour, and textual rewrites of the few DataFusion spellings
DuckDB lacks: named_struct, date/timestamp casts to integers). It runs the same
plan: student_day and counted_attempts once over the history window, then
week_enrollments and student_week for each week. Both sides use all cores. learnlake also computes the week before the first (for
course_week's changes), course_week, and writes Parquet partitions; DuckDB
keeps each week's result in a temporary table (so the comparison favours
DuckDB slightly). The engines run alternately R times; the ratio is of the
medians, since this machine's timings vary by ±15 % from run to run.
"""
import argparse
import datetime as dt
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import duckdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The risk model's features and default-v1's weights (pipeline/src/predict/mod.rs).
FEATURES = re.findall(r'^    "(\w+)" => "', open(os.path.join(ROOT, "pipeline/src/predict/mod.rs")).read(), re.M)
DEFAULT_WEIGHTS = {"score": 4.0, "has_score": -2.6, "submitted_ratio": 2.0, "has_due": -1.6,
                   "days_inactive": -0.12, "engagement_rank": 1.5, "late_submissions": -0.25,
                   "never_started": -1.0}


def top_factors(m) -> str:
    """DuckDB for learnlake's top_factors(n, below, name, value, …)."""
    n, below, pairs = m.group(1), m.group(2), re.findall(r"'(\w+)', (\w+)", m.group(3))
    items = ",\n".join(
        f"CASE WHEN {v} < {below} THEN lpad(CAST(CAST(ROUND((1.0 + {v}) * 1000000) AS BIGINT) AS VARCHAR), 7, '0')"
        f" || '#{name}: ' || CAST(ROUND({v}, 2) AS VARCHAR) END" for name, v in pairs)
    return (f"list_transform(list_slice(list_sort(list_filter(list_value({items}), lambda x: x IS NOT NULL)), 1, {n}),"
            " lambda x: regexp_replace(x, '^[0-9]{7}#', ''))")


def duck_dialect(sql: str) -> str:
    sql = re.sub(r"top_factors\((\d+), (-?[\d.]+),(.*?)\)(?= AS factor_list)", top_factors, sql, flags=re.S)
    sql = re.sub(r"CAST\(CAST\(completion_day_number AS INT\) AS DATE\)",
                 "(DATE '1970-01-01' + CAST(completion_day_number AS INT))", sql)
    sql = re.sub(r"CAST\(CAST\(([^()]+?) AS INT\) AS BIGINT\)",
                 r"date_diff('day', DATE '1970-01-01', CAST(\1 AS DATE))", sql)
    sql = re.sub(r"CAST\(([^()]+?) AS BIGINT\)", r"epoch_us(\1)", sql)
    sql = re.sub(r"named_struct\('skill', skill, 'score', score, 'assessments', assessments\)",
                 "struct_pack(skill := skill, score := score, assessments := assessments)", sql)
    sql = sql.replace("array_sort(make_array(", "list_sort(list_value(").replace("array_slice(", "list_slice(")
    sql = sql.replace("arrow_cast(make_array(), 'List(Utf8)')", "[]::VARCHAR[]")
    sql = sql.replace(", 'List(Utf8)')", ")").replace("arrow_cast(string_to_array", "(string_to_array")
    return sql


def week_bounds(monday: dt.date, zone: ZoneInfo):
    start = dt.datetime.combine(monday, dt.time(), zone).astimezone(dt.timezone.utc)
    end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(), zone).astimezone(dt.timezone.utc)
    return start, end


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--zone", default="Europe/London")
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each engine, alternating; medians are reported")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/learnlake-target")), "release/learnlake"))
    args = ap.parse_args()
    lake, zone = os.path.abspath(args.lake), ZoneInfo(args.zone)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    first = con.execute(
        f"SELECT MIN(\"timestamp\") FROM read_parquet({current(lake, 'activity')})"
    ).fetchone()[0]
    events = con.execute(f"SELECT COUNT(*) FROM read_parquet({current(lake, 'activity')})").fetchone()[0]
    con.close()
    first_local = first.astimezone(zone).date()
    monday = first_local - dt.timedelta(days=first_local.weekday())
    weeks = [monday + dt.timedelta(days=7 * i) for i in range(args.weeks)]

    runs = {"learnlake": [], "duckdb": []}
    for _ in range(args.repeat):
        runs["learnlake"].append(run_learnlake(args, lake, weeks))
        runs["duckdb"].append(run_duckdb(args, lake, zone, weeks))

    ll_rows = duckdb.connect().execute(f"SELECT COUNT(*) FROM read_parquet({current(lake, 'student_week')})").fetchone()[0]
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    result = {
        "events": events, "weeks": len(weeks),
        "student_week_rows": {"learnlake": ll_rows, "duckdb": runs["duckdb"][-1]["rows"]},
        "learnlake": {"median_seconds": round(median["learnlake"], 2),
                      "seconds": [r["seconds"] for r in runs["learnlake"]],
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in runs["learnlake"])},
        "duckdb": {"median_seconds": round(median["duckdb"], 2),
                   "seconds": [r["seconds"] for r in runs["duckdb"]],
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in runs["duckdb"]),
                   "phases_last_run": runs["duckdb"][-1]["phases"]},
        "ratio_learnlake_over_duckdb": round(median["learnlake"] / median["duckdb"], 2),
    }
    print(json.dumps(result, indent=1))


def current(lake, table):
    """The Parquet files of a table's current Delta version (a list DuckDB's
    read_parquet takes), or the folder's glob for a lake written before Delta."""
    folder = os.path.join(lake, table)
    if os.path.isdir(os.path.join(folder, "_delta_log")):
        from deltalake import DeltaTable
        return "[" + ", ".join(f"'{f}'" for f in DeltaTable(folder).file_uris()) + "]"
    return f"'{folder}/*/*.parquet'" if table in ("activity", "attempts", "student_week") else f"'{folder}/*.parquet'"


def run_learnlake(args, lake, weeks):
    for table in ("student_week", "course_week", "risk_flags"):
        subprocess.run(["rm", "-rf", f"{lake}/{table}"], check=True)
    t = time.time()
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%M", args.bin, "--lake", lake, "--timezone", args.zone, "analyze",
         "--from", str(weeks[0]), "--to", str(weeks[-1])],
        capture_output=True, text=True, env={**os.environ, "LEARNLAKE_LOG": "warn"})
    seconds = time.time() - t
    if out.returncode != 0:
        sys.exit(f"learnlake analyze failed:\n{out.stderr}")
    rss_mb = int(out.stderr.strip().splitlines()[-1]) / 1024
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb)}


def run_duckdb(args, lake, zone, weeks):
    """The same query files in DuckDB, in a fresh in-memory database. Peak
    RSS is this (Python) process's, so it is the maximum over the runs."""
    t = time.time()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    hive = "hive_partitioning = true, hive_types = {'%s': DATE}"
    con.execute(f"CREATE VIEW activity AS SELECT * FROM read_parquet({current(lake, 'activity')}, {hive % 'event_date'})")
    con.execute(f"CREATE VIEW attempts AS SELECT * FROM read_parquet({current(lake, 'attempts')}, {hive % 'submitted_date'})")
    for t_ in ("students", "courses", "enrollments", "assessments"):
        con.execute(f"CREATE VIEW {t_} AS SELECT * FROM read_parquet({current(lake, t_)})")
    con.execute("CREATE MACRO local_date(ts, z) AS CAST(timezone(z, ts) AS DATE)")
    con.execute("CREATE MACRO local_hour(ts, z) AS hour(timezone(z, ts))")
    queries = {n: duck_dialect(open(os.path.join(ROOT, "queries", f"{n}.sql")).read())
               for n in ("history_start", "student_day", "counted_attempts", "week_enrollments", "student_week")}
    # Strip the leading comment block so DuckDB sees one statement.
    queries = {n: "\n".join(l for l in q.splitlines() if not l.lstrip().startswith("--")) for n, q in queries.items()}
    # The history window as learnlake finds it (queries/history_start.sql).
    q = queries["history_start"]
    start = con.execute(q, {"zone": args.zone, "from": weeks[0], "to": weeks[-1] + dt.timedelta(days=6)}).fetchone()[0]
    history_from = min(start or weeks[0], weeks[0]) - dt.timedelta(days=1)
    last_start, last_end = week_bounds(weeks[-1], zone)
    history_to = last_end.date() + dt.timedelta(days=1)

    def params(sql, monday):
        start, end = week_bounds(monday, zone)
        values = {
            "zone": args.zone, "history_from": history_from, "history_to": history_to,
            "period_start": monday, "week_start": start, "week_end": end,
            "high_below": 0.4, "medium_below": 0.7, "session_gap_seconds": 1800,
            # the default model, default-v1 (docs/PREDICTIONS.md), as learnlake binds it
            "model_version": "default-v1", "model_intercept": 0.05,
            **{f"w_{f}": 0.0 for f in FEATURES},
            **{f"w_{f}": w for f, w in DEFAULT_WEIGHTS.items()},
        }
        return {k: v for k, v in values.items() if f"${k}" in sql}

    phases = {}
    for daily in ("student_day", "counted_attempts"):
        q = queries[daily]
        started = time.time()
        con.execute(f"CREATE TEMP TABLE {daily} AS {q}", params(q, weeks[-1]))
        phases[daily] = round(time.time() - started, 2)
    rows = 0
    started = time.time()
    for monday in weeks:
        q = queries["week_enrollments"]
        con.execute(f"CREATE OR REPLACE TEMP TABLE week_enrollments AS {q}", params(q, monday))
        q = queries["student_week"]
        # kept inside DuckDB, so it is not slowed by building Python objects
        con.execute(f"CREATE OR REPLACE TEMP TABLE student_week AS {q}", params(q, monday))
        rows += con.execute("SELECT COUNT(*) FROM student_week").fetchone()[0]
    phases["student_week (all weeks)"] = round(time.time() - started, 2)
    dk_seconds = time.time() - t
    dk_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    con.close()
    return {"seconds": round(dk_seconds, 2), "peak_rss_mb": round(dk_rss_mb), "phases": phases, "rows": rows}


if __name__ == "__main__":
    main()
