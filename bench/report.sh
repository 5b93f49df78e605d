#!/usr/bin/env bash
# Benchmark: `learnlake report` + `learnlake notify` for one week of an
# analyzed lake, to the file transport and to a real SMTP server on loopback
# (tests/smtp_server.py --quiet, aiosmtpd).
#
#   bench/report.sh LAKE [WEEK]      (LAKE: e.g. the lake bench/ingest.sh
#                                     made, after `learnlake analyze`)
#
# Each transport starts from an empty mail ledger (LAKE/_meta/mail is moved
# aside and restored afterwards). Prints, per command and transport: wall
# seconds, peak RSS, messages sent and messages per second.
set -euo pipefail
cd "$(dirname "$0")/.."
LAKE="$(realpath "$1")"
WEEK="${2:-}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/learnlake-target}"
[ -x "$CARGO_TARGET_DIR/release/learnlake" ] || cargo test --release --workspace --no-run -q
BIN="$CARGO_TARGET_DIR/release/learnlake"
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
python3 -c "import aiosmtpd" 2>/dev/null || python3 -m pip install -q aiosmtpd
WORK="$(mktemp -d /tmp/learnlake-report-bench.XXXX)"
trap 'rm -rf "$WORK"' EXIT
[ -e "$LAKE/_meta/mail" ] && mv "$LAKE/_meta/mail" "$WORK/mail-before"
restore() { rm -rf "$LAKE/_meta/mail"; [ -e "$WORK/mail-before" ] && mv "$WORK/mail-before" "$LAKE/_meta/mail"; rm -rf "$WORK"; }
trap restore EXIT

WEEK_ARGS=()
[ -n "$WEEK" ] && WEEK_ARGS=(--week "$WEEK")
unset LEARNLAKE_CONFIG
export LEARNLAKE_EMAIL_ADMINS="head@example.edu,dean@example.edu"
export LEARNLAKE_EMAIL_FROM="learnlake <reports@example.edu>"

# run LABEL COMMAND...: one timed run, its summary line and figures.
run() {
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$BIN" --lake "$LAKE" "$@" "${WEEK_ARGS[@]}" \
    > "$WORK/out" 2> "$WORK/err" || { cat "$WORK/err"; exit 1; }
  read -r secs kb < "$WORK/time"
  local sent
  sent=$(grep -oE '[0-9]+ sent,' "$WORK/out" | tail -1 | grep -oE '[0-9]+')
  printf "%-28s %8.2f s %8.0f MB %8d sent %9.0f msg/s\n" "$label" "$secs" "$((kb / 1024))" "$sent" \
    "$(python3 -c "print($sent / $secs)")"
}

echo "== file transport (.eml files)"
export LEARNLAKE_EMAIL_TRANSPORT=file
export LEARNLAKE_EMAIL_OUTBOX="$WORK/outbox"
run "report, file" report
run "notify, file" notify
echo "   outbox: $(find "$WORK/outbox" -name '*.eml' | wc -l) files, $(du -sm "$WORK/outbox" | cut -f1) MB"
echo "   re-run (everything sent before):"
run "report again, file" report

rm -rf "$LAKE/_meta/mail"
echo "== SMTP on loopback (aiosmtpd)"
python3 tests/smtp_server.py --quiet --log "$WORK/smtp.log" --port-file "$WORK/smtp.port" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; restore' EXIT
while ! grep -q listening "$WORK/smtp.log" 2>/dev/null; do sleep 0.1; done
export LEARNLAKE_EMAIL_TRANSPORT=smtp
export LEARNLAKE_SMTP_HOST=127.0.0.1
export LEARNLAKE_SMTP_PORT="$(cat "$WORK/smtp.port")"
export LEARNLAKE_SMTP_TLS=none
run "report, smtp" report
run "notify, smtp" notify
echo "   server accepted: $(grep -c '"status": 250' "$WORK/smtp.log") messages"
