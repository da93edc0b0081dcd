#!/usr/bin/env bash
# Issue 6's scaling runs on a machine with one or more GPUs (one `run` call per step; the
# equivalence of P GPUs with one is step 3 of benchmarks/run_dist_gpu.sh):
#   STEP=strong  a ~1 Gvox pair, Colin27 0.5 mm upsampled 3x per axis (903x1110x948, 0.95 Gvox,
#                unimodal): greedy CC, time per iteration at the finest level and end to end, for
#                each P in $PLIST (default 1 2 4 8, capped at the GPUs present)
#   STEP=weak    about 0.5 Gvox per GPU with integer upsampling: P=1 2x (0.28 Gvox), P=2 3x (0.95),
#                P=4 4x (2.25), P=8 5x (4.4); efficiency from voxels per second per GPU
#   STEP=brain   the 0.1 mm brain: 5x (1505x1850x1580, 4.4 Gvox), moving intensities remapped
#                (multimodal), greedy MI at native resolution on $P GPUs (default all present)
# Pairs come from `gigareg phantom` (uncompressed .nii: each rank reads its slab's byte range),
# made once per factor under $WORK (default /tmp/gigareg-multigpu). Outputs: warps as .nii
# (--warp-extension .nii), no inverse (--no-inverse-warp) so the figures are the registration's.
# Peak memory per GPU: nvidia-smi sampled every 100 ms during each run (max per GPU, includes the
# CUDA context). Time per iteration at the finest level: the median interval between its
# iterations, as the library reports it (the level's set-up and state allocation are not in it).
# Everything goes to $OUT/<step>_*.log and one summary table.
# Needs .devsys/ carried, with the 0.5 mm Colin27 at .devsys/data/large/colin27_ch2better_0.5mm.nii.gz.
set -uo pipefail
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
STEP=${STEP:-strong}
work=${WORK:-/tmp/gigareg-multigpu}
mkdir -p "$work"
if [[ -d .devsys ]]; then
  tar -xzf .devsys/itk.tar.gz -C / --no-same-owner
  tar -xzf .devsys/deps.tar.gz -C / --no-same-owner
  export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
