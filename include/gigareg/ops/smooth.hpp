#pragma once
// Separable Gaussian smoothing of scalar volumes and of displacement fields (each component plane
// is smoothed on its own, with the same kernel).
//
// Kernel: along each axis a the sampled Gaussian w[k] = exp(-k^2 / (2 sigma_a^2)) for
// |k| <= r_a, r_a = ceil(truncation * sigma_a), normalised in double so that the taps sum to 1,
// then rounded to float. sigma_a = 0 gives r_a = 0 and the single tap 1: that axis is copied.
// Sigmas are in voxels of the grid being smoothed; sigma_mm_to_voxels converts from mm.
//
// Boundary: replicate (clamp to the edge voxel) at the GLOBAL grid edge, never at a view edge.
//
// Halo (sharding): the input view must contain `owned` grown by r_a along each axis a, clipped to
// the global grid (smoothing_input_box gives it); the output view must contain `owned`; only the
// voxels of `owned` are written. A slab with its halo then computes bitwise what the whole
// volume computes on its voxels (the passes run in the order z, y, x; the z pass covers owned
// grown by (r_x, r_y, 0), the y pass owned grown by (r_x, 0, 0), the x pass owned).
//
// Precision: float accumulation in a fixed order (see device/gaussian.hpp); the result does not
// depend on thread count, launch shape, chunking or sharding.
//
// In place: `out` may be the same view as `in` (same memory, box and strides; any other overlap
// is an error). The result is bitwise the out-of-place one: each z-chunk's first pass reads the
// input into scratch before any output near it is written (chunks pipelined one ahead), so a
// field smoothed in place needs no second field-sized buffer.
// Scratch: at most two buffers of about 2^25 voxels of one component each (the owned box is
// processed in z-chunks), host memory on Cpu, cudaMallocAsync on ctx.stream on Cuda (where the
// y and x passes usually run as one kernel and one buffer suffices); in place, at most three of
// about 2^24 voxels (two on Cuda).
//
// Bytes per voxel and component (float): the floor of any smoothing is 8 (read once, write once);
// this design moves 24 on the CPU (3 passes) and 16 on CUDA (z pass, then fused y-x), plus halo
// re-reads that mostly hit L2.

#include "gigareg/device/gaussian.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/ops/context.hpp"

namespace gigareg {

constexpr double kDefaultGaussianTruncation = 3.0;

/// ceil(truncation * sigma) (0 for sigma 0). Throws InvalidArgument for a negative or non-finite
/// sigma or truncation, or a radius above kMaxGaussianRadius.
int gaussian_radius(double sigma_voxels, double truncation = kDefaultGaussianTruncation);
Index3 gaussian_radii(Vec3d sigma_voxels, double truncation = kDefaultGaussianTruncation);

/// The normalised sampled taps along one axis (see above), as both backends use them.
GaussianTaps gaussian_taps(double sigma_voxels, double truncation = kDefaultGaussianTruncation);

/// sigma in voxels along each index axis: sigma_mm / spacing (per axis).
Vec3d sigma_mm_to_voxels(const Geometry& geometry, Vec3d sigma_mm);
Vec3d sigma_mm_to_voxels(const Geometry& geometry, double sigma_mm);

/// The box the input view must contain: `owned` grown by the radii, clipped to the grid.
Box smoothing_input_box(const Box& owned, Index3 global_size, Vec3d sigma_voxels,
                        double truncation = kDefaultGaussianTruncation);

/// out = G_sigma * in on the voxels of `owned`, for every component (in and out must have the
/// same number of components and the same global size; out may be in itself, see above).
void gaussian_smooth(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                     Vec3d sigma_voxels, const Box& owned,
                     double truncation = kDefaultGaussianTruncation);

/// out = G_sigma^T * in: the transpose (adjoint) of gaussian_smooth over the whole grid, the
/// backward pass of smoothing (dL/din = G^T dL/dout). With the replicate boundary G is not
/// symmetric: an edge voxel also collects the weights of the taps clamped onto it. Whole-grid
/// views only, not in place, both backends; float accumulation in a fixed order per output
/// (device/gaussian.hpp, gaussian_adjoint_sample), so the backends agree bitwise.
/// <G x, y> = <x, G^T y> is the test (test_smooth.cpp; test_smooth_cuda.cpp against the CPU).
void gaussian_smooth_adjoint(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                             Vec3d sigma_voxels, double truncation = kDefaultGaussianTruncation);

}  // namespace gigareg
