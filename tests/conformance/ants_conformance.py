#!/usr/bin/env python3
"""ANTs conformance: the same operations through gigareg's command line and through ANTsPy.

    ants_conformance.py --gigareg PATH [--data DIR] [--work DIR]

ANTsPy (antspyx from PyPI; scripts/install-test-python.sh puts it in the test environment) is
the independent reference: it runs ANTs' own antsApplyTransforms and Jacobian code. The inputs
are real images of ../shared/data on grids of different orientation, size and pixel type:
the MNI152 2 mm template (LAS, int16) as the reference grid, the ICBM 2009 template (RAS, uint8)
and the Colin27 AAL labels (RAS, uint8) as moving images; the transforms are a known smooth warp
and a mild affine made by `gigareg phantom` on the reference grid, and the warp's inverse from
`gigareg invert`. Each check prints one line and the script exits 1 if any fails, 77 (CTest's
skip) with a message when ANTsPy or the data are absent.

Checks (tolerances relative to the input's intensity range, over every output voxel, including
those that map outside the moving grid or outside the warp's grid):
  apply linear / NearestNeighbor / BSpline[3] / -f default value      |diff| <= 1e-4 of the range
  apply GenericLabel on the AAL labels                                 <= 1e-4 of voxels differ
  the inverse direction ([affine,1] then the inverse warp) onto a grid larger than the warp's
  the warped and inverse-warped images of `gigareg register` against antsApplyTransforms of
    gigareg's own transforms
  apply -n NearestNeighbor                                             <= 1e-4 of voxels differ
  gigareg jacobian against central differences in physical space     <= 1e-5 (interior voxels)
    and against ANTs' CreateJacobianDeterminantImage                   <= 2e-3 (another scheme)
"""
import argparse
import os
import subprocess
import sys
import tempfile

SKIP = 77


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gigareg", required=True)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    try:
        import ants  # noqa: F401
        import numpy as np  # noqa: F401
    except ImportError as e:
        print(f"SKIP: ANTsPy is not installed in this Python ({e}); bash scripts/install-test-python.sh")
        return SKIP
    data = os.path.abspath(a.data)
    needed = ["templates/fsl_MNI152_T1_2mm.nii.gz", "templates/icbm2009_asym_t1_1mm_cropped.nii.gz",
              "brain_labelled/colin27_aal_labels.nii.gz"]
    for n in needed:
        if not os.path.exists(os.path.join(data, n)):
            print(f"SKIP: real data not found: {os.path.join(data, n)}")
            return SKIP
    work = a.work or tempfile.mkdtemp(prefix="gigareg-ants-")
    os.makedirs(work, exist_ok=True)
    return Conformance(a.gigareg, data, work).run()


