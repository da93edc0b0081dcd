// CUDA mean-squares loss and intensity range, plus the losses' host-copy helper.
//
// One block per z slice of the owned box: warp w walks rows y = w, w + 16, ..., its lanes walk x
// (coalesced, four loads in flight per lane). Each thread accumulates in double; the block sums in a fixed order
// (loss_detail::block_sum), so the partials are deterministic. F, W (and the mask) are read
// once and the gradient written once: 12 (16 with a mask) bytes per voxel.

#include <cmath>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/loss.hpp"

namespace gigareg::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kUnroll = 4;
constexpr int kWarps = kThreads / 32;

__global__ void __launch_bounds__(kThreads)
    mse_kernel(VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, Box owned, SlicePartials partials,
               VolumeView<float> grad) {
  __shared__ double shared[kWarps];
  const index_t z = owned.lo.z + blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const Index3 hi = owned.hi();
  double s = 0.0, c = 0.0;
  for (index_t y = owned.lo.y + warp; y < hi.y; y += kWarps)
    for (index_t x0 = owned.lo.x + lane; x0 < hi.x; x0 += 32 * kUnroll) {
      float f[kUnroll], m[kUnroll];
      bool in[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const index_t x = x0 + 32 * u;
        in[u] = x < hi.x && (mask.data == nullptr || mask.at(x, y, z) > 0.5f);
        f[u] = in[u] ? fixed.at(x, y, z) : 0.0f;
        m[u] = in[u] ? warped.at(x, y, z) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const index_t x = x0 + 32 * u;
        if (x >= hi.x) break;
        const float d = __fsub_rn(m[u], f[u]);
        if (in[u]) {
          s += double(d) * double(d);
          c += 1.0;
        }
        if (grad.data != nullptr) grad.at(x, y, z) = in[u] ? 2.0f * d : 0.0f;
      }
    }
  s = loss_detail::block_sum(s, shared);
  c = loss_detail::block_sum(c, shared);
  if (threadIdx.x == 0 && partials.data != nullptr) {
    partials.data[index_t(blockIdx.x) * kLossTerms] = s;
    partials.data[index_t(blockIdx.x) * kLossTerms + 1] = c;
  }
}

__global__ void __launch_bounds__(kThreads)
    range_kernel(VolumeView<const float> image, VolumeView<const float> mask, Box owned,
                 SlicePartials partials) {
  __shared__ float lo_s[kWarps], hi_s[kWarps];
  const index_t z = owned.lo.z + blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const Index3 hi = owned.hi();
  float lo = INFINITY, up = -INFINITY;
  for (index_t y = owned.lo.y + warp; y < hi.y; y += kWarps)
    for (index_t x0 = owned.lo.x + lane; x0 < hi.x; x0 += 32 * kUnroll) {
      float v[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const index_t x = x0 + 32 * u;
        const bool in = x < hi.x && (mask.data == nullptr || mask.at(x, y, z) > 0.5f);
        v[u] = in ? image.at(x, y, z) : NAN;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (v[u] < lo) lo = v[u];  // NaN compares false: skipped
        if (v[u] > up) up = v[u];
      }
    }
  for (int o = 16; o > 0; o >>= 1) {
    lo = fminf(lo, __shfl_down_sync(0xffffffffu, lo, o));
    up = fmaxf(up, __shfl_down_sync(0xffffffffu, up, o));
  }
  if (lane == 0) {
    lo_s[warp] = lo;
    hi_s[warp] = up;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kWarps; ++w) {
      lo = fminf(lo, lo_s[w]);
      up = fmaxf(up, hi_s[w]);
    }
    partials.data[index_t(blockIdx.x) * kRangeTerms] = double(lo);
    partials.data[index_t(blockIdx.x) * kRangeTerms + 1] = double(up);
  }
}

}  // namespace

void mse_loss(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
              VolumeView<const float> mask, const Box& owned, SlicePartials partials,
              VolumeView<float> grad) {
  mse_kernel<<<unsigned(owned.size.z), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      fixed, warped, mask, owned, partials, grad);
  GIGAREG_CUDA_CHECK_LAUNCH("mse_kernel");
}

void intensity_range(void* stream, VolumeView<const float> image, VolumeView<const float> mask,
                     const Box& owned, SlicePartials partials) {
  range_kernel<<<unsigned(owned.size.z), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      image, mask, owned, partials);
  GIGAREG_CUDA_CHECK_LAUNCH("range_kernel");
}


void loss_copy_to_host(void* host, const void* device, std::size_t bytes, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  GIGAREG_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, s));
  GIGAREG_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace gigareg::cuda
