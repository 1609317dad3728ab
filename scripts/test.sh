#!/bin/bash
# Run the whole test suite on this machine, installing what it needs first (as root): the format
# and lint checks, the import-layer contracts (pyproject.toml [tool.importlinter]), then pytest.
# Usage: scripts/test.sh [pytest arguments]     e.g. scripts/test.sh -k rollback
#
# pytest runs in CHATOPS_TEST_WORKERS processes (pytest-xdist; 0 runs every test in pytest's own
# process; by default 2, or 3 when -m leaves out the end-to-end tests): the end-to-end tests one
# after another in one worker, those that mostly wait in another, the other modules wherever a
# worker is free (tests/scheduling.py). With -s (output shown as it comes, e.g. the "measured"
# lines) the tests run in pytest's own process: workers do not pass it through.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
scripts/install-deps.sh
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/lint-imports
workers=${CHATOPS_TEST_WORKERS:-auto}
for arg in "$@"; do
  case $arg in -s | --capture=no) workers=0 ;; esac
done
exec .venv/bin/pytest -n "$workers" --dist loadscope "$@"
