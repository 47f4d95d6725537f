# shellcheck shell=bash
# Orthanc 1.10 (Debian) + DICOMweb plugin 1.7, run as a plain background
# process with a generated configuration. Sourced by stack.sh.
#
# Settings (environment):
#   ORTHANC_NAME         instance name; state in $STACK_DIR/$ORTHANC_NAME (orthanc)
#   ORTHANC_HTTP_PORT    HTTP port, REST API and /dicom-web/ (8042)
#   ORTHANC_DICOM        1 = enable the DICOM (DIMSE) server, for C-STORE tests (0)
#   ORTHANC_DICOM_PORT   DICOM port when enabled (4242)
#   ORTHANC_AET          Orthanc's own AE title (ORTHANC)
#   ORTHANC_USERS        "user:pass[,user:pass…]" turns HTTP basic auth on (unset: off)
#   ORTHANC_PUBLIC_HOST  host:port the DICOMweb plugin writes into RetrieveURL /
#                        BulkDataURI (127.0.0.1:$ORTHANC_HTTP_PORT); "-" = derive
#                        from each request's Host header instead
#   ORTHANC_STABLE_AGE   seconds before a study counts as stable (60)
#   ORTHANC_HTTP_THREADS HTTP worker threads (50)
#   ORTHANC_CONCURRENT_JOBS jobs run in parallel (2)

ORTHANC_BIN="${ORTHANC_BIN:-/usr/sbin/Orthanc}"
ORTHANC_DICOMWEB_PLUGIN="${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}"

