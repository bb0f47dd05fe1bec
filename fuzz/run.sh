#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 60),
# starting from the seed corpus in fuzz/corpus/<target>/ and the dictionary in fuzz/dict/.
# Fails on any crash, leak, timeout (10 s per input) or OOM (rss limit 2 GB).
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
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
  work=$(mktemp -d); mkdir -p "$work/corpus"
  [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$work/corpus/"
  dict=(); [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  echo "== $t: ${seconds}s"
  if ! (cd "$work" && "$OLDPWD/build-fuzz/fuzz/$t" corpus "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 | tail -n 12); then
    echo "!! $t found a problem (crash input kept in $work)"; status=1; continue
  fi
  rm -rf "$work"
done
exit $status
