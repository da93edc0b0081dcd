#pragma once
// CUDA side of the CC texture mask (kernels/texture_mask.cu); called by the level set-up after
// its argument checks. Launches on `stream`.

#include "gigareg/device/view.hpp"

namespace gigareg::cuda {

/// out(v) = 1 where window_variance(image, v, radius) >= min_variance and (no mask, or
/// mask(v) > 0.5), else 0, for every voxel v of out_box. `image` covers out_box grown by the
/// radius (clipped to the grid); `mask` (data may be null) and `out` cover out_box.
void texture_mask(void* stream, VolumeView<const float> image, VolumeView<const float> mask,
                  VolumeView<float> out, const Box& out_box, int radius, double min_variance);

}  // namespace gigareg::cuda
