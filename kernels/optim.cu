// Optimiser kernels: Adam (unfused pieces and the fused update), scaling by a device scalar, the
// max-norm slice partials and their reduction. All element-wise kernels share one launch shape:
// blocks of 256 threads along x (coalesced loads and stores of every component plane), one
// element (voxel, component) per thread. The math is device/adam.hpp's, the CPU
// reference's, without FMA contraction.
//
// Bytes per voxel (3 float components): adam_update reads g, m, v and writes m, v, step: 72 B
// with float moments, 48 B with bfloat16 moments (84 / 60 B in Add mode, which also reads the
// displacement); that is the floor for an op that must read the gradient and both moments and
// write both moments and its result, and the kernel moves exactly that. max_norm_partials reads 12 B per voxel; scale_field reads and writes 24 B.

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.cuh"
#include "cuda/optim.hpp"
#include "elementwise.cuh"

namespace gigareg::cuda {
namespace {

constexpr int kThreads = kElementThreads;  // the element-wise launch shape (elementwise.cuh)

__global__ void adam_moments_kernel(VolumeView<const float> grad, VolumeView<float> m,
                                    VolumeView<float> v, AdamCoefficients co, Box owned,
                                    index_t rows) {
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    index_t i, j, k;
    int c;
    if (!element(owned, row, i, j, k, c)) return;
    float mm = m.at(i, j, k, c), vv = v.at(i, j, k, c);
    adam_moments_update(co, grad.at(i, j, k, c), mm, vv);
    m.at(i, j, k, c) = mm;
    v.at(i, j, k, c) = vv;
  }
}

__global__ void adam_step_kernel(VolumeView<const float> m, VolumeView<const float> v,
                                 VolumeView<float> step, AdamCoefficients co, Box owned,
                                 index_t rows) {
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    index_t i, j, k;
    int c;
    if (!element(owned, row, i, j, k, c)) return;
    step.at(i, j, k, c) = adam_step_value(co, m.at(i, j, k, c), v.at(i, j, k, c));
  }
}

template <bool ADD, class M>
__global__ void adam_update_kernel(VolumeView<const float> grad, VolumeView<M> m,
                                   VolumeView<M> v, VolumeView<float> out, AdamCoefficients co,
                                   Box owned, index_t rows, const double* scale) {
  const bool scaled = scale != nullptr;
  const float s = scaled ? float(*scale) : 1.0f;  // one broadcast load per thread, L1/L2 hit
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    index_t i, j, k;
    int c;
    if (!element(owned, row, i, j, k, c)) return;
    // The gradient is read before the output is written (out may alias grad: same element).
    float mm = load_moment(m.at(i, j, k, c)), vv = load_moment(v.at(i, j, k, c));
    const float st = adam_update_element(co, grad.at(i, j, k, c), mm, vv, scaled, s);
    store_moment(m.at(i, j, k, c), mm);
    store_moment(v.at(i, j, k, c), vv);
    float& o = out.at(i, j, k, c);
    o = ADD ? detail::rn_add(o, st) : st;
  }
}

__global__ void scale_kernel(VolumeView<float> field, const double* scale, Box owned, index_t rows) {
  const float s = float(*scale);
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    index_t i, j, k;
    int c;
    if (!element(owned, row, i, j, k, c)) return;
    float& x = field.at(i, j, k, c);
    x = detail::rn_mul(x, s);
  }
}

// Max-norm: a block of 256 threads along x covers kRowsPerBlock rows of one z slice; each thread
// keeps its max, the block reduces in shared memory, and thread 0 merges the block's max into
// the slice partial with an integer atomicMax on the bit pattern (non-negative doubles order
// like their bits): order-independent, hence deterministic. The partials are zeroed first.
constexpr int kRowsPerBlock = 8;

__global__ void max_norm_kernel(VolumeView<const float> field, Box owned, double* partials) {
  __shared__ unsigned long long best[kThreads];
  const index_t i = owned.lo.x + index_t(blockIdx.x) * kThreads + threadIdx.x;
  const index_t k = owned.lo.z + blockIdx.z;
  unsigned long long b = 0;
  if (i < owned.lo.x + owned.size.x) {
    const index_t j0 = owned.lo.y + index_t(blockIdx.y) * kRowsPerBlock;
    const index_t jend = owned.lo.y + owned.size.y;
    const index_t j1 = j0 + kRowsPerBlock < jend ? j0 + kRowsPerBlock : jend;
    for (index_t j = j0; j < j1; ++j) {
      const double n = vector_norm(field.at(i, j, k, 0), field.at(i, j, k, 1), field.at(i, j, k, 2));
      const unsigned long long bits = double_bits(n);
      b = bits > b ? bits : b;
    }
  }
  best[threadIdx.x] = b;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half && best[threadIdx.x + half] > best[threadIdx.x])
      best[threadIdx.x] = best[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    atomicMax(reinterpret_cast<unsigned long long*>(partials + blockIdx.z), best[0]);
}

