"""Conversions between gigareg.Image and SimpleITK, ITK and nibabel images.

Each package is imported only when its conversion is called; none is needed by gigareg itself.
SimpleITK and ITK use gigareg's own conventions (LPS, array [z, y, x]); nibabel uses RAS and
indexes its arrays [x, y, z], so its affine is flipped in x and y and its array transposed.
"""

import numpy as np

from ._image import Image

# nibabel's world is RAS, ITK's (and gigareg's) LPS: x and y change sign.
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"this conversion needs the '{module}' package (pip install {module})") from None


# ---- SimpleITK --------------------------------------------------------------------------------

def from_sitk(sitk_image):
    """A gigareg.Image from a SimpleITK image (scalar, or a 3-vector displacement field)."""
    sitk = _require("SimpleITK")
    if sitk_image.GetDimension() != 3:
        raise ValueError(f"a 3-D image is needed, got {sitk_image.GetDimension()}-D")
    # The view shares SimpleITK's buffer (array [z, y, x] or [z, y, x, c]); Image copies only if
    # the type is not float32, and a field's interleaved vectors become planes (one copy).
    view = sitk.GetArrayViewFromImage(sitk_image)
    if view.ndim == 4:
        if view.shape[3] != 3:
            raise ValueError(f"a vector image of 3 components is needed, got {view.shape[3]}")
        array = np.moveaxis(view, 3, 0)
    else:
        array = view
    image = Image(array, sitk_image.GetSpacing(), sitk_image.GetOrigin(),
                  np.array(sitk_image.GetDirection()).reshape(3, 3))
    if image.array.base is not None and np.shares_memory(image.array, view):
        image._owner = sitk_image  # the array is SimpleITK's buffer: keep it alive
    return image


def to_sitk(image):
    """A SimpleITK image (copy) with the same voxels and geometry (a vector image for a field)."""
    sitk = _require("SimpleITK")
    if image.is_field:
        out = sitk.GetImageFromArray(np.moveaxis(image.array, 0, 3), isVector=True)
    else:
        out = sitk.GetImageFromArray(image.array)
    out.SetSpacing(image.spacing)
    out.SetOrigin(image.origin)
    out.SetDirection(tuple(image.direction.reshape(-1)))
    return out


# ---- ITK --------------------------------------------------------------------------------------

def from_itk(itk_image):
    """A gigareg.Image from an itk.Image (scalar or 3-vector pixels)."""
    itk = _require("itk")
    view = itk.array_view_from_image(itk_image)
    array = np.moveaxis(view, 3, 0) if view.ndim == 4 else view
    direction = itk.array_from_matrix(itk_image.GetDirection())
    image = Image(array, tuple(itk_image.GetSpacing()), tuple(itk_image.GetOrigin()), direction)
    if np.shares_memory(image.array, view):
        image._owner = itk_image
    return image


def to_itk(image):
    """An itk.Image (copy) with the same voxels and geometry (vector pixels for a field)."""
    itk = _require("itk")
    if image.is_field:
        out = itk.image_from_array(np.ascontiguousarray(np.moveaxis(image.array, 0, 3)), is_vector=True)
    else:
        out = itk.image_from_array(image.array.copy())
    out.SetSpacing(image.spacing)
    out.SetOrigin(image.origin)
    out.SetDirection(itk.matrix_from_array(np.ascontiguousarray(image.direction)))
    return out


# ---- nibabel ----------------------------------------------------------------------------------

def from_nibabel(nib_image):
    """A gigareg.Image from a nibabel image (its affine, RAS, becomes LPS geometry).

    nibabel's array is [x, y, z] (Fortran order for NIfTI files), so its transpose is gigareg's
    [z, y, x] in C order: no copy when the data are float32. The affine must have orthogonal
    columns (no shear), as ITK's geometry does."""
    data = np.asanyarray(nib_image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 5 and data.shape[3] == 1 and data.shape[4] == 3:  # NIfTI vector image
        array = np.moveaxis(data[:, :, :, 0, :], 3, 0).transpose(0, 3, 2, 1)
    elif data.ndim == 3:
        array = data.T
    else:
        raise ValueError(f"a 3-D image (or a vector image of 3 components) is needed, got shape {data.shape}")
    lps = _LPS_FROM_RAS @ np.asarray(nib_image.affine, dtype=np.float64)
    m = lps[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    direction = m / spacing[None, :]
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError("the affine has shear (non-orthogonal columns), which an ITK geometry cannot hold")
    # A vector image's components stay as written: LPS millimetres, the ITK / ANTs convention.
    return Image(array, spacing, lps[:3, 3], direction)


def to_nibabel(image):
    """A nibabel.Nifti1Image (a view of the array, no copy) with the RAS affine of the geometry.

    A displacement field becomes a 5-D vector image (x, y, z, 1, 3) with intent vector, its
    components LPS millimetres as ANTs and ITK write them."""
    nib = _require("nibabel")
    affine = _LPS_FROM_RAS @ image.affine
    if image.is_field:
        data = np.moveaxis(image.array.transpose(0, 3, 2, 1), 0, 3)[:, :, :, None, :]
        out = nib.Nifti1Image(data, affine)
        out.header.set_intent("vector")
    else:
        out = nib.Nifti1Image(image.array.T, affine)
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    return out
