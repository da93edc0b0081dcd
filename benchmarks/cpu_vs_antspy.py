#!/usr/bin/env python3
"""gigareg's CPU backend against ANTs on the same machine, side by side (issue 22's CPU target).

One brain pair of ../shared/data/brain_labelled (cfmi 256^3, FreeSurfer aseg labels), registered
  - by `gigareg register --preset greedy --device cpu` (the whole command: reading, registering,
    writing the warps and the warped image), and
  - by ANTsPy's `ants.registration(type_of_transform='antsRegistrationSyNQuick[s]')` (antspyx from
    PyPI: ANTs' own antsRegistration in-process; reading the images and writing its transforms
    included),
with the same number of threads, one after the other (never at the same time). The moving aseg
labels are then warped into the fixed grid by each tool's own label resampling (gigareg apply -n
GenericLabel; ants.apply_transforms(interpolator='genericLabel')) and scored with the mean Dice
over the labels present in both with at least 100 voxels (gigareg::mean_dice's rule).

    .venv-test/bin/python benchmarks/cpu_vs_antspy.py --gigareg build/ci/tools/gigareg \
        [--fixed 01 --moving 02] [--threads 2] [--out /tmp/cpu_vs_antspy]

Needs ANTsPy in the running Python (scripts/install-test-python.sh makes .venv-test with it) and
numpy. Prints one line per tool (wall seconds, mean Dice) and the identity Dice. A benchmark, not
a test: record its output in docs/benchmarks.md with the machine, the load and the commit.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def mean_dice(a, b, min_voxels=100):
    import numpy as np
    a = a.astype(np.int64).ravel()
    b = b.astype(np.int64).ravel()
    scores = []
    for label in np.union1d(np.unique(a), np.unique(b)):
        if label == 0:
            continue
        in_a, in_b = a == label, b == label
        na, nb = int(in_a.sum()), int(in_b.sum())
        if na < min_voxels or nb < min_voxels:
            continue
        scores.append(2.0 * int((in_a & in_b).sum()) / (na + nb))
    return sum(scores) / len(scores) if scores else 0.0


def main():
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gigareg", required=True, help="the gigareg executable")
    ap.add_argument("--data", default=str(root.parent / "shared" / "data" / "brain_labelled"))
    ap.add_argument("--fixed", default="01")
    ap.add_argument("--moving", default="02")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/cpu_vs_antspy")
    args = ap.parse_args()

    data = Path(args.data)
    fixed = data / f"cfmi_sub-{args.fixed}_brainmask.nii.gz"
    moving = data / f"cfmi_sub-{args.moving}_brainmask.nii.gz"
    fixed_labels = data / f"cfmi_sub-{args.fixed}_aseg.nii.gz"
    moving_labels = data / f"cfmi_sub-{args.moving}_aseg.nii.gz"
    for p in (fixed, moving, fixed_labels, moving_labels):
        if not p.is_file():
            sys.exit(f"cpu_vs_antspy: {p} not found (the shared data)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = str(args.threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = threads  # ANTs (read when ants loads)
    os.environ["OMP_NUM_THREADS"] = threads                     # gigareg
    import ants  # noqa: E402  (after the thread count is set)

    print(f"pair: cfmi {args.moving} -> {args.fixed}, {threads} threads, load before: {os.getloadavg()[0]:.2f}")
    reference = ants.image_read(str(fixed_labels)).numpy()
    identity = ants.resample_image_to_target(ants.image_read(str(moving_labels)), ants.image_read(str(fixed)),
                                             interp_type="genericLabel").numpy()
    print(f"identity: mean Dice {mean_dice(reference, identity):.4f}")

    # gigareg: the whole command as a user types it.
    prefix = str(out / "gigareg_")
    t0 = time.perf_counter()
    subprocess.run([args.gigareg, "register", "--fixed", str(fixed), "--moving", str(moving), "-o", prefix,
                    "--preset", "greedy", "--device", "cpu", "--no-qc", "-v", "0"], check=True)
    gigareg_seconds = time.perf_counter() - t0
    subprocess.run([args.gigareg, "apply", "-i", str(moving_labels), "-r", str(fixed), "-o", prefix + "labels.nii.gz",
                    "-n", "GenericLabel", "-t", prefix + "1Warp.nii.gz", "-t", prefix + "0GenericAffine.mat",
                    "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)
    gigareg_dice = mean_dice(reference, ants.image_read(prefix + "labels.nii.gz").numpy())
    print(f"gigareg --preset greedy --device cpu: {gigareg_seconds:.1f} s, mean Dice {gigareg_dice:.4f}")

    # ANTs through ANTsPy: reading and the registration (which writes its transforms).
    t0 = time.perf_counter()
    f = ants.image_read(str(fixed))
    m = ants.image_read(str(moving))
    reg = ants.registration(f, m, type_of_transform="antsRegistrationSyNQuick[s]", outprefix=str(out / "ants_"))
    ants_seconds = time.perf_counter() - t0
    warped = ants.apply_transforms(f, ants.image_read(str(moving_labels)), reg["fwdtransforms"],
                                   interpolator="genericLabel")
    ants_dice = mean_dice(reference, warped.numpy())
    print(f"ANTsPy antsRegistrationSyNQuick[s]: {ants_seconds:.1f} s, mean Dice {ants_dice:.4f}")
    print(f"ratio (ANTs / gigareg wall): {ants_seconds / gigareg_seconds:.2f}; load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
