"""Images from and to files, NumPy, nibabel and SimpleITK: the axis order and the geometry."""
import numpy as np
import pytest

import gigareg
from conftest import oblique_direction

try:
    import nibabel
except ImportError:  # pragma: no cover
    nibabel = None
try:
    import SimpleITK as sitk
except ImportError:
    sitk = None

needs_nibabel = pytest.mark.skipif(nibabel is None, reason="nibabel is not installed")
needs_sitk = pytest.mark.skipif(sitk is None, reason="SimpleITK is not installed")

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def oblique_ras_affine():
    """An oblique, anisotropic RAS affine (spacing 0.8, 1.3, 2.1 mm; no shear)."""
    a = np.eye(4)
    a[:3, :3] = oblique_direction((0.25, 0.1, -0.3)) * np.array([0.8, 1.3, 2.1])[None, :]
    a[:3, 3] = [-30.5, 12.25, 7.0]
    return a


def ramp_xyz(nx=7, ny=5, nz=4):
    """nibabel-ordered data [x, y, z] whose value names its index: 100 x + 10 y + z."""
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    return (100 * x + 10 * y + z).astype(np.int16)


@needs_nibabel
@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_read_matches_nibabel_axis_order_and_geometry(tmp_path, ext):
    data = ramp_xyz()
    ras = oblique_ras_affine()
    img = nibabel.Nifti1Image(data, ras)
    img.set_qform(ras, code=1)
    img.set_sform(ras, code=1)
    path = str(tmp_path / ("ramp" + ext))
    nibabel.save(img, path)

    g = gigareg.read_image(path)
    assert g.pixel_type == "int16"
    assert g.array.dtype == np.float32 and g.array.flags["C_CONTIGUOUS"]
    assert g.array.shape == (4, 5, 7)  # [z, y, x]
    assert g.size == (7, 5, 4)
    # array[z, y, x] is nibabel's data[x, y, z]
    assert g.array[3, 2, 6] == 100 * 6 + 10 * 2 + 3
    np.testing.assert_array_equal(g.array, data.T)
    # geometry: the same physical point for every index, LPS = RAS with x and y negated
    np.testing.assert_allclose(g.affine, LPS_FROM_RAS @ ras, atol=1e-5)
    np.testing.assert_allclose(g.spacing, [0.8, 1.3, 2.1], rtol=1e-6)
    ijk = np.array([6.0, 2.0, 3.0])
    ras_point = ras[:3, :3] @ ijk + ras[:3, 3]
    np.testing.assert_allclose(g.index_to_physical(ijk), ras_point * [-1, -1, 1], atol=1e-4)

    # from_nibabel gives the same image (a transposed view: no copy for float32 data)
    n = gigareg.from_nibabel(nibabel.load(path))
    np.testing.assert_array_equal(n.array, g.array)
    np.testing.assert_allclose(n.affine, g.affine, atol=1e-5)


@needs_nibabel
def test_write_is_read_by_nibabel(tmp_path):
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)  # z, y, x
    direction = oblique_direction()
    g = gigareg.Image(array, spacing=(0.7, 1.1, 2.5), origin=(3.0, -4.0, 5.5), direction=direction)
    path = str(tmp_path / "out.nii.gz")
    gigareg.write_image(g, path)
    n = nibabel.load(path)
    np.testing.assert_array_equal(np.asarray(n.dataobj), array.T)
    np.testing.assert_allclose(n.affine, LPS_FROM_RAS @ g.affine, atol=1e-4)
    # and back through to_nibabel: the same data and affine, no copy
    t = gigareg.to_nibabel(g)
    assert np.shares_memory(np.asarray(t.dataobj), g.array)
    np.testing.assert_allclose(t.affine, n.affine, atol=1e-4)


def test_label_maps_keep_their_type(tmp_path):
    labels = np.zeros((4, 5, 6), dtype=np.int32)
    labels[1:3, 2:4, 1:5] = 17
    labels[0, 0, 0] = 1035
    path = str(tmp_path / "labels.nii.gz")
    gigareg.write_image(gigareg.Image(labels), path)
    back = gigareg.read_image(path)
    assert back.pixel_type == "int32"
    np.testing.assert_array_equal(back.array, labels)
    with pytest.raises(ValueError):  # non-integers into an integer type, without round=True
        gigareg.write_image(back.with_array(back.array + 0.5, pixel_type="int32"), path)
    gigareg.write_image(back.with_array(back.array + 0.25, pixel_type="int32"), path, round=True)
    np.testing.assert_array_equal(gigareg.read_image(path).array, labels)


