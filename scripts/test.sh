#!/usr/bin/env bash
# THE test command (`npm test`, and `.ci/run` through it).
#
#   bash scripts/test.sh                 everything: typecheck, unit,
#                                        integration, e2e, model tests
#   bash scripts/test.sh FILE.test.ts…   only those node:test files, with the
#                                        same stack (for quick, targeted runs)
#
# 1. Installs what is missing: node_modules (npm ci), the stack's Debian
#    packages and Elasticsearch (deploy/local/stack.sh install), the model
#    tests' Python requirements at the versions models/train/constraints.txt
#    pins, Chromium when there are e2e tests.
# 2. Starts a private test stack on test ports, state in .stack/test (wiped
#    first): Orthanc with DICOM, a second Orthanc with basic auth, Redis,
#    Elasticsearch. Exports their URLs as CBMIR_TEST_* (test/helpers/stack.ts
#    reads them), and stops all of it on exit, whatever happens.
# 3. Runs the suites, then prints one closing line `N passed, N failed,
#    N skipped` summed over all of them (a failed step such as the typecheck
#    or the stack start counts as one failure). Exit 0 only if nothing failed.
#
# Ports (override if they are taken): CBMIR_TEST_ORTHANC_PORT [18042],
# CBMIR_TEST_ORTHANC_DICOM_PORT [14242], CBMIR_TEST_ORTHANC_AUTH_PORT [18043],
# CBMIR_TEST_REDIS_PORT [16379], CBMIR_TEST_ES_PORT [19200].
# CBMIR_TEST_KEEP_STACK=1 leaves the stack running and reuses it next time
# (no wipe), for fast local iterations; stop it with
#   CBMIR_STACK_DIR=.stack/test bash deploy/local/stack.sh stop all
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
# The stack's services must not inherit the lock on the stack dir (fd 9).
stack() { bash "$ROOT/deploy/local/stack.sh" "$@" 9>&-; }

ARTIFACTS="${CBMIR_TEST_ARTIFACTS:-$ROOT/test-artifacts}"
LOGS="$ARTIFACTS/logs"
mkdir -p "$LOGS"

passed=0
failed=0
skipped=0
failures=()

say() { printf '[test] %s\n' "$*"; }
step_failed() { # name: a step that is not a test suite failed; counts as one failure
  failed=$((failed + 1))
  failures+=("$1")
  say "FAILED: $1"
}

