#!/usr/bin/env bash
# Fingerprints of the CPU registration outputs, to check that a change leaves them byte-identical:
# run it on the tree before the change and after, and diff the two digest files.
#
#   scripts/registration_fingerprint.sh BUILD_DIR OUT_DIR [--quick]
#   diff before/digests.txt after/digests.txt      # must print nothing
#
# What it runs (all on the CPU backend, OMP_NUM_THREADS=2; results do not depend on the thread
# count, but the timing does):
#  - inputs: the MNI152 2 mm template of ../shared/data resampled onto a 4 mm grid (gigareg
#    apply), a phantom pair made from it (gigareg phantom: known warp and affine), a multimodal
#    pair (--remap multimodal), a brain mask and the AAL labels on the same grid;
#  - gigareg register: the command of tests/unit/test_cli.cpp, the four presets, masks on linear,
#    greedy and SyN stages, Mattes MI and mean squares deformable stages, ANTs' plain gradient
#    (GaussianDisplacementField), a translation stage, every initialisation, and (with mpirun) the
#    same command on 2 processes; per run every output file (affine, warps, warped and inverse
#    warped images, QC picture) and the per-iteration losses of the -v 2 log (times removed);
#  - gigareg apply (linear and label interpolation through the warp and affine);
#  - gigareg demo on the 4 mm image and labels (greedy preset);
#  - the registration tests' results (test_registration, test_accuracy_multimodal, and the
#    sharded registrations of dist_tests under mpirun -np 2), hashed by tests/result_digest.hpp.
# --quick skips the test binaries and the demo.
set -euo pipefail
build=$(cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
quick=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
data=${GIGAREG_SHARED_DATA:-$root/../shared/data}
cli=$build/tools/gigareg
export OMP_NUM_THREADS=2 GIGAREG_DISTRIBUTED=0
rm -rf "$out/in" "$out/runs" "$out/digests.txt" "$out/test_results.txt"  # the tests append to it
mkdir -p "$out/in" "$out/runs"
in=$out/in
digests=$out/digests.txt

# A 4 mm grid over the 2 mm template's field of view: its NIfTI header with the dimensions
# halved (rounded up), the spacing doubled and the sform's columns scaled (the qform follows the
# spacing), and zero voxels.
python3 - "$data/templates/fsl_MNI152_T1_2mm.nii.gz" "$in/grid4mm.nii" <<'EOF'
import gzip, struct, sys
h = bytearray(gzip.open(sys.argv[1]).read(348))
dims = list(struct.unpack_from('<8h', h, 40))
pix = list(struct.unpack_from('<8f', h, 76))
for a in (1, 2, 3):
    dims[a] = (dims[a] + 1) // 2
    pix[a] *= 2
struct.pack_into('<8h', h, 40, *dims)
struct.pack_into('<8f', h, 76, *pix)
struct.pack_into('<h', h, 70, 4)    # datatype int16
struct.pack_into('<h', h, 72, 16)   # bitpix
struct.pack_into('<f', h, 108, 352) # vox_offset
for row in range(3):                # srow_x, srow_y, srow_z
    off = 280 + 16 * row
    r = list(struct.unpack_from('<4f', h, off))
    struct.pack_into('<4f', h, off, r[0] * 2, r[1] * 2, r[2] * 2, r[3])
with open(sys.argv[2], 'wb') as f:
    f.write(h + b'\0\0\0\0' + bytes(2 * dims[1] * dims[2] * dims[3]))
EOF

"$cli" apply -i "$data/templates/fsl_MNI152_T1_2mm.nii.gz" -r "$in/grid4mm.nii" -o "$in/base.nii.gz"
"$cli" apply -i "$data/templates/fsl_MNI152_T1_1mm_brain.nii.gz" -r "$in/grid4mm.nii" -o "$in/mask.nii.gz" \
  -n NearestNeighbor
"$cli" apply -i "$data/brain_labelled/colin27_aal_labels.nii.gz" -r "$in/grid4mm.nii" -o "$in/labels.nii.gz" \
  -n GenericLabel
"$cli" phantom -i "$in/base.nii.gz" -u 1 -o "$in/p_" --pixel-type float32 > /dev/null
"$cli" phantom -i "$in/base.nii.gz" -u 1 -o "$in/mm_" --pixel-type float32 --remap multimodal --seed 7 > /dev/null
f=$in/p_fixed.nii m=$in/p_moving.nii mf=$in/mm_fixed.nii mm=$in/mm_moving.nii mask=$in/mask.nii.gz

# register NAME ARGS...: one run into runs/NAME/, its outputs hashed.
register() {
  local name=$1
  shift
  local dir=$out/runs/$name
  mkdir -p "$dir"
  "$cli" register --device cpu -v 2 "$@" > "$dir/log.txt" 2>&1 || { cat "$dir/log.txt"; exit 1; }
  # The per-iteration losses, without the times.
  grep -o 'stage [0-9]* level [0-9]* iteration [0-9]*: loss [^,]*, convergence [^,]*' "$dir/log.txt" \
    > "$dir/losses.txt" || true
}
pair="$f,$m"
o() { echo "[$out/runs/$1/reg_,$out/runs/$1/warped.nii.gz,$out/runs/$1/inverse_warped.nii.gz]"; }

register cli_test -d 3 -o "$(o cli_test)" -r "[$pair,1]" \
  -t "Affine[0.1]" -m "MeanSquares[$pair,1]" -c "[40x30x20,1e-6,10]" -f 4x2x1 -s 2x1x0vox \
  -t "Greedy[0.1,2,1]" -m "CC[$pair,1,2]" -c "[20x10,1e-6,10]" -f 2x1 -s 1x0vox
for preset in rigid affine greedy syn; do
  register "preset_$preset" --fixed "$f" --moving "$m" -o "$out/runs/preset_$preset/" --preset $preset
done
register masks_greedy -o "$(o masks_greedy)" -r "[$pair,3]" -x "[$mask,$mask]" \
  -t "Rigid[0.2]" -m "MI[$pair,1,32]" -c "[30x20,1e-6,10]" -f 2x1 -s 1x0vox \
  -t "Greedy[0.25,1.5,0.5]" -m "CC[$pair,1,2]" -c "[20x10,1e-6,10]" -f 2x1 -s 1x0vox
register masks_syn -o "$(o masks_syn)" -r "[$pair,1]" -x "[$mask,$mask]" \
  -t "Affine[0.1]" -m "MeanSquares[$pair,1]" -c "[20x10,1e-6,10]" -f 2x1 -s 1x0vox \
  -t "SyN[0.25,2,0.5]" -m "CC[$pair,1,2]" -c "[15x10,1e-6,10]" -f 2x1 -s 1x0vox
register fixed_mask_syn_mi -o "$(o fixed_mask_syn_mi)" -r "[$mf,$mm,0]" -x "$mask" \
  -t "Affine[0.1]" -m "MI[$mf,$mm,1,24]" -c "[20x10,1e-6,10]" -f 2x1 -s 1x0vox \
  -t "SyN[0.2,3,0]" -m "MI[$mf,$mm,1,24]" -c "[10x8,1e-6,5]" -f 2x1 -s 1x0vox
register gd_meansquares -o "$(o gd_meansquares)" -r "[$pair,2]" \
  -t "Translation[0.2]" -m "MeanSquares[$pair,1]" -c "[20,1e-6,10]" -f 2 -s 1vox \
  -t "GaussianDisplacementField[0.3,3,1]" -m "MeanSquares[$pair,1]" -c "[15x10,1e-6,10]" -f 2x1 -s 1x0vox \
  --field-optimizer gd --adam-moments float32
register greedy_mi_float_moments -o "$(o greedy_mi_float_moments)" -r "[$mf,$mm,1]" \
  -t "Greedy[0.2,2,1]" -m "MI[$mf,$mm,1,32]" -c "[15x10,1e-6,5]" -f 2x1 -s 1x0mm \
  --adam-moments float32
if command -v mpirun > /dev/null; then
  mkdir -p "$out/runs/mpirun_np2"
  mpirun -n 2 --oversubscribe --allow-run-as-root -x OMP_NUM_THREADS=1 -x GIGAREG_DISTRIBUTED=1 \
    "$cli" register --device cpu -v 0 -o "$(o mpirun_np2)" -r "[$pair,3]" -x "[$mask,$mask]" \
    -t "Affine[0.1]" -m "MI[$pair,1,32]" -c "[15x8,1e-6,10]" -f 2x1 -s 1x0vox \
    -t "Greedy[0.25,2,1]" -m "CC[$pair,1,2]" -c "[8x4,1e-6,10]" -f 2x1 -s 1x0vox \
    > "$out/runs/mpirun_np2/log.txt" 2>&1 || { cat "$out/runs/mpirun_np2/log.txt"; exit 1; }
fi

r=$out/runs/cli_test
"$cli" apply -i "$m" -r "$f" -o "$r/applied.nii.gz" -t "$r/reg_1Warp.nii.gz" -t "$r/reg_0GenericAffine.mat"
"$cli" apply -i "$f" -r "$m" -o "$r/back.nii.gz" -t "[$r/reg_0GenericAffine.mat,1]" -t "$r/reg_1InverseWarp.nii.gz"
"$cli" apply -i "$in/labels.nii.gz" -r "$f" -o "$r/labels.nii.gz" -t "$r/reg_1Warp.nii.gz" \
  -t "$r/reg_0GenericAffine.mat" -n GenericLabel

if [ "$quick" != "--quick" ]; then
  "$cli" demo --image "$in/base.nii.gz" --labels "$in/labels.nii.gz" --preset greedy --device cpu \
    -o "$out/runs/demo" > "$out/demo_stdout.txt" 2>&1 || { cat "$out/demo_stdout.txt"; exit 1; }
  export GIGAREG_RESULT_DIGESTS=$out/test_results.txt
  "$build/tests/test_registration" --gtest_filter='Registration*:-*Cuda*' > "$out/test_registration.log" 2>&1 \
    || { tail -40 "$out/test_registration.log"; exit 1; }
  "$build/tests/test_accuracy_multimodal" > "$out/test_accuracy_multimodal.log" 2>&1 \
    || { tail -40 "$out/test_accuracy_multimodal.log"; exit 1; }
  if [ -x "$build/tests/distributed/dist_tests" ] && command -v mpirun > /dev/null; then
    mpirun -n 2 --oversubscribe --allow-run-as-root -x OMP_NUM_THREADS=1 -x GIGAREG_RESULT_DIGESTS \
      "$build/tests/distributed/dist_tests" --gtest_filter='ShardedRegistration.*' \
      > "$out/dist_tests.log" 2>&1 || { tail -40 "$out/dist_tests.log"; exit 1; }
  fi
  unset GIGAREG_RESULT_DIGESTS
fi

# Every file but the logs (which hold times), by path relative to OUT_DIR.
(cd "$out" && find in runs -type f ! -name log.txt | LC_ALL=C sort | xargs sha256sum) > "$digests"
[ -f "$out/test_results.txt" ] && LC_ALL=C sort "$out/test_results.txt" >> "$digests"
echo "$(wc -l < "$digests") digests in $digests"
