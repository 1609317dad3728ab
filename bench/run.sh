#!/bin/bash
# The benchmark, as root on the test bed (scripts/install-deps.sh): writes results/<scenario>.json;
# `python -m bench.report results/*.json` renders docs/benchmarks.md. bench/harness.py says more.
#   bench/run.sh [deploy] [burst] [sweep] [--hosts 1,4,8] [--rounds 5]
#                [--burst-each 50] [--burst-rounds 1] [--databases sqlite,postgresql]
#                [--out results] [--quick]
#   bench/run.sh sweep --hosts 1,8,32,64 --rounds 3      (the host sweep, light hosts)
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
if [ "$(id -u)" -ne 0 ] || [ ! -x "$ROOT/.venv/bin/chatops" ]; then
  echo "bench/run.sh: run it as root, with $ROOT/.venv (scripts/install-deps.sh)" >&2
  exit 2
fi
cd "$ROOT"
# The user's shell has no PREFECT_* settings; chatops up finds its own server.
for var in $(compgen -e | grep -E '^(PREFECT_|CHATOPS_)' || true); do unset "$var"; done
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$ROOT/.venv/bin/python" -m bench.harness "$@"
