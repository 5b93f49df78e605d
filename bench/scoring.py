#!/usr/bin/env python3
"""Benchmark: what the risk model costs `learnlake analyze`.

    bench/scoring.py LAKE_DIR [--zone Europe/London] [--weeks N] [--repeat R] [--bin PATH]

Runs `learnlake analyze` over the same weeks of the same lake twice over,
alternating: once with the real queries, once with a student_week.sql
without the model (no features, no course-week medians, no scoring, no
contributions or factors: constant columns instead), given through
LEARNLAKE_QUERIES. The difference of the medians is what prediction adds
(goal: under 5 %). Both runs write student_week, course_week and risk_flags.
Also reported: each alternating pair's share and their median (this VM's
speed drifts within minutes), and the share of CPU seconds (user + system).
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
import tempfile
import time

import duckdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = re.findall(r'^    "(\w+)" => "', open(os.path.join(ROOT, "pipeline/src/predict/mod.rs")).read(), re.M)


def without_model(sql: str) -> str:
    # the course-week medians (windows in `ranked`)
    sql = re.sub(r",\n        -- the course-week medians the risk model's relative features compare with\n(        MEDIAN\(.*\n)+", "\n", sql)
    assert "MEDIAN(" not in sql.split("course_medians")[0].split("ranked AS")[1].split("derived AS")[0]
    # the features, scoring, contributions and factors
    start = sql.index("-- The risk model's features")
    end = sql.index("final AS (")
    constants = ",\n        ".join(f"0.0 AS feature_{f}" for f in FEATURES)
    sql = sql[:start] + (
        "factors AS (\n    SELECT d.*, 0.5 AS success_probability,\n        arrow_cast(make_array(), 'List(Utf8)') AS factor_list,\n        "
        + constants + "\n    FROM derived d\n),\n\n"
    ) + sql[end:]
    assert "$w_score" not in sql and "d_score" not in sql
    return sql


def run(args, lake, weeks, queries_dir):
    for table in ("student_week", "course_week", "risk_flags"):
        subprocess.run(["rm", "-rf", f"{lake}/{table}"], check=True)
    env = {**os.environ, "LEARNLAKE_LOG": "warn"}
    if queries_dir:
        env["LEARNLAKE_QUERIES"] = queries_dir
    t, cpu = time.time(), children_cpu()
    out = subprocess.run(
        [args.bin, "--lake", lake, "--timezone", args.zone, "analyze", "--from", str(weeks[0]), "--to", str(weeks[-1])],
        capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"learnlake analyze failed:\n{out.stderr}")
    return time.time() - t, children_cpu() - cpu


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lake")
    ap.add_argument("--zone", default="Europe/London")
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/learnlake-target")), "release/learnlake"))
    args = ap.parse_args()
    lake = os.path.abspath(args.lake)
    first = duckdb.sql(f"SELECT MIN(\"timestamp\") FROM read_parquet('{lake}/activity/*/*.parquet')").fetchall()[0][0]
    from zoneinfo import ZoneInfo
    first_local = first.astimezone(ZoneInfo(args.zone)).date()
    monday = first_local - dt.timedelta(days=first_local.weekday())
    weeks = [monday + dt.timedelta(days=7 * i) for i in range(args.weeks)]
    with tempfile.TemporaryDirectory() as override:
        text = open(os.path.join(ROOT, "queries/student_week.sql")).read()
        open(os.path.join(override, "student_week.sql"), "w").write(without_model(text))
        times = {"with model": [], "without model": []}
        cpu = {"with model": [], "without model": []}
        for _ in range(args.repeat):
            for name, queries in (("with model", None), ("without model", override)):
                wall, used = run(args, lake, weeks, queries)
                times[name].append(round(wall, 2))
                cpu[name].append(round(used, 2))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    # This VM's speed drifts within minutes: each alternating pair's share
    # too, and their median.
    pairs = [round((a - b) / a, 3) for a, b in zip(times["with model"], times["without model"])]
    print(json.dumps({
        "weeks": len(weeks), "seconds": times, "cpu_seconds": cpu,
        "median": med, "median_cpu": med_cpu,
        "scoring_share_of_analyze": round((med["with model"] - med["without model"]) / med["with model"], 3),
        "pair_shares": pairs,
        "median_pair_share": statistics.median(pairs),
        "scoring_share_of_cpu": round((med_cpu["with model"] - med_cpu["without model"]) / med_cpu["with model"], 3),
    }, indent=1))


if __name__ == "__main__":
    main()
