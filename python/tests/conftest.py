"""Shared fixtures: a small synthetic pair on oblique, anisotropic grids, the built tool, the data."""
import os
import shutil

import numpy as np
import pytest

import gigareg


def oblique_direction(angles=(0.3, -0.2, 0.15)):
    """A proper rotation (det +1) about x, then y, then z."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def blobs(shape_zyx, centres, widths, seed=0):
    """A smooth image of Gaussian blobs (array [z, y, x]) with a little texture."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape_zyx], indexing="ij")
    out = np.zeros(shape_zyx)
    for (cx, cy, cz), w in zip(centres, widths):
        out += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * w * w))
    rng = np.random.default_rng(seed)
    out += 0.02 * rng.standard_normal(shape_zyx)
    return (100 * out).astype(np.float32)


@pytest.fixture(scope="session")
def pair(tmp_path_factory):
    """fixed.nii.gz and moving.nii.gz: 30 x 26 x 22 voxels (x, y, z) of 1.0 x 1.2 x 1.5 mm on an
    oblique grid; moving is fixed through a small known affine."""
    d = tmp_path_factory.mktemp("pair")
    shape = (22, 26, 30)  # z, y, x
    array = blobs(shape, [(12, 12, 10), (19, 15, 12), (15, 8, 8), (9, 17, 14)], [4, 3, 2.5, 3])
    fixed = gigareg.Image(array, spacing=(1.0, 1.2, 1.5), origin=(-12.0, 20.0, 5.0),
                          direction=oblique_direction())
    centre = fixed.index_to_physical(np.array(fixed.size) / 2.0)
    rot = oblique_direction((0.05, -0.04, 0.06))
    affine = np.eye(4)
    affine[:3, :3] = rot
    affine[:3, 3] = centre - rot @ centre + np.array([1.5, -1.0, 0.8])
    moving = gigareg.apply_transforms(fixed, fixed, [affine])
    paths = {"fixed": str(d / "fixed.nii.gz"), "moving": str(d / "moving.nii.gz"), "dir": d}
    gigareg.write_image(fixed, paths["fixed"])
    gigareg.write_image(moving, paths["moving"])
    return paths


@pytest.fixture(scope="session")
def cli():
    """The built gigareg tool (GIGAREG_CLI from CTest, else the one on PATH)."""
    path = os.environ.get("GIGAREG_CLI") or shutil.which("gigareg")
    if not path or not os.path.exists(path):
        pytest.skip("the gigareg tool is not built (GIGAREG_CLI unset and no gigareg on PATH)")
    return path


@pytest.fixture(scope="session")
def data_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get("GIGAREG_SHARED_DATA") or os.path.join(here, "..", "..", "..", "shared", "data")
    if not os.path.isdir(path):
        pytest.skip(f"the shared data are absent ({path})")
    return path
