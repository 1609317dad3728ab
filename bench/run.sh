#!/bin/bash
# The benchmark: chatops-deploy as a user meets it, against a hand-written fabric script, on the
# test bed (network-namespace hosts with sshd and Tomcat). Needs root and scripts/install-deps.sh.
#
#   bench/run.sh [deploy] [burst] [--hosts 1,4,8] [--rounds 5] [--restarts 3]
#                [--burst-each 50] [--burst-rounds 1] [--out results] [--quick]
#
# Writes results/<scenario>.json; `python -m bench.report results/*.json` renders
# docs/benchmarks.md from them. Everything it starts is stopped when it ends, fails or is
# interrupted. bench/harness.py says what it measures and how.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh: run it as root (it creates network namespaces)" >&2
  exit 2
fi
if [ ! -x "$ROOT/.venv/bin/python" ] || [ ! -x "$ROOT/.venv/bin/chatops" ]; then
  echo "bench/run.sh: no $ROOT/.venv with chatops in it; run scripts/install-deps.sh first" >&2
  exit 2
fi
cd "$ROOT"
# The user's shell has no PREFECT_* settings; chatops up finds its own server.
for var in $(compgen -e | grep -E '^(PREFECT_|CHATOPS_)' || true); do unset "$var"; done
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$ROOT/.venv/bin/python" -m bench.harness "$@"
