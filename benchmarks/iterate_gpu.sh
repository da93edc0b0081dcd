#!/usr/bin/env bash
# Iteration helper for the LNCC / compose kernels on the GPU machine (one `run` call, `.devsys`
# carried): builds only bench_ops, bench_copy and the CUDA tests, then runs the steps in $STEPS:
#   tests  ctest of the CUDA tests (names matching cuda)
#   bench  bench_ops on $FILTER (default: LNCC and compose at 128^3..512^3)
#   sass   cuobjdump -sass of the LNCC and field kernels
#   ab     A/B of versions of one source file in one process pair: AB_FILES="name=path ..." (each
#          a version of $AB_TARGET, default kernels/lncc.cu; the checkout's own is "tree"), each
#          built into its own bench_ops; then $AB_ROUNDS (default 4) rounds run every version on
#          $AB_FILTER (default the 512^3 LNCC benchmark) in turn, for each GIGAREG_BENCH_CALLS in
#          $AB_CALLS (default 1); prints name, calls, round, median ms
#   ncu    Nsight Compute (full set, per-instruction source counters, --clock-control none) of
#          one 512^3 launch of lncc_box_kernel and of compose32_kernel ($NCU_SPECS: other
#          "kernel-regex|benchmark-filter" pairs)
# Everything under $OUT comes back as one archive, all.tar.gz (at most 8 files come back).
#   usage: STEPS="tests bench" bash benchmarks/iterate_gpu.sh
set -uo pipefail
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
STEPS=${STEPS:-tests bench}
FILTER=${FILTER:-BM_(Lncc|Compose)[A-Za-z]*/(128|256|512)/}
tar -xzf .devsys/itk.tar.gz -C / --no-same-owner
tar -xzf .devsys/deps.tar.gz -C / --no-same-owner
export LD_LIBRARY_PATH=/opt/itk/lib:/opt/gdeps/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader | tee "$out/device.txt"
build=/tmp/gigareg-iter
t0=$(date +%s)
# A previous ab step on this (still warm) machine built another version of a file into $build;
# the checkout's copy keeps its older time stamp, so make the build see it again.
[[ -f $build/.ab_dirty ]] && touch "$(cat $build/.ab_dirty)" && rm -f $build/.ab_dirty
cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_CUDA_FLAGS=-lineinfo -DCMAKE_PREFIX_PATH="/opt/itk;/opt/gdeps" \
  -DGIGAREG_BUILD_TOOLS=OFF -DGIGAREG_BUILD_EXAMPLES=OFF -DGIGAREG_DISTRIBUTED=OFF > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
targets="bench_ops bench_copy $(cd tests/cuda && ls test_*.cpp | sed 's/\.cpp$//' | tr '\n' ' ')"
cmake --build $build -j16 --target $targets > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
echo "build ok in $(( $(date +%s) - t0 )) s"
status=0
for step in $STEPS; do
  case $step in
    tests)
      (cd $build && ctest -R "CUDA|Cuda|cuda" --output-on-failure -j4 --timeout 300) > "$out/ctest_cuda.log" 2>&1 || status=1
      grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/ctest_cuda.log" | head -20 ;;
    bench)
      for b in bench_copy bench_ops; do
        f=$FILTER; [[ $b == bench_copy ]] && f=.
        $build/benchmarks/$b --benchmark_filter="$f" --benchmark_min_time=0.3 --benchmark_format=console \
          --benchmark_out="$out/$b.json" --benchmark_out_format=json > "$out/$b.txt" 2>&1 || status=1
      done
      python3 benchmarks/summarize.py "$out"/bench_*.json ;;
    ab)
      target=${AB_TARGET:-kernels/lncc.cu}
      cp "$target" /tmp/ab_tree
      echo "$target" > $build/.ab_dirty
      names=""
      for spec in tree=/tmp/ab_tree ${AB_FILES:-}; do
        name=${spec%%=*}; src=${spec#*=}
        cp "$src" "$target"
        cmake --build $build -j16 --target bench_ops >> "$out/build.log" 2>&1 || { echo "ab: $name does not build"; status=1; continue; }
        cp $build/benchmarks/bench_ops /tmp/bench_ops_$name
        names="$names $name"
      done
      cp /tmp/ab_tree "$target"
      touch "$target"
      for r in $(seq ${AB_ROUNDS:-4}); do
        for calls in ${AB_CALLS:-1}; do
          for name in $names; do
            GIGAREG_BENCH_CALLS=$calls /tmp/bench_ops_$name --benchmark_filter="${AB_FILTER:-BM_LnccForwardGradient/512/}" \
              --benchmark_min_time=0.3 --benchmark_format=json > "$out/ab_${name}_${calls}_$r.json" 2>/dev/null || status=1
            python3 - "$name" "$r" "$calls" "$out/ab_${name}_${calls}_$r.json" <<'PY'
import json, sys
for b in json.load(open(sys.argv[4]))["benchmarks"]:
    print("AB %-10s calls %-3s round %s %-40s %.4f ms  %.3fx floor" % (sys.argv[1], sys.argv[3],
          sys.argv[2], b["name"].split("/manual_time")[0], b["median_ms"], b["x_floor"]))
PY
          done
        done
      done ;;
    sass)
      for k in lncc field; do
        cuobjdump -sass $build/src/CMakeFiles/gigareg.dir/__/kernels/$k.cu.o | gzip > "$out/sass_$k.txt.gz"
      done ;;
    ncu)
      for spec in ${NCU_SPECS:-"lncc_box_kernel|BM_LnccForwardGradient/512/" "compose32_kernel|BM_Compose/512/"}; do
        k=${spec%%|*}; f=${spec#*|}
        ncu --clock-control none --kernel-name regex:$k --launch-skip 3 --launch-count 1 --set full \
          --import-source yes -o /tmp/$k $build/benchmarks/bench_ops --benchmark_filter="$f" \
          --benchmark_min_time=0.05 > "$out/ncu_$k.log" 2>&1 || tail -5 "$out/ncu_$k.log"
        ncu -i /tmp/$k.ncu-rep --page details > "$out/ncu_${k}_details.txt" 2>&1
        ncu -i /tmp/$k.ncu-rep --page source --csv --print-source sass 2>&1 | gzip > "$out/ncu_${k}_src.csv.gz"
        grep -E "Duration|Issue Slots Busy|DRAM Through|Registers Per|Executed Instructions  " "$out/ncu_${k}_details.txt" | head -8
      done ;;
  esac
done
echo "total $(( $(date +%s) - t0 )) s"
(cd "$out" && tar -czf /tmp/all.tar.gz --exclude=all.tar.gz . && rm -rf ./* && mv /tmp/all.tar.gz .)
exit $status
