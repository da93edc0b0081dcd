"""Registration from Python: in memory with a preset, or with `gigareg register`'s command line.

Both return a :class:`RegistrationResult`: the transform ``T(x) = A(x + u(x))`` that maps a
fixed-space point to a moving-space point (the affine ``A`` as a 4x4 LPS matrix and the
displacement field ``u`` on the fixed grid), its inverse warp, the warped moving image and the
report of each level.
"""

import logging
import os
import sys

import numpy as np

from . import _gigareg
from ._image import Image, read_displacement_field, read_image

_log = logging.getLogger("gigareg")
# The library's log levels (gigareg/log.hpp) -> Python's.
_LOG_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}

_INTERPOLATIONS = ("linear", "nearest", "label")


def _check_image(image, name):
    if not isinstance(image, Image):
        raise TypeError(f"{name}: expected a gigareg.Image (gigareg.read_image, gigareg.Image(array, ...)), "
                        f"got {type(image).__name__}")
    if image.is_field:
        raise ValueError(f"{name}: expected a scalar image, got a displacement field")
    return image


class RegistrationResult:
    """What a registration computed: ``affine`` (4x4, fixed -> moving, LPS mm), ``center`` (the
    point ITK's transform files write it about), ``warp`` and ``inverse_warp`` (displacement
    field Images on the fixed grid, or None without a deformable stage), ``warped`` (the moving
    image on the fixed grid, or None), ``levels`` (one dict per stage and level: iterations,
    losses, seconds), ``backend`` and ``seconds``."""

    def __init__(self, affine, center=(0.0, 0.0, 0.0), warp=None, inverse_warp=None, warped=None,
                 levels=(), backend="", seconds=0.0, inverse_residual_mm=0.0, fixed_grid=None):
        self.affine = np.asarray(affine, dtype=np.float64).reshape(4, 4)
        self.center = tuple(float(c) for c in center)
        self.warp = warp
        self.inverse_warp = inverse_warp
        self.warped = warped
        self.levels = list(levels)
        self.backend = backend
        self.seconds = seconds
        self.inverse_residual_mm = inverse_residual_mm
        # The grid the transform's fixed space is sampled on (the default reference of apply).
        self.fixed_grid = fixed_grid or warp or warped

    @classmethod
    def _from_dict(cls, d, fixed_grid=None):
        def image(t):
            return None if t is None else Image(t[0], t[1], t[2], np.asarray(t[3]).reshape(3, 3))
        return cls(d["affine"], d["center"], image(d["warp"]), image(d["inverse_warp"]), image(d["warped"]),
                   d["levels"], d["backend"], d["seconds"], d["inverse_residual_mm"], fixed_grid)

    @classmethod
    def from_files(cls, prefix, warped=None, warp_extension=".nii.gz", fixed=None):
        """Loads ``prefix0GenericAffine.mat`` and, when they exist, ``prefix1Warp`` and
        ``prefix1InverseWarp`` (and the warped image ``warped``): what antsRegistration and
        ``gigareg register`` write. `fixed` (an Image, optional) is the default reference grid of
        apply(); without it the warp's or the warped image's grid is."""
        prefix = str(prefix)
        matrix, center = _gigareg.read_affine(prefix + "0GenericAffine.mat")
        def field(name):
            path = prefix + name + warp_extension
            return read_displacement_field(path) if os.path.exists(path) else None
        return cls(np.asarray(matrix).reshape(4, 4), center, field("1Warp"), field("1InverseWarp"),
                   read_image(warped) if warped else None, fixed_grid=fixed)

    # ---- applying the transform -----------------------------------------------------------
    def _transforms(self):
        """antsApplyTransforms' list for T: the warp first, then the affine."""
        transforms = []
        if self.warp is not None:
            transforms.append((None, self.warp._arg()))
        transforms.append((tuple(self.affine.reshape(-1)), None))
        return transforms

    def apply(self, moving, reference=None, interpolation="linear", device="cpu"):
        """Resamples `moving` (an Image in moving space) onto `reference` (default: the fixed
        grid) through T, as ``gigareg apply -t prefix1Warp -t prefix0GenericAffine.mat`` does.

        interpolation: "linear", "nearest" or "label" (label maps: a label per voxel, never a
        blend; the output keeps the input's pixel type), or ANTs' names."""
        return _apply(moving, reference or self.fixed_grid, self._transforms(), interpolation, device)

    def apply_inverse(self, fixed, reference, interpolation="linear", device="cpu"):
        """Resamples `fixed` onto `reference` (a moving-space grid) through the inverse: the
        affine's inverse, then the inverse warp (needs ``inverse_warp`` after a deformable stage)."""
        if self.warp is not None and self.inverse_warp is None:
            raise ValueError("this result has no inverse warp (compute_inverse was off)")
        transforms = [(tuple(np.linalg.inv(self.affine).reshape(-1)), None)]
        if self.inverse_warp is not None:
            transforms.append((None, self.inverse_warp._arg()))
        return _apply(fixed, reference, transforms, interpolation, device)

    def jacobian(self):
        """det(I + du/dx) of the warp on the fixed grid (an Image), as ``gigareg jacobian``."""
        if self.warp is None:
            raise ValueError("this result has no displacement field (no deformable stage)")
        return jacobian(self.warp)

    def write(self, prefix, warped=None, warp_extension=".nii.gz"):
        """Writes what antsRegistration writes: ``prefix0GenericAffine.mat``, ``prefix1Warp`` and
        ``prefix1InverseWarp`` (deformable stages) and the warped image at `warped` when given.
        Returns the paths written."""
        def arg(image):
            return None if image is None else image._arg()
        return _gigareg.write_registration_outputs(
            tuple(self.affine.reshape(-1)), self.center, arg(self.warp), arg(self.inverse_warp),
            arg(self.warped), str(prefix), str(warped) if warped else "", warp_extension)

    def __repr__(self):
        parts = ["affine"] + [n for n in ("warp", "inverse_warp", "warped") if getattr(self, n) is not None]
        return f"gigareg.RegistrationResult({', '.join(parts)}; {len(self.levels)} levels, {self.seconds:.2f} s)"


