#!/usr/bin/env bash
# Build a Debian bookworm base image (with Python 3.11) from Debian's own packages, for machines that cannot
# reach Docker Hub. Reuses the image when it already exists, so CI pays the minute only once per machine.
#
#   deploy/docker/build-base.sh [IMAGE]        default IMAGE: streamer-base:bookworm
#
# Then: docker build --build-arg BASE=streamer-base:bookworm -t streamer .
set -euo pipefail
image=${1:-streamer-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image exists; reusing it"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

root=$(mktemp -d /var/tmp/streamer-base.XXXXXX)
chmod 755 "$root"  # mktemp's 700 would become the image's / and lock every non-root user out
trap 'rm -rf "$root"' EXIT
# minbase + the interpreter and venv: the image then builds without apt or network access.
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "built base image $image"
