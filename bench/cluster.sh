#!/usr/bin/env bash
# Benchmark: `learnlake analyze` on the local engine vs on Ballista
# (`ballista-standalone`: a scheduler and two executors in the process), on
# the same lake and weeks, in the same run: wall time, peak memory, and the
# rows each wrote (student_week, course_week, risk_flags must be equal).
#
#   bench/cluster.sh [LAKE] [WEEKS] [WORKDIR]
#
# LAKE: made by bench/ingest.sh (default /tmp/learnlake-bench/lake, ~10 M
# rich events); it is copied, the original stays as it is. WEEKS: how many
# weeks, counted from the first week with data (default 12).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-/tmp/learnlake-bench/lake}"
WEEKS="${2:-12}"
WORK="${3:-/tmp/learnlake-cluster-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/learnlake-target}"
[ -x "$CARGO_TARGET_DIR/release/learnlake" ] || cargo test --release --workspace --no-run -q
BIN="$CARGO_TARGET_DIR/release/learnlake"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
[ -d "$SRC/activity" ] || { echo "no lake at $SRC: run bench/ingest.sh first" >&2; exit 2; }

rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$SRC" "$WORK/lake"
LAKE="$WORK/lake"
# The Monday of the first week with data (activity may start on any day).
FIRST=$("$BIN" --lake "$LAKE" sql "SELECT date_trunc('week', MIN(event_date))::date FROM activity" --format csv | sed -n 2p)
TO=$(date -d "$FIRST + $(((WEEKS - 1) * 7)) days" +%F)  # the last week, by its Monday
EVENTS=$("$BIN" --lake "$LAKE" sql "SELECT COUNT(*) FROM activity" --format csv | sed -n 2p)
echo "== lake: $EVENTS events; analyze $FIRST .. $TO ($WEEKS weeks)"

checksum() {
  "$BIN" --lake "$LAKE" sql "SELECT
     (SELECT COUNT(*) || ' student_week rows, interactions ' || SUM(interactions) || ', minutes ' || ROUND(SUM(minutes), 3) || ', percentile ' || ROUND(SUM(engagement_percentile), 3) FROM student_week),
     (SELECT COUNT(*) || ' course_week rows, minutes ' || ROUND(SUM(mean_minutes), 3) FROM course_week),
     (SELECT COUNT(*) || ' flags' FROM risk_flags)" --format csv | sed -n 2p
}

run() { # engine name
  echo "== analyze on $1"
  LEARNLAKE_ENGINE="$1" /usr/bin/time -f "%e %M" -o "$WORK/$2.time" \
    "$BIN" --lake "$LAKE" analyze --from "$FIRST" --to "$TO" > "$WORK/$2.out"
  checksum > "$WORK/$2.sum"
  cat "$WORK/$2.sum"
}
# Alternately, twice each: this machine's timings vary from run to run.
run local local1; run ballista-standalone ballista1; run local local2; run ballista-standalone ballista2

cmp -s "$WORK/local1.sum" "$WORK/ballista1.sum" || { echo "ROWS DIFFER between engines" >&2; exit 1; }
python3 - "$WORK" <<'PY'
import sys, statistics
work = sys.argv[1]
def read(name):
    s, kb = open(f"{work}/{name}.time").read().split()
    return float(s), float(kb) / 1024
loc = [read(f"local{i}") for i in (1, 2)]
bal = [read(f"ballista{i}") for i in (1, 2)]
ls, bs = statistics.median(t for t, _ in loc), statistics.median(t for t, _ in bal)
lm, bm = max(m for _, m in loc), max(m for _, m in bal)
print()
print(f"| engine | analyze s (median of 2) | peak RSS MB |")
print(f"|---|---|---|")
print(f"| local | {ls:.2f} | {lm:.0f} |")
print(f"| ballista-standalone, 2 executors | {bs:.2f} | {bm:.0f} |")
print(f"ratio ballista/local: {bs/ls:.2f} (time), {bm/lm:.2f} (memory); rows equal")
PY
