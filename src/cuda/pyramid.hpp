#pragma once
// CUDA side of the pyramid ops (kernels/pyramid.cu); called by src/ops/pyramid.cpp after its
// argument checks. Launches on `stream`.

#include "gigareg/device/gaussian.hpp"

namespace gigareg::cuda {

/// dst(v) = sample_trilinear_clamped(src, map_index(dst_to_src, v)) for every component and every
/// voxel v of dst_owned.
void resample_trilinear(void* stream, VolumeView<const float> src, VolumeView<float> dst,
                        const Box& dst_owned, const Affined& dst_to_src);

}  // namespace gigareg::cuda
