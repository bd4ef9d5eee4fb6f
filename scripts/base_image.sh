#!/usr/bin/env bash
# Makes localhost/debian:bookworm-slim without a registry: debootstrap a
# minimal bookworm from the mirror apt already uses and import it into
# podman. `make image` calls this when the public base cannot be pulled.
# Usage: scripts/base_image.sh [TAG]   (default localhost/debian:bookworm-slim)
set -euo pipefail

tag="${1:-localhost/debian:bookworm-slim}"
if podman image exists "$tag"; then
  echo "base_image: $tag already present"
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "base_image: debootstrap is missing (make deps-image installs it)" >&2
  exit 1
}

# The Debian archive apt already uses (the first source whose path ends in
# /debian; security and third-party sources are skipped).
mirror="$(grep -rhoE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
  2>/dev/null | head -1 | tr -d '[:space:]' || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d /var/tmp/inferd-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "base_image: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -20 "$root.log" >&2
  rm -f "$root.log"
  exit 1
}
rm -f "$root.log"
# Slim like the public image: no apt lists, no docs, no caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$tag"
echo "base_image: imported $tag"
