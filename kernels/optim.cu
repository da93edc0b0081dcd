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

// The element-wise ops, as functors for launch_elementwise (one element (i, j, k, c) a call).
struct AdamMomentsOp {
  VolumeView<const float> grad;
  VolumeView<float> m, v;
  AdamCoefficients co;
  __device__ void operator()(index_t i, index_t j, index_t k, int c) const {
    float mm = m.at(i, j, k, c), vv = v.at(i, j, k, c);
    adam_moments_update(co, grad.at(i, j, k, c), mm, vv);
    m.at(i, j, k, c) = mm;
    v.at(i, j, k, c) = vv;
  }
};

struct AdamStepOp {
  VolumeView<const float> m, v;
  VolumeView<float> step;
  AdamCoefficients co;
  __device__ void operator()(index_t i, index_t j, index_t k, int c) const {
    step.at(i, j, k, c) = adam_step_value(co, m.at(i, j, k, c), v.at(i, j, k, c));
  }
};

// Moments and step in one pass, the step written to or added onto out; moments of type M
// (float or bfloat16), the step scaled by *scale when scale is given.
template <bool ADD, class M>
struct AdamUpdateOp {
  VolumeView<const float> grad;
  VolumeView<M> m, v;
  VolumeView<float> out;
  AdamCoefficients co;
  const double* scale;
  __device__ void operator()(index_t i, index_t j, index_t k, int c) const {
    const bool scaled = scale != nullptr;
    const float s = scaled ? float(*scale) : 1.0f;  // a broadcast load, L1/L2 hit
    // The gradient is read before the output is written (out may alias grad: same element).
    float mm = load_moment(m.at(i, j, k, c)), vv = load_moment(v.at(i, j, k, c));
    const float st = adam_update_element(co, grad.at(i, j, k, c), mm, vv, scaled, s);
    store_moment(m.at(i, j, k, c), mm);
    store_moment(v.at(i, j, k, c), vv);
    float& o = out.at(i, j, k, c);
    o = ADD ? detail::rn_add(o, st) : st;
  }
};

struct ScaleOp {
  VolumeView<float> field;
  const double* scale;
  __device__ void operator()(index_t i, index_t j, index_t k, int c) const {
    float& x = field.at(i, j, k, c);
    x = detail::rn_mul(x, float(*scale));
  }
};

// Max-norm: a block of 256 threads along x covers kRowsPerBlock rows of one z slice; each thread
// keeps its max, the block reduces in shared memory, and thread 0 merges the block's max into
// the slice partial with an integer atomicMax on the bit pattern (non-negative doubles order
// like their bits): order-independent, hence deterministic. The partials are zeroed first.
constexpr int kRowsPerBlock = 8;

/// The largest of the block's kThreads values b (bit patterns of non-negative doubles), by a
/// shared-memory tree; every thread of the block must call it, and every one gets the result.
__device__ __forceinline__ unsigned long long block_max_bits(unsigned long long b) {
  __shared__ unsigned long long best[kThreads];
  best[threadIdx.x] = b;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half && best[threadIdx.x + half] > best[threadIdx.x])
      best[threadIdx.x] = best[threadIdx.x + half];
    __syncthreads();
  }
  return best[0];
}

__global__ void max_norm_kernel(VolumeView<const float> field, Box owned, double* partials) {
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
  const unsigned long long block_best = block_max_bits(b);
  if (threadIdx.x == 0)
    atomicMax(reinterpret_cast<unsigned long long*>(partials + blockIdx.z), block_best);
}

__global__ void reduce_max_kernel(const double* partials, index_t slices, double* result,
                                  bool as_scale, double target, double floor) {
  unsigned long long b = 0;
  for (index_t s = threadIdx.x; s < slices; s += blockDim.x) {
    const unsigned long long bits = double_bits(partials[s]);
    b = bits > b ? bits : b;
  }
  const unsigned long long block_best = block_max_bits(b);
  if (threadIdx.x == 0) {
    const double m = bits_double(block_best);
    *result = as_scale ? __ddiv_rn(target, m < floor ? floor : m) : m;
  }
}

}  // namespace

void adam_moments(void* stream, VolumeView<const float> grad, VolumeView<float> m,
                  VolumeView<float> v, const AdamCoefficients& c, const Box& owned) {
  launch_elementwise(stream, owned, grad.components, AdamMomentsOp{grad, m, v, c}, "adam_moments");
}

void adam_step(void* stream, VolumeView<const float> m, VolumeView<const float> v,
               VolumeView<float> step, const AdamCoefficients& c, const Box& owned) {
  launch_elementwise(stream, owned, m.components, AdamStepOp{m, v, step, c}, "adam_step");
}

template <class M>
void launch_adam_update(void* stream, VolumeView<const float> grad, VolumeView<M> m,
                        VolumeView<M> v, VolumeView<float> out, const AdamCoefficients& c,
                        const Box& owned, bool add, const double* scale) {
  if (add)
    launch_elementwise(stream, owned, grad.components, AdamUpdateOp<true, M>{grad, m, v, out, c, scale},
                       "adam_update");
  else
    launch_elementwise(stream, owned, grad.components, AdamUpdateOp<false, M>{grad, m, v, out, c, scale},
                       "adam_update");
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
  launch_elementwise(stream, owned, field.components, ScaleOp{field, scale}, "scale_field");
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
