"""gigareg.torch: the ops as autograd functions on CPU tensors (test_torch_cuda.py: CUDA), against PyTorch's own grid_sample
and plain-PyTorch losses, gradients against central finite differences (the ops are float32, so
torch.autograd.gradcheck's double precision does not apply: directional derivatives in float64
arithmetic over float32 evaluations, with tolerances to match)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (Debian: python3-torch)")
gt = pytest.importorskip("gigareg.torch")

torch.manual_seed(0)


def smooth_volume(shape, seed):
    """A smooth random volume (D, H, W): noise blurred by repeated averaging."""
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(shape, generator=g, dtype=torch.float64)
    k = torch.ones(1, 1, 3, 3, 3, dtype=torch.float64) / 27
    for _ in range(3):
        v = torch.nn.functional.conv3d(v[None, None], k, padding=1)[0, 0]
    return (10 * v).float()


def random_flow(shape, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return (scale * (2 * torch.rand((3,) + shape, generator=g) - 1)).float()


def directional_check(f, x, seed, h=1e-2, rtol=2e-3):
    """<grad f(x), d> against (f(x + h d) - f(x - h d)) / 2h for a random direction d."""
    x = x.detach().clone().requires_grad_(True)
    value = f(x)
    (grad,) = torch.autograd.grad(value, x)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fd = (float(f(x + h * d)) - float(f(x - h * d))) / (2 * h)
    analytic = float((grad.double() * d.double()).sum())
    assert analytic == pytest.approx(fd, rel=rtol, abs=1e-5 * max(1.0, abs(fd))), (analytic, fd)
    return analytic


def coordinate_check(f, x, count, seed, h=1e-3):
    """Partial derivatives at `count` random elements of x (first and last ones included) against
    central differences: precise where a directional difference over all elements sums too much
    float32 rounding."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x)
    g = torch.Generator().manual_seed(seed)
    flat = [0, x.numel() - 1] + torch.randint(0, x.numel(), (count,), generator=g).tolist()
    for i in flat:
        e = torch.zeros(x.numel())
        e[i] = h
        e = e.view(x.shape)
        with torch.no_grad():
            fd = (float(f(x + e)) - float(f(x - e))) / (2 * h)
        assert float(grad.flatten()[i]) == pytest.approx(fd, rel=2e-3, abs=2e-3), (i, float(grad.flatten()[i]), fd)


def grid_sample_warp(moving, flow, padding):
    """The reference: torch's grid_sample with align_corners=True, flow channels (x, y, z) in voxels."""
    d, h, w = moving.shape
    zz, yy, xx = torch.meshgrid(torch.arange(d), torch.arange(h), torch.arange(w), indexing="ij")
    x = xx + flow[0].double()
    y = yy + flow[1].double()
    z = zz + flow[2].double()
    grid = torch.stack([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1, 2 * z / (d - 1) - 1], dim=-1)
    return torch.nn.functional.grid_sample(moving.double()[None, None], grid[None], mode="bilinear",
                                           padding_mode=padding, align_corners=True)[0, 0]


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_matches_grid_sample_and_keeps_the_axis_order(padding):
    shape = (9, 11, 13)  # D, H, W all different: an axis mix-up changes the result
    moving = smooth_volume(shape, 1)
    flow = random_flow(shape, 2.5, 2)  # reaches outside the grid near the faces
    ours = gt.warp(moving, flow, padding=padding)
    ref = grid_sample_warp(moving, flow, padding)
    assert ours.shape == moving.shape and ours.dtype == torch.float32
    assert float((ours.double() - ref).abs().max()) < 1e-4 * float(moving.abs().max())
    # A pure shift along x (channel 0) moves the content along the last axis (W).
    shift = torch.zeros((3,) + shape)
    shift[0] = 1.0
    shifted = gt.warp(moving, shift)
    assert torch.equal(shifted[:, :, :-1], moving[:, :, 1:])


def test_warp_batched_nearest_and_spacing():
    moving = torch.stack([smooth_volume((6, 7, 8), s) for s in (3, 4)])[:, None]  # (2, 1, D, H, W)
    flow = torch.stack([random_flow((6, 7, 8), 1.5, s) for s in (5, 6)])
    out = gt.warp(moving, flow)
    assert out.shape == moving.shape
    for n in range(2):
        assert torch.equal(out[n, 0], gt.warp(moving[n, 0], flow[n]))
    # Displacements in mm: the same warp with the flow scaled by the spacing.
    spacing = (0.5, 2.0, 1.5)
    mm = flow * torch.tensor(spacing).view(1, 3, 1, 1, 1)
    assert float((gt.warp(moving, mm, spacing=spacing) - out).abs().max()) < 1e-5 * float(moving.abs().max())
    # Nearest: values of the moving image only.
    near = gt.warp(moving[0, 0], flow[0], interpolation="nearest", padding="border")
    assert set(near.flatten().tolist()) <= set(moving[0, 0].flatten().tolist())


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_gradients_match_finite_differences(padding):
    shape = (7, 8, 9)
    moving = smooth_volume(shape, 7)
    flow = random_flow(shape, 1.2, 8)
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(9))
    # Each gradient against central differences (h small against the distance to the
    # interpolant's knots: random positions rarely cross one).
    directional_check(lambda x: (gt.warp(moving, x, padding=padding).double() * weights).sum(), flow, 10, h=1e-3)
    directional_check(lambda x: (gt.warp(x, flow, padding=padding).double() * weights).sum(), moving, 11)
    # Both in one backward pass: the same gradients as one at a time.
    m = moving.clone().requires_grad_(True)
    u = flow.clone().requires_grad_(True)
    (gt.warp(m, u, padding=padding) * weights).sum().backward()
    u_only = flow.clone().requires_grad_(True)
    (gt.warp(moving, u_only, padding=padding) * weights).sum().backward()
    assert torch.equal(u.grad, u_only.grad) and float(m.grad.abs().sum()) > 0


