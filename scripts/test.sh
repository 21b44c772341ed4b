#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/setup.sh dev),
# lints, then runs the suite except tests marked `slow`. Extra arguments go to pytest.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MUSICGEN_VENV:-$ROOT/.venv}
bash "$ROOT/scripts/setup.sh" dev
cd "$ROOT"
export PATH="$VENV/bin:$PATH"
echo "[test] ruff check and ruff format --check"
ruff check --quiet .
ruff format --check --quiet .
echo "[test] pytest -m 'not slow'"
exec python -m pytest -m "not slow" "$@"
