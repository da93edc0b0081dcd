#pragma once
// Element-wise mask ops. Views in the memory of ctx's backend; every view contains `owned`; no
// synchronisation with the host.

#include "gigareg/device/view.hpp"
#include "gigareg/ops/context.hpp"

namespace gigareg {

/// out = 1 where sampled > 0.5 and (fixed is empty or fixed > 0.5), else 0, on `owned`: the
/// loss mask of an iteration from the moving mask sampled into the fixed grid and the fixed
/// mask. One-component views on one grid; `fixed` may be empty (data null).
void combine_masks(const Context& ctx, VolumeView<const float> sampled,
                   VolumeView<const float> fixed, VolumeView<float> out, const Box& owned);

}  // namespace gigareg
