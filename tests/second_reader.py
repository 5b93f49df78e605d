#!/usr/bin/env python3
"""Reads a learnlake lake with DuckDB and pyarrow (readers other than
learnlake's own; Delta tables through the `deltalake` package, and Polars) and prints what they see as JSON: row counts, column types,
partition values, and the quarantine. The e2e tests assert on this output.

    python3 tests/second_reader.py LAKE [--expect activity,attempts,...]

Every expected table (default: all six raw tables; the derived risk_flags,
student_week, course_week and models can be asked for too) must exist and be
read by both readers: a missing one is an error (exit 1), never skipped."""
import argparse
import json
import sys

import duckdb
import os
import pyarrow as pa
import pyarrow.dataset as ds

ALL = ["activity", "attempts", "students", "courses", "enrollments", "assessments"]
DERIVED = ["student_week", "course_week", "risk_flags", "models", "job_runs"]
parser = argparse.ArgumentParser()
parser.add_argument("lake")
parser.add_argument("--expect", default=",".join(ALL))
args = parser.parse_args()
lake = args.lake
expected = [t for t in args.expect.split(",") if t]
unknown = [t for t in expected if t not in ALL + DERIVED]
if unknown:
    sys.exit(f"second_reader: unknown table(s) {unknown}; known: {ALL + DERIVED}")
out = {"duckdb": {}, "pyarrow": {}}
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'").fetchall()

tables = {
    "activity": ("activity/*/*.parquet", "event_date"),
    "attempts": ("attempts/*/*.parquet", "submitted_date"),
    "students": ("students/*.parquet", None),
    "courses": ("courses/*.parquet", None),
    "enrollments": ("enrollments/*.parquet", None),
    "assessments": ("assessments/*.parquet", None),
    "student_week": ("student_week/*/*.parquet", "period_start"),
    "course_week": ("course_week/*/*.parquet", "period_start"),
    "risk_flags": ("risk_flags/*/*.parquet", "as_of_date"),
    "models": ("_meta/models/*.parquet", None),
    "job_runs": ("_meta/job_runs/*.parquet", None),
}
out["polars"] = {}
for name, (glob, part) in tables.items():
    if name in DERIVED and name not in expected:
        continue
    folder = f"{lake}/{glob.split('/*')[0]}"
    delta = os.path.isdir(os.path.join(folder, "_delta_log"))
    if delta:
        # A Delta table: its current version through the `deltalake` package
        # (delta-rs's Python bindings); DuckDB scans that Arrow table and
        # Polars reads the table itself. Files of replaced partitions stay
        # on disk until vacuumed, so a plain Parquet glob would see them.
        import polars as pl
        from deltalake import DeltaTable
        delta_table = DeltaTable(folder).to_pyarrow_table()
        con.register(f"delta_{name}", delta_table)
        rel = f"delta_{name}"
        frame = pl.read_delta(folder)
        out["polars"][name] = {
            "rows": frame.height,
            "types": {c: str(t) for c, t in frame.schema.items()},
        }
    elif part:
        rel = f"read_parquet('{lake}/{glob}', hive_partitioning = true, hive_types = {{'{part}': DATE}})"
    else:
        rel = f"read_parquet('{lake}/{glob}')"
    try:
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
        count = con.execute(f"SELECT COUNT(*) FROM {rel}").fetchall()[0][0]
    except duckdb.IOException as e:
        if name in expected:
            sys.exit(f"second_reader: table {name} is missing or unreadable in {lake}: {e}")
        continue
    entry = {"rows": count, "types": types, "delta": delta}
    key = {"activity": "event_id", "attempts": "attempt_id"}.get(name)
    if key:
        entry["distinct_ids"] = con.execute(f"SELECT COUNT(DISTINCT {key}) FROM {rel}").fetchall()[0][0]
        ids = [r[0] for r in con.execute(f"SELECT {key} FROM {rel} ORDER BY 1").fetchall()]
        entry["ids_sha"] = __import__("hashlib").sha256("\n".join(ids).encode()).hexdigest()
        entry["partition_mismatch"] = con.execute(
            f"SELECT COUNT(*) FROM {rel} WHERE CAST({'timestamp' if name == 'activity' else 'submitted_at'} AS DATE) <> {part}"
        ).fetchall()[0][0]
    out["duckdb"][name] = entry

    if delta:
        table = delta_table
    else:
        dataset = ds.dataset(
            folder,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([(part, pa.date32())]), flavor="hive") if part else None,
            exclude_invalid_files=True,
        )
        table = dataset.to_table()
    out["pyarrow"][name] = {
        "rows": table.num_rows,
        "types": {f.name: str(f.type) for f in table.schema},
    }

quarantine = {}
qroot = os.path.join(lake, "_quarantine")
if os.path.isdir(qroot):
    for kind in sorted(os.listdir(qroot)):
        if os.path.isdir(os.path.join(qroot, kind, "_delta_log")):
            from deltalake import DeltaTable
            con.register(f"quarantine_{kind}", DeltaTable(os.path.join(qroot, kind)).to_pyarrow_table())
            rel = f"quarantine_{kind}"
        else:
            rel = f"read_parquet('{qroot}/{kind}/*/*.parquet', hive_partitioning = true)"
        rows = con.execute(f"SELECT source_file, line_number, reason, raw FROM {rel} ORDER BY 1, 2").fetchall()
        quarantine[kind] = [
            {"source_file": r[0], "line_number": r[1], "reason": r[2], "raw": r[3][:200]} for r in rows
        ]
out["quarantine"] = quarantine
print(json.dumps(out, indent=1, default=str))
con.close()
