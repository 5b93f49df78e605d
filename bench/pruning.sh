#!/usr/bin/env bash
# Partition pruning: one week's analysis on a lake of 10 weeks vs the same
# lake plus 40 more weeks of older data (other students and courses).
#
#   bench/pruning.sh [WORKDIR]
#
# The week analysed (2026-03-02) sees exactly the same rows in both lakes: the
# older courses ended before it, so none of their enrollments is active and
# the history window starts at the earliest history start of the current
# courses' enrollments (queries/history_start.sql: the course start, or an
# earlier enrolled_at). The script checks
# that both lakes give identical student_week rows for that week, then times
# `analyze --week 2026-03-02` three times on each lake. Flat times mean the
# cost of a week does not grow with the history the lake holds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/learnlake-target}"
[ -x "$CARGO_TARGET_DIR/release/learnlake" ] || cargo test --release --workspace --no-run -q
BIN="$CARGO_TARGET_DIR/release/learnlake"
WORK="${1:-/tmp/learnlake-pruning}"
WEEK=2026-03-02
rm -rf "$WORK" && mkdir -p "$WORK"
export LEARNLAKE_HASH_KEY=k LEARNLAKE_LOG=warn

# The current 10 weeks, and 40 older weeks with their own ids (prefix "o-").
"$BIN" generate --out "$WORK/current" --students 2000 --courses 4 --weeks 10 --seed 5 > /dev/null
"$BIN" generate --out "$WORK/gen-old" --students 2000 --courses 4 --weeks 40 --seed 6 \
  --start 2025-04-21 > /dev/null
python3 - "$WORK" "$WEEK" <<'PY'
import csv, glob, os, re, shutil, sys
work, week = sys.argv[1], sys.argv[2]
ids = re.compile(r'"(student_id|course_id|event_id|attempt_id|assessment_id|lesson_id|session_id)":"')
src, old, big = f"{work}/gen-old", f"{work}/old", f"{work}/landing50"
for kind in ("activity", "attempts"):
    os.makedirs(f"{old}/{kind}", exist_ok=True)
    for path in sorted(glob.glob(f"{src}/{kind}/*.jsonl")):
        with open(path) as r, open(f"{old}/{kind}/old-{os.path.basename(path)}", "w") as w:
            for line in r:
                w.write(ids.sub(lambda m: m.group(0) + "o-", line))
with open(f"{src}/assessments.jsonl") as r, open(f"{old}/assessments.jsonl", "w") as w:
    for line in r:
        w.write(ids.sub(lambda m: m.group(0) + "o-", line))
for name in ("students", "courses", "enrollments"):
    with open(f"{src}/{name}.csv") as r, open(f"{old}/{name}.csv", "w", newline="") as w:
        rows = csv.DictReader(r)
        out = csv.DictWriter(w, rows.fieldnames)
        out.writeheader()
        for row in rows:
            for key in ("student_id", "course_id"):
                if key in row:
                    row[key] = "o-" + row[key]
            out.writerow(row)
ends = [row["end_date"] for row in csv.DictReader(open(f"{old}/courses.csv"))]
assert max(ends) < week, f"an older course ends on {max(ends)}, after {week}"
# The 50-week landing: the current files as they are, the older ones beside
# them, and reference files holding both sets of rows.
shutil.copytree(f"{work}/current", big)
for kind in ("activity", "attempts"):
    for path in glob.glob(f"{old}/{kind}/*"):
        shutil.copy(path, f"{big}/{kind}/")
for name in ("students.csv", "courses.csv", "enrollments.csv", "assessments.jsonl"):
    with open(f"{big}/{name}", "a") as w:
        lines = open(f"{old}/{name}").read().splitlines(keepends=True)
        w.writelines(lines[1:] if name.endswith(".csv") else lines)
PY

"$BIN" --lake "$WORK/lake10" --landing "$WORK/current" ingest > /dev/null
# The 50-week lake is the 10-week lake plus a second ingest of the older data,
# so the current partitions hold the very same files.
cp -r "$WORK/lake10" "$WORK/lake50"
"$BIN" --lake "$WORK/lake50" --landing "$WORK/landing50" ingest > /dev/null

for lake in lake10 lake50; do
  files=$(find "$WORK/$lake/activity" -name '*.parquet' | wc -l)
  days=$(ls "$WORK/$lake/activity" | wc -l)
  times=""
  for run in 1 2 3; do
    rm -rf "$WORK/$lake/student_week" "$WORK/$lake/course_week"
    /usr/bin/time -f "%e" -o "$WORK/t" "$BIN" --lake "$WORK/$lake" analyze --week "$WEEK" > /dev/null
    times="$times $(cat "$WORK/t")"
  done
  echo "$lake: $days event_date partitions, $files activity files; analyze --week $WEEK:$times s"
done
python3 - "$WORK" "$WEEK" <<'PY'
import duckdb, sys
work, week = sys.argv[1], sys.argv[2]
con = duckdb.connect()
# Floating-point sums may differ in the last bit between runs (parallel
# aggregation order), so doubles are compared to 9 decimals.
cols = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{work}/lake10/student_week/*/*.parquet')").fetchall()
select = ", ".join(f"ROUND({c}, 9) AS {c}" if t == "DOUBLE" else c for c, t, *_ in cols)
for lake in ("lake10", "lake50"):
    con.execute(f"CREATE VIEW {lake} AS SELECT {select} FROM read_parquet('{work}/{lake}/student_week/period_start={week}/*.parquet')")
n = con.execute("SELECT COUNT(*) FROM lake10").fetchone()[0]
diff = con.execute("SELECT COUNT(*) FROM ((SELECT * FROM lake10 EXCEPT ALL SELECT * FROM lake50) UNION ALL (SELECT * FROM lake50 EXCEPT ALL SELECT * FROM lake10))").fetchone()[0]
events = [con.execute(f"SELECT COUNT(*) FROM read_parquet('{work}/{l}/activity/*/*.parquet')").fetchone()[0] for l in ("lake10", "lake50")]
print(f"activity events: lake10 {events[0]}, lake50 {events[1]}; student_week rows for {week}: {n}, rows that differ: {diff}")
assert diff == 0
PY
