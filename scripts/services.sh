#!/usr/bin/env bash
# Local backing services for Sluice: single-node Apache Kafka 4.x (KRaft) and
# ClickHouse, installed and run without Docker/systemd, all state under
# $SLUICE_LOCAL (default <repo>/.local). See scripts/README.md.
#
# Usage: scripts/services.sh COMMAND [ARGS]
#   install                  fetch Kafka jars (Maven Central) + apt clickhouse-server/-client, kcat
#   start | stop | status    both services
#   topics NAME[:PARTS] ...  create Kafka topics if missing (default 4 partitions, RF 1)
#   start-kafka | stop-kafka | kill-kafka
#   start-clickhouse | stop-clickhouse | kill-clickhouse
#   reset                    stop both and delete their data
#
# Environment: SLUICE_LOCAL, KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
#   CLICKHOUSE_PORT (9000), CLICKHOUSE_HTTP_PORT (8123), KAFKA_HEAP_OPTS
#   ("-Xms256m -Xmx1g"), SERVICES_TIMEOUT (readiness timeout, 120 s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPTS="$ROOT/scripts"
LOCAL="${SLUICE_LOCAL:-$ROOT/.local}"
case "$LOCAL" in /*) ;; *) LOCAL="$PWD/$LOCAL" ;; esac

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
CLICKHOUSE_PORT="${CLICKHOUSE_PORT:-9000}"
CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
TIMEOUT="${SERVICES_TIMEOUT:-120}"
HOST=127.0.0.1

K_DIR="$LOCAL/kafka"
K_LIBS="$K_DIR/libs"
K_DATA="$K_DIR/data"
K_LOGS="$K_DIR/logs"
K_CONF="$K_DIR/server.properties"
K_PID="$K_DIR/kafka.pid"
K_LOG="$K_LOGS/server.log"
K_OUT="$K_LOGS/kafka.out"
K_POM="$SCRIPTS/kafka/pom.xml"

CH_DIR="$LOCAL/clickhouse"
CH_ETC="$CH_DIR/etc"
CH_CONF="$CH_ETC/config.xml"
CH_PID="$CH_DIR/clickhouse.pid"
CH_LOG="$CH_DIR/log/clickhouse-server.log"
CH_ERR="$CH_DIR/log/clickhouse-server.err.log"
CH_OUT="$CH_DIR/log/stdout.log"

INSTALL_LOG="$LOCAL/install.log"

log() { printf '[services] %s\n' "$*"; }
warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [[ $EUID -ne 0 ]]; then SUDO=(sudo); fi

ch_server_bin() { command -v clickhouse-server || { [[ -x /usr/sbin/clickhouse-server ]] && echo /usr/sbin/clickhouse-server; } || true; }
have_kcat() { command -v kcat >/dev/null 2>&1; }

# ---------------------------------------------------------------- processes

# Prints the pid of our process (pid file first, then a search for the exact
# config path on the command line, in case the pid file was lost). The
# /proc/PID/cmdline check also rejects recycled pids and unreaped zombies.
find_pid() { # pidfile cmdline-substring
  local f=$1 pat=$2 pid
  if [[ -s $f ]]; then
    pid=$(<"$f")
    if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$pat"; then
      echo "$pid"; return 0
    fi
  fi
  pid=$(pgrep -f -- "$pat" 2>/dev/null | head -n1 || true)
  if [[ -n $pid ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$pat"; then
    echo "$pid" >"$f"; echo "$pid"; return 0
  fi
  return 1
}
kafka_pid() { find_pid "$K_PID" "kafka.Kafka $K_CONF"; }
ch_pid() { find_pid "$CH_PID" "--config-file=$CH_CONF"; }

# True while the process exists and is not a zombie. (Not the cmdline: a
# SIGKILLed JVM loses its cmdline before it has closed its sockets.)
alive() { # pid
  local st
  [[ -n $1 ]] || return 1
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Fails if something still listens on PORT after a few seconds' grace.
port_free() { # port
  for _ in $(seq 50); do port_open "$1" || return 0; sleep 0.1; done
  return 1
}

# Runs "$@" detached (own session, stdin closed, output appended to $2) and
# writes its pid to $1. The pid is the real server's: bash execs into it.
launch() { # pidfile outfile cmd...
  local pidfile=$1 out=$2; shift 2
  rm -f "$pidfile"
  printf '=== %s: services.sh starting %s\n' "$(date -u +%FT%TZ)" "$*" >>"$out"
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$out" 2>&1 </dev/null 9>&- &
  for _ in $(seq 50); do [[ -s $pidfile ]] && return 0; sleep 0.1; done
  die "could not launch $1"
}

stop_proc() { # name pid pidfile
  local name=$1 pid=$2 pidfile=$3
  log "$name: stopping (pid $pid, SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    warn "$name did not exit 30 s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && die "$name (pid $pid) survived SIGKILL"
  fi
  rm -f "$pidfile"
  log "$name: stopped"
}

kill9_proc() { # name pid pidfile
  local name=$1 pid=$2 pidfile=$3
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && die "$name (pid $pid) survived SIGKILL"
  rm -f "$pidfile"
  log "$name: killed with SIGKILL (pid $pid); data kept"
}

# Polls check_fn twice a second until it succeeds, the process dies, or
# TIMEOUT; on failure shows the end of the given log files.
wait_ready() { # name addr pid check_fn logfile...
  local name=$1 addr=$2 pid=$3 check=$4 start=$SECONDS
  shift 4
  while ! "$check"; do
    if ! alive "$pid"; then
      show_logs "$@"
      die "$name exited during startup ($addr); see $*"
    fi
    if (( SECONDS - start >= TIMEOUT )); then
      show_logs "$@"
      die "$name did not answer on $addr within ${TIMEOUT}s (pid $pid left running); see $*"
    fi
    sleep 0.5
  done
  log "$name: ready on $addr ($(( SECONDS - start ))s)"
}

show_logs() { # files...
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf -- '--- last lines of %s:\n' "$f" >&2
    tail -n 10 "$f" | cut -c1-300 >&2
  done
}

render() { # template dest
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
      -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@KAFKA_DATA_DIR@|$K_DATA|g" \
      -e "s|@CLICKHOUSE_PORT@|$CLICKHOUSE_PORT|g" \
      -e "s|@CLICKHOUSE_HTTP_PORT@|$CLICKHOUSE_HTTP_PORT|g" \
      -e "s|@CH_DIR@|$CH_DIR|g" "$1" >"$2.tmp"
  mv "$2.tmp" "$2"
}

# ---------------------------------------------------------------- install

apt_install() { # packages...
  local DEBIAN_FRONTEND=noninteractive
  export DEBIAN_FRONTEND
  # No package lists at all (fresh image): update first.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    log "apt: apt-get update"
    "${SUDO[@]}" apt-get update -q -o DPkg::Lock::Timeout=300 >>"$INSTALL_LOG" 2>&1 || { tail -n 20 "$INSTALL_LOG" >&2; die "apt-get update failed; see $INSTALL_LOG"; }
  fi
  log "apt: installing $*"
  if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >>"$INSTALL_LOG" 2>&1; then
    log "apt: install failed, retrying after apt-get update"
    "${SUDO[@]}" apt-get update -q -o DPkg::Lock::Timeout=300 >>"$INSTALL_LOG" 2>&1 || true
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >>"$INSTALL_LOG" 2>&1 ||
      { tail -n 20 "$INSTALL_LOG" >&2; die "apt-get install $* failed; see $INSTALL_LOG"; }
  fi
}

install_kafka() {
  local stamp
  stamp="$(sha256sum "$K_POM" | cut -c1-16)"
  if [[ -f $K_LIBS/.installed && "$(<"$K_LIBS/.installed")" == "$stamp" ]]; then
    log "kafka: jars already in $K_LIBS (skip)"
    return 0
  fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "kafka: fetching jars from Maven Central ($K_POM) into $K_LIBS"
  local tmp="$K_DIR/libs.tmp"
  rm -rf "$tmp"
  mkdir -p "$K_DIR"
  if ! mvn -q -B -Dstyle.color=never -f "$K_POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >>"$INSTALL_LOG" 2>&1; then
    tail -n 30 "$INSTALL_LOG" >&2
    die "mvn dependency:copy-dependencies failed; see $INSTALL_LOG"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $tmp"
  echo "$stamp" >"$tmp/.installed"
  rm -rf "$K_LIBS"
  mv "$tmp" "$K_LIBS"
  local jars=("$K_LIBS"/*.jar)
  log "kafka: ${#jars[@]} jars installed, including $(basename "$(ls "$K_LIBS"/kafka_2.13-*.jar)")"
}

install_apt_packages() {
  local need=()
  [[ -n "$(ch_server_bin)" ]] || need+=(clickhouse-server)
  command -v clickhouse-client >/dev/null || need+=(clickhouse-client)
  have_kcat || need+=(kcat)
  if (( ${#need[@]} == 0 )); then
    log "apt: clickhouse-server, clickhouse-client, kcat already installed (skip)"
    return 0
  fi
  # clickhouse-server's postinst runs `invoke-rc.d clickhouse-server start`,
  # which (without systemd) would start a second server from /etc on port 9000.
  # A policy-rc.d that exits 101 tells invoke-rc.d not to start anything.
  local policy=/usr/sbin/policy-rc.d tmp_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    tmp_policy=1
  fi
  local rc=0
  ( apt_install "${need[@]}" ) || rc=$?
  if (( tmp_policy )); then "${SUDO[@]}" rm -f "$policy"; fi
  (( rc == 0 )) || exit "$rc"
}

cmd_install() {
  mkdir -p "$LOCAL"
  printf '=== services.sh install %s\n' "$(date -u +%FT%TZ)" >>"$INSTALL_LOG"
  local t0=$SECONDS
  install_kafka
  install_apt_packages
  log "install: done in $(( SECONDS - t0 ))s (details: $INSTALL_LOG)"
  log "versions: $(basename "$(ls "$K_LIBS"/kafka_2.13-*.jar)" .jar), clickhouse $(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || echo '?'), kcat $(dpkg-query -W -f='${Version}' kcat 2>/dev/null || echo '?')"
}

# ---------------------------------------------------------------- kafka

kafka_java() { # main-class args... (CLI tools: small heap, quiet logging)
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$SCRIPTS/kafka/tools-log4j2.xml" \
    -cp "$K_LIBS/*" "$@"
}

kafka_answers() {
  if have_kcat; then
    # Broker registered and every partition has a leader (after a kill -9 the
    # partitions come back through a short RECOVERING state).
    local md
    port_open "$KAFKA_PORT" || return 1
    md=$(kcat -b "$HOST:$KAFKA_PORT" -L -m 2 2>/dev/null) || return 1
    grep -q "broker 1 at" <<<"$md" && ! grep -q "leader -1" <<<"$md"
  else
    port_open "$KAFKA_PORT" &&
      kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list >/dev/null 2>&1
  fi
}

start_kafka() {
  [[ -f $K_LIBS/.installed ]] || die "Kafka is not installed in $K_LIBS; run: scripts/services.sh install"
  local pid
  if pid=$(kafka_pid); then
    log "kafka: already running (pid $pid) on $HOST:$KAFKA_PORT"
    wait_ready kafka "$HOST:$KAFKA_PORT" "$pid" kafka_answers "$K_LOG" "$K_OUT"
    return 0
  fi
  rm -f "$K_PID"
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_free "$p" || die "kafka: $HOST:$p is already in use by another process (not ours: no live pid in $K_PID)"
  done
  mkdir -p "$K_DATA" "$K_LOGS"
  render "$SCRIPTS/kafka/server.properties.template" "$K_CONF"
  if [[ ! -f $K_DATA/meta.properties ]]; then
    [[ -s $K_DIR/cluster.id ]] || kafka_java kafka.tools.StorageTool random-uuid >"$K_DIR/cluster.id"
    log "kafka: formatting $K_DATA (cluster id $(<"$K_DIR/cluster.id"))"
    kafka_java kafka.tools.StorageTool format --config "$K_CONF" \
      --cluster-id "$(<"$K_DIR/cluster.id")" --ignore-formatted >>"$K_OUT" 2>&1 ||
      { tail -n 20 "$K_OUT" >&2; die "kafka: storage format failed; see $K_OUT"; }
  fi
  log "kafka: starting on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT), data $K_DATA"
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
  launch "$K_PID" "$K_OUT" java $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true -Dkafka.logs.dir="$K_LOGS" \
    -Dlog4j2.configurationFile="$SCRIPTS/kafka/log4j2.xml" \
    -cp "$K_LIBS/*" kafka.Kafka "$K_CONF"
  wait_ready kafka "$HOST:$KAFKA_PORT" "$(<"$K_PID")" kafka_answers "$K_LOG" "$K_OUT"
}

stop_kafka() {
  local pid
  if pid=$(kafka_pid); then stop_proc kafka "$pid" "$K_PID"; else rm -f "$K_PID"; log "kafka: not running"; fi
}

kill_kafka() {
  local pid
  if pid=$(kafka_pid); then kill9_proc kafka "$pid" "$K_PID"; else rm -f "$K_PID"; log "kafka: not running"; fi
}

cmd_topics() {
  (( $# > 0 )) || die "usage: scripts/services.sh topics NAME[:PARTITIONS] ..."
  kafka_pid >/dev/null || die "kafka is not running; run: scripts/services.sh start"
  local spec name parts out got
  for spec in "$@"; do
    name=${spec%%:*}
    parts=4
    [[ $spec == *:* ]] && parts=${spec#*:}
    [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "bad topic name: '$name'"
    [[ $parts =~ ^[1-9][0-9]*$ ]] || die "bad partition count in '$spec'"
    if ! out=$(kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
        --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 2>&1); then
      printf '%s\n' "$out" >&2
      die "could not create topic $name"
    fi
    got=""
    if have_kcat; then
      got=$(kcat -b "$HOST:$KAFKA_PORT" -L -t "$name" -m 5 2>/dev/null |
        sed -n "s/.*topic \"$name\" with \([0-9]*\) partitions.*/\1/p" || true)
    fi
    if [[ $out == *"Created topic"* ]]; then
      log "topic $name: created, partitions: $parts"
    elif [[ -n $got && $got != "$parts" ]]; then
      warn "topic $name already exists with $got partitions (asked for $parts); left unchanged"
    else
      log "topic $name: already exists${got:+, partitions: $got}"
    fi
  done
}

