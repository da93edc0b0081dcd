// CUDA Mattes mutual information: (a) joint histogram, (b) MI and gradient table, (c) gradient.
// Per-voxel math: include/gigareg/device/mattes.hpp (the same functions as the CPU reference,
// without FMA contraction), so every voxel's fixed-point contributions, and hence the integer
// histogram, equal the CPU's bit for bit.
//
// (a) Each warp takes whole rows of the owned box, 32 consecutive voxels at a time (coalesced F,
//     W, mask loads), each lane one voxel. Every block accumulates a private joint histogram in shared
//     memory as two uint32 words per bin: `lo` takes integer atomics and a lane whose add wraps
//     it around carries 1 into `hi` (exactly one lane sees each wrap), so the shared counters are
//     exact 64-bit sums built from 32-bit atomics. When every valid lane of a warp hits the same
//     bins (large uniform regions, e.g. background: the worst case for atomic contention) the
//     warp first sums its weights with __reduce_add_sync (32 x 2^26 fits in 32 bits) and one lane
//     adds. Blocks then add their non-zero bins into the global int64 histogram with 64-bit
//     integer atomics. Integer addition is associative: the result does not depend on scheduling.
// (b) One block: marginals and total in int64, pointwise MI in double, the MI summed in a fixed
//     order (loss_detail::block_sum), the float table written; no host synchronisation.
// (c) The table goes to shared memory; warps take whole rows, each lane computes the gradient of
//     four voxels at a time (4 or 16 taps each), reading F, W (and the mask) once and writing the
//     gradient once.

#include "cuda/check.cuh"
#include "cuda/loss.hpp"

namespace gigareg::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

/// Rows (y, z) of the owned box; a warp takes whole rows (one division per row).
__device__ __forceinline__ void row_yz(const Box& owned, index_t row, index_t& y, index_t& z) {
  const index_t ry = row % owned.size.y;
  y = owned.lo.y + ry;
  z = owned.lo.z + (row - ry) / owned.size.y;
}

__device__ __forceinline__ void shared_add(unsigned* lo, unsigned* hi, int cell, unsigned v) {
  const unsigned old = atomicAdd(&lo[cell], v);
  if (old + v < old) atomicAdd(&hi[cell], 1u);  // the 32-bit word wrapped: carry
}

__global__ void __launch_bounds__(kThreads)
    histogram_kernel(VolumeView<const float> fixed, VolumeView<const float> warped,
                     VolumeView<const float> mask, Box owned, MattesAxis fa, MattesAxis ma,
                     unsigned long long* hist) {
  extern __shared__ unsigned hist_shared[];
  const int n = ma.bins;
  const int cells = n * n;
  unsigned* lo = hist_shared;
  unsigned* hi = hist_shared + cells;
  for (int i = threadIdx.x; i < 2 * cells; i += blockDim.x) hist_shared[i] = 0u;
  __syncthreads();

  const int lane = threadIdx.x & 31;
  const index_t warps_total = index_t(gridDim.x) * kWarps;
  const index_t rows = owned.size.y * owned.size.z;
  const index_t xhi = owned.lo.x + owned.size.x;
  for (index_t row = index_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); row < rows;
       row += warps_total) {
    index_t y, z;
    row_yz(owned, row, y, z);
    for (index_t x0 = owned.lo.x; x0 < xhi; x0 += 32) {  // uniform over the warp
      const index_t x = x0 + lane;
      bool valid = x < xhi;
      if (valid && mask.data != nullptr) valid = mask.at(x, y, z) > 0.5f;
      MattesContribution c{};
      if (valid) c = mattes_contribution(fixed.at(x, y, z), warped.at(x, y, z), fa, ma);
      const unsigned valid_lanes = __ballot_sync(kFull, valid);
      if (valid_lanes == 0u) continue;
      const int leader = __ffs(valid_lanes) - 1;
      const int key = valid ? c.i0 * kMattesMaxBins + c.j0 : -1;
      const int leader_key = __shfl_sync(kFull, key, leader);
      if (__all_sync(kFull, !valid || key == leader_key)) {
        // Warp-uniform bins: sum the 16 (or 4) weights across the warp, one lane adds.
        const int i0 = __shfl_sync(kFull, c.i0, leader);
        const int j0 = __shfl_sync(kFull, c.j0, leader);
        const int ni = __shfl_sync(kFull, c.ni, leader);
#pragma unroll
        for (int t = 0; t < 16; ++t) {
          if (t >= ni * 4) break;
          const unsigned s = __reduce_add_sync(kFull, valid ? c.weight[t] : 0u);
          if (lane == leader && s != 0u) shared_add(lo, hi, (i0 + t / 4) * n + j0 + t % 4, s);
        }
      } else if (valid) {
#pragma unroll
        for (int t = 0; t < 16; ++t) {
          if (t >= c.ni * 4) break;
          if (c.weight[t] != 0u) shared_add(lo, hi, (c.i0 + t / 4) * n + c.j0 + t % 4, c.weight[t]);
        }
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < cells; i += blockDim.x) {
    const unsigned long long v = (static_cast<unsigned long long>(hi[i]) << 32) | lo[i];
    if (v != 0ull) atomicAdd(&hist[i], v);
  }
}

__global__ void __launch_bounds__(kThreads)
    table_kernel(const std::int64_t* hist, int n, float* table, double* value) {
  __shared__ long long hf[kMattesMaxBins], hm[kMattesMaxBins];
  __shared__ long long total_s;
  __shared__ double shared[kWarps];
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    long long sf = 0, sm = 0;
    for (int j = 0; j < n; ++j) {
      sf += hist[i * n + j];
      sm += hist[j * n + i];
    }
    hf[i] = sf;
    hm[i] = sm;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    long long t = 0;
    for (int i = 0; i < n; ++i) t += hf[i];
    total_s = t;
  }
  __syncthreads();
  const long long total = total_s;
  double mi = 0.0;
  for (int cell = threadIdx.x; cell < n * n; cell += blockDim.x) {
    const int i = cell / n, j = cell - i * n;
    const std::int64_t h = hist[cell];
    const double g = mattes_pointwise_mi(h, hf[i], hm[j], total);
    if (table != nullptr) table[cell] = float(g);
    if (h > 0) mi += (double(h) / double(total)) * g;
  }
  mi = loss_detail::block_sum(mi, shared);
  if (threadIdx.x == 0 && value != nullptr) {
    const double t = double(total) * kMattesFixedPointInvScale;
    value[0] = total > 0 ? -mi * t : 0.0;
    value[1] = t;
  }
}

