"""gigareg's ops as PyTorch autograd functions (CPU and CUDA tensors).

    import torch, gigareg.torch as gt
    warped = gt.warp(moving, flow)                  # moving (N, 1, D, H, W), flow (N, 3, D, H, W)
    loss = gt.lncc_loss(fixed, warped) + 0.1 * smoothness(flow)
    loss.backward()                                 # gradients w.r.t. flow (and moving)

Conventions (docs/python.md, "PyTorch"):
- Volumes are float32 tensors (D, H, W) = (z, y, x), or batched (N, C, D, H, W); the last axis
  is x. Displacements are (3, D, H, W) or (N, 3, D, H, W) whose channels are the x, y, z
  displacements IN THAT ORDER (channel 0 moves along W, the last axis), in voxels, or in mm when
  `spacing` (sx, sy, sz) is given. This is the library's layout; VoxelMorph-style flows whose
  channels follow (D, H, W) must be flipped with flow.flip(1).
- warp(m, u)(z, y, x) = m at (x + u_x, y + u_y, z + u_z), trilinear, with zero padding (taps
  outside the grid read 0: grid_sample's padding_mode="zeros", align_corners=True) or border
  padding (coordinates clamped to the grid).
- Losses are minimised and averaged as the registration does (ops/loss.hpp): mean squares,
  -mean LNCC over the window centres (box window of radius r, eps added to varF varW), -MI
  (Mattes: cubic B-spline Parzen window on the warped image, box on the fixed, `bins` bins over
  the given intensity ranges, which are constants for the gradient). Batched inputs give the mean
  over the batch. Gradients flow to the warped (moving) argument; the fixed image is data.
- CPU or CUDA tensors, all of one op on one device; CUDA ops run on the tensors' device and the
  current stream, reach the kernels through DLPack without a copy, and never wait for the GPU
  (the loss stays a tensor on the device). On CUDA the moving image's gradient (warp with a moving
  image that requires grad, and so compose's gradient for u) is not offered: it would need float
  atomics, whose sums are not deterministic; the CPU computes it. Inputs of another dtype raise
  TypeError (no silent conversion); non-contiguous tensors are made contiguous (a copy).
"""

import contextlib

import torch

from . import _gigareg

__all__ = ["warp", "compose", "gaussian_smooth", "mse_loss", "lncc_loss", "mattes_mi_loss"]


def _spacing(spacing):
    s = tuple(float(v) for v in spacing)
    if len(s) != 3:
        raise ValueError(f"spacing: three values (sx, sy, sz), got {len(s)}")
    return s


def _tensor(t, name):
    """A float32 C-contiguous tensor over the same memory (a copy only if it was not contiguous),
    detached: the ops read it through DLPack."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{name}: gigareg.torch runs on CPU and CUDA tensors; got a tensor on {t.device}")
    if t.dtype != torch.float32:
        raise TypeError(f"{name}: expected torch.float32, got {t.dtype} (convert with .float())")
    return t.detach().contiguous()


def _on(t):
    """The context in which an op on t's device runs: its CUDA device made current."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _stream(t):
    """The stream the op's kernels go on: the current stream of t's device (0 on the CPU)."""
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0


def _stack(items):
    """torch.stack, without its copy for a single item (batch 1, one channel: the common case)."""
    return items[0].unsqueeze(0) if len(items) == 1 else torch.stack(items)


def _batched(t, channels, name):
    """(N, C, D, H, W) view of a (D, H, W) volume or (3, D, H, W) field, or of a batched one."""
    unbatched = 3 if channels is None else 4
    if t.dim() == unbatched:
        return t.unsqueeze(0) if channels is not None else t.unsqueeze(0).unsqueeze(0), True
    if t.dim() == 5:
        if channels is not None and t.shape[1] != channels:
            raise ValueError(f"{name}: expected {channels} channels (x, y, z displacements), got {t.shape[1]}")
        return t, False
    expected = "(D, H, W) or (N, C, D, H, W)" if channels is None else "(3, D, H, W) or (N, 3, D, H, W)"
    raise ValueError(f"{name}: expected shape {expected}, got {tuple(t.shape)}")


