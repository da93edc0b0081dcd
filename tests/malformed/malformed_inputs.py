#!/usr/bin/env python3
"""Malformed inputs against the gigareg tool (issue 18): a generator of bad files and option
strings, and the checks every run must pass.

Each case writes its files into a directory of its own (small synthetic images made here, most
of them derived from valid files by changing bytes), runs the cheapest gigareg command that
reaches the parser concerned (`apply` for images, transforms and warps; `register` on tiny
images for options), and checks:
  * no signal, no hang (a time limit per run), no sanitizer report, no "internal error";
  * a non-zero exit whose message ("gigareg: error: ...", or CLI11's for its own options) names
    the offending file or option, or exit 0 with a correct result: outputs complete, finite,
    and byte-identical to the valid file's run where the change must not matter;
  * after a failure, no file under any output name; after any run, no temporary (".tmp-") left.

Python 3 standard library only. Usage:
  malformed_inputs.py --gigareg build/ci/tools/gigareg [--jobs 2] [--shared-data DIR] [--list]
"""

import argparse
import concurrent.futures
import gzip
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

# ------------------------------------------------------------------------------------------------
# Valid files, written here


def nifti_header(dims, datatype=16, bitpix=32, spacing=(2.0, 2.0, 2.0), intent=0, vox_offset=352.0):
    """A NIfTI-1 header (348 bytes) with qform and sform both the scaled identity."""
    h = bytearray(348)
    struct.pack_into("<i", h, 0, 348)
    d = list(dims) + [1] * (7 - len(dims))
    struct.pack_into("<8h", h, 40, len(dims), *d)
    struct.pack_into("<h", h, 68, intent)
    struct.pack_into("<hh", h, 70, datatype, bitpix)
    struct.pack_into("<8f", h, 76, 1.0, spacing[0], spacing[1], spacing[2], 1, 1, 1, 1)
    struct.pack_into("<f", h, 108, vox_offset)
    struct.pack_into("<f", h, 112, 1.0)
    struct.pack_into("<B", h, 123, 2)  # mm
    struct.pack_into("<hh", h, 252, 1, 1)
    struct.pack_into("<4f", h, 280, spacing[0], 0, 0, 0)
    struct.pack_into("<4f", h, 296, 0, spacing[1], 0, 0)
    struct.pack_into("<4f", h, 312, 0, 0, spacing[2], 0)
    h[344:348] = b"n+1\0"
    return h


NX, NY, NZ = 8, 7, 6  # the small image of the image cases
N = NX * NY * NZ


def image_values(nx=NX, ny=NY, nz=NZ, shift=0):
    """A bright box on a ramp: no zero voxels, so data read from the wrong place shows."""
    out = []
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                inside = 2 + shift <= i < nx - 2 + shift and 2 <= j < ny - 2 and 1 <= k < nz - 1
                out.append(1.0 + 0.25 * i + 0.5 * j + k + (40.0 if inside else 0.0))
    return out


def float_image(values=None, dims=(NX, NY, NZ)):
    values = image_values(*dims) if values is None else values
    return bytes(nifti_header(dims)) + b"\0" * 4 + struct.pack("<%df" % len(values), *values)


def int16_image():
    h = nifti_header((NX, NY, NZ), datatype=4, bitpix=16)
    return bytes(h) + b"\0" * 4 + struct.pack("<%dh" % N, *[int(v * 4) for v in image_values()])


def warp_image(scale=0.3, datatype=16, ncomp=3):
    """An ANTs warp: dim 5, intent 1007 (vector), component planes of small displacements."""
    h = nifti_header((NX, NY, NZ, 1, ncomp), datatype=datatype, bitpix=32 if datatype == 16 else 64,
                     intent=1007)
    vals = []
    for c in range(ncomp):
        vals += [scale * math.sin(0.3 * (i + c)) for i in range(N)]
    fmt = "f" if datatype == 16 else "d"
    return bytes(h) + b"\0" * 4 + struct.pack("<%d%s" % (len(vals), fmt), *vals)


def gz(data, mtime=0):
    return gzip.compress(data, mtime=mtime)


def gr_members(data, cut):
    """gigareg's block gzip (docs/io.md): members with a 'GR' extra field holding their size."""
    out = b""
    for part in (data[:cut], data[cut:]):
        body = zlib.compressobj(1, zlib.DEFLATED, -15)
        raw = body.compress(part) + body.flush()
        size = 20 + len(raw) + 8
        head = b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\x00\xff" + struct.pack("<H", 8) + b"GR" + \
            struct.pack("<HI", 4, size)
        out += head + raw + struct.pack("<II", zlib.crc32(part) & 0xFFFFFFFF, len(part) & 0xFFFFFFFF)
    return out


def set_gr_size(member_bytes, size):
    b = bytearray(member_bytes)
    struct.pack_into("<I", b, 16, size & 0xFFFFFFFF)
    return bytes(b)


META_HEADER = [
    ("ObjectType", "Image"), ("NDims", "3"), ("BinaryData", "True"), ("BinaryDataByteOrderMSB", "False"),
    # The NIfTI images' grid in LPS (their sform is diag(2, 2, 2) in RAS).
    ("CompressedData", "False"), ("TransformMatrix", "-1 0 0 0 -1 0 0 0 1"), ("Offset", "0 0 0"),
    ("CenterOfRotation", "0 0 0"), ("ElementSpacing", "2 2 2"), ("DimSize", "%d %d %d" % (NX, NY, NZ)),
    ("ElementType", "MET_FLOAT"), ("ElementDataFile", "LOCAL"),
]


def meta_image(changes=None, data=None, drop=()):
    fields = dict(META_HEADER)
    order = [k for k, _ in META_HEADER]
    for k, v in (changes or {}).items():
        if k not in fields:
            order.insert(len(order) - 1, k)
        fields[k] = v
    text = "".join("%s = %s\n" % (k, fields[k]) for k in order if k not in drop)
    data = struct.pack("<%df" % N, *image_values()) if data is None else data
    return text.encode() + data


NRRD_HEADER = [
    ("type", "float"), ("dimension", "3"), ("space", "left-posterior-superior"),
    ("sizes", "%d %d %d" % (NX, NY, NZ)), ("space directions", "(-2,0,0) (0,-2,0) (0,0,2)"),
    ("kinds", "domain domain domain"), ("endian", "little"), ("encoding", "raw"), ("space origin", "(0,0,0)"),
]


def nrrd_image(changes=None, data=None, drop=(), magic="NRRD0004"):
    fields = dict(NRRD_HEADER)
    order = [k for k, _ in NRRD_HEADER]
    for k, v in (changes or {}).items():
        if k not in fields:
            order.append(k)
        fields[k] = v
    text = magic + "\n" + "".join("%s: %s\n" % (k, fields[k]) for k in order if k not in drop) + "\n"
    data = struct.pack("<%df" % N, *image_values()) if data is None else data
    return text.encode() + data


AFFINE_TXT = ("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
              "Parameters: 1 0 0 0 1 0 0 0 1 0.5 -0.25 1\nFixedParameters: 0 0 0\n")


def affine_txt(transform="AffineTransform_double_3_3", params="1 0 0 0 1 0 0 0 1 0.5 -0.25 1",
               fixed="0 0 0", header="#Insight Transform File V1.0"):
    return ("%s\n#Transform 0\nTransform: %s\nParameters: %s\nFixedParameters: %s\n"
            % (header, transform, params, fixed)).encode()


