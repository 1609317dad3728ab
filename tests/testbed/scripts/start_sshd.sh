#!/bin/bash
# Throwaway sshd as a plain process (no systemd, no PAM) with its own host key and config.
# Usage: start_sshd.sh HOST_DIR ADDR PORT CLIENT_PUBKEY_FILE [extra sshd_config lines...]
# Creates HOST_DIR/{ssh_host_ed25519_key{,.pub},sshd_config,authorized_keys,sshd.pid,sshd.log}.
# Run it inside a namespace (ip netns exec / nsenter) to give a fake host its sshd.
# Stop: kill "$(cat HOST_DIR/sshd.pid)". Start again: /usr/sbin/sshd -f HOST_DIR/sshd_config -E HOST_DIR/sshd.log
set -euo pipefail
mkdir -p "$1"; DIR=$(readlink -f "$1"); ADDR=$2; PORT=$3; PUB=$4; shift 4
mkdir -p /run/sshd            # privilege-separation directory sshd insists on
[ -f "$DIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C '' -f "$DIR/ssh_host_ed25519_key"
cp "$PUB" "$DIR/authorized_keys"; chmod 600 "$DIR/authorized_keys"
cat > "$DIR/sshd_config" <<CFG
Port $PORT
ListenAddress $ADDR
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
UseDNS no
PrintMotd no
LogLevel INFO
MaxStartups 100:30:200
Subsystem sftp internal-sftp
CFG
for line in "$@"; do echo "$line" >> "$DIR/sshd_config"; done
/usr/sbin/sshd -t -f "$DIR/sshd_config"
rm -f "$DIR/sshd.pid"
/usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"   # daemonizes, writes PidFile
for _ in $(seq 1 100); do [ -s "$DIR/sshd.pid" ] && break; sleep 0.02; done
[ -s "$DIR/sshd.pid" ] || { echo "sshd did not start, see $DIR/sshd.log" >&2; exit 1; }
echo "sshd pid $(cat "$DIR/sshd.pid") on $ADDR:$PORT dir=$DIR"
