#!/usr/bin/env python3
"""Reads a .zarr store gigareg wrote with Python's zarr package (an independent reader) and compares
it with what the test expects (tests/unit/test_zarr.cpp, ZarrPython.*).

usage: check_zarr.py STORE EXPECTED.json VALUES.raw

EXPECTED.json: {"dtype": "<i2", "shape": [...], "spacing": [x, y, z], "origin": [x, y, z],
"direction": [[...], [...], [...]], "kind": "image" | "displacement_field", "levels": N}
VALUES.raw: level 0's values as little-endian float32 in the array's C order.
Exit 0 when everything agrees; 1 with a message naming the first difference; 77 when zarr is
missing (the test skips).
"""
import json
import sys

try:
    import numpy as np
    import zarr
except ImportError as e:  # the test skips with this message
    print(f"python3 zarr/numpy not importable: {e}")
    sys.exit(77)


def fail(msg):
    print(f"MISMATCH: {msg}")
    sys.exit(1)


def main():
    store, expected_path, raw_path = sys.argv[1:4]
    exp = json.load(open(expected_path))
    group = zarr.open_group(store, mode="r")
    ms = group.attrs["multiscales"][0]
    if ms["version"] != "0.4":
        fail(f"multiscales version {ms['version']}")
    names = [a["name"] for a in ms["axes"]]
    field = exp["kind"] == "displacement_field"
    want_names = (["c"] if field else []) + ["z", "y", "x"]
    if names != want_names:
        fail(f"axes {names}, expected {want_names}")
    if field and ms["axes"][0]["type"] != "channel":
        fail("the component axis is not of type channel")
    if any(a.get("unit") != "millimeter" for a in ms["axes"] if a["type"] == "space"):
        fail("space axes are not in millimeter")
    if len(ms["datasets"]) != exp["levels"]:
        fail(f"{len(ms['datasets'])} levels, expected {exp['levels']}")

    a = group[ms["datasets"][0]["path"]]
    if a.dtype != np.dtype(exp["dtype"]):
        fail(f"dtype {a.dtype}, expected {exp['dtype']}")
    if list(a.shape) != exp["shape"]:
        fail(f"shape {a.shape}, expected {exp['shape']}")
    values = np.fromfile(raw_path, dtype="<f4").reshape(a.shape)
    data = a[...]
    if not np.array_equal(data.astype(np.float64), values.astype(np.float64)):
        idx = np.argwhere(data.astype(np.float64) != values.astype(np.float64))[0]
        fail(f"value at {tuple(idx)}: zarr reads {data[tuple(idx)]}, expected {values[tuple(idx)]}")

    # Geometry: NGFF scale = spacing; translation = D^-1 origin; gigareg key = exact origin, D.
    ours = group.attrs["gigareg"]
    if ours["space"] != "LPS" or ours["kind"] != exp["kind"]:
        fail(f"gigareg attributes {ours}")
    if ours["origin"] != exp["origin"]:
        fail(f"origin {ours['origin']}, expected {exp['origin']}")
    if ours["direction"] != exp["direction"]:
        fail(f"direction {ours['direction']}, expected {exp['direction']}")
    ct = {t["type"]: t[t["type"]] for t in ms["datasets"][0]["coordinateTransformations"]}
    scale = ct["scale"][-3:][::-1]
    if scale != exp["spacing"]:
        fail(f"scale (x, y, z) {scale}, expected spacing {exp['spacing']}")
    d = np.array(exp["direction"])
    t = np.array(ct["translation"][-3:][::-1])
    if not np.allclose(d @ t, exp["origin"], rtol=0, atol=1e-9):
        fail(f"D * translation = {d @ t}, expected the origin {exp['origin']}")
    # Level 1 (when written): each axis longer than one voxel halved, rounded up; scale doubled;
    # voxel centres at the centres of the 2x2x2 blocks of level 0.
    if exp["levels"] > 1:
        c1 = {t["type"]: t[t["type"]] for t in ms["datasets"][1]["coordinateTransformations"]}
        level = group[ms["datasets"][1]["path"]]
        for ax in range(1, 4):
            n0, n1 = a.shape[-ax], level.shape[-ax]
            f = 2 if n0 > 1 else 1
            if n1 != (n0 + 1) // f:
                fail(f"level 1 shape {level.shape} from {a.shape}")
            if abs(c1["scale"][-ax] - ct["scale"][-ax] * f) > 1e-12:
                fail(f"level 1 scale {c1['scale']}")
            want = ct["translation"][-ax] + (0.5 * ct["scale"][-ax] if f == 2 else 0)
            if abs(c1["translation"][-ax] - want) > 1e-9:
                fail(f"level 1 translation {c1['translation']}, expected {want} on axis -{ax}")
    print("OK", a.shape, a.dtype, a.compressor)
    sys.exit(0)


main()
