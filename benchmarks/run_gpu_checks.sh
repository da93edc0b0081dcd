#!/usr/bin/env bash
# Every GPU check of issues 16, 18 and 19 in one device call, with binaries built on the
# development machine (short calls: nothing but the Python module is built on the GPU machine):
#   1. the Python module built (benchmarks/run_python_gpu.sh build) while compute-sanitizer runs
#      racecheck on the LNCC, smoothing and registration tests and memcheck / initcheck on the
#      registration tests, one process per test (scripts/compute_sanitizer_gpu.sh PER_TEST);
#   2. then, alone on the GPU: the PyTorch tests on CUDA and the training-step benchmark with its
#      kernel profile (run_python_gpu.sh test);
#   3. then the 256^3 command, baseline and current alternating (run_prebuilt_gpu.sh).
# Carry DEVBIN (default .devsys) holding what run_prebuilt_gpu.sh and run_python_gpu.sh describe:
# itk.tar.gz and deps.tar.gz (scripts/pack-device-deps.sh), bin/ (test_*_cuda, dist_tests,
# gigareg_new, optionally gigareg_base), data/ (cfmi sub-01/02 brainmasks,
# vxm_subjA_scan_vol_seg.npz, l2r2019_subjB_vol.npz) and whl/ (the nanobind wheel). About 60 MB.
# SAN_LIMIT: seconds per sanitizer run (default 300); the call takes about SAN_LIMIT + 200 s.
# Logs: $OUT/logs.tar.gz; the summary lines on stdout.
set -uo pipefail
export DEVBIN=${DEVBIN:-.devsys}
out=${OUT:-$PWD/gpu-out}
L=/tmp/gpu-checks
mkdir -p "$out" "$L"
(bash benchmarks/run_python_gpu.sh build > $L/pybuild_summary.txt 2>&1) &
build=$!
sleep 5  # run_python_gpu.sh unpacks ITK and the dependencies first
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
for b in loss registration smooth; do
  mkdir -p /tmp/bin_$b
  ln -sf "$PWD/$DEVBIN/bin/test_${b}_cuda" /tmp/bin_$b/
done
san=${SAN_LIMIT:-300}
sanitize() {  # name, tests at a time, tools, limit, binary folder
  PER_TEST=$2 TOOLS="$3" TIMEOUT=$4 BIN=$5 OUT=$L/san bash scripts/compute_sanitizer_gpu.sh > "$L/san_$1.txt" 2>&1
}
sanitize race_loss 13 racecheck $san /tmp/bin_loss &
sanitize race_registration 5 racecheck $san /tmp/bin_registration &
sanitize mem_registration 5 "memcheck initcheck" $((san / 2)) /tmp/bin_registration &
sanitize race_smooth 10 racecheck $san /tmp/bin_smooth &
wait $build
cat $L/pybuild_summary.txt
wait
grep -h -E "^(racecheck|memcheck|initcheck)" $L/san_*.txt | sort
PROFILE=1 OUT=$L timeout 200 bash benchmarks/run_python_gpu.sh test
grep -E "passed|failed" $L/pytest_torch.log | tail -3
cp $L/train_step.json "$out/" 2> /dev/null
SKIP_TESTS=1 RUNS=${RUNS:-3} timeout 120 bash benchmarks/run_prebuilt_gpu.sh 2>&1 | grep -vE "^time: level|set-up"
tar -czf "$out/logs.tar.gz" -C /tmp gpu-checks
