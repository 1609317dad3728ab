#!/bin/bash
# Run the whole test suite on this machine, installing what it needs first (as root): the format
# and lint checks, the import-layer contracts (pyproject.toml [tool.importlinter]), then pytest.
# Usage: scripts/test.sh [pytest arguments]     e.g. scripts/test.sh -k rollback
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
scripts/install-deps.sh
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