# ---------------------------------------------------------------- clickhouse

ch_answers() {
  port_open "$CLICKHOUSE_PORT" &&
    clickhouse-client --host "$HOST" --port "$CLICKHOUSE_PORT" -q 'SELECT 1' >/dev/null 2>&1
}

start_clickhouse() {
  local bin
  bin=$(ch_server_bin)
  [[ -n $bin ]] || die "clickhouse-server is not installed; run: scripts/services.sh install"
  local pid
  if pid=$(ch_pid); then
    log "clickhouse: already running (pid $pid) on $HOST:$CLICKHOUSE_PORT"
    wait_ready clickhouse "$HOST:$CLICKHOUSE_PORT" "$pid" ch_answers "$CH_LOG" "$CH_ERR" "$CH_OUT"
    return 0
  fi
  rm -f "$CH_PID"
  local p
  for p in "$CLICKHOUSE_PORT" "$CLICKHOUSE_HTTP_PORT"; do
    port_free "$p" || die "clickhouse: $HOST:$p is already in use by another process (not ours: no live pid in $CH_PID)"
  done
  mkdir -p "$CH_ETC" "$CH_DIR"/{data,tmp,log,user_files,format_schemas}
  render "$SCRIPTS/clickhouse/config.xml.template" "$CH_CONF"
  cp "$SCRIPTS/clickhouse/users.xml" "$CH_ETC/users.xml"
  # Runs as the invoking user (root here): Debian's 18.16 server does not
  # refuse root, so no chown to the package's "clickhouse" user is needed and
  # everything under $CH_DIR stays owned by whoever runs this script.
  log "clickhouse: starting on $HOST:$CLICKHOUSE_PORT (http $CLICKHOUSE_HTTP_PORT), data $CH_DIR/data"
  launch "$CH_PID" "$CH_OUT" "$bin" --config-file="$CH_CONF"
  wait_ready clickhouse "$HOST:$CLICKHOUSE_PORT" "$(<"$CH_PID")" ch_answers "$CH_LOG" "$CH_ERR" "$CH_OUT"
}

