// Separable Gaussian passes on the GPU. src/ops/smooth.cpp plans the passes (order z, y, x;
// regions grown by the radii of the passes still to come; z-chunks; scratch) and calls one
// function per pass, or one for the y and x passes together; this file holds the tiles.
//
// Pass along y or z (columns): a block of 256 threads, CX x-columns by 256 / CX along the axis,
// owns a tile of CX columns by 64 outputs along the axis. Rows of CX consecutive x samples are
// loaded by whole warps (coalesced), 64 + 2r of them, into shared memory laid out [row][CX]: in
// the sum a warp reads 32 consecutive floats of one row, so there are no bank conflicts. CX is
// 128 while the tile fits the default 48 KiB (r <= 16), else 64, else 32 (wider tiles read longer
// contiguous rows: 128 measured about 20% faster than 32 on H100).
//
// y and x fused (the usual last two passes): a block of 128 x 2 threads owns a tile of
// (128 - 2 r_x) x 32 outputs of one z slice. It loads the (32 + 2 r_y) rows of 128 input samples
// (one per thread and row; rows along x, coalesced; the global edge clamped on load), runs the y
// pass into a second shared array of 32 rows of 128 (the y-pass results of the clamped columns,
// exactly what the separate y pass would have stored), then the x pass from it to global memory.
// The intermediate never touches DRAM: 2 passes over the volume instead of 3. Used for
// r_x <= 32 while both arrays fit 96 KiB of shared memory (r_y up to about 80).
//
// Pass along x alone (no y pass, the sigma-0 copy, r_x > 32): a block of 128 x 2 threads owns a
// tile of 128 - 2r outputs (128 for r > 32) along x by up to 64 rows of one z slice, loading all
// rows into shared memory first (many loads in flight per thread).
//
// Tiles 128 samples wide keep every lane busy in the load and y-pass rounds (a 128 + 2r wide
// tile would cost a second, nearly empty round). Per-axis indices are 32-bit (axes < 2^30),
// offsets 64-bit.
//
// The taps are copied from the launch parameter into shared memory once per block. Every output
// is gaussian_tap_sum (device/gaussian.hpp), the CPU reference's formula in the CPU's order,
// without FMA contraction: GPU and CPU agree bitwise on the same input. Loads never leave the
// region grown by the radii of the passes a kernel runs (clipped), which is all the caller
// guarantees to be in the source view.
//
// Radii up to 16 (sigma up to 5.3 voxels at truncation 3) take register-blocked kernels instead,
// templated on a radius bucket RM = 4, 8 or 16 (the radius itself is a run-time value <= RM; taps
// beyond it are skipped by uniform branches, register arrays use compile-time indices only):
// - z pass (pass_z_stream_kernel): a pure streaming pass; block (32, 8), one thread per (x, y)
//   column marching 64 outputs in z with a sliding register window (one new load per output,
//   groups of 4, the next group loaded one step ahead). Only samples within the region grown by
//   r are loaded; the global edge is clamped per sample.
// - fused y-x (pass_yx_reg_kernel): block of 160 threads, a tile of 128 x 40 outputs of one z
//   slice. Thread c < 128 + 2 RM marches column x0 - RM + c (clamped) down the tile's rows
//   straight from global memory (same sliding window) and writes the y results to shared memory;
//   then each warp takes rows and each lane 4 consecutive x outputs from RM / 2 + 1 16-byte shared
//   loads, storing a float4 when the output rows are 16-byte aligned.
// Every output is still the gaussian_tap_sum formula (centre, then pairs k = 1..r, rn_ ops), so
// these agree bitwise with the tile kernels and the CPU, whatever the tiling or slab.
//
// Measured on H100 at sigma 1.5 (r = 5; copy 2.99 TB/s; floor 8 B/voxel/component read once +
// written once): scalar 512^3 1.78 ms (4.95x floor) with the tile kernels -> 1.27 ms (3.55x)
// register-blocked (the 2-kernel design's own floor is 16 B/voxel, 0.72 ms); 3-component field
// 5.09 ms (4.72x) -> 3.36 ms (3.13x). Loading the next group ahead gained ~0-5%, so the kernels
// are not load-latency bound; the remaining gap is the 2-kernel design (16 B/voxel) and the
// per-output instruction count (rn_ ops, no FMA, to stay bitwise equal to the CPU).

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/smooth.hpp"

