// Mask kernels: device/mask.hpp's functors through the element-wise launcher. combine_masks reads
// 8 B and writes 4 B per voxel.

#include "cuda/mask.hpp"
#include "elementwise.cuh"
#include "gigareg/device/mask.hpp"

namespace gigareg::cuda {

void combine_masks(void* stream, VolumeView<const float> sampled, VolumeView<const float> fixed,
                   VolumeView<float> out, const Box& owned) {
  launch_elementwise(stream, owned, 1, CombineMasks{sampled, fixed, out}, "launch of combine_masks");
}

}  // namespace gigareg::cuda
