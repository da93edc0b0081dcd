#pragma once
// The element-wise launch shape of the CUDA kernels, and one templated kernel that runs a
// device/ functor over it: blocks of 256 threads along x (coalesced loads and stores of every
// component plane), one element (voxel, component) per thread; grid x = rows of (y, z,
// component), grid-stride beyond 2^31 - 1 rows; grid y = tiles of 256 elements along x.
// (Measured on H100 against a 3-D grid and against one thread per voxel looping over its
// components: this shape was fastest.)

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.cuh"
#include "gigareg/device/view.hpp"
#include "gigareg/error.hpp"

namespace gigareg::cuda {

constexpr int kElementThreads = 256;

struct RowLaunch {
  dim3 grid;
  index_t rows;
};

/// The grid of an element-wise kernel over `owned` with `components` components.
inline RowLaunch row_launch(const Box& owned, int components) {
  const index_t rows = owned.size.y * owned.size.z * components;
  const index_t tiles = (owned.size.x + kElementThreads - 1) / kElementThreads;
  GIGAREG_REQUIRE(tiles <= 65535, "the owned box is too wide");
  return {dim3(unsigned(std::min<index_t>(rows, 0x7fffffff)), unsigned(tiles)), rows};
}

/// The element (i, j, k, c) of this thread for block row `row`; false when i is past the box.
__device__ __forceinline__ bool element(const Box& owned, index_t row, index_t& i, index_t& j,
                                        index_t& k, int& c) {
  i = owned.lo.x + index_t(blockIdx.y) * kElementThreads + threadIdx.x;
  j = owned.lo.y + row % owned.size.y;
  const index_t zc = row / owned.size.y;
  k = owned.lo.z + zc % owned.size.z;
  c = int(zc / owned.size.z);
  return i < owned.lo.x + owned.size.x;
}

template <class F>
__global__ void elementwise_kernel(F f, Box owned, index_t rows) {
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    index_t i, j, k;
    int c;
    if (!element(owned, row, i, j, k, c)) return;
    f(i, j, k, c);
  }
}

/// Runs f(i, j, k, c) (a functor of include/gigareg/device/, passed by value) for every voxel of
/// `owned` and every component, on `stream`. `name` names the launch in errors.
template <class F>
void launch_elementwise(void* stream, const Box& owned, int components, const F& f, const char* name) {
  const RowLaunch l = row_launch(owned, components);
  elementwise_kernel<<<l.grid, kElementThreads, 0, static_cast<cudaStream_t>(stream)>>>(f, owned, l.rows);
  cuda_detail::check(cudaGetLastError(), name, __FILE__, __LINE__);
}

}  // namespace gigareg::cuda
