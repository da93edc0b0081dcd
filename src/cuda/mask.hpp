#pragma once
// CUDA side of the mask ops (kernels/mask.cu); called by src/ops/mask.cpp after its argument
// checks. Launches on `stream`; nothing synchronises.

#include "gigareg/device/view.hpp"

namespace gigareg::cuda {

void combine_masks(void* stream, VolumeView<const float> sampled, VolumeView<const float> fixed,
                   VolumeView<float> out, const Box& owned);

}  // namespace gigareg::cuda
