#!/bin/bash
# Remove fake hosts made by make_netns_host.sh: kill every process inside each netns NAME (sshd,
# SSH sessions, Tomcat and anything else started there; SIGTERM, SIGKILL after 3 s), delete the
# veth vr-NAME, then the netns. Drops the 10.213.0.0/16 blackhole once no vr- link is left.
# Usage: destroy_netns_host.sh NAME [NAME...]
set -u
netns_pids() { for n in "$@"; do [ -e "/run/netns/$n" ] && ip netns pids "$n"; done 2>/dev/null; }
pids=$(netns_pids "$@")
[ -n "$pids" ] && kill $pids 2>/dev/null
for _ in $(seq 1 60); do [ -z "$(netns_pids "$@")" ] && break; sleep 0.05; done
pids=$(netns_pids "$@"); [ -n "$pids" ] && kill -9 $pids 2>/dev/null
for _ in $(seq 1 40); do [ -z "$(netns_pids "$@")" ] && break; sleep 0.05; done
for n in "$@"; do
  ip link del "vr-$n" 2>/dev/null   # delete the veth now: netns teardown is asynchronous (~40 s seen)
  [ -e "/run/netns/$n" ] && ip netns del "$n"
done
exec 9>/run/lock/chatops-testbed-route.lock
flock -w 30 9
[ -n "$(ip -o link show | grep ' vr-')" ] || ip route del blackhole 10.213.0.0/16 2>/dev/null
exit 0
