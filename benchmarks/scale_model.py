#!/usr/bin/env python3
"""Scale model of a sharded greedy CC iteration (docs/distributed.md, "Scale model").

Per GPU and per iteration at the finest level: compute time from the measured single-GPU
throughput, halo bytes from the halos the code exchanges (docs/distributed.md, "Ops under sharding
and their halos"; the count is checked by dist_tests' BytesPerIterationDoNotGrowWithTheSlabThickness,
which measures 71040 bytes on its 24 x 20 grid with the test's sigmas, as halo_bytes_per_face_voxel
gives), link bandwidths and latencies (assumptions, stated below), and memory from the measured
bytes per voxel plus the halo planes and the moving window. Exchanges do not overlap compute today,
so times add. Prints Markdown tables; no arguments.
  benchmarks/scale_model.py
"""
import math

# --- Measured (docs/benchmarks.md) ------------------------------------------------------------
# Finest greedy CC iteration, one GPU: H200 196.9 ms at 0.95 Gvox (4.82 Gvox/s), 58.2 ms at
# 0.28 Gvox (4.85); H100 215.5 ms at 0.95 Gvox (4.41 Gvox/s), 26.1 ms at 512^3 (5.14).
THROUGHPUT_GVOX_S = {"H100": 4.41, "H200": 4.82}
# Peak device memory of the greedy CC level: 48.0 GB at 0.95 Gvox (nvidia-smi, context included),
# 53.0 B/voxel at 512^3 (the allocator's count).
BYTES_PER_VOXEL = 53.0
MEMORY_GB = {"H100": 80.0, "H200": 141.0}

# --- The halos of one greedy CC iteration (the greedy preset: Greedy[0.25,1.5,0.5], CC radius 2) --
TRUNCATION = 3.0  # kDefaultGaussianTruncation


def halo_bytes_per_face_voxel(cc_radius=2, gradient_sigma=1.5, field_sigma=0.5, step=0.25):
    """Bytes sent through one face per iteration, per voxel of the face (each direction)."""
    warped = 2 * cc_radius * 4                                  # W: lncc_input_halo = 2r planes, float
    gradient = math.ceil(TRUNCATION * gradient_sigma) * 12      # dL/du before smoothing, 3 floats
    displacement = (math.ceil(step) + 1) * 12                   # u for the compositive update
    field = math.ceil(TRUNCATION * field_sigma) * 12            # the composed field before smoothing
    return warped + gradient + displacement + field


def halo_planes_held(cc_radius=2, gradient_sigma=1.5, field_sigma=0.5, step=0.25):
    """Bytes held per face voxel on each side of a slab (halo storage of F, mask, W, dL/du, u)."""
    return (2 * cc_radius * (4 + 4)                              # F and W
            + cc_radius * 1                                      # the texture mask
            + math.ceil(TRUNCATION * gradient_sigma) * 12
            + max(math.ceil(step) + 1, math.ceil(TRUNCATION * field_sigma)) * 12)


# --- Assumed links (per GPU, each direction; not measured here) -------------------------------
# NVLink 4 (H100/H200 SXM): 450 GB/s per direction in all; NCCL send/recv between a pair reaches
# less: 350 GB/s assumed. InfiniBand NDR, one 400 Gb/s NIC per GPU: 50 GB/s, 45 assumed.
LINKS = {"NVLink": (350e9, 15e-6), "InfiniBand": (45e9, 30e-6)}  # bandwidth B/s, latency s
# Per iteration: 4 halo exchanges (W, dL/du, u, the composed field) and 3 small gathers (loss
# slice partials, two max-norms).
MESSAGES_PER_ITERATION = 7
GPUS_PER_NODE = 8

# --- The brains: Colin27 0.5 mm upsampled per axis (gigareg phantom; benchmarks/run_multigpu.sh) --
BASE = (301, 370, 316)
VOLUMES = [("0.17 mm (3x, measured)", 3), ("0.1 mm (5x)", 5), ("0.05 mm (10x)", 10)]
MOVING_MARGIN_MM = 5.0  # largest displacement the moving window must cover beyond its 8 voxels


def grid(factor):
    return tuple(n * factor for n in BASE)


def slab_iteration(shape, p, gpu, spacing_mm):
    nx, ny, nz = shape
    n = nx * ny * nz
    compute = n / p / (THROUGHPUT_GVOX_S[gpu] * 1e9)
    if p == 1:
        return compute, 0.0, slab_memory(shape, p, spacing_mm)
    face = halo_bytes_per_face_voxel() * nx * ny
    # The slowest rank: two faces; across nodes one of them goes over InfiniBand.
    nv_bw, nv_lat = LINKS["NVLink"]
    ib_bw, ib_lat = LINKS["InfiniBand"]
    if p <= GPUS_PER_NODE:
        comm = 2 * face / nv_bw + MESSAGES_PER_ITERATION * nv_lat
    else:
        comm = face / nv_bw + face / ib_bw + MESSAGES_PER_ITERATION * ib_lat
    # A face thicker than a neighbour's slab also comes from ranks further away (same bytes).
    return compute, comm, slab_memory(shape, p, spacing_mm)


