#!/usr/bin/env python3
"""A learning-based registration training step with gigareg's ops against plain PyTorch (issue 19).

The step: a small 3-D U-Net (VoxelMorph's layout: 4 stride-2 encoder levels of 16-32-32-32
features, a decoder with skip connections, a 3-channel displacement head) takes the fixed and
moving images and predicts a displacement in voxels; the moving image is warped by it; the loss
is -LNCC(fixed, warped) (box window of 2r + 1 voxels, clipped at the grid's edge, eps added to
varF varW: ops/loss.hpp's definition) plus lambda times the diffusion penalty (mean squared finite
differences of the displacement); backward; an Adam step.

Two implementations of the registration part (warp, LNCC, penalty and their gradients), the
network and the penalty being the same code:
  gigareg   gigareg.torch.warp and gigareg.torch.lncc_loss (fused CUDA kernels through DLPack)
  pytorch   torch.nn.functional.grid_sample (trilinear, zeros padding, align_corners=True: the same
            sampling) and the same LNCC written with separable box sums (three 1-D conv3d over the
            five stacked products, divided by the clipped window's voxel count): plain PyTorch at
            its best, not VoxelMorph's dense 9^3 convolution.
Both compute the same function; the script checks that their losses agree and that their
displacement gradients point the same way before it times anything.

Timing: CUDA events around each step after warm-up, median of repeats; peak memory:
torch.cuda.max_memory_allocated over the timed steps (after warm-up, so cuDNN's autotuning
workspaces are not counted), above what was allocated before them (the network's parameters and
Adam's state are allocated by then, so the peak is activations, gradients and temporaries). Prints one table; --json writes the numbers.

    python3 benchmarks/train_step_torch.py --pair ../shared/data/brain_labelled   # real brains
    python3 benchmarks/train_step_torch.py --shape 160 192 224      # synthetic images of that size

--pair DIR takes VoxelMorph's subject A (vxm_subjA_scan_vol_seg.npz, key vol) as the fixed image
and the Learn2Reg 2019 tutorial's subject B (l2r2019_subjB_vol.npz, key vol_data) as the moving
one: T1 brains in one affinely aligned 160 x 192 x 224 space, intensities in [0, 1], arrays
indexed [x, y, z] (transposed here to the (D, H, W) = (z, y, x) layout).
"""
import argparse
import json
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------------------------------------
# The network (the same for both variants)

class Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1)

    def forward(self, x):
        return F.leaky_relu(self.conv(x), 0.2)


class UNet(nn.Module):
    """VoxelMorph-style U-Net: encoder 16-32-32-32 (stride 2), decoder 32-32-32-32 with skips,
    then 32-16-16 at full resolution and a 3-channel head initialised near zero."""

    def __init__(self, enc=(16, 32, 32, 32), dec=(32, 32, 32, 32), full=(32, 16, 16)):
        super().__init__()
        self.down = nn.ModuleList()
        cin = 2
        for c in enc:
            self.down.append(Block(cin, c, stride=2))
            cin = c
        self.up = nn.ModuleList()
        skips = list(enc[:-1][::-1]) + [2]
        for c, s in zip(dec, skips):
            self.up.append(Block(cin, c))
            cin = c + s
        self.full = nn.ModuleList()
        for c in full:
            self.full.append(Block(cin, c))
            cin = c
        self.head = nn.Conv3d(cin, 3, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, fixed, moving):
        x = torch.cat([fixed, moving], dim=1)
        skips = [x]
        for d in self.down:
            x = d(x)
            skips.append(x)
        skips.pop()
        for u in self.up:
            x = u(x)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = torch.cat([x, skips.pop()], dim=1)
        for b in self.full:
            x = b(x)
        return self.head(x)  # (N, 3, D, H, W): x, y, z displacements in voxels


def diffusion_penalty(flow):
    dz = flow[:, :, 1:] - flow[:, :, :-1]
    dy = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    dx = flow[:, :, :, :, 1:] - flow[:, :, :, :, :-1]
    return (dz.square().mean() + dy.square().mean() + dx.square().mean()) / 3


