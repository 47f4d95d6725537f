#!/usr/bin/env bash
# The whole thing on one machine, in the foreground (`npm start`):
#   installs what is missing, starts Orthanc, Redis and Elasticsearch on their
#   default ports, starts the gateway in front of Orthanc, the indexing worker,
#   and the OHIF viewer (npm @ohif/app, fetched once into the cache) served on
#   its own port against the gateway; loads the sample data through the gateway
#   once the worker is up (so it gets indexed), prints the URLs, and waits.
#   Ctrl-C stops everything this script started (services that were already
#   running are left alone). A gateway, worker or viewer that an earlier run
#   left behind (it was killed before its cleanup) is stopped first; a service
#   it left is used, and stopped at this run's exit, as if this run started it.
#
# Environment: the stack's port settings (ORTHANC_HTTP_PORT, REDIS_PORT,
# ES_PORT, … see deploy/local/stack.sh), CBMIR_PORT for the gateway [8080],
# CBMIR_OHIF_PORT for the viewer [3000], CBMIR_SAMPLE_DIR
# [test/fixtures/figshare-sample], CBMIR_SKIP_LOAD=1 to start without loading
# the sample, CBMIR_SKIP_OHIF=1 / CBMIR_SKIP_WORKER=1 to leave those out.
# Logs of the processes: $CBMIR_STACK_DIR/*.log, their pids: *.pid.
#
# Each long-running process has one start_* function; add new ones (worker,
# viewer) the same way and call them from main.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/local/common.sh
source "$ROOT/deploy/local/common.sh"
# fd 8 holds this run's lock on the state dir: the services must not inherit it.
stack() { bash "$ROOT/deploy/local/stack.sh" "$@" 8>&-; }

export CBMIR_STACK_DIR="$STACK_DIR"
ORTHANC_HTTP_PORT="${ORTHANC_HTTP_PORT:-8042}"
REDIS_PORT="${REDIS_PORT:-6379}"
ES_PORT="${ES_PORT:-9200}"
GATEWAY_PORT="${CBMIR_PORT:-8080}"
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
OHIF_PORT="${CBMIR_OHIF_PORT:-3000}"
OHIF_URL="http://127.0.0.1:$OHIF_PORT"
check_port CBMIR_PORT "$GATEWAY_PORT"
check_port CBMIR_OHIF_PORT "$OHIF_PORT"
SAMPLE_DIR="${CBMIR_SAMPLE_DIR:-test/fixtures/figshare-sample}"
TSX="$ROOT/node_modules/.bin/tsx"
GATEWAY_ENTRY="${CBMIR_GATEWAY_ENTRY:-gateway/main.ts}"
WORKER_ENTRY="${CBMIR_WORKER_ENTRY:-workers/main.ts}"
OHIF_ENTRY=deploy/ohif/main.ts
# /ui's "open in viewer" links go to the viewer this script serves, on its port, opened on the
# result's series and image (core/config.ts's default), and its "similar studies in the viewer"
# link opens that viewer on the query image's virtual root; none without one.
if [[ "${CBMIR_SKIP_OHIF:-0}" == 1 ]]; then
  VIEWER_DEFAULT=none
  VIEWER_SIMILAR_DEFAULT=none
else
  VIEWER_DEFAULT="$OHIF_URL/viewer?StudyInstanceUIDs={study}&initialSeriesInstanceUID={series}&initialSOPInstanceUID={instance}"
  VIEWER_SIMILAR_DEFAULT="$OHIF_URL/?configUrl=%2Fsimilar-to%2F{instance}%2Fapp-config.json"
fi
# The gateway and the worker read the same settings (core/config.ts).
APP_ENV=(
  CBMIR_PACS_URL="http://127.0.0.1:$ORTHANC_HTTP_PORT/dicom-web"
  CBMIR_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  CBMIR_ES_URL="http://127.0.0.1:$ES_PORT"
  # OHIF is served from its own origin; nothing else may call the gateway from a web page.
  CBMIR_CORS_ORIGINS="${CBMIR_CORS_ORIGINS:-http://127.0.0.1:$OHIF_PORT,http://localhost:$OHIF_PORT}"
  CBMIR_VIEWER_URL_TEMPLATE="${CBMIR_VIEWER_URL_TEMPLATE:-$VIEWER_DEFAULT}"
  CBMIR_VIEWER_SIMILAR_URL_TEMPLATE="${CBMIR_VIEWER_SIMILAR_URL_TEMPLATE:-$VIEWER_SIMILAR_DEFAULT}"
)

