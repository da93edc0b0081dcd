"""gigareg.torch on CUDA tensors: every op against the same op on the CPU (the reference, itself
checked against PyTorch and finite differences in test_torch.py) on fresh random inputs, the
gradients through autograd, the current stream, and the errors a CUDA user can meet. Skips
without a CUDA device, or when gigareg or PyTorch was built without CUDA."""
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
gt = pytest.importorskip("gigareg.torch")
from gigareg import _gigareg  # noqa: E402

if not (torch.cuda.is_available() and _gigareg.cuda_built and _gigareg.cuda_available()):
    pytest.skip("no CUDA device for PyTorch and gigareg (the CPU ops are tested in test_torch.py)",
                allow_module_level=True)

SHAPE = (21, 26, 33)  # D, H, W all different: an axis mix-up changes the result


def smooth_volume(shape, seed, scale=10.0):
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(shape, generator=g, dtype=torch.float64)
    k = torch.ones(1, 1, 3, 3, 3, dtype=torch.float64) / 27
    for _ in range(2):
        v = torch.nn.functional.conv3d(v[None, None], k, padding=1)[0, 0]
    return (scale * v).float()


def random_flow(shape, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return (scale * (2 * torch.rand((3,) + shape, generator=g) - 1)).float()


def rel(a, b):
    """max |a - b| / max |b|, on the host."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def both(fn, *tensors):
    """fn on CPU tensors and on their CUDA copies: (cpu result, cuda result)."""
    return fn(*tensors), fn(*[t.cuda() for t in tensors])


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_warp_matches_the_cpu(padding, interpolation):
    m, u = smooth_volume(SHAPE, 1), random_flow(SHAPE, 3.0, 2)
    cpu, gpu = both(lambda a, b: gt.warp(a, b, interpolation=interpolation, padding=padding), m, u)
    assert gpu.is_cuda and gpu.dtype == torch.float32 and gpu.shape == cpu.shape
    assert rel(gpu, cpu) < 1e-5


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_gradient_for_the_displacement_matches_the_cpu(padding):
    m, u, w = smooth_volume(SHAPE, 3), random_flow(SHAPE, 2.0, 4), smooth_volume(SHAPE, 5)

    def grad_u(m, u, w):
        u = u.clone().requires_grad_(True)
        (gt.warp(m, u, padding=padding) * w).sum().backward()
        return u.grad

    cpu, gpu = both(grad_u, m, u, w)
    assert gpu.is_cuda and rel(gpu, cpu) < 1e-4


@pytest.mark.parametrize("kind", ["mse", "lncc", "mattes"])
def test_losses_and_their_gradients_match_the_cpu(kind):
    f, w = smooth_volume(SHAPE, 6), smooth_volume(SHAPE, 7)
    mask = (smooth_volume(SHAPE, 8, 1.0) > 0.45).float()
    fn = {"mse": lambda a, b, k: gt.mse_loss(a, b, mask=k),
          "lncc": lambda a, b, k: gt.lncc_loss(a, b, radius=2, mask=k),
          "mattes": lambda a, b, k: gt.mattes_mi_loss(a, b, bins=24, mask=k, ranges=(0.0, 10.0, 0.0, 10.0))}[kind]

    def value_and_grad(f, w, k):
        w = w.clone().requires_grad_(True)
        loss = fn(f, w, k)
        loss.backward()
        return loss.detach(), w.grad

    (lc, gc), (lg, gg) = both(value_and_grad, f, w, mask)
    assert lg.is_cuda and lg.dim() == 0, "the loss stays on the device (no host sync)"
    assert float(lg) == pytest.approx(float(lc), rel=1e-5, abs=1e-7)
    # Normwise, as the library's CUDA tests: the CUDA LNCC sums in float (ops/loss.hpp).
    assert float((gg.cpu() - gc).norm() / gc.norm()) < 1e-4


def test_gaussian_smooth_and_its_transpose_are_bitwise_the_cpu():
    x = smooth_volume(SHAPE, 9) + torch.randn(SHAPE, generator=torch.Generator().manual_seed(10))
    y = torch.randn(SHAPE, generator=torch.Generator().manual_seed(11))
    sigma = (1.0, 2.5, 0.7)

    def forward_and_backward(x, y):
        x = x.clone().requires_grad_(True)
        out = gt.gaussian_smooth(x, sigma)
        (out * y).sum().backward()
        return out.detach(), x.grad

    (oc, gc), (og, gg) = both(forward_and_backward, x, y)
    assert torch.equal(og.cpu(), oc)
    assert torch.equal(gg.cpu(), gc)  # the adjoint: the same gather formula on both backends


def test_compose_on_cuda_and_the_moving_gradient_it_cannot_give():
    u, v = random_flow(SHAPE, 1.5, 12), random_flow(SHAPE, 1.5, 13)
    cpu, gpu = both(gt.compose, u, v)
    assert rel(gpu, cpu) < 1e-5
    # v's gradient flows (through the warp's displacement and the sum) ...
    vv = v.cuda().requires_grad_(True)
    gt.compose(u.cuda(), vv).square().sum().backward()
    vc = v.clone().requires_grad_(True)
    gt.compose(u, vc).square().sum().backward()
    assert rel(vv.grad, vc.grad) < 1e-4
    # ... u's would need the moving image's gradient, which CUDA does not offer: a clear error.
    uu = u.cuda().requires_grad_(True)
    with pytest.raises(RuntimeError, match="CPU only"):
        gt.compose(uu, v.cuda()).sum().backward()


def test_ops_run_on_the_current_stream():
    m, u, f = smooth_volume(SHAPE, 14).cuda(), random_flow(SHAPE, 2.0, 15).cuda(), smooth_volume(SHAPE, 16).cuda()
    expected = gt.lncc_loss(f, gt.warp(m, u))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = gt.lncc_loss(f, gt.warp(m, u))
    torch.cuda.current_stream().wait_stream(stream)
    assert torch.equal(got, expected)


def test_a_training_step_on_cuda_follows_finite_differences():
    """d/du of LNCC(fixed, warp(moving, u)) on the GPU against a central difference along a smooth
    random direction (float32 evaluations, float64 arithmetic). Smooth images and direction: the
    trilinear warp has kinks at every knot, and a white-noise direction over noisy images makes
    the difference quotient measure the kinks (0.85-1.4 x the derivative at h = 1e-2), not the
    gradient; here it agrees within 0.4% on the CPU, whose gradient the CUDA one equals to 1e-4."""
    def smooth(seed, passes, scale):
        v = smooth_volume(SHAPE, seed, 1.0).double()
        k = torch.ones(1, 1, 3, 3, 3, dtype=torch.float64) / 27
        for _ in range(passes):
            v = torch.nn.functional.conv3d(v[None, None], k, padding=1)[0, 0]
        return (scale * (v - v.min()) / (v.max() - v.min())).float()

    f, m = smooth(17, 4, 10.0).cuda(), smooth(18, 4, 10.0).cuda()
    u = random_flow(SHAPE, 1.0, 19).cuda().requires_grad_(True)
    loss = gt.lncc_loss(f, gt.warp(m, u, padding="border"))
    (g,) = torch.autograd.grad(loss, u)
    d = torch.stack([smooth(30 + c, 2, 2.0) - 1.0 for c in range(3)]).cuda()
    h = 3e-3
    with torch.no_grad():
        fd = (float(gt.lncc_loss(f, gt.warp(m, u + h * d, padding="border"))) -
              float(gt.lncc_loss(f, gt.warp(m, u - h * d, padding="border")))) / (2 * h)
    analytic = float((g.double() * d.double()).sum())
    assert analytic == pytest.approx(fd, rel=1e-2), (analytic, fd)


def test_cuda_bad_input_raises_clear_errors():
    v, u = torch.zeros(SHAPE), torch.zeros((3,) + SHAPE)
    with pytest.raises(ValueError, match="one device per op"):
        gt.warp(v.cuda(), u)
    with pytest.raises(ValueError, match="one device per op"):
        gt.lncc_loss(v, v.cuda())
    with pytest.raises(RuntimeError, match="CPU only"):
        gt.warp(v.cuda().requires_grad_(True), u.cuda()).sum().backward()
    with pytest.raises(TypeError, match="float32"):
        gt.warp(v.cuda().half(), u.cuda())
    # Non-contiguous CUDA tensors are made contiguous, as on the CPU.
    big = smooth_volume((SHAPE[0], SHAPE[1], 2 * SHAPE[2]), 21).cuda()
    assert torch.equal(gt.warp(big[:, :, ::2], u.cuda()), big[:, :, ::2].contiguous())