# ------------------------------------------------------------------------------------------------
# The registration part, twice

def gigareg_loss(gt, radius, eps):
    def loss(fixed, moving, flow):
        warped = gt.warp(moving, flow, padding="zeros")
        return gt.lncc_loss(fixed, warped, radius=radius, eps=eps)
    return loss


def identity_grid(shape, device):
    d, h, w = shape
    zz, yy, xx = torch.meshgrid(torch.arange(d, device=device, dtype=torch.float32),
                                torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xx, yy, zz])[None]  # (1, 3, D, H, W), channels x, y, z


def box_sum(x, radius):
    """Separable box sums of each channel over (2r + 1)^3 windows, zero outside the grid."""
    c = x.shape[1]
    k = 2 * radius + 1
    for shape, pad in (((k, 1, 1), (radius, 0, 0)), ((1, k, 1), (0, radius, 0)), ((1, 1, k), (0, 0, radius))):
        w = x.new_ones((c, 1) + shape)
        x = F.conv3d(x, w, padding=pad, groups=c)
    return x


def pytorch_loss(shape, device, radius, eps):
    base = identity_grid(shape, device)
    d, h, w = shape
    scale = torch.tensor([2 / (w - 1), 2 / (h - 1), 2 / (d - 1)], device=device).view(1, 3, 1, 1, 1)
    count = box_sum(torch.ones((1, 1) + tuple(shape), device=device), radius)  # clipped window sizes

    def loss(fixed, moving, flow):
        grid = ((base + flow) * scale - 1).permute(0, 2, 3, 4, 1)
        warped = F.grid_sample(moving, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        f, m = fixed, warped
        sums = box_sum(torch.cat([f, m, f * f, m * m, f * m], dim=1), radius) / count
        mf, mm, ff, wm, fm = sums.unbind(1)
        var_f = ff - mf * mf
        var_m = wm - mm * mm
        cross = fm - mf * mm
        return -(cross * cross / (var_f * var_m + eps)).mean()
    return loss


# ------------------------------------------------------------------------------------------------

def measure(fn, warmup, repeats):
    """(median, min, max) milliseconds of fn over `repeats` after `warmup` calls, and the peak of
    allocated memory above what was allocated before the timed calls. The peak is taken over the
    timed calls only: the warm-up's first calls include cuDNN's autotuning (cudnn.benchmark), whose
    trial workspaces would otherwise land on whichever variant runs first."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return (statistics.median(times), min(times), max(times)), torch.cuda.max_memory_allocated() - base


def images(shape, device, seed):
    """A smooth random fixed image and a moving image displaced from it by a smooth field."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    low = torch.rand((1, 1) + tuple(s // 4 for s in shape), generator=g)
    fixed = F.interpolate(low, size=shape, mode="trilinear", align_corners=True).to(device)
    flow = 3 * F.interpolate(torch.rand((1, 3) + tuple(s // 16 for s in shape), generator=g) - 0.5,
                             size=shape, mode="trilinear", align_corners=True).to(device)
    return fixed.contiguous(), flow.contiguous()


def brain_pair(folder, device):
    import os
    import numpy as np
    fixed = np.load(os.path.join(folder, "vxm_subjA_scan_vol_seg.npz"))["vol"]
    moving = np.load(os.path.join(folder, "l2r2019_subjB_vol.npz"))["vol_data"]
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.T, dtype=np.float32))[None, None].to(device)
    return as_tensor(fixed), as_tensor(moving)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[160, 192, 224], metavar=("D", "H", "W"))
    ap.add_argument("--pair", metavar="DIR", help="the brain pair of this folder (see above) instead of synthetic images")
    ap.add_argument("--radius", type=int, default=4, help="LNCC window radius (window 2r + 1)")
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--weight", type=float, default=0.01, help="diffusion penalty weight")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--profile", action="store_true",
                    help="also print the GPU kernels of each variant's registration part (torch.profiler)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("train_step_torch: needs a CUDA device")
    import gigareg.torch as gt

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    if args.pair:
        fixed, moving = brain_pair(args.pair, device)
        shape = tuple(fixed.shape[2:])
        _, true_flow = images(shape, device, 0)  # only the probe displacement of the check below
    else:
        shape = tuple(args.shape)
        fixed, true_flow = images(shape, device, 0)
        moving = gt.warp(fixed, true_flow, padding="border")  # fixed seen through a smooth warp
    variants = {"gigareg": gigareg_loss(gt, args.radius, args.eps),
                "pytorch": pytorch_loss(shape, device, args.radius, args.eps)}

    # The same function: losses and displacement gradients agree before anything is timed.
    probe = (0.5 * true_flow).requires_grad_(True)
    checks = {}
    for name, loss in variants.items():
        value = loss(fixed, moving, probe)
        (grad,) = torch.autograd.grad(value, probe)
        checks[name] = (float(value.detach()), grad)
    lg, gg = checks["gigareg"]
    lp, gp = checks["pytorch"]
    cosine = float((gg * gp).sum() / (gg.norm() * gp.norm()))
    print(f"same function: loss gigareg {lg:.6f} pytorch {lp:.6f} (diff {abs(lg - lp):.2e}); "
          f"gradient cosine {cosine:.6f}, norm ratio {float(gg.norm() / gp.norm()):.4f}")
    if abs(lg - lp) > 1e-3 * abs(lp) or cosine < 0.999:
        sys.exit("train_step_torch: the two variants do not compute the same loss; not timing them")

    results = {"shape": list(shape), "data": args.pair or "synthetic", "radius": args.radius, "device": torch.cuda.get_device_name(),
               "torch": torch.__version__, "check": {"loss_gigareg": lg, "loss_pytorch": lp, "cosine": cosine}}
    for name, loss in variants.items():
        # The registration part alone: warp, LNCC, penalty and their gradients w.r.t. the flow.
        flow = (0.5 * true_flow).requires_grad_(True)

        def registration_part():
            flow.grad = None
            total = loss(fixed, moving, flow) + args.weight * diffusion_penalty(flow)
            total.backward()

        reg, reg_mem = measure(registration_part, args.warmup, args.repeats)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    registration_part()
                torch.cuda.synchronize()
            print(f"--- {name}: GPU kernels of 5 registration parts")
            averages = prof.key_averages()
            try:
                print(averages.table(sort_by="device_time_total", row_limit=12, max_name_column_width=60))
            except (AttributeError, KeyError):  # PyTorch before 2.4 names it cuda_time_total
                print(averages.table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))

        # The whole training step.
        torch.manual_seed(1)
        net = UNet().to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            flow = net(fixed, moving)
            total = loss(fixed, moving, flow) + args.weight * diffusion_penalty(flow)
            total.backward()
            opt.step()

        whole, whole_mem = measure(step, args.warmup, args.repeats)
        results[name] = {"registration_ms": reg, "registration_peak_bytes": reg_mem,
                         "step_ms": whole, "step_peak_bytes": whole_mem}
        del net, opt

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, shape {shape} (D, H, W), batch 1, "
          f"LNCC window {2 * args.radius + 1}, median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'':10} {'registration part (ms)':>24} {'peak (MiB)':>11} {'whole step (ms)':>17} {'peak (MiB)':>11}")
    for name in variants:
        r = results[name]
        print(f"{name:10} {r['registration_ms'][0]:>24.2f} {r['registration_peak_bytes'] / 2**20:>11.0f} "
              f"{r['step_ms'][0]:>17.2f} {r['step_peak_bytes'] / 2**20:>11.0f}")
    g, p = results["gigareg"], results["pytorch"]
    print(f"speed-up: registration part {p['registration_ms'][0] / g['registration_ms'][0]:.2f}x, "
          f"whole step {p['step_ms'][0] / g['step_ms'][0]:.2f}x; peak memory of the step "
          f"{g['step_peak_bytes'] / p['step_peak_bytes']:.2f} of plain PyTorch's")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
