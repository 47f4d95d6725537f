# shellcheck shell=bash
# Shared helpers for the local stack scripts (sourced, never run).
#
# Everything here is about running real services as plain background
# processes on 127.0.0.1: pid files, bounded readiness waits that show the
# log tail when they give up, loopback confinement of ports a service cannot
# bind to loopback itself, and installing Debian packages only when missing.

CBMIR_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# State (data, logs, pid files, generated configs) of one stack instance.
# Relative paths are taken from the repository root so every caller agrees.
STACK_DIR="${CBMIR_STACK_DIR:-.stack}"
case "$STACK_DIR" in /*) ;; *) STACK_DIR="$CBMIR_REPO_ROOT/$STACK_DIR" ;; esac
# Downloads unpacked once per machine. The Elasticsearch home must be readable
# by the unprivileged service user, so root does not use /root/.cache (0700).
if [[ -z "${CBMIR_CACHE_DIR:-}" ]]; then
  if [[ $EUID -eq 0 ]]; then CBMIR_CACHE_DIR=/var/cache/cbmir; else CBMIR_CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/cbmir"; fi
fi
# Unprivileged account for services that refuse to run as root (Elasticsearch).
CBMIR_SERVICE_USER="${CBMIR_SERVICE_USER:-cbmir}"
# How long a service may take to become ready before start gives up.
CBMIR_READY_TIMEOUT_S="${CBMIR_READY_TIMEOUT_S:-120}"

# Messages never fail the caller: a closed terminal (EIO) or a reader that went away (EPIPE)
# must not abort a stop half-way under `set -e`.
log() { printf '[stack] %s\n' "$*" >&2 2>/dev/null || true; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2 2>/dev/null || true; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2 2>/dev/null || true; exit 1; }

# Settings are checked here, naming the setting, before they reach a config file or bash
# arithmetic (where `2s` is invalid JSON and `2m` an error that names neither).
check_uint() { # name, value, [min], [max]
  local name="$1" v="$2" min="${3:-0}" max="${4:-999999999}"
  [[ "$v" =~ ^[0-9]{1,9}$ ]] && ((10#$v >= min && 10#$v <= max)) || die "$name must be a whole number from $min to $max, got '$v'"
}
check_bool01() { # name, value
  [[ "$2" == 0 || "$2" == 1 ]] || die "$1 must be 0 or 1, got '$2'"
}
check_uint CBMIR_READY_TIMEOUT_S "$CBMIR_READY_TIMEOUT_S" 1 86400

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else
    warn "need root (or passwordless sudo) for: $*"
    return 1
  fi
}

# apt-get install the packages that are not installed yet. `apt-get update`
# runs only when needed: when the package lists are empty, or when an install
# from the current lists fails (stale lists point at files that are gone).
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "apt-get install ${missing[*]}"
  # Another run installing at the same time holds the dpkg lock: wait for it rather than fail.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    as_root "${apt[@]}" update >&2 || die "apt-get update failed"
  fi
  if ! as_root "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2; then
    log "install failed with the current package lists; running apt-get update and retrying"
    as_root "${apt[@]}" update >&2 || die "apt-get update failed"
    as_root "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
  fi
}

# Create the unprivileged service user if it does not exist (root only).
ensure_service_user() {
  id "$CBMIR_SERVICE_USER" >/dev/null 2>&1 && return 0
  [[ $EUID -eq 0 ]] || die "user $CBMIR_SERVICE_USER is missing and only root can create it"
  log "creating system user $CBMIR_SERVICE_USER"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$CBMIR_SERVICE_USER"
}

# Run a command as the service user when we are root, as ourselves otherwise.
as_service_user() {
  if [[ $EUID -eq 0 ]]; then
    setpriv --reuid="$CBMIR_SERVICE_USER" --regid="$CBMIR_SERVICE_USER" --init-groups --reset-env -- \
      env HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin "$@"
  else
    "$@"
  fi
}

# A zombie counts as gone: where PID 1 does not reap orphans (some containers), a stopped
# process of an earlier run would otherwise look alive forever.
pid_alive() {
  [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
  local st=""
  read -r st <"/proc/$1/stat" 2>/dev/null || true
  st="${st##*) }"
  [[ "${st:0:1}" != Z ]]
}

# Pid recorded in a pid file, printed only if that process still runs and, when
# COMM is given, is that program (/proc/PID/comm): pid files on disk outlive a
# reboot, and the number may since belong to an unrelated process that start
# would take for the service and stop would kill.
read_pid() { # file [comm]
  local f="$1" want="${2:-}" pid
  [[ -s "$f" ]] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  pid_alive "$pid" || return 1
  if [[ -n "$want" && -r "/proc/$pid/comm" && "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$want" ]]; then
    return 1
  fi
  printf '%s\n' "$pid"
}

# Stop the process of a pid file: SIGTERM, then SIGKILL after a grace period.
stop_pidfile() { # name, file, grace seconds, [comm]
  local name="$1" f="$2" grace="${3:-30}" comm="${4:-}" pid i
  if ! pid="$(read_pid "$f" "$comm")"; then
    rm -f "$f"
    log "$name: not running"
    return 0
  fi
  log "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    warn "$name: still running after ${grace}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$f"
}

# SIGTERM to the process group of a session leader (setsid), SIGKILL after a grace period.
stop_group() { # name, pid, grace seconds
  local name="$1" pid="$2" grace="${3:-15}" i
  log "$name: stopping (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  warn "$name: still running after ${grace}s, sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

# --- the processes of `npm start` (deploy/local/run.sh) ------------------------
# The gateway, the worker and the viewer run in sessions of their own, with
# CBMIR_RUN_TAG=<state dir>/<name> in their environment and their pid in
# <state dir>/<name>.pid: after a run that skipped its cleanup (kill -9, OOM
# killer, a lost terminal) they are still found, and stopped by the next
# `npm start` or by `stack.sh stop all`.
RUN_APP_NAMES=(ohif worker gateway) # stop order

# Pid of app NAME of this state dir, if its pid file names a live process that carries its tag
# (a pid file outlives a reboot, and the number may since belong to another process).
app_pid() { # name
  local pid
  pid="$(read_pid "$STACK_DIR/$1.pid")" || return 1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "CBMIR_RUN_TAG=$STACK_DIR/$1" || return 1
  printf '%s\n' "$pid"
}

stop_apps() {
  local name pid
  for name in "${RUN_APP_NAMES[@]}"; do
    if pid="$(app_pid "$name")"; then stop_group "$name" "$pid" 15; fi
    rm -f "$STACK_DIR/$name.pid"
  done
}

# Is something listening on 127.0.0.1:port (or on all interfaces)?
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Who listens on a port, for error messages.
port_owner() {
  command -v ss >/dev/null 2>&1 || { echo "unknown process"; return; }
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -1 || true
}

# Die unless $2 is a TCP port number; $1 names the setting in the message.
check_port() {
  [[ "$2" =~ ^[0-9]+$ ]] && (($2 >= 1 && $2 <= 65535)) || die "$1 must be a port number (1-65535), got '$2'"
}

require_free_port() {
  local name="$1" port="$2"
  if port_in_use "$port"; then
    die "$name: port $port is already in use by $(port_owner "$port"). Stop that process or choose another port (see docs/operations.md)."
  fi
}

# Wait until `check_cmd...` succeeds, at most timeout_s seconds, while the
# process stays alive. On failure print the tail of the log and return 1.
wait_ready() {
  local name="$1" pid="$2" logfile="$3" timeout_s="$4"
  shift 4
  local deadline=$((SECONDS + timeout_s))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
      printf '[stack] ERROR: %s exited during start-up. Last lines of %s:\n' "$name" "$logfile" >&2
      tail -n 40 "$logfile" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
  printf '[stack] ERROR: %s not ready after %ss. Last lines of %s:\n' "$name" "$timeout_s" "$logfile" >&2
  tail -n 40 "$logfile" >&2 2>/dev/null || true
  return 1
}

# --- loopback confinement ---------------------------------------------------
# Orthanc 1.10 cannot bind to an address: its HTTP and DICOM servers listen on
# 0.0.0.0. We drop TCP packets to those ports that arrive on any interface but
# loopback (iptables, nft backend). Connections made on this machine, to any of
# its addresses, travel over `lo` and still work; nothing from outside does.
# The rules carry a comment so `stop` removes exactly what `start` added.
CONFINE_COMMENT=cbmir-stack

# tool: iptables|ip6tables, action: -C (check) | -I (insert) | -D (delete)
_fw_rule() {
  as_root "$1" -w 5 "$2" INPUT -p tcp --dport "$3" ! -i lo -m comment --comment "$CONFINE_COMMENT" -j DROP
}

confine_port() {
  local port="$1" tool ok=0
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null 2>&1 || continue
    as_root "$tool" -w 5 -L INPUT -n >/dev/null 2>&1 || continue
    if _fw_rule "$tool" -C "$port" 2>/dev/null || _fw_rule "$tool" -I "$port" 2>/dev/null; then
      [[ $tool == iptables ]] && ok=1
    fi
  done
  if ((ok == 0)); then
    local msg="port $port: could not add the loopback-only packet filter (iptables missing or no CAP_NET_ADMIN); the service listens on all interfaces"
    [[ "${CBMIR_REQUIRE_CONFINEMENT:-0}" == 1 ]] && die "$msg"
    warn "$msg (Orthanc still refuses remote HTTP clients: RemoteAccessAllowed=false)"
  fi
  return 0
}

unconfine_port() {
  local port="$1" tool i
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null 2>&1 || continue
    for ((i = 0; i < 10; i++)); do
      _fw_rule "$tool" -C "$port" 2>/dev/null || break
      _fw_rule "$tool" -D "$port" 2>/dev/null || break
    done
  done
  return 0
}

port_confined() {
  command -v iptables >/dev/null 2>&1 && _fw_rule iptables -C "$1" 2>/dev/null
}
