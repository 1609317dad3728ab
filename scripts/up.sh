#!/bin/bash
# Start chatops-deploy on this machine on embedded defaults: a Prefect server on SQLite under
# $CHATOPS_HOME (default ~/.chatops), the runner serving the flows and the HTTP gateway.
# Creates the Python environment (.venv) on first use. Ctrl-C stops everything.
# Usage: scripts/up.sh [--host 127.0.0.1] [--port 4200]
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/chatops" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -e "$ROOT"
fi
exec "$VENV/bin/chatops" up "$@"
