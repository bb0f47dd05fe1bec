#!/usr/bin/env bash
# Configures and builds qlib in build/ (Release, tests, benchmarks and examples).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
