#!/usr/bin/env bash
# The local stack: Orthanc (+DICOMweb), Redis and Elasticsearch as plain
# background processes on 127.0.0.1, with their state in one directory.
#
#   bash deploy/local/stack.sh install|start|stop|status|restart [orthanc|redis|es|all]...
#   bash deploy/local/stack.sh reset
#
# Every command is idempotent: start on a running service reports it and
# returns 0, stop on a stopped one too. `start` waits (bounded) until each
# service answers and prints the tail of its log when it does not. `restart`
# starts each service again with the settings it was started with (those set
# in the environment win); for Orthanc, every instance that was running.
# `reset` stops everything and deletes the services' state in the state dir
# (Elasticsearch's under /var/lib/cbmir too); other stacks' dirs inside it
# (.stack/test, …) are left alone.
#
# Environment (defaults in brackets; details in docs/operations.md):
#   CBMIR_STACK_DIR      state directory [.stack], relative to the repo root
#   ORTHANC_NAME         Orthanc instance name [orthanc] (a second one, e.g.
#                        orthanc-auth, runs beside it with its own port);
#                        stop/status without it act on every instance
#   ORTHANC_HTTP_PORT [8042]  ORTHANC_DICOM=1 enables DICOM on ORTHANC_DICOM_PORT [4242]
#   ORTHANC_USERS        user:pass[,…] enables HTTP basic auth on that instance
#   REDIS_PORT [6379]    ES_PORT [9200]   ES_VERSION [8.19.21]   ES_HEAP
#   CBMIR_READY_TIMEOUT_S  readiness wait per service [120]
#   CBMIR_REQUIRE_CONFINEMENT=1  fail instead of warn when the loopback-only
#                        packet filter for Orthanc's ports cannot be installed
#
# Exit status: 0 ok; 1 error; status: 3 when a requested service is stopped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/local/common.sh
source "$HERE/common.sh"
# shellcheck source=deploy/local/orthanc.sh
source "$HERE/orthanc.sh"
# shellcheck source=deploy/local/redis.sh
source "$HERE/redis.sh"
# shellcheck source=deploy/local/elasticsearch.sh
source "$HERE/elasticsearch.sh"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-1}"
}

# Orthanc commands: start/install act on $ORTHANC_NAME [orthanc]; stop/status
# on $ORTHANC_NAME when it is set, else on every instance in the state dir.
orthanc_cmd() {
  local cmd="$1" rc=0 name
  case "$cmd" in
    install | start) "orthanc_$cmd" ;;
    stop | status)
      local names="${ORTHANC_NAME:-}"
      [[ -n "$names" ]] || names="$(orthanc_instances)"
      [[ -n "$names" ]] || names=orthanc
      for name in $names; do
        ORTHANC_NAME="$name" "orthanc_$cmd" || rc=$?
      done
      return "$rc"
      ;;
  esac
}

# Settings saved by an instance's start (VAR=value lines, printf %q), applied to the
# variables the environment does not set: restart keeps a stack where it was.
_source_defaults() { # file
  [[ -f "$1" ]] || return 0
  local line
  while IFS= read -r line; do
    [[ "$line" =~ ^([A-Z_][A-Z0-9_]*)= && -z "${!BASH_REMATCH[1]+set}" ]] && eval "$line"
  done <"$1"
  return 0
}

# Each step in a subshell of its own: the settings a stop loads must not leak into the start.
# (Not `( … ) || rc=$?`: that would turn off set -e inside the start.)
restart_service() { # svc
  case "$1" in
    orthanc)
      local names="${ORTHANC_NAME:-}" name
      [[ -n "$names" ]] || names="$(orthanc_running_instances)"
      for name in ${names:-orthanc}; do
        (ORTHANC_NAME="$name"; orthanc_stop)
        (ORTHANC_NAME="$name"; _source_defaults "$STACK_DIR/$name/instance.env"; orthanc_start)
      done
      ;;
    redis)
      (redis_stop)
      (_source_defaults "$STACK_DIR/redis/instance.env"; redis_start)
      ;;
    es | elasticsearch)
      (es_stop)
      (_source_defaults "$STACK_DIR/es.instance.env"; es_start)
      ;;
    *) echo "unknown service '$1' (orthanc|redis|es|all)" >&2; return 1 ;;
  esac
}

# Stop every service of the state dir and delete their state, nothing else in it.
reset_stack() {
  local name f
  stop_apps
  run_service stop redis
  ORTHANC_NAME='' run_service stop orthanc
  es_reset
  for name in $(orthanc_instances); do rm -rf "${STACK_DIR:?}/$name"; done
  rm -rf "${STACK_DIR:?}/redis"
  # Top-level files (logs, pid files, saved settings), but not the lock files other runs hold.
  for f in "$STACK_DIR"/*; do
    [[ -f "$f" && "$f" != *.lock ]] && rm -f "$f"
  done
  log "reset: $STACK_DIR holds no service state now"
}

run_service() {
  local cmd="$1" svc="$2"
  case "$svc" in
    orthanc) orthanc_cmd "$cmd" ;;
    redis) "redis_$cmd" ;;
    es | elasticsearch) "es_$cmd" ;;
    *) echo "unknown service '$svc' (orthanc|redis|es|all)" >&2; return 1 ;;
  esac
}

main() {
  (($# >= 1)) || usage
  local cmd="$1"
  shift
  local services=("$@") all=0
  ((${#services[@]})) || services=(all)
  if [[ " ${services[*]} " == *" all "* ]]; then
    all=1
    # Stop in reverse dependency order (nothing depends on ES or Redis here,
    # but the gateway would read Orthanc last).
    if [[ "$cmd" == stop ]]; then services=(es redis orthanc); else services=(orthanc redis es); fi
  fi
  case "$cmd" in
    -h | --help | help) usage 0 ;;
    install)
      # One apt transaction for everything, then the per-service steps.
      if ((${#services[@]} == 3)); then
        apt_ensure orthanc orthanc-dicomweb dcmtk redis-server curl unzip iptables
      fi
      local s
      for s in "${services[@]}"; do run_service install "$s"; done
      ;;
    start | stop)
      mkdir -p "$STACK_DIR"
      # All of it: the gateway, worker and viewer an `npm start` left behind too.
      [[ "$cmd" == stop && $all == 1 ]] && stop_apps
      local s
      for s in "${services[@]}"; do run_service "$cmd" "$s"; done
      ;;
    restart)
      local s
      for s in "${services[@]}"; do restart_service "$s"; done
      ;;
    reset) reset_stack ;;
    status)
      local s rc=0
      for s in "${services[@]}"; do run_service status "$s" || rc=$?; done
      return "$rc"
      ;;
    *) echo "unknown command '$cmd'" >&2; usage ;;
  esac
}

# Sourced (tests), it only defines the functions.
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
