# shellcheck shell=bash
# Redis (Debian redis-server) for the BullMQ queues: loopback only, no
# persistence (the queue is rebuilt by the reconciler), and `noeviction`,
# which BullMQ requires (evicted job keys would silently lose jobs).
# Sourced by stack.sh.
#
# Settings (environment):
#   REDIS_PORT       port on 127.0.0.1 (6379)
#   REDIS_MAXMEMORY  memory cap, e.g. 256mb (0 = no cap)

_redis_vars() {
  REDIS_PORT="${REDIS_PORT:-6379}"
  if [[ "${1:-}" == saved && -f "$STACK_DIR/redis/instance.env" ]]; then
    # shellcheck disable=SC1091
    source "$STACK_DIR/redis/instance.env"
  fi
  REDIS_MAXMEMORY="${REDIS_MAXMEMORY:-0}"
  # Redis's own size units (bytes, k/kb, m/mb, g/gb); anything else fails only in its log.
  [[ "$REDIS_MAXMEMORY" =~ ^[0-9]+([kKmMgG][bB]?)?$ ]] || die "REDIS_MAXMEMORY must be a size such as 256mb or 1gb (0 = no cap), got '$REDIS_MAXMEMORY'"
  REDIS_DIR="$STACK_DIR/redis"
  REDIS_PIDFILE="$REDIS_DIR/redis.pid"
  REDIS_LOG="$REDIS_DIR/redis.log"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
}

redis_install() {
  apt_ensure redis-server
  # Debian's packaged service would hold 6379; ours runs with our flags.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
  # Without systemd the package's postinst may start it through init.d (as
  # user redis); ours run as the invoking user, so only that one is stopped.
  if pgrep -u redis -x redis-server >/dev/null 2>&1 && [[ -x /etc/init.d/redis-server ]]; then
    log "stopping the packaged redis-server service (it holds port 6379)"
    as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true
  fi
}

# Ready when the Redis answering on the port is ours (its pid is in our pid
# file), not another stack's that happens to hold the port.
_redis_ready() {
  local pid
  pid="$(read_pid "$REDIS_PIDFILE" redis-server)" || return 1
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"
}

redis_start() {
  _redis_vars
  local pid
  if pid="$(read_pid "$REDIS_PIDFILE" redis-server)"; then
    log "redis: already running (pid $pid) at $REDIS_URL"
    return 0
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server missing: run 'bash deploy/local/stack.sh install' first"
  check_port REDIS_PORT "$REDIS_PORT"
  require_free_port redis "$REDIS_PORT"
  mkdir -p "$REDIS_DIR"
  chmod 700 "$REDIS_DIR" # its dump holds queued jobs (uploads included)
  printf 'REDIS_PORT=%q\nREDIS_MAXMEMORY=%q\n' "$REDIS_PORT" "$REDIS_MAXMEMORY" >"$REDIS_DIR/instance.env"
  log "redis: starting on $REDIS_URL"
  # --daemonize writes the pid file itself once the server runs.
  rm -f "$REDIS_PIDFILE"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --save "" --appendonly no --maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy noeviction \
    --dir "$REDIS_DIR" --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
    || die "redis-server failed to start: $(tail -n 20 "$REDIS_LOG" 2>/dev/null)"
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$REDIS_PIDFILE" ]] && break; sleep 0.1; done
  pid="$(read_pid "$REDIS_PIDFILE" redis-server || true)"
  if ! wait_ready redis "$pid" "$REDIS_LOG" "$CBMIR_READY_TIMEOUT_S" _redis_ready; then
    redis_stop >/dev/null 2>&1
    return 1
  fi
  log "redis: ready (pid $pid) at $REDIS_URL"
}

redis_stop() {
  _redis_vars saved
  stop_pidfile redis "$REDIS_PIDFILE" 15 redis-server
}

redis_status() {
  _redis_vars saved
  local pid
  if pid="$(read_pid "$REDIS_PIDFILE" redis-server)"; then
    if _redis_ready; then
      echo "redis: running (pid $pid) $REDIS_URL"
    else
      echo "redis: running (pid $pid) but not answering on $REDIS_URL"
      return 1
    fi
  else
    echo "redis: stopped"
    return 3
  fi
}
