#!/usr/bin/env python3
"""Quality figures of a registration's outputs on the fixed image's foreground.

usage: warp_quality.py FIXED WARP INVERSE_WARP [WARPED]

FIXED: the fixed image; WARP, INVERSE_WARP: prefix1Warp / prefix1InverseWarp (vector NIfTI,
physical LPS displacements in mm on the fixed grid); WARPED (optional): the warped moving image.
Foreground: fixed voxels with intensity >= 10% of the fixed image's maximum.
Prints
  - inverse consistency r(x) = |u(x) + v(x + u(x))| (v sampled trilinearly, zero displacement
    outside its grid as ITK's DisplacementFieldTransform) over the foreground: percentiles 50, 90,
    99, 99.9 and the largest, in mm and in fixed voxels (the smallest fixed spacing), and the
    other direction |w(x) + u(x + w(x))| on the same voxels;
  - with WARPED: Pearson correlation of fixed and warped over the foreground.
Needs numpy and nibabel only.
"""
import sys

import nibabel as nib
import numpy as np


def lps_affine(img):
    """index -> LPS mm (nibabel's affine is RAS)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine


def load_field(path):
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float64)
    data = data.reshape(data.shape[:3] + (3,))
    return img, data


def sample_linear(field, idx):
    """Trilinear sample of field (X,Y,Z,3) at continuous indices idx (N,3); ITK's rule outside:
    zero beyond [-0.5, size - 0.5), neighbours clamped inside."""
    size = np.array(field.shape[:3])
    inside = np.all((idx >= -0.5) & (idx < size - 0.5), axis=1)
    out = np.zeros((idx.shape[0], 3))
    p = idx[inside]
    f = np.floor(p).astype(np.int64)
    t = p - f
    acc = np.zeros((p.shape[0], 3))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = ((t[:, 0] if dx else 1 - t[:, 0]) * (t[:, 1] if dy else 1 - t[:, 1]) *
                     (t[:, 2] if dz else 1 - t[:, 2]))
                c = np.stack([np.clip(f[:, 0] + dx, 0, size[0] - 1),
                              np.clip(f[:, 1] + dy, 0, size[1] - 1),
                              np.clip(f[:, 2] + dz, 0, size[2] - 1)], axis=1)
                acc += w[:, None] * field[c[:, 0], c[:, 1], c[:, 2]]
    out[inside] = acc
    return out


def main(argv):
    if len(argv) < 4:
        print(__doc__)
        return 2
    fixed = nib.load(argv[1])
    f = np.asarray(fixed.dataobj, dtype=np.float64)
    mask = f >= 0.1 * f.max()
    uimg, u = load_field(argv[2])
    vimg, v = load_field(argv[3])
    ijk = np.argwhere(mask)
    a_u = lps_affine(uimg)
    x = ijk @ a_u[:3, :3].T + a_u[:3, 3]
    uu = u[mask]
    y = x + uu
    a_v_inv = np.linalg.inv(lps_affine(vimg))
    idx = y @ a_v_inv[:3, :3].T + a_v_inv[:3, 3]
    r = np.linalg.norm(uu + sample_linear(v, idx), axis=1)
    # The other direction on the same voxels: |w(x) + u(x + w(x))|.
    ww = v[mask]
    a_u_inv = np.linalg.inv(a_u)
    idx2 = (x + ww) @ a_u_inv[:3, :3].T + a_u_inv[:3, 3]
    r2 = np.linalg.norm(ww + sample_linear(u, idx2), axis=1)
    h = float(min(fixed.header.get_zooms()[:3]))
    q = np.percentile(r, [50, 90, 99, 99.9])
    print("foreground: %d voxels (fixed >= 10%% of its maximum)" % mask.sum())
    print("inverse consistency |u(x) + v(x + u(x))| mm: p50 %.4g p90 %.4g p99 %.4g p99.9 %.4g max %.4g"
          % (q[0], q[1], q[2], q[3], r.max()))
    print("inverse consistency in voxels of %.3g mm: p50 %.4g p90 %.4g p99 %.4g p99.9 %.4g max %.4g"
          % (h, q[0] / h, q[1] / h, q[2] / h, q[3] / h, r.max() / h))
    q2 = np.percentile(r2, [50, 90, 99, 99.9])
    print("other direction |w(x) + u(x + w(x))| in voxels: p50 %.4g p90 %.4g p99 %.4g p99.9 %.4g max %.4g"
          % (q2[0] / h, q2[1] / h, q2[2] / h, q2[3] / h, r2.max() / h))
    if len(argv) > 4:
        w = np.asarray(nib.load(argv[4]).dataobj, dtype=np.float64)
        print("correlation fixed / warped over the foreground: %.4f" % np.corrcoef(f[mask], w[mask])[0, 1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
