#!/usr/bin/env bash
# The GPU checks with binaries built here (ci preset, sm_90) instead of on the GPU machine, for
# calls too short to build there: CUDA tests first, then the whole `gigareg register --preset
# greedy --device cuda` command on the cfmi 256^3 pair, baseline and current alternating.
# Carry .devbin/ holding: bin/ (the test binaries, gigareg_new, optionally gigareg_base and
# bench_io), itk.tar.gz and deps.tar.gz (scripts/pack-device-deps.sh), data/ (cfmi_sub-01/02
# brainmasks; colin27_ch2better_0.5mm.nii.gz for LARGE=N). The binaries link Debian's ITK, which
# itk.tar.gz brings. bin/dist_tests, when present, runs under mpiexec with 1 and 2 ranks;
# BENCH_OPS=regex runs bin/bench_ops on those kernels, BENCH_IO=1 bin/bench_io. TESTS_ONLY=1 stops
# after the tests; SKIP_TESTS=1 starts after them (for a call that does other work in between).
set -uo pipefail
d=${DEVBIN:-.devbin}
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
tar -xzf $d/itk.tar.gz -C / --no-same-owner
tar -xzf $d/deps.tar.gz -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
missing=$(ldd $d/bin/gigareg_new | grep "not found")
[[ -n $missing ]] && { echo "missing libraries: $missing"; exit 1; }

if [[ -z ${SKIP_TESTS:-} ]]; then
echo "--- CUDA tests"
for t in $d/bin/test_*; do
  timeout ${TEST_TIMEOUT:-150} "$t" --gtest_brief=1 > "$out/$(basename "$t").log" 2>&1
  echo "$(basename "$t"): rc $? $(grep -E "PASSED|FAILED" "$out/$(basename "$t").log" | tr '\n' ' ')"
done

if [[ -x $d/bin/dist_tests ]] && command -v mpiexec > /dev/null; then
  for np in 1 2; do
    OMP_NUM_THREADS=1 timeout 120 mpiexec -n $np --oversubscribe --allow-run-as-root $d/bin/dist_tests --gtest_brief=1 \
      > "$out/dist_tests_np$np.log" 2>&1
    echo "dist_tests np $np: rc $? $(grep -E "PASSED|FAILED|SKIPPED" "$out/dist_tests_np$np.log" | sort | uniq -c | tr '\n' ' ')"
  done
fi
fi
[[ -n ${TESTS_ONLY:-} ]] && exit 0

echo "--- whole command, cfmi 01 <- 02, --preset greedy --device cuda"
source "$(dirname "${BASH_SOURCE[0]}")/command_timing.sh"  # timed, compare_outputs
f=$d/data/cfmi_sub-01_brainmask.nii.gz
m=$d/data/cfmi_sub-02_brainmask.nii.gz
tags=(new)
[[ -x $d/bin/gigareg_base ]] && tags=(base new)
pairs=()
for tag in "${tags[@]}"; do pairs+=("$tag=$d/bin/gigareg_$tag"); done
alternate_256 "${RUNS:-2}" "$out" "$f" "$m" "${pairs[@]}"
if [[ ${#tags[@]} == 2 ]]; then
  compare_outputs /tmp/cmd/base /tmp/cmd/new
fi
gzip -t /tmp/cmd/new/*.nii.gz && echo "gzip -t passes on every .nii.gz written"
if [[ -x $d/bin/bench_ops && -n ${BENCH_OPS:-} ]]; then  # e.g. BENCH_OPS='(Warp|Compose|Adam).*/512/'
  echo "--- bench_ops $BENCH_OPS (median ms of repeats)"
  $d/bin/bench_ops --benchmark_filter="$BENCH_OPS" --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true 2>&1 | grep -E "median" | tee "$out/bench_ops.txt"
fi
if [[ -x $d/bin/bench_io && -n ${BENCH_IO:-} ]]; then
  TMPDIR=/tmp $d/bin/bench_io 2>&1 | grep -E "median" | sed -E 's/\/iterations:1\/repeats:3\/real_time_median//'
fi
if [[ -n ${LARGE:-} ]]; then
  echo "--- gigavoxel command (LARGE=$LARGE)"
  large_run $d/bin/gigareg_new $d/data/colin27_ch2better_0.5mm.nii.gz "$LARGE" "$out"
fi