stop_clickhouse() {
  local pid
  if pid=$(ch_pid); then stop_proc clickhouse "$pid" "$CH_PID"; else rm -f "$CH_PID"; log "clickhouse: not running"; fi
}

kill_clickhouse() {
  local pid
  if pid=$(ch_pid); then kill9_proc clickhouse "$pid" "$CH_PID"; else rm -f "$CH_PID"; log "clickhouse: not running"; fi
}

# ---------------------------------------------------------------- status / reset

cmd_status() {
  local rc=0 pid
  if pid=$(kafka_pid); then
    if kafka_answers; then
      log "kafka: up (pid $pid) $HOST:$KAFKA_PORT, controller $HOST:$KAFKA_CONTROLLER_PORT, log $K_LOG"
    else
      log "kafka: process running (pid $pid) but not answering on $HOST:$KAFKA_PORT; log $K_LOG"; rc=3
    fi
  else
    log "kafka: down"; rc=3
  fi
  if pid=$(ch_pid); then
    if ch_answers; then
      log "clickhouse: up (pid $pid) native $HOST:$CLICKHOUSE_PORT, http $HOST:$CLICKHOUSE_HTTP_PORT, log $CH_LOG"
    else
      log "clickhouse: process running (pid $pid) but not answering on $HOST:$CLICKHOUSE_PORT; log $CH_LOG"; rc=3
    fi
  else
    log "clickhouse: down"; rc=3
  fi
  return "$rc"
}

