#!/usr/bin/env bash
# The accuracy tests of issue 4 on the GPU machine (docs/accuracy.md): unpack the carried
# dependencies, build only the two accuracy test programs, run them, print the ACCURACY table.
#   usage: benchmarks/run_accuracy_gpu.sh            (also: benchmarks/run_gpu.sh accuracy)
# Needs .devsys/ carried with the run (scripts/pack-device-deps.sh) and the real data under
# .devsys/data/<same subfolders as ../shared/data>: brain_labelled/cfmi_sub-{01,02,04,06}_{brainmask,aseg},
# fs_bert_{norm,aseg}, multimodal/stroke_{T1,T2,FLAIR}, chris_{t1,pd}.
# Optional: GIGAREG_ACCURACY_SWEEP="Greedy,step,sigGrad,sigWarp,100x70x40,radius;SyN,..." also
# runs the deformable-parameter sweep (AccuracyBrain.SweepDeformable). Logs go to $OUT (or
# ./gpu-out when OUT is unset).
set -uo pipefail
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

t_start=$(date +%s)
tar -xzf .devsys/itk.tar.gz -C / --no-same-owner
tar -xzf .devsys/deps.tar.gz -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader | tee "$out/device.txt"
{ git rev-parse --short HEAD 2>/dev/null; git status --short 2>/dev/null | grep -q . && echo "uncommitted changes"; } | tee "$out/commit.txt"
date -u +%Y-%m-%dT%H:%MZ | tee "$out/date.txt"

build=/tmp/gigareg-accuracy
cmake -S . -B $build -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" -DGIGAREG_BUILD_TOOLS=OFF -DGIGAREG_BUILD_EXAMPLES=OFF -DGIGAREG_DISTRIBUTED=OFF \
  -DGIGAREG_BUILD_BENCHMARKS=OFF -DGIGAREG_SHARED_DATA="$root/.devsys/data" > "$out/configure.log" 2>&1 \
  || { tail -40 "$out/configure.log"; exit 1; }
cmake --build $build --target test_accuracy_brain test_accuracy_multimodal -j16 > "$out/build.log" 2>&1 \
  || { grep -E "error" "$out/build.log" | head -40; tail -20 "$out/build.log"; exit 1; }
echo "build ok ($(( $(date +%s) - t_start )) s)"

status=0
bin=$build/tests
# The checked tests, exactly as CTest runs them (ctest -L accuracy), one log each.
"$bin/test_accuracy_brain" --gtest_filter='AccuracyBrain.GreedyAndSyNDice:AccuracyMoments.*' \
  > "$out/accuracy_brain.log" 2>&1 || status=1
"$bin/test_accuracy_multimodal" > "$out/accuracy_multimodal.log" 2>&1 || status=1
if [[ -n ${GIGAREG_ACCURACY_SWEEP:-} ]]; then
  "$bin/test_accuracy_brain" --gtest_filter='AccuracyBrain.SweepDeformable' > "$out/accuracy_sweep.log" 2>&1 || status=1
  grep -E "^SWEEP mean" "$out/accuracy_sweep.log"
fi
echo "--- table"
grep -hE "^ACCURACY" "$out"/accuracy_brain.log "$out"/accuracy_multimodal.log
grep -hE "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]|Failure|Expected|Which is" "$out"/accuracy_*.log | head -40
echo "total $(( $(date +%s) - t_start )) s"
exit $status
