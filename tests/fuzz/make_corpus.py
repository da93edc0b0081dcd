#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/), small valid inputs
made with the generator of tests/malformed (the same NIfTI, gzip and transform layouts). Run it
again after changing those layouts; the files it writes are committed."""
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(here, "..", "malformed"))
import malformed_inputs as m  # noqa: E402


def small_float(dims=(3, 2, 2)):
    n = dims[0] * dims[1] * dims[2]
    return m.float_image([float(i) for i in range(n)], dims)


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    plain = small_float()
    warp_header = m.nifti_header((3, 2, 2, 1, 3), intent=1007)
    warp = bytes(warp_header) + b"\0" * 4 + struct.pack("<36f", *[0.1 * i for i in range(36)])
    # fuzz_nifti_header: a selector byte (bit 0: the .nii.gz name), then the file.
    write("fuzz_nifti_header", "float32.nii", b"\0" + plain)
    write("fuzz_nifti_header", "float32.nii.gz", b"\1" + m.gz(plain))
    write("fuzz_nifti_header", "int16_scaled.nii", b"\0" + m.patch(
        bytes(m.nifti_header((3, 2, 2), datatype=4, bitpix=16)) + b"\0" * 4 + struct.pack("<12h", *range(12)),
        112, "ff", 0.5, 1.0))
    write("fuzz_nifti_header", "warp.nii.gz", b"\1" + m.gz(warp))
    write("fuzz_nifti_header", "blocks.nii.gz", b"\1" + m.gr_members(plain, 200))
    # fuzz_gzip: 2 bytes of begin, 2 of length, then the stream.
    rng = struct.pack("<HH", 0, len(plain) - 1)
    write("fuzz_gzip", "one_member", rng + m.gz(plain))
    write("fuzz_gzip", "two_members", rng + m.gz(plain[:100]) + m.gz(plain[100:]))
    write("fuzz_gzip", "block_members", rng + m.gr_members(plain, 200))
    write("fuzz_gzip", "slab", struct.pack("<HH", 100, 50) + m.gr_members(plain, 120))
    # fuzz_transform: a selector byte (0 .mat, 1 .txt, 2 .tfm, 3 .h5), then the file.
    write("fuzz_transform", "affine.mat", b"\0" + m.affine_mat())
    write("fuzz_transform", "affine.txt", b"\1" + m.affine_txt())
    write("fuzz_transform", "euler.tfm", b"\2" + m.affine_txt("Euler3DTransform_double_3_3", "0.1 0 0 1 2 3"))
    # fuzz_ants_options: command lines.
    lines = [
        "-d 3 -o [out/reg_,out/warped.nii.gz] -r [f.nii.gz,m.nii.gz,1] -t Affine[0.1] "
        "-m MI[f.nii.gz,m.nii.gz,1,32] -c [200x100x50,1e-6,10] -f 4x2x1 -s 2x1x0vox -t Greedy[0.25,1,0.5] "
        "-m CC[f.nii.gz,m.nii.gz,1,2] -c [100x70x40,1e-6,10] -f 4x2x1 -s 2x1x0vox",
        "--fixed f.nii.gz --moving m.nii.gz -o out/ --preset syn --device cpu",
        "-d 3 -o out/r_ -t SyN[0.1,3,0] -m MeanSquares[f.nii,m.nii,1] -c 10x5 -f 2x1 -s 1x0mm -x [fm.nii,NULL] "
        "--winsorize-image-intensities [0,1] --use-histogram-matching 0 --field-optimizer gd",
    ]
    for i, line in enumerate(lines):
        write("fuzz_ants_options", "command_%d" % i, line.encode())


if __name__ == "__main__":
    main()
