#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds and runs every test in Release, then again
# under AddressSanitizer + UndefinedBehaviorSanitizer. CTest prints a summary for each pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

echo "== Release build and tests =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests =="
# -O1 -g1: line tables are enough for sanitizer reports, and the build stays affordable on 2 cores.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1" -DQLIB_SANITIZE=address,undefined \
      -DQLIB_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -j"$jobs" --output-on-failure -LE no-sanitizer

echo "== ThreadSanitizer: thread pool, kernels, converter =="
scripts/tsan.sh

# Every libFuzzer target (ASan + UBSan) from its seed corpus for a bounded time; any crash, leak,
# timeout or OOM fails. QLIB_FUZZ_SECONDS=0 skips this step.
fuzz_seconds=${QLIB_FUZZ_SECONDS:-30}
if ((fuzz_seconds > 0)); then
  echo "== libFuzzer: ${fuzz_seconds}s per target =="
  fuzz/run.sh "$fuzz_seconds"
fi
