#!/usr/bin/env bash
# Build the image without Docker Hub and without network access from inside the build: a Debian base made
# with debootstrap (build-base.sh, reused once built), the wheels downloaded on the host (wheelhouse.sh),
# then the repository's Dockerfile. Old copies of the tag and build cache beyond a few GB are removed, so
# repeated builds (CI, tests/deploy/test_image.py) do not fill the disk.
#
#   deploy/docker/build-offline.sh [TAG]        default TAG: streamer:latest
#
# With ordinary internet access none of this is needed: docker build -t streamer .
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-streamer:latest}
base=${STREAMER_BASE_IMAGE:-streamer-base:bookworm}

deploy/docker/build-base.sh "$base"
deploy/docker/wheelhouse.sh

# BuildKit builds this Dockerfile in well under a minute with a warm cache; the legacy builder copies the
# whole image for every instruction on storage drivers without layer sharing (vfs). Docker >= 23 needs the
# buildx plugin for BuildKit; older clients have it built in behind DOCKER_BUILDKIT=1.
docker_cmd=(docker)
if docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=1
else
  for candidate in $(type -ap docker); do
    major=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)
    if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]; then
      docker_cmd=("$candidate")
      export DOCKER_BUILDKIT=1
      break
    fi
  done
  [ "${DOCKER_BUILDKIT:-0}" = 1 ] || echo "no BuildKit client found: using the legacy builder (slow on vfs)" >&2
fi

previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
"${docker_cmd[@]}" build --build-arg BASE="$base" -t "$tag" .
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker rmi "$previous" >/dev/null 2>&1 || true  # the tag's previous build, unless a container uses it
fi
if [ "${DOCKER_BUILDKIT:-0}" = 1 ]; then
  "${docker_cmd[@]}" builder prune --force --keep-storage 4GB >/dev/null
fi