def _apply(image, reference, transforms, interpolation, device):
    _check_image(image, "image")
    if reference is None:
        raise ValueError("reference: give the grid to resample onto (an Image)")
    if not isinstance(reference, Image):
        raise TypeError(f"reference: expected a gigareg.Image, got {type(reference).__name__}")
    array = _gigareg.apply_transforms(image._arg(), reference.size, *reference._geometry(),
                                      transforms, interpolation, device)
    keeps_type = interpolation.lower() not in ("linear",)
    return reference.with_array(array, pixel_type=image.pixel_type if keeps_type else "float32")


def apply_transforms(image, reference, transforms, interpolation="linear", device="cpu"):
    """antsApplyTransforms in memory: resamples `image` onto `reference` through `transforms`,
    applied to a reference point in list order (so [warp, affine] gives A(x + u(x))). Each entry is
    a 4x4 affine (array) or a displacement field Image."""
    entries = []
    for t in transforms:
        if isinstance(t, Image):
            if not t.is_field:
                raise ValueError("a transform Image must be a displacement field (3, z, y, x)")
            entries.append((None, t._arg()))
        else:
            m = np.asarray(t, dtype=np.float64)
            if m.shape != (4, 4):
                raise ValueError(f"an affine transform is a 4x4 matrix, got shape {m.shape}")
            entries.append((tuple(m.reshape(-1)), None))
    return _apply(image, reference, entries, interpolation, device)


def jacobian(field):
    """det(I + du/dx) of a displacement field Image, as an Image on its grid."""
    if not isinstance(field, Image) or not field.is_field:
        raise TypeError("jacobian takes a displacement field Image (array of shape (3, z, y, x))")
    det, _ = _gigareg.jacobian(field._arg())
    return field.with_array(det)


def register(fixed, moving, preset="syn", device="auto", fixed_mask=None, moving_mask=None,
             compute_inverse=True, progress=None):
    """Registers `moving` onto `fixed` (gigareg.Image) with a preset: "rigid", "affine",
    "greedy" or "syn" (the presets of ``gigareg register --preset``). Masks are Images on their
    image's grid (a voxel counts where the mask > 0.5). `progress`, when given, is called after
    every iteration with a dict (stage, transform, level, levels, iteration, loss, convergence).
    The GIL is released while the library works; Ctrl-C stops the registration.

    For every other setting use :func:`ants_registration` with the command line."""
    _check_image(fixed, "fixed")
    _check_image(moving, "moving")
    masks = []
    for mask, image, name in ((fixed_mask, fixed, "fixed_mask"), (moving_mask, moving, "moving_mask")):
        if mask is not None:
            _check_image(mask, name)
            if not mask.same_grid(image):
                raise ValueError(f"{name}: the mask must be on its image's grid")
            masks.append(mask._arg())
        else:
            masks.append(None)
    if progress is not None and not callable(progress):
        raise TypeError("progress: expected a callable or None")
    d = _gigareg.register_images(fixed._arg(), moving._arg(), preset, device, masks[0], masks[1],
                                 compute_inverse, progress)
    return RegistrationResult._from_dict(d, fixed_grid=fixed)


def _words(args):
    if isinstance(args, str):
        words = _gigareg.split_command_line(args)
        if words[:2] == ["gigareg", "register"]:
            words = words[2:]
        return words
    words = [os.fspath(a) if isinstance(a, os.PathLike) else a for a in args]
    if not all(isinstance(w, str) for w in words):
        raise TypeError("args: expected a command line (str) or a list of strings")
    return words


def ants_registration(args, progress=None, log=None, summary=None):
    """Runs ``gigareg register`` with exactly its arguments and writes the same files.

    `args` is one string (split as a POSIX shell splits it; a leading "gigareg register" is
    skipped) or a list of words, e.g. ``["-d", "3", "-o", "[out/reg_,out/warped.nii.gz]", ...]``
    or ``"--fixed f.nii.gz --moving m.nii.gz -o out/ --preset syn"``.

    The tool's own code runs (the same options, including -v, --qc, --no-qc and
    --write-composite-transform, and the same files: byte for byte). Where the tool prints,
    Python is called instead when given: `progress(report)` for every iteration (instead of the
    progress display on stderr), `log(level, message)` for the library's messages (default: the
    ``gigareg`` logger), `summary(text)` for the closing summary (default: sys.stdout).
    A bad option raises ValueError with the tool's message; a failure raises ValueError,
    OSError, MemoryError or RuntimeError with the message the tool prints after "gigareg: error:".

    Returns the RegistrationResult read back from the files written (``None`` after --help)."""
    words = _words(args)
    if log is None:
        def log(level, message):
            _log.log(_LOG_LEVELS.get(level, logging.WARNING), message)
    if summary is None:
        def summary(text):
            sys.stdout.write(text)
            sys.stdout.flush()
    if progress is not None and not callable(progress):
        raise TypeError("progress: expected a callable or None")
    ran = _gigareg.run_tool(["register"] + words, progress, log, summary)
    if ran is None:  # --help
        return None
    code, files = ran
    if code != 0:
        raise RuntimeError(f"gigareg register ended with exit code {code}")
    return RegistrationResult.from_files(files["output_prefix"], files["warped"] or None,
                                         files["warp_extension"])
