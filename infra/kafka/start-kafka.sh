#!/usr/bin/env bash
# Start a single-node Apache Kafka (KRaft, broker+controller in one JVM) on loopback only,
# from jars fetched from Maven Central (see pom.xml / README.md).
#
# usage: start-kafka.sh [--port 9092] [--controller-port 9093] [--data DIR]
#                       [--timeout 90] [--set key=value]...
#
#   --port             client (PLAINTEXT) port on 127.0.0.1            env KAFKA_PORT
#   --controller-port  KRaft controller port on 127.0.0.1              env KAFKA_CONTROLLER_PORT
#   --data DIR         config, pid, logs and the Kafka log.dirs        env KAFKA_DATA_DIR
#                      (default: <repo>/radpulse-data/kafka)
#   --timeout SECS     how long to wait for the broker to answer       env KAFKA_START_TIMEOUT
#   --set key=value    extra/overriding server.properties line (repeatable)
#   --fetch-only       only make sure lib/ is populated from Maven, then exit (deploy / CI cache step)
#
# Other environment knobs: JAVA_HOME, KAFKA_HEAP_OPTS (default -Xmx512m), KAFKA_JVM_OPTS,
# PYTHON (readiness probe interpreter, default python3), MVN (default mvn), KAFKA_MVN_ARGS
# (extra Maven args, e.g. "-s ci-settings.xml"), KAFKA_VERSION (-Dkafka.version override).
#
# Prints "Apache Kafka <version> ready on 127.0.0.1:PORT (data DIR, pid N)" and exits 0 once a
# metadata request succeeds; prints the log tail and exits non-zero otherwise. Re-running it
# against a data dir whose broker is already up just re-checks it and prints the same line.
set -euo pipefail

# shellcheck source=kafka-common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka-common.sh"

PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-9093}"
DATA="$DEFAULT_DATA_DIR"
TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
PY="${PYTHON:-python3}"
if [[ "$PY" == */* && "$PY" != /* ]]; then PY="$PWD/$PY"; fi # relative .venv/bin/python
EXTRA_PROPS=()
FETCH_ONLY=false

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) need_arg "$@"; PORT="$2"; shift 2 ;;
    --port=*) PORT="${1#*=}"; shift ;;
    --controller-port) need_arg "$@"; CPORT="$2"; shift 2 ;;
    --controller-port=*) CPORT="${1#*=}"; shift ;;
    --data) need_arg "$@"; DATA="$2"; shift 2 ;;
    --data=*) DATA="${1#*=}"; shift ;;
    --timeout) need_arg "$@"; TIMEOUT="$2"; shift 2 ;;
    --timeout=*) TIMEOUT="${1#*=}"; shift ;;
    --set) need_arg "$@"; EXTRA_PROPS+=("$2"); shift 2 ;;
    --set=*) EXTRA_PROPS+=("${1#*=}"); shift ;;
    --fetch-only) FETCH_ONLY=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

valid_port "$PORT" || die "bad --port: $PORT"
valid_port "$CPORT" || die "bad --controller-port: $CPORT"
[[ "$PORT" != "$CPORT" ]] || die "--port and --controller-port must differ"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "bad --timeout: $TIMEOUT"
for kv in "${EXTRA_PROPS[@]+"${EXTRA_PROPS[@]}"}"; do
  [[ "$kv" == *=* ]] || die "--set expects key=value, got: $kv"
done

if [[ "$FETCH_ONLY" != true ]]; then
  mkdir -p "$DATA" || die "cannot create data dir $DATA"
  DATA="$(cd "$DATA" && pwd -P)" # canonical: the pid check matches on this exact string
fi
LIB="$KAFKA_HOME_DIR/lib"
PROPS="$DATA/server.properties"
PIDFILE="$DATA/kafka.pid"
KLOG="$DATA/kafka.log"
KOUT="$DATA/kafka.out"
LOGDIRS="$DATA/logs"

# ---------------------------------------------------------------- java
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="$(command -v java || true)"
fi
[[ -n "$JAVA" ]] || die "java not found (install a JDK 17+ or set JAVA_HOME)"
JAVA_SPEC="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1)"
[[ "${JAVA_SPEC%%.*}" =~ ^[0-9]+$ && "${JAVA_SPEC%%.*}" -ge 17 ]] \
  || die "Kafka 4.x needs Java 17+, found '${JAVA_SPEC:-unknown}' at $JAVA"

# ---------------------------------------------------------------- broker already up for DATA?
RUNNING_PID=""
if [[ "$FETCH_ONLY" != true && -f "$PIDFILE" ]]; then
  oldpid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if is_our_broker "$oldpid" "$DATA"; then
    RUNNING_PID="$oldpid"
  else
    log "Removing stale pid file $PIDFILE (pid '${oldpid}' is not a running broker)."
    rm -f "$PIDFILE"
  fi
fi
if [[ "$FETCH_ONLY" != true && -z "$RUNNING_PID" ]]; then
  for p in "$PORT" "$CPORT"; do
    if port_open "$p"; then
      die "127.0.0.1:$p is already in use by another process (choose --port/--controller-port)"
    fi
  done
fi

# ---------------------------------------------------------------- jars (Maven)
lib_fingerprint() {
  { cat "$KAFKA_HOME_DIR/pom.xml"; printf 'KAFKA_VERSION=%s\n' "${KAFKA_VERSION:-}"; } | cksum | cut -d' ' -f1
}

lib_ok() {
  [[ -f "$LIB/.fingerprint" && "$(cat "$LIB/.fingerprint")" == "$(lib_fingerprint)" ]] \
    && compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null
}

fetch_lib() {
  local mvn="${MVN:-mvn}" tmp mlog t0 rc
  command -v "$mvn" >/dev/null 2>&1 || die "Maven ('$mvn') not found; needed once to fetch Kafka into $LIB"
  tmp="$KAFKA_HOME_DIR/target/lib.$$"
  mlog="$KAFKA_HOME_DIR/target/mvn-fetch.log"
  rm -rf "$tmp"
  local args=(-B -q -Dstyle.color=never -f "$KAFKA_HOME_DIR/pom.xml" dependency:copy-dependencies "-DoutputDirectory=$tmp")
  if [[ -n "${KAFKA_VERSION:-}" ]]; then args+=("-Dkafka.version=$KAFKA_VERSION"); fi
  # shellcheck disable=SC2206  # deliberate word splitting of user-supplied extra args
  if [[ -n "${KAFKA_MVN_ARGS:-}" ]]; then args=(${KAFKA_MVN_ARGS} "${args[@]}"); fi
  t0=$SECONDS
  # Offline first: free when ~/.m2 already has everything (re-runs, cached CI), fails fast otherwise.
  if "$mvn" -o "${args[@]}" >"$mlog" 2>&1; then
    log "Kafka jars copied from the local Maven repository (~/.m2) into $LIB"
  else
    log "Fetching Apache Kafka jars from Maven Central (first time: ~20-60 s, ~45 MB) ..."
    rm -rf "$tmp"
    rc=0
    "$mvn" "${args[@]}" >"$mlog" 2>&1 || rc=$?
    if ((rc != 0)); then
      tail -n 40 "$mlog" >&2 || true
      rm -rf "$tmp"
      die "Maven could not fetch Kafka (exit $rc); full output in $mlog"
    fi
    log "Fetched in $((SECONDS - t0)) s."
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "Maven ran but $tmp has no kafka_2.13 jar (see $mlog)"
  lib_fingerprint >"$tmp/.fingerprint"
  rm -rf "$LIB.old"
  if [[ -e "$LIB" ]]; then mv "$LIB" "$LIB.old"; fi
  mv "$tmp" "$LIB"
  rm -rf "$LIB.old"
}

# PIDs of brokers (any data dir) running from this lib/.
lib_users() {
  if [[ -r /proc/self/cmdline ]]; then
    local f cmd
    for f in /proc/[0-9]*/cmdline; do
      cmd="$({ tr '\0' ' ' <"$f"; } 2>/dev/null)" || continue
      if [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$LIB/*"* ]]; then
        f="${f#/proc/}"
        echo "${f%/cmdline}"
      fi
    done
  else
    ps -eo pid=,args= 2>/dev/null | awk -v lib="$LIB/*" 'index($0, "kafka.Kafka") && index($0, lib) {print $1}'
  fi
  return 0
}

# lib/ is (re)built when missing, or when pom.xml / KAFKA_VERSION changed -- but never swapped
# under a running broker.
need_fetch=false
if ! compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null; then
  need_fetch=true
elif ! lib_ok; then
  users="$(lib_users | tr '\n' ' ')"
  if [[ -z "${users// /}" ]]; then
    need_fetch=true
  else
    log "NOTE: pom.xml/KAFKA_VERSION changed but broker(s) (pid ${users% }) run from $LIB; keeping it until they stop."
  fi
fi
if [[ "$need_fetch" == true ]]; then
  mkdir -p "$KAFKA_HOME_DIR/target"
  if command -v flock >/dev/null 2>&1; then
    # Serialise concurrent starts (parallel CI jobs on one checkout); re-check after the wait.
    exec 9>"$KAFKA_HOME_DIR/target/.fetch.lock"
    flock -w 600 9 || die "timed out waiting for another start-kafka.sh to fetch the jars"
    lib_ok || fetch_lib
    exec 9>&-
  else
    fetch_lib
  fi
fi

KAFKA_JAR="$(compgen -G "$LIB/kafka_2.13-*.jar" | head -n1)"
KAFKA_VER="${KAFKA_JAR##*/kafka_2.13-}"
KAFKA_VER="${KAFKA_VER%.jar}"
if [[ "$FETCH_ONLY" == true ]]; then
  echo "Apache Kafka $KAFKA_VER jars ready in $LIB ($(compgen -G "$LIB/*.jar" | wc -l) jars)"
  exit 0
fi
CP="$LIB/*"
LOG4J=(-Dlog4j2.configurationFile="$KAFKA_HOME_DIR/log4j2.properties" -Dradpulse.kafka.logfile="$KLOG")

# ---------------------------------------------------------------- readiness probe
PROBE=""
PROBE_JAVA=()
JAVA_LIGHT=(-Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.level=OFF)
JAVAC="$(dirname "$JAVA")/javac"
if "$PY" -c 'import confluent_kafka' >/dev/null 2>&1; then
  PROBE=python
elif [[ -x "$JAVAC" ]]; then
  # Compile KafkaReady.java once (per lib/ and source change): ~3x cheaper than source-launching it per try.
  PROBE_CLS="$KAFKA_HOME_DIR/target/probe"
  if [[ ! -f "$PROBE_CLS/KafkaReady.class" || "$KAFKA_HOME_DIR/KafkaReady.java" -nt "$PROBE_CLS/KafkaReady.class" \
        || "$LIB/.fingerprint" -nt "$PROBE_CLS/KafkaReady.class" ]]; then
    mkdir -p "$PROBE_CLS"
    "$JAVAC" -nowarn -d "$PROBE_CLS" -cp "$CP" "$KAFKA_HOME_DIR/KafkaReady.java" >/dev/null 2>&1 \
      || die "could not compile $KAFKA_HOME_DIR/KafkaReady.java with $JAVAC"
  fi
  PROBE=java
  PROBE_JAVA=("$JAVA" "${JAVA_LIGHT[@]}" -cp "$PROBE_CLS:$CP" KafkaReady)
elif "$JAVA" --list-modules 2>/dev/null | grep -q '^jdk.compiler@'; then
  PROBE=java-source  # JDK single-file source launcher
  PROBE_JAVA=("$JAVA" "${JAVA_LIGHT[@]}" -cp "$CP" "$KAFKA_HOME_DIR/KafkaReady.java")
else
  log "WARNING: neither '$PY' with confluent_kafka nor a JDK found; readiness = TCP only"
  PROBE=tcp
fi

probe_metadata() {
  case "$PROBE" in
    python)
      "$PY" -c '
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": "127.0.0.1:" + sys.argv[1], "log_level": 0})
md = a.list_topics(timeout=5)
sys.exit(0 if md.brokers else 1)
' "$PORT" >/dev/null 2>&1 ;;
    java | java-source) "${PROBE_JAVA[@]}" "127.0.0.1:$PORT" >/dev/null 2>&1 ;;
    tcp) return 0 ;;
  esac
}

ready_line() {
  printf 'Apache Kafka %s ready on 127.0.0.1:%s (data %s, pid %s)\n' "$KAFKA_VER" "$PORT" "$DATA" "$1"
}

# ---------------------------------------------------------------- already running?
if [[ -n "$RUNNING_PID" ]]; then
  grep -q "^listeners=PLAINTEXT://127.0.0.1:$PORT," "$PROPS" 2>/dev/null \
    || die "a broker (pid $RUNNING_PID) is already running on $DATA with other ports; stop it first: $KAFKA_HOME_DIR/stop-kafka.sh --data $DATA"
  if port_open "$PORT" && probe_metadata; then
    log "Broker already running."
    ready_line "$RUNNING_PID"
    exit 0
  fi
  die "a broker (pid $RUNNING_PID) is running on $DATA but does not answer on 127.0.0.1:$PORT; see $KLOG"
fi

# ---------------------------------------------------------------- server.properties
# Rewritten on every start (ports may change between runs); the cluster id lives in logs/meta.properties.
{
  echo "# Generated by infra/kafka/start-kafka.sh on $(date -u +%FT%TZ); edits are overwritten. Use --set k=v."
  echo "process.roles=broker,controller"
  echo "node.id=1"
  echo "controller.quorum.bootstrap.servers=127.0.0.1:$CPORT"
  echo "listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT"
  # CONTROLLER is advertised too: with a dynamic (--standalone) quorum the controller endpoint is
  # taken from here (as in Apache's own config/server.properties). Clients only ever see PLAINTEXT.
  echo "advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT"
  echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  echo "inter.broker.listener.name=PLAINTEXT"
  echo "controller.listener.names=CONTROLLER"
  echo "log.dirs=$LOGDIRS"
  echo "num.partitions=4"
  echo "default.replication.factor=1"
  echo "min.insync.replicas=1"
  echo "auto.create.topics.enable=true"
  echo "offsets.topic.replication.factor=1"
  echo "transaction.state.log.replication.factor=1"
  echo "transaction.state.log.min.isr=1"
  echo "share.coordinator.state.topic.replication.factor=1"
  echo "share.coordinator.state.topic.min.isr=1"
  echo "group.initial.rebalance.delay.ms=0"
  echo "num.recovery.threads.per.data.dir=1"
  # Compaction (faust changelogs) needs the cleaner; its default 128 MB dedupe buffer is a quarter
  # of a 512 MB heap, 32 MB is plenty for a single node.
  echo "log.cleaner.dedupe.buffer.size=33554432"
  for kv in "${EXTRA_PROPS[@]+"${EXTRA_PROPS[@]}"}"; do echo "$kv"; done
} >"$PROPS.tmp"
mv "$PROPS.tmp" "$PROPS"

# ---------------------------------------------------------------- format (once)
if [[ ! -f "$LOGDIRS/meta.properties" ]]; then
  cid="${KAFKA_CLUSTER_ID:-}"
  if [[ -z "$cid" ]]; then
    # Same shape as Kafka's Uuid.randomUuid(): 16 random bytes, base64url, no padding, no leading '-'.
    while :; do
      cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
      [[ "$cid" != -* ]] && break
    done
  fi
  log "Formatting new KRaft storage in $LOGDIRS (cluster id $cid) ..."
  mkdir -p "$LOGDIRS"
  fmt_rc=0
  fmt_out="$("$JAVA" -Xmx256m -cp "$CP" "${LOG4J[@]}" kafka.tools.StorageTool format \
    --cluster-id "$cid" --config "$PROPS" --standalone 2>&1)" || fmt_rc=$?
  if ((fmt_rc != 0)); then
    printf '%s\n' "$fmt_out" >&2
    die "kafka.tools.StorageTool format failed (exit $fmt_rc)"
  fi
  printf '%s\n' "$fmt_out" | grep '^Formatting' >&2 || true
  printf '%s\n' "$cid" >"$DATA/cluster.id"
fi

# ---------------------------------------------------------------- launch
# shellcheck disable=SC2206  # deliberate word splitting of user-supplied JVM options
HEAP=(${KAFKA_HEAP_OPTS:--Xmx512m})
# shellcheck disable=SC2206
USER_JVM=(${KAFKA_JVM_OPTS:-})
JVM=(
  "${HEAP[@]}"
  -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
  -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
  "${LOG4J[@]}" -Dkafka.logs.dir="$DATA" -Dradpulse.kafka.data="$DATA"
  "${USER_JVM[@]+"${USER_JVM[@]}"}"
)

if [[ -f "$KOUT" ]]; then mv -f "$KOUT" "$KOUT.prev"; fi
KLOG_BASE=0 # kafka.log is appended across restarts; on failure show only this run's lines
if [[ -f "$KLOG" ]]; then KLOG_BASE="$(wc -l <"$KLOG")"; fi
: >"$KOUT"
SETSID=()
command -v setsid >/dev/null 2>&1 && SETSID=(setsid) # own session: a later Ctrl-C in this shell doesn't kill it
t_start=$SECONDS
# The JVM's stdout/stderr (log4j WARN+ console appender, JVM errors) go to kafka.out, never to our
# stdout: a background process holding the caller's pipe would make `$(start-kafka.sh)` or a
# subprocess.run(capture_output=True) hang until the broker exits.
(cd "$DATA" && exec nohup "${SETSID[@]+"${SETSID[@]}"}" "$JAVA" "${JVM[@]}" -cp "$CP" kafka.Kafka "$PROPS") \
  >>"$KOUT" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PIDFILE"
log "Started Apache Kafka $KAFKA_VER (pid $PID); waiting up to ${TIMEOUT}s for 127.0.0.1:$PORT ..."

shown=0
relay_console() { # echo new WARN/ERROR lines from the JVM console while we wait
  local n
  n="$(wc -l <"$KOUT" 2>/dev/null || echo 0)"
  if ((n > shown)); then
    # Condensed: no stack frames, long lines cut (full text stays in kafka.out / kafka.log).
    sed -n "$((shown + 1)),${n}p" "$KOUT" | grep -v -E '^\s+(at |\.\.\. [0-9]+ more)' \
      | cut -c1-400 | sed 's/^/[kafka] /' >&2 || true
    shown=$n
  fi
}

fail() {
  relay_console
  log ""
  log "---- $KLOG (last 40 lines of this run) ----"
  if [[ -f "$KLOG" ]]; then
    tail -n "+$((KLOG_BASE + 1))" "$KLOG" | tail -n 40 >&2 || true
  else
    log "(no log file)"
  fi
  if pid_alive "$PID"; then
    log "Stopping the half-started broker (pid $PID) ..."
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 40); do pid_alive "$PID" || break; sleep 0.5; done
    if pid_alive "$PID"; then kill -KILL "$PID" 2>/dev/null || true; fi
  fi
  rm -f "$PIDFILE"
  die "$1"
}

while :; do
  relay_console
  pid_alive "$PID" || fail "the broker exited during startup (after $((SECONDS - t_start)) s)"
  if port_open "$PORT" && probe_metadata; then
    break
  fi
  ((SECONDS - t_start >= TIMEOUT)) && fail "the broker did not become ready within ${TIMEOUT}s"
  sleep 0.5
done
relay_console

ready_line "$PID"
log "  (ready after $((SECONDS - t_start)) s; probe: $PROBE; log: $KLOG; stop: $KAFKA_HOME_DIR/stop-kafka.sh --data $DATA)"
