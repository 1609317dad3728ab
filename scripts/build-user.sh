#!/bin/bash
# Create the unprivileged OS user builds run as (see adapters/sandbox.py), unless it exists.
# A branch's build is untrusted code: as this user it cannot read $CHATOPS_HOME, the deploy
# system's processes or its keys. Builds work in copies below the user's home.
#
# Usage (as root):  scripts/build-user.sh
#   CHATOPS_BUILD_USER=chatops-build   the user's name (chatops reads the same variable)
set -euo pipefail
USER_NAME=${CHATOPS_BUILD_USER:-chatops-build}
HOME_DIR=${CHATOPS_BUILD_HOME:-/var/lib/$USER_NAME}

if id -u "$USER_NAME" >/dev/null 2>&1; then
  echo "build-user: $USER_NAME exists"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-user: run as root to create $USER_NAME" >&2; exit 1; }
useradd --system --create-home --home-dir "$HOME_DIR" --shell /usr/sbin/nologin \
  --comment "chatops-deploy builds" "$USER_NAME"
chmod 0700 "$HOME_DIR"
echo "build-user: created $USER_NAME (home $HOME_DIR)"