summary() {
  echo
  say "results: $passed passed, $failed failed, $skipped skipped"
  ((${#failures[@]})) && say "failed: ${failures[*]}"
  # The closing line CI reads: alone on its line, nothing after it.
  echo "$passed passed, $failed failed, $skipped skipped"
}

# --- 1. install what is missing ----------------------------------------------

has_tests() { [[ -d "$1" ]] && [[ -n "$(find "$1" -type f -name '*.test.ts' -print -quit 2>/dev/null)" ]]; }

install_deps() {
  # npm writes node_modules/.package-lock.json only when an install completes: an interrupted
  # npm ci, or a package-lock.json changed since (a pull), installs again.
  if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    say "node_modules missing or older than package-lock.json: npm ci"
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund || return 1
  fi
  stack install || return 1
  if [[ -f models/train/requirements.txt && -z "${CBMIR_TEST_ONLY_FILES:-}" ]]; then
    # Exact versions from the constraints file, so a fresh machine tests what the
    # developers' machines test. Checking installed versions takes <1 s; pip itself
    # takes ~10 s even when it has nothing to do.
    # What the interpreter lacks goes into the project's .venv (it sees the interpreter's own
    # packages), never into the interpreter itself: a developer's other torch stays as it is.
    local py_req=(-c models/train/constraints.txt -r models/train/requirements.txt)
    local py=python3
    [[ -x .venv/bin/python3 ]] && py=.venv/bin/python3
    if ! "$py" scripts/py-requirements-met.py "${py_req[@]}"; then
      [[ -x .venv/bin/python3 ]] || python3 -m venv --system-site-packages .venv || return 1
      say "Python packages missing or at other versions: installing the pinned ones into .venv"
      .venv/bin/python3 -m pip install -q --disable-pip-version-check "${py_req[@]}" || return 1
    fi
  fi
  if has_tests test/e2e; then
    bash -c "source '$ROOT/deploy/local/common.sh' && apt_ensure chromium" || return 1
  fi
  return 0
}

# --- 2. the test stack ----------------------------------------------------------

export CBMIR_STACK_DIR="${CBMIR_TEST_STACK_DIR:-$ROOT/.stack/test}"
private_stack_dir=0

# Several people may run the tests in one checkout at once: each run holds a
# lock on its stack dir. When .stack/test is in use, this run takes a private
# one (.stack/test-PID, removed afterwards) and, through pick_port, free ports.
lock_stack_dir() {
  mkdir -p "$(dirname "$CBMIR_STACK_DIR")"
  exec 9>>"$CBMIR_STACK_DIR.lock"
  if ! flock -n 9; then
    say "${CBMIR_STACK_DIR#"$ROOT"/} is in use by another test run; using a private stack"
    export CBMIR_STACK_DIR="$CBMIR_STACK_DIR-$$"
    private_stack_dir=1
    LOGS="$ARTIFACTS/logs-$$"
    mkdir -p "$LOGS"
    exec 9>>"$CBMIR_STACK_DIR.lock"
    flock -n 9 || return 1
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A test port: the variable's value when set (used as is: a busy one fails the
# start with the owner's name); otherwise the default, or when a developer's
# own services hold it, the next free one in steps of 100 (printed).
pick_port() {
  local var="$1" default="$2" p i
  if [[ -n "${!var:-}" ]]; then echo "${!var}"; return; fi
  p=$default
  # A private stack starts at its own offset, so that runs started together
  # do not pick the same free port before either has bound it.
  ((private_stack_dir)) && p=$((default + 100 * (1 + $$ % 40)))
  for ((i = 0; i < 20; i++)); do
    if ! port_busy "$p"; then
      ((p != default)) && say "using port $p for $var (default $default)" >&2
      echo "$p"
      return
    fi
    p=$((p + 100))
  done
  echo "$default"
}

ORTHANC_AUTH_CRED="${CBMIR_TEST_ORTHANC_AUTH:-cbmir-test:not-a-secret-$$}"
stack_started=0
es_job=

# Elasticsearch's state dir is in /var/lib/cbmir when the checkout is out of its user's reach
# (elasticsearch.sh): `reset` deletes it too, even when an earlier wipe lost the link to it.
wipe_stack_dir() {
  stack reset >/dev/null 2>&1 || true
  rm -rf "$CBMIR_STACK_DIR"
}

stop_stack() {
  # Interrupted while Elasticsearch was still starting: its pid file does not exist yet, so
  # `stop` could not find it; let the start finish, then stop it with the rest.
  if [[ -n "$es_job" ]]; then
    wait "$es_job" 2>/dev/null || true
    es_job=
  fi
  ((stack_started)) || return 0
  if [[ "${CBMIR_TEST_KEEP_STACK:-0}" == 1 ]]; then
    say "CBMIR_TEST_KEEP_STACK=1: leaving the test stack running (state in $CBMIR_STACK_DIR)"
    return 0
  fi
  say "stopping the test stack"
  stack stop all >"$LOGS/stack-stop.log" 2>&1 || cat "$LOGS/stack-stop.log"
  stack_started=0
  if ((private_stack_dir)); then
    wipe_stack_dir
    rm -rf "$CBMIR_STACK_DIR.lock"
  fi
}

start_stack() {
  stack_started=1
  lock_stack_dir || { say "cannot lock a stack dir"; return 1; }
  local ports_file="$CBMIR_STACK_DIR/test-ports.env"
  if [[ "${CBMIR_TEST_KEEP_STACK:-0}" == 1 && -f "$ports_file" ]]; then
    # Reuse the kept stack: its ports are busy because it holds them.
    # shellcheck disable=SC1090
    source "$ports_file"
  else
    # A run that was killed may have left its services up: stop, then wipe.
    stack stop all >/dev/null 2>&1 || true
    wipe_stack_dir
    ORTHANC_PORT="$(pick_port CBMIR_TEST_ORTHANC_PORT 18042)"
    ORTHANC_DICOM_PORT_T="$(pick_port CBMIR_TEST_ORTHANC_DICOM_PORT 14242)"
    ORTHANC_AUTH_PORT="$(pick_port CBMIR_TEST_ORTHANC_AUTH_PORT 18043)"
    REDIS_PORT_T="$(pick_port CBMIR_TEST_REDIS_PORT 16379)"
    ES_PORT_T="$(pick_port CBMIR_TEST_ES_PORT 19200)"
    mkdir -p "$CBMIR_STACK_DIR"
    local v
    for v in ORTHANC_PORT ORTHANC_DICOM_PORT_T ORTHANC_AUTH_PORT REDIS_PORT_T ES_PORT_T ORTHANC_AUTH_CRED; do
      printf '%s=%q\n' "$v" "${!v}"
    done >"$ports_file"
    chmod 600 "$ports_file"
  fi
  say "starting the test stack (state in ${CBMIR_STACK_DIR#"$ROOT"/})"
  # Elasticsearch takes the longest (~30 s on 2 cores): start it first, in
  # parallel with the rest.
  ES_PORT="$ES_PORT_T" stack start es >"$LOGS/stack-es.log" 2>&1 &
  es_job=$!
  local ok=0
  ORTHANC_NAME=orthanc ORTHANC_HTTP_PORT="$ORTHANC_PORT" ORTHANC_DICOM=1 ORTHANC_DICOM_PORT="$ORTHANC_DICOM_PORT_T" \
    ORTHANC_STABLE_AGE=2 stack start orthanc || ok=1
  ((ok == 0)) && { ORTHANC_NAME=orthanc-auth ORTHANC_HTTP_PORT="$ORTHANC_AUTH_PORT" ORTHANC_USERS="$ORTHANC_AUTH_CRED" \
    stack start orthanc || ok=1; }
  ((ok == 0)) && { REDIS_PORT="$REDIS_PORT_T" stack start redis || ok=1; }
  wait "$es_job" || ok=1
  es_job=
  cat "$LOGS/stack-es.log"
  return "$ok"
}

export_stack_env() {
  export CBMIR_TEST_ORTHANC_URL="http://127.0.0.1:$ORTHANC_PORT"
  export CBMIR_TEST_ORTHANC_DICOM_PORT="$ORTHANC_DICOM_PORT_T"
  export CBMIR_TEST_ORTHANC_AET=ORTHANC
  export CBMIR_TEST_ORTHANC_AUTH_URL="http://127.0.0.1:$ORTHANC_AUTH_PORT"
  export CBMIR_TEST_ORTHANC_AUTH="$ORTHANC_AUTH_CRED"
  export CBMIR_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT_T"
  export CBMIR_TEST_ES_URL="http://127.0.0.1:$ES_PORT_T"
  export CBMIR_TEST_ARTIFACTS="$ARTIFACTS"
  if [[ -x /usr/bin/chromium ]]; then export CBMIR_CHROMIUM="${CBMIR_CHROMIUM:-/usr/bin/chromium}"; fi
}

# --- 3. suites --------------------------------------------------------------------

# Add the counts of a node:test TAP file; a run that died before its summary
# (or exited non-zero with no failure counted) counts as one failure.
count_tap() {
  local name="$1" tap="$2" rc="$3" p f s c t
  p="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)"
  f="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)"
  c="$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)"
  s="$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)"
  t="$(sed -n 's/^# todo \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -1)"
  if [[ -z "$p" || -z "$f" ]]; then
    step_failed "$name (no test summary, exit $rc)"
    return
  fi
  passed=$((passed + p))
  failed=$((failed + f + ${c:-0}))
  skipped=$((skipped + ${s:-0} + ${t:-0}))
  say "$name: $p passed, $((f + ${c:-0})) failed, $((${s:-0} + ${t:-0})) skipped"
  if ((f + ${c:-0} > 0)); then
    failures+=("$name")
  elif ((rc != 0)); then
    step_failed "$name (exit $rc)"
  fi
}

run_node_suite() { # name, folders or files...
  local name="$1" tap="$LOGS/$1.tap" rc
  shift
  say "== $name"
  NODE_TESTS_TAP="$tap" bash scripts/node-tests.sh "$@"
  rc=$?
  count_tap "$name" "$tap" "$rc"
}

# pytest's closing line, e.g. "==== 12 passed, 1 failed, 2 skipped in 3.4s ====".
# run_tests.sh belongs to the model code; its exit status and that line count.
run_model_tests() {
  local log="$LOGS/models.log" rc line n
  say "== models (bash models/train/run_tests.sh)"
  bash models/train/run_tests.sh 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # With or without the ==== decoration (pytest -q drops it).
  line="$(grep -E '(passed|failed|errors?|skipped|no tests ran).* in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$log" | tail -1)"
  if [[ -z "$line" ]]; then
    if ((rc == 0)); then say "models: exit 0, no pytest summary"; else step_failed "models (exit $rc, no pytest summary)"; fi
    return
  fi
  local p=0 f=0 s=0
  n="$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')" && p=$n
  n="$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')" && f=$n
  n="$(grep -oE '[0-9]+ errors?' <<<"$line" | grep -oE '[0-9]+')" && f=$((f + n))
  for n in $(grep -oE '[0-9]+ (skipped|xfailed|xpassed|deselected)' <<<"$line" | grep -oE '^[0-9]+'); do s=$((s + n)); done
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  say "models: $p passed, $f failed, $s skipped"
  if ((f > 0)); then failures+=(models)
  # pytest exits 5 when it collected nothing: not a failure of ours.
  elif ((rc != 0 && rc != 5)); then step_failed "models (exit $rc)"
  fi
}

main() {
  local only=("$@")
  ((${#only[@]})) && export CBMIR_TEST_ONLY_FILES=1

  say "installing what is missing"
  install_deps 2>&1 | tee "$LOGS/install.log"
  if ((PIPESTATUS[0] != 0)); then
    step_failed "install (log: ${LOGS#"$ROOT"/}/install.log)"
    summary
    return 1
  fi

  trap 'stop_stack' EXIT
  trap 'say "interrupted"; exit 130' INT TERM
  if ! start_stack; then
    step_failed "test stack start"
    stop_stack
    summary
    return 1
  fi
  export_stack_env

  if ((${#only[@]})); then
    run_node_suite selected "${only[@]}"
  else
    say "== typecheck"
    npm run -s typecheck || step_failed typecheck
    say "== lint"
    npm run -s lint || step_failed lint
    has_tests test/unit && run_node_suite unit test/unit
    has_tests test/integration && run_node_suite integration test/integration
    has_tests test/e2e && run_node_suite e2e test/e2e
    [[ -f models/train/run_tests.sh ]] && run_model_tests
  fi

  # Stop before the summary so that the closing line is the last one.
  stop_stack
  summary
  ((failed == 0))
}

main "$@"