# Fails when the output is gone: before cleanup that ends the run (set -e), and cleanup runs.
say() { printf '[run] %s\n' "$*"; }

# --- bookkeeping: what this script started, stopped in reverse order ---------
started_services=() # stack services (orthanc|redis|es)
# The services a run started, kept while it runs: a run killed before its cleanup (kill -9, a
# crash) leaves them listed, and the next run takes them over instead of leaving them forever.
STARTED_FILE="$STACK_DIR/run.services"
proc_names=()       # our own processes
proc_pids=()

install_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# Runs once, on any exit. Nothing may cut it short and leave services running: not a second
# Ctrl-C, not a terminal that is gone (SIGHUP, then EIO on every write), not a reader of our
# output that is gone (`npm start | tee log` and Ctrl-C: SIGPIPE, EPIPE). So: no errexit, those
# signals ignored (the stop commands inherit that), and output that cannot be written goes to
# the state dir's run.log instead.
cleanup() {
  set +e
  trap '' INT TERM HUP PIPE
  trap - EXIT
  if ! say "stopping…" 2>/dev/null; then
    exec >>"$STACK_DIR/run.log" 2>&1 || exec >/dev/null 2>&1
    say "stopping… (our output is gone: the terminal closed, or the pipe it went to)"
  fi
  local i pid
  for ((i = ${#proc_pids[@]} - 1; i >= 0; i--)); do
    pid="${proc_pids[$i]}"
    pid_alive "$pid" && stop_group "${proc_names[$i]}" "$pid" 15
    rm -f "$STACK_DIR/${proc_names[$i]}.pid"
  done
  for ((i = ${#started_services[@]} - 1; i >= 0; i--)); do
    # This script's Orthanc only: other instances in the state dir are not ours to stop.
    ORTHANC_NAME=orthanc stack stop "${started_services[$i]}"
  done
  rm -f "$STARTED_FILE"
  say "stopped" 2>/dev/null
}

# Start a background process in its own session (so a Ctrl-C reaches only this
# script, which then stops things in order), tagged and with a pid file (so a
# later run finds it should this one die before its cleanup); output to a log
# file and, prefixed, to the terminal.
start_process() { # name, command...
  local name="$1" log="$STACK_DIR/$1.log"
  shift
  setsid env CBMIR_RUN_TAG="$STACK_DIR/$name" "$@" > >(exec 8>&-; tee -a "$log" | sed -u "s/^/[$name] /") 2>&1 </dev/null 8>&- &
  proc_names+=("$name")
  proc_pids+=("$!")
  echo "$!" >"$STACK_DIR/$name.pid"
  say "$name started (pid $!), log: ${log#"$ROOT"/}"
}

# One run per state dir at a time (fd 8, released when this script ends however it ends);
# then whatever an earlier run left behind is stopped.
claim_stack_dir() {
  exec 8>>"$STACK_DIR/run.lock"
  flock -n 8 || die "another npm start (deploy/local/run.sh) uses $STACK_DIR: stop it first (Ctrl-C there), or give this one its own CBMIR_STACK_DIR and ports"
  stop_apps
}

# --- one function per part ----------------------------------------------------
ensure_node_deps() {
  # node_modules/.package-lock.json is written only when an install completes: an interrupted
  # npm ci, or a package-lock.json changed since (a pull), installs again.
  if [[ ! -x "$TSX" || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    say "installing node dependencies (npm ci)"
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
  fi
}

# Ours to stop at exit: in the array for cleanup, in the file for a run after a kill -9.
own_service() { # orthanc|redis|es
  started_services+=("$1")
  grep -qsx "$1" "$STARTED_FILE" || echo "$1" >>"$STARTED_FILE"
}

start_service() { # orthanc|redis|es — start unless already running; remember if we did
  local svc="$1"
  if ORTHANC_NAME=orthanc stack status "$svc" >/dev/null 2>&1; then
    if grep -qsx "$svc" "$STARTED_FILE"; then
      say "$svc left running by an earlier npm start that did not stop; this run stops it on exit"
      own_service "$svc"
    else
      say "$svc already running; leaving it running on exit"
    fi
    return 0
  fi
  # Remembered before the start, so a Ctrl-C during it (Elasticsearch takes ~30 s) still stops
  # it: the service runs in its own session and never sees that SIGINT; stop is safe to repeat,
  # and waits for an Elasticsearch start still in progress.
  own_service "$svc"
  ORTHANC_NAME=orthanc ORTHANC_HTTP_PORT="$ORTHANC_HTTP_PORT" REDIS_PORT="$REDIS_PORT" ES_PORT="$ES_PORT" \
    stack start "$svc"
}

start_gateway() {
  if [[ ! -f "$GATEWAY_ENTRY" ]]; then
    say "$GATEWAY_ENTRY does not exist yet: not starting the gateway"
    return 0
  fi
  require_free_port gateway "$GATEWAY_PORT"
  start_process gateway env CBMIR_HOST=127.0.0.1 CBMIR_PORT="$GATEWAY_PORT" "${APP_ENV[@]}" "$TSX" "$GATEWAY_ENTRY"
  wait_ready gateway "${proc_pids[-1]}" "$STACK_DIR/gateway.log" 60 curl -fsS -m 2 "$GATEWAY_URL/healthz"
  GATEWAY_RUNNING=1
}

# The indexing worker: consumes the jobs the gateway's STOW hook enqueues.
# Ready when it logs "worker ready" (model loaded, queues attached).
start_worker() {
  if [[ "${CBMIR_SKIP_WORKER:-0}" == 1 || ! -f "$WORKER_ENTRY" ]]; then
    say "not starting the worker (CBMIR_SKIP_WORKER=1 or no $WORKER_ENTRY)"
    return 0
  fi
  : >"$STACK_DIR/worker.log"
  start_process worker env "${APP_ENV[@]}" "$TSX" "$WORKER_ENTRY"
  wait_ready worker "${proc_pids[-1]}" "$STACK_DIR/worker.log" 120 grep -q '"msg":"worker ready"' "$STACK_DIR/worker.log" || {
    say "the worker did not start (log above); CBMIR_SKIP_WORKER=1 starts everything else without indexing"
    return 1
  }
  WORKER_RUNNING=1
}

# OHIF v3 on its own origin, against the gateway. The first start fetches the
# viewer (about 50 MB, npm pack) into $CBMIR_CACHE_DIR; later starts are instant.
start_ohif() {
  if [[ "${CBMIR_SKIP_OHIF:-0}" == 1 || "${GATEWAY_RUNNING:-0}" != 1 ]]; then
    say "not starting the OHIF viewer (CBMIR_SKIP_OHIF=1 or no gateway)"
    return 0
  fi
  require_free_port ohif "$OHIF_PORT"
  start_process ohif "$TSX" "$OHIF_ENTRY" --dicomweb "$GATEWAY_URL/dicom-web" --port "$OHIF_PORT" --host 127.0.0.1
  OHIF_PID="${proc_pids[-1]}"
}

wait_ohif() {
  [[ -n "${OHIF_PID:-}" ]] || return 0
  wait_ready ohif "$OHIF_PID" "$STACK_DIR/ohif.log" 600 curl -fsS -m 2 "$OHIF_URL/app-config.js" || {
    say "the OHIF viewer did not start (log above); CBMIR_SKIP_OHIF=1 starts everything else without it"
    return 1
  }
  OHIF_RUNNING=1
}

# How many instances the worker has indexed, from the vector index's alias.
index_count() {
  curl -fsS -m 2 "http://127.0.0.1:$ES_PORT/${CBMIR_ES_INDEX:-cbmir-vectors}/_count" 2>/dev/null | sed -n 's/.*"count":\([0-9]*\).*/\1/p'
}

# After loading: wait (bounded) until the index holds what was loaded, and say so.
report_indexing() {
  [[ "${WORKER_RUNNING:-0}" == 1 && "${LOADED:-0}" == 1 ]] || return 0
  local want n="" i
  want="$(($(wc -l <"$SAMPLE_DIR/labels.csv") - 1))"
  for ((i = 0; i < 120; i++)); do
    n="$(index_count)"
    [[ -n "$n" ]] && ((n >= want)) && break
    sleep 1
  done
  if [[ -n "$n" ]] && ((n >= want)); then
    say "indexed: $n instances in the vector index"
  else
    say "indexing still running (${n:-0} of $want indexed so far); see $STACK_DIR/worker.log"
  fi
}

load_sample_data() {
  if [[ "${CBMIR_SKIP_LOAD:-0}" == 1 ]]; then return 0; fi
  if [[ ! -f workers/cli.ts || ! -d "$SAMPLE_DIR" || "${GATEWAY_RUNNING:-0}" != 1 ]]; then
    say "not loading sample data (needs workers/cli.ts, $SAMPLE_DIR and a running gateway)"
    return 0
  fi
  say "loading $SAMPLE_DIR through the gateway"
  if "$TSX" workers/cli.ts load --url "$GATEWAY_URL/dicom-web" "$SAMPLE_DIR"; then
    LOADED=1
  else
    say "loading the sample failed (see above); the stack keeps running"
  fi
}

print_urls() {
  # Probe the optional gateway pages before printing, so the list is not cut by their access-log lines.
  # /similar answers 400 (parameters missing) once it exists, 404 before.
  local similar="" ui=""
  if [[ "${GATEWAY_RUNNING:-0}" == 1 ]]; then
    [[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$GATEWAY_URL/similar")" != 404 ]] && similar=1
    [[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$GATEWAY_URL/ui")" =~ ^(200|30[1278])$ ]] && ui=1
    sleep 0.2
  fi
  echo
  say "ready:"
  if [[ "${OHIF_RUNNING:-0}" == 1 ]]; then
    say "  OHIF viewer (against the gateway)    $OHIF_URL/"
  fi
  if [[ "${GATEWAY_RUNNING:-0}" == 1 ]]; then
    say "  gateway (DICOMweb root for viewers)  $GATEWAY_URL/dicom-web"
    [[ -n "$similar" ]] && say "  similar images (API)                 $GATEWAY_URL/similar?StudyInstanceUID=…&SeriesInstanceUID=…&SOPInstanceUID=…"
    [[ -n "$ui" ]] && say "  similar images (web page)            $GATEWAY_URL/ui"
    say "  gateway health / metrics             $GATEWAY_URL/healthz  $GATEWAY_URL/metrics"
  fi
  if [[ "${WORKER_RUNNING:-0}" == 1 ]]; then
    say "  indexing worker                      log: ${STACK_DIR#"$ROOT"/}/worker.log"
  fi
  say "  Orthanc (PACS, admin only)           http://127.0.0.1:$ORTHANC_HTTP_PORT"
  say "  Redis                                redis://127.0.0.1:$REDIS_PORT"
  say "  Elasticsearch                        http://127.0.0.1:$ES_PORT"
  say "Ctrl-C stops what this started."
  echo
}

main() {
  install_traps
  mkdir -p "$STACK_DIR"
  claim_stack_dir
  ensure_node_deps
  stack install
  start_service orthanc
  start_service redis
  start_service es
  start_gateway
  start_ohif # fetches the viewer on first use: runs while the worker loads its model
  start_worker
  load_sample_data
  wait_ohif
  report_indexing
  print_urls
  if ((${#proc_pids[@]} == 0)); then
    say "no foreground process to wait for (no gateway yet); waiting for Ctrl-C"
    while :; do sleep 3600 8>&- & wait $! || true; done
  fi
  # Wait until one of our processes ends (or Ctrl-C): then stop everything.
  local rc=0
  wait -n "${proc_pids[@]}" || rc=$?
  say "a process ended (exit $rc); shutting down"
  return "$rc"
}

# Sourced (tests), it only defines the functions.
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
