#!/usr/bin/env bash
# compute-sanitizer (memcheck, racecheck, initcheck; synccheck with TOOLS=...) over the CUDA test
# binaries, on the GPU machine (issue 18). Every tool's report goes to $OUT/<tool>/<test>.log; the
# summary line per run says whether the tool found errors. Exit status: 0 when every run is clean.
#
# Usage (from the repository root, after a build with CUDA, e.g. the ci preset):
#   scripts/compute_sanitizer_gpu.sh [BUILD_DIR]        # default build/ci
#   TOOLS="memcheck" FILTER='RegistrationCuda.*' scripts/compute_sanitizer_gpu.sh
# Environment: TOOLS (default "memcheck racecheck initcheck"), FILTER (a --gtest_filter; the
# defaults skip nothing, so racecheck of the registration tests takes minutes), TIMEOUT per run in
# seconds (default 1800), OUT (default ./compute-sanitizer-out), BIN (a directory of prebuilt test
# binaries instead of BUILD_DIR/tests, e.g. .devbin/bin of run_prebuilt_gpu.sh).
#
# Record the results (tool, binary, errors found, the GPU and driver) in docs/testing.md.
set -uo pipefail
build=${1:-build/ci}
bin=${BIN:-$build/tests}
out=${OUT:-$PWD/compute-sanitizer-out}
tools=${TOOLS:-memcheck racecheck initcheck}
filter=${FILTER:-*}
limit=${TIMEOUT:-1800}

sanitizer=$(command -v compute-sanitizer || true)
[[ -z $sanitizer && -x /usr/local/cuda/bin/compute-sanitizer ]] && sanitizer=/usr/local/cuda/bin/compute-sanitizer
if [[ -z $sanitizer ]]; then
  echo "compute_sanitizer_gpu: compute-sanitizer not found (CUDA toolkit's bin/)" >&2
  exit 2
fi
if ! nvidia-smi > /dev/null 2>&1; then
  echo "compute_sanitizer_gpu: no GPU visible (nvidia-smi fails)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
"$sanitizer" --version | tail -1

# The CUDA test binaries: tests/cuda/test_*_cuda.cpp, plus the I/O tests that write from the GPU.
binaries=()
for t in "$bin"/test_*_cuda; do [[ -x $t ]] && binaries+=("$t"); done
if ((${#binaries[@]} == 0)); then
  echo "compute_sanitizer_gpu: no test_*_cuda binaries in $bin (build with CUDA first)" >&2
  exit 2
fi

# One sanitizer run: tool, binary, gtest filter, log. Prints the verdict; returns 0 when clean.
run_one() {
  local tool=$1 t=$2 filter=$3 log=$4 extra=() rc summary verdict
  # --error-exitcode makes a finding visible in the exit status; leak checking belongs to memcheck.
  [[ $tool == memcheck ]] && extra=(--leak-check full)
  timeout "$limit" "$sanitizer" --tool "$tool" --error-exitcode 86 "${extra[@]}" \
    "$t" --gtest_filter="$filter" --gtest_brief=1 > "$log" 2>&1
  rc=$?
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" "$log" | tail -1)
  case $rc in
    0) verdict=clean ;;
    86) verdict="ERRORS FOUND" ;;
    124) verdict="timed out after ${limit}s" ;;
    *) verdict="test failed (rc $rc)" ;;
  esac
  echo "$tool $(basename "$t") [$filter]: $verdict ${summary:+($summary)}"
  [[ $rc == 0 ]]
}
export -f run_one
export sanitizer limit

failed=0
for tool in $tools; do
  mkdir -p "$out/$tool"
  for t in "${binaries[@]}"; do
    name=$(basename "$t")
    if [[ -n ${PER_TEST:-} ]]; then
      # Every test of the binary that the filter selects, PER_TEST at a time.
      tests=$("$t" --gtest_filter="$filter" --gtest_list_tests | awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}')
      printf '%s\n' $tests | xargs -P "$PER_TEST" -I{} bash -c \
        'run_one "$0" "$1" "$2" "$3/$(echo "$2" | tr -c "A-Za-z0-9_.\n" _).log"' "$tool" "$t" {} "$out/$tool" ||
        failed=1
    else
      run_one "$tool" "$t" "$filter" "$out/$tool/$name.log" || failed=1
    fi
  done
done
echo "compute_sanitizer_gpu: logs in $out"
exit $failed
