#!/usr/bin/env python3
"""Compares learnlake's student_week table with a reference computed by
tests/reference_analytics.py.

    python3 tests/compare_student_week.py REFERENCE.parquet LAKE_DIR [--weeks W1,W2]

Reads LAKE_DIR/student_week (its current Delta version, through the
`deltalake` package), restricted to the reference's weeks (or --weeks), joins
on (student_id, course_id, period_start) and compares every column of the
reference: floats within 1e-6 (relative or absolute), NULL == NULL, lists and
structs element-wise. Prints the mismatches (first 20 per column) and a JSON
summary line; exits 1 on any mismatch, and also when there is nothing to
compare (no student_week table, or no row in common): a check that compared
nothing has not passed.
"""
import argparse
import datetime as dt
import json
import math
import os
import sys
from collections import defaultdict

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

KEY = ("student_id", "course_id", "period_start")
TOL = 1e-6
SHOW = 20


def close(a, b):
    """Deep equality with float tolerance; None only equals None."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        d = abs(a - b)
        return d <= TOL or d <= TOL * max(abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b
    return a == b


def norm_type(t):
    """Treat large/view variants as the same logical type."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(norm_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(norm_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, norm_type(f.type)) for f in t])
    if pa.types.is_dictionary(t):
        return norm_type(t.value_type)
    return t


def short(v):
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference")
    ap.add_argument("lake")
    ap.add_argument("--weeks", help="comma-separated Mondays (default: the reference's weeks)")
    args = ap.parse_args()

    ref = pq.read_table(args.reference)
    ref_weeks = sorted(set(ref.column("period_start").to_pylist()))
    weeks = ([dt.date.fromisoformat(w.strip()) for w in args.weeks.split(",") if w.strip()]
             if args.weeks else ref_weeks)
    missing_ref_weeks = [w for w in weeks if w not in ref_weeks]
    if missing_ref_weeks:
        sys.exit(f"weeks not in the reference: {[str(w) for w in missing_ref_weeks]}")
    ref_rows = [r for r in ref.to_pylist() if r["period_start"] in weeks]

    base = os.path.join(args.lake, "student_week")
    part = ds.partitioning(pa.schema([("period_start", pa.date32())]), flavor="hive")
    if not ref_rows:
        sys.exit(f"the reference has no rows for the weeks {[str(w) for w in weeks]}: nothing to compare")
    if not os.path.isdir(base):
        sys.exit(f"no student_week table under {args.lake}: nothing to compare")
    if os.path.isdir(os.path.join(base, "_delta_log")):
        # A Delta table: its current version (files of replaced weeks stay
        # on disk until vacuumed and must not be read).
        from deltalake import DeltaTable
        dataset = ds.dataset(DeltaTable(base).to_pyarrow_table())
    else:
        dataset = ds.dataset(base, format="parquet", partitioning=part,
                             exclude_invalid_files=False, ignore_prefixes=[".", "_"])
    got_tbl = dataset.to_table(filter=ds.field("period_start").isin(weeks))
    got_rows = got_tbl.to_pylist()

    problems = 0
    report = {"weeks": [str(w) for w in weeks], "reference_rows": len(ref_rows),
              "lake_rows": len(got_rows)}

    # schema: every reference column must be in the lake with the same logical type
    schema_issues = []
    for f in ref.schema:
        if f.name not in got_tbl.schema.names:
            schema_issues.append(f"column {f.name} missing from lake student_week")
        else:
            gt = got_tbl.schema.field(f.name).type
            if norm_type(gt) != norm_type(f.type):
                schema_issues.append(f"column {f.name}: lake type {gt}, reference type {f.type}")
    if schema_issues:
        print("== schema ==")
        for s in schema_issues:
            print("  " + s)
        problems += len(schema_issues)
    report["schema_issues"] = len(schema_issues)

    def key(r):
        return tuple(r[k] for k in KEY)

    ref_by = {}
    dup_ref = 0
    for r in ref_rows:
        dup_ref += key(r) in ref_by
        ref_by[key(r)] = r
    got_by = {}
    dups = []
    for r in got_rows:
        if key(r) in got_by:
            dups.append(key(r))
        got_by[key(r)] = r
    missing = sorted(set(ref_by) - set(got_by), key=str)
    extra = sorted(set(got_by) - set(ref_by), key=str)
    for title, lst in (("rows missing from the lake", missing), ("extra rows in the lake", extra),
                       ("duplicate keys in the lake", dups)):
        if lst:
            print(f"== {title}: {len(lst)} ==")
            for k in lst[:SHOW]:
                print("  " + ", ".join(str(x) for x in k))
            problems += len(lst)
    if dup_ref:
        print(f"== duplicate keys in the reference: {dup_ref} ==")
        problems += dup_ref
    report.update(missing_rows=len(missing), extra_rows=len(extra), duplicate_rows=len(dups))

    # per-week row counts, handy when keys differ
    per_week = defaultdict(lambda: [0, 0])
    for k in ref_by:
        per_week[str(k[2])][0] += 1
    for k in got_by:
        per_week[str(k[2])][1] += 1
    report["rows_per_week"] = {w: {"reference": a, "lake": b} for w, (a, b) in sorted(per_week.items())}

    common = sorted(set(ref_by) & set(got_by), key=lambda k: (k[2], k[1], k[0]))
    col_mismatch = {}
    for col in ref.schema.names:
        if col in KEY or col not in got_tbl.schema.names:
            continue
        bad = [(k, ref_by[k][col], got_by[k][col]) for k in common
               if not close(ref_by[k][col], got_by[k][col])]
        if bad:
            col_mismatch[col] = len(bad)
            problems += len(bad)
            print(f"== {col}: {len(bad)} of {len(common)} rows differ ==")
            for k, rv, gv in bad[:SHOW]:
                print(f"  {k[0]} {k[1]} {k[2]}: reference={short(rv)!r} lake={short(gv)!r}")
    report["compared_rows"] = len(common)
    report["columns_compared"] = [c for c in ref.schema.names if c not in KEY and c in got_tbl.schema.names]
    report["column_mismatches"] = col_mismatch
    if not common:
        print("== no row in common: nothing was compared ==")
        problems += 1
    report["ok"] = problems == 0
    if problems == 0:
        print(f"OK: {len(common)} rows × {len(report['columns_compared'])} columns match")
    print(json.dumps(report, sort_keys=True, default=str))
    sys.exit(0 if problems == 0 else 1)


if __name__ == "__main__":
    main()