class _Warp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, moving, displacement, spacing, interpolation, padding):
        m = _tensor(moving, "moving")
        u = _tensor(displacement, "displacement")
        out = torch.empty_like(m)
        with _on(m):
            _gigareg.op_warp(m, u, out, spacing, interpolation, padding, _stream(m))
        ctx.save_for_backward(m, u)
        ctx.options = (spacing, interpolation, padding)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        m, u = ctx.saved_tensors
        spacing, interpolation, padding = ctx.options
        want_u, want_m = ctx.needs_input_grad[1], ctx.needs_input_grad[0]
        if interpolation == "nearest":
            if want_m:
                raise RuntimeError("warp: the moving image's gradient needs interpolation='linear'")
            # Piecewise constant in the displacement: its derivative is 0 almost everywhere.
            return None, torch.zeros_like(u) if want_u else None, None, None, None
        if want_m and m.is_cuda:
            raise RuntimeError("warp: the moving image's gradient is computed on the CPU only (on CUDA it would "
                               "need float atomics, which are not deterministic); detach the moving image, or "
                               "warp on the CPU")
        g = _tensor(grad_out, "grad_out")
        d_u = torch.empty_like(u) if want_u else None
        d_m = torch.zeros_like(m) if want_m else None  # accumulated into
        with _on(g):
            _gigareg.op_warp_backward(m, u, g, d_u, d_m, spacing, padding, _stream(g))
        return d_m, d_u, None, None, None


def warp(moving, displacement, spacing=(1.0, 1.0, 1.0), interpolation="linear", padding="zeros"):
    """The moving volume(s) sampled at x + u(x): (D, H, W) with (3, D, H, W), or (N, C, D, H, W)
    with (N, 3, D, H, W) (each channel of a batch item warped by its displacement)."""
    spacing = _spacing(spacing)
    if interpolation not in ("linear", "nearest"):
        raise ValueError(f"interpolation: 'linear' or 'nearest', got {interpolation!r}")
    if padding not in ("zeros", "border"):
        raise ValueError(f"padding: 'zeros' or 'border', got {padding!r}")
    m, single = _batched(moving, None, "moving")
    u, _ = _batched(displacement, 3, "displacement")
    if m.shape[0] != u.shape[0] or m.shape[2:] != u.shape[2:]:
        raise ValueError(f"moving {tuple(moving.shape)} and displacement {tuple(displacement.shape)}: "
                         "the batch size and the grid (D, H, W) must agree")
    out = _stack([_stack([_Warp.apply(m[n, c], u[n], spacing, interpolation, padding)
                                    for c in range(m.shape[1])]) for n in range(m.shape[0])])
    return out[0, 0] if single else out


def compose(u, v, spacing=(1.0, 1.0, 1.0), padding="zeros"):
    """The displacement of x -> (x + v(x)) + u(x + v(x)): v first, then u (ITK's composer with
    padding="zeros": no displacement outside u's grid). Shapes as warp's displacement."""
    ub, single = _batched(u, 3, "u")
    vb, _ = _batched(v, 3, "v")
    w = vb + warp(ub, vb, spacing, "linear", padding)
    return w[0] if single else w


def _smooth(x, sigma, adjoint, name):
    x = _tensor(x, name)
    out = torch.empty_like(x)
    with _on(x):
        _gigareg.op_gaussian_smooth(x, out, sigma, adjoint, _stream(x))
    return out


class _Smooth(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, sigma):
        ctx.sigma = sigma
        return _smooth(x, sigma, False, "input")

    @staticmethod
    def backward(ctx, grad_out):
        # The replicate boundary makes the smoothing unsymmetric: its transpose, not itself.
        return _smooth(grad_out, ctx.sigma, True, "grad_out"), None


