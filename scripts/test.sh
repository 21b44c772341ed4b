#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/setup.sh dev),
# lints (ruff, and the import-layering contracts), then runs the suite except tests
# marked `slow` and prints the 20 slowest. Extra arguments go to pytest.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MUSICGEN_VENV:-$ROOT/.venv}
bash "$ROOT/scripts/setup.sh" dev
cd "$ROOT"
export PATH="$VENV/bin:$PATH"
echo "[test] ruff check and ruff format --check"
ruff check --quiet --no-cache .
ruff format --check --quiet --no-cache .
echo "[test] lint-imports: the layering contracts in pyproject.toml"
lint-imports --no-cache
# Two workers (pytest-xdist) on this 2-core machine: much of a test's time is XLA
# compiling on one core. MUSICGEN_TEST_WORKERS=0 runs in this process.
WORKERS=${MUSICGEN_TEST_WORKERS:-2}
echo "[test] pytest -m 'not slow' on $WORKERS workers"
exec python -m pytest -m "not slow" -n "$WORKERS" --durations=20 "$@"
