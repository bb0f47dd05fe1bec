#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds and runs every test in Release (and the kernel
# tests for AVX2 too on an AVX-512 machine), then again under AddressSanitizer + UndefinedBehaviorSanitizer,
# ThreadSanitizer and the fuzzers. CTest prints a summary for each pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

echo "== Release build and tests =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build -j"$jobs" --output-on-failure

# The kernels have an AVX-512 and an AVX2 path; a native build tests only the one this CPU picks. On an
# AVX-512 machine, build the SIMD and model tests once more for AVX2 (what Zen 3 and older Intel get).
if grep -qw avx512f /proc/cpuinfo; then
  echo "== AVX2 build of the kernel and model tests =="
  cmake -S . -B build-avx2 -DCMAKE_BUILD_TYPE=Release -DQLIB_NATIVE=OFF -DCMAKE_CXX_FLAGS="-mavx2 -mfma -mf16c -mbmi2" \
        -DQLIB_BUILD_BENCHMARKS=OFF -DQLIB_BUILD_EXAMPLES=OFF >/dev/null
  avx2_tests=(test_kernels test_affine test_ggml test_lut test_symmetric test_model)
  cmake --build build-avx2 -j"$jobs" --target "${avx2_tests[@]}"
  ctest --test-dir build-avx2 -j"$jobs" --output-on-failure -R "^($(IFS='|'; echo "${avx2_tests[*]}")):"
fi

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
