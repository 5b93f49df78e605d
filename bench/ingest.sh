#!/usr/bin/env bash
# Benchmark: generate + ingest N events, against DuckDB converting the same
# NDJSON to partitioned zstd Parquet, in the same run on the same files.
#
#   bench/ingest.sh [STUDENTS] [WORKDIR] [PROFILE]
#   KEEP=1 reuses WORKDIR's generated landing; REPEAT=N alternates the two
#   sides N times (default 3).
#
# PROFILE `rich` (default; 20000 students ≈ 10 M events of ~330 bytes) or
# `daily-clicks` (narrow gzipped events, one per student × site × day with a
# click count, as LMS exports have them; 39 weeks, ~18000 students ≈ 12 M
# events). DuckDB converts activity and attempts, as learnlake ingests both.
# Prints events/s, MB/s, peak RSS for each side, the time ratio learnlake /
# DuckDB (below 1.0: learnlake is faster), files per partition and bytes per
# event of both lakes.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS="${1:-20000}"
WORK="${2:-/tmp/learnlake-bench}"
PROFILE="${3:-rich}"
GZIP=""
# The narrow shape as LMS exports have it: gzipped, ~270 days in every file.
[ "$PROFILE" = "daily-clicks" ] && GZIP="--gzip" && WEEKS="${WEEKS:-39}"
WEEKS="${WEEKS:-12}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/learnlake-target}"
[ -x "$CARGO_TARGET_DIR/release/learnlake" ] || cargo test --release --workspace --no-run -q
BIN="$CARGO_TARGET_DIR/release/learnlake"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install -q duckdb

if [ "${KEEP:-0}" = 1 ] && [ -f "$WORK/landing/GENERATED.json" ]; then
  echo "== reusing $WORK/landing (KEEP=1)"
  rm -rf "$WORK/lake" "$WORK/duck-activity" "$WORK/duck-attempts"
else
  rm -rf "$WORK" && mkdir -p "$WORK"
  echo "== generate ($STUDENTS students, 8 courses, $WEEKS weeks, profile $PROFILE)"
  /usr/bin/time -f "generate: %e s, peak RSS %M KB" "$BIN" generate --out "$WORK/landing" \
    --students "$STUDENTS" --courses 8 --weeks "$WEEKS" --seed 1 --profile "$PROFILE" $GZIP 2>&1 | tail -2
fi
EVENTS=$(python3 "$(dirname "$0")/count_summary.py" "$WORK/landing/GENERATED.json")
MB=$(du -sm "$WORK/landing/activity" | cut -f1)
echo "activity: $EVENTS events, $MB MB of NDJSON ($PROFILE)"

# Drop the page cache's advantage for neither side: read the files once first.
cat "$WORK"/landing/activity/* > /dev/null

cat > "$WORK/duck.py" <<PY
import duckdb
con = duckdb.connect()
con.execute("""
COPY (SELECT *, CAST("timestamp" AS DATE) AS event_date
      FROM read_json('$WORK/landing/activity/*.jsonl*', format = 'newline_delimited'))
TO '$WORK/duck-activity' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date))
""")
con.execute("""
COPY (SELECT *, CAST(submitted_at AS DATE) AS submitted_date
      FROM read_json('$WORK/landing/attempts/*.jsonl*', format = 'newline_delimited'))
TO '$WORK/duck-attempts' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (submitted_date))
""")
for table in ["activity", "attempts"]:
    n = con.execute(f"SELECT COUNT(*) FROM read_parquet('$WORK/duck-{table}/*/*.parquet')").fetchone()[0]
    print(f"duckdb {table} rows:", n)
PY

# This machine's speed drifts by up to ±25 % within minutes: the two sides
# alternate REPEAT times (default 3) and each pair gives a ratio.
: > "$WORK/times"
for run in $(seq "${REPEAT:-3}"); do
  echo "== run $run: learnlake ingest (validation, dedup, HMAC of ip_address, quarantine, ledger)"
  rm -rf "$WORK/lake"
  LEARNLAKE_HASH_KEY=bench /usr/bin/time -f "%e %M" -o "$WORK/ll.time" \
    "$BIN" --lake "$WORK/lake" --landing "$WORK/landing" ingest > "$WORK/ll.out"
  [ "$run" = 1 ] && cat "$WORK/ll.out"
  echo "== run $run: DuckDB read_json -> COPY ... PARTITION_BY (date), zstd: activity and attempts"
  rm -rf "$WORK/duck-activity" "$WORK/duck-attempts"
  /usr/bin/time -f "%e %M" -o "$WORK/duck.time" python3 "$WORK/duck.py"
  echo "$(cat "$WORK/ll.time") $(cat "$WORK/duck.time")" >> "$WORK/times"
done

python3 - "$EVENTS" "$MB" "$WORK/times" <<'PY'
import statistics, sys
events, mb = float(sys.argv[1]), float(sys.argv[2])
runs = [list(map(float, l.split())) for l in open(sys.argv[3]) if l.strip()]
print()
print(f"{'run':>4} {'learnlake s':>12} {'duckdb s':>9} {'ratio':>6} {'learnlake RSS MB':>17} {'duckdb RSS MB':>14}")
for i, (ll_s, ll_kb, dk_s, dk_kb) in enumerate(runs, 1):
    print(f"{i:>4} {ll_s:12.2f} {dk_s:9.2f} {ll_s/dk_s:6.2f} {ll_kb/1024:17.0f} {dk_kb/1024:14.0f}")
ll = statistics.median(r[0] for r in runs)
dk = statistics.median(r[2] for r in runs)
print(f"median: learnlake {ll:.2f} s ({events/ll/1e6:.2f} M events/s, {mb/ll:.0f} MB/s), "
      f"duckdb {dk:.2f} s; ratio of medians {ll/dk:.2f}, "
      f"median of pair ratios {statistics.median(r[0]/r[2] for r in runs):.2f}")
PY
python3 - "$WORK" "$EVENTS" <<'PY'
import os, sys
work, events = sys.argv[1], int(sys.argv[2])
def shape(root):
    files, size, parts = 0, 0, set()
    for d, _, names in os.walk(root):
        if "_delta_log" in d:
            continue
        for n in names:
            if n.endswith(".parquet"):
                files += 1
                size += os.path.getsize(os.path.join(d, n))
                parts.add(d)
    return files, len(parts), size
for name, root in [("learnlake", f"{work}/lake/activity"), ("duckdb", f"{work}/duck-activity")]:
    files, parts, size = shape(root)
    print(f"{name:10} {parts} partitions, {files/max(parts,1):.1f} files per partition, "
          f"{size/1e6:.0f} MB, {size/max(events,1):.1f} bytes per event")
PY
