#!/usr/bin/env bash
# One call on a GPU machine for the distributed path and the pipeline benchmarks:
#   1. build (CUDA, MPI, NCCL) and run the whole test suite (CPU ranks for the sharded tests);
#   2. the NCCL path with one rank (mpirun -np 1) against the plain GPU run of the same
#      `gigareg register` command: output files compared byte for byte;
#   3. with several GPUs: the DistNccl tests on P ranks, and mpirun -np P over NCCL against one
#      GPU (max abs differences);
#   4. a cfmi pair (moments + affine + greedy preset) end to end, with the stage times;
#   5. bench_registration (one greedy iteration at 128^3..512^3, time and peak memory per voxel).
# Needs .devsys/ (scripts/pack-device-deps.sh and the data under .devsys/data) carried.
set -uo pipefail
final=${OUT:-$PWD/gpu-out}
out=/tmp/gigareg-gpu-logs   # everything; packed into $OUT/logs.tgz at the end (few files come back)
mkdir -p "$out" "$final"
trap 'tar -czf "$final/logs.tgz" -C "$out" . 2>/dev/null' EXIT
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tar -xzf .devsys/itk.tar.gz -C / --no-same-owner
tar -xzf .devsys/deps.tar.gz -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
ngpu=$(nvidia-smi -L | wc -l)
build=/tmp/gigareg-build
data=$root/.devsys/data
cmake -S . -B $build -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" -DGIGAREG_BUILD_TOOLS=ON -DGIGAREG_DISTRIBUTED=ON \
  -DGIGAREG_SHARED_DATA="$data" > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
cmake --build $build -j"$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -40; exit 1; }
echo "build ok"
cli=$build/tools/gigareg
mpi="mpirun --allow-run-as-root --oversubscribe"

status=0
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
  (cd $build && ctest -E "downstream|Accuracy" --output-on-failure -j8 --timeout 600) > "$out/ctest_all.log" 2>&1 || status=1
  grep -E "tests passed|tests failed" "$out/ctest_all.log"
  grep -E "\(Failed\)|\(SEGFAULT\)|\(Timeout\)" "$out/ctest_all.log" | head -20
  $mpi -np 1 $build/tests/distributed/dist_tests --gtest_filter='DistNccl*' > "$out/nccl1.log" 2>&1 || status=1
  grep -E "PASSED|FAILED" "$out/nccl1.log" | head -5
  (cd $build && ctest -L accuracy --output-on-failure --timeout 600) > "$out/accuracy.log" 2>&1 || status=1
  grep -E "tests passed|tests failed|Dice|mean|RMS|pair|det" "$out/accuracy.log" | head -40
fi

f=$data/brain_labelled/cfmi_sub-01_brainmask.nii.gz
m=$data/brain_labelled/cfmi_sub-02_brainmask.nii.gz
args="-d 3 -r [$f,$m,3] -t Affine[0.1] -m MI[$f,$m,1,32] -c [100x50x25,1e-6,10] -f 4x2x1 -s 2x1x0vox
 -t Greedy[0.25,1.5,0.5] -m CC[$f,$m,1,2] -c [60x40x20,1e-6,10] -f 4x2x1 -s 2x1x0vox --device cuda -v 1 --no-qc"
GIGAREG_DISTRIBUTED=0 $cli register $args -o [/tmp/one/,/tmp/one/w.nii.gz] > "$out/one.log" 2>&1 || status=1
$mpi -np 1 $cli register $args -o [/tmp/nccl1/,/tmp/nccl1/w.nii.gz] > "$out/nccl1_cli.log" 2>&1 || status=1
echo "one GPU, moments + affine + greedy (library time):"; grep -E "level [0-9]/[0-9] |registration done" "$out/one.log" | tail -8
for x in 0GenericAffine.mat 1Warp.nii.gz 1InverseWarp.nii.gz w.nii.gz; do
  if cmp -s /tmp/one/$x /tmp/nccl1/$x; then echo "NCCL 1 rank vs plain GPU: $x identical"; else echo "NCCL 1 rank vs plain GPU: $x DIFFERS"; status=1; fi
done
if (( ngpu > 1 )); then
  # The same greedy stage with MeanSquares: every op it uses (warp, MSQ, smoothing, Adam, the
  # compositive update) rounds the same on any slab, so P GPUs give one GPU's bytes (seen on 2
  # H200s); CC's LNCC does not (its running z sums restart, and its shift is taken, at each
  # block's first plane, and a slab moves those), so CC is compared against the CPU-GPU spread.
  margs="${args/CC\[$f,$m,1,2\]/MeanSquares[$f,$m,1]}"
  GIGAREG_DISTRIBUTED=0 $cli register $margs -o [/tmp/one_msq/,/tmp/one_msq/w.nii.gz] > "$out/one_msq.log" 2>&1 || status=1
  # A yardstick for CC: the same command on the CPU backend against one GPU.
  GIGAREG_DISTRIBUTED=0 $cli register ${args/--device cuda/--device cpu} -o [/tmp/cpu/,/tmp/cpu/w.nii.gz] > "$out/cpu.log" 2>&1 || status=1
  python3 benchmarks/compare_volumes.py "CPU vs one GPU, CC: 1Warp" /tmp/cpu/1Warp.nii.gz /tmp/one/1Warp.nii.gz
  for p in 2 4 8; do
    (( p > ngpu )) && break
    # The communicator, device halo exchange and sharded CUDA ops, one GPU per rank.
    $mpi -np $p $build/tests/distributed/dist_tests --gtest_filter='DistNccl*' > "$out/nccl${p}_tests.log" 2>&1 || status=1
    echo "DistNccl on $p GPUs: $(grep -aE 'rank\(s\)' "$out/nccl${p}_tests.log" | tail -1)"
    $mpi -np $p $cli register $args -o [/tmp/nccl$p/,/tmp/nccl$p/w.nii.gz] > "$out/nccl${p}_cli.log" 2>&1 || status=1
    $mpi -np $p $cli register $margs -o [/tmp/nccl${p}_msq/,/tmp/nccl${p}_msq/w.nii.gz] > "$out/nccl${p}_msq.log" 2>&1 || status=1
    for x in 1Warp.nii.gz w.nii.gz; do
      python3 benchmarks/compare_volumes.py "$p GPUs vs one GPU, CC: $x" /tmp/one/$x /tmp/nccl$p/$x --slabs $p
      python3 benchmarks/compare_volumes.py "$p GPUs vs one GPU, MSQ: $x" /tmp/one_msq/$x /tmp/nccl${p}_msq/$x --slabs $p
    done
    grep -hE "^stage 2 \(Greedy, [A-Za-z]+\) level 3/3" "$out/one.log" "$out/nccl${p}_cli.log" "$out/one_msq.log" "$out/nccl${p}_msq.log"
  done
fi
# End to end on one GPU: the library's stage times, the command's wall time.
/usr/bin/time -f "wall %e s, max RSS %M KB" $cli register --fixed $f --moving $m --preset greedy \
  -o /tmp/e2e/ -v 1 --device cuda --no-qc > "$out/e2e.log" 2>&1 || status=1
grep -E "level|done|wall" "$out/e2e.log" | tail -12
if [[ ${SKIP_BENCH:-0} != 1 ]]; then
  $build/benchmarks/bench_registration --benchmark_format=console --benchmark_out="$out/bench_registration.json" \
    --benchmark_out_format=json > "$out/bench_registration.txt" 2>&1 || status=1
  grep -E "BM_|ms_per" "$out/bench_registration.txt" | tail -6
fi
exit $status
