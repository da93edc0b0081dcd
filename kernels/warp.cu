// CUDA kernels of the warp (out = I(A(x + u(x)))) and its gradient w.r.t. u and the affine.
//
// Launch layout: a block of 32 x 8 threads owns consecutive rows (y) of one z slice of the owned
// box (8 rows in the forward kernel, 16 in the backward one); each warp walks a row in x with
// stride 32, so the loads of u, grad_out and the stores of out / grad_u are coalesced 128-byte row
// segments. gridDim.x covers
// the rows of a slice, gridDim.y the slices (a grid-stride loop beyond 65535 slices). All indices
// are 64-bit. The moving image is gathered through the read-only cache (__ldg in load_ro): its 8
// taps of neighbouring threads fall in the same or adjacent cache lines for smooth transforms.
//
// Affine gradient (deterministic, no atomics): the backward kernel's block owns 16 rows of a slice
// (each warp two rows, 8 apart). Each thread sums its voxels' 12 terms in float (at most
// 2 * ceil(nx / 32) terms: 32 at nx = 512, where float keeps ~1e-6 relative); the block then sums
// the threads' partials in double with a fixed tree (warp shuffles over the 32 lanes, then the 8
// warps in order) into one partial per (slice, row group) in scratch; a second kernel sums each
// slice's row-group partials in row order into the SlicePartials. The partial of a slice depends
// only on that slice's data and the x/y extent of the owned box, so it is identical when the grid
// is split into z-slabs. (Per-thread double accumulators cost 24 registers and occupancy: 1.3x
// slower at 512^3 on an H100.)
//
// Latency: each thread loads u of its next voxel (32 further along the row) before it gathers
// the current voxel's taps, so the DRAM latency of u overlaps that of the gathers instead of
// preceding it (512^3 on the H100: forward 1.85 -> 1.60 ms, forward + backward 4.68 -> 4.38 ms).
//
// Occupancy: the backward kernel is capped at 64 registers (4 blocks of 256 threads per SM): the
// gathers are latency-bound and more warps in flight beat the few spills this causes. The forward
// kernel needs fewer than 64 registers anyway (the cap measured slightly slower there).


#include "cuda/check.cuh"
#include "cuda/scratch_pool.hpp"
#include "cuda/warp.hpp"
#include "row_tiles.cuh"

