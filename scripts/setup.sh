#!/usr/bin/env bash
# Create .venv and install streamer with the bundled models and the development tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[models,dev]"
# The voice encoder's weights (streamer/pipeline/speakers_weights.py) ship inside resemblyzer's wheel: fetch
# the wheel alone (its dependencies would pull torch) into the cache, once; later runs need no network.
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/streamer/wheels"
[ -f "$WHEELS/Resemblyzer-0.1.4-py3-none-any.whl" ] \
  || .venv/bin/python -m pip download -q --no-deps resemblyzer==0.1.4 -d "$WHEELS"
