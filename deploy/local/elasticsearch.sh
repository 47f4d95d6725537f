# shellcheck shell=bash
# Elasticsearch from the integ-test distribution zip on Maven Central
# (org.elasticsearch.distribution.integ-test-zip:elasticsearch:<ver>:zip): the
# server with only the core modules (transport-netty4, x-pack-core,
# x-pack-security, apm). dense_vector fields and kNN search are part of the
# server itself, which is all the vector index needs.
# Sourced by stack.sh.
#
# Maven Central has no 9.x build of this artifact (newest: 8.19.21, checked
# 2026-11-28 in maven-metadata.xml), hence the 8.x default; see
# docs/operations.md for what that means for the @elastic/elasticsearch client.
#
# Settings (environment):
#   ES_VERSION    distribution version (8.19.21)
#   ES_PORT       HTTP port on 127.0.0.1 (9200)
#   ES_TRANSPORT_PORT  transport port or range on 127.0.0.1 (9300-9399)
#   ES_HEAP       heap size for -Xms/-Xmx, e.g. 512m, 1g (Xms 512m, Xmx 1g)
#   ES_JAVA_HOME  JDK to run on (default: temurin-25 if present, else newest suitable)
#
# Elasticsearch refuses to run as root: when root, it runs as the system user
# $CBMIR_SERVICE_USER (created on demand), which owns its state directory.

ES_VERSION="${ES_VERSION:-8.19.21}"
ES_ARTIFACT="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"

_es_vars() {
  ES_PORT="${ES_PORT:-9200}"
  if [[ "${1:-}" == saved && -f "$STACK_DIR/es.instance.env" ]]; then
    # shellcheck disable=SC1091
    source "$STACK_DIR/es.instance.env"
  fi
  ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300-9399}"
  # Both go into elasticsearch.yml / jvm.options as they are: check them here, by name.
  [[ "$ES_TRANSPORT_PORT" =~ ^[0-9]+(-[0-9]+)?$ ]] || die "ES_TRANSPORT_PORT must be a port or a range such as 9300-9399, got '$ES_TRANSPORT_PORT'"
  check_port ES_TRANSPORT_PORT "${ES_TRANSPORT_PORT%-*}"
  check_port ES_TRANSPORT_PORT "${ES_TRANSPORT_PORT#*-}"
  [[ -z "${ES_HEAP:-}" || "$ES_HEAP" =~ ^[0-9]+[kmgKMG]?$ ]] || die "ES_HEAP must be a JVM size such as 512m or 2g, got '$ES_HEAP'"
  ES_HOME="$CBMIR_CACHE_DIR/elasticsearch-$ES_VERSION"
  ES_URL="http://127.0.0.1:$ES_PORT"
  ES_LAUNCHER_PIDFILE="$STACK_DIR/es.launcher.pid"
  ES_LOCATION_FILE="$STACK_DIR/es.location"
  _es_paths "$STACK_DIR/es"
}

# Paths inside the ES state dir; a symlinked one (see _es_prepare_dir) is
# resolved, because the service user may not be able to follow the link.
_es_paths() {
  ES_DIR="$1"
  [[ -L "$ES_DIR" ]] && ES_DIR="$(readlink -f "$ES_DIR")"
  ES_PIDFILE="$ES_DIR/es.pid"
  ES_LOG="$ES_DIR/logs/cbmir-es.log"
  ES_LAUNCH_LOG="$ES_DIR/launcher.log"
}

# Major version the JDK must have at least for this ES version.
_es_min_java() { [[ "${ES_VERSION%%.*}" -ge 9 ]] && echo 21 || echo 17; }

_java_major() { # JAVA_HOME → major version number
  "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -1 | cut -d. -f1
}

