// Mask ops: argument checks and dispatch (gigareg/ops/mask.hpp).

#include "gigareg/ops/mask.hpp"

#include "gigareg/config.hpp"
#include "ops/common.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/mask.hpp"
#endif

namespace gigareg {
namespace cpu {
void combine_masks(VolumeView<const float> sampled, VolumeView<const float> fixed,
                   VolumeView<float> out, const Box& owned);
}  // namespace cpu

void combine_masks(const Context& ctx, VolumeView<const float> sampled,
                   VolumeView<const float> fixed, VolumeView<float> out, const Box& owned) {
  using namespace ops_detail;
  const char* op = "combine_masks";
  const Index3 grid = out.global_size;
  check_view(ctx, op, "out", out, 1, grid, &owned);
  check_view(ctx, op, "sampled", sampled, 1, grid, &owned);
  if (fixed.data != nullptr) check_view(ctx, op, "fixed", fixed, 1, grid, &owned);
  if (owned.empty()) return;
  if (ctx.backend == Backend::Cpu) {
    cpu::combine_masks(sampled, fixed, out, owned);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::combine_masks(ctx.stream, sampled, fixed, out, owned);
#else
  no_cuda(op);
#endif
}

}  // namespace gigareg
