"""A worked example of the gigareg Python package on real data (docs/python.md).

Registers subject B of the Learn2Reg 2019 tutorial (a NumPy .npz array) onto VoxelMorph's
subject A (a NIfTI file), both T1 brains in the same affinely aligned 160 x 192 x 224 space,
with the greedy preset; then carries B's FreeSurfer labels through the transform (label
interpolation) and scores the overlap with A's labels (Dice over VoxelMorph's 30 structures).

    python examples/python/register_brains.py [DATA_DIR] [OUT_DIR]

DATA_DIR defaults to ../shared/data beside the repository, OUT_DIR to out/python_example.
"""
import os
import sys
import time

import numpy as np

import gigareg

here = os.path.dirname(os.path.abspath(__file__))
data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "shared", "data")
out = sys.argv[2] if len(sys.argv) > 2 else "out/python_example"
brains = os.path.join(data, "brain_labelled")
os.makedirs(out, exist_ok=True)

# Subject A: a NIfTI file (geometry from its header; the array is [z, y, x]).
fixed = gigareg.read_image(os.path.join(brains, "vxm_subjA_vol.nii.gz"))
print("fixed ", fixed)

# Subject B and both label maps: NumPy arrays indexed [x, y, z] on the same grid as A's NIfTI.
# Transposing gives gigareg's [z, y, x]; the Image makes one float32 C-order copy of it.
def on_fixed_grid(array_xyz, pixel_type=None):
    return gigareg.Image(array_xyz.T, fixed.spacing, fixed.origin, fixed.direction, pixel_type)

moving = on_fixed_grid(np.load(os.path.join(brains, "l2r2019_subjB_vol.npz"))["vol_data"])
labels_fixed = on_fixed_grid(np.load(os.path.join(brains, "vxm_subjA_scan_vol_seg.npz"))["seg"], "int16")
labels_moving = on_fixed_grid(np.load(os.path.join(brains, "l2r2019_subjB_seg.npz"))["vol_data"], "int16")
structures = np.load(os.path.join(brains, "vxm_eval_labels30.npz"))["labels"]


def dice(a, b):
    scores = []
    for label in structures:
        x, y = a == label, b == label
        if x.any() or y.any():
            scores.append(2.0 * np.logical_and(x, y).sum() / (x.sum() + y.sum()))
    return float(np.mean(scores))


levels_seen = set()


def progress(report):
    key = (report["stage"], report["level"])
    if key not in levels_seen:  # one line per level
        levels_seen.add(key)
        print(f"  stage {report['stage'] + 1} {report['transform']:<7} level {report['level'] + 1}"
              f"/{report['levels']}", flush=True)


start = time.time()
result = gigareg.register(fixed, moving, preset="greedy", progress=progress)
print(f"registered on the {result.backend} backend in {time.time() - start:.1f} s")

warped_labels = result.apply(labels_moving, interpolation="label")
jac = result.jacobian()
print(f"mean Dice over {len(structures)} structures: {dice(labels_moving.array, labels_fixed.array):.3f}"
      f" before, {dice(warped_labels.array, labels_fixed.array):.3f} after")
print(f"Jacobian determinant: min {jac.array.min():.3f}, non-positive at {(jac.array <= 0).mean():.2e}"
      " of the voxels")

# The files antsRegistration would write, and the warped labels as an integer image.
written = result.write(os.path.join(out, "B_to_A_"), warped=os.path.join(out, "B_to_A_Warped.nii.gz"))
gigareg.write_image(warped_labels, os.path.join(out, "B_to_A_labels.nii.gz"))
for path in written.values():
    if path:
        print("wrote", path)