def test_zero_copy_both_ways(tmp_path):
    a = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    img = gigareg.Image(a)
    assert img.array is a  # float32 C order: kept as it is
    path = str(tmp_path / "a.nii")
    gigareg.write_image(img, path)
    back = gigareg.read_image(path)
    assert not back.array.flags["OWNDATA"]  # the library's buffer, owned through a capsule
    np.testing.assert_array_equal(back.array, a)
    # Other dtypes and orders are one explicit copy into the library's layout, same values.
    f = np.asfortranarray(a.astype(np.float64))
    img = gigareg.Image(f)
    assert img.array.flags["C_CONTIGUOUS"] and img.pixel_type == "float64"
    np.testing.assert_array_equal(img.array, a)


def test_displacement_field_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    u = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)  # (component, z, y, x)
    field = gigareg.Image(u, spacing=(1.0, 2.0, 3.0), origin=(1, 2, 3), direction=oblique_direction())
    assert field.is_field and field.size == (6, 5, 4)
    path = str(tmp_path / "warp.nii.gz")
    gigareg.write_displacement_field(field, path)
    back = gigareg.read_displacement_field(path)
    np.testing.assert_array_equal(back.array, u)
    np.testing.assert_allclose(back.affine, field.affine, atol=1e-5)
    if nibabel is not None:
        n = nibabel.load(path)
        assert n.shape == (6, 5, 4, 1, 3)  # ANTs' vector layout: x, y, z, t, component
        data = np.asarray(n.dataobj)
        assert data[5, 1, 2, 0, 1] == u[1, 2, 1, 5]  # component y of voxel (x=5, y=1, z=2)
        via = gigareg.from_nibabel(n)
        np.testing.assert_array_equal(via.array, u)


@needs_sitk
def test_simpleitk_round_trip(tmp_path):
    array = np.random.default_rng(3).random((4, 5, 6)).astype(np.float32)
    g = gigareg.Image(array, spacing=(0.9, 1.4, 2.2), origin=(-1, 2, -3), direction=oblique_direction())
    s = gigareg.to_sitk(g)
    assert s.GetSize() == g.size
    np.testing.assert_allclose(s.GetDirection(), g.direction.reshape(-1))
    # SimpleITK's physical point of an index is gigareg's
    np.testing.assert_allclose(s.TransformContinuousIndexToPhysicalPoint((5.0, 1.0, 2.0)),
                               g.index_to_physical((5, 1, 2)), atol=1e-9)
    assert s.GetPixel(5, 1, 2) == array[2, 1, 5]
    back = gigareg.from_sitk(s)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, g.affine)
    # files: written by SimpleITK, read by gigareg, and the other way
    path = str(tmp_path / "s.nii.gz")
    sitk.WriteImage(s, path)
    r = gigareg.read_image(path)
    np.testing.assert_array_equal(r.array, array)
    np.testing.assert_allclose(r.affine, g.affine, atol=1e-5)
    path2 = str(tmp_path / "g.nii.gz")
    gigareg.write_image(g, path2)
    s2 = sitk.ReadImage(path2)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(s2), array)
    np.testing.assert_allclose(s2.GetDirection(), g.direction.reshape(-1), atol=1e-6)
    # vector images: SimpleITK's interleaved vectors are the field's planes
    u = np.random.default_rng(4).standard_normal((3, 4, 5, 6)).astype(np.float32)
    field = gigareg.Image(u, spacing=g.spacing, origin=g.origin, direction=g.direction)
    sv = gigareg.to_sitk(field)
    assert sv.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sv.GetPixel(5, 1, 2), u[:, 2, 1, 5])
    np.testing.assert_array_equal(gigareg.from_sitk(sv).array, u)


def test_real_data_with_scaling(data_dir):
    """stroke_T2 has scl_slope 2.0078: the values are the scaled ones, as nibabel gives them."""
    path = f"{data_dir}/multimodal/stroke_T2.nii.gz"
    g = gigareg.read_image(path)
    assert g.pixel_type == "float32"
    if nibabel is not None:
        n = nibabel.load(path)
        np.testing.assert_allclose(g.array, n.get_fdata(dtype=np.float32).T, rtol=1e-6)
        np.testing.assert_allclose(g.affine, LPS_FROM_RAS @ n.affine, atol=1e-4)
    if sitk is not None:
        s = sitk.ReadImage(path, sitk.sitkFloat32)
        np.testing.assert_array_equal(gigareg.from_sitk(s).array, g.array)
        np.testing.assert_allclose(gigareg.from_sitk(s).affine, g.affine, atol=1e-6)
