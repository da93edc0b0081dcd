# Shell functions shared by the whole-command timing scripts (sourced, not run).

# timed CMD...: runs CMD, prints "rc R wall W s peak RSS G GiB" (the child's peak resident set)
# and then CMD's output.
timed() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(f"rc {p.returncode} wall {wall:.2f} s peak RSS {rss:.2f} GiB")
print(p.stdout)
PY
}

# compare_outputs DIR_A DIR_B: for every .nii.gz in DIR_B, whether its decompressed bytes equal
# DIR_A's, and both compressed sizes.
compare_outputs() {
  python3 - "$1" "$2" <<'PY'
import gzip, os, sys
a, b = sys.argv[1:]
for name in sorted(os.listdir(b)):
    if not name.endswith(".nii.gz"): continue
    da = gzip.open(os.path.join(a, name)).read(); db = gzip.open(os.path.join(b, name)).read()
    print(f"{name}: {'identical' if da == db else 'DIFFER'} decompressed ({len(db)} bytes); "
          f"{os.path.getsize(os.path.join(a, name))} -> {os.path.getsize(os.path.join(b, name))} compressed")
PY
}

# large_run CLI COLIN_0.5MM UPSAMPLE OUT_LOG_DIR: the issue-16 gigavoxel set-up. `phantom` upsamples
# Colin27 0.5 mm (3 gives 0.95 Gvox, 4 gives 2.25) into a fixed/moving pair of .nii files, then one greedy CC
# level of 10 iterations, --no-inverse-warp, .nii warp, on the GPU; prints wall, RSS and phases.
large_run() {
  local cli=$1 colin=$2 up=$3 logs=$4 big=${BIG_DIR:-/tmp/big}
  mkdir -p "$big"
  timed "$cli" phantom -i "$colin" --upsample "$up" -o "$big/brain_" > "$logs/large_phantom.log"
  echo "phantom: $(head -1 "$logs/large_phantom.log")"; grep -E "wrote|voxels" "$logs/large_phantom.log" | head -3
  local F=$big/brain_fixed.nii M=$big/brain_moving.nii
  GIGAREG_DISTRIBUTED=0 timed "$cli" register -d 3 -o "[$big/reg_,$big/warped.nii]" -r "[$F,$M,0]" \
    -t "Greedy[0.25,1.5,0.5]" -m "CC[$F,$M,1,2]" -c "[10,1e-6,10]" -f 1 -s 0vox --no-inverse-warp --no-qc \
    --warp-extension .nii --device cuda -v 2 > "$logs/large_register.log"
  echo "large register: $(head -1 "$logs/large_register.log")"
  grep -E "time:|registration done|level" "$logs/large_register.log" | head -30
}

# alternate_256 RUNS LOGS FIXED MOVING TAG=CLI...: `register --preset greedy --device cuda` on the
# pair, each CLI in turn, RUNS rounds (outputs in /tmp/cmd/TAG/, logs LOGS/256_TAG_RUN.log); prints
# wall and RSS per run, then the phases of each CLI's last run.
alternate_256() {
  local runs=$1 logs=$2 f=$3 m=$4; shift 4
  local run pair tag cli o
  for run in $(seq 1 "$runs"); do
    for pair in "$@"; do
      tag=${pair%%=*} cli=${pair#*=} o=/tmp/cmd/$tag/
      rm -rf "$o" && mkdir -p "$o"
      GIGAREG_DISTRIBUTED=0 timed "$cli" register --fixed "$f" --moving "$m" -o "$o" --preset greedy \
        --device cuda -v 2 > "$logs/256_${tag}_$run.log"
      echo "256^3 $tag run $run: $(head -1 "$logs/256_${tag}_$run.log")"
    done
  done
  for pair in "$@"; do
    tag=${pair%%=*}
    echo "--- 256^3 $tag phases (last run)"
    grep -E "time:|registration done" "$logs/256_${tag}_$runs.log"
  done
}
