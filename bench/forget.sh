#!/usr/bin/env bash
# Benchmark: `learnlake forget --student ID` on an ingested lake, against
# DuckDB doing the same data work in the same run: finding the files that
# hold the student's rows (activity, attempts) and writing each again
# without them (zstd Parquet). learnlake also commits, deletes the replaced
# files and ends every table's history; DuckDB does none of that.
#
#   bench/forget.sh [LAKE] [WORKDIR]
#
# LAKE: a lake made by bench/ingest.sh (default /tmp/learnlake-bench/lake,
# ~10 M rich events; `bench/ingest.sh 18000 /tmp/lb-narrow daily-clicks`
# makes the narrow shape). It is copied; the original stays as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-/tmp/learnlake-bench/lake}"
WORK="${2:-/tmp/learnlake-forget}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/learnlake-target}"
[ -x "$CARGO_TARGET_DIR/release/learnlake" ] || cargo test --release --workspace --no-run -q
BIN="$CARGO_TARGET_DIR/release/learnlake"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install -q duckdb
[ -d "$SRC/activity" ] || { echo "no lake at $SRC: run bench/ingest.sh first" >&2; exit 2; }

rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$SRC" "$WORK/lake"
# Files no version needs would be read by DuckDB's glob: start from exactly the current ones.
"$BIN" --lake "$WORK/lake" vacuum --retention-days 0 > /dev/null
STUDENT=$("$BIN" --lake "$WORK/lake" sql \
  "SELECT student_id FROM activity GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT 1" --format csv | sed -n 2p)
ROWS=$("$BIN" --lake "$WORK/lake" sql \
  "SELECT (SELECT COUNT(*) FROM activity) || ' activity rows, ' || (SELECT COUNT(*) FROM activity WHERE student_id = '$STUDENT') || ' of them the student''s'" --format csv | sed -n 2p)
LAKE_MB=$(du -sm "$WORK/lake" | cut -f1)
echo "== lake: $LAKE_MB MB, $ROWS; forgetting $STUDENT"

echo "== DuckDB: find the files holding the student, write each again without them"
cat > "$WORK/duck.py" <<PY
import duckdb, time, os
con = duckdb.connect()
written = 0
for table in ["activity", "attempts"]:
    files = [r[0] for r in con.execute(f"""
        SELECT DISTINCT filename FROM read_parquet('$WORK/lake/{table}/*/*.parquet', filename = true)
        WHERE student_id = '$STUDENT'""").fetchall()]
    os.makedirs(f"$WORK/duck/{table}", exist_ok=True)
    for i, f in enumerate(files):
        out = f"$WORK/duck/{table}/{i}.parquet"
        con.execute(f"COPY (SELECT * FROM read_parquet('{f}') WHERE student_id <> '$STUDENT') TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
        written += os.path.getsize(out)
    print(f"duckdb {table}: {len(files)} files rewritten")
print(f"duckdb wrote {written/1e6:.1f} MB")
PY
/usr/bin/time -f "%e %M" -o "$WORK/duck.time" python3 "$WORK/duck.py"

echo "== learnlake forget"
/usr/bin/time -f "%e %M" -o "$WORK/ll.time" "$BIN" --lake "$WORK/lake" forget --student "$STUDENT" | tee "$WORK/ll.out"
read -r LL_S LL_KB < "$WORK/ll.time"
read -r DK_S DK_KB < "$WORK/duck.time"
python3 - "$LL_S" "$LL_KB" "$DK_S" "$DK_KB" <<'PY'
import sys
ll_s, ll_kb, dk_s, dk_kb = map(float, sys.argv[1:])
print()
print(f"{'':10} {'seconds':>8} {'peak RSS MB':>12}")
print(f"{'learnlake':10} {ll_s:8.2f} {ll_kb/1024:12.0f}")
print(f"{'duckdb':10} {dk_s:8.2f} {dk_kb/1024:12.0f}")
print(f"ratio learnlake/duckdb: {ll_s/dk_s:.2f}")
PY
