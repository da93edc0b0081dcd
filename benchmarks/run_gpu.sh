#!/usr/bin/env bash
# One call on the GPU machine: unpack the carried dependencies, build, run the CUDA tests and the
# benchmarks, print a short table last. Full logs go to $OUT (or ./gpu-out when OUT is unset).
#   usage: benchmarks/run_gpu.sh [tests|bench|all] [benchmark filter regex]
#          benchmarks/run_gpu.sh accuracy   (the real-data accuracy tests only: run_accuracy_gpu.sh)
# Needs .devsys/ (scripts/pack-device-deps.sh) carried with the run.
set -uo pipefail
what=${1:-all}
filter=${2:-.}
if [[ $what == accuracy ]]; then exec bash "$(dirname "$0")/run_accuracy_gpu.sh"; fi
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

tar -xzf .devsys/itk.tar.gz -C / --no-same-owner
tar -xzf .devsys/deps.tar.gz -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader | tee "$out/device.txt"
git rev-parse --short HEAD 2>/dev/null | tee "$out/commit.txt" || true

build=/tmp/gigareg-build
cmake -S . -B $build -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" -DGIGAREG_BUILD_TOOLS=ON -DGIGAREG_DISTRIBUTED=ON \
  -DGIGAREG_SHARED_DATA="$root/.devsys/data" > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
cmake --build $build -j16 > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -40; tail -20 "$out/build.log"; exit 1; }
echo "build ok"

status=0
if [[ $what == tests || $what == all ]]; then
  (cd $build && ctest -R "CUDA|Cuda|cuda|Nccl|dist_" --output-on-failure -j4 --timeout 300) > "$out/ctest_cuda.log" 2>&1 || status=1
  (cd $build && ctest -E "downstream" --output-on-failure -j16 --timeout 300) > "$out/ctest_all.log" 2>&1 || status=1
  grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/ctest_cuda.log" | head -30
  grep -E "tests passed|tests failed" "$out/ctest_all.log"
  grep -E "\(Failed\)|\(SEGFAULT\)|\(Timeout\)|Exception" "$out/ctest_all.log" | head -30
fi
if [[ $what == bench || $what == all ]]; then
  for b in $build/benchmarks/bench_*; do
    name=$(basename "$b")
    "$b" --benchmark_filter="$filter" --benchmark_min_time=0.3 --benchmark_format=console \
         --benchmark_out="$out/$name.json" --benchmark_out_format=json > "$out/$name.txt" 2>&1 || status=1
  done
  python3 "$root/benchmarks/summarize.py" "$out"/bench_*.json || true
fi
exit $status
