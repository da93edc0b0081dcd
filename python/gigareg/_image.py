"""Images: a NumPy array with its geometry, read and written through the library.

Axis order (the one thing to remember): ``image.array`` is indexed ``[z, y, x]``. The library
stores volumes x-fastest, which is NumPy's C order of a ``(nz, ny, nx)`` array, so the array *is*
the library's buffer and nothing is copied or permuted. This is also the order of
``SimpleITK.GetArrayFromImage`` and ``itk.array_from_image``. nibabel indexes ``[x, y, z]``:
:func:`gigareg.from_nibabel` / :func:`gigareg.to_nibabel` transpose (a view, no copy).

Geometry is ITK's, in LPS millimetres and in (x, y, z) order: ``spacing`` and ``origin`` are
3-vectors, ``direction`` is a 3x3 matrix whose *columns* are the physical directions of the index
axes x, y, z, so that the voxel at ``array[k, j, i]`` is at
``origin + direction @ (spacing * (i, j, k))``.

A displacement field is an Image whose array has shape ``(3, nz, ny, nx)``: the x, y and z
components (mm, LPS) as three planes, the library's layout and the order of NIfTI vector images
on disk.
"""

import math

import numpy as np

from . import _gigareg

# NumPy dtype -> the pixel type the library writes (label maps stay integers).
_PIXEL_TYPES = {
    np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8",
    np.dtype(np.uint16): "uint16", np.dtype(np.int16): "int16",
    np.dtype(np.uint32): "uint32", np.dtype(np.int32): "int32",
    np.dtype(np.uint64): "uint64", np.dtype(np.int64): "int64",
    np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
    np.dtype(np.bool_): "uint8",
}


def _vector3(value, name):
    try:
        v = tuple(float(x) for x in value)
    except TypeError:
        raise TypeError(f"{name}: expected 3 numbers (x, y, z), got {value!r}") from None
    if len(v) != 3:
        raise ValueError(f"{name}: expected 3 numbers (x, y, z), got {len(v)}")
    if not all(math.isfinite(x) for x in v):
        raise ValueError(f"{name}: every value must be finite, got {v}")
    return v


def _matrix3(value):
    if value is None:
        return np.eye(3)
    m = np.array(value, dtype=np.float64)
    if m.shape == (9,):
        m = m.reshape(3, 3)
    if m.shape != (3, 3):
        raise ValueError(f"direction: expected a 3x3 matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("direction: every value must be finite")
    if abs(np.linalg.det(m)) < 1e-12:
        raise ValueError("direction: the matrix is singular")
    return m


class Image:
    """A scalar image (array ``[z, y, x]``) or displacement field (``[3, z, y, x]``) with geometry.

    ``Image(array, spacing, origin, direction)`` keeps ``array`` itself when it is float32 and
    C-contiguous (no copy); any other real dtype or memory order is converted to a float32 C-order
    copy, and ``pixel_type`` remembers the original dtype so that :func:`write_image` writes a
    label map back as integers. Complex, object or string arrays are refused.
    """

    def __init__(self, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None,
                 pixel_type=None):
        a = np.asarray(array)
        if a.dtype not in _PIXEL_TYPES:
            raise TypeError(f"image values must be real numbers (ints, floats or bool), got dtype {a.dtype}")
        if a.ndim == 4 and a.shape[0] != 3:
            raise ValueError(f"a displacement field has shape (3, z, y, x); got {a.shape}")
        if a.ndim not in (3, 4):
            raise ValueError(f"an image array has 3 axes (z, y, x), or 4 (3, z, y, x) for a "
                             f"displacement field; got shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"the image is empty (shape {a.shape})")
        self.pixel_type = pixel_type or _PIXEL_TYPES[a.dtype]
        # Zero-copy when the layout allows; otherwise one explicit copy into the library's layout.
        self.array = np.ascontiguousarray(a, dtype=np.float32)
        self.spacing = _vector3(spacing, "spacing")
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing: every value must be positive, got {self.spacing}")
        self.origin = _vector3(origin, "origin")
        self.direction = _matrix3(direction)

    # ---- geometry -------------------------------------------------------------------------
    @property
    def is_field(self):
        """True for a displacement field (array of shape (3, z, y, x))."""
        return self.array.ndim == 4

    @property
    def size(self):
        """Voxels along x, y, z (ITK's order; the reverse of the array's last three axes)."""
        nz, ny, nx = self.array.shape[-3:]
        return (nx, ny, nz)

    @property
    def affine(self):
        """The 4x4 map from the index (i, j, k) = (x, y, z) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        m[:3, 3] = self.origin
        return m

    def index_to_physical(self, index):
        """LPS point (mm) of a continuous index given in (x, y, z) order."""
        return self.affine[:3, :3] @ np.asarray(index, dtype=np.float64) + np.asarray(self.origin)

    def same_grid(self, other, tolerance=1e-6):
        """Same size, spacing, origin and direction (within `tolerance`)."""
        return (self.size == other.size
                and np.allclose(self.spacing, other.spacing, atol=tolerance)
                and np.allclose(self.origin, other.origin, atol=tolerance)
                and np.allclose(self.direction, other.direction, atol=tolerance))

    def with_array(self, array, pixel_type=None):
        """A new Image with this one's geometry and another array of the same grid."""
        a = np.asarray(array)
        if a.shape[-3:] != self.array.shape[-3:]:
            raise ValueError(f"the array's grid {a.shape[-3:]} is not this image's {self.array.shape[-3:]} (z, y, x)")
        return Image(a, self.spacing, self.origin, self.direction, pixel_type)

    def _arg(self):
        """(array, spacing, origin, direction) as the extension module takes them."""
        return (self.array, self.spacing, self.origin, tuple(self.direction.reshape(-1)))

    def _geometry(self):
        return self.spacing, self.origin, tuple(self.direction.reshape(-1))

    def __repr__(self):
        kind = "displacement field" if self.is_field else f"image ({self.pixel_type})"
        return (f"gigareg.Image({kind}, size (x, y, z) {self.size}, spacing {self.spacing}, "
                f"origin {self.origin})")


def _from_tuple(t, pixel_type=None):
    array, spacing, origin, direction = t[:4]
    return Image(array, spacing, origin, np.asarray(direction).reshape(3, 3), pixel_type)


def read_image(path):
    """Reads a scalar image (every format the library reads: NIfTI .nii/.nii.gz, NRRD, MetaImage,
    PNG, ...) as float32 voxels; ``pixel_type`` is the type in the file."""
    t = _gigareg.read_image(str(path))
    return _from_tuple(t, pixel_type=t[4])


def write_image(image, path, pixel_type=None, round=False):
    """Writes a scalar Image (or a displacement field, as a vector image) to `path`.

    The pixel type is `pixel_type`, else the image's (float32 for computed images, the file's type
    for images read from files). Integer types need integer values unless ``round=True`` (round
    to nearest and clamp)."""
    if not isinstance(image, Image):
        raise TypeError(f"write_image takes a gigareg.Image, got {type(image).__name__}")
    if image.is_field:
        _gigareg.write_displacement_field(str(path), image.array, *image._geometry())
    else:
        _gigareg.write_image(str(path), image.array, *image._geometry(),
                             pixel_type=pixel_type or image.pixel_type, round=round)


def read_displacement_field(path):
    """Reads a displacement field (an ANTs warp): array (3, z, y, x), mm, LPS."""
    return _from_tuple(_gigareg.read_displacement_field(str(path)))


def write_displacement_field(field, path):
    """Writes a displacement field as ANTs writes its warps (float32 vector NIfTI)."""
    write_image(field, path)
