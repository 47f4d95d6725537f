#!/usr/bin/env bash
# Prove that a port confined by the stack (Orthanc's HTTP/DICOM ports) cannot
# be reached from another host, while an unconfined listener can.
#
#   bash deploy/local/check-confinement.sh PORT...
#
# "Another host" is a network namespace made here for the check, joined to
# this machine by a veth pair (10.250.77.1 here, 10.250.77.2 there). From it,
# a plain listener on this machine must answer (the control, proving the path
# works) and every PORT given must not. Needs root (netns, veth). Exit 0 when
# every PORT is unreachable from the namespace and the control succeeds.
set -euo pipefail
(($# >= 1)) || { echo "usage: $0 PORT..." >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "needs root (network namespaces)" >&2; exit 2; }

NS="cbmir-confine-$$"
HOST_IF="cbmirc$$h"
NS_IF="cbmirc$$n"
HOST_IP=10.250.77.1
NS_IP=10.250.77.2
CONTROL_PORT=$((40000 + $$ % 20000))
control_pid=""

cleanup() {
  [[ -n "$control_pid" ]] && kill "$control_pid" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name "$NS_IF"
ip link set "$NS_IF" netns "$NS"
ip addr add "$HOST_IP/30" dev "$HOST_IF"
ip link set "$HOST_IF" up
ip netns exec "$NS" ip addr add "$NS_IP/30" dev "$NS_IF"
ip netns exec "$NS" ip link set "$NS_IF" up
ip netns exec "$NS" ip link set lo up

# Control: a listener on all interfaces, with no filter rule.
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); c.close()
' "$CONTROL_PORT" &
control_pid=$!
sleep 0.5

# Connect from the namespace; 0 = connected.
probe() { ip netns exec "$NS" timeout 3 bash -c "exec 3<>/dev/tcp/$HOST_IP/$1" 2>/dev/null; }

fail=0
if probe "$CONTROL_PORT"; then
  echo "control: $HOST_IP:$CONTROL_PORT reachable from the namespace (path works)"
else
  echo "control: $HOST_IP:$CONTROL_PORT NOT reachable: the check itself is broken" >&2
  fail=1
fi
for port in "$@"; do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port: nothing listens on 127.0.0.1:$port; start the service first" >&2
    fail=1
  elif probe "$port"; then
    echo "port $port: REACHABLE from another host: not confined" >&2
    fail=1
  else
    echo "port $port: refused from another host, reachable on 127.0.0.1: confined"
  fi
done
exit "$fail"
