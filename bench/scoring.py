#!/usr/bin/env python3
"""Benchmark: what the risk model costs `learnlake analyze`.

    bench/scoring.py LAKE_DIR [--zone Europe/London] [--weeks N] [--repeat R] [--bin PATH]

Runs `learnlake analyze` over the same weeks of the same lake twice over,
alternating: once with the real queries, once with a student_week.sql
without the model (no features, no course-week medians, no scoring, no
contributions or factors: constant columns instead), given through
LEARNLAKE_QUERIES. The difference of the medians is what prediction adds
(goal: under 5 %). Both runs write student_week, course_week and risk_flags.
"""
import argparse
import datetime as dt
import json
import os
import re
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
    t = time.time()
    out = subprocess.run(
        [args.bin, "--lake", lake, "--timezone", args.zone, "analyze", "--from", str(weeks[0]), "--to", str(weeks[-1])],
        capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"learnlake analyze failed:\n{out.stderr}")
    return time.time() - t


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
        for _ in range(args.repeat):
            times["with model"].append(round(run(args, lake, weeks, None), 2))
            times["without model"].append(round(run(args, lake, weeks, override), 2))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "weeks": len(weeks), "seconds": times,
        "median": med,
        "scoring_share_of_analyze": round((med["with model"] - med["without model"]) / med["with model"], 3),
    }, indent=1))


if __name__ == "__main__":
    main()
