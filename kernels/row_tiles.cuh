#pragma once
// The row-tile launch shape of the gather kernels (warp, compose, inversion, Jacobian): a block of
// kTx x kTy threads owns kTy consecutive rows (y) of one z slice of the owned box (or kTy times a
// few rows, walked by each warp in turn); each warp walks one row in x with stride kTx, so the
// component-plane loads and stores are coalesced 128-byte row segments. gridDim.x covers the rows
// of a slice, gridDim.y the slices (a grid-stride loop beyond 65535 slices). All indices 64-bit.

#include <cuda_runtime.h>

#include "gigareg/device/math.hpp"
#include "gigareg/device/view.hpp"
#include "gigareg/device/warp.hpp"  // load_vec3

namespace gigareg::cuda {

constexpr int kTx = 32;  // threads along x: one warp per row
constexpr int kTy = 8;   // warps per block, one row each at a time
constexpr index_t kMaxGridY = 65535;

struct RowTileLaunch {
  dim3 grid, block;
  index_t row_groups;  // blocks along y per slice
};

/// The grid over `owned` when a block covers `rows_per_block` rows of a slice.
inline RowTileLaunch row_tile_launch(const Box& owned, index_t rows_per_block = kTy) {
  const index_t row_groups = (owned.size.y + rows_per_block - 1) / rows_per_block;
  const index_t gy = owned.size.z < kMaxGridY ? owned.size.z : kMaxGridY;
  return {dim3(unsigned(row_groups), unsigned(gy)), dim3(kTx, kTy), row_groups};
}

/// f(i) for this thread's voxels of row (j, k): x = lo.x + threadIdx.x, then every kTx.
template <class F>
__device__ __forceinline__ void along_row(const Box& owned, F&& f) {
  for (index_t ii = threadIdx.x; ii < owned.size.x; ii += kTx) f(owned.lo.x + ii);
}

/// f(i, u(i)) along row (j, k) as along_row, with u of the thread's next voxel loaded before f
/// runs on the current one, so that its DRAM latency overlaps the gathers f makes (the gathers
/// need u: loaded in turn, they would wait twice). Without u (HasU false), u is zero.
template <bool HasU, class F>
__device__ __forceinline__ void along_row_prefetching_u(const VolumeView<const float>& disp,
                                                        const Box& owned, index_t j, index_t k,
                                                        F&& f) {
  index_t ii = threadIdx.x;
  Vec3f u_next{0.f, 0.f, 0.f};
  if (HasU && ii < owned.size.x) u_next = load_vec3(disp, owned.lo.x + ii, j, k);
  for (; ii < owned.size.x; ii += kTx) {
    const index_t i = owned.lo.x + ii;
    const Vec3f u = u_next;
    if (HasU && ii + kTx < owned.size.x) u_next = load_vec3(disp, i + kTx, j, k);
    f(i, u);
  }
}

/// f(i, j, k) for this thread's voxels of the owned box, one row of kTy per warp of the block.
template <class F>
__device__ __forceinline__ void for_each_row_tile_voxel(const Box& owned, F&& f) {
  const index_t jj = index_t(blockIdx.x) * kTy + threadIdx.y;
  if (jj >= owned.size.y) return;
  const index_t j = owned.lo.y + jj;
  for (index_t kk = blockIdx.y; kk < owned.size.z; kk += gridDim.y) {
    const index_t k = owned.lo.z + kk;
    along_row(owned, [&](index_t i) { f(i, j, k); });
  }
}

}  // namespace gigareg::cuda