export NCCL_NVLS_ENABLE=0
source_image=${SOURCE_IMAGE:-$root/.devsys/data/large/colin27_ch2better_0.5mm.nii.gz}
[[ -f $source_image ]] || { echo "missing $source_image"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
ngpu=$(nvidia-smi -L | wc -l)
build=${BUILD:-/tmp/gigareg-multigpu-build}  # BUILD: reuse a configured build folder
t0=$(date +%s)
cmake -S . -B $build -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" -DGIGAREG_BUILD_TOOLS=ON -DGIGAREG_DISTRIBUTED=ON \
  -DGIGAREG_BUILD_TESTS=OFF -DGIGAREG_BUILD_BENCHMARKS=OFF > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build $build --target gigareg_cli -j"$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
cli=$build/tools/gigareg
echo "build ok ($(( $(date +%s) - t0 )) s)"
mpi="mpirun --allow-run-as-root --oversubscribe --bind-to none"

# make_pair FACTOR REMAP: the pair under $work/fFACTOR_REMAP_ (made once).
make_pair() {
  local prefix=$work/f$1_$2_
  if [[ ! -f ${prefix}moving.nii ]]; then
    /usr/bin/time -f "phantom ${1}x: wall %e s, max RSS %M KB" $cli phantom -i "$source_image" --upsample "$1" \
      --remap "$2" -o "$prefix" > "$out/phantom_f$1_$2.log" 2>&1 || { cat "$out/phantom_f$1_$2.log"; return 1; }
    grep -E "upsampled|s to make|wall" "$out/phantom_f$1_$2.log"
  fi
  echo "$prefix"
}

# register NAME P PREFIX METRIC: one registration on P GPUs (P=1: a plain process), logs and a
# summary line: P, voxels, finest level iterations, ms per iteration, registration s, wall s, peak GB per GPU.
register() {
  local name=$1 p=$2 prefix=$3 metric=$4
  local f=${prefix}fixed.nii m=${prefix}moving.nii
  local mspec
  if [[ $metric == CC ]]; then mspec="CC[$f,$m,1,2]"; else mspec="MI[$f,$m,1,32]"; fi
  local args="-d 3 -t Greedy[0.25,1.5,0.5] -m $mspec -c [${ITERATIONS:-20x10x10},1e-9,10] -f 4x2x1 -s 2x1x0vox
    --device cuda -v 2 --no-qc --warp-extension .nii --no-inverse-warp -o [$work/out_${name}_/,$work/out_${name}_/w.nii]"
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 100 > "$out/${name}_mem.csv" &
  local smi=$!
  local launch="env GIGAREG_DISTRIBUTED=0"
  (( p > 1 )) && launch="$mpi -np $p"
  /usr/bin/time -f "wall %e s" $launch $cli register $args > "$out/${name}.log" 2>&1
  local rc=$?
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  rm -rf "$work/out_${name}_"
  python3 - "$out/${name}.log" "$out/${name}_mem.csv" "$name" "$p" "$rc" <<'PY'
import re, sys
log, mem, name, p, rc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
text = open(log, errors='replace').read()
levels = re.findall(r'stage 1 \(Greedy, \w+\) level (\d+)/(\d+) (\d+)x(\d+)x(\d+): (\d+) iterations.*?, ([\d.]+) s'
                    r'(?: \(([\d.eE+-]+) ms per iteration, median\))?', text)
setups = re.findall(r'time: level (\d+) set-up \(images, ranges[^)]*\) ([\d.eE+-]+) s', text)
done = re.search(r'registration done in ([\d.]+) s', text)
wall = re.search(r'wall ([\d.]+) s', text)
peak = {}
for line in open(mem):
    try:
        i, used = [int(x) for x in line.split(',')]
        peak[i] = max(peak.get(i, 0), used)
    except ValueError:
        pass
if rc != 0 or not levels:
    print('%-12s P=%d FAILED (rc %d): %s' % (name, p, rc, text.strip().splitlines()[-1] if text.strip() else ''))
    sys.exit(0)
lv, n, x, y, z, its, secs, median_ms = levels[-1]
vox = int(x) * int(y) * int(z)
setup = float(setups[-1][1]) if setups else 0.0
# The median interval between iterations (the library's figure; the level's set-up is not in it).
per_it = float(median_ms) * 1e-3 if median_ms else (float(secs) - setup) / max(int(its), 1)
gpus = ' '.join('%.1f' % (peak[i] / 1024.0) for i in sorted(peak)[:p]) if peak else '?'
print('%-12s P=%d %.3f Gvox finest: %s it, %.1f ms/it (level %.2f s, set-up %.2f s); registration %s s; wall %s s; peak GB per GPU: %s'
      % (name, p, vox * 1e-9, its, per_it * 1e3, float(secs), setup, done.group(1) if done else '?',
         wall.group(1) if wall else '?', gpus))
PY
}

plist=${PLIST:-1 2 4 8}
case $STEP in
  strong)
    prefix=$(make_pair 3 none | tail -1) || exit 1
    for p in $plist; do (( p > ngpu )) && break; register strong_p$p $p "$prefix" CC; done | tee "$out/summary.txt" ;;
  weak)
    declare -A factor=([1]=2 [2]=3 [4]=4 [8]=5)
    for p in $plist; do
      (( p > ngpu )) && break
      prefix=$(make_pair ${factor[$p]} none | tail -1) || exit 1
      register weak_p$p $p "$prefix" CC
    done | tee "$out/summary.txt" ;;
  brain)
    prefix=$(make_pair 5 multimodal | tail -1) || exit 1
    register brain_p${P:-$ngpu} ${P:-$ngpu} "$prefix" MI | tee "$out/summary.txt" ;;
  *) echo "unknown STEP $STEP (strong, weak, brain)"; exit 1 ;;
esac
echo "total $(( $(date +%s) - t0 )) s"