def gaussian_smooth(x, sigma, spacing=None):
    """Each channel smoothed by a Gaussian (the library's: taps to 3 sigma, normalised; replicate
    boundary), as the registration smooths its fields. `sigma`: one value or (sx, sy, sz), in
    voxels, or in mm when `spacing` is given. Shapes: (D, H, W), (3, D, H, W) or (N, C, D, H, W)."""
    s = (float(sigma),) * 3 if isinstance(sigma, (int, float)) else _spacing(sigma)
    if spacing is not None:
        s = tuple(a / b for a, b in zip(s, _spacing(spacing)))
    if x.dim() == 3:
        return _Smooth.apply(x, s)
    if x.dim() == 4:
        return _stack([_Smooth.apply(x[c], s) for c in range(x.shape[0])])
    if x.dim() == 5:
        return _stack([_stack([_Smooth.apply(x[n, c], s) for c in range(x.shape[1])])
                            for n in range(x.shape[0])])
    raise ValueError(f"input: expected (D, H, W), (C, D, H, W) or (N, C, D, H, W), got {tuple(x.shape)}")


class _Loss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fixed, warped, mask, kind, spacing, radius, eps, bins, ranges):
        if fixed.requires_grad:
            raise ValueError(f"{kind}: the fixed image is data (no gradient is computed for it); "
                             "pass fixed.detach()")
        f = _tensor(fixed, "fixed")
        w = _tensor(warped, "warped")
        k = None if mask is None else _tensor(mask, "mask")
        want_grad = ctx.needs_input_grad[1]
        # {S, C} per z slice (one row for Mattes), summed here on the tensors' device: the loss is
        # S / C and the gradient (dS/dW) / C, and nothing waits for the GPU.
        partials = torch.empty((1 if kind == "mattes" else w.shape[0], 2), dtype=torch.float64, device=w.device)
        grad = torch.empty_like(w) if want_grad else None
        with _on(w):
            _gigareg.op_loss(kind, f, w, k, partials, grad, spacing, radius, eps, bins, ranges, _stream(w))
        s, c = partials.sum(0)
        counted = c > 0
        c = torch.where(counted, c, torch.ones_like(c))  # nothing counted: the loss is 0, dS/dW is 0
        if want_grad:
            ctx.save_for_backward(grad, c)
        return torch.where(counted, s / c, torch.zeros_like(s)).to(warped.dtype)

    @staticmethod
    def backward(ctx, grad_loss):
        grad, c = ctx.saved_tensors
        return None, grad * (grad_loss / c).to(grad.dtype), None, None, None, None, None, None, None


def _loss(kind, fixed, warped, mask, spacing=(1.0, 1.0, 1.0), radius=2, eps=1e-5, bins=32, ranges=None):
    spacing = _spacing(spacing)
    f, _ = _batched(fixed, None, "fixed")
    w, _ = _batched(warped, None, "warped")
    if f.shape != w.shape:
        raise ValueError(f"fixed {tuple(fixed.shape)} and warped {tuple(warped.shape)} must have the same shape")
    k = None
    if mask is not None:
        k, _ = _batched(mask, None, "mask")
        if k.shape != f.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must have the fixed image's shape")
    terms = []
    for n in range(f.shape[0]):
        for c in range(f.shape[1]):
            r = ranges
            if kind == "mattes" and r is None:
                r = (float(f[n, c].min()), float(f[n, c].max()), float(w[n, c].min()), float(w[n, c].max()))
            terms.append(_Loss.apply(f[n, c], w[n, c], None if k is None else k[n, c], kind, spacing,
                                     int(radius), float(eps), int(bins), None if r is None else tuple(map(float, r))))
    return terms[0] if len(terms) == 1 else torch.stack(terms).mean()


def mse_loss(fixed, warped, mask=None):
    """Mean of (warped - fixed)^2 over the (masked) voxels."""
    return _loss("mse", fixed, warped, mask)


def lncc_loss(fixed, warped, radius=2, eps=1e-5, mask=None):
    """-mean local normalised cross-correlation, box window of 2 radius + 1 voxels (clipped at the
    grid's edge), over the (masked) window centres; eps is added to varF varW (intensity^4)."""
    return _loss("lncc", fixed, warped, mask, radius=radius, eps=eps)


def mattes_mi_loss(fixed, warped, bins=32, mask=None, ranges=None):
    """-Mattes mutual information. `ranges` = (fixed_min, fixed_max, warped_min, warped_max);
    by default each item's own minimum and maximum (constants for the gradient; on CUDA reading
    them waits for the GPU: pass ranges to avoid it)."""
    return _loss("mattes", fixed, warped, mask, bins=bins, ranges=ranges)