def slab_memory(shape, p, spacing_mm):
    nx, ny, nz = shape
    planes = nz / p
    window = 2 * (8 + MOVING_MARGIN_MM / spacing_mm) if p > 1 else 0  # moving window margins
    per_face_voxel = BYTES_PER_VOXEL * planes + 2 * halo_planes_held() + 4 * window
    return per_face_voxel * nx * ny / 1e9


def block_iteration(shape, p, gpu, spacing_mm):
    """3-D blocks: the px x py x pz grid of least surface; six faces per interior block."""
    best = None
    for px in range(1, p + 1):
        if p % px:
            continue
        for py in range(1, p // px + 1):
            if (p // px) % py:
                continue
            pz = p // px // py
            b = (shape[0] / px, shape[1] / py, shape[2] / pz)
            faces = [(b[1] * b[2], px), (b[0] * b[2], py), (b[0] * b[1], pz)]
            surface = sum(2 * area for area, parts in faces if parts > 1)
            if best is None or surface < best[0]:
                best = (surface, (px, py, pz), b)
    surface, layout, b = best
    n = shape[0] * shape[1] * shape[2]
    compute = n / p / (THROUGHPUT_GVOX_S[gpu] * 1e9)
    bw, lat = LINKS["NVLink"] if p <= GPUS_PER_NODE else LINKS["InfiniBand"]
    # Up to six faces through the GPU's one link (a block's neighbours may sit on other nodes);
    # the messages of one exchange go in one group, so its latency is paid once per axis.
    split_axes = sum(1 for parts in layout if parts > 1)
    comm = halo_bytes_per_face_voxel() * surface / bw + MESSAGES_PER_ITERATION * lat * split_axes
    held = b[0] * b[1] * b[2] * BYTES_PER_VOXEL
    margin = 8 + MOVING_MARGIN_MM / spacing_mm if p > 1 else 0
    areas = (b[1] * b[2], b[0] * b[2], b[0] * b[1])
    held += 2 * halo_planes_held() * sum(area for area, parts in zip(areas, layout) if parts > 1)
    held += 4 * ((b[0] + 2 * margin) * (b[1] + 2 * margin) * (b[2] + 2 * margin) - b[0] * b[1] * b[2])
    return compute, comm, held / 1e9, layout


def main():
    print(f"Halo bytes per face voxel and iteration (greedy preset): {halo_bytes_per_face_voxel()}")
    print(f"Check against dist_tests (24 x 20 planes, step 0.1, sigmas 2 / 1): "
          f"{halo_bytes_per_face_voxel(2, 2.0, 1.0, 0.1) * 24 * 20} bytes (measured 71040)")
    print()
    # The two-GPU check: 3x brain, strong scaling on 2 H200s.
    shape = grid(3)
    c1, _, _ = slab_iteration(shape, 1, "H200", 0.5 / 3)
    c2, m2, _ = slab_iteration(shape, 2, "H200", 0.5 / 3)
    print(f"2 x H200, 3x brain: model {1e3 * c1:.1f} ms at P = 1 (measured 196.9), "
          f"{1e3 * (c2 + m2):.1f} ms at P = 2 (measured 100.2): speed-up {c1 / (c2 + m2):.2f}x (measured 1.97x)")
    print()
    for gpu in ("H100", "H200"):
        print(f"### {gpu}: ms per iteration (compute + exchanges), efficiency, GB per GPU\n")
        print("| brain | Gvox | P | slabs: ms | slab eff. | slab GB/GPU | slab planes | blocks | blocks: ms | block eff. | block GB/GPU |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, factor in VOLUMES:
            shape = grid(factor)
            spacing = 0.5 / factor
            n = shape[0] * shape[1] * shape[2]
            t1 = slab_iteration(shape, 1, gpu, spacing)[0]
            for p in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                if shape[2] / p < 1:
                    break
                c, m, mem = slab_iteration(shape, p, gpu, spacing)
                bc, bm, bmem, layout = block_iteration(shape, p, gpu, spacing)
                slab_ms = 1e3 * (c + m)
                block_ms = 1e3 * (bc + bm)
                fits = "" if mem <= MEMORY_GB[gpu] else " (does not fit)"
                bfits = "" if bmem <= MEMORY_GB[gpu] else " (does not fit)"
                print(f"| {name} | {n / 1e9:.2f} | {p} | {slab_ms:.1f} | {t1 / p / (c + m):.0%} | "
                      f"{mem:.1f}{fits} | {shape[2] / p:.1f} | {layout[0]}x{layout[1]}x{layout[2]} | "
                      f"{block_ms:.1f} | {t1 / p / (bc + bm):.0%} | {bmem:.1f}{bfits} |")
        print()


if __name__ == "__main__":
    main()
