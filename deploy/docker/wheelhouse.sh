#!/usr/bin/env bash
# Fill deploy/docker/wheelhouse/ with every wheel the image installs (the dependencies, the bundled models,
# setuptools to build streamer itself), for the image's Python (CPython 3.11, glibc x86_64), downloaded
# with the host's pip. The Dockerfile then installs from these files only, so the image builds where pip
# inside a container cannot reach or verify the package registry. Idempotent: wheels already there are
# not downloaded again.
#
#   deploy/docker/wheelhouse.sh [PIP]          default PIP: .venv/bin/python -m pip, else python3 -m pip
set -euo pipefail
cd "$(dirname "$0")/../.."
out=deploy/docker/wheelhouse
if [ $# -gt 0 ]; then pip=("$@"); elif [ -x .venv/bin/python ]; then pip=(.venv/bin/python -m pip); else pip=(python3 -m pip); fi

platforms=(--platform manylinux2014_x86_64 --platform linux_x86_64)
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
# async-timeout: redis-py needs it below Python 3.11.3 (Debian bookworm has 3.11.2), and pip does not
# evaluate python_full_version markers for the target interpreter
"${pip[@]}" download --quiet --disable-pip-version-check --only-binary=:all: \
  --implementation cp --python-version 3.11 --abi cp311 "${platforms[@]}" \
  --dest "$out" ".[models]" "async-timeout>=4.0.3" "setuptools>=68" wheel
echo "wheelhouse: $(ls "$out"/*.whl | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out"
