#pragma once
// The CC metric's texture mask: the fixed-image windows with enough variance to count.

#include "gigareg/ops/context.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::reg {

/// On `out_box` of the image's grid: 1 where the box window of `radius` around the voxel (clipped
/// to the grid) has a variance of at least `min_variance` and `mask` (when given) is > 0.5; else
/// 0. Host volumes; `image` contains out_box grown by the radius (clipped); window sums in double,
/// by separable passes, so every voxel's value is independent of out_box.
Volume<float> texture_mask(const Volume<float>& image, const Volume<float>* mask, const Box& out_box,
                           int radius, double min_variance);
/// texture_mask in the context's backend: the CUDA kernel gives the host's mask bit for bit
/// (tests/cuda/test_texture_mask_cuda.cpp); the result is in the backend's memory.
Volume<float> texture_mask(const Context& ctx, const Volume<float>& image, const Volume<float>* mask,
                           const Box& out_box, int radius, double min_variance);

}  // namespace gigareg::reg
