# shellcheck shell=bash
# Helpers shared by start-kafka.sh and stop-kafka.sh. Sourced, not executed.

KAFKA_HOME_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RADPULSE_ROOT="$(cd "$KAFKA_HOME_DIR/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
DEFAULT_DATA_DIR="${KAFKA_DATA_DIR:-$RADPULSE_ROOT/radpulse-data/kafka}"

log() { printf '%s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Command line of a pid ('' if gone). /proc first, ps as a fallback (macOS, odd containers).
proc_cmdline() {
  local pid="$1"
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true
  else
    ps -o args= -p "$pid" 2>/dev/null || true
  fi
}

# True if pid exists and is not a zombie (containers without a reaping init keep zombies around).
pid_alive() {
  local pid="$1" state=""
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/stat" ]]; then
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
  else
    state="$(ps -o stat= -p "$pid" 2>/dev/null || true)"
  fi
  [[ "$state" != Z* ]]
}

# True if pid is the broker started by start-kafka.sh for data dir $2.
is_our_broker() {
  local pid="$1" data="$2" cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  cmd="$(proc_cmdline "$pid")"
  [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"-Dradpulse.kafka.data=$data "* ]]
}

# True if something accepts TCP connections on 127.0.0.1:$1 (bash /dev/tcp; no nc needed).
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

valid_port() {
  [[ "$1" =~ ^[0-9]+$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535))
}