__global__ void reduce_max_kernel(const double* partials, index_t slices, double* result,
                                  bool as_scale, double target, double floor) {
  __shared__ unsigned long long best[kThreads];
  unsigned long long b = 0;
  for (index_t s = threadIdx.x; s < slices; s += blockDim.x) {
    const unsigned long long bits = double_bits(partials[s]);
    b = bits > b ? bits : b;
  }
  best[threadIdx.x] = b;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half && best[threadIdx.x + half] > best[threadIdx.x])
      best[threadIdx.x] = best[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double m = bits_double(best[0]);
    *result = as_scale ? __ddiv_rn(target, m < floor ? floor : m) : m;
  }
}

}  // namespace

void adam_moments(void* stream, VolumeView<const float> grad, VolumeView<float> m,
                  VolumeView<float> v, const AdamCoefficients& c, const Box& owned) {
  const RowLaunch l = row_launch(owned, grad.components);
  auto s = static_cast<cudaStream_t>(stream);
  adam_moments_kernel<<<l.grid, kThreads, 0, s>>>(grad, m, v, c, owned, l.rows);
  GIGAREG_CUDA_CHECK_LAUNCH("adam_moments_kernel");
}

void adam_step(void* stream, VolumeView<const float> m, VolumeView<const float> v,
               VolumeView<float> step, const AdamCoefficients& c, const Box& owned) {
  const RowLaunch l = row_launch(owned, m.components);
  auto s = static_cast<cudaStream_t>(stream);
  adam_step_kernel<<<l.grid, kThreads, 0, s>>>(m, v, step, c, owned, l.rows);
  GIGAREG_CUDA_CHECK_LAUNCH("adam_step_kernel");
}

template <class M>
void launch_adam_update(void* stream, VolumeView<const float> grad, VolumeView<M> m,
                        VolumeView<M> v, VolumeView<float> out, const AdamCoefficients& c,
                        const Box& owned, bool add, const double* scale) {
  const RowLaunch l = row_launch(owned, grad.components);
  auto s = static_cast<cudaStream_t>(stream);
  if (add)
    adam_update_kernel<true, M><<<l.grid, kThreads, 0, s>>>(grad, m, v, out, c, owned, l.rows, scale);
  else
    adam_update_kernel<false, M><<<l.grid, kThreads, 0, s>>>(grad, m, v, out, c, owned, l.rows, scale);
  GIGAREG_CUDA_CHECK_LAUNCH("adam_update_kernel");
}

void adam_update(void* stream, VolumeView<const float> grad, VolumeView<float> m,
                 VolumeView<float> v, VolumeView<float> out, const AdamCoefficients& c,
                 const Box& owned, bool add, const double* scale) {
  launch_adam_update(stream, grad, m, v, out, c, owned, add, scale);
}

void adam_update(void* stream, VolumeView<const float> grad, VolumeView<bfloat16> m,
                 VolumeView<bfloat16> v, VolumeView<float> out, const AdamCoefficients& c,
                 const Box& owned, bool add, const double* scale) {
  launch_adam_update(stream, grad, m, v, out, c, owned, add, scale);
}

void scale_field(void* stream, VolumeView<float> field, const double* scale, const Box& owned) {
  const RowLaunch l = row_launch(owned, field.components);
  auto s = static_cast<cudaStream_t>(stream);
  scale_kernel<<<l.grid, kThreads, 0, s>>>(field, scale, owned, l.rows);
  GIGAREG_CUDA_CHECK_LAUNCH("scale_kernel");
}

void max_norm_partials(void* stream, VolumeView<const float> field, const Box& owned,
                       double* partials) {
  auto s = static_cast<cudaStream_t>(stream);
  GIGAREG_CUDA_CHECK(cudaMemsetAsync(partials, 0, std::size_t(owned.size.z) * sizeof(double), s));
  const index_t tiles = (owned.size.x + kThreads - 1) / kThreads;
  const index_t row_blocks = (owned.size.y + kRowsPerBlock - 1) / kRowsPerBlock;
  GIGAREG_REQUIRE(tiles <= 0x7fffffff && row_blocks <= 65535 && owned.size.z <= 65535,
                  "the owned box is too large for one max-norm launch");
  const dim3 grid(unsigned(tiles), unsigned(row_blocks), unsigned(owned.size.z));
  max_norm_kernel<<<grid, kThreads, 0, s>>>(field, owned, partials);
  GIGAREG_CUDA_CHECK_LAUNCH("max_norm_kernel");
}

void reduce_max(void* stream, const double* partials, index_t slices, double* result,
                bool as_scale, double target, double floor) {
  reduce_max_kernel<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(partials, slices, result,
                                                                         as_scale, target, floor);
  GIGAREG_CUDA_CHECK_LAUNCH("reduce_max_kernel");
}

}  // namespace gigareg::cuda
