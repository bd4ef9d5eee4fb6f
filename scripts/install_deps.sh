#!/usr/bin/env bash
# Installs, with apt-get and only when missing, every Debian package that the
# build and the tests need. Idempotent; meant for a fresh Debian 12 as root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ccache
  libabsl-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libyaml-cpp-dev libyaml-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  prometheus-cpp-dev libboost-dev
  libpcre2-dev libutf8proc-dev libsentencepiece-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-grpcio python3-protobuf python3-jinja2
  prometheus
  haproxy python3-yaml python3-numpy
  clang libclang-rt-14-dev
)

# kubectl renders deploy/kubernetes (kubectl kustomize); Debian packages it
# as kubernetes-client. A kubectl already installed is used as it is.
if ! command -v kubectl >/dev/null; then packages+=(kubernetes-client); fi

# --build-only (the image's build stage): what compiles inferd and
# inferd-bench, without what only the tests and tools run.
if [ "${1:-}" = "--build-only" ]; then
  test_only=" git clang libclang-rt-14-dev libgtest-dev libgmock-dev python3 python3-grpcio python3-protobuf python3-yaml prometheus haproxy kubernetes-client "
  build=()
  for p in "${packages[@]}"; do [[ "$test_only" == *" $p "* ]] || build+=("$p"); done
  packages=("${build[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
