#!/usr/bin/env bash
# Stop the broker started by start-kafka.sh: SIGTERM (controlled shutdown, flushes logs), wait,
# SIGKILL if it is still alive after the timeout. Exit 0 if it is stopped (or was not running).
#
# usage: stop-kafka.sh [--data DIR] [--timeout 30]
#
#   --data DIR       same data dir as given to start-kafka.sh     env KAFKA_DATA_DIR
#                    (default: <repo>/radpulse-data/kafka)
#   --timeout SECS   grace period before SIGKILL (default 30)     env KAFKA_STOP_TIMEOUT
set -euo pipefail

# shellcheck source=kafka-common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka-common.sh"

DATA="$DEFAULT_DATA_DIR"
TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) need_arg "$@"; DATA="$2"; shift 2 ;;
    --data=*) DATA="${1#*=}"; shift ;;
    --timeout) need_arg "$@"; TIMEOUT="$2"; shift 2 ;;
    --timeout=*) TIMEOUT="${1#*=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "bad --timeout: $TIMEOUT"

if [[ ! -d "$DATA" ]]; then
  log "No data dir $DATA: Kafka is not running there."
  exit 0
fi
DATA="$(cd "$DATA" && pwd -P)" # same canonical form start-kafka.sh used
PIDFILE="$DATA/kafka.pid"

if [[ ! -f "$PIDFILE" ]]; then
  log "No $PIDFILE: Kafka is not running for data dir $DATA."
  exit 0
fi
PID="$(cat "$PIDFILE" 2>/dev/null || true)"
if ! is_our_broker "$PID" "$DATA"; then
  # Never signal a pid we did not start (stale file, pid reused by something else).
  log "pid '$PID' in $PIDFILE is not a running broker for $DATA; removing stale pid file."
  rm -f "$PIDFILE"
  exit 0
fi

t0=$SECONDS
log "Stopping Apache Kafka (pid $PID, data $DATA) ..."
kill -TERM "$PID" 2>/dev/null || true
while pid_alive "$PID" && ((SECONDS - t0 < TIMEOUT)); do
  sleep 0.5
done
if pid_alive "$PID"; then
  log "Still running after ${TIMEOUT}s; sending SIGKILL (next start will run log recovery)."
  kill -KILL "$PID" 2>/dev/null || true
  for _ in $(seq 1 20); do
    pid_alive "$PID" || break
    sleep 0.5
  done
  if pid_alive "$PID"; then die "pid $PID survived SIGKILL"; fi
fi
rm -f "$PIDFILE"
echo "Apache Kafka stopped (pid $PID, data $DATA, $((SECONDS - t0)) s)"
