// CPU reference of the mask ops: device/mask.hpp's functors through the element-wise executor.

#include "cpu/elementwise.hpp"
#include "gigareg/device/mask.hpp"

namespace gigareg::cpu {

void combine_masks(VolumeView<const float> sampled, VolumeView<const float> fixed,
                   VolumeView<float> out, const Box& owned) {
  for_each_element(owned, 1, CombineMasks{sampled, fixed, out});
}

}  // namespace gigareg::cpu