def test_compose_is_v_then_u_and_differentiable():
    shape = (8, 9, 10)
    u = random_flow(shape, 0.8, 12)
    v = random_flow(shape, 0.8, 13)
    w = gt.compose(u, v)
    # x -> x + v(x) -> then u there: a point moved by w lands where u moves v's image of it.
    expected = v.double() + torch.stack([grid_sample_warp(u[c], v, "zeros") for c in range(3)])
    assert float((w.double() - expected).abs().max()) < 1e-5
    coordinate_check(lambda x: (gt.compose(u, x).double() ** 2).sum(), v, 24, 14)
    coordinate_check(lambda x: (gt.compose(x, v).double() ** 2).sum(), u, 24, 15)


def lncc_reference(f, w, r, eps):
    """-mean LNCC with a box window clipped at the grid's edge (window means over in-grid voxels)."""
    f = f.double()[None, None]
    w = w.double()[None, None]
    k = torch.ones(1, 1, 2 * r + 1, 2 * r + 1, 2 * r + 1, dtype=torch.float64)
    conv = lambda x: torch.nn.functional.conv3d(x, k, padding=r)  # noqa: E731
    n = conv(torch.ones_like(f))
    mf, mw = conv(f) / n, conv(w) / n
    cross = conv(f * w) / n - mf * mw
    vf = conv(f * f) / n - mf * mf
    vw = conv(w * w) / n - mw * mw
    return -(cross * cross / (vf * vw + eps)).mean()


def test_losses_match_plain_pytorch():
    shape = (10, 11, 12)
    f = smooth_volume(shape, 20)
    w = smooth_volume(shape, 21)
    assert float(gt.mse_loss(f, w)) == pytest.approx(float(((w.double() - f.double()) ** 2).mean()), rel=1e-6)
    for r in (1, 2, 3):
        assert float(gt.lncc_loss(f, w, radius=r)) == pytest.approx(float(lncc_reference(f, w, r, 1e-5)), rel=1e-5)
    # Identical images: MI is the entropy, LNCC -1 (where the windows have variance), MSE 0.
    assert float(gt.lncc_loss(f, f, eps=1e-12)) == pytest.approx(-1.0, abs=1e-4)
    assert float(gt.mse_loss(f, f)) == 0.0
    assert float(gt.mattes_mi_loss(f, f)) < float(gt.mattes_mi_loss(f, w)) < 0
    # A mask: the loss over the masked voxels only.
    mask = torch.zeros(shape)
    mask[2:8, 3:9, 4:10] = 1
    sel = mask > 0.5
    assert float(gt.mse_loss(f, w, mask=mask)) == pytest.approx(
        float(((w.double() - f.double())[sel] ** 2).mean()), rel=1e-6)


@pytest.mark.parametrize("kind", ["mse", "lncc", "mattes"])
def test_loss_gradients_match_finite_differences(kind):
    shape = (8, 9, 10)
    f = smooth_volume(shape, 30)
    w = smooth_volume(shape, 31)
    if kind == "mse":
        loss = lambda x: gt.mse_loss(f, x).double()  # noqa: E731
    elif kind == "lncc":
        loss = lambda x: gt.lncc_loss(f, x, radius=2).double()  # noqa: E731
    else:
        ranges = (float(f.min()), float(f.max()), float(w.min()) - 1, float(w.max()) + 1)
        loss = lambda x: gt.mattes_mi_loss(f, x, bins=16, ranges=ranges).double()  # noqa: E731
    directional_check(loss, w, 40, h=1e-2 if kind != "mattes" else 1e-3, rtol=5e-3)
    # Batched: the mean over the batch, each item's gradient its own divided by the batch size.
    fb = torch.stack([f, f])[:, None]
    wb = torch.stack([w, smooth_volume(shape, 32)])[:, None].requires_grad_(True)
    fn = {"mse": gt.mse_loss, "lncc": gt.lncc_loss,
          "mattes": lambda a, b: gt.mattes_mi_loss(a, b, bins=16, ranges=ranges)}[kind]
    fn(fb, wb).backward()
    w1 = w.clone().requires_grad_(True)
    fn(f, w1).backward()
    assert torch.allclose(wb.grad[0, 0] * 2, w1.grad, rtol=1e-6, atol=1e-12)


