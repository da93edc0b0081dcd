#!/usr/bin/env bash
# Where the time of one GPU registration goes: builds the CLI only, runs the cfmi 02 -> 01
# registration (moments + affine + greedy) twice with -v 2 and prints the phase timers.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tar -xzf .devsys/itk.tar.gz -C / --no-same-owner
tar -xzf .devsys/deps.tar.gz -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
build=/tmp/gigareg-build
cmake -S . -B $build -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" -DGIGAREG_BUILD_TOOLS=ON -DGIGAREG_BUILD_TESTS=OFF \
  -DGIGAREG_BUILD_BENCHMARKS=OFF -DGIGAREG_DISTRIBUTED=ON > /tmp/configure.log 2>&1 || { tail -30 /tmp/configure.log; exit 1; }
cmake --build $build --target gigareg_cli -j"$(nproc)" > /tmp/build.log 2>&1 || { grep error /tmp/build.log | head; exit 1; }
d=$root/.devsys/data/brain_labelled
f=$d/cfmi_sub-01_brainmask.nii.gz
m=$d/cfmi_sub-02_brainmask.nii.gz
for run in 1 2; do
  echo "== run $run"
  GIGAREG_DISTRIBUTED=0 /usr/bin/time -f "wall %e s" $build/tools/gigareg register -d 3 -r [$f,$m,3] \
    -t Affine[0.1] -m MI[$f,$m,1,32] -c [100x50x25,1e-6,10] -f 4x2x1 -s 2x1x0vox \
    -t Greedy[0.25,1.5,0.5] -m CC[$f,$m,1,2] -c [60x40x20,1e-6,10] -f 4x2x1 -s 2x1x0vox \
    --device cuda -v 2 --no-qc -o [/tmp/e2e/,/tmp/e2e/w.nii.gz] 2>&1 | grep -E "time:|done in|wall| it( |$)"
done