_orthanc_vars() {
  ORTHANC_NAME="${ORTHANC_NAME:-orthanc}"
  [[ "$ORTHANC_NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "ORTHANC_NAME must be letters, digits, - or _ (got '$ORTHANC_NAME')"
  # A started instance remembers its settings, so stop/status need no env.
  if [[ "${1:-}" == saved && -f "$STACK_DIR/$ORTHANC_NAME/instance.env" ]]; then
    # shellcheck disable=SC1090
    source "$STACK_DIR/$ORTHANC_NAME/instance.env"
  fi
  ORTHANC_HTTP_PORT="${ORTHANC_HTTP_PORT:-8042}"
  ORTHANC_DICOM="${ORTHANC_DICOM:-0}"
  ORTHANC_DICOM_PORT="${ORTHANC_DICOM_PORT:-4242}"
  ORTHANC_AET="${ORTHANC_AET:-ORTHANC}"
  ORTHANC_PUBLIC_HOST="${ORTHANC_PUBLIC_HOST:-127.0.0.1:$ORTHANC_HTTP_PORT}"
  ORTHANC_STABLE_AGE="${ORTHANC_STABLE_AGE:-60}"
  ORTHANC_HTTP_THREADS="${ORTHANC_HTTP_THREADS:-50}"
  ORTHANC_CONCURRENT_JOBS="${ORTHANC_CONCURRENT_JOBS:-2}"
  # These go into orthanc.json as they are: a bad one would only show as Orthanc's parse error.
  check_bool01 ORTHANC_DICOM "$ORTHANC_DICOM"
  check_uint ORTHANC_STABLE_AGE "$ORTHANC_STABLE_AGE"
  check_uint ORTHANC_HTTP_THREADS "$ORTHANC_HTTP_THREADS" 1 1000
  check_uint ORTHANC_CONCURRENT_JOBS "$ORTHANC_CONCURRENT_JOBS" 0 1000
  # DICOM AE titles: 1-16 characters, printable, no backslash, not all spaces.
  ((${#ORTHANC_AET} <= 16)) && [[ "$ORTHANC_AET" =~ [^\ ] && "$ORTHANC_AET" != *\\* && ! "$ORTHANC_AET" =~ [[:cntrl:]] ]] ||
    die "ORTHANC_AET must be 1-16 printable characters without '\\' (a DICOM AE title), got '$ORTHANC_AET'"
  ORTHANC_DIR="$STACK_DIR/$ORTHANC_NAME"
  ORTHANC_PIDFILE="$ORTHANC_DIR/orthanc.pid"
  ORTHANC_LOG="$ORTHANC_DIR/orthanc.log"
  ORTHANC_CONFIG="$ORTHANC_DIR/orthanc.json"
  ORTHANC_URL="http://127.0.0.1:$ORTHANC_HTTP_PORT"
}

# JSON string literal of $1 (quotes, backslashes and control characters escaped).
_json_str() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\r'/\\r}"
  s="${s//$'\t'/\\t}"
  printf '"%s"' "$s"
}

# "alice:pw,bob:pw2" → {"alice": "pw", "bob": "pw2"}
_orthanc_users_json() {
  local out="" entry user pass entries
  # Split on commas only: no pathname expansion of a password holding '*' or '?'.
  IFS=, read -ra entries <<<"$ORTHANC_USERS"
  for entry in "${entries[@]}"; do
    [[ "$entry" == *:* ]] || die "ORTHANC_USERS: expected user:password, got an entry without ':'"
    user="${entry%%:*}"
    pass="${entry#*:}"
    [[ -n "$user" && -n "$pass" ]] || die "ORTHANC_USERS: empty user or password"
    out+="${out:+, }$(_json_str "$user"): $(_json_str "$pass")"
  done
  printf '{%s}' "$out"
}

_orthanc_write_config() {
  local auth=false users='{}' dicom=false host_line=""
  if [[ -n "${ORTHANC_USERS:-}" ]]; then auth=true; users="$(_orthanc_users_json)"; fi
  [[ "$ORTHANC_DICOM" == 1 ]] && dicom=true
  # A fixed Host makes the plugin's RetrieveURL/BulkDataURI deterministic
  # (http://127.0.0.1:PORT/dicom-web/…), whatever Host header a proxy sends.
  [[ "$ORTHANC_PUBLIC_HOST" != "-" ]] && host_line="\"Host\": $(_json_str "$ORTHANC_PUBLIC_HOST"),"
  # The file may hold passwords: make it private before writing.
  : >"$ORTHANC_CONFIG"
  chmod 600 "$ORTHANC_CONFIG"
  cat >"$ORTHANC_CONFIG" <<EOF
{
  "Name": $(_json_str "$(_orthanc_id)"),
  "StorageDirectory": $(_json_str "$ORTHANC_DIR/db"),
  "IndexDirectory": $(_json_str "$ORTHANC_DIR/db"),
  "StorageCompression": false,
  "Plugins": [$(_json_str "$ORTHANC_DICOMWEB_PLUGIN")],

  "HttpServerEnabled": true,
  "HttpPort": $ORTHANC_HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": $auth,
  "RegisteredUsers": $users,
  "SslEnabled": false,
  "HttpCompressionEnabled": false,
  "HttpThreadsCount": $ORTHANC_HTTP_THREADS,
  "KeepAlive": true,
  "TcpNoDelay": true,
  "HttpTimeout": 60,
  "HttpRequestTimeout": 60,

  "DicomServerEnabled": $dicom,
  "DicomAet": $(_json_str "$ORTHANC_AET"),
  "DicomPort": $ORTHANC_DICOM_PORT,
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowEcho": true,
  "DicomAlwaysAllowStore": true,
  "DicomModalities": {},

  "ConcurrentJobs": $ORTHANC_CONCURRENT_JOBS,
  "SaveJobs": false,
  "StableAge": $ORTHANC_STABLE_AGE,
  "DeidentifyLogs": true,
  "LogExportedResources": false,
  "OverwriteInstances": false,

  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/",
    "EnableWado": true,
    "WadoRoot": "/wado",
    $host_line
    "Ssl": false,
    "StudiesMetadata": "Full",
    "SeriesMetadata": "Full"
  }
}
EOF
}

orthanc_install() {
  apt_ensure orthanc orthanc-dicomweb dcmtk curl iptables
  [[ -x "$ORTHANC_BIN" ]] || die "Orthanc binary not found at $ORTHANC_BIN after installing the orthanc package"
  [[ -f "$ORTHANC_DICOMWEB_PLUGIN" ]] || die "DICOMweb plugin not found at $ORTHANC_DICOMWEB_PLUGIN"
  # Debian starts its own Orthanc on 8042/4242 from /etc/orthanc; we run ours
  # with our config instead, so keep the packaged service from holding ports.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
    as_root systemctl disable --now orthanc >/dev/null 2>&1 || true
  fi
  if [[ -x /etc/init.d/orthanc ]] && pgrep -u orthanc -x Orthanc >/dev/null 2>&1; then
    log "stopping the packaged Orthanc service (it holds ports 8042/4242)"
    as_root /etc/init.d/orthanc stop >/dev/null 2>&1 || true
  fi
}

# Orthanc's "Name", unique to this state dir: readiness checks that the
# Orthanc answering on the port is this one, not another stack's.
_orthanc_id() { echo "cbmir-$ORTHANC_NAME-$(printf '%s' "$ORTHANC_DIR" | cksum | cut -d' ' -f1)"; }

# curl with the instance's first login, given on stdin (-K -) so it never shows in `ps`.
_orthanc_curl() {
  if [[ -n "${ORTHANC_USERS:-}" ]]; then
    local login="${ORTHANC_USERS%%,*}"
    printf 'user = "%s"\n' "${login//\"/\\\"}" | curl -K - "$@"
  else
    curl "$@"
  fi
}

_orthanc_ready() {
  _orthanc_curl -fsS -m 2 "$ORTHANC_URL/system" 2>/dev/null | grep -q "\"$(_orthanc_id)\"" &&
    _orthanc_curl -fsS -m 2 "$ORTHANC_URL/dicom-web/studies?limit=1" >/dev/null 2>&1
}

orthanc_start() {
  _orthanc_vars
  local pid
  if pid="$(read_pid "$ORTHANC_PIDFILE" Orthanc)"; then
    log "$ORTHANC_NAME: already running (pid $pid) at $ORTHANC_URL"
    return 0
  fi
  [[ -x "$ORTHANC_BIN" ]] || die "$ORTHANC_BIN missing: run 'bash deploy/local/stack.sh install' first"
  check_port ORTHANC_HTTP_PORT "$ORTHANC_HTTP_PORT"
  check_port ORTHANC_DICOM_PORT "$ORTHANC_DICOM_PORT"
  require_free_port "$ORTHANC_NAME HTTP" "$ORTHANC_HTTP_PORT"
  [[ "$ORTHANC_DICOM" == 1 ]] && require_free_port "$ORTHANC_NAME DICOM" "$ORTHANC_DICOM_PORT"
  mkdir -p "$ORTHANC_DIR/db"
  chmod 700 "$ORTHANC_DIR" # the image store: PHI, readable by no other local user
  _orthanc_write_config
  local v
  (umask 077 && for v in ORTHANC_HTTP_PORT ORTHANC_DICOM ORTHANC_DICOM_PORT ORTHANC_AET ORTHANC_PUBLIC_HOST ORTHANC_USERS \
    ORTHANC_STABLE_AGE ORTHANC_HTTP_THREADS ORTHANC_CONCURRENT_JOBS; do
    # The public host derived from the port is saved empty: a restart on another port derives it again.
    if [[ "$v" == ORTHANC_PUBLIC_HOST && "${!v}" == "127.0.0.1:$ORTHANC_HTTP_PORT" ]]; then printf '%s=\n' "$v"; continue; fi
    printf '%s=%q\n' "$v" "${!v:-}"
  done >"$ORTHANC_DIR/instance.env")
  # Confine before listening, so there is no window where it is reachable.
  confine_port "$ORTHANC_HTTP_PORT"
  [[ "$ORTHANC_DICOM" == 1 ]] && confine_port "$ORTHANC_DICOM_PORT"
  log "$ORTHANC_NAME: starting on $ORTHANC_URL$([[ "$ORTHANC_DICOM" == 1 ]] && echo " (DICOM $ORTHANC_AET@127.0.0.1:$ORTHANC_DICOM_PORT)")"
  # setsid: own session, so a Ctrl-C meant for a foreground script does not
  # reach the service; the scripts stop it in order through the pid file.
  setsid "$ORTHANC_BIN" "$ORTHANC_CONFIG" >"$ORTHANC_LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$ORTHANC_PIDFILE"
  if ! wait_ready "$ORTHANC_NAME" "$pid" "$ORTHANC_LOG" "$CBMIR_READY_TIMEOUT_S" _orthanc_ready; then
    orthanc_stop >/dev/null 2>&1
    return 1
  fi
  log "$ORTHANC_NAME: ready (pid $pid) at $ORTHANC_URL, DICOMweb $ORTHANC_URL/dicom-web"
}

orthanc_stop() {
  _orthanc_vars saved
  stop_pidfile "$ORTHANC_NAME" "$ORTHANC_PIDFILE" 30 Orthanc
  # Remove only the rules this instance's start added (its saved settings), and never for a
  # port something still listens on: the rules are per port, and another stack's Orthanc
  # (another CBMIR_STACK_DIR, the default ports) would be left open to the network.
  [[ -f "$ORTHANC_DIR/instance.env" ]] || return 0
  port_in_use "$ORTHANC_HTTP_PORT" || unconfine_port "$ORTHANC_HTTP_PORT"
  if [[ "$ORTHANC_DICOM" == 1 ]] && ! port_in_use "$ORTHANC_DICOM_PORT"; then
    unconfine_port "$ORTHANC_DICOM_PORT"
  fi
  return 0
}

orthanc_status() {
  _orthanc_vars saved
  local pid confined=no
  port_confined "$ORTHANC_HTTP_PORT" && confined=yes
  if pid="$(read_pid "$ORTHANC_PIDFILE" Orthanc)"; then
    if _orthanc_ready; then
      echo "$ORTHANC_NAME: running (pid $pid) $ORTHANC_URL dicom-web=$ORTHANC_URL/dicom-web loopback-only=$confined$([[ -n "${ORTHANC_USERS:-}" ]] && echo " auth=on")"
    else
      echo "$ORTHANC_NAME: running (pid $pid) but not answering on $ORTHANC_URL"
      return 1
    fi
  else
    echo "$ORTHANC_NAME: stopped"
    return 3
  fi
}

# The instances whose server runs now.
orthanc_running_instances() {
  local name
  for name in $(orthanc_instances); do
    read_pid "$STACK_DIR/$name/orthanc.pid" Orthanc >/dev/null && echo "$name"
  done
  return 0
}

# Every Orthanc instance that has state under $STACK_DIR (e.g. orthanc, orthanc-auth).
orthanc_instances() {
  local d
  for d in "$STACK_DIR"/*/; do
    [[ -f "$d/orthanc.json" ]] && basename "$d"
  done
  return 0
}
