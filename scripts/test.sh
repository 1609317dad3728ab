#!/bin/bash
# Run the whole test suite on this machine, installing what it needs first (as root): the format
# and lint checks, the import-layer contracts (pyproject.toml [tool.importlinter]), then pytest.
# Usage: scripts/test.sh [pytest arguments]     e.g. scripts/test.sh -k rollback
#
# pytest runs in CHATOPS_TEST_WORKERS processes (pytest-xdist; default 2, 0 runs them in this one):
# the end-to-end tests one after another in one of them, the other modules beside them.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
scripts/install-deps.sh
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/lint-imports
exec .venv/bin/pytest -n "${CHATOPS_TEST_WORKERS:-2}" --dist loadgroup "$@"
