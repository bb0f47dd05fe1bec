#!/usr/bin/env bash
# The bit-width report in one command: builds qlib-bits, runs every registered quantizer over a
# model's weights and a 4096x4096 benchmark matrix, converts and scores the model for perplexity,
# and writes report/bits.md, report/bits.svg and report/bits-matrix.svg.
#   scripts/bits-report.sh [MODEL_DIR] [qlib-bits options...]   (default model: ../shared/models/aidreams-260k)
# BUILD_DIR (default build) picks the build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
model=../shared/models/aidreams-260k
if [[ $# -gt 0 && $1 != -* ]]; then
  model=$1
  shift
fi
scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target qlib-bits -j"$(nproc)"
"$build/examples/qlib-bits/qlib-bits" --model "$model" --text examples/qlib-bits/heldout.txt --out report "$@"
