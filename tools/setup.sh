#!/usr/bin/env bash
# setup.sh - idempotent set-up: installs (apt) only the Debian packages that
# are missing, then configures and builds into build/ (or $FD_BUILD_DIR).
# Usage: tools/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config librdkafka-dev libhiredis-dev libavro-dev libsystemd-dev
      libmicrohttpd-dev prometheus systemd man-db procps chromium
      libopenblas-dev libyaml-dev libjansson-dev redis-server redis-tools kcat
      python3 python3-confluent-kafka python3-redis python3-numpy python3-sklearn python3-avro
      clang libclang-rt-14-dev clang-format libjemalloc2 libmimalloc2.0)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "${1:-}" = "--no-build" ] && exit 0
BUILD="${FD_BUILD_DIR:-build}"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${FD_BUILD_TYPE:-RelWithDebInfo}" \
      -DFD_SANITIZE="${FD_SANITIZE:-}" -DFD_WERROR="${FD_WERROR:-ON}" ${FD_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