__global__ void __launch_bounds__(kThreads)
    gradient_kernel(VolumeView<const float> fixed, VolumeView<const float> warped,
                    VolumeView<const float> mask, Box owned, MattesAxis fa, MattesAxis ma,
                    const float* table, VolumeView<float> grad) {
  extern __shared__ float table_shared[];
  const int cells = ma.bins * ma.bins;
  for (int i = threadIdx.x; i < cells; i += blockDim.x) table_shared[i] = table[i];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const index_t warps_total = index_t(gridDim.x) * kWarps;
  const index_t rows = owned.size.y * owned.size.z;
  const index_t xhi = owned.lo.x + owned.size.x;
  constexpr int kUnroll = 4;
  for (index_t row = index_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); row < rows;
       row += warps_total) {
    index_t y, z;
    row_yz(owned, row, y, z);
    for (index_t x0 = owned.lo.x + lane; x0 < xhi; x0 += 32 * kUnroll) {
      float f[kUnroll], m[kUnroll];
      bool in[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {  // all loads first: four in flight per lane
        const index_t x = x0 + 32 * u;
        in[u] = x < xhi && (mask.data == nullptr || mask.at(x, y, z) > 0.5f);
        f[u] = in[u] ? fixed.at(x, y, z) : 0.0f;
        m[u] = in[u] ? warped.at(x, y, z) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const index_t x = x0 + 32 * u;
        if (x >= xhi) break;
        grad.at(x, y, z) = in[u] ? mattes_voxel_gradient(f[u], m[u], fa, ma, table_shared) : 0.0f;
      }
    }
  }
}

/// Blocks for `rows` rows at about `rows_per_warp` rows per warp, at most `cap`.
unsigned grid_for(index_t rows, index_t rows_per_warp, unsigned cap) {
  const index_t b = (rows + kWarps * rows_per_warp - 1) / (kWarps * rows_per_warp);
  return unsigned(b < 1 ? 1 : (b > index_t(cap) ? index_t(cap) : b));
}

template <class Kernel>
void allow_shared(Kernel kernel, std::size_t bytes) {
  if (bytes > 48 * 1024)
    GIGAREG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(bytes)));
}

}  // namespace

void mattes_histogram(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
                      VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                      const MattesAxis& moving_axis, std::int64_t* hist) {
  auto s = static_cast<cudaStream_t>(stream);
  const int n = moving_axis.bins;
  const std::size_t cells = std::size_t(n) * std::size_t(n);
  GIGAREG_CUDA_CHECK(cudaMemsetAsync(hist, 0, cells * sizeof(std::int64_t), s));
  if (owned.empty()) return;
  const std::size_t shared = 2 * cells * sizeof(unsigned);
  allow_shared(histogram_kernel, shared);
  histogram_kernel<<<grid_for(owned.size.y * owned.size.z, 4, 1024), kThreads, shared, s>>>(
      fixed, warped, mask, owned, fixed_axis, moving_axis,
      reinterpret_cast<unsigned long long*>(hist));
  GIGAREG_CUDA_CHECK_LAUNCH("mattes histogram_kernel");
}

void mattes_table(void* stream, const std::int64_t* hist, int bins, float* table, double* value) {
  table_kernel<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(hist, bins, table, value);
  GIGAREG_CUDA_CHECK_LAUNCH("mattes table_kernel");
}

void mattes_gradient(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
                     VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                     const MattesAxis& moving_axis, const float* table, VolumeView<float> grad) {
  const std::size_t shared = std::size_t(moving_axis.bins) * moving_axis.bins * sizeof(float);
  allow_shared(gradient_kernel, shared);
  gradient_kernel<<<grid_for(owned.size.y * owned.size.z, 2, 4096), kThreads, shared,
                    static_cast<cudaStream_t>(stream)>>>(fixed, warped, mask, owned, fixed_axis,
                                                         moving_axis, table, grad);
  GIGAREG_CUDA_CHECK_LAUNCH("mattes gradient_kernel");
}

}  // namespace gigareg::cuda