# Pick the JDK: $ES_JAVA_HOME, else Temurin 25, else the newest suitable in /usr/lib/jvm.
_es_java_home() {
  local min best="" best_v=0 d v
  min="$(_es_min_java)"
  if [[ -n "${ES_JAVA_HOME:-}" ]]; then
    [[ -x "$ES_JAVA_HOME/bin/java" ]] || die "ES_JAVA_HOME=$ES_JAVA_HOME has no bin/java"
    echo "$ES_JAVA_HOME"
    return
  fi
  if [[ -x /usr/lib/jvm/temurin-25-jdk-amd64/bin/java ]]; then
    echo /usr/lib/jvm/temurin-25-jdk-amd64
    return
  fi
  for d in /usr/lib/jvm/*/; do
    d="${d%/}"
    [[ -x "$d/bin/java" && ! -L "$d" ]] || continue
    v="$(_java_major "$d")"
    [[ "$v" =~ ^[0-9]+$ ]] || continue
    if ((v > best_v)); then best_v=$v; best="$d"; fi
  done
  ((best_v >= min)) || die "Elasticsearch $ES_VERSION needs Java $min+; found none in /usr/lib/jvm (set ES_JAVA_HOME)"
  echo "$best"
}

es_install() {
  _es_vars
  apt_ensure unzip curl
  # The machine's own Maven (not always a Debian package) is fine.
  command -v mvn >/dev/null 2>&1 || apt_ensure maven
  mkdir -p "$CBMIR_CACHE_DIR"
  # Two first runs at once (npm test beside npm start) would each replace the other's
  # freshly unpacked home (rm -rf, mv) while it starts from it: one unpacks, the other waits.
  local lock
  exec {lock}>>"$CBMIR_CACHE_DIR/.elasticsearch-$ES_VERSION.lock"
  flock -w 900 "$lock" || die "elasticsearch: another install held $CBMIR_CACHE_DIR/.elasticsearch-$ES_VERSION.lock for 15 min"
  if [[ -x "$ES_HOME/bin/elasticsearch" ]]; then
    log "elasticsearch: $ES_VERSION already unpacked in $ES_HOME"
  else
    _es_fetch_and_unpack
  fi
  exec {lock}>&-
  local jh
  jh="$(_es_java_home)"
  log "elasticsearch: will run on $jh (Java $(_java_major "$jh"))"
  [[ $EUID -eq 0 ]] && ensure_service_user
  return 0
}

_es_fetch_and_unpack() {
  local repo="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}" zip
  zip="$repo/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
  if [[ ! -s "$zip" ]]; then
    log "elasticsearch: fetching $ES_ARTIFACT from Maven Central"
    # -C: a checksum mismatch fails the download (Maven's default policy only warns).
    mvn -B -q -C -Dmaven.repo.local="$repo" dependency:get -Dartifact="$ES_ARTIFACT" -Dtransitive=false >&2 \
      || die "mvn could not fetch $ES_ARTIFACT (Maven Central has no 9.x build of this artifact; ES_VERSION must be one listed in its maven-metadata.xml)"
  fi
  [[ -s "$zip" ]] || die "expected $zip after mvn dependency:get"
  log "elasticsearch: unpacking into $ES_HOME"
  local tmp
  tmp="$(mktemp -d "$CBMIR_CACHE_DIR/.unpack.XXXXXX")"
  # A zip damaged in the Maven cache since its download would fail every later run: drop
  # it, so the next run fetches it again.
  unzip -q "$zip" -d "$tmp" || { rm -rf "$tmp" "$zip"; die "unzip $zip failed (removed from the cache; run again to fetch it anew)"; }
  rm -rf "$ES_HOME"
  mv "$tmp/elasticsearch-$ES_VERSION" "$ES_HOME"
  rm -rf "$tmp"
  chmod -R a+rX "$ES_HOME"
}

# ES state must be writable by the service user. If the repository sits below
# a directory that user cannot enter (e.g. /root, mode 0700), the state lives
# in /var/lib/cbmir/<hash> instead, $STACK_DIR/es is a symlink to it, and
# $STACK_DIR/es.location records it.
_es_alt_dir() { echo "/var/lib/cbmir/es-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)"; }

_es_prepare_dir() {
  mkdir -p "$STACK_DIR"
  local link="$STACK_DIR/es"
  if [[ $EUID -eq 0 ]]; then
    [[ -e "$link" || -L "$link" ]] || mkdir -p "$link"
    if [[ ! -L "$link" ]]; then
      chown -R "$CBMIR_SERVICE_USER:" "$link/" 2>/dev/null || true
      as_service_user test -w "$link/" || _es_link_alt_dir "$link"
    elif [[ ! -f "$ES_LOCATION_FILE" ]]; then
      readlink -f "$link" >"$ES_LOCATION_FILE" # linked before the record existed
    fi
    _es_paths "$link"
    chown -R "$CBMIR_SERVICE_USER:" "$ES_DIR/"
    as_service_user test -w "$ES_DIR/" || die "$CBMIR_SERVICE_USER cannot write $ES_DIR"
    as_service_user test -r "$ES_HOME/bin/elasticsearch" || die "$CBMIR_SERVICE_USER cannot read $ES_HOME (set CBMIR_CACHE_DIR to a directory readable by it)"
  else
    mkdir -p "$link"
    _es_paths "$link"
  fi
}

_es_link_alt_dir() { # link
  local link="$1" alt
  alt="$(_es_alt_dir)"
  log "elasticsearch: $CBMIR_SERVICE_USER cannot reach $link; keeping its state in $alt"
  # Move an index that an earlier start (as another user) left in $link, never delete it.
  if [[ -n "$(ls -A "$link" 2>/dev/null)" ]]; then
    [[ -e "$alt" ]] && die "elasticsearch: both $link and $alt hold state; move one of them away"
    mkdir -p "${alt%/*}"
    mv "$link" "$alt"
    chown -R "$CBMIR_SERVICE_USER:" "$alt"
  else
    # A state dir created anew (the old one deleted) must not silently get the old index back:
    # it is keyed with a patient-key secret that may have been deleted with it.
    if [[ -n "$(ls -A "$alt" 2>/dev/null)" && ! -f "$ES_LOCATION_FILE" ]]; then
      die "elasticsearch: $alt holds the index of an earlier $STACK_DIR, whose link $link and record $ES_LOCATION_FILE are gone (the state dir was deleted).
  To start afresh (deletes that index):  CBMIR_STACK_DIR=$(printf %q "$STACK_DIR") bash deploy/local/stack.sh reset
  To keep it:  ln -s $(printf %q "$alt") $(printf %q "$link") && echo $(printf %q "$alt") >$(printf %q "$ES_LOCATION_FILE")"
    fi
    rm -rf "$link"
  fi
  mkdir -p "$alt"
  chmod 755 "${alt%/*}"
  ln -sfn "$alt" "$link"
  printf '%s\n' "$alt" >"$ES_LOCATION_FILE"
}

# Delete this stack's Elasticsearch state, its directory under /var/lib/cbmir included
# (stopped first). Only this stack's own alt dir is deleted, whatever the link points to.
es_reset() {
  es_stop
  local alt
  alt="$(_es_alt_dir)"
  if [[ -L "$STACK_DIR/es" && "$(readlink -f "$STACK_DIR/es")" != "$alt" ]]; then
    warn "elasticsearch: $STACK_DIR/es links to $(readlink -f "$STACK_DIR/es"), not to $alt: removing the link only"
  fi
  [[ -e "$alt" ]] && { log "elasticsearch: deleting $alt"; rm -rf "$alt"; }
  rm -rf "$STACK_DIR/es" "$ES_LOCATION_FILE" "$STACK_DIR/es.instance.env" "$ES_LAUNCHER_PIDFILE"
}

_es_write_config() {
  local conf="$ES_DIR/config" heap_min heap_max
  heap_min="${ES_HEAP:-512m}"
  heap_max="${ES_HEAP:-1g}"
  # Start from the distribution's config (jvm.options, log4j2) once; ES writes
  # its keystore there, so it must not be the shared cached copy.
  if [[ ! -f "$conf/jvm.options" ]]; then
    mkdir -p "$conf"
    cp -R "$ES_HOME/config/." "$conf/"
  fi
  cat >"$conf/elasticsearch.yml" <<EOF
# Generated by deploy/local/elasticsearch.sh; edits are overwritten on start.
cluster.name: cbmir-es
node.name: $(_es_node_name)
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
discovery.type: single-node
path.data: $ES_DIR/data
path.logs: $ES_DIR/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
# Tests delete their indices by pattern (cbmir-test-*).
action.destructive_requires_name: false
EOF
  mkdir -p "$conf/jvm.options.d"
  printf -- '-Xms%s\n-Xmx%s\n' "$heap_min" "$heap_max" >"$conf/jvm.options.d/heap.options"
  mkdir -p "$ES_DIR/data" "$ES_DIR/logs" "$ES_DIR/tmp"
  [[ $EUID -eq 0 ]] && chown -R "$CBMIR_SERVICE_USER:" "$ES_DIR/"
  return 0
}

# Node name unique to this state dir, so readiness cannot be fooled by another
# stack's Elasticsearch that happens to answer on the same port.
_es_node_name() { echo "cbmir-es-$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)"; }

_es_ready() {
  curl -fsS -m 3 "$ES_URL/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1 &&
    curl -fsS -m 3 "$ES_URL/_nodes/_local?filter_path=nodes.*.name" 2>/dev/null | grep -q "\"$(_es_node_name)\""
}

es_start() {
  _es_vars
  local pid
  if pid="$(read_pid "$ES_PIDFILE" java)"; then
    log "elasticsearch: already running (pid $pid) at $ES_URL"
    return 0
  fi
  [[ -x "$ES_HOME/bin/elasticsearch" ]] || die "Elasticsearch $ES_VERSION is not unpacked in $ES_HOME: run 'bash deploy/local/stack.sh install' first"
  [[ $EUID -eq 0 ]] && ensure_service_user
  check_port ES_PORT "$ES_PORT"
  require_free_port elasticsearch "$ES_PORT"
  local jh
  jh="$(_es_java_home)"
  _es_prepare_dir
  _es_write_config
  local v
  for v in ES_PORT ES_TRANSPORT_PORT ES_HEAP; do printf '%s=%q\n' "$v" "${!v:-}"; done >"$STACK_DIR/es.instance.env"
  rm -f "$ES_PIDFILE"
  log "elasticsearch: starting $ES_VERSION on $ES_URL (Java $(_java_major "$jh"), heap ${ES_HEAP:-512m..1g})"
  # -d: the launcher returns once the node has started (or failed); -p: pid
  # file of the server JVM itself, which is what stop signals.
  # Tagged, so a stop can tell this launcher from whatever process later gets its pid number.
  setsid env CBMIR_RUN_TAG="$STACK_DIR/es.launcher" bash -c "$(declare -f as_service_user); CBMIR_SERVICE_USER=$(printf %q "$CBMIR_SERVICE_USER"); \
    as_service_user env ES_JAVA_HOME=$(printf %q "$jh") ES_PATH_CONF=$(printf %q "$ES_DIR/config") \
      ES_TMPDIR=$(printf %q "$ES_DIR/tmp") $(printf %q "$ES_HOME/bin/elasticsearch") -d -p $(printf %q "$ES_PIDFILE")" \
    >"$ES_LAUNCH_LOG" 2>&1 </dev/null &
  local launcher=$! deadline=$((SECONDS + CBMIR_READY_TIMEOUT_S)) rc
  # Until the server JVM writes es.pid (seconds later), the launcher is all a stop can find.
  echo "$launcher" >"$ES_LAUNCHER_PIDFILE"
  while :; do
    if _es_ready; then break; fi
    if ! pid_alive "$launcher"; then
      wait "$launcher" && rc=0 || rc=$?
      if ((rc != 0)) || { [[ -s "$ES_PIDFILE" ]] && ! read_pid "$ES_PIDFILE" java >/dev/null; }; then
        printf '[stack] ERROR: elasticsearch failed to start (launcher exit %s). Last lines of %s and %s:\n' "$rc" "$ES_LAUNCH_LOG" "$ES_LOG" >&2
        tail -n 20 "$ES_LAUNCH_LOG" >&2 2>/dev/null || true
        tail -n 30 "$ES_LOG" >&2 2>/dev/null || true
        es_stop >/dev/null 2>&1
        rm -f "$ES_LAUNCHER_PIDFILE"
        return 1
      fi
    fi
    if ((SECONDS >= deadline)); then
      printf '[stack] ERROR: elasticsearch not ready after %ss. Last lines of %s:\n' "$CBMIR_READY_TIMEOUT_S" "$ES_LOG" >&2
      tail -n 30 "$ES_LOG" >&2 2>/dev/null || tail -n 20 "$ES_LAUNCH_LOG" >&2 2>/dev/null || true
      kill "$launcher" 2>/dev/null || true
      es_stop >/dev/null 2>&1
      return 1
    fi
    sleep 1
  done
  # The launcher has done its job (es.pid names the server): a stale pid file would outlive it.
  rm -f "$ES_LAUNCHER_PIDFILE"
  pid="$(read_pid "$ES_PIDFILE" java || echo '?')"
  log "elasticsearch: ready (pid $pid) at $ES_URL"
}

es_stop() {
  _es_vars saved
  _es_await_launcher
  stop_pidfile elasticsearch "$ES_PIDFILE" 60 java
  rm -f "$ES_LAUNCHER_PIDFILE"
}

# A start interrupted (Ctrl-C on its caller) leaves its launcher running in its own session:
# the server it starts writes es.pid only later. Wait (bounded) for that pid, or for the
# launcher to give up, so stop finds the server instead of reporting "not running".
_es_await_launcher() {
  local launcher i
  # Only the launcher this stack started (its tag), never another process that reuses the number.
  launcher="$(app_pid es.launcher)" || return 0
  read_pid "$ES_PIDFILE" java >/dev/null && return 0
  log "elasticsearch: a start is in progress (launcher pid $launcher); waiting for its server to stop it"
  for ((i = 0; i < CBMIR_READY_TIMEOUT_S * 10; i++)); do
    read_pid "$ES_PIDFILE" java >/dev/null && return 0
    pid_alive "$launcher" || return 0
    sleep 0.1
  done
  warn "elasticsearch: no server pid after ${CBMIR_READY_TIMEOUT_S}s; stopping the launcher's session"
  kill -TERM -- "-$launcher" 2>/dev/null || true
}

es_status() {
  _es_vars saved
  local pid
  if pid="$(read_pid "$ES_PIDFILE" java)"; then
    if _es_ready; then
      local ver
      # The integ-test build has no GET / (its rest-root module is absent).
      ver="$(curl -fsS -m 2 "$ES_URL/_nodes/_local?filter_path=nodes.*.version" 2>/dev/null | sed -n 's/.*"version" *: *"\([^"]*\)".*/\1/p' | head -1)"
      echo "elasticsearch: running (pid $pid) $ES_URL version=${ver:-?}"
    else
      echo "elasticsearch: running (pid $pid) but not answering on $ES_URL"
      return 1
    fi
  else
    echo "elasticsearch: stopped"
    return 3
  fi
}
