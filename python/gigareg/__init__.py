"""gigareg: registration of 3-D medical images up to gigavoxel size, from Python.

    import gigareg
    fixed = gigareg.read_image("fixed.nii.gz")
    moving = gigareg.read_image("moving.nii.gz")
    result = gigareg.register(fixed, moving, preset="syn")
    gigareg.write_image(result.warped, "warped.nii.gz")

Arrays are indexed [z, y, x] (the library's x-fastest layout in C order, as SimpleITK); geometry
is ITK's LPS in (x, y, z) order. docs/python.md has the details and a worked example.
"""

from . import _gigareg
from ._image import (Image, read_displacement_field, read_image, write_displacement_field,
                     write_image)
from ._interop import from_itk, from_nibabel, from_sitk, to_itk, to_nibabel, to_sitk
from ._registration import (RegistrationResult, ants_registration, apply_transforms, jacobian,
                            register)

__version__ = _gigareg.__version__
cuda_built = _gigareg.cuda_built
cuda_available = _gigareg.cuda_available


def read_affine(path):
    """(4x4 fixed -> moving matrix in LPS mm, centre) of an ITK affine transform file (.mat as
    ANTs writes prefix0GenericAffine.mat, .txt/.tfm, .h5)."""
    import numpy as np
    matrix, center = _gigareg.read_affine(str(path))
    return np.asarray(matrix).reshape(4, 4), tuple(center)


def write_affine(matrix, path, center=(0.0, 0.0, 0.0)):
    """Writes a 4x4 affine (fixed -> moving, LPS mm) as ITK's AffineTransform_double_3_3 about
    `center` (.mat as ANTs writes it, .txt/.tfm or .h5)."""
    import numpy as np
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"an affine transform is a 4x4 matrix, got shape {m.shape}")
    _gigareg.write_affine(str(path), tuple(m.reshape(-1)), tuple(float(c) for c in center))


__all__ = [
    "Image", "read_image", "write_image", "read_displacement_field", "write_displacement_field",
    "read_affine", "write_affine",
    "from_sitk", "to_sitk", "from_itk", "to_itk", "from_nibabel", "to_nibabel",
    "register", "ants_registration", "RegistrationResult", "apply_transforms", "jacobian",
    "cuda_built", "cuda_available",
]
