#!/usr/bin/env bash
# ThreadSanitizer pass over the multithreaded code: the thread pool, the quantization kernels called
# on disjoint row ranges, and the converter (its tests, then the real qlib-convert on a shared model
# with several threads). Fails on any reported data race, lock-order inversion or test failure.
#   scripts/tsan.sh [extra test binaries...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-deps.sh
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" -DQLIB_SANITIZE=thread -DQLIB_BUILD_BENCHMARKS=OFF \
  >/dev/null
wanted=(test_thread_pool test_kernels test_convert "$@")
tests=()
for t in "${wanted[@]}"; do
  [ -f "tests/$t.cpp" ] && tests+=("$t") || echo "tsan: tests/$t.cpp does not exist, skipped" >&2
done
cmake --build build-tsan -j"$(nproc)" --target "${tests[@]}" qlib-convert
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4"
for t in "${tests[@]}"; do
  echo "== tsan: $t"
  "build-tsan/tests/$t"
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for mode in "--q-mode affine --q-bits 4" "--q-mode lut --q-bits 4" "--q-mode q4_0 --format gguf"; do
  echo "== tsan: qlib-convert $mode"
  # shellcheck disable=SC2086
  build-tsan/examples/qlib-convert/qlib-convert --hf-path "$root/../shared/models/stories-260k" \
    --out "$out/m" --force -q $mode --threads 4 >/dev/null
done
echo "tsan: no races found"