def test_a_displacement_learned_through_warp_and_lncc_recovers_a_shift():
    """Training in miniature: a translation (3 parameters broadcast to a displacement field)
    optimised with Adam through warp and LNCC recovers the shift between the images (moving =
    fixed moved by (1.5, -0.75, 0.5) voxels)."""
    shape = (14, 16, 18)
    fixed = smooth_volume(shape, 50)
    shift = torch.tensor([1.5, -0.75, 0.5])
    moving = gt.warp(fixed, -shift.view(3, 1, 1, 1).expand((3,) + shape).contiguous(), padding="border")
    # Only centres away from the faces count: there the border padding replicated the edge.
    mask = torch.zeros(shape)
    mask[4:-4, 4:-4, 4:-4] = 1
    t = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([t], lr=0.05)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        flow = t.view(3, 1, 1, 1).expand((3,) + shape)
        loss = gt.lncc_loss(fixed, gt.warp(moving, flow, padding="border"), radius=2, mask=mask)
        losses.append(float(loss))
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0] - 0.1
    assert torch.allclose(t.detach(), shift, atol=0.1), t


def test_bad_input_raises_clear_errors():
    v = torch.zeros(4, 5, 6)
    u = torch.zeros(3, 4, 5, 6)
    with pytest.raises(TypeError, match="expected torch.float32, got torch.float64"):
        gt.warp(v.double(), u)
    with pytest.raises(ValueError, match="expected 3 channels"):
        gt.warp(v[None, None], torch.zeros(1, 2, 4, 5, 6))
    with pytest.raises(ValueError, match="must agree"):
        gt.warp(v, torch.zeros(3, 4, 5, 7))
    with pytest.raises(ValueError, match="padding"):
        gt.warp(v, u, padding="reflection")
    with pytest.raises(ValueError, match="spacing"):
        gt.warp(v, u, spacing=(1.0, float("nan"), 1.0))
    with pytest.raises(ValueError, match="same shape"):
        gt.mse_loss(v, torch.zeros(4, 5, 7))
    with pytest.raises(ValueError, match="fixed image is data"):
        gt.mse_loss(v.clone().requires_grad_(True), v)
    with pytest.raises(ValueError, match="radius"):
        gt.lncc_loss(v, v, radius=0)
    with pytest.raises(ValueError, match="bins"):
        gt.mattes_mi_loss(v, v + 1, bins=2)
    with pytest.raises(RuntimeError, match="interpolation='linear'"):
        gt.warp(v.clone().requires_grad_(True), u, interpolation="nearest").sum().backward()
    # Non-contiguous tensors are accepted (made contiguous) and give the contiguous result.
    big = smooth_volume((6, 7, 16), 60)
    assert torch.equal(gt.warp(big[:, :, ::2], u.new_zeros(3, 6, 7, 8)), big[:, :, ::2].contiguous())
    with pytest.raises(TypeError, match="CPU and CUDA tensors"):
        gt.warp(v.to("meta"), u.to("meta"))


def test_gaussian_smooth_matches_its_definition_and_its_gradient_is_the_transpose():
    shape = (7, 9, 11)
    x = smooth_volume(shape, 70) + torch.randn(shape, generator=torch.Generator().manual_seed(71))
    sigma = (1.0, 0.5, 1.5)  # x, y, z
    ours = gt.gaussian_smooth(x, sigma)
    # The definition: separable sampled Gaussians to 3 sigma, normalised, replicate boundary.
    ref = x.double()
    for axis, s in zip((2, 1, 0), sigma):  # x is the last array axis
        r = int(np.ceil(3 * s))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / s) ** 2)
        k /= k.sum()
        moved = ref.movedim(axis, -1)
        padded = torch.cat([moved[..., :1].expand(*moved.shape[:-1], r), moved,
                            moved[..., -1:].expand(*moved.shape[:-1], r)], dim=-1)
        ref = padded.unfold(-1, 2 * r + 1, 1).matmul(k).movedim(-1, axis)
    assert float((ours.double() - ref).abs().max()) < 1e-5 * float(x.abs().max())
    # Gradients: the transpose of the smoothing (not the smoothing itself at the edges).
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(72))
    directional_check(lambda v: (gt.gaussian_smooth(v, sigma).double() * weights).sum(), x, 73)
    xr = x.clone().requires_grad_(True)
    (gt.gaussian_smooth(xr, sigma) * weights).sum().backward()
    assert not torch.allclose(xr.grad, gt.gaussian_smooth(weights, sigma))
    # Fields and batches: each channel on its own; sigma in mm with a spacing.
    field = torch.stack([x, 2 * x, -x])
    out = gt.gaussian_smooth(field[None], 2.0, spacing=(2.0, 2.0, 2.0))
    assert torch.equal(out[0, 1], gt.gaussian_smooth(2 * x, 1.0))
    with pytest.raises(ValueError, match="sigma"):
        gt.gaussian_smooth(x, -1.0)
