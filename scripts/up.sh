#!/bin/bash
# Start chatops-deploy on this machine on embedded defaults: a PostgreSQL server of its own and
# the Prefect server on it, both under $CHATOPS_HOME (default ~/.chatops), the runner serving the
# flows and the HTTP gateway.
# Creates the Python environment (.venv) on first use and, as root, the user builds run as
# (scripts/build-user.sh). Ctrl-C stops everything.
# Usage: scripts/up.sh [--host 127.0.0.1] [--port 4200] [--database embedded|sqlite|postgresql://…]
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/chatops" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -e "$ROOT"
fi
if [ "$(id -u)" = 0 ]; then
  "$ROOT/scripts/build-user.sh" >/dev/null   # builds run as their own user (once, if missing)
fi
exec "$VENV/bin/chatops" up "$@"
