#pragma once
// CUDA side of the losses (kernels/mse.cu, kernels/lncc.cu, kernels/mattes.cu). Called only by
// src/ops/loss.cpp after it has checked the arguments; every launch goes on `stream` and nothing
// synchronises with the host except copy_to_host.

#include <cstddef>
#include <cstdint>

#include "gigareg/ops/loss.hpp"

namespace gigareg::cuda {

void mse_loss(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
              VolumeView<const float> mask, const Box& owned, SlicePartials partials,
              VolumeView<float> grad);

void lncc_loss(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const LnccConfig& config,
               SlicePartials partials, VolumeView<float> grad);

/// Testing only: forces how the box-window LNCC kernel shares its work among blocks in the calls
/// that follow: parts > 0 tile mode with that many z parts per split tile, else zchunk > 0
/// chunks of zchunk planes; resident > 0 replaces the device's resident block count. All zero
/// restore the cost model. Schedules differ only in the rounding of the running z sums (each
/// segment of a tile starts its own).
void lncc_box_schedule_for_testing(index_t parts, index_t zchunk, index_t resident);

/// Testing only: false keeps the box-window LNCC kernel on its register path (stage A loads its
/// inputs into registers) where it would otherwise stage them through TMA (views whose rows and
/// planes start at 16-byte boundaries, on sm_90 and newer). Both give bit-identical results.
void lncc_box_staging_for_testing(bool allowed);
/// Testing only: how many box-window LNCC launches so far staged their inputs through TMA.
index_t lncc_box_staged_launches_for_testing();

void mattes_histogram(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
                      VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                      const MattesAxis& moving_axis, std::int64_t* hist);
void mattes_table(void* stream, const std::int64_t* hist, int bins, float* table, double* value);
void mattes_gradient(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
                     VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                     const MattesAxis& moving_axis, const float* table, VolumeView<float> grad);

void intensity_range(void* stream, VolumeView<const float> image, VolumeView<const float> mask,
                     const Box& owned, SlicePartials partials);

/// Copies device bytes to the host after the work queued on `stream` (synchronises).
void loss_copy_to_host(void* host, const void* device, std::size_t bytes, void* stream);

#if defined(__CUDACC__)
namespace loss_detail {

/// Sum of `v` over the block in a fixed order (warp shuffles, then the warps in index order);
/// the result is valid in thread 0. `shared` holds blockDim.x / 32 doubles. Ends with the
/// block synchronised, so `shared` may be reused.
__device__ __forceinline__ double block_sum(double v, double* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < int(blockDim.x >> 5); ++w) s += shared[w];
  __syncthreads();
  return s;
}

}  // namespace loss_detail
#endif

}  // namespace gigareg::cuda
