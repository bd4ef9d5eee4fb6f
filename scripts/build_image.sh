#!/usr/bin/env bash
# `make image`: builds the CPU image (Dockerfile) with podman as
# localhost/inferd:latest. Installs podman, runc and debootstrap when
# missing. Uses debian:bookworm-slim when it can be pulled (or is present),
# else makes localhost/debian:bookworm-slim from the Debian archive
# (scripts/base_image.sh). runc, not crun: crun refuses hosts with a mixed
# cgroup v1/v2 set-up; ulimits are capped because root cannot raise them on
# such hosts.
# Environment: INFERD_IMAGE (default localhost/inferd:latest), INFERD_BASE_IMAGE
# (skip the search for a base).
set -euo pipefail
cd "$(dirname "$0")/.."

image="${INFERD_IMAGE:-localhost/inferd:latest}"
tools=(podman runc debootstrap)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "image: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

base="${INFERD_BASE_IMAGE:-}"
if [ -z "$base" ]; then
  for candidate in docker.io/library/debian:bookworm-slim localhost/debian:bookworm-slim; do
    if podman image exists "$candidate"; then base="$candidate"; break; fi
  done
fi
if [ -z "$base" ] && timeout 60 podman pull -q docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
  base=docker.io/library/debian:bookworm-slim
fi
if [ -z "$base" ]; then
  echo "image: debian:bookworm-slim cannot be pulled; making it from the Debian archive"
  scripts/base_image.sh localhost/debian:bookworm-slim
  base=localhost/debian:bookworm-slim
fi

echo "image: building $image from $base"
start=$(date +%s)
podman --runtime runc build \
  --network host \
  --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
  --build-arg "BASE=$base" \
  --layers \
  -t "$image" -f Dockerfile .
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image: $image built in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB"
