#!/usr/bin/env bash
# One week's analysis on a 10-week lake vs a 50-week lake (same students and
# the same week): partition pruning keeps the cost of a week independent of
# how much later data the lake holds.
set -euo pipefail
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/learnlake-target}/release/learnlake"
WORK="${1:-/tmp/learnlake-pruning}"
rm -rf "$WORK" && mkdir -p "$WORK"
for weeks in 10 50; do
  "$BIN" generate --out "$WORK/l$weeks" --students 2000 --courses 4 --weeks $weeks --seed 5 > /dev/null
  LEARNLAKE_HASH_KEY=k "$BIN" --lake "$WORK/lake$weeks" --landing "$WORK/l$weeks" ingest > /dev/null 2>&1
  files=$(find "$WORK/lake$weeks/activity" -name '*.parquet' | wc -l)
  events=$(cat "$WORK"/l$weeks/activity/*.jsonl | wc -l)
  /usr/bin/time -f "%e" -o "$WORK/t$weeks" "$BIN" --lake "$WORK/lake$weeks" analyze --week 2026-03-02 > /dev/null 2>&1
  echo "lake of $weeks weeks: $events events in $files activity files; analyze --week 2026-03-02: $(cat "$WORK/t$weeks") s"
done