class Conformance:
    def __init__(self, gigareg, data, work):
        self.g, self.work = gigareg, work
        self.fixed = os.path.join(data, "templates/fsl_MNI152_T1_2mm.nii.gz")
        self.moving = os.path.join(data, "templates/icbm2009_asym_t1_1mm_cropped.nii.gz")
        self.labels = os.path.join(data, "brain_labelled/colin27_aal_labels.nii.gz")
        self.failures = 0

    def w(self, name):
        return os.path.join(self.work, name)

    def gig(self, *args):
        env = dict(os.environ, GIGAREG_DISTRIBUTED="0")
        r = subprocess.run([self.g, *args], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"gigareg {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def report(self, name, ok, what):
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {what}")
        self.failures += not ok

    # --- comparisons --------------------------------------------------------------------------
    def compare_images(self, name, ours_path, theirs, value_range, tol=1e-4):
        import ants
        import numpy as np
        ours = ants.image_read(ours_path)
        same_grid = (ours.shape == theirs.shape and np.allclose(ours.spacing, theirs.spacing, atol=1e-5)
                     and np.allclose(ours.origin, theirs.origin, atol=1e-4)
                     and np.allclose(ours.direction, theirs.direction, atol=1e-6))
        if not same_grid:
            return self.report(name, False, f"grids differ: {ours.shape} vs {theirs.shape}")
        d = np.abs(ours.numpy().astype(np.float64) - theirs.numpy().astype(np.float64))
        worst = float(d.max()) / value_range
        self.report(name, worst <= tol, f"largest |gigareg - ANTs| {worst:.2e} of the range "
                    f"(tolerance {tol:g}) over {d.size} voxels")

    def compare_labels(self, name, ours_path, theirs, tol=1e-4):
        import ants
        import numpy as np
        ours = ants.image_read(ours_path).numpy()
        differ = int(np.count_nonzero(np.rint(ours) != np.rint(theirs.numpy())))
        frac = differ / ours.size
        self.report(name, frac <= tol, f"{differ} of {ours.size} voxels carry another label "
                    f"({frac:.1e}; tolerance {tol:g})")

    # --- the suite ------------------------------------------------------------------------------
    def run(self):
        import ants
        import numpy as np
        self.gig("phantom", "-i", self.fixed, "-o", self.w("p_"), "--extension", ".nii.gz", "--remap", "none",
                 "--warp-mm", "5")
        warp, affine = self.w("p_truth_1Warp.nii.gz"), self.w("p_truth_0GenericAffine.mat")
        self.gig("invert", "-i", warp, "-o", self.w("inverse.nii.gz"))
        inverse = self.w("inverse.nii.gz")
        fixed, moving, labels = (ants.image_read(p) for p in (self.fixed, self.moving, self.labels))
        mrange = float(moving.max() - moving.min())
        frange = float(fixed.max() - fixed.min())

        def ants_apply(img, ref, interp, transforms, invert=None, default=0):
            return ants.apply_transforms(ref, img, transforms, interpolator=interp, defaultvalue=default,
                                         whichtoinvert=invert)

        # Forward: ICBM (1 mm RAS) onto the MNI 2 mm grid (LAS) through the warp then the affine.
        for interp, ants_name, default in (("Linear", "linear", 0), ("Linear", "linear", 37),
                                           ("NearestNeighbor", "nearestNeighbor", 0),
                                           ("BSpline[3]", "bSpline", 0)):
            out = self.w(f"apply_{ants_name}_{default}.nii.gz")
            self.gig("apply", "-i", self.moving, "-r", self.fixed, "-o", out, "-t", warp, "-t", affine,
                     "-n", interp, "-f", str(default))
            theirs = ants_apply(moving, fixed, ants_name, [warp, affine], default=default)
            if ants_name == "nearestNeighbor":
                # A sample within float rounding of a half-integer index may pick the other
                # neighbour (gigareg maps indices in float, ANTs in double): count them.
                self.compare_labels(f"apply -n {interp}", out, theirs)
            else:
                self.compare_images(f"apply -n {interp} -f {default}", out, theirs, mrange)
        out = self.w("apply_labels.nii.gz")
        self.gig("apply", "-i", self.labels, "-r", self.fixed, "-o", out, "-t", warp, "-t", affine, "-n",
                 "GenericLabel")
        self.compare_labels("apply -n GenericLabel (AAL)", out,
                            ants_apply(labels, fixed, "genericLabel", [warp, affine]))
        # Inverse: MNI onto the ICBM grid, which reaches beyond the warp's grid.
        out = self.w("apply_inverse.nii.gz")
        self.gig("apply", "-i", self.fixed, "-r", self.moving, "-o", out, "-t", f"[{affine},1]", "-t", inverse)
        self.compare_images("apply -t [affine,1] -t inverse warp (onto a larger grid)", out,
                            ants_apply(fixed, moving, "linear", [affine, inverse], invert=[True, False]), frange)

        # register's own warped and inverse-warped images against antsApplyTransforms of its
        # transforms (a short affine + greedy run; only the resampling is under test).
        prefix = self.w("reg_")
        self.gig("register", "-d", "3", "-o", f"[{prefix},{prefix}warped.nii.gz,{prefix}inverse.nii.gz]",
                 "-r", f"[{self.fixed},{self.moving},1]",
                 "-t", "Affine[0.1]", "-m", f"MI[{self.fixed},{self.moving},1,32]", "-c", "[20x10,1e-6,10]",
                 "-f", "4x2", "-s", "2x1vox",
                 "-t", "Greedy[0.25,1.5,0.5]", "-m", f"CC[{self.fixed},{self.moving},1,2]", "-c", "[10x5,1e-6,10]",
                 "-f", "4x2", "-s", "2x1vox", "--device", "cpu")
        rw, ra, riw = prefix + "1Warp.nii.gz", prefix + "0GenericAffine.mat", prefix + "1InverseWarp.nii.gz"
        self.compare_images("register's warped image", prefix + "warped.nii.gz",
                            ants_apply(moving, fixed, "linear", [rw, ra]), mrange)
        self.compare_images("register's inverse-warped image", prefix + "inverse.nii.gz",
                            ants_apply(fixed, moving, "linear", [ra, riw], invert=[True, False]), frange)

        # Jacobian determinant of the known warp, over the voxels at least 2 from the grid's faces
        # (one-sided differences differ on the faces). gigareg's definition: det(I + du/dx) with
        # central differences in physical space (the index gradient through (D diag(spacing))^-1),
        # computed here in numpy in double; ANTs' CreateJacobianDeterminantImage (plain, no log,
        # no geometric mode) is a different discretisation, within 2e-3 of it on this warp.
        out = self.w("jacobian.nii.gz")
        self.gig("jacobian", "-i", warp, "-o", out)
        ours = ants.image_read(out).numpy()
        field = ants.image_read(warp)
        u = field.numpy().astype(np.float64)  # (x, y, z, 3), LPS mm
        grad = np.stack([np.stack([np.gradient(u[..., c], axis=ax) for ax in range(3)], -1) for c in range(3)], -2)
        to_index = np.linalg.inv(np.array(field.direction) @ np.diag(field.spacing))
        reference = np.linalg.det(np.eye(3) + grad @ to_index)
        theirs = ants.create_jacobian_determinant_image(fixed, warp, do_log=False, geom=False).numpy()
        inner = (slice(2, -2),) * 3
        worst = float(np.abs(ours[inner] - reference[inner]).max())
        self.report("jacobian vs central differences in physical space", worst <= 1e-5,
                    f"largest difference {worst:.2e} (tolerance 1e-5)")
        worst = float(np.abs(ours[inner] - theirs[inner]).max())
        self.report("jacobian vs ANTs' CreateJacobianDeterminantImage", worst <= 2e-3,
                    f"largest |gigareg - ANTs| {worst:.2e} (tolerance 2e-3: another discretisation)")

        print(f"{self.failures} check(s) failed" if self.failures else "all checks passed")
        return 1 if self.failures else 0


if __name__ == "__main__":
    sys.exit(main())
