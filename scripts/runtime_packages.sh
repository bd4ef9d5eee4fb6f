#!/usr/bin/env bash
# Prints, one per line and sorted, the Debian/Ubuntu packages that hold the
# shared libraries the given binaries load (by ldd). Both images' build
# stages run it (Dockerfile, deploy/docker/cuda.Dockerfile), and their
# runtime stages install exactly that list: the runtime library set is
# derived, not kept by hand, so the two images cannot drift apart.
# Usage: scripts/runtime_packages.sh BINARY...
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
libs="$(ldd "$@" | awk '/=> \// {print $3}' | sort -u)"
missing="$(ldd "$@" | grep 'not found' || true)"
if [ -n "$missing" ]; then
  echo "runtime_packages: unresolved libraries:" >&2
  echo "$missing" >&2
  exit 1
fi
for lib in $libs; do
  # dpkg knows a file by the path its package ships; with merged /usr that
  # may be /lib/... or /usr/lib/..., and ldd may report a symlink.
  found=""
  for path in "$lib" "$(readlink -f "$lib")" "/usr$lib" "${lib#/usr}"; do
    if owner="$(dpkg -S "$path" 2>/dev/null)"; then
      found="${owner%%:*}"
      break
    fi
  done
  [ -n "$found" ] || { echo "runtime_packages: no package holds $lib" >&2; exit 1; }
  echo "$found"
done | sort -u