cmd_reset() {
  stop_kafka
  stop_clickhouse
  log "reset: deleting $K_DATA and $CH_DIR"
  rm -rf "${K_DATA:?}" "${K_DIR:?}/cluster.id" "${K_LOGS:?}" "${K_CONF:?}" "${CH_DIR:?}"
  log "reset: done (Kafka jars in $K_LIBS kept)"
}

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# Serialises commands that start/stop/install things (e.g. two test runs
# calling `start` at once); status and help do not wait for it.
lock() {
  mkdir -p "$LOCAL"
  exec 9>"$LOCAL/.services.lock"
  flock -w 600 9 || die "another services.sh is still running (lock $LOCAL/.services.lock)"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    status | help | -h | --help | '') ;;
    *) lock ;;
  esac
  case "$cmd" in
    install) cmd_install ;;
    start) start_kafka; start_clickhouse ;;
    stop) stop_kafka; stop_clickhouse ;;
    status) cmd_status ;;
    topics) cmd_topics "$@" ;;
    start-kafka) start_kafka ;;
    stop-kafka) stop_kafka ;;
    kill-kafka) kill_kafka ;;
    start-clickhouse) start_clickhouse ;;
    stop-clickhouse) stop_clickhouse ;;
    kill-clickhouse) kill_clickhouse ;;
    reset) cmd_reset ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