namespace gigareg::cuda {
namespace {

constexpr int kRowTile = 128;     // outputs per block along x (x pass)
constexpr int kRowThreadsY = 2;   // threadIdx.y extent of the x pass
constexpr int kFuseY = 32;        // outputs per block along y of the fused y-x pass
constexpr std::size_t kFuseMaxShared = 96 * 1024;
constexpr int kColBlock = 256;    // threads per block of the y/z passes
constexpr int kColTile = 64;      // outputs per block along the pass axis
constexpr unsigned kMaxGridYZ = 65535;
// Launches without an opt-in may use 48 KiB of shared memory, static (the taps) included.
constexpr std::size_t kDefaultShared = 48 * 1024 - 2 * (kMaxGaussianRadius + 1) * sizeof(float);

__device__ __forceinline__ void load_taps(float* w, const GaussianTaps& taps, int tid, int nthreads) {
  for (int k = tid; k <= taps.radius; k += nthreads) w[k] = taps.w[k];
}

/// Per-axis indices fit 32 bits (gaussian_pass checks the grid); only offsets need 64.
__device__ __forceinline__ int clamp32(int i, int n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

/// Offset of the (possibly virtual) element (0, 0, k): element (i, j, k) is at
/// slice_offset + j * stride.y + i * stride.x.
template <class T>
__device__ __forceinline__ index_t slice_offset(const VolumeView<T>& v, index_t k) {
  return (k - v.box_lo.z) * v.stride.z - v.box_lo.y * v.stride.y - v.box_lo.x * v.stride.x;
}

/// Offset of the (possibly virtual) element (x, 0, o) (AXIS 1) or (x, o, 0) (AXIS 2): the column
/// along AXIS is then v.data[offset + a * stride[AXIS]].
template <int AXIS, class T>
__device__ __forceinline__ index_t column_offset(const VolumeView<T>& v, index_t x, index_t o) {
  const index_t ox = (x - v.box_lo.x) * v.stride.x;
  return AXIS == 1 ? ox - v.box_lo.y * v.stride.y + (o - v.box_lo.z) * v.stride.z
                   : ox + (o - v.box_lo.y) * v.stride.y - v.box_lo.z * v.stride.z;
}

// Tiles along x are as wide as a block's 128 threads: a tile holds 128 input samples, one per
// thread, and yields 128 - 2r outputs, so every load and every y-pass step of the fused kernel
// keeps all lanes busy (a 128 + 2r wide tile would cost a second, nearly empty, round).
// Radii above kMaxNarrowX fall back to 128 outputs per tile and several load rounds.
constexpr int kMaxNarrowX = 32;

int x_tile_outputs(int r) { return r <= kMaxNarrowX ? kRowTile - 2 * r : kRowTile; }

// x pass: block (128, 2); a tile of `out_w` outputs along x by `rows` rows (y) of one z slice,
// so that each thread has rows / 2 row loads in flight before the block synchronises.
__global__ void pass_x_kernel(VolumeView<const float> src, VolumeView<float> dst, Box region,
                              GaussianTaps taps, int out_w, int rows) {
  __shared__ float w[kMaxGaussianRadius + 1];
  extern __shared__ float lines[];  // `rows` rows of out_w + 2r samples
  const int r = taps.radius;
  const int tx = threadIdx.x, ty = threadIdx.y;
  load_taps(w, taps, ty * kRowTile + tx, kRowTile * kRowThreadsY);

  const int n = int(src.global_size.x);
  const int x0 = int(region.lo.x) + int(blockIdx.x) * out_w;
  const int y0 = int(region.lo.y) + int(blockIdx.y) * rows;
  const int nout = min(out_w, int(region.lo.x + region.size.x) - x0);
  const int nrows = min(rows, int(region.lo.y + region.size.y) - y0);
  const int nload = nout + 2 * r;
  const int width = out_w + 2 * r;
  for (index_t k = region.lo.z + blockIdx.z; k < region.lo.z + region.size.z; k += gridDim.z) {
    __syncthreads();  // the previous slice's sums are done with `lines` (and w is loaded)
    const index_t in = slice_offset(src, k);
    for (int l = ty; l < nrows; l += kRowThreadsY) {
      const index_t row = in + index_t(y0 + l) * src.stride.y;
      for (int t = tx; t < nload; t += kRowTile)
        lines[l * width + t] = src.data[row + index_t(clamp32(x0 - r + t, n)) * src.stride.x];
    }
    __syncthreads();
    const index_t out = slice_offset(dst, k);
    for (int l = ty; l < nrows; l += kRowThreadsY) {
      const index_t row = out + index_t(y0 + l) * dst.stride.y;
      for (int t = tx; t < nout; t += kRowTile)
        dst.data[row + index_t(x0 + t) * dst.stride.x] = gaussian_tap_sum(w, r, lines + l * width + t + r, 1);
    }
  }
}

/// Rows per block of the x pass: as many as fit the default shared memory, at most 64.
int x_pass_rows(int r) {
  int rows = 64;
  const std::size_t width = std::size_t(x_tile_outputs(r) + 2 * r);
  while (rows > 2 && std::size_t(rows) * width * sizeof(float) > kDefaultShared) rows /= 2;
  return rows;
}

/// Shared bytes of the fused y-x tile: the input tile and the y-pass results, rows of 128.
std::size_t fused_shared_bytes(int ry) {
  return (std::size_t(kFuseY + 2 * ry) + kFuseY) * kRowTile * sizeof(float);
}

// Fused y then x: block (128, 2); a tile of (128 - 2 r_x) x 32 outputs of one z slice.
__global__ void pass_yx_kernel(VolumeView<const float> src, VolumeView<float> dst, Box region,
                               GaussianTaps ty_taps, GaussianTaps tx_taps) {
  __shared__ float wy[kMaxGaussianRadius + 1];
  __shared__ float wx[kMaxGaussianRadius + 1];
  extern __shared__ float smem[];
  const int ry = ty_taps.radius, rx = tx_taps.radius;
  const int tx = threadIdx.x, ty = threadIdx.y;
  load_taps(wy, ty_taps, ty * kRowTile + tx, kRowTile * kRowThreadsY);
  load_taps(wx, tx_taps, ty * kRowTile + tx, kRowTile * kRowThreadsY);

  constexpr int width = kRowTile;                   // row length of both arrays
  float* in = smem;                                 // kFuseY + 2 ry rows
  float* mid = smem + (kFuseY + 2 * ry) * width;    // kFuseY rows
  const int out_w = kRowTile - 2 * rx;
  const int nx = int(src.global_size.x), ny = int(src.global_size.y);
  const int x0 = int(region.lo.x) + int(blockIdx.x) * out_w;
  const int y0 = int(region.lo.y) + int(blockIdx.y) * kFuseY;
  const int out_x = min(out_w, int(region.lo.x + region.size.x) - x0);
  const int out_y = min(kFuseY, int(region.lo.y + region.size.y) - y0);
  const bool column = tx < out_x + 2 * rx;  // never load beyond the region grown by the radii
  const int load_h = out_y + 2 * ry;
  const index_t src_x = index_t(clamp32(x0 - rx + tx, nx)) * src.stride.x;
  const index_t dst_x = index_t(x0 + tx) * dst.stride.x;
  for (index_t k = region.lo.z + blockIdx.z; k < region.lo.z + region.size.z; k += gridDim.z) {
    __syncthreads();  // the previous slice is done with both arrays (and the taps are loaded)
    if (column) {
      const index_t base = slice_offset(src, k) + src_x;
      for (int l = ty; l < load_h; l += kRowThreadsY)
        in[l * width + tx] = src.data[base + index_t(clamp32(y0 - ry + l, ny)) * src.stride.y];
    }
    __syncthreads();
    if (column) {
      for (int l = ty; l < out_y; l += kRowThreadsY)
        mid[l * width + tx] = gaussian_tap_sum(wy, ry, in + (l + ry) * width + tx, width);
    }
    __syncthreads();
    if (tx < out_x) {
      const index_t base = slice_offset(dst, k) + dst_x;
      for (int l = ty; l < out_y; l += kRowThreadsY)
        dst.data[base + index_t(y0 + l) * dst.stride.y] =
            gaussian_tap_sum(wx, rx, mid + l * width + tx + rx, 1);
    }
  }
}

// y or z pass: block (CX, 256 / CX); a tile of CX x-columns by 64 outputs along the axis.
template <int AXIS, int CX>
__global__ void pass_column_kernel(VolumeView<const float> src, VolumeView<float> dst, Box region,
                                   GaussianTaps taps) {
  constexpr int OTHER = AXIS == 1 ? 2 : 1;
  constexpr int kAlong = kColBlock / CX;  // threads along the pass axis
  __shared__ float w[kMaxGaussianRadius + 1];
  extern __shared__ float tile[];  // (kColTile + 2r) rows of CX samples
  const int r = taps.radius;
  const int tx = threadIdx.x, ty = threadIdx.y;
  load_taps(w, taps, ty * CX + tx, kColBlock);

  const int n = int(src.global_size[AXIS]);
  const index_t x = region.lo.x + index_t(blockIdx.x) * CX + tx;
  const bool active = x < region.lo.x + region.size.x;
  const int a0 = int(region.lo[AXIS]) + int(blockIdx.y) * kColTile;
  const int nout = min(kColTile, int(region.lo[AXIS] + region.size[AXIS]) - a0);
  const int nload = nout + 2 * r;
  const index_t src_step = src.stride[AXIS], dst_step = dst.stride[AXIS];
  for (index_t o = region.lo[OTHER] + blockIdx.z; o < region.lo[OTHER] + region.size[OTHER];
       o += gridDim.z) {
    __syncthreads();  // the previous tile's sums are done (and w is loaded)
    if (active) {
      const index_t base = column_offset<AXIS>(src, x, o);
      for (int l = ty; l < nload; l += kAlong)
        tile[l * CX + tx] = src.data[base + index_t(clamp32(a0 - r + l, n)) * src_step];
    }
    __syncthreads();
    if (active) {
      const index_t base = column_offset<AXIS>(dst, x, o);
      for (int l = ty; l < nout; l += kAlong)
        dst.data[base + index_t(a0 + l) * dst_step] = gaussian_tap_sum(w, r, tile + (l + r) * CX + tx, CX);
    }
  }
}

// ---- register-blocked kernels for radii up to kMaxRingRadius ---------------------------------
// Templated on a radius bucket RM (4, 8 or 16) with the actual radius r <= RM known at run time:
// register arrays are indexed with compile-time constants only, and the taps k > r are skipped
// by uniform branches, so every output is still the gaussian_tap_sum formula in its order.

constexpr int kMaxRingRadius = 16;
constexpr int kRingGroup = 4;     // outputs per step of a marching column (loads in flight)
constexpr int kZBlockX = 32, kZBlockY = 8;
constexpr int kZLen = 64;         // outputs per thread of the streaming z pass
constexpr int kYxOutW = 128;      // outputs along x per tile of the register y-x pass
constexpr int kYxOutH = 40;       // outputs along y per tile
constexpr int kYxWarps = 5;       // threads: 160 >= 128 + 2 * 16 columns of the y pass

int ring_bucket(int r) { return r <= 4 ? 4 : (r <= 8 ? 8 : 16); }

/// One column along an axis, marched by one thread: outputs a in [a0, a1) from the samples
/// data[base + clamp(p) * step], p in [a0 - r, a1 + r) (only those are read), kept in a sliding
/// register window; store(a, value) receives each output. One new load per output.
template <int RM, class Store>
__device__ __forceinline__ void march_column(const float* __restrict__ data, index_t base,
                                             index_t step, int n, int a0, int a1, int r,
                                             const GaussianTaps& taps, Store store) {
  using detail::rn_add;
  using detail::rn_mul;
  constexpr int G = kRingGroup;
  float v[2 * RM + G];
  const int lo = a0 - r, hi = a1 + r;
#pragma unroll
  for (int i = 0; i < 2 * RM; ++i) {
    const int p = a0 - RM + i;
    v[i] = (p >= lo && p < hi) ? __ldg(data + base + index_t(clamp32(p, n)) * step) : 0.0f;
  }
  // The next group's samples are loaded one step ahead (two groups of loads in flight).
  float next[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const int p = a0 + RM + g;  // >= lo
    next[g] = p < hi ? __ldg(data + base + index_t(clamp32(p, n)) * step) : 0.0f;
  }
  for (int a = a0; a < a1; a += G) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      v[2 * RM + g] = next[g];
      const int p = a + G + RM + g;
      next[g] = p < hi ? __ldg(data + base + index_t(clamp32(p, n)) * step) : 0.0f;
    }
    float acc[G];
#pragma unroll
    for (int g = 0; g < G; ++g) acc[g] = rn_mul(taps.w[0], v[RM + g]);
#pragma unroll
    for (int k = 1; k <= RM; ++k) {
      if (k <= r) {
        const float wk = taps.w[k];
#pragma unroll
        for (int g = 0; g < G; ++g) acc[g] = rn_add(acc[g], rn_mul(wk, rn_add(v[RM + g - k], v[RM + g + k])));
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g)
      if (a + g < a1) store(a + g, acc[g]);
#pragma unroll
    for (int i = 0; i < 2 * RM; ++i) v[i] = v[i + G];
  }
}

// Streaming z pass: block (32, 8) threads, one (x, y) column each, marching kZLen outputs in z.
template <int RM>
__global__ void __launch_bounds__(kZBlockX * kZBlockY)
    pass_z_stream_kernel(VolumeView<const float> src, VolumeView<float> dst, Box region,
                         GaussianTaps taps) {
  const int x = int(region.lo.x) + int(blockIdx.x) * kZBlockX + int(threadIdx.x);
  const int y = int(region.lo.y) + int(blockIdx.y) * kZBlockY + int(threadIdx.y);
  if (x >= int(region.lo.x + region.size.x) || y >= int(region.lo.y + region.size.y)) return;
  const int z0 = int(region.lo.z) + int(blockIdx.z) * kZLen;
  const int z1 = min(z0 + kZLen, int(region.lo.z + region.size.z));
  const index_t sbase = (x - src.box_lo.x) * src.stride.x + (y - src.box_lo.y) * src.stride.y -
                        src.box_lo.z * src.stride.z;
  const index_t dbase = (x - dst.box_lo.x) * dst.stride.x + (y - dst.box_lo.y) * dst.stride.y -
                        dst.box_lo.z * dst.stride.z;
  float* __restrict__ out = dst.data;
  const index_t dstep = dst.stride.z;
  march_column<RM>(src.data, sbase, src.stride.z, int(src.global_size.z), z0, z1, taps.radius, taps,
                   [&](int a, float val) { out[dbase + index_t(a) * dstep] = val; });
}

// Fused y then x, register-blocked: block of 160 threads, a tile of 128 x 40 outputs of one z
// slice. y pass: thread c < 128 + 2 RM marches the column x0 - RM + c down the tile's rows
// (straight from global memory, the column clamped at the global edge; columns outside the region
// grown by r_x are not loaded) and stores the y results to shared memory; x pass: each warp takes
// rows, each lane 4 consecutive outputs, from 2 RM / 4 + 1 float4 loads of the row.
template <int RM>
__global__ void __launch_bounds__(32 * kYxWarps, RM <= 8 ? 5 : 2)
    pass_yx_reg_kernel(VolumeView<const float> src, VolumeView<float> dst, Box region,
                       GaussianTaps ty_taps, GaussianTaps tx_taps, int vec_store) {
  using detail::rn_add;
  using detail::rn_mul;
  constexpr int W = kYxOutW + 2 * RM;  // a multiple of 8: rows stay 16-byte aligned
  constexpr int NF = 2 * RM + 4;       // floats of a lane's x window
  __shared__ __align__(16) float mid[kYxOutH * W];
  const int ry = ty_taps.radius, rx = tx_taps.radius;
  const int tid = int(threadIdx.x);
  const int nx = int(src.global_size.x), ny = int(src.global_size.y);
  const int x0 = int(region.lo.x) + int(blockIdx.x) * kYxOutW;
  const int y0 = int(region.lo.y) + int(blockIdx.y) * kYxOutH;
  const int out_x = min(kYxOutW, int(region.lo.x + region.size.x) - x0);
  const int out_y = min(kYxOutH, int(region.lo.y + region.size.y) - y0);
  const int xs = x0 - RM + tid;  // this thread's y-pass column
  const bool column = tid < W && xs >= x0 - rx && xs < x0 + out_x + rx;
  const index_t src_x = index_t(clamp32(xs, nx) - src.box_lo.x) * src.stride.x -
                        src.box_lo.y * src.stride.y;
  const int lane = tid & 31, warp = tid >> 5;
  const bool xout = 4 * lane < out_x;
  const bool full4 = vec_store && 4 * lane + 4 <= out_x;
  for (index_t k = region.lo.z + blockIdx.z; k < region.lo.z + region.size.z; k += gridDim.z) {
    __syncthreads();  // the previous slice's x pass is done with mid
    if (column) {
      const index_t base = (k - src.box_lo.z) * src.stride.z + src_x;
      march_column<RM>(src.data, base, src.stride.y, ny, y0, y0 + out_y, ry, ty_taps,
                       [&](int a, float val) { mid[(a - y0) * W + tid] = val; });
    }
    __syncthreads();
    if (xout) {
      const index_t out_k = slice_offset(dst, k) + index_t(x0 + 4 * lane) * dst.stride.x;
      for (int row = warp; row < out_y; row += kYxWarps) {
        const float4* q = reinterpret_cast<const float4*>(mid + row * W) + lane;
        float f[NF];
#pragma unroll
        for (int j = 0; j < NF / 4; ++j) {
          const float4 t = q[j];
          f[4 * j] = t.x;
          f[4 * j + 1] = t.y;
          f[4 * j + 2] = t.z;
          f[4 * j + 3] = t.w;
        }
        float acc[4];
#pragma unroll
        for (int g = 0; g < 4; ++g) acc[g] = rn_mul(tx_taps.w[0], f[RM + g]);
#pragma unroll
        for (int kk = 1; kk <= RM; ++kk) {
          if (kk <= rx) {
            const float wk = tx_taps.w[kk];
#pragma unroll
            for (int g = 0; g < 4; ++g)
              acc[g] = rn_add(acc[g], rn_mul(wk, rn_add(f[RM + g - kk], f[RM + g + kk])));
          }
        }
        const index_t o = out_k + index_t(y0 + row) * dst.stride.y;
        if (full4) {
          *reinterpret_cast<float4*>(dst.data + o) = make_float4(acc[0], acc[1], acc[2], acc[3]);
        } else {
#pragma unroll
          for (int g = 0; g < 4; ++g)
            if (4 * lane + g < out_x) dst.data[o + index_t(g) * dst.stride.x] = acc[g];
        }
      }
    }
  }
}

unsigned cap(index_t n, unsigned limit) {
  return unsigned(std::min<index_t>(std::max<index_t>(n, 1), limit));
}


template <int AXIS, int CX>
void launch_column(cudaStream_t s, VolumeView<const float> src, VolumeView<float> dst,
                   const Box& region, const GaussianTaps& taps) {
  constexpr int OTHER = AXIS == 1 ? 2 : 1;
  const index_t xblocks = (region.size.x + CX - 1) / CX;
  const index_t ablocks = (region.size[AXIS] + kColTile - 1) / kColTile;
  GIGAREG_REQUIRE(ablocks <= index_t(kMaxGridYZ), "the region is too long for a column pass");
  const dim3 grid(cap(xblocks, 0x7fffffffu), unsigned(ablocks), cap(region.size[OTHER], kMaxGridYZ));
  const dim3 block(CX, kColBlock / CX);
  const std::size_t shared = std::size_t(kColTile + 2 * taps.radius) * CX * sizeof(float);
  pass_column_kernel<AXIS, CX><<<grid, block, shared, s>>>(src, dst, region, taps);
  GIGAREG_CUDA_CHECK_LAUNCH("gaussian pass_column_kernel");
}

template <int AXIS>
void launch_column(cudaStream_t s, VolumeView<const float> src, VolumeView<float> dst,
                   const Box& region, const GaussianTaps& taps) {
  // The widest x tile whose shared memory stays within the default 48 KiB: wide tiles make
  // longer contiguous row reads (measured on H100: 128 columns beat 32 by about 20%).
  const int r = taps.radius;
  if (std::size_t(kColTile + 2 * r) * 128 * sizeof(float) <= kDefaultShared)
    launch_column<AXIS, 128>(s, src, dst, region, taps);
  else if (std::size_t(kColTile + 2 * r) * 64 * sizeof(float) <= kDefaultShared)
    launch_column<AXIS, 64>(s, src, dst, region, taps);
  else
    launch_column<AXIS, 32>(s, src, dst, region, taps);
}

template <int RM>
void launch_z_stream(cudaStream_t s, VolumeView<const float> src, VolumeView<float> dst,
                     const Box& region, const GaussianTaps& taps) {
  const dim3 grid(cap((region.size.x + kZBlockX - 1) / kZBlockX, 0x7fffffffu),
                  unsigned((region.size.y + kZBlockY - 1) / kZBlockY),
                  unsigned((region.size.z + kZLen - 1) / kZLen));
  pass_z_stream_kernel<RM><<<grid, dim3(kZBlockX, kZBlockY), 0, s>>>(src, dst, region, taps);
  GIGAREG_CUDA_CHECK_LAUNCH("gaussian pass_z_stream_kernel");
}

bool z_stream_ok(const Box& region, int r) {
  return r <= kMaxRingRadius && (region.size.y + kZBlockY - 1) / kZBlockY <= index_t(kMaxGridYZ) &&
         (region.size.z + kZLen - 1) / kZLen <= index_t(kMaxGridYZ);
}

template <int RM>
void launch_yx_reg(cudaStream_t s, VolumeView<const float> src, VolumeView<float> dst,
                   const Box& region, const GaussianTaps& ty, const GaussianTaps& tx) {
  const bool vec = dst.stride.x == 1 && dst.stride.y % 4 == 0 && dst.stride.z % 4 == 0 &&
                   (region.lo.x - dst.box_lo.x) % 4 == 0 &&
                   reinterpret_cast<std::uintptr_t>(dst.data) % 16 == 0;
  const dim3 grid(cap((region.size.x + kYxOutW - 1) / kYxOutW, 0x7fffffffu),
                  unsigned((region.size.y + kYxOutH - 1) / kYxOutH), cap(region.size.z, kMaxGridYZ));
  pass_yx_reg_kernel<RM><<<grid, dim3(32 * kYxWarps), 0, s>>>(src, dst, region, ty, tx, vec ? 1 : 0);
  GIGAREG_CUDA_CHECK_LAUNCH("gaussian pass_yx_reg_kernel");
}

// The transpose of a whole-grid pass (gigareg.torch's backward of the smoothing): one thread
// per output voxel gathers along its line with gaussian_adjoint_sample, the CPU reference's
// formula. A plain kernel (no tiles): it runs once per backward call, not in the registration's
// iterations.
__global__ void adjoint_pass_kernel(VolumeView<const float> src, VolumeView<float> dst, int axis,
                                    GaussianTaps taps) {
  const Index3 n = src.global_size;
  const index_t count = n.x * n.y * n.z;
  const index_t step = index_t(gridDim.x) * blockDim.x;
  for (index_t v = index_t(blockIdx.x) * blockDim.x + threadIdx.x; v < count; v += step) {
    Index3 g{v % n.x, (v / n.x) % n.y, v / (n.x * n.y)};
    const index_t j = g[axis];
    g[axis] = 0;
    const float* line = &src.at(g.x, g.y, g.z);
    g[axis] = j;
    dst.at(g.x, g.y, g.z) = gaussian_adjoint_sample(taps.w, taps.radius, line, src.stride[axis], j, n[axis]);
  }
}

}  // namespace

void gaussian_pass(void* stream, VolumeView<const float> src, VolumeView<float> dst,
                   const Box& region, int axis, const GaussianTaps& taps) {
  if (region.empty()) return;
  GIGAREG_REQUIRE(src.global_size.x < (index_t(1) << 30) && src.global_size.y < (index_t(1) << 30) &&
                      src.global_size.z < (index_t(1) << 30),
                  "grid axes must be shorter than 2^30 voxels");
  auto s = static_cast<cudaStream_t>(stream);
  if (axis == 0) {
    const int rows = x_pass_rows(taps.radius);
    const int out_w = x_tile_outputs(taps.radius);
    const index_t tiles = (region.size.x + out_w - 1) / out_w;
    const index_t groups = (region.size.y + rows - 1) / rows;
    GIGAREG_REQUIRE(groups <= index_t(kMaxGridYZ), "the region is too long along y for the x pass");
    const dim3 grid(cap(tiles, 0x7fffffffu), unsigned(groups), cap(region.size.z, kMaxGridYZ));
    const std::size_t shared = std::size_t(rows) * (out_w + 2 * taps.radius) * sizeof(float);
    pass_x_kernel<<<grid, dim3(kRowTile, kRowThreadsY), shared, s>>>(src, dst, region, taps, out_w, rows);
    GIGAREG_CUDA_CHECK_LAUNCH("gaussian pass_x_kernel");
  } else if (axis == 1) {
    launch_column<1>(s, src, dst, region, taps);
  } else if (z_stream_ok(region, taps.radius)) {
    switch (ring_bucket(taps.radius)) {
      case 4: launch_z_stream<4>(s, src, dst, region, taps); break;
      case 8: launch_z_stream<8>(s, src, dst, region, taps); break;
      default: launch_z_stream<16>(s, src, dst, region, taps); break;
    }
  } else {
    launch_column<2>(s, src, dst, region, taps);
  }
}

void gaussian_adjoint_pass(void* stream, VolumeView<const float> src, VolumeView<float> dst, int axis,
                           const GaussianTaps& taps) {
  const index_t count = src.global_size.x * src.global_size.y * src.global_size.z;
  if (count == 0) return;
  constexpr int kThreads = 256;
  const unsigned blocks = cap((count + kThreads - 1) / kThreads, 1u << 20);  // grid-stride beyond
  adjoint_pass_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(src, dst, axis, taps);
  GIGAREG_CUDA_CHECK_LAUNCH("gaussian adjoint_pass_kernel");
}

bool gaussian_yx_fusable(int radius_y, int radius_x) {
  return radius_x <= kMaxNarrowX && fused_shared_bytes(radius_y) <= kFuseMaxShared;
}

void gaussian_pass_yx(void* stream, VolumeView<const float> src, VolumeView<float> dst,
                      const Box& region, const GaussianTaps& taps_y, const GaussianTaps& taps_x) {
  if (region.empty()) return;
  GIGAREG_REQUIRE(gaussian_yx_fusable(taps_y.radius, taps_x.radius),
                  "radii too large for the fused y-x pass");
  GIGAREG_REQUIRE(src.global_size.x < (index_t(1) << 30) && src.global_size.y < (index_t(1) << 30),
                  "grid axes must be shorter than 2^30 voxels");
  const int rmax = std::max(taps_y.radius, taps_x.radius);
  if (rmax <= kMaxRingRadius &&
      (region.size.y + kYxOutH - 1) / kYxOutH <= index_t(kMaxGridYZ)) {
    auto s = static_cast<cudaStream_t>(stream);
    switch (ring_bucket(rmax)) {
      case 4: launch_yx_reg<4>(s, src, dst, region, taps_y, taps_x); break;
      case 8: launch_yx_reg<8>(s, src, dst, region, taps_y, taps_x); break;
      default: launch_yx_reg<16>(s, src, dst, region, taps_y, taps_x); break;
    }
    return;
  }
  const std::size_t shared = fused_shared_bytes(taps_y.radius);
  if (shared > kDefaultShared) {
    GIGAREG_CUDA_CHECK(cudaFuncSetAttribute(pass_yx_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(kFuseMaxShared)));
  }
  const int out_w = kRowTile - 2 * taps_x.radius;
  const index_t xblocks = (region.size.x + out_w - 1) / out_w;
  const index_t yblocks = (region.size.y + kFuseY - 1) / kFuseY;
  GIGAREG_REQUIRE(yblocks <= index_t(kMaxGridYZ), "the region is too long along y");
  const dim3 grid(cap(xblocks, 0x7fffffffu), unsigned(yblocks), cap(region.size.z, kMaxGridYZ));
  pass_yx_kernel<<<grid, dim3(kRowTile, kRowThreadsY), shared, static_cast<cudaStream_t>(stream)>>>(
      src, dst, region, taps_y, taps_x);
  GIGAREG_CUDA_CHECK_LAUNCH("gaussian pass_yx_kernel");
}

}  // namespace gigareg::cuda