def matlab_var(name, values, type_code=0, rows=None, cols=1, namelen=None):
    name_b = name.encode() + b"\0"
    rows = len(values) if rows is None else rows
    namelen = len(name_b) if namelen is None else namelen
    return struct.pack("<5i", type_code, rows, cols, 0, namelen) + name_b + struct.pack("<%dd" % len(values), *values)


def affine_mat(params=(1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, -0.25, 1), fixed=(0, 0, 0),
               name="AffineTransform_double_3_3", **kw):
    return matlab_var(name, list(params), **kw) + matlab_var("fixed", list(fixed))


# ------------------------------------------------------------------------------------------------
# Cases


class Case:
    """files: name -> bytes ("DIR" for a directory); args: the gigareg arguments; expect: 'error'
    (must fail), 'same' (must succeed with the baseline's output bytes), 'same_or_error' (a named
    error, or the baseline's bytes) or 'any' (a named error or a correct result: complete and
    finite outputs; with nan_ok, NaN voxels may pass through from a NaN input); names: strings of
    which the error must contain one; outputs: the files a success must leave (under out/)."""

    def __init__(self, name, files, args, expect, names, outputs=(), baseline=None, nan_ok=False):
        self.name, self.files, self.args, self.expect = name, files, args, expect
        self.names, self.outputs, self.baseline = list(names), list(outputs), baseline
        self.nan_ok = nan_ok


def apply_case(name, bad_name, data, expect="any", extra_files=None, reference=None, transform=None,
               baseline="apply"):
    """The image `bad_name` resampled onto the valid reference (reads its header and data)."""
    files = {"ref.nii": float_image()}
    files.update(extra_files or {})
    if data is not None:
        files[bad_name] = data
    args = ["apply", "-i", bad_name, "-r", reference or "ref.nii", "-o", "out/o.nii"]
    if transform:
        args += ["-t", transform]
    return Case(name, files, args, expect, [bad_name], ["out/o.nii"],
                baseline if expect in ("same", "same_or_error") else None)


def patch(data, offset, fmt, *values):
    b = bytearray(data)
    struct.pack_into("<" + fmt, b, offset, *values)
    return bytes(b)


NAN, INF = float("nan"), float("inf")


