"""Bad input from Python: a clear exception naming the problem, never a crash."""
import numpy as np
import pytest

import gigareg
from gigareg import _gigareg

EYE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
ONE = (1.0, 1.0, 1.0)
ZERO = (0.0, 0.0, 0.0)


def image(shape=(4, 5, 6), **geometry):
    return gigareg.Image(np.ones(shape, dtype=np.float32), **geometry)


# ---- the extension module refuses what it would have to convert silently ----------------------

def test_module_refuses_wrong_dtype(tmp_path):
    with pytest.raises(TypeError, match="expected a float32 array, got float64"):
        _gigareg.write_image(str(tmp_path / "a.nii"), np.zeros((3, 3, 3)), ONE, ZERO, EYE)
    with pytest.raises(TypeError, match="got int16"):
        _gigareg.write_image(str(tmp_path / "a.nii"), np.zeros((3, 3, 3), np.int16), ONE, ZERO, EYE)


def test_module_refuses_non_contiguous_arrays(tmp_path):
    a = np.zeros((4, 6, 8), np.float32)
    for bad in (a[:, :, ::2], a.transpose(2, 1, 0), np.asfortranarray(a)):
        with pytest.raises(ValueError, match="not C-contiguous"):
            _gigareg.write_image(str(tmp_path / "a.nii"), bad, ONE, ZERO, EYE)


def test_module_refuses_wrong_shapes(tmp_path):
    with pytest.raises(ValueError, match="expected 3 axes"):
        _gigareg.write_image(str(tmp_path / "a.nii"), np.zeros((3, 3), np.float32), ONE, ZERO, EYE)
    with pytest.raises(ValueError, match="3 component planes first"):
        _gigareg.write_displacement_field(str(tmp_path / "w.nii.gz"), np.zeros((2, 3, 3, 3), np.float32),
                                          ONE, ZERO, EYE)
    with pytest.raises(ValueError, match="empty"):
        _gigareg.write_image(str(tmp_path / "a.nii"), np.zeros((0, 3, 3), np.float32), ONE, ZERO, EYE)


@pytest.mark.parametrize("spacing", [(np.nan, 1, 1), (1, 0, 1), (1, 1, -2), (np.inf, 1, 1)])
def test_module_refuses_bad_spacing(tmp_path, spacing):
    with pytest.raises(ValueError, match="spacing"):
        _gigareg.write_image(str(tmp_path / "a.nii"), np.zeros((3, 3, 3), np.float32), spacing, ZERO, EYE)


def test_module_refuses_singular_direction(tmp_path):
    with pytest.raises(ValueError, match="direction"):
        _gigareg.write_image(str(tmp_path / "a.nii"), np.zeros((3, 3, 3), np.float32), ONE, ZERO,
                             (1, 0, 0, 1, 0, 0, 0, 0, 1))


# ---- the Image class converts what is safe and refuses the rest --------------------------------

def test_image_refuses_what_is_not_an_image():
    with pytest.raises(TypeError, match="real numbers"):
        gigareg.Image(np.zeros((3, 3, 3), np.complex64))
    with pytest.raises(TypeError, match="real numbers"):
        gigareg.Image(np.array([[["a"]]]))
    with pytest.raises(ValueError, match="3 axes"):
        gigareg.Image(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="3 axes"):
        gigareg.Image(np.zeros((3, 3, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, z, y, x\)"):
        gigareg.Image(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="spacing"):
        image(spacing=(1.0, float("nan"), 1.0))
    with pytest.raises(ValueError, match="positive"):
        image(spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3 numbers"):
        image(origin=(1.0, 2.0))
    with pytest.raises(ValueError, match="singular"):
        image(direction=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        image(origin=(0.0, np.inf, 0.0))


def test_image_converts_non_contiguous_input_to_the_same_values():
    a = np.arange(4 * 6 * 8, dtype=np.float64).reshape(4, 6, 8)[:, ::2, :]
    img = gigareg.Image(a)
    assert img.array.flags["C_CONTIGUOUS"] and img.array.dtype == np.float32
    np.testing.assert_array_equal(img.array, a)


# ---- registration and resampling ------------------------------------------------------------

def test_register_refuses_bad_arguments():
    f, m = image(), image()
    with pytest.raises(TypeError, match="gigareg.Image"):
        gigareg.register(np.ones((4, 5, 6), np.float32), m)
    with pytest.raises(ValueError, match="on its image's grid"):
        gigareg.register(f, m, fixed_mask=image((4, 5, 7)))
    with pytest.raises(ValueError, match="preset"):
        gigareg.register(f, m, preset="nonesuch")
    with pytest.raises(ValueError, match="device"):
        gigareg.register(f, m, device="tpu")
    with pytest.raises(TypeError, match="callable"):
        gigareg.register(f, m, progress=3)
    with pytest.raises(ValueError, match="displacement field"):
        gigareg.register(gigareg.Image(np.zeros((3, 4, 5, 6), np.float32)), m)


def test_apply_refuses_bad_transforms():
    f = image()
    with pytest.raises(ValueError, match="4x4"):
        gigareg.apply_transforms(f, f, [np.eye(3)])
    with pytest.raises(ValueError, match="0 0 0 1"):
        gigareg.apply_transforms(f, f, [np.ones((4, 4))])
    with pytest.raises(ValueError, match="not finite"):
        bad = np.eye(4)
        bad[0, 3] = np.nan
        gigareg.apply_transforms(f, f, [bad])
    with pytest.raises(ValueError, match="displacement field"):
        gigareg.apply_transforms(f, f, [f])
    with pytest.raises(ValueError):
        gigareg.apply_transforms(f, f, [np.eye(4)], interpolation="cubic")
    with pytest.raises(TypeError, match="displacement field"):
        gigareg.jacobian(f)


def test_ants_registration_refuses_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="list of strings"):
        gigareg.ants_registration(["--fixed", 3])
    with pytest.raises(ValueError, match="unclosed|quote"):
        gigareg.ants_registration("--fixed 'a.nii.gz")
    with pytest.raises(ValueError):  # the tool's own option, checked by the tool
        gigareg.ants_registration(["-v", "7", "--fixed", "a", "--moving", "b", "-o", str(tmp_path)])
    with pytest.raises(TypeError, match="callable"):
        gigareg.ants_registration([], progress="yes")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        gigareg.read_image(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00not a gzip stream at all")
    with pytest.raises((OSError, ValueError)):
        gigareg.read_image(bad)
    with pytest.raises(ValueError):
        gigareg.write_image(image(), tmp_path / "a.unknown")
    with pytest.raises(TypeError):
        gigareg.write_image(np.zeros((3, 3, 3), np.float32), tmp_path / "a.nii")
