#!/usr/bin/env bash
# The README's main job: installs what it needs (scripts/setup.sh), then runs
# `musicgen demo`. Extra arguments go to it (see `musicgen demo --help`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MUSICGEN_VENV:-$ROOT/.venv}
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$VENV/bin/musicgen" demo "$@"