namespace gigareg::cuda {
namespace {

constexpr int kRowsPerThread = 2;  // backward: each warp walks 2 rows, a block 16
constexpr int kMinBlocks = 4;      // __launch_bounds__: 64 registers per thread

// One thread per output voxel along x: out(i) = I(Q i + q0 + G u(i)).
template <Interpolation I, bool HasU>
__global__ void __launch_bounds__(kTx* kTy)
    warp_kernel(const WarpPlan plan, const VolumeView<const float> moving,
                const VolumeView<const float> disp, const VolumeView<float> out, const Box owned,
                const Boundary boundary) {
  const index_t jj = index_t(blockIdx.x) * kTy + threadIdx.y;
  if (jj >= owned.size.y) return;
  const index_t j = owned.lo.y + jj;
  for (index_t kk = blockIdx.y; kk < owned.size.z; kk += gridDim.y) {
    const index_t k = owned.lo.z + kk;
    along_row_prefetching_u<HasU>(disp, owned, j, k, [&](index_t i, Vec3f u) {
      out.at(i, j, k) = warp_sample<I>(plan, moving, warp_position(plan, i, j, k, u), boundary);
    });
  }
}

// Recomputes each sample position and the moving image's index gradient there; writes
// dL/du = g G^T grad I and accumulates the affine terms (see the file comment).
template <bool HasU, bool WantU, bool WantAffine>
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    warp_backward_kernel(const WarpPlan plan, const VolumeView<const float> moving,
                         const VolumeView<const float> disp, const VolumeView<const float> grad_out,
                         const VolumeView<float> grad_u, const Box owned, const Boundary boundary,
                         double* __restrict__ block_partials) {
  __shared__ double warp_sums[kTy][kAffineTerms];
  for (index_t kk = blockIdx.y; kk < owned.size.z; kk += gridDim.y) {
    const index_t k = owned.lo.z + kk;
    float acc[kAffineTerms];
#pragma unroll
    for (int t = 0; t < kAffineTerms; ++t) acc[t] = 0.f;
    // No early return: the whole block takes part in the reduction below.
    for (int r = 0; r < kRowsPerThread; ++r) {
      const index_t jj = index_t(blockIdx.x) * (kTy * kRowsPerThread) + r * kTy + threadIdx.y;
      if (jj >= owned.size.y) break;
      const index_t j = owned.lo.y + jj;
      along_row_prefetching_u<HasU>(disp, owned, j, k, [&](index_t i, Vec3f u) {
        Vec3f gm;
        (void)sample_linear_grad(moving, warp_position(plan, i, j, k, u), boundary, gm);
        // A plain load: grad_out may be the first plane of grad_u (each voxel read, then written).
        const float g = grad_out.at(i, j, k);
        if constexpr (WantU) {
          const Vec3f du = warp_grad_displacement(plan, gm, g);
          grad_u.at(i, j, k, 0) = du.x;
          grad_u.at(i, j, k, 1) = du.y;
          grad_u.at(i, j, k, 2) = du.z;
        }
        if constexpr (WantAffine) warp_accumulate_affine(plan, gm, g, i, j, k, u, acc);
      });
    }
    if constexpr (WantAffine) {
#pragma unroll
      for (int t = 0; t < kAffineTerms; ++t) {
        double s = double(acc[t]);
#pragma unroll
        for (int off = kTx / 2; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
        if (threadIdx.x == 0) warp_sums[threadIdx.y][t] = s;
      }
      __syncthreads();
      if (threadIdx.y == 0 && threadIdx.x < kAffineTerms) {
        double s = 0.0;
        for (int w = 0; w < kTy; ++w) s += warp_sums[w][threadIdx.x];
        block_partials[(kk * index_t(gridDim.x) + blockIdx.x) * kAffineTerms + threadIdx.x] = s;
      }
      __syncthreads();  // warp_sums is reused by the next slice
    }
  }
}

// One thread per (slice, term): the slice's row-group partials summed in row order.
__global__ void sum_row_groups(const double* __restrict__ block_partials, index_t row_groups,
                               index_t slices, double* __restrict__ partials) {
  const index_t n = slices * kAffineTerms;
  for (index_t idx = index_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += index_t(gridDim.x) * blockDim.x) {
    const index_t s = idx / kAffineTerms, t = idx % kAffineTerms;
    double sum = 0.0;
    for (index_t r = 0; r < row_groups; ++r)
      sum += block_partials[(s * row_groups + r) * kAffineTerms + t];
    partials[idx] = sum;
  }
}

template <Interpolation I>
void launch_warp(cudaStream_t stream, const WarpPlan& plan, VolumeView<const float> moving,
                 VolumeView<const float> disp, VolumeView<float> out, const Box& owned,
                 Boundary boundary) {
  const RowTileLaunch l = row_tile_launch(owned);
  if (disp.data)
    warp_kernel<I, true><<<l.grid, l.block, 0, stream>>>(plan, moving, disp, out, owned, boundary);
  else
    warp_kernel<I, false><<<l.grid, l.block, 0, stream>>>(plan, moving, disp, out, owned, boundary);
  GIGAREG_CUDA_CHECK_LAUNCH("warp_kernel");
}

template <bool HasU, bool WantU, bool WantAffine>
void launch_backward(cudaStream_t stream, const RowTileLaunch& l, const WarpPlan& plan,
                     VolumeView<const float> moving, VolumeView<const float> disp,
                     VolumeView<const float> grad_out, VolumeView<float> grad_u, const Box& owned,
                     Boundary boundary, double* block_partials) {
  warp_backward_kernel<HasU, WantU, WantAffine><<<l.grid, l.block, 0, stream>>>(
      plan, moving, disp, grad_out, grad_u, owned, boundary, block_partials);
  GIGAREG_CUDA_CHECK_LAUNCH("warp_backward_kernel");
}

template <bool HasU>
void dispatch_backward(cudaStream_t stream, const RowTileLaunch& l, const WarpPlan& plan,
                       VolumeView<const float> moving, VolumeView<const float> disp,
                       VolumeView<const float> grad_out, VolumeView<float> grad_u,
                       const Box& owned, Boundary boundary, double* block_partials) {
  const bool want_u = grad_u.data != nullptr, want_affine = block_partials != nullptr;
  if (want_u && want_affine)
    launch_backward<HasU, true, true>(stream, l, plan, moving, disp, grad_out, grad_u, owned,
                                      boundary, block_partials);
  else if (want_u)
    launch_backward<HasU, true, false>(stream, l, plan, moving, disp, grad_out, grad_u, owned,
                                       boundary, block_partials);
  else if (want_affine)
    launch_backward<HasU, false, true>(stream, l, plan, moving, disp, grad_out, grad_u, owned,
                                       boundary, block_partials);
}

}  // namespace

void warp(void* stream, const WarpPlan& plan, VolumeView<const float> moving,
          VolumeView<const float> displacement, VolumeView<float> out, const Box& owned,
          Interpolation interpolation, Boundary boundary) {
  if (owned.empty()) return;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (interpolation) {
    case Interpolation::Linear:
      launch_warp<Interpolation::Linear>(s, plan, moving, displacement, out, owned, boundary);
      break;
    case Interpolation::Nearest:
      launch_warp<Interpolation::Nearest>(s, plan, moving, displacement, out, owned, boundary);
      break;
    case Interpolation::Label:
      launch_warp<Interpolation::Label>(s, plan, moving, displacement, out, owned, boundary);
      break;
    case Interpolation::BSpline:  // refused by src/ops/warp.cpp: the CPU backend only
      throw_error(ErrorKind::InvalidArgument, "warp", "BSpline interpolation runs on the cpu backend");
  }
}

void warp_backward(void* stream, const WarpPlan& plan, VolumeView<const float> moving,
                   VolumeView<const float> displacement, VolumeView<const float> grad_out,
                   const Box& owned, Boundary boundary, VolumeView<float> grad_u,
                   double* affine_partials) {
  if (owned.empty() || (!grad_u.data && !affine_partials)) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const RowTileLaunch l = row_tile_launch(owned, kTy * kRowsPerThread);
  const std::size_t block_terms =
      std::size_t(owned.size.z) * std::size_t(l.row_groups) * std::size_t(kAffineTerms);
  // Small (12 doubles per row group and slice: 1.5 MB at 512^3): from the pool that keeps it.
  SmallScratch<double> scratch(affine_partials ? std::size_t(block_terms) : 0, stream);
  double* block_partials = scratch.data();
  if (displacement.data)
    dispatch_backward<true>(s, l, plan, moving, displacement, grad_out, grad_u, owned, boundary,
                            block_partials);
  else
    dispatch_backward<false>(s, l, plan, moving, displacement, grad_out, grad_u, owned, boundary,
                             block_partials);
  if (affine_partials) {
    const long long n = owned.size.z * kAffineTerms;
    sum_row_groups<<<cuda_detail::blocks_for(n, 128), 128, 0, s>>>(block_partials, l.row_groups,
                                                                    owned.size.z, affine_partials);
    GIGAREG_CUDA_CHECK_LAUNCH("sum_row_groups");
  }
}

}  // namespace gigareg::cuda
