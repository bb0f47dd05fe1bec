#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 60),
# starting from the seed corpus in fuzz/corpus/<target>/ and the dictionary in fuzz/dict/.
# Fails on any crash, leak, timeout (10 s per input) or OOM (rss limit 2 GB); the input that
# triggered it is kept in fuzz/crashes/<target>/ (re-run it with build-fuzz/fuzz/<target> FILE).
# Every run appends "target seconds executions result" to build-fuzz/fuzz-log.tsv.
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-60}; shift || true
scripts/install-deps.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQLIB_BUILD_FUZZERS=ON \
  -DQLIB_BUILD_TESTS=OFF -DQLIB_BUILD_BENCHMARKS=OFF -DQLIB_BUILD_EXAMPLES=OFF >/dev/null
targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "${f%.cpp}")"); done
fi
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
status=0
for t in "${targets[@]}"; do
  # The seeds are copied so that what the fuzzer adds stays out of the source tree.
  work=$(mktemp -d); mkdir -p "$work/corpus" "$root/fuzz/crashes/$t"
  [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$work/corpus/"
  dict=(); [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="$root/fuzz/dict/$t.dict")
  echo "== $t: ${seconds}s"
  result=ok
  if ! (cd "$work" && "$root/build-fuzz/fuzz/$t" corpus "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$root/fuzz/crashes/$t/" >"$work/log" 2>&1); then
    result=FAILED; status=1
  fi
  tail -n 14 "$work/log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
  printf '%s\t%s\t%s\t%s\n' "$t" "$seconds" "${execs:-?}" "$result" >>"$root/build-fuzz/fuzz-log.tsv"
  if [ "$result" = FAILED ]; then
    echo "!! $t found a problem: reproducer in fuzz/crashes/$t/, full log $work/log"
  else
    rmdir "$root/fuzz/crashes/$t" 2>/dev/null || true
    rm -rf "$work"
  fi
done
exit $status
