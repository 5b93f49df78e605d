#!/usr/bin/env bash
# Benchmark: the same generated history ingested natively and as xAPI
# statements (learnlake generate --format xapi), in the same run; DuckDB
# maps the same statements to partitioned Parquet with equivalent SQL.
#
#   bench/xapi.sh [STUDENTS] [WORKDIR]
#
# 20000 students ≈ 10 M events (+ their attempts as scored statements).
# Prints events/s and the time ratio xAPI / native (goal ≤ 1.5) and
# learnlake / DuckDB on the xAPI files.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDENTS="${1:-20000}"
WORK="${2:-/tmp/learnlake-bench-xapi}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/learnlake-target}"
[ -x "$CARGO_TARGET_DIR/release/learnlake" ] || cargo test --release --workspace --no-run -q
BIN="$CARGO_TARGET_DIR/release/learnlake"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install -q duckdb

# KEEP=1 reuses the landings of an earlier run (generating takes minutes).
if [ -z "${KEEP:-}" ] || [ ! -d "$WORK/xapi/xapi" ]; then
rm -rf "$WORK" && mkdir -p "$WORK"
for format in native xapi; do
  echo "== generate $format ($STUDENTS students, 8 courses, 12 weeks, seed 1)"
  /usr/bin/time -f "generate $format: %e s, peak RSS %M KB" "$BIN" generate --out "$WORK/$format" \
    --students "$STUDENTS" --courses 8 --weeks 12 --seed 1 --format "$format" 2>&1 | tail -2
done
fi
rm -rf "$WORK/native-lake" "$WORK/xapi-lake" "$WORK/duck-xapi"
NATIVE_MB=$(du -sm "$WORK/native/activity" "$WORK/native/attempts" | awk '{s+=$1} END {print s}')
XAPI_MB=$(du -sm "$WORK/xapi/xapi" | cut -f1)
STATEMENTS=$(cat "$WORK"/xapi/xapi/*.jsonl | wc -l)
echo "native: $NATIVE_MB MB of NDJSON; xapi: $STATEMENTS statements, $XAPI_MB MB"

run() { # name landing
  cat "$2"/*/* > /dev/null 2>&1 || true # both sides read from the page cache
  local start end
  start=$(date +%s.%N)
  LEARNLAKE_HASH_KEY=bench /usr/bin/time -f "%e %M" -o "$WORK/$1.time" \
    "$BIN" --lake "$WORK/$1-lake" --landing "$2" ingest > "$WORK/$1.out"
  end=$(date +%s.%N)
  cat "$WORK/$1.out"
  python3 -c "print(f'$1: {$end - $start:.2f} s wall, peak RSS {int(open(\"$WORK/$1.time\").read().split()[1]) // 1024} MB')"
  echo "$end - $start" | bc > "$WORK/$1.seconds"
}
echo "== learnlake ingest, native"
run native "$WORK/native"
echo "== learnlake ingest, xapi"
run xapi "$WORK/xapi"

echo "== DuckDB: the statements' fields -> event rows -> COPY ... PARTITION_BY (date), zstd"
cat > "$WORK/duck.py" <<PY
import duckdb, time
con = duckdb.connect()
t = time.time()
con.execute("""
COPY (
  SELECT id AS event_id,
         actor.account.name AS student_id,
         CAST("timestamp" AS TIMESTAMPTZ) AS "timestamp",
         regexp_extract(verb.id, '[^/]+$') AS activity_type,
         regexp_extract(context.contextActivities.grouping[1].id, '[^/]+$') AS course_id,
         regexp_extract(object.id, '[^/]+$') AS resource_id,
         result.duration AS duration,
         result.score.raw AS score,
         CAST(CAST("timestamp" AS TIMESTAMPTZ) AS DATE) AS event_date
  FROM read_json('$WORK/xapi/xapi/*.jsonl', format = 'newline_delimited', union_by_name = true))
TO '$WORK/duck-xapi' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date))
""")
print(f"{time.time() - t:.2f}")
PY
DUCK=$(python3 "$WORK/duck.py")
echo "duckdb xapi: $DUCK s"

python3 - "$WORK" "$STATEMENTS" "$DUCK" <<'PY'
import sys
work, statements, duck = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
native = float(open(f"{work}/native.seconds").read())
xapi = float(open(f"{work}/xapi.seconds").read())
print(f"xapi: {statements / xapi:,.0f} statements/s; native: {native:.2f} s, xapi: {xapi:.2f} s")
print(f"ratio xapi / native ingest: {xapi / native:.2f} (goal <= 1.5)")
print(f"ratio learnlake / duckdb on the xapi files: {xapi / duck:.2f}")
PY
