#!/bin/bash
# Create a fake host: network namespace NAME, veth vr-NAME (root side 10.213.IDX.1/24) <-> eth0
# (10.213.IDX.2/24, no default route), its own mount namespace in which MOUNTPOINT (default
# /srv/app) is a bind of HOST_DIR/root, and an sshd on 10.213.IDX.2:22 accepting CLIENT_PUBKEY
# for root. A holder process (`sleep infinity`, pid in HOST_DIR/holder.pid) keeps the mount
# namespace reachable even when sshd is killed: `nsenter -t $(cat HOST_DIR/holder.pid) -m -n CMD`.
# Usage: make_netns_host.sh NAME IDX CLIENT_PUBKEY HOST_DIR
# Needs: root, iproute2, openssh-server, util-linux (unshare, flock). Teardown: destroy_netns_host.sh NAME
set -euo pipefail
NAME=$1; IDX=$2; PUB=$(readlink -f "$3"); mkdir -p "$4"; DIR=$(readlink -f "$4")
MP=${MOUNTPOINT:-/srv/app}
HERE=$(dirname "$(readlink -f "$0")")
VR="vr-$NAME"; [ ${#VR} -le 15 ] || { echo "name too long for a veth: $VR" >&2; exit 2; }
[[ $IDX =~ ^[0-9]+$ ]] && [ "$IDX" -ge 1 ] && [ "$IDX" -le 254 ] || { echo "bad IDX $IDX" >&2; exit 2; }

# SAFETY: if a veth route ever disappears (link down), 10.213/16 must NOT fall through to the
# default route (test traffic would leave the machine). Blackhole it in the root namespace before
# any namespace exists. The lock makes "route present + link created" atomic against
# destroy_netns_host.sh removing the route when it sees no vr- link.
# (No `ip route | grep -q`: under pipefail grep's early exit SIGPIPEs ip -> flaky 'File exists'.)
exec 9>/run/lock/chatops-testbed-route.lock
flock -w 30 9
[ -n "$(ip route show type blackhole 10.213.0.0/16)" ] || ip route add blackhole 10.213.0.0/16 metric 4000
ip netns add "$NAME"
ip link add "$VR" type veth peer name eth0 netns "$NAME"
flock -u 9
ip addr add "10.213.$IDX.1/24" dev "$VR"; ip link set "$VR" up
ip -n "$NAME" addr add "10.213.$IDX.2/24" dev eth0
ip -n "$NAME" link set eth0 up; ip -n "$NAME" link set lo up

# Private mount namespace: a tiny tmpfs over MOUNTPOINT's parent (nothing is created on the root
# filesystem, and the host sees no other /srv content), then the bind of HOST_DIR/root.
mkdir -p "$DIR/root"; rm -f "$DIR/holder.pid"
ip netns exec "$NAME" unshare --mount --propagation private bash -c '
  set -euo pipefail
  mkdir -p "$(dirname "$1")"
  mount -t tmpfs -o size=64k,mode=755 testbed "$(dirname "$1")"
  mkdir -p "$1"; mount --bind "$2/root" "$1"
  setsid sh -c "echo \$\$ > \"$2/holder.pid\"; exec sleep infinity" </dev/null >/dev/null 2>&1 &
  exec "$3/start_sshd.sh" "$2" "$4" 22 "$5"
' make_netns_host "$MP" "$DIR" "$HERE" "10.213.$IDX.2" "$PUB"
for _ in $(seq 1 100); do [ -s "$DIR/holder.pid" ] && break; sleep 0.02; done
[ -s "$DIR/holder.pid" ] || { echo "holder process did not start" >&2; exit 1; }
