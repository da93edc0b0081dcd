#!/usr/bin/env bash
# Whole-command timing on the GPU machine (issue 16): where the wall time of `gigareg register`
# goes, as a user runs it. Builds the CLI (and, with BASE=tarball, a baseline tree's CLI beside
# it), then:
#   256^3: cfmi sub-01 <- sub-02, `--preset greedy --device cuda`, default outputs (.nii.gz warp,
#          inverse warp, warped image, QC picture); baseline and current alternate, RUNS each;
#          the decompressed outputs of the two are compared byte for byte.
#   large (LARGE=N, N = upsampling of Colin27 0.5 mm; 3 gives 0.95 Gvox, 4 gives 2.25 Gvox): one greedy CC level of
#          10 iterations, --no-inverse-warp, .nii warp (the issue's set-up), current tree only.
# Prints wall seconds, peak host RSS and the phase lines of `-v 2` (read inputs, backend
# start-up, stages, inverse, results to the host, write outputs, QC).
# Needs .devsys/ (scripts/pack-device-deps.sh) and .devsys/data/ (cfmi brainmasks, Colin 0.5 mm).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
RUNS=${RUNS:-3}
tar -xzf .devsys/itk.tar.gz -C / --no-same-owner
tar -xzf .devsys/deps.tar.gz -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
nproc

build_cli() {  # source dir, build dir, log, jobs, targets...
  local src=$1 dir=$2 log=$3 jobs=$4; shift 4
  cmake -S "$src" -B "$dir" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" -DGIGAREG_BUILD_TESTS=${TESTS:+ON} -DGIGAREG_BUILD_BENCHMARKS=ON \
    -DGIGAREG_DISTRIBUTED=ON > "$log" 2>&1 && cmake --build "$dir" --target "$@" -j"$jobs" >> "$log" 2>&1
}
cli_path() {  # the tool moved from examples/ to tools/
  if [[ -x $1/tools/gigareg ]]; then echo $1/tools/gigareg; else echo $1/examples/gigareg; fi
}
cur=/tmp/build-cur
if [[ -n ${BASE:-} ]]; then
  mkdir -p /tmp/base-src && tar -xzf "$BASE" -C /tmp/base-src
  build_cli /tmp/base-src /tmp/build-base "$out/build-base.log" 4 gigareg_cli &
  base_pid=$!
fi
start=$SECONDS
targets=(gigareg_cli bench_io)
# TESTS=1: also build the CUDA tests (and the direct-NIfTI and MPI/NCCL ones) and run them first.
if [[ -n ${TESTS:-} ]]; then
  targets+=(test_field_cuda test_loss_cuda test_optim_cuda test_smooth_cuda test_warp_cuda
            test_registration_cuda test_texture_mask_cuda test_mask test_io_nifti_direct dist_tests)
fi
build_cli "$root" $cur "$out/build-cur.log" 12 "${targets[@]}" || { grep -E "error" "$out/build-cur.log" | head -20; tail -5 "$out/build-cur.log"; exit 1; }
if [[ -n ${BASE:-} ]]; then wait $base_pid || { tail -20 "$out/build-base.log"; exit 1; }; fi
echo "built at $((SECONDS - start)) s"
if [[ -n ${TESTS:-} ]]; then
  (cd $cur && ctest -R "Cuda|CUDA|cuda|DirectNifti|dist_mpi_np2" --output-on-failure -j4 --timeout 300) \
    > "$out/ctest_cuda.log" 2>&1
  grep -E "tests passed|tests failed|\(Failed\)|\(SEGFAULT\)|\(Timeout\)" "$out/ctest_cuda.log" | head -20
  echo "tests done at $((SECONDS - start)) s"
fi
cli_of() { [[ $1 == base ]] && cli_path /tmp/build-base || cli_path $cur; }

# One command: wall seconds and peak RSS of the child (GiB) on the first line, its log after.
source "$(dirname "${BASH_SOURCE[0]}")/command_timing.sh"  # timed, compare_outputs

d=$root/.devsys/data
f=$d/cfmi_sub-01_brainmask.nii.gz
m=$d/cfmi_sub-02_brainmask.nii.gz
tags=(cur)
[[ -n ${BASE:-} ]] && tags=(base cur)
pairs=()
for tag in "${tags[@]}"; do pairs+=("$tag=$(cli_of $tag)"); done
alternate_256 "$RUNS" "$out" "$f" "$m" "${pairs[@]}"
for tag in "${tags[@]}"; do ls -la /tmp/cmd/$tag/ | awk '{print $5, $9}' | tail -n +4; done
if [[ -n ${BASE:-} ]]; then
  echo "--- decompressed outputs, baseline vs current"
  compare_outputs /tmp/cmd/base /tmp/cmd/cur
  gzip -t /tmp/cmd/cur/*.nii.gz && echo "gzip -t: all current .nii.gz pass"
fi

echo "--- file I/O of a 256^3 field (bench_io, $(nproc) cores)"
TMPDIR=/tmp $cur/benchmarks/bench_io --benchmark_format=console 2>&1 | grep -E "median" | \
  sed -E 's/\/iterations:1\/repeats:3\/real_time_median//' | tee "$out/bench_io.txt"

if [[ -n ${LARGE:-} && $((SECONDS - start)) -gt ${LARGE_UNLESS_AFTER:-99999} ]]; then
  echo "large run skipped: $((SECONDS - start)) s already used"
elif [[ -n ${LARGE:-} ]]; then
  large_run "$(cli_of cur)" $d/colin27_ch2better_0.5mm.nii.gz "$LARGE" "$out"
fi
