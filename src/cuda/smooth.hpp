#pragma once
// CUDA side of gaussian_smooth (kernels/smooth.cu). Called only by src/ops/smooth.cpp and
// src/ops/pyramid.cpp, after they have checked the arguments; every launch goes on `stream`.

#include <cstddef>

#include "gigareg/device/gaussian.hpp"

namespace gigareg::cuda {

/// One separable pass along `axis` (0 = x, 1 = y, 2 = z) over the voxels of `region` (global
/// indices): dst(v) = sum_k w[|k|] src(v + k e_axis), the index clamped to the global grid.
/// src and dst are single-component views; src must contain the region grown by the radius along
/// `axis` (clipped), dst must contain the region.
void gaussian_pass(void* stream, VolumeView<const float> src, VolumeView<float> dst,
                   const Box& region, int axis, const GaussianTaps& taps);

/// The transpose of a pass along `axis` over the whole grid (gaussian_smooth_adjoint): src and
/// dst are single-component views of the whole grid, not the same memory.
void gaussian_adjoint_pass(void* stream, VolumeView<const float> src, VolumeView<float> dst, int axis,
                           const GaussianTaps& taps);

/// True when gaussian_pass_yx handles these radii (its shared-memory tile fits).
bool gaussian_yx_fusable(int radius_y, int radius_x);

/// The y pass and then the x pass in one kernel, the same values as gaussian_pass along y over
/// `region` grown by r_x along x (clipped) followed by gaussian_pass along x over `region`.
/// src must contain `region` grown by (r_x, r_y, 0), clipped; dst must contain `region`.
void gaussian_pass_yx(void* stream, VolumeView<const float> src, VolumeView<float> dst,
                      const Box& region, const GaussianTaps& taps_y, const GaussianTaps& taps_x);


}  // namespace gigareg::cuda
