#pragma once
// Per-voxel functors of the mask ops (ops/mask.hpp), shared by the CPU reference
// (src/cpu/mask.cpp, through cpu::for_each_element) and the CUDA kernels (kernels/mask.cu,
// through cuda::launch_elementwise): one formula for both backends.

#include "gigareg/device/macros.hpp"
#include "gigareg/device/view.hpp"

namespace gigareg {

/// The loss mask of one voxel: 1 where the moving mask sampled through the transform counts
/// (> 0.5) and so does the fixed mask (when there is one: fixed.data non-null), else 0.
struct CombineMasks {
  VolumeView<const float> sampled, fixed;
  VolumeView<float> out;
  GIGAREG_HDI void operator()(index_t i, index_t j, index_t k, int) const {
    const bool counts = sampled.at(i, j, k) > 0.5f && (fixed.data == nullptr || fixed.at(i, j, k) > 0.5f);
    out.at(i, j, k) = counts ? 1.0f : 0.0f;
  }
};

}  // namespace gigareg
