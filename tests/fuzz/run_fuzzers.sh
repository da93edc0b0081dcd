#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, CPU only, ASan + UBSan, in BUILD_DIR, and
# runs each on a copy of its seed corpus (tests/fuzz/corpus/<target>): by default FUZZ_RUNS
# (20000) inputs from seed FUZZ_SEED (1), the same inputs every time, so that CI's verdict is
# reproducible; with FUZZ_SECONDS set, for that long from a random seed (exploration).
# Fails on a crash, a sanitizer report, a leak outside the third-party suppressions
# (tests/sanitizers/lsan.supp), a timeout of one input or running out of memory; the input that
# did it is left in BUILD_DIR/findings/<target>/. Exit 77 (CTest: skipped) without clang.
#   tests/fuzz/run_fuzzers.sh [BUILD_DIR]          # default build/fuzz
#   FUZZ_SECONDS=600 FUZZ_TARGETS=fuzz_gzip tests/fuzz/run_fuzzers.sh   # explore
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$src/build/fuzz}
if [[ -n ${FUZZ_SECONDS:-} ]]; then
  budget=(-max_total_time="$FUZZ_SECONDS")
else
  budget=(-seed="${FUZZ_SEED:-1}" -runs="${FUZZ_RUNS:-20000}")
fi
targets=${FUZZ_TARGETS:-fuzz_nifti_header fuzz_gzip fuzz_transform fuzz_ants_options}
jobs=${FUZZ_BUILD_JOBS:-$(nproc)}
if ! command -v clang++ > /dev/null; then
  echo "run_fuzzers: clang++ not found (scripts/install-deps.sh installs it); skipped"
  exit 77
fi
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang "${launcher[@]}" -DGIGAREG_FUZZ=ON \
  -DGIGAREG_CUDA=OFF -DGIGAREG_DISTRIBUTED=OFF -DGIGAREG_BUILD_TESTS=OFF -DGIGAREG_BUILD_BENCHMARKS=OFF \
  -DGIGAREG_BUILD_TOOLS=OFF -DGIGAREG_BUILD_EXAMPLES=OFF > "$build.configure.log" 2>&1 ||
  { cat "$build.configure.log"; exit 1; }
# shellcheck disable=SC2086
cmake --build "$build" -j "$jobs" --target $targets
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/tests/sanitizers/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
status=0
for t in $targets; do
  corpus=$(mktemp -d)
  cp "$src/tests/fuzz/corpus/$t/"* "$corpus/"
  findings="$build/findings/$t"
  mkdir -p "$findings"
  echo "--- $t: ${budget[*]}"
  # -rss_limit_mb: a header may announce huge images; gigareg must refuse them before allocating.
  if ! "$build/tests/fuzz/$t" "${budget[@]}" -timeout=20 -rss_limit_mb=3072 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" > "$build/$t.log" 2>&1; then
    status=1
    echo "$t FAILED: $(grep -E "==[0-9]+==ERROR|SUMMARY|deadly signal|Test unit written|timeout after|out-of-memory" "$build/$t.log" | head -5)"
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/$t.log" | tr '\n' ' '
  echo
  rm -rf "$corpus"
done
exit $status