def nifti_cases():
    base = float_image()
    cases = []
    mutations = []  # (label, bytes, expect)

    def m(label, data, expect="any"):
        mutations.append((label, data, expect))

    for v in (0, 347, 349, -1, 540, 0x5C010000, 0x4015C):
        m("sizeof_hdr_%d" % v, patch(base, 0, "i", v), "error")
    # Found by fuzz_nifti_header: a damaged sizeof_hdr with a NIfTI-2 magic at NIfTI-1's place was
    # read as NIfTI-1 unchecked, and a NaN in its sform aborted the process in vnl.
    b = bytearray(patch(patch(base, 0, "i", 0x4015C), 320, "ff", NAN, NAN))
    b[344:348] = b"n+2\0"
    m("sizeof_hdr_damaged_nifti2_magic_sform_nan", bytes(b), "error")
    for v in (-1, 0, 1, 2, 4, 5, 7, 8, 9, 32767):
        m("dim0_%d" % v, patch(base, 40, "h", v), "any")
    for axis in (1, 2, 3):
        for v in (0, -1, -32768, 32767):
            m("dim%d_%d" % (axis, v), patch(base, 40 + 2 * axis, "h", v), "error")
        m("dim%d_1" % axis, patch(base, 40 + 2 * axis, "h", 1), "any")
    for axis in (4, 5, 6, 7):
        for v in (0, -1, 2, 3):
            m("dim%d_%d" % (axis, v), patch(base, 40 + 2 * axis, "h", v), "any")
    for dt in (0, 1, 2, 4, 8, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 9999, -1):
        m("datatype_%d" % dt, patch(base, 70, "h", dt), "any")
    for bp in (0, 1, 7, 8, 16, 64, 128, -32):
        m("bitpix_%d" % bp, patch(base, 72, "h", bp), "any")
    for v in (0.0, -1.0, 2.0, NAN, INF):
        m("qfac_%r" % v, patch(base, 76, "f", v), "any")
    for axis in (1, 2, 3):
        for v in (0.0, -1.0, NAN, INF, -INF, 1e-30, 1e30, 3e38):
            m("pixdim%d_%r" % (axis, v), patch(base, 76 + 4 * axis, "f", v), "any")
    for v in (0.0, 1.0, 348.0, 351.0, 353.0, 354.5, -352.0, NAN, INF, 1e20, float(len(base)), float(len(base) + 4)):
        m("vox_offset_%r" % v, patch(base, 108, "f", v), "any")
    for v in (0.0, NAN, INF, 1e38, -1e38, 1e-45, -1.0, 1e30):
        m("scl_slope_%r" % v, patch(base, 112, "f", v), "any")
    for v in (NAN, INF, 1e38, -3e38):
        m("scl_inter_%r" % v, patch(base, 116, "f", v), "any")
    for q in (0, 1, 2, 3, 4, 5, -1, 32767):
        for s in (0, 1, 4, -2):
            m("qform%d_sform%d" % (q, s), patch(patch(base, 252, "h", q), 254, "h", s), "any")
    for off, label in ((256, "quatern_b"), (260, "quatern_c"), (264, "quatern_d"), (268, "qoffset_x"), (276, "qoffset_z")):
        for v in (NAN, INF, 2.0, 1e38):
            m("%s_%r" % (label, v), patch(base, off, "f", v), "any")
    for off in (280, 284, 292, 300, 316, 324):
        for v in (NAN, INF, 1e38):
            m("srow_%d_%r" % (off, v), patch(base, off, "f", v), "any")
    m("srow_all_zero", patch(patch(patch(base, 280, "4f", 0, 0, 0, 0), 296, "4f", 0, 0, 0, 0), 312, "4f", 0, 0, 0, 0), "any")
    m("srow_singular", patch(base, 296, "4f", 2, 0, 0, 0), "any")
    # Found by fuzz_nifti_header: vnl's SVD in ITK's orientation code looped forever on this.
    m("srow_offset_huge_int16", patch(patch(int16_image(), 324, "f", -1.7014118346046923e+38), 112, "ff",
                                      1.1203930531274928e-38, 1.0000075101852417), "error")
    for magic in (b"ni1\0", b"xxxx", b"n+2\0", b"\0\0\0\0", b"n+1x"):
        b = bytearray(base)
        b[344:348] = magic
        m("magic_%s" % magic.hex(), bytes(b), "any")
    m("intent_vector", patch(patch(base, 68, "h", 1007), 40, "8h", 5, NX, NY, NZ, 1, 3, 1, 1), "error")
    m("intent_1007_only", patch(base, 68, "h", 1007), "any")
    for cut in (0, 1, 100, 347, 348, 351, 352, 352 + 4 * N // 2, len(base) - 1):
        m("truncated_%d" % cut, base[:cut], "error")
    m("trailing_garbage", base + b"garbage" * 10, "same")
    m("descrip_text", patch(base, 148, "20s", b"a description here"), "same")
    m("cal_nan", patch(base, 124, "2f", NAN, NAN), "same")
    m("intent_name", patch(base, 328, "8s", b"whatever"), "same")
    m("glmax_glmin", patch(base, 140, "2i", -5, 7), "same")
    m("slice_code_garbage", patch(base, 120, "hBB", 99, 200, 255), "any")
    m("xyzt_units_garbage", patch(base, 123, "B", 0xFF), "any")
    for flag, esize, code in ((1, 0, 4), (1, 16, 4), (1, 17, 4), (1, 0x7FFFFFF0, 4), (1, -16, 4), (0x01010101, 0, 0)):
        b = bytearray(base)
        b[348:352] = struct.pack("<I", flag & 0xFFFFFFFF)
        b = bytes(b[:352]) + struct.pack("<ii", esize, code) + bytes(b[352:])
        b = patch(b, 108, "f", 352.0 + 8 + max(0, min(esize, 64)) if esize > 0 else 360.0)
        m("extension_%d_%d" % (flag, esize), b, "any")
    # A valid big-endian file: the same voxels.
    h = bytearray(348)
    struct.pack_into(">i", h, 0, 348)
    struct.pack_into(">8h", h, 40, 3, NX, NY, NZ, 1, 1, 1, 1)
    struct.pack_into(">hh", h, 70, 16, 32)
    struct.pack_into(">8f", h, 76, 1.0, 2, 2, 2, 1, 1, 1, 1)
    struct.pack_into(">ff", h, 108, 352.0, 1.0)
    struct.pack_into(">B", h, 123, 2)
    struct.pack_into(">hh", h, 252, 1, 1)
    struct.pack_into(">4f", h, 280, 2, 0, 0, 0)
    struct.pack_into(">4f", h, 296, 0, 2, 0, 0)
    struct.pack_into(">4f", h, 312, 0, 0, 2, 0)
    h[344:348] = b"n+1\0"
    m("big_endian", bytes(h) + b"\0" * 4 + struct.pack(">%df" % N, *image_values()), "same")
    # int16 with scaling: the same values as float (scl_slope 0.25 of 4x).
    m("int16_scaled", patch(int16_image(), 112, "ff", 0.25, 0.0), "same")
    m("int16_bitpix_8", patch(int16_image(), 72, "h", 8), "error")
    m("float32_with_nan_voxels", patch(base, 352 + 40, "ff", NAN, NAN), "any")
    m("float32_with_inf_voxel", patch(base, 352 + 44, "f", INF), "error")
    m("float64_bitpix16", patch(base, 70, "hh", 64, 16), "error")

    for label, data, expect in mutations:
        cases.append(apply_case("nifti/%s.nii" % label, "bad.nii", data, expect))
        # The same bytes compressed: gigareg's zlib / libdeflate path instead of plain reads.
        cases.append(apply_case("nifti/%s.nii.gz" % label, "bad.nii.gz", gz(data), expect))
        # NaN is a voxel value (the "no data" of many pipelines): resampled, it stays NaN.
        cases[-1].nan_ok = cases[-2].nan_ok = "nan_voxels" in label
    return cases


def gzip_cases():
    base = float_image()
    good = gz(base)
    cases = []

    def c(label, data, expect="error"):
        cases.append(apply_case("gzip/%s" % label, "bad.nii.gz", data, expect))

    for frac in (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        c("truncated_%g" % frac, good[:int(len(good) * frac)])
    c("truncated_trailer_4", good[:-4])
    c("truncated_trailer_1", good[:-1])
    for where in (3, 10, 20, len(good) // 2, len(good) - 8, len(good) - 3):
        b = bytearray(good)
        b[where] ^= 0x5A
        c("flipped_%d" % where, bytes(b), "error" if where >= 10 else "any")
    b = bytearray(good)
    struct.pack_into("<I", b, len(b) - 4, N)  # ISIZE lies
    c("wrong_isize", bytes(b))
    b = bytearray(good)
    struct.pack_into("<I", b, len(b) - 8, 12345)
    c("wrong_crc", bytes(b))
    c("two_members", gz(base[:500]) + gz(base[500:]), "same")
    c("three_members_one_empty", gz(base[:500]) + gz(b"") + gz(base[500:]), "same_or_error")
    c("trailing_zeros", good + b"\0" * 64, "any")
    c("trailing_garbage", good + b"not gzip", "any")
    c("empty", b"")
    c("gzip_of_nothing", gz(b""))
    c("gzip_of_garbage", gz(b"garbage" * 100))
    c("not_gzip_plain_nifti", base, "any")
    c("random_bytes", bytes((i * 7919) & 0xFF for i in range(3000)))
    c("gzip_header_only", good[:10])
    # gigareg's own member format: sizes in the 'GR' field that lie.
    two = gr_members(base, 700)
    c("gr_valid", two, "same")
    # The members are valid gzip whatever their 'GR' field says: a lying size must not give other
    # data (an error, or the stream decoded as plain gzip).
    first_size = struct.unpack_from("<I", two, 16)[0]
    for size in (0, 1, 19, 28, first_size - 1, first_size + 1, len(two), len(two) + 100, 0xFFFFFFFF):
        c("gr_size_%d" % size, set_gr_size(two, size), "same_or_error")
    c("gr_second_truncated", two[:-10])
    c("gr_xlen_lies", patch(two, 10, "H", 200))
    c("gr_subfield_len_lies", patch(two, 14, "H", 2), "same_or_error")
    return cases


def meta_cases():
    cases = []

    def c(label, data, expect="any", ext=".mha", extra=None):
        cases.append(apply_case("meta/%s%s" % (label, ext), "bad" + ext, data, expect, extra_files=extra))

    c("valid", meta_image(), "same")
    for v in ("0", "2", "4", "-1", "x", "1e9"):
        c("ndims_%s" % v, meta_image({"NDims": v}))
    for v in ("0 5 4", "-8 7 6", "8 7", "8 7 6 2", "99999 99999 99999", "8 7 x", "", "8 7 6.5"):
        c("dimsize_%s" % v.replace(" ", "_"), meta_image({"DimSize": v}), "error" if v != "8 7 6 2" else "any")
    for v in ("MET_NONE", "MET_OTHER", "MET_DOUBLE", "MET_UCHAR", "MET_FLOAT_ARRAY", "garbage", "MET_LONG_LONG"):
        c("type_%s" % v, meta_image({"ElementType": v}))
    for v in ("0 2 2", "-2 2 2", "nan 2 2", "inf 2 2", "2 2", "1e-40 2 2"):
        c("spacing_%s" % v.replace(" ", "_"), meta_image({"ElementSpacing": v}))
    for v in ("nan 0 0", "inf 0 0", "1e39 0 0"):
        c("offset_%s" % v.replace(" ", "_"), meta_image({"Offset": v}))
    for v in ("0 0 0 0 0 0 0 0 0", "nan 0 0 0 1 0 0 0 1", "1 0 0 1 0 0 0 0 1", "1 0 0"):
        c("matrix_%s" % v.replace(" ", "_"), meta_image({"TransformMatrix": v}))
    c("msb_true", meta_image({"BinaryDataByteOrderMSB": "True"}))
    c("channels_3", meta_image({"ElementNumberOfChannels": "3"}), "error")
    c("data_truncated", meta_image(data=struct.pack("<%df" % (N // 2), *image_values()[:N // 2])), "error")
    c("data_empty", meta_image(data=b""), "error")
    packed = zlib.compress(struct.pack("<%df" % N, *image_values()))
    c("compressed_valid", meta_image({"CompressedData": "True", "CompressedDataSize": str(len(packed))}, packed), "same")
    for size in (0, 1, len(packed) // 2, len(packed) - 1, len(packed) + 100, 10 ** 12):
        c("compressed_size_%d" % size, meta_image({"CompressedData": "True", "CompressedDataSize": str(size)}, packed),
          "error")
    c("compressed_garbage", meta_image({"CompressedData": "True", "CompressedDataSize": "100"}, b"x" * 100), "error")
    c("compressed_no_size", meta_image({"CompressedData": "True"}, packed), "any")
    c("no_header", b"\0" * 2000, "error")
    c("missing_datafile", meta_image(drop=("ElementDataFile",)), "error")
    raw = struct.pack("<%df" % N, *image_values())
    c("mhd_valid", meta_image({"ElementDataFile": "bad.raw"}, b""), "same", ".mhd", {"bad.raw": raw})
    c("mhd_missing_raw", meta_image({"ElementDataFile": "missing.raw"}, b""), "error", ".mhd")
    c("mhd_short_raw", meta_image({"ElementDataFile": "bad.raw"}, b""), "error", ".mhd", {"bad.raw": raw[:100]})
    cases[-1].names.append("bad.raw")  # the short file itself is named
    c("mhd_raw_is_dir", meta_image({"ElementDataFile": "."}, b""), "error", ".mhd")
    c("mhd_raw_dev_zero", meta_image({"ElementDataFile": "/dev/zero"}, b""), "any", ".mhd")
    c("mhd_list", meta_image({"ElementDataFile": "LIST"}, b""), "error", ".mhd")
    c("header_size_huge", meta_image({"HeaderSize": "99999999"}), "error")
    c("header_size_negative", meta_image({"HeaderSize": "-5"}), "any")
    return cases


def nrrd_cases():
    cases = []
    raw = struct.pack("<%df" % N, *image_values())

    def c(label, data, expect="any", ext=".nrrd", extra=None):
        cases.append(apply_case("nrrd/%s%s" % (label, ext), "bad" + ext, data, expect, extra_files=extra))

    c("valid", nrrd_image(), "same")
    for v in ("unknown", "block", "double", "uchar", "int64"):
        c("type_%s" % v, nrrd_image({"type": v}), "error" if v in ("unknown", "block") else "any")
    for v in ("0", "2", "4", "-1", "x"):
        c("dimension_%s" % v, nrrd_image({"dimension": v}), "error")
    for v in ("0 7 6", "-8 7 6", "8 7", "99999 99999 99999", "8 x 6"):
        c("sizes_%s" % v.replace(" ", "_"), nrrd_image({"sizes": v}), "error")
    for v in ("(nan,0,0) (0,2,0) (0,0,2)", "(0,0,0) (0,2,0) (0,0,2)", "none (0,2,0) (0,0,2)", "(2,0,0) (2,0,0) (0,0,2)",
              "(inf,0,0) (0,2,0) (0,0,2)", "(2,0) (0,2) (0,0)"):
        c("directions_%d" % len(cases), nrrd_image({"space directions": v}))
    for v in ("(nan,0,0)", "(inf,0,0)", "(1,2)"):
        c("origin_%s" % v, nrrd_image({"space origin": v}))
    for v in ("gzip", "bzip2", "ascii", "hex", "zrl", "garbage"):
        # zlib's gzread passes data that is not gzip through unchanged: raw data labelled gzip reads right.
        c("encoding_%s_with_raw_data" % v, nrrd_image({"encoding": v}),
          "same_or_error" if v == "gzip" else "error" if v not in ("ascii", "hex") else "any")
    c("gzip_valid", nrrd_image({"encoding": "gzip"}, gz(raw)), "same")
    c("gzip_truncated", nrrd_image({"encoding": "gzip"}, gz(raw)[:200]), "error")
    c("ascii_valid", nrrd_image({"encoding": "ascii"}, " ".join("%r" % v for v in image_values()).encode()), "same")
    c("ascii_short", nrrd_image({"encoding": "ascii"}, b"1 2 3"), "error")
    c("ascii_nan", nrrd_image({"encoding": "ascii"}, b" ".join([b"nan"] * N)), "any")
    cases[-1].nan_ok = True
    c("endian_big", nrrd_image({"endian": "big"}), "any")
    c("endian_garbage", nrrd_image({"endian": "middle"}), "error")
    c("raw_truncated", nrrd_image(data=raw[:100]), "error")
    c("kinds_vector", nrrd_image({"kinds": "vector domain domain"}), "any")
    c("byte_skip_huge", nrrd_image({"byte skip": "100000000"}), "error")
    c("line_skip_huge", nrrd_image({"line skip": "100000000"}), "error")
    c("byte_skip_minus_1", nrrd_image({"byte skip": "-1"}), "any")
    c("bad_magic", nrrd_image(magic="NRRD9999"), "any")
    c("no_magic", nrrd_image(magic="hello"), "error")
    c("nhdr_valid", nrrd_image({"data file": "bad.raw"}, b""), "same", ".nhdr", {"bad.raw": raw})
    c("nhdr_missing", nrrd_image({"data file": "missing.raw"}, b""), "error", ".nhdr")
    c("nhdr_short", nrrd_image({"data file": "bad.raw"}, b""), "error", ".nhdr", {"bad.raw": raw[:10]})
    c("nhdr_list", nrrd_image({"data file": "LIST"}, b"bad.raw\n"), "any", ".nhdr", {"bad.raw": raw})
    c("nhdr_format", nrrd_image({"data file": "bad%03d.raw 0 5 1 2"}, b""), "error", ".nhdr")
    return cases


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_image(width=8, height=7, ihdr=None, idat=None):
    """An 8-bit grey PNG (a 2-D image ITK reads)."""
    rows = b"".join(b"\0" + bytes((x * 20 + y * 3) & 0xFF for x in range(width)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0) if ihdr is None else ihdr
    idat = zlib.compress(rows) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_cases():
    """PNG is read by ITK's PNGImageIO, which aborted the process on a damaged chunk (found by
    fuzz_nifti_header: a PNG named .nii). Read as `gigareg info` (header) and `apply` (data)."""
    cases = []
    good = png_image()

    def c(label, data, expect="error", name="bad.png"):
        cases.append(Case("png/info/%s" % label, {name: data}, ["info", name], expect, [name]))
        cases.append(apply_case("png/apply/%s" % label, name, data, "any" if expect != "error" else "error"))

    c("valid", good, "any")
    c("named_nii", good, "any", "bad.nii")
    c("invalid_chunk_type", good[:8] + png_chunk(b"\0\0\0\0", b"x") + good[8:], "error", "bad.nii")
    c("invalid_chunk_type_png", good[:8] + b"\\\x01\0\0\0\0\0\0\0\0\x0c" + good[8:])
    for cut in (8, 20, 33, len(good) // 2):
        c("truncated_%d" % cut, good[:cut])
    for cut in (len(good) - 12, len(good) - 1):  # only IEND cut: every pixel is there
        c("truncated_iend_%d" % cut, good[:cut], "any")
    b = bytearray(good)
    b[29] ^= 0xFF  # IHDR's CRC
    c("ihdr_crc", bytes(b))
    c("zero_width", png_image(ihdr=struct.pack(">IIBBBBB", 0, 7, 8, 0, 0, 0, 0)))
    c("huge", png_image(ihdr=struct.pack(">IIBBBBB", 1000000, 1000000, 8, 0, 0, 0, 0)))
    c("bit_depth_3", png_image(ihdr=struct.pack(">IIBBBBB", 8, 7, 3, 0, 0, 0, 0)))
    c("idat_garbage", png_image(idat=b"garbage"))
    c("idat_short", png_image(idat=zlib.compress(b"\0" * 10)))
    return cases


def transform_cases():
    cases = []

    def c(label, name, data, expect="any", transform=None):
        cases.append(apply_case("transform/%s" % label, name, None, expect,
                                extra_files={"m.nii": float_image(), name: data}, reference="ref.nii",
                                transform=transform or name))
        cases[-1].args[2] = "m.nii"  # resample the valid image through the bad transform
        cases[-1].names = [name]

    c("txt_valid", "t.txt", affine_txt(), "any")
    for label, kw in (
            ("no_header", {"header": "#Not a transform"}),  # ITK reads the fields without it
            ("bspline", {"transform": "BSplineTransform_double_3_3"}),
            ("unknown_type", {"transform": "FooTransform_double_3_3"}),
            ("two_d", {"transform": "AffineTransform_double_2_2", "params": "1 0 0 1 0 0", "fixed": "0 0"}),
            ("few_params", {"params": "1 0 0 0 1"}),
            ("many_params", {"params": "1 0 0 0 1 0 0 0 1 0 0 0 7 7"}),
            ("nan_param", {"params": "nan 0 0 0 1 0 0 0 1 0 0 0"}),
            ("inf_param", {"params": "1 0 0 0 inf 0 0 0 1 0 0 0"}),
            ("huge_param", {"params": "1e308 0 0 0 1 0 0 0 1 0 0 0"}),
            ("overflow_param", {"params": "1e999 0 0 0 1 0 0 0 1 0 0 0"}),
            ("text_param", {"params": "one 0 0 0 1 0 0 0 1 0 0 0"}),
            ("no_fixed", {"fixed": ""}),
            ("nan_fixed", {"fixed": "nan 0 0"}),
            ("euler", {"transform": "Euler3DTransform_double_3_3", "params": "0.1 0 0 1 2 3"}),
            ("euler_few", {"transform": "Euler3DTransform_double_3_3", "params": "0.1"}),
            ("similarity", {"transform": "Similarity3DTransform_double_3_3", "params": "0 0 0 1 2 3 1.5"}),
            ("float_affine", {"transform": "AffineTransform_float_3_3"}),
            ("displacement_field", {"transform": "DisplacementFieldTransform_double_3_3", "params": "0 0 0"}),
            ("singular", {"params": "0 0 0 0 0 0 0 0 0 0 0 0"}),
    ):
        expect = "any" if label in ("euler", "similarity", "float_affine", "huge_param", "singular", "no_header") else "error"
        c("txt_%s" % label, "t.txt", affine_txt(**kw), expect)
    c("txt_singular_inverted", "t.txt", affine_txt(params="0 0 0 0 0 0 0 0 0 0 0 0"), "error", "[t.txt,1]")
    c("txt_inverted_bad_flag", "t.txt", affine_txt(), "error", "[t.txt,2]")
    c("txt_empty", "t.txt", b"", "error")
    c("txt_binary", "t.txt", bytes(range(256)) * 4, "error")
    c("txt_two_transforms", "t.txt", affine_txt() + b"#Transform 1\nTransform: AffineTransform_double_3_3\n"
      b"Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n", "any")
    c("tfm_valid", "t.tfm", affine_txt(), "any")
    c("mat_valid", "t.mat", affine_mat(), "any")
    good = affine_mat()
    for cut in (0, 4, 19, 20, 30, 47, 60, len(good) - 24 - 8, len(good) - 1):
        c("mat_truncated_%d" % cut, "t.mat", good[:cut], "error")
    c("mat_nan", "t.mat", affine_mat(params=(NAN, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0)), "error")
    c("mat_nan_inverted", "t.mat", affine_mat(params=(NAN, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0)), "error", "[t.mat,1]")
    c("mat_inf_fixed", "t.mat", affine_mat(fixed=(INF, 0, 0)), "error")
    c("mat_singular_inverted", "t.mat", affine_mat(params=(0,) * 12), "error", "[t.mat,1]")
    c("mat_wrong_name", "t.mat", affine_mat(name="FooTransform_double_3_3"), "error")
    c("mat_few_rows", "t.mat", affine_mat(params=(1, 0, 0, 0, 1, 0), rows=6), "error")
    c("mat_rows_lie", "t.mat", affine_mat(rows=100000), "error")
    c("mat_rows_negative", "t.mat", affine_mat(rows=-12), "error")
    c("mat_namelen_lies", "t.mat", affine_mat(namelen=100000), "error")
    c("mat_namelen_zero", "t.mat", affine_mat(namelen=0), "error")
    c("mat_type_float", "t.mat", affine_mat(type_code=10), "any")
    c("mat_type_garbage", "t.mat", affine_mat(type_code=9999), "error")
    c("mat_big_endian_flag", "t.mat", affine_mat(type_code=1000), "any")
    c("h5_garbage", "t.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "error")
    c("h5_empty", "t.h5", b"", "error")
    c("h5_text", "t.h5", affine_txt(), "error")
    c("unknown_extension", "t.xfm", affine_txt(), "error")
    c("missing", "t.txt", affine_txt(), "error", "missing.txt")
    cases[-1].names = ["missing.txt"]
    c("directory", "t.txt", affine_txt(), "error", ".")
    cases[-1].names = ["'.'", " .: ", "'.'", ".:"]
    return cases


def h5_cases(gigareg, workdir):
    """Byte flips and truncations of .h5 transforms that gigareg itself wrote (made once here)."""
    d = os.path.join(workdir, "h5_seed")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f.nii"), "wb") as f:
        f.write(float_image())
    with open(os.path.join(d, "t.txt"), "wb") as f:
        f.write(affine_txt())
    # An affine .h5: gigareg register with an initial transform writes one only as .mat; `apply`
    # cannot write transforms. The seed is a composite from a two-iteration registration.
    r = subprocess.run([gigareg, "register", "-d", "3", "--device", "cpu", "-v", "0", "--no-qc", "-o", "out/r_",
                        "-t", "Affine[0.1]", "-m", "MeanSquares[f.nii,f.nii,1]", "-c", "[1,1e-6,10]", "-f", "1",
                        "-s", "0vox", "-t", "Greedy[0.1,1,0.5]", "-m", "MeanSquares[f.nii,f.nii,1]", "-c",
                        "[1,1e-6,10]", "-f", "1", "-s", "0vox", "--write-composite-transform", "1"],
                       cwd=d, capture_output=True, timeout=120)
    seed = os.path.join(d, "out", "r_Composite.h5")
    if r.returncode != 0 or not os.path.exists(seed):
        print("malformed_inputs: no .h5 seed (%s); the .h5 byte-flip cases are skipped" % r.stderr.decode()[-300:])
        return []
    good = open(seed, "rb").read()
    cases = []

    def c(label, data, expect):
        cases.append(apply_case("h5/%s" % label, "t.h5", None, expect,
                                extra_files={"m.nii": float_image(), "t.h5": data}, transform="t.h5"))
        cases[-1].args[2] = "m.nii"
        cases[-1].names = ["t.h5"]

    c("valid", good, "any")
    for frac in (0.0, 0.05, 0.2, 0.5, 0.8, 0.99):
        c("truncated_%g" % frac, good[:int(len(good) * frac)], "error")
    step = max(1, len(good) // 24)
    for where in range(0, len(good), step):
        b = bytearray(good)
        b[where] ^= 0xFF
        c("flipped_%d" % where, bytes(b), "any")
    return cases


def warp_cases():
    cases = []

    def c(label, data, expect="any", name="w.nii.gz", command="apply"):
        files = {"ref.nii": float_image(), "m.nii": float_image(), name: data}
        if command == "apply":
            args = ["apply", "-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-t", name]
        else:
            args = [command, "-i", name, "-o", "out/o.nii"]
        cases.append(Case("warp/%s/%s" % (command, label), files, args, expect, [name], ["out/o.nii"]))

    for command in ("apply", "jacobian", "invert"):
        good = warp_image()
        c("valid", gz(good), "any", command=command)
        c("valid_plain", good, "any", "w.nii", command)
        c("two_components", gz(warp_image(ncomp=2)), "error", command=command)
        c("four_components", gz(warp_image(ncomp=4)), "error", command=command)
        c("float64", gz(warp_image(datatype=64)), "any", command=command)
        c("int16", gz(patch(good, 70, "hh", 4, 16)), "any", command=command)
        c("nan_displacement", gz(patch(good, 352 + 4 * 10, "f", NAN)), "any", command=command)
        c("inf_displacement", gz(patch(good, 352 + 4 * 10, "f", INF)), "error", command=command)
        c("huge_displacement", gz(patch(good, 352 + 4 * 10, "f", 3e38)), "any", command=command)
        c("scalar_image", gz(float_image()), "error" if command != "apply" else "any", command=command)
        c("time_series", gz(patch(good, 40, "8h", 5, NX, NY, NZ, 2, 3, 1, 1)), "error", command=command)
        c("truncated", gz(good)[:len(gz(good)) // 2], "error", command=command)
        c("truncated_plain", good[:len(good) - 100], "error", "w.nii", command)
        c("spacing_zero", gz(patch(good, 80, "f", 0.0)), "any", command=command)
        c("sform_nan", gz(patch(good, 280, "f", NAN)), "error", command=command)
        c("dim5_zero", gz(patch(good, 50, "h", 0)), "any", command=command)
    return cases


def option_cases():
    """register on two tiny images; one option changed at a time."""
    files = {"f.nii": float_image(image_values(12, 12, 10), (12, 12, 10)),
             "m.nii": float_image(image_values(12, 12, 10, shift=1), (12, 12, 10))}
    base = {"-d": "3", "-o": "out/r_", "-t": "Affine[0.1]", "-m": "MeanSquares[f.nii,m.nii,1]", "-c": "[2,1e-6,10]",
            "-f": "1", "-s": "0vox"}
    long_names = {"-d": "--dimensionality", "-o": "--output", "-t": "--transform", "-m": "--metric",
                  "-c": "--convergence", "-f": "--shrink-factors", "-s": "--smoothing-sigmas",
                  "-r": "--initial-moving-transform", "-x": "--masks", "-n": "--interpolation"}
    cases = []

    def run_args(opts, extra=()):
        args = ["register", "--device", "cpu", "-v", "0", "--no-qc"]
        for k, v in opts.items():
            args += [k, v]
        return args + list(extra)

    def c(label, option, value, expect="error", extra_files=None, names=None):
        opts = dict(base)
        if value is None:
            opts.pop(option, None)
        else:
            opts[option] = value
        fs_ = dict(files)
        fs_.update(extra_files or {})
        needle = names or [option, long_names.get(option, option)]
        cases.append(Case("options/%s" % label, fs_, run_args(opts), expect, needle, ["out/r_0GenericAffine.mat"]))

    c("valid", "-t", "Affine[0.1]", "any")
    bad_numbers = ["", "x", "nan", "inf", "-inf", "1e999", "-1e999", "0x10", "1,2", "[", "]", "[[1]]", "1e-400",
                   "\u00e9", "9" * 400, "-0", "1 2", "\t"]
    for i, v in enumerate(bad_numbers):
        c("transform_step_%d" % i, "-t", "Affine[%s]" % v, "any")
        c("greedy_sigma_%d" % i, "-t", "Greedy[0.1,%s,1]" % v, "any")
        c("metric_weight_%d" % i, "-m", "MeanSquares[f.nii,m.nii,%s]" % v, "any")
        c("cc_radius_%d" % i, "-m", "CC[f.nii,m.nii,1,%s]" % v, "any")
        c("convergence_%d" % i, "-c", "[%s,1e-6,10]" % v, "any")
        c("threshold_%d" % i, "-c", "[2,%s,10]" % v, "any")
        c("shrink_%d" % i, "-f", v, "any")
        c("sigma_%d" % i, "-s", "%svox" % v, "any")
        c("winsorize_%d" % i, "--winsorize-image-intensities", "[%s,1]" % v, "any")
        c("init_feature_%d" % i, "-r", "[f.nii,m.nii,%s]" % v, "any")
    for v in ("Affine", "Affine[]", "Affine[0.1", "Affine0.1]", "Affine[0.1,2]", "Similarity[0.1]", "BSplineSyN[0.1]",
              "SyN[0.1,3,0,9]", "Greedy[0.1,1,2,3]", "Greedy[-1]", "Greedy[0]", "Rigid[1e308]", "[0.1]", "", "Affine[0.1]]"):
        c("transform_%s" % v, "-t", v, "any")
    for v in ("MI[f.nii,m.nii,1,4]", "MI[f.nii,m.nii,1,129]", "MI[f.nii,m.nii,1,32,Bogus]", "MI[f.nii,m.nii,1,32,Regular,0]",
              "MI[f.nii,m.nii,1,32,Regular,1.5]", "CC[f.nii,m.nii,1,0]", "CC[f.nii,m.nii,1,100000]", "CC[f.nii]",
              "CC[,m.nii,1,2]", "Foo[f.nii,m.nii,1]", "MeanSquares[f.nii,m.nii,1,1,1,1,1]", "MeanSquares",
              "MeanSquares[f.nii,m.nii,0]", "MeanSquares[f.nii,m.nii,-1]"):
        c("metric_%s" % v, "-m", v, "any")
    for v in ("[2x2,1e-6,10]", "[2,1e-6,0]", "[2,1e-6,-5]", "[2,1e-6,10,4]", "[-2,1e-6,10]", "[2.5,1e-6,10]",
              "[99999999999,1e-6,10]", "[]", "2x"):
        c("convergence_%s" % v, "-c", v, "any")
    for v in ("0", "0.5", "-1", "1x1", "1e308", "13", "12", "2"):
        c("shrink_%s" % v, "-f", v, "any")
    for v in ("-1vox", "1x1vox", "1e308vox", "nanmm", "1mmvox", "vox", "1e308"):
        c("sigmas_%s" % v, "-s", v, "any")
    for v in ("2", "4", "0", "x", "3.5", ""):
        c("dimension_%s" % v, "-d", v, "any")
    for v in ("[f.nii,m.nii,9]", "[f.nii,m.nii]", "[m.nii,f.nii,1]", "[a.nii,b.nii,1]", "[f.nii,m.nii,1,2]",
              "missing.mat", "[missing.mat,1]", "[f.nii,0]", "f.nii", "[,1]", "[f.nii,m.nii,3]"):
        c("init_%s" % v, "-r", v, "any", names=["-r", "--initial-moving-transform", "missing.mat", "f.nii", "a.nii"])
    for v in ("out/r_", "[out/r_]", "[out/r_,out/w.nii]", "[out/r_,out/w.xyz]", "[out/r_,out/w.hdr]", "[out/r_,out/w.nii,out/i.nii]",
              "[out/r_,out/w.nii,out/i.nii,x]", "[]", "[,out/w.nii]", "out/", "out/sub/deeper/r_", "/proc/r_",
              "out/" + "p" * 300 + "_", "[out/r_,/proc/w.nii]", "[out/r_,out/w.png]"):
        c("output_%d" % len(cases), "-o", v, "any",
          names=["-o", "--output", "/proc", "out/", "w.xyz", "w.hdr", "w.png", "'[]'", "prefix", "ppp"])
        cases[-1].outputs = []  # where they go depends on the value: success is checked by the exit
    for v in ("[NULL,NULL]", "[f.nii,NULL]", "[missing.nii,NULL]", "[f.nii,m.nii,x]", "garbage[", "[m.nii]"):
        c("masks_%s" % v, "-x", v, "any", names=["-x", "--masks", "missing.nii", "garbage"])
    for opt, v in (("--device", "tpu"), ("--device", ""), ("-n", "BSpline"), ("-n", "MultiLabel"), ("--preset", "fast"),
                   ("--field-optimizer", "sgd"), ("--adam-moments", "float16"), ("--warp-extension", ".mha"),
                   ("--inverse-iterations", "-1"), ("--inverse-iterations", "1001"), ("--inverse-iterations", "x"),
                   ("--use-histogram-matching", "1"), ("--use-histogram-matching", "2"),
                   ("--collapse-output-transforms", "0"), ("--float", "x"), ("--compression-level", "13"),
                   ("--compression-level", "-1"), ("--compression-level", "x"), ("--write-composite-transform", "7"),
                   ("--bogus-option", "1"), ("-Z", "1"), ("--winsorize-image-intensities", "[0.005,0.995]"),
                   ("--winsorize-image-intensities", "0,1"), ("--winsorize-image-intensities", "[0,1]")):
        c("flag_%s_%s" % (opt, v), opt, v, "any", names=[opt])
    # Images that are missing, unreadable or not images, named inside -m.
    for label, name, data in (("missing", "nothere.nii", None), ("empty", "e.nii", b""), ("text", "t.nii", b"hello"),
                              ("directory", "d.nii", "DIR"), ("spaces", "a b.nii", float_image(image_values(12, 12, 10), (12, 12, 10)))):
        extra = {} if data is None else {name: data}
        c("image_%s" % label, "-m", "MeanSquares[f.nii,%s,1]" % name, "any" if label == "spaces" else "error",
          extra_files=extra, names=[name])
    # Values given twice, or not at all.
    cases.append(Case("options/missing_value", files, ["register", "--device", "cpu", "-o"], "error", ["-o", "--output"]))
    cases.append(Case("options/no_stage", files, ["register", "--device", "cpu", "-o", "out/r_"], "error", ["-t", "--transform"]))
    cases.append(Case("options/twice", files, run_args(base, ["-d", "3"]), "error", ["-d", "--dimensionality"]))
    cases.append(Case("options/two_stages_one_metric", files, run_args(base, ["-t", "Affine[0.1]"]), "error",
                      ["-m", "--metric"]))
    cases.append(Case("options/stray_word", files, run_args(base, ["stray"]), "error", ["stray"]))
    cases.append(Case("options/huge_value", files, run_args(base, ["--preset", "x" * 100000]), "error", ["--preset"]))
    # Issue 18, item 4: huge intensities (scl_slope 1e30, and a constant image) through the whole
    # command with its QC picture, whose windowing once converted NaN to an integer.
    huge = dict(files)
    huge["f.nii"] = patch(files["f.nii"], 112, "f", 1e30)
    huge["m.nii"] = patch(float_image([7.0] * 1440, (12, 12, 10)), 112, "f", 1e30)
    for metric in ("MI[f.nii,m.nii,1,32]", "MeanSquares[f.nii,m.nii,1]"):
        opts = dict(base, **{"-m": metric})
        qc_args = [a for a in run_args(opts) if a != "--no-qc"]
        cases.append(Case("options/qc_huge_values_%s" % metric[:2], huge, qc_args, "any", ["f.nii", "m.nii", "-t/--transform"],
                          ["out/r_0GenericAffine.mat", "out/r_QC.png"]))
    return cases


def apply_option_cases():
    files = {"m.nii": float_image(), "ref.nii": float_image()}
    cases = []
    for label, extra, names in (
            ("no_input", ["-r", "ref.nii", "-o", "out/o.nii"], ["-i", "--input"]),
            ("bad_interpolation", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-n", "Sinc"], ["-n", "interpolation"]),
            ("bad_device", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "--device", "x"], ["--device"]),
            ("dimension_2", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-d", "2"], ["-d"]),
            ("input_type", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-e", "1"], ["-e"]),
            ("default_value_nan", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-f", "nan"], ["-f"]),
            ("bspline_order", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-n", "BSpline[5]"], ["-n", "BSpline"]),
            ("transform_bracket", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-t", "[x.mat"], ["-t", "[x.mat"]),
            ("transform_empty", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.nii", "-t", ""], ["-t", "''"]),
            ("output_ext", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.jpg"], ["o.jpg"]),
            ("output_hdr", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/o.hdr"], ["o.hdr"]),
            ("output_is_dir", ["-i", "m.nii", "-r", "ref.nii", "-o", "out"], ["out"]),
            ("output_proc", ["-i", "m.nii", "-r", "ref.nii", "-o", "/proc/o.nii"], ["/proc/o.nii"]),
            ("output_too_long", ["-i", "m.nii", "-r", "ref.nii", "-o", "out/" + "o" * 260 + ".nii"], ["ooo"]),
            ("output_under_file", ["-i", "m.nii", "-r", "ref.nii", "-o", "m.nii/o.nii"], ["m.nii"]),
            ("input_dir", ["-i", ".", "-r", "ref.nii", "-o", "out/o.nii"], ["."]),
            ("input_dev_null", ["-i", "/dev/null", "-r", "ref.nii", "-o", "out/o.nii"], ["/dev/null"]),
            ("input_dev_zero", ["-i", "/dev/zero", "-r", "ref.nii", "-o", "out/o.nii"], ["/dev/zero"]),
            ("reference_missing", ["-i", "m.nii", "-r", "gone.nii", "-o", "out/o.nii"], ["gone.nii"]),
            ("fifo", ["-i", "fifo.nii", "-r", "ref.nii", "-o", "out/o.nii"], ["fifo.nii"]),
            ("dangling_link", ["-i", "dangling.nii", "-r", "ref.nii", "-o", "out/o.nii"], ["dangling.nii"]),
    ):
        cases.append(Case("apply_options/%s" % label, dict(files), ["apply"] + extra, "error", names))
    cases.append(Case("apply_options/link_to_valid", dict(files), ["apply", "-i", "link.nii", "-r", "ref.nii", "-o",
                                                                   "out/o.nii"], "same", ["link.nii"], ["out/o.nii"], "apply"))
    cases.append(Case("apply_options/output_in_new_dirs", dict(files), ["apply", "-i", "m.nii", "-r", "ref.nii", "-o",
                                                                        "out/a/b/c/o.nii"], "any", ["o.nii"], ["out/a/b/c/o.nii"]))
    return cases


def shared_data_cases(shared):
    """A few cases derived from a real template, when the shared data is present."""
    path = os.path.join(shared, "templates", "fsl_MNI152_T1_2mm.nii.gz") if shared else ""
    if not path or not os.path.exists(path):
        print("malformed_inputs: %s is absent; the real-data cases are skipped" % (path or "the shared data"))
        return []
    good = open(path, "rb").read()
    plain = gzip.decompress(good)
    cases = []
    for frac in (0.3, 0.9):
        cases.append(apply_case("real/truncated_%g" % frac, "t.nii.gz", good[:int(len(good) * frac)], "error"))
    b = bytearray(good)
    b[len(b) // 2] ^= 0x10
    cases.append(apply_case("real/flipped", "t.nii.gz", bytes(b), "error"))
    cases.append(apply_case("real/sform_nan", "t.nii.gz", gz(patch(plain, 280, "f", NAN)), "error"))
    cases.append(apply_case("real/slope_huge", "t.nii.gz", gz(patch(plain, 112, "f", 1e38)), "error"))
    cases.append(apply_case("real/slope_1e30", "t.nii.gz", gz(patch(plain, 112, "f", 1e30)), "any"))
    cases.append(apply_case("real/bitpix", "t.nii.gz", gz(patch(plain, 72, "h", 32)), "error"))
    return cases


# ------------------------------------------------------------------------------------------------
# Running and checking


SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def make_files(case, d):
    os.makedirs(os.path.join(d, "out"), exist_ok=True)
    for name, data in case.files.items():
        p = os.path.join(d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if data == "DIR":
            os.makedirs(p, exist_ok=True)
        else:
            with open(p, "wb") as f:
                f.write(data)
    if case.name.startswith("apply_options/"):
        os.mkfifo(os.path.join(d, "fifo.nii"))
        os.symlink("nowhere.nii", os.path.join(d, "dangling.nii"))
        os.symlink("m.nii", os.path.join(d, "link.nii"))


def left_files(d, root="out"):
    found = []
    for base, _, names in os.walk(os.path.join(d, root)):
        found += [os.path.relpath(os.path.join(base, n), d) for n in names]
    return found


def temporaries(d):
    found = []
    for base, _, names in os.walk(d):
        found += [os.path.relpath(os.path.join(base, n), d) for n in names if ".tmp-" in n]
    return found


def nifti_is_finite(path):
    data = open(path, "rb").read()
    if len(data) < 352:
        return "shorter than a NIfTI header"
    dims = struct.unpack_from("<8h", data, 40)
    datatype, = struct.unpack_from("<h", data, 70)
    offset = int(struct.unpack_from("<f", data, 108)[0])
    count = 1
    for k in range(1, dims[0] + 1):
        count *= dims[k]
    fmt = {16: "f", 64: "d", 4: "h", 2: "B", 8: "i", 512: "H", 256: "b", 768: "I"}.get(datatype)
    if fmt is None:
        return "unexpected datatype %d" % datatype
    size = struct.calcsize(fmt)
    if len(data) < offset + count * size:
        return "data is short"
    if fmt in "fd":
        values = struct.unpack_from("<%d%s" % (count, fmt), data, offset)
        if not all(math.isfinite(v) for v in values):
            return "holds non-finite values"
    return ""


def run_case(gigareg, case, workdir, timeout, baselines):
    d = tempfile.mkdtemp(prefix="case_", dir=workdir)
    problems = []
    try:
        make_files(case, d)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        try:
            r = subprocess.run([gigareg] + case.args, cwd=d, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return ["timed out after %g s (hang?)" % timeout], None
        err = r.stderr.decode(errors="replace")
        out = r.stdout.decode(errors="replace")
        if r.returncode < 0:
            problems.append("killed by signal %d" % -r.returncode)
        for mark in SANITIZER_MARKS:
            if mark in err:
                problems.append("sanitizer report: " + mark)
                break
        if "internal error" in err:
            problems.append("internal error (an error without a file or option)")
        if r.returncode > 0:
            if case.expect == "same":
                problems.append("failed where the result must equal the valid file's")
            if case.expect == "same_or_error" and "error" not in err:
                problems.append("non-zero exit without an error message")
            if not any(n in err for n in case.names):
                problems.append("the error names none of %s" % case.names)
            left = left_files(d)
            if left:
                problems.append("files left after a failure: %s" % left)
        elif r.returncode == 0:
            if case.expect == "error":
                problems.append("exit 0 where an error is required")
            for o in case.outputs:
                p = os.path.join(d, o)
                if not os.path.isfile(p):
                    problems.append("exit 0 without the output %s" % o)
                elif o.endswith(".nii") and not case.nan_ok:
                    why = nifti_is_finite(p)
                    if why:
                        problems.append("%s %s" % (o, why))
            if case.baseline and case.outputs:
                got = open(os.path.join(d, case.outputs[0]), "rb").read() if os.path.isfile(
                    os.path.join(d, case.outputs[0])) else b""
                if got != baselines.get(case.baseline):
                    problems.append("the output differs from the valid file's")
        tmp = temporaries(d)
        if tmp:
            problems.append("temporaries left: %s" % tmp)
        return problems, (r.returncode, (err or out).strip().splitlines()[-1:] if (err or out).strip() else [])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gigareg", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--shared-data", default="")
    ap.add_argument("--filter", default="", help="run only cases whose name contains this")
    ap.add_argument("--list", action="store_true", help="print the cases and exit")
    ap.add_argument("--verbose", action="store_true", help="print every case's exit and message")
    a = ap.parse_args()
    gigareg = os.path.abspath(a.gigareg)
    workdir = tempfile.mkdtemp(prefix="gigareg_malformed_")
    try:
        cases = (nifti_cases() + gzip_cases() + meta_cases() + nrrd_cases() + png_cases() + transform_cases() +
                 h5_cases(gigareg, workdir) + warp_cases() + option_cases() + apply_option_cases() +
                 shared_data_cases(a.shared_data))
        cases = [c for c in cases if a.filter in c.name]
        if a.list:
            for c in cases:
                print(c.name, c.expect, " ".join(c.args))
            print("%d cases" % len(cases))
            return 0
        # The baseline: the valid image resampled, which the 'same' cases must reproduce exactly.
        base = Case("baseline", {"ref.nii": float_image(), "good.nii": float_image()},
                    ["apply", "-i", "good.nii", "-r", "ref.nii", "-o", "out/o.nii"], "any", [], ["out/o.nii"])
        d = tempfile.mkdtemp(dir=workdir)
        make_files(base, d)
        r = subprocess.run([gigareg] + base.args, cwd=d, capture_output=True, timeout=a.timeout)
        if r.returncode != 0:
            print("malformed_inputs: the valid baseline fails: %s" % r.stderr.decode())
            return 1
        baselines = {"apply": open(os.path.join(d, "out", "o.nii"), "rb").read()}
        failures = 0
        counts = {"error": 0, "ok": 0}
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futures = {pool.submit(run_case, gigareg, c, workdir, a.timeout, baselines): c for c in cases}
            for fut in concurrent.futures.as_completed(futures):
                c = futures[fut]
                problems, outcome = fut.result()
                if outcome:
                    counts["ok" if outcome[0] == 0 else "error"] += 1
                if problems:
                    failures += 1
                    print("FAIL %s: %s\n     gigareg %s\n     -> %s" % (c.name, "; ".join(problems), " ".join(c.args),
                                                                      outcome))
                elif a.verbose:
                    print("ok   %s -> %s" % (c.name, outcome))
        print("malformed_inputs: %d cases, %d failed (%d ended in a named error, %d succeeded with a correct result)"
              % (len(cases), failures, counts["error"], counts["ok"]))
        return 1 if failures else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
