#!/usr/bin/env python3
"""Compare two NIfTI outputs of the same registration (a warp field or a warped image) voxel by
voxel: max and RMS of |a - b| against the RMS of a, the share of voxels that differ, and the
max difference per z plane, so that differences at slab boundaries (a halo bug) can be told from
differences spread over the volume (rounding that the optimiser amplifies).

  usage: compare_volumes.py LABEL A.nii[.gz] B.nii[.gz] [--slabs P]
With --slabs P the planes next to the boundaries of P equal slabs of the finest grid are reported
apart from the rest. Reads float32 and uint8 volumes and vector fields (components in dim 5)."""
import gzip
import struct
import sys

import numpy as np

DTYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64}


def load(path):
    raw = open(path, 'rb').read()
    if path.endswith('.gz'):
        raw = gzip.decompress(raw)
    dim = struct.unpack('<8h', raw[40:56])
    dtype = DTYPES[struct.unpack('<h', raw[70:72])[0]]
    offset = int(struct.unpack('<f', raw[108:112])[0])
    nx, ny, nz = dim[1], dim[2], dim[3]
    comps = dim[5] if dim[0] >= 5 else 1
    data = np.frombuffer(raw[offset:], dtype=dtype, count=nx * ny * nz * comps)
    return data.reshape(comps, nz, ny, nx).astype(np.float64)


def main(argv):
    label, pa, pb = argv[1], argv[2], argv[3]
    slabs = int(argv[argv.index('--slabs') + 1]) if '--slabs' in argv else 0
    a, b = load(pa), load(pb)
    if a.shape != b.shape:
        print('%s: shapes differ %s vs %s' % (label, a.shape, b.shape))
        return 1
    d = np.abs(a - b).max(axis=0)  # per voxel, over components
    rms_a = np.sqrt((a ** 2).sum(axis=0).mean())
    per_plane = d.reshape(d.shape[0], -1).max(axis=1)
    line = '%s: max |diff| %.3g, RMS diff %.3g (RMS of A %.3g), voxels differing %.2f%%' % (
        label, d.max(), np.sqrt(((a - b) ** 2).sum(axis=0).mean()), rms_a, 100.0 * (d > 0).mean())
    if d.max() > 0:
        z = int(per_plane.argmax())
        line += ', worst plane z=%d of %d' % (z, d.shape[0])
    print(line)
    if slabs > 1 and d.max() > 0:
        nz = d.shape[0]
        bounds = [nz * k // slabs for k in range(1, slabs)]
        near = np.zeros(nz, bool)
        for z in bounds:
            near[max(0, z - 4):min(nz, z + 4)] = True
        print('  within 4 planes of the slab boundaries %s: max %.3g; elsewhere: max %.3g' % (
            bounds, per_plane[near].max(), per_plane[~near].max()))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
