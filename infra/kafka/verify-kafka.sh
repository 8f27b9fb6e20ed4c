#!/usr/bin/env bash
# End-to-end check of start-kafka.sh / stop-kafka.sh with the project's Python clients.
# Starts a throw-away broker on free loopback ports in a temp data dir, then:
#   1. confluent-kafka idempotent producer (acks=all, lz4) writes 1000 messages; a consumer reads them
#   2. stop + start on the same data dir; the 1000 messages are read again
#   3. a faust-streaming worker (agent + Table with changelog) runs ~20 s and must see 100 events
# and stops/removes everything on exit (KEEP_DATA=1 keeps the data dir).
#
# usage: PYTHON=.venv/bin/python infra/kafka/verify-kafka.sh   (needs confluent-kafka + faust-streaming)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" && -x "$HERE/../../.venv/bin/python" ]]; then
  PYTHON="$HERE/../../.venv/bin/python"
fi
PYTHON="${PYTHON:-python3}"
# We cd around below: make a relative interpreter path (.venv/bin/python) absolute.
if [[ "$PYTHON" == */* && "$PYTHON" != /* ]]; then PYTHON="$PWD/$PYTHON"; fi
export PYTHON
FAUST_SECONDS="${FAUST_SECONDS:-20}"

read -r PORT CPORT < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')
DATA="$(mktemp -d "${TMPDIR:-/tmp}/radpulse-kafka-verify.XXXXXX")"
FAUST_DIR="$DATA/faust"
BOOT="127.0.0.1:$PORT"

cleanup() {
  local rc=$?
  "$HERE/stop-kafka.sh" --data "$DATA" >/dev/null 2>&1 || true
  if [[ "${KEEP_DATA:-0}" == 1 || $rc -ne 0 ]]; then
    echo "(data kept in $DATA)" >&2
  else
    rm -rf "$DATA"
  fi
  exit "$rc"
}
trap cleanup EXIT

step() { printf '\n=== %s\n' "$*"; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

step "start (ports $PORT/$CPORT, data $DATA)"
t=$(now)
"$HERE/start-kafka.sh" --port "$PORT" --controller-port "$CPORT" --data "$DATA"
echo "start -> ready: $(took "$t") s"

step "1. idempotent produce + consume"
"$PYTHON" "$HERE/smoke_test.py" produce --bootstrap "$BOOT" --topic verify --count 1000
"$PYTHON" "$HERE/smoke_test.py" consume --bootstrap "$BOOT" --topic verify --count 1000

step "2. restart on the same data dir"
"$HERE/stop-kafka.sh" --data "$DATA"
t=$(now)
"$HERE/start-kafka.sh" --port "$PORT" --controller-port "$CPORT" --data "$DATA"
echo "restart -> ready: $(took "$t") s"
"$PYTHON" "$HERE/smoke_test.py" consume --bootstrap "$BOOT" --topic verify --count 1000

step "3. faust-streaming worker for ${FAUST_SECONDS}s"
export KAFKA_BOOTSTRAP="$BOOT" FAUST_DATADIR="$FAUST_DIR" FAUST_APP_ID=radpulse-verify FAUST_TOPIC=verify-exams
(cd "$HERE" && "$PYTHON" faust_smoke_app.py produce 100)
rc=0
(cd "$HERE" && timeout -s TERM "$FAUST_SECONDS" "$PYTHON" -m faust -A faust_smoke_app worker -l info) \
  >"$DATA/faust.log" 2>&1 || rc=$?
[[ $rc -eq 124 || $rc -eq 0 ]] || { tail -n 40 "$DATA/faust.log"; echo "faust worker failed (rc=$rc)"; exit 1; }
grep 'SMOKE' "$DATA/faust.log" | sed 's/^.*\] SMOKE/  SMOKE/' | tail -n 3
if ! grep -q 'SMOKE received 100 events' "$DATA/faust.log" || ! grep -q 'total=100 *$' "$DATA/faust.log"; then
  tail -n 40 "$DATA/faust.log"
  echo "faust agent did not process the 100 events"
  exit 1
fi
if grep -q -E 'Traceback|\[ERROR\]' "$DATA/faust.log"; then
  grep -n -E -A5 'Traceback|\[ERROR\]' "$DATA/faust.log" | head -n 40
  echo "faust worker logged errors"
  exit 1
fi
echo "faust agent processed 100/100 events; table with changelog total=100"

step "stop"
"$HERE/stop-kafka.sh" --data "$DATA"
echo
echo "ALL CHECKS PASSED"
