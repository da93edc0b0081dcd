// CUDA LNCC loss with its exact gradient (or ANTs' approximation), fused kernels.
// Per-centre math: include/gigareg/device/lncc.hpp. Nothing of volume size is allocated: only
// per-(slice, tile) loss partials.
//
// Two kernels. lncc_box_kernel (box window, exact gradient, H <= 2, F and W with the same x-y
// strides: the default 5^3 LNCC) is the fast path; lncc_kernel handles everything else
// (Gaussian windows, H > 2, ANTs' approximation, the value only). Both march along z one
// window-centre plane at a time over a tile of columns, so that every input plane is read from
// DRAM about once and the window sums are running sums, not recomputed per centre:
//   z sums of (F, W, FF, WW, FW) over the tile grown by 2H -> x pass -> y pass -> cc and the
//   adjoint coefficients (a, b, c) at the centres -> x and y passes of (a, b, c) -> z sum ->
//   grad = A F + B W + C on the output plane H behind the centre plane.
// The box kernel's shape (tile and block sizes, which warps do what, TMA-staged input planes,
// padded shared rows) was chosen by measurement: docs/benchmarks.md ("LNCC kernels, stage by
// stage", and the rounds under "LNCC") says what each stage does, why, and what was tried and
// dropped; read it before changing the schedule. The staged and register paths do the same
// arithmetic in the same order: bit-identical results.
// Borders: inputs are read only inside owned grown by the halo (2H, or H for ANTs / value only)
// and clipped to the grid; everything outside is zero, which is the clipped window. Centres
// outside owned grown by H contribute nothing (their sums would be incomplete).
// Precision: float sums over intensities shifted by the tile's first owned F and W (cc is
// shift-invariant); the running z sums accumulate a few ulps over a segment (tested over 1400
// planes: LossCuda.LnccLongSegmentsKeepPrecision). The per-slice loss partial is the sum over
// tiles in a fixed order.

#include <algorithm>
#include <atomic>
#include <limits>
#include <type_traits>

#include <cuda.h>  // CUtensorMap, cuTensorMapEncodeTiled's types (the function: via the runtime)
#include <cuda/ptx>

#include "cuda/check.cuh"
#include "cuda/loss.hpp"
#include "cuda/scratch_pool.hpp"

namespace gigareg::cuda {
namespace {

// TMA and mbarriers (the staged box kernel) need sm_90; older targets compile that kernel to a
// trap and the host never selects it there (staged_kernel_runs).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define GIGAREG_LNCC_TMA 1
#else
#define GIGAREG_LNCC_TMA 0
#endif

constexpr int kTX = 32;

/// Compile-time tile geometry for window radius H.
template <int H, bool kBox>
struct Tile {
  static constexpr int kThreads = H <= 2 ? 512 : 256;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int TY = H <= 2 ? 16 : 8;
  static constexpr int K = 2 * H + 1;
  static constexpr int R2X = kTX + 4 * H, R2Y = TY + 4 * H;  // tile grown by 2H
  static constexpr int R1X = kTX + 2 * H, R1Y = TY + 2 * H;  // tile grown by H
  static constexpr int PZ = R2X | 1, P1 = R1X | 1, PA = kTX + 1;  // odd pitches
  static constexpr int ZQ = R2Y * PZ, XQ = R2Y * P1, SQ = R1Y * P1, AXQ = R1Y * PA;
  // Outputs per work item of the passes 2, 3, 5, 6 (register windows; running sums for a box).
  static constexpr int SEG2 = kBox ? (R1X + 2) / 3 : 4, NS2 = (R1X + SEG2 - 1) / SEG2;
  static constexpr int SEG3 = kBox ? (R1Y + 1) / 2 : 4, NS3 = (R1Y + SEG3 - 1) / SEG3;
  static constexpr int SEG5 = kBox ? 8 : 4, NS5 = kTX / SEG5;
  static constexpr int SEG6 = kBox ? TY / 2 : 4, NS6 = TY / SEG6;
  // float offsets of the shared arrays
  static constexpr int kZ = 0, kXZ = kZ + 5 * ZQ, kS = kXZ + 5 * XQ;
  static constexpr int kOffF = kS + 5 * SQ, kOffW = kOffF + R2X * R2Y, kOffM = kOffW + R2X * R2Y;
  static constexpr int kNx = kOffM + R1X * R1Y, kNy = kNx + R1X, kRing = kNy + R1Y;
  static constexpr std::size_t bytes(bool ring) {
    return sizeof(float) * (std::size_t(kRing) + (ring ? std::size_t(3) * K * TY * kTX : 0));
  }
  static_assert(3 * AXQ <= 5 * SQ && 3 * SQ <= 5 * XQ, "aliased arrays must fit");
};

struct LnccArgs {
  // Box kernel with staged inputs: 3-D tensor maps of F and W, with boxes of one plane of the R2
  // tile (stage A) and of the output tile (stage E).
  CUtensorMap fixed_map, warped_map, fixed_out_map, warped_out_map;
  VolumeView<const float> fixed, warped, mask;
  VolumeView<float> grad;
  Box owned;
  Box valid;    // inputs are read only here: owned grown by the halo, clipped
  Box centres;  // centres that carry adjoint coefficients
  Index3 global;
  LnccTaps taps;
  float eps;
  float min_vf, min_vw;  // variance floors (device/lncc.hpp)
  index_t tiles_x, tiles;
  index_t zchunk;
  index_t full_tiles, split_tiles, parts;  // box kernel: parts == 0 chunk mode, else tile mode
  bool exact;  // exact gradient (stages 5-7)
  bool ants;   // ANTs' approximation (written in stage 4)
  bool box;    // running z sums
  double* tile_partials;  // [slice][tile][2], or null
};

/// In-plane offset of (x, y) in a view (the caller checked it fits in int).
__device__ __forceinline__ int plane_offset(const VolumeView<const float>& v, index_t x, index_t y) {
  return int((x - v.box_lo.x) * v.stride.x + (y - v.box_lo.y) * v.stride.y);
}
__device__ __forceinline__ const float* plane(const VolumeView<const float>& v, index_t z) {
  return v.data + (z - v.box_lo.z) * v.stride.z;
}

/// One 1-D window pass over `len` (1..SEG) consecutive outputs: out[o] = sum_d w[d] in[o + d]
/// (elements `stride` apart); inputs at or past `avail` read as 0. The SEG + 2H inputs are loaded
/// once into registers; a box window then slides (one add and one subtract per output), other
/// windows take the 2H + 1 products.
template <int H, int SEG, bool kBox>
__device__ __forceinline__ void window_pass(const float* in, int in_stride, int avail, float* out,
                                            int out_stride, int len, const float* w) {
  float r[SEG + 2 * H];
#pragma unroll
  for (int k = 0; k < SEG + 2 * H; ++k) r[k] = k < avail ? in[k * in_stride] : 0.0f;
  if (kBox) {
    float acc = 0.0f;
#pragma unroll
    for (int d = 0; d <= 2 * H; ++d) acc += r[d];
    out[0] = acc;
#pragma unroll
    for (int o = 1; o < SEG; ++o) {
      acc += r[o + 2 * H] - r[o - 1];
      if (o < len) out[o * out_stride] = acc;
    }
  } else {
#pragma unroll
    for (int o = 0; o < SEG; ++o) {
      float acc = 0.0f;
#pragma unroll
      for (int d = 0; d <= 2 * H; ++d) acc += w[d] * r[o + d];
      if (o < len) out[o * out_stride] = acc;
    }
  }
}

template <int H, bool kBox>
__global__ void __launch_bounds__(Tile<H, kBox>::kThreads, 2)
    lncc_kernel(__grid_constant__ const LnccArgs p) {
  using T = Tile<H, kBox>;
  constexpr int K = T::K, TY = T::TY, NT = T::kThreads;
  extern __shared__ float sm[];
  __shared__ double red[T::kWarps];
  __shared__ int red_count[T::kWarps];
  float* Z = sm + T::kZ;
  float* XZ = sm + T::kXZ;
  float* S = sm + T::kS;
  int* offF = reinterpret_cast<int*>(sm + T::kOffF);
  int* offW = reinterpret_cast<int*>(sm + T::kOffW);
  int* offM = reinterpret_cast<int*>(sm + T::kOffM);
  float* nxs = sm + T::kNx;
  float* nys = sm + T::kNy;
  float* RING = sm + T::kRing;
  float* ABC = XZ;  // XZ is dead once S is computed
  float* AX = S;    // S is dead once ABC is computed
  const float* w = p.taps.w;
  const int tid = threadIdx.x;

  const index_t tile = blockIdx.x;
  const index_t ox = p.owned.lo.x + (tile % p.tiles_x) * kTX;
  const index_t oy = p.owned.lo.y + (tile / p.tiles_x) * TY;
  const index_t oz0 = p.owned.lo.z + index_t(blockIdx.y) * p.zchunk;
  const index_t oz1 = min(oz0 + p.zchunk, p.owned.lo.z + p.owned.size.z);
  const Index3 ohi = p.owned.hi();
  const Index3 vhi = p.valid.hi();
  const Index3 chi = p.centres.hi();
  const float shift_f = p.fixed.at(ox, oy, oz0);
  const float shift_w = p.warped.at(ox, oy, oz0);
  const index_t zbeg = p.exact ? oz0 - H : oz0;
  const index_t zend = p.exact ? oz1 + H : oz1;
  const index_t r2x0 = ox - 2 * H, r2y0 = oy - 2 * H;  // global origin of R2
  const index_t r1x0 = ox - H, r1y0 = oy - H;          // global origin of R1
  // Owned centres of the tile, in R1 coordinates: [H, own_x1) x [H, own_y1).
  const int own_x1 = int(min(index_t(H + kTX), ohi.x - r1x0));
  const int own_y1 = int(min(index_t(H + TY), ohi.y - r1y0));

  // Per-block tables: in-plane offsets of the R2 columns (-1: outside the valid inputs), of the
  // R1 mask columns (-1: not a centre column), and the window weight totals n_x, n_y.
  for (int c = tid; c < T::R2X * T::R2Y; c += NT) {
    const int cy = c / T::R2X, cx = c - cy * T::R2X;
    const index_t gx = r2x0 + cx, gy = r2y0 + cy;
    const bool ok = gx >= p.valid.lo.x && gx < vhi.x && gy >= p.valid.lo.y && gy < vhi.y;
    offF[c] = ok ? plane_offset(p.fixed, gx, gy) : -1;
    offW[c] = ok ? plane_offset(p.warped, gx, gy) : -1;
  }
  for (int e = tid; e < T::R1X * T::R1Y; e += NT) {
    const int ey = e / T::R1X, ex = e - ey * T::R1X;
    const index_t gx = r1x0 + ex, gy = r1y0 + ey;
    const bool ok = gx >= p.centres.lo.x && gx < chi.x && gy >= p.centres.lo.y && gy < chi.y;
    offM[e] = !ok ? -1 : (p.mask.data != nullptr ? plane_offset(p.mask, gx, gy) : 0);
  }
  for (int i = tid; i < T::R1X; i += NT) nxs[i] = lncc_axis_weight<float>(w, H, r1x0 + i, p.global.x);
  for (int i = tid; i < T::R1Y; i += NT) nys[i] = lncc_axis_weight<float>(w, H, r1y0 + i, p.global.y);
  if (p.exact)
    for (int i = tid; i < 3 * K * TY * kTX; i += NT) RING[i] = 0.0f;
  __syncthreads();

  auto load5 = [&](const float* fz, const float* wz, int c, float* v) {
    const float f = fz[offF[c]] - shift_f;
    const float m = wz[offW[c]] - shift_w;
    v[0] = f;
    v[1] = m;
    v[2] = f * f;
    v[3] = m * m;
    v[4] = f * m;
  };

  bool z_started = false;
  int slot = 0;  // ring slot of plane zc: (zc - zbeg) mod K
  for (index_t zc = zbeg; zc < zend; ++zc, slot = slot + 1 == K ? 0 : slot + 1) {
    if (zc >= 0 && zc < p.global.z) {
      // ---- 1. z-window sums of the R2 columns.
      if (kBox && z_started) {
        const bool add_ok = zc + H < vhi.z, sub_ok = zc - H - 1 >= p.valid.lo.z;
        const float* fa = plane(p.fixed, add_ok ? zc + H : p.valid.lo.z);
        const float* wa = plane(p.warped, add_ok ? zc + H : p.valid.lo.z);
        const float* fs = plane(p.fixed, sub_ok ? zc - H - 1 : p.valid.lo.z);
        const float* ws = plane(p.warped, sub_ok ? zc - H - 1 : p.valid.lo.z);
        for (int c = tid; c < T::R2X * T::R2Y; c += NT) {
          if (offF[c] < 0) continue;  // stays zero
          const int cy = c / T::R2X, cx = c - cy * T::R2X;
          float* zq = Z + cy * T::PZ + cx;
          float add[5] = {0, 0, 0, 0, 0}, sub[5] = {0, 0, 0, 0, 0};
          if (add_ok) load5(fa, wa, c, add);
          if (sub_ok) load5(fs, ws, c, sub);
#pragma unroll
          for (int q = 0; q < 5; ++q) zq[q * T::ZQ] += add[q] - sub[q];
        }
      } else {
        for (int c = tid; c < T::R2X * T::R2Y; c += NT) {
          const int cy = c / T::R2X, cx = c - cy * T::R2X;
          float* zq = Z + cy * T::PZ + cx;
          float s[5] = {0, 0, 0, 0, 0};
          if (offF[c] >= 0) {
#pragma unroll
            for (int d = -H; d <= H; ++d) {
              const index_t zi = zc + d;
              if (zi < p.valid.lo.z || zi >= vhi.z) continue;
              float v[5];
              load5(plane(p.fixed, zi), plane(p.warped, zi), c, v);
#pragma unroll
              for (int q = 0; q < 5; ++q) s[q] += w[H + d] * v[q];
            }
          }
#pragma unroll
          for (int q = 0; q < 5; ++q) zq[q * T::ZQ] = s[q];
        }
      }
      z_started = true;
      __syncthreads();

      // ---- 2. x pass: XZ[q][R2 row][R1 column]; items (q, row, segment), rows fastest.
      for (int it = tid; it < 5 * T::R2Y * T::NS2; it += NT) {
        const int q = it / (T::R2Y * T::NS2), rem = it - q * (T::R2Y * T::NS2);
        const int row = rem % T::R2Y, x0 = (rem / T::R2Y) * T::SEG2;
        window_pass<H, T::SEG2, kBox>(Z + q * T::ZQ + row * T::PZ + x0, 1, T::R2X - x0,
                                      XZ + q * T::XQ + row * T::P1 + x0, 1,
                                      min(T::SEG2, T::R1X - x0), w);
      }
      __syncthreads();

      // ---- 3. y pass: S[q][R1 row][R1 column]; items (q, column, segment), columns fastest.
      for (int it = tid; it < 5 * T::R1X * T::NS3; it += NT) {
        const int q = it / (T::R1X * T::NS3), rem = it - q * (T::R1X * T::NS3);
        const int col = rem % T::R1X, y0 = (rem / T::R1X) * T::SEG3;
        window_pass<H, T::SEG3, kBox>(XZ + q * T::XQ + y0 * T::P1 + col, T::P1, T::R2Y - y0,
                                      S + q * T::SQ + y0 * T::P1 + col, T::P1,
                                      min(T::SEG3, T::R1Y - y0), w);
      }
      __syncthreads();

      // ---- 4. cc and adjoint coefficients at the R1 centres; loss; ANTs gradient.
      {
        const bool owned_plane = zc >= oz0 && zc < oz1;
        const bool centre_plane = zc >= p.centres.lo.z && zc < chi.z;
        float nz = lncc_axis_weight<float>(w, H, zc, p.global.z);
        asm volatile("" : "+f"(nz));  // keep it out of the per-centre branch
        const float* mz = p.mask.data != nullptr ? plane(p.mask, zc) : nullptr;
        float loss_sum = 0.0f;
        int loss_count = 0;
        for (int e = tid; e < T::R1X * T::R1Y; e += NT) {
          const int ey = e / T::R1X, ex = e - ey * T::R1X;
          const bool own = owned_plane && ex >= H && ex < own_x1 && ey >= H && ey < own_y1;
          const int om = offM[e];
          const bool centre = centre_plane && om >= 0 && (mz == nullptr || mz[om] > 0.5f);
          float a = 0.0f, b = 0.0f, c = 0.0f, n = 0.0f;
          if (centre) {
            n = nxs[ex] * nys[ey] * nz;
            const float* s = S + ey * T::P1 + ex;
            const LnccLocal<float> l =
                lncc_local<float>(n, s[0], s[T::SQ], s[2 * T::SQ], s[3 * T::SQ], s[4 * T::SQ], p.eps,
                                  p.min_vf, p.min_vw);
            a = l.a;
            b = l.b;
            c = l.c;
            if (own) {
              loss_sum -= l.cc;
              ++loss_count;
            }
          }
          if (p.ants && own) {
            float g = 0.0f;
            if (centre) {
              const int col = (ey + H) * T::R2X + ex + H;
              g = n * (a * (plane(p.fixed, zc)[offF[col]] - shift_f) +
                       b * (plane(p.warped, zc)[offW[col]] - shift_w) + c);
            }
            p.grad.at(r1x0 + ex, r1y0 + ey, zc) = g;
          }
          if (p.exact) {  // ABC lives in XZ's space, dead since the y pass
            float* o = ABC + ey * T::P1 + ex;
            o[0] = a;
            o[T::SQ] = b;
            o[2 * T::SQ] = c;
          }
        }
        if (p.tile_partials != nullptr && owned_plane) {  // uniform over the block
          // Each thread holds at most a few centres: its float sum goes to double per warp
          // (fixed shuffle tree), thread 0 adds the warps in order.
          double v = double(loss_sum);
          for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
          const int warp_count = __reduce_add_sync(0xffffffffu, loss_count);
          if ((tid & 31) == 0) {
            red[tid >> 5] = v;
            red_count[tid >> 5] = warp_count;
          }
          __syncthreads();
          if (tid == 0) {
            double sum = 0.0;
            int count = 0;
            for (int i = 0; i < T::kWarps; ++i) {
              sum += red[i];
              count += red_count[i];
            }
            double* out = p.tile_partials + ((zc - p.owned.lo.z) * p.tiles + tile) * 2;
            out[0] = sum;
            out[1] = double(count);
          }
        }
        __syncthreads();  // S has been read by everyone: AX may overwrite it
      }

      if (p.exact) {
        // ---- 5. x pass of (a, b, c): AX[q][R1 row][tile column].
        for (int it = tid; it < 3 * T::R1Y * T::NS5; it += NT) {
          const int q = it / (T::R1Y * T::NS5), rem = it - q * (T::R1Y * T::NS5);
          const int row = rem % T::R1Y, x0 = (rem / T::R1Y) * T::SEG5;
          window_pass<H, T::SEG5, kBox>(ABC + q * T::SQ + row * T::P1 + x0, 1, T::R1X - x0,
                                        AX + q * T::AXQ + row * T::PA + x0, 1, T::SEG5, w);
        }
        __syncthreads();
        // ---- 6. y pass into the ring slot of plane zc.
        for (int it = tid; it < 3 * kTX * T::NS6; it += NT) {
          const int q = it / (kTX * T::NS6), rem = it - q * (kTX * T::NS6);
          const int col = rem % kTX, y0 = (rem / kTX) * T::SEG6;
          window_pass<H, T::SEG6, kBox>(AX + q * T::AXQ + y0 * T::PA + col, T::PA, T::R1Y - y0,
                                        RING + ((q * K + slot) * TY + y0) * kTX + col, kTX,
                                        T::SEG6, w);
        }
      }
    } else if (p.exact) {
      // A plane outside the grid holds no centre: its ring slot is zero.
      for (int i = tid; i < 3 * TY * kTX; i += NT) {
        const int q = i / (TY * kTX), e = i - q * (TY * kTX);
        RING[(q * K + slot) * TY * kTX + e] = 0.0f;
      }
    }
    __syncthreads();

    // ---- 7. z pass of the ring (planes zc - 2H .. zc) and the gradient of plane zg = zc - H.
    const index_t zg = zc - H;
    if (p.exact && zg >= oz0 && zg < oz1) {
      const float* fz = plane(p.fixed, zg);
      const float* wz = plane(p.warped, zg);
      const int first = slot + 1 == K ? 0 : slot + 1;  // slot of plane zc - 2H
      for (int e = tid; e < TY * kTX; e += NT) {
        const int ey = e / kTX, ex = e - ey * kTX;
        const index_t gx = ox + ex, gy = oy + ey;
        if (gx >= ohi.x || gy >= ohi.y) continue;
        float acc[3] = {0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int d = 0; d < K; ++d) {
          const int s = first + d < K ? first + d : first + d - K;
#pragma unroll
          for (int q = 0; q < 3; ++q) acc[q] += w[d] * RING[(q * K + s) * TY * kTX + e];
        }
        const int col = (ey + 2 * H) * T::R2X + ex + 2 * H;
        const float f = fz[offF[col]] - shift_f;
        const float m = wz[offW[col]] - shift_w;
        p.grad.at(gx, gy, zg) = acc[0] * f + acc[1] * m + acc[2];
      }
    }
    __syncthreads();
  }
}

// ==========================================================================================
// Box window, exact gradient, H <= 2: the fast path (see the header comment at the top).
// ==========================================================================================

/// Compile-time geometry of the box-window kernel: 32 x TY outputs per block, TY = 2 x warps
/// (stage E gives each thread two output rows of one column). Rows of the arrays that stages B
/// and D read with 16-byte loads have pitches of 4 (mod 8) floats: the eight rows a quarter warp
/// reads then fall into distinct bank groups.
template <int H>
struct BoxTile {
  static constexpr int kThreads = 384, kWarps = kThreads / 32;
  static constexpr int TX = kTX, TY = 2 * kWarps;
  static constexpr int R2X = TX + 4 * H, R2Y = TY + 4 * H;  // tile grown by 2H: inputs
  static constexpr int R1X = TX + 2 * H, R1Y = TY + 2 * H;  // tile grown by H: centres
  static constexpr int up4(int n) { return (n + 3) / 4 * 4; }
  static constexpr int pitch(int n) { return up4(n) % 8 == 4 ? up4(n) : up4(n) + 4; }
  // B: x pass; warp (q, s) takes segment s (outputs [BX0, BX0 + BL0) or [BX1, R1X)) of every
  // R2 row, lane = row. Loads are rounded up to whole float4s.
  static constexpr int BL0 = 20, BX1 = BL0, BL1 = R1X - BL0;
  // Z: rows of PZ floats in groups of 4; when PZ is a multiple of 8 floats (H = 2: 40) each
  // group is followed by 4 pad floats, so that the eight rows a quarter warp of stage B reads
  // (16-byte loads) fall into distinct bank groups. (Padding every row to 44 floats instead gave
  // stage A 10% more positions.)
  static constexpr int PZ = up4(std::max(R2X, BX1 + up4(BL1 + 2 * H)));
  static constexpr int ZGROUP = 4 * PZ + (PZ % 8 == 0 ? 4 : 0);
  static constexpr int zrow(int row) { return (row >> 2) * ZGROUP + (row & 3) * PZ; }
  // A: threads walk Z's positions (R2Y rows and the pads; a pad only ever adds zeros): a warp's
  // accesses are consecutive words (no bank conflicts) and a thread's Z index is its position.
  static constexpr int ZN = (R2Y + 3) / 4 * ZGROUP;
  static constexpr int SLOTS = (ZN + kThreads - 1) / kThreads;  // Z positions per thread (A)
  // C: y pass + cc; items (R1 column, segment of SEGC = 4 centres), rows padded to CROWS.
  static constexpr int SEGC = 4, NSC = (R1Y + SEGC - 1) / SEGC, CROWS = NSC * SEGC;
  static constexpr int XROWS = CROWS + 2 * H;  // XZ rows (>= R2Y; the extra ones stay zero)
  // XZ, ABC and NXY: rows of P1 = 40 floats in groups of 4, each group followed by 4 pad floats
  // (XGROUP = 164 = 4 mod 32). Stage C's thread t takes column t mod R1X of segment t / R1X, so
  // a segment starts XGROUP floats after the previous one: with XGROUP = R1X (mod 32) (H = 2)
  // a warp's 32 items read 32 consecutive banks even where it spans two segments (H = 1 keeps a
  // few 2-way conflicts). The float4 rows of stages B and D (lane = row) stay conflict-free:
  // rows 4g .. 4g + 3 start in bank groups 2k + g (mod 8).
  static constexpr int P1 = 40, XGROUP = 4 * P1 + 4;
  static constexpr int xrow(int row) { return (row >> 2) * XGROUP + (row & 3) * P1; }
  // D: x pass of (a, b, c); warp (q, s) takes columns [s SEGD, (s + 1) SEGD) of every R1 row.
  static constexpr int NSD = kWarps / 3, SEGD = TX / NSD;
  static constexpr int PA = pitch(TX);
  static constexpr int ZQ = ZN, XQ = (XROWS + 3) / 4 * XGROUP, CQ = NSC * XGROUP;
  static constexpr int AXQ = R1Y * PA;
  static constexpr int kZ = 0, kXZ = kZ + 5 * ZQ, kABC = kXZ + 5 * XQ, kNXY = kABC + 3 * CQ;
  static constexpr int kEnd = kNXY + CQ;
  // Staged inputs (kStaged): the four planes of one step (F and W of the added plane, F and W of
  // the removed one) as TMA writes them, dense rows of R2X floats, each plane 128-byte aligned;
  // stage A reads them as float4 groups of 4 positions (SG groups per plane).
  static constexpr int SPLANE = (R2X * R2Y + 31) / 32 * 32, SG = R2X * R2Y / 4;
  static constexpr int kStage = (kEnd + 31) / 32 * 32;
  // ... and F, W of the output plane (the output tile, rows of TX floats) for stage E.
  static constexpr int OPLANE = (TX * TY + 31) / 32 * 32;
  static constexpr int kStageOut = kStage + 4 * SPLANE, kStagedEnd = kStageOut + 2 * OPLANE;
  static constexpr std::size_t bytes(bool staged) {
    return sizeof(float) * std::size_t(staged ? kStagedEnd : kEnd);
  }
  static_assert(BL0 % 4 == 0 && BL1 > 0 && BL1 <= BL0 && 5 * 2 <= kWarps, "B segments");
  static_assert(R2Y <= 32 && R1Y <= 32, "one lane per row in B and D");
  static_assert(P1 >= R1X && P1 % 32 == 8 && XGROUP % 32 == 4, "XZ rows");
  static_assert(up4(BL0 + 2 * H) <= PZ && BX1 + up4(BL1 + 2 * H) <= PZ, "B reads inside rows");
  static_assert(3 * NSD == kWarps && NSD * SEGD == TX && SEGD % 4 == 0, "D segments");
  static_assert((NSD - 1) * SEGD + up4(SEGD + 2 * H) <= P1, "D reads inside rows");
  static_assert(3 * AXQ <= 5 * XQ, "AX must fit in XZ");
  static_assert(XROWS >= R2Y && R1X * NSC <= kThreads, "C items");
  // Staged: warps 0-3 update Z for the next step while stage C runs on warps 4-11.
  static constexpr int kStageThreads = 128;
  static_assert(R1X * NSC <= kThreads - kStageThreads && R2X % 4 == 0,
                "staged stage A");
  static_assert(kXZ % 4 == 0 && kABC % 4 == 0 && ZQ % 4 == 0 && XQ % 4 == 0 && CQ % 4 == 0 &&
                    AXQ % 4 == 0,
                "16-byte aligned rows");
};

/// out[o] = sum of in[o .. o + 2H] for o < LEN; `in` and `out` 16-byte aligned, whole float4s
/// loaded (up to 3 floats past the window are read, not used).
template <int H, int LEN>
__device__ __forceinline__ void box_row_vec(const float* in, float* out) {
  constexpr int NL = (LEN + 2 * H + 3) / 4 * 4;
  float r[NL];
#pragma unroll
  for (int i = 0; i < NL / 4; ++i) {
    const float4 t = reinterpret_cast<const float4*>(in)[i];
    r[4 * i] = t.x;
    r[4 * i + 1] = t.y;
    r[4 * i + 2] = t.z;
    r[4 * i + 3] = t.w;
  }
  float o[LEN];
  float acc = r[0];
#pragma unroll
  for (int d = 1; d <= 2 * H; ++d) acc += r[d];
  o[0] = acc;
#pragma unroll
  for (int k = 1; k < LEN; ++k) {
    acc += r[k + 2 * H] - r[k - 1];
    o[k] = acc;
  }
#pragma unroll
  for (int i = 0; i < LEN / 4; ++i)
    reinterpret_cast<float4*>(out)[i] =
        make_float4(o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]);
  if constexpr (LEN % 4 >= 2)
    reinterpret_cast<float2*>(out)[LEN / 4 * 2] =
        make_float2(o[LEN / 4 * 4], o[LEN / 4 * 4 + 1]);
  if constexpr (LEN % 2 == 1) out[LEN - 1] = o[LEN - 1];
}

/// A block-uniform pointer the compiler may not fold into per-thread address arithmetic (so a
/// load costs one wide multiply-add from it, not a 64-bit recomputation of the plane offset).
template <class P>
__device__ __forceinline__ P* opaque(P* ptr) {
  asm("" : "+l"(ptr));
  return ptr;
}

/// The reciprocal of lncc_local in the box kernel when eps is a normal float: the hardware
/// reciprocal without the denormal fix-ups of __fdividef (4 instructions fewer). Its arguments
/// are n >= 1 and D = vf vw + eps >= eps; for every argument in [2^-126, 2^126) the result is
/// the same as lncc_recip's (D >= 2^126 would need variances above 1e19).
struct LnccFastRecip {
  __device__ __forceinline__ float operator()(float x) const {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
  }
};

struct BoxLocal {
  float cc, a, b, c;
};

/// lncc_local's cc and adjoint coefficients with 1 / n and -2 / n given (the box kernel reads
/// +-1 / (n_x n_y) from a table and multiplies by 1 / n_z, which saves a reciprocal per centre);
/// the products are grouped to fold the signs. inv_n = 0 (not a centre) gives exact zeros when
/// the reciprocal of eps is finite.
template <bool kFastRecip>
__device__ __forceinline__ BoxLocal box_local(float inv_n, float m2n, float sf, float sw,
                                              float sff, float sww, float sfw, float eps,
                                              float min_vf, float min_vw) {
  const LnccMoments<float> m = lncc_moments(inv_n, sf, sw, sff, sww, sfw, min_vf, min_vw);
  const float mf = m.mf, mw = m.mw, vf = m.vf, vw = m.vw, cross = m.cross;
  const bool vw_positive = m.vw_positive;
  const float inv_d = std::conditional_t<kFastRecip, LnccFastRecip, LnccRecip>{}(vf * vw + eps);
  const float u = cross * inv_d;
  BoxLocal r;
  r.cc = u * cross;
  // a = -2 cross / (D n), b = 2 cc vf / (D n) (0 where vw was clamped), c = -a mf - b mw.
  r.a = u * m2n;
  r.b = vw_positive ? (r.cc * vf * inv_d) * -m2n : 0.0f;
  r.c = -(r.a * mf + r.b * mw);
  return r;
}

/// Stage A's change of z sum q (F, W, FF, WW, FW) at one position: the added plane's shifted
/// intensities (fn, wn) in, the removed plane's (fo, wo) out. One function for both ways of
/// loading them, so that both round alike.
template <int q>
__device__ __forceinline__ float z_delta(float fn, float wn, float fo, float wo) {
  if constexpr (q == 0) return fn - fo;
  if constexpr (q == 1) return wn - wo;
  if constexpr (q == 2) return fn * fn - fo * fo;
  if constexpr (q == 3) return wn * wn - wo * wo;
  return fn * wn - fo * wo;
}

#if GIGAREG_LNCC_TMA
/// Announces `bytes` of TMA copies completing on mbarrier `bar` (one arrival: the issuing thread).
__device__ __forceinline__ void tma_expect(std::uint64_t* bar, std::uint32_t bytes) {
  ::cuda::ptx::mbarrier_arrive_expect_tx(::cuda::ptx::sem_release, ::cuda::ptx::scope_cta,
                                         ::cuda::ptx::space_shared, bar, bytes);
}
/// One box of `map` at coordinates c (x, y, z of the view) into dst, completing on `bar`.
__device__ __forceinline__ void tma_box(float* dst, const CUtensorMap* map,
                                        const std::int32_t (&c)[3], std::uint64_t* bar) {
  ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global, dst,
                                    map, c, bar);
}
#endif
/// Waits until the phase of `bar` with this parity has completed.
__device__ __forceinline__ void mbarrier_wait(std::uint64_t* bar, std::uint32_t parity) {
#if GIGAREG_LNCC_TMA
  while (!::cuda::ptx::mbarrier_try_wait_parity(bar, parity)) {
  }
#endif
}

/// Staged stage A: issues the TMA copies of one step's four planes (F, W of the added plane, then
/// of the removed plane, K planes before it) into St, completing on `bar`; geo: the coordinates of
/// F's and W's box at step 0's added plane. The tensor maps are read where the kernel's
/// parameters hold them (__grid_constant__). A box must start at a 16-byte boundary in x: the
/// host checks that (use_staged); a misaligned box faults with "illegal instruction".
template <class T>
__device__ __forceinline__ void stage_copy(const LnccArgs& p, float* St, std::uint64_t* bar,
                                           const int* geo, int j) {
#if GIGAREG_LNCC_TMA
  constexpr int K = T::R2X - T::R1X + 1, SPLANE = T::SPLANE;  // 2H + 1
  tma_expect(bar, std::uint32_t(4 * T::R2X * T::R2Y * sizeof(float)));
  const int fz = geo[2] + j, wz = geo[5] + j;
  const std::int32_t fa[3] = {geo[0], geo[1], fz}, wa[3] = {geo[3], geo[4], wz};
  const std::int32_t fs[3] = {geo[0], geo[1], fz - K}, ws[3] = {geo[3], geo[4], wz - K};
  tma_box(St, &p.fixed_map, fa, bar);
  tma_box(St + SPLANE, &p.warped_map, wa, bar);
  tma_box(St + 2 * SPLANE, &p.fixed_map, fs, bar);
  tma_box(St + 3 * SPLANE, &p.warped_map, ws, bar);
#endif
}

/// Staged stage E: issues the TMA copies of F and W of step j's output plane (the output tile)
/// into So, completing on `bar`; geo: the coordinates of F's and W's box at step 0's output plane.
template <class T>
__device__ __forceinline__ void stage_copy_out(const LnccArgs& p, float* So, std::uint64_t* bar,
                                               const int* geo, int j) {
#if GIGAREG_LNCC_TMA
  tma_expect(bar, std::uint32_t(2 * T::TX * T::TY * sizeof(float)));
  const std::int32_t f[3] = {geo[0], geo[1], geo[2] + j}, w[3] = {geo[3], geo[4], geo[5] + j};
  tma_box(So, &p.fixed_out_map, f, bar);
  tma_box(So + T::OPLANE, &p.warped_out_map, w, bar);
#endif
}

/// One segment of lncc_box_kernel: output planes [oz0, oz0 + nzo) of tile `tile`. kStaged: the
/// inputs of stage A arrive in shared memory by TMA (p.fixed_map, p.warped_map) and warps 0-3
/// apply them during stage C (see the header comment).
template <int H, bool kFastRecip, bool kStaged>
__device__ __forceinline__ void box_segment(const LnccArgs& p, const index_t tile,
                                            const index_t oz0, const int nzo) {
  using T = BoxTile<H>;
  constexpr int NT = T::kThreads, K = 2 * H + 1;
  // TMA writes to 128-byte aligned addresses (St = sm + kStage, kStage a multiple of 32 floats).
  // The base stays a link-time constant (a base rounded up at run time would cost a register in
  // every shared address: spills).
  extern __shared__ __align__(128) float4 sm4[];
  float* sm = reinterpret_cast<float*>(sm4);
  __shared__ double red[T::kWarps];
  __shared__ int red_count[T::kWarps];
  __shared__ std::uint64_t stage_full;  // kStaged: the mbarrier of the staged planes
  // kStaged: TMA coordinates of F's and W's R2 box at step 0's added plane (x, y, z each), then
  // the R2 positions inside the valid inputs, [x0, x1) x [y0, y1), then the coordinates of F's
  // and W's output box at step 0's output plane. In shared memory, read where needed, rather than
  // in registers through the whole loop.
  __shared__ int stage_geo[16];
  __shared__ std::uint64_t out_full;  // kStaged: the mbarrier of the output plane's F and W
  float* Z = sm + T::kZ;      // [5][R2Y][PZ]   z-window sums of the R2 columns (running)
  float* XZ = sm + T::kXZ;    // [5][XROWS][P1] ... after the x pass (R1 columns)
  float* ABC = sm + T::kABC;  // [3][CROWS][P1] adjoint coefficients at the R1 centres
  float* NXY = sm + T::kNXY;  // [CROWS][P1]    +-1 / (n_x n_y) at the centres (0: none,
                              // negative: owned in x and y)
  float* AX = XZ;             // [3][R1Y][PA]   x pass of (a, b, c); XZ is dead by then
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  const index_t ox = p.owned.lo.x + (tile % p.tiles_x) * kTX;
  const index_t oy = p.owned.lo.y + (tile / p.tiles_x) * T::TY;
  const Index3 ohi = p.owned.hi();
  const Index3 vhi = p.valid.hi();
  const Index3 chi = p.centres.hi();
  const float shift_f = p.fixed.at(ox, oy, oz0);
  const float shift_w = p.warped.at(ox, oy, oz0);
  const index_t r2x0 = ox - 2 * H, r2y0 = oy - 2 * H;
  const index_t r1x0 = ox - H, r1y0 = oy - H;
  const int own_x1 = int(min(index_t(H + kTX), ohi.x - r1x0));
  const int own_y1 = int(min(index_t(H + T::TY), ohi.y - r1y0));
  // Every R2 column inside the valid inputs (block-uniform): the stage A loads then need no
  // per-column test, and every output of the tile is owned.
  const bool interior = r2x0 >= p.valid.lo.x && r2x0 + T::R2X <= vhi.x &&
                        r2y0 >= p.valid.lo.y && r2y0 + T::R2Y <= vhi.y;

  // Zero the shared arrays (padding included: it is read, never used, and must not be NaN).
  for (int i = tid; i < T::kEnd / 4; i += NT) sm4[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if constexpr (kStaged) {
    if (tid == 0) {
      if ((reinterpret_cast<std::uintptr_t>(sm4) & 127) != 0) __trap();  // see sm4
      const index_t za = oz0;           // plane zc + H of step 0 (zc = oz0 - H)
      const index_t zg0 = oz0 - 2 * H;  // output plane zc - H of step 0
      auto clamp_r2 = [](index_t v, int n) { return int(max(index_t(0), min(index_t(n), v))); };
      const int geo[16] = {int(r2x0 - p.fixed.box_lo.x),       int(r2y0 - p.fixed.box_lo.y),
                           int(za - p.fixed.box_lo.z),         int(r2x0 - p.warped.box_lo.x),
                           int(r2y0 - p.warped.box_lo.y),      int(za - p.warped.box_lo.z),
                           clamp_r2(p.valid.lo.x - r2x0, T::R2X), clamp_r2(vhi.x - r2x0, T::R2X),
                           clamp_r2(p.valid.lo.y - r2y0, T::R2Y), clamp_r2(vhi.y - r2y0, T::R2Y),
                           int(ox - p.fixed.box_lo.x),         int(oy - p.fixed.box_lo.y),
                           int(zg0 - p.fixed.box_lo.z),        int(ox - p.warped.box_lo.x),
                           int(oy - p.warped.box_lo.y),        int(zg0 - p.warped.box_lo.z)};
      for (int k = 0; k < 16; ++k) stage_geo[k] = geo[k];
    }
    if (tid == 0) {  // one arrival (the thread that issues the copies) plus their bytes
#if GIGAREG_LNCC_TMA
      ::cuda::ptx::mbarrier_init(&stage_full, 1u);
      ::cuda::ptx::mbarrier_init(&out_full, 1u);
      ::cuda::ptx::fence_mbarrier_init(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster);
#else
      __trap();
#endif
    }
  }
  __syncthreads();
  for (int e = tid; e < T::CROWS * T::R1X; e += NT) {
    const int ey = e / T::R1X, ex = e - ey * T::R1X;
    const index_t gx = r1x0 + ex, gy = r1y0 + ey;
    const bool ok = ey < T::R1Y && gx >= p.centres.lo.x && gx < chi.x && gy >= p.centres.lo.y &&
                    gy < chi.y;
    const bool own_xy = ex >= H && ex < own_x1 && ey >= H && ey < own_y1;
    const float nxy = lncc_axis_weight<float>(p.taps.w, H, gx, p.global.x) *
                      lncc_axis_weight<float>(p.taps.w, H, gy, p.global.y);
    NXY[T::xrow(ey) + ex] = ok ? (own_xy ? -1.0f : 1.0f) / nxy : 0.0f;
  }

  // Stage A columns of this thread: in-plane offsets (-1 outside the valid inputs). W shares
  // F's offsets (same x, y strides): the box difference is folded into W's plane pointers.
  int aoff[T::SLOTS];
#pragma unroll
  for (int k = 0; k < T::SLOTS; ++k) {
    const int c = tid + k * NT;
    const int group = c / T::ZGROUP, within = c - group * T::ZGROUP;
    const int cy = 4 * group + min(within / T::PZ, 3);
    // A pad (never read) takes its row's last column, so that every position below ZN of an
    // interior tile has a valid offset.
    const int cx = min(within - (cy & 3) * T::PZ, T::R2X - 1);
    const index_t gx = r2x0 + cx, gy = r2y0 + cy;
    const bool ok = c < T::ZN && cx < T::R2X && gx >= p.valid.lo.x && gx < vhi.x &&
                    gy >= p.valid.lo.y && gy < vhi.y;
    aoff[k] = ok ? plane_offset(p.fixed, gx, gy) : -1;
  }
  const index_t wdelta = (p.fixed.box_lo.x - p.warped.box_lo.x) * p.warped.stride.x +
                         (p.fixed.box_lo.y - p.warped.box_lo.y) * p.warped.stride.y;

  // Mask: in-plane offset of the R1 origin (read only at centres, which the mask view holds).
  const bool has_mask = p.mask.data != nullptr;
  const int mbase = has_mask ? int((r1x0 - p.mask.box_lo.x) * p.mask.stride.x +
                                   (r1y0 - p.mask.box_lo.y) * p.mask.stride.y)
                             : 0;
  const int msx = int(p.mask.stride.x), msy = int(p.mask.stride.y);

  // Stage E outputs of this thread: column lane, tile rows 2 warp and 2 warp + 1.
  const index_t gx_out = ox + lane, gy_out = oy + 2 * warp;
  const bool col_out = gx_out < ohi.x;
  const bool row_out0 = col_out && gy_out < ohi.y, row_out1 = col_out && gy_out + 1 < ohi.y;
  const int foff = row_out0 ? plane_offset(p.fixed, gx_out, gy_out) : 0;
  const int fsy = int(p.fixed.stride.y);
  const int goff = row_out0 ? int((gx_out - p.grad.box_lo.x) * p.grad.stride.x +
                                  (gy_out - p.grad.box_lo.y) * p.grad.stride.y)
                            : 0;
  const int gsy = int(p.grad.stride.y);

  // Plane indices: iteration i handles window-centre plane zc = zbeg + i: it adds input plane
  // zc + H to the z sums and removes zc - H - 1, and completes output plane zg = zc - H.
  const index_t zbeg = oz0 - H;
  const int niter = nzo + 2 * H;
  auto ibound = [&](index_t z) {
    return int(max(index_t(-2 * H - 1), min(index_t(niter + 1), z - zbeg)));
  };
  int add_lo = ibound(p.valid.lo.z - H), add_hi = ibound(vhi.z - H);       // zc + H valid
  int sub_lo = max(1, ibound(p.valid.lo.z + H + 1)), sub_hi = ibound(vhi.z + H + 1);
  int cen_lo = ibound(p.centres.lo.z), cen_hi = ibound(chi.z);              // zc a centre
  // Computed once: keep the compiler from re-deriving them (64-bit) in every iteration.
  asm volatile("" : "+r"(add_lo), "+r"(add_hi), "+r"(sub_lo), "+r"(sub_hi), "+r"(cen_lo),
               "+r"(cen_hi));
  // Owned centre planes: i in [H, H + nzo); output planes: i in [2H, 2H + nzo).

  // Block-uniform plane pointers, advanced one plane per iteration.
  const index_t fsz = p.fixed.stride.z, wsz = p.warped.stride.z, gsz = p.grad.stride.z;
  const float* fa = plane(p.fixed, zbeg - H);  // plane zc + H at the first warm-up step
  const float* wa = plane(p.warped, zbeg - H) + wdelta;
  const float* fs = fa - K * fsz;              // plane zc - H - 1
  const float* ws = wa - K * wsz;

  // ---- A. z-window sums: Z += P(plane a) - P(plane s), P = (F, W, FF, WW, FW) of shifted
  // intensities; each thread keeps its own columns, so no barrier is needed between steps.
  // zload issues the loads of one step into registers (a column outside the valid inputs reads
  // as the shift, so that it contributes exactly 0); zupdate applies them. The loads of step
  // i + 1 are issued before stage E of step i and land during E, so stage A does not wait for L2
  // at the top of each step. (Issuing the add plane's loads already before stage B holds 8 more
  // registers through stage C and was slower: spills at the 80-register cap.)
  float raf[T::SLOTS], raw[T::SLOTS], rsf[T::SLOTS], rsw[T::SLOTS];
  auto zload_add = [&](bool add_ok) {  // plane zc + H
    const float* fau = opaque(fa);
    const float* wau = opaque(wa);
#pragma unroll
    for (int k = 0; k < T::SLOTS; ++k) {
      const int off = aoff[k];
      raf[k] = shift_f;
      raw[k] = shift_w;
      if (add_ok && off >= 0) {
        raf[k] = __ldg(fau + off);
        raw[k] = __ldg(wau + off);
      }
    }
  };
  auto zload_sub = [&](bool sub_ok) {  // plane zc - H - 1
    const float* fsu = opaque(fs);
    const float* wsu = opaque(ws);
#pragma unroll
    for (int k = 0; k < T::SLOTS; ++k) {
      const int off = aoff[k];
      rsf[k] = shift_f;
      rsw[k] = shift_w;
      if (sub_ok && off >= 0) {
        rsf[k] = __ldg(fsu + off);
        rsw[k] = __ldg(wsu + off);
      }
    }
  };

  // Both planes valid in an interior tile: every position below ZN loads without a test.
  auto zload_fast = [&] {
    const float* fau = opaque(fa);
    const float* wau = opaque(wa);
    const float* fsu = opaque(fs);
    const float* wsu = opaque(ws);
#pragma unroll
    for (int k = 0; k < T::SLOTS; ++k) {
      const int c = tid + k * NT;
      if ((k + 1) * NT > T::ZN && c >= T::ZN) {  // warp-uniform (ZN - k NT is a multiple of 32)
        raf[k] = rsf[k] = shift_f;
        raw[k] = rsw[k] = shift_w;
        break;
      }
      const unsigned off = unsigned(aoff[k]);
      raf[k] = __ldg(fau + off);
      raw[k] = __ldg(wau + off);
      rsf[k] = __ldg(fsu + off);
      rsw[k] = __ldg(wsu + off);
    }
  };
  auto zload = [&](bool add_ok, bool sub_ok) {
    if (interior && add_ok && sub_ok) {
      zload_fast();
    } else {
      zload_add(add_ok);
      zload_sub(sub_ok);
    }
  };

  auto zupdate = [&] {
    float fn[T::SLOTS], wn[T::SLOTS], fo[T::SLOTS], wo[T::SLOTS];
#pragma unroll
    for (int k = 0; k < T::SLOTS; ++k) {
      fn[k] = raf[k] - shift_f;
      wn[k] = raw[k] - shift_w;
      fo[k] = rsf[k] - shift_f;
      wo[k] = rsw[k] - shift_w;
    }
#pragma unroll
    for (int k = 0; k < T::SLOTS; ++k) {
      const int c = tid + k * NT;
      if ((k + 1) * NT > T::ZN && c >= T::ZN) break;
      float* zq = Z + c;
      const float d[5] = {z_delta<0>(fn[k], wn[k], fo[k], wo[k]),
                          z_delta<1>(fn[k], wn[k], fo[k], wo[k]),
                          z_delta<2>(fn[k], wn[k], fo[k], wo[k]),
                          z_delta<3>(fn[k], wn[k], fo[k], wo[k]),
                          z_delta<4>(fn[k], wn[k], fo[k], wo[k])};
#pragma unroll
      for (int q = 0; q < 5; ++q) zq[q * T::ZQ] += d[q];
    }
  };
  auto add_ok_at = [&](int i) { return i >= add_lo && i < add_hi; };
  auto sub_ok_at = [&](int i) { return i >= sub_lo && i < sub_hi; };

  // ---- A, staged (kStaged). Step j's four planes (F, W of plane zc + H, then of zc - H - 1)
  // are copied by TMA into St, each as the R2 box of one plane (reads outside a view give zeros;
  // positions outside the valid inputs or planes outside them contribute exactly 0, as in the
  // register path). Phase j + 2H of stage_full completes when they have landed; the copy of
  // step j + 1 is issued once every thread is done with step j's (after a block barrier).
  float* St = sm + T::kStage;
  auto stage_wait = [&](int j) { mbarrier_wait(&stage_full, std::uint32_t(j + 2 * H) & 1u); };
  // The output plane's F and W of step i (kStaged): copied into So once the step's first barrier
  // has seen every thread done with step i - 1's (phase i of out_full).
  float* So = sm + T::kStageOut;
  auto out_wait = [&](int i) { mbarrier_wait(&out_full, std::uint32_t(i) & 1u); };
  // Z += the staged step's change at N consecutive positions of one R2 row (N = 4 or 2; `s`, the
  // staging index of the first, a multiple of N): vector loads and stores, 512 (256) consecutive
  // bytes per warp in each plane and in Z's rows.
  auto zupdate_run = [&](auto n, int s, bool add_ok, bool sub_ok) {
    constexpr int N = decltype(n)::value;
    using V = std::conditional_t<N == 4, float4, float2>;
    const int row = s / T::R2X, col = s - row * T::R2X;
    alignas(16) float fa[N], wa[N], fs[N], ws[N];
    *reinterpret_cast<V*>(fa) = *reinterpret_cast<const V*>(St + s);
    *reinterpret_cast<V*>(wa) = *reinterpret_cast<const V*>(St + T::SPLANE + s);
    *reinterpret_cast<V*>(fs) = *reinterpret_cast<const V*>(St + 2 * T::SPLANE + s);
    *reinterpret_cast<V*>(ws) = *reinterpret_cast<const V*>(St + 3 * T::SPLANE + s);
    int ok_bits = (1 << N) - 1;  // positions col .. col + N - 1 inside the valid inputs
    if (!interior) {
      const bool row_ok = row >= stage_geo[8] && row < stage_geo[9];
      const int x0 = stage_geo[6], x1 = stage_geo[7];
      ok_bits = 0;
#pragma unroll
      for (int e = 0; e < N; ++e) ok_bits |= (row_ok && col + e >= x0 && col + e < x1) << e;
    }
    float fn[N], wn[N], fo[N], wo[N];
#pragma unroll
    for (int e = 0; e < N; ++e) {
      const bool ok = (ok_bits >> e) & 1;
      const bool a = add_ok && ok, r = sub_ok && ok;
      fn[e] = a ? fa[e] - shift_f : 0.0f;
      wn[e] = a ? wa[e] - shift_w : 0.0f;
      fo[e] = r ? fs[e] - shift_f : 0.0f;
      wo[e] = r ? ws[e] - shift_w : 0.0f;
    }
    float* zq = Z + T::zrow(row) + col;
    auto add = [&](auto qc) {
      constexpr int q = decltype(qc)::value;
      alignas(16) float z[N];
      *reinterpret_cast<V*>(z) = *reinterpret_cast<const V*>(zq + q * T::ZQ);
#pragma unroll
      for (int e = 0; e < N; ++e) z[e] += z_delta<q>(fn[e], wn[e], fo[e], wo[e]);
      *reinterpret_cast<V*>(zq + q * T::ZQ) = *reinterpret_cast<const V*>(z);
    };
    add(std::integral_constant<int, 0>{});
    add(std::integral_constant<int, 1>{});
    add(std::integral_constant<int, 2>{});
    add(std::integral_constant<int, 3>{});
    add(std::integral_constant<int, 4>{});
  };
  // Z += the staged step, by NTH threads (t = 0 .. NTH - 1). When the R2 positions divide into
  // 4 k + 2 per thread (H = 2 on warps 0-3: 10), each thread takes k runs of 4 and one of 2, so
  // that no warp does a third run of 4 while the others wait at the next barrier.
  auto zupdate_staged = [&](auto nth, int t, bool add_ok, bool sub_ok) {
    constexpr int NTH = decltype(nth)::value, NP = T::R2X * T::R2Y;
    // Not unrolled: the loads of every run would be hoisted and spill (80 registers).
    if constexpr (NP % NTH == 0 && (NP / NTH) % 4 == 2) {
      constexpr int K4 = NP / NTH / 4;
#pragma unroll 1
      for (int k = 0; k < K4; ++k)
        zupdate_run(std::integral_constant<int, 4>{}, 4 * (t + k * NTH), add_ok, sub_ok);
      zupdate_run(std::integral_constant<int, 2>{}, 4 * K4 * NTH + 2 * t, add_ok, sub_ok);
    } else {
#pragma unroll 1
      for (int g = t; g < T::SG; g += NTH)
        zupdate_run(std::integral_constant<int, 4>{}, 4 * g, add_ok, sub_ok);
    }
  };
  auto advance_a = [&] {
    fa += fsz;
    wa += wsz;
    fs += fsz;
    ws += wsz;
  };

  // Warm-up: planes zbeg - H .. zbeg + H - 1 (iterations -2H .. -1).
  if constexpr (kStaged) {  // steps -2H .. 0 (the loop's stage A is one step ahead)
    if (tid == 0) stage_copy<T>(p, St, &stage_full, stage_geo, -2 * H);
    for (int j = -2 * H; j <= 0; ++j) {
      stage_wait(j);
      zupdate_staged(std::integral_constant<int, NT>{}, tid, add_ok_at(j), sub_ok_at(j));
      __syncthreads();
      if (tid == 0 && j + 1 < niter) stage_copy<T>(p, St, &stage_full, stage_geo, j + 1);
    }
  } else {
    zload_add(add_ok_at(-2 * H));
    zload_sub(false);
    advance_a();
    for (int i = -2 * H; i < 0; ++i) {
      zupdate();
      zload(add_ok_at(i + 1), sub_ok_at(i + 1));
      advance_a();
    }
  }

  const float* fz = plane(p.fixed, zbeg - H);  // output plane zg = zc - H
  const float* wz = plane(p.warped, zbeg - H) + wdelta;
  float* gz = p.grad.data + (zbeg - H - p.grad.box_lo.z) * gsz;
  const float* mz = has_mask ? plane(p.mask, zbeg) : nullptr;  // centre plane zc
  const index_t msz = p.mask.stride.z;

  // acc[q][r][j]: partial z sums of (A, B, C) for output plane zc - H + j (row r of the pair).
  float acc[3][2][2 * H];
#pragma unroll
  for (int q = 0; q < 3; ++q)
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < 2 * H; ++j) acc[q][r][j] = 0.0f;

  // The output plane's intensities of step i are loaded with the stage A loads of step i
  // (issued before stage E of step i - 1) and used at the top of step i, where stage A waits
  // for those loads anyway. (Loaded at the top of step i and first used in stage E, after the
  // loads of step i + 1 were issued, they cost 6% of the stall samples: the use waited for
  // those loads too, most likely through a shared scoreboard.)
  auto out_plane_at = [&](int it) { return it >= 2 * H && it < 2 * H + nzo; };
  float nfo0 = 0.0f, nfo1 = 0.0f, nwo0 = 0.0f, nwo1 = 0.0f;
  auto load_out = [&](bool out, const float* fzp, const float* wzp) {
    nfo0 = nfo1 = nwo0 = nwo1 = 0.0f;
    if (out) {  // L2 hits
      const float* fzu = opaque(fzp);
      const float* wzu = opaque(wzp);
      int fo = foff;  // 32-bit until here: a hoisted 64-bit copy would cost registers
      asm("" : "+r"(fo));
      if (interior) {  // both rows owned
        nfo0 = __ldg(fzu + fo);
        nwo0 = __ldg(wzu + fo);
        nfo1 = __ldg(fzu + fo + fsy);
        nwo1 = __ldg(wzu + fo + fsy);
        return;
      }
      if (row_out0) {
        nfo0 = __ldg(fzu + fo);
        nwo0 = __ldg(wzu + fo);
      }
      if (row_out1) {
        nfo1 = __ldg(fzu + fo + fsy);
        nwo1 = __ldg(wzu + fo + fsy);
      }
    }
  };
  if constexpr (!kStaged) load_out(out_plane_at(0), fz, wz);

  // The warps' sums of centre step `it` in index order: one partial per (slice, tile).
  auto flush_partial = [&](int it) {
    double sum = 0.0;
    int count = 0;
    for (int w = 0; w < T::kWarps; ++w) {
      sum += red[w];
      count += red_count[w];
    }
    double* out = p.tile_partials + ((oz0 + it - H - p.owned.lo.z) * p.tiles + tile) * 2;
    out[0] = sum;
    out[1] = double(count);
  };
  int pend = -1;  // the centre step whose warp sums wait in red (block-uniform), or -1

  for (int i = 0; i < niter; ++i) {
    const bool out_plane = out_plane_at(i);
    float fo0 = nfo0 - shift_f, wo0 = nwo0 - shift_w;  // shifted intensities (register path)
    float fo1 = nfo1 - shift_f, wo1 = nwo1 - shift_w;
    if constexpr (!kStaged) zupdate();  // stage A of step i, from the loads issued in step i - 1
    float v[3][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}, {0.0f, 0.0f}};
    const bool centre_it = i >= cen_lo && i < cen_hi;  // block-uniform: plane zc holds centres
    if (centre_it) {
      __syncthreads();
      if constexpr (kStaged)
        if (tid == 0) stage_copy_out<T>(p, So, &out_full, stage_geo + 10, i);
      // The last warp, idle in B, writes the block partial of the previous centre step (off
      // the critical path; red is rewritten only after the next barrier).
      if (pend >= 0) {
        if (tid == NT - 32) flush_partial(pend);
        pend = -1;
      }
      // ---- B. x pass: XZ[q][R2 row][R1 column]; warp (q, segment), lane = row.
      if (warp < 10 && lane < T::R2Y) {
        const int q = warp >> 1;
        int row = lane;  // recomputed here: a hoisted row offset would hold a register all loop
        asm volatile("" : "+r"(row));
        const float* in = Z + q * T::ZQ + T::zrow(row);
        float* out = XZ + q * T::XQ + T::xrow(row);
        if ((warp & 1) == 0)
          box_row_vec<H, T::BL0>(in, out);
        else
          box_row_vec<H, T::BL1>(in + T::BX1, out + T::BX1);
      }
      __syncthreads();
      // ---- C. y pass, cc and the adjoint coefficients at the R1 centres; the loss.
      const bool owned_plane = i >= H && i < H + nzo;
      {
        const index_t zc = zbeg + i;
        // 1 / n_z, n_z the number of in-grid planes of the window (box weights are 1, so n_z
        // equals lncc_axis_weight exactly); the asm keeps it out of the per-centre code.
        float inz =
            LnccFastRecip{}(float(min(zc + H, p.global.z - 1) - max(zc - H, index_t(0)) + 1));
        asm volatile("" : "+f"(inz));
        float loss_sum = 0.0f;
        int loss_count = 0;
        const int ct = kStaged ? tid - T::kStageThreads : tid;  // staged: C on warps 4-11
        if (ct >= 0 && ct < T::R1X * T::NSC) {
          const int ex = ct % T::R1X, ey0 = (ct / T::R1X) * T::SEGC;
          // Window sums of the SEGC centres, one quantity at a time (fewer live registers).
          float s[T::SEGC][5];
#pragma unroll
          for (int q = 0; q < 5; ++q) {
            const float* col = XZ + q * T::XQ + T::xrow(ey0) + ex;
            float acc_y = col[0];
#pragma unroll
            for (int k = 1; k <= 2 * H; ++k) acc_y += col[T::xrow(k)];
            s[0][q] = acc_y;
#pragma unroll
            for (int j = 1; j < T::SEGC; ++j) {
              acc_y += col[T::xrow(j + 2 * H)] - col[T::xrow(j - 1)];
              s[j][q] = acc_y;
            }
          }
          float tn[T::SEGC];
#pragma unroll
          for (int j = 0; j < T::SEGC; ++j) tn[j] = NXY[T::xrow(ey0 + j) + ex];
          if (has_mask) {  // masked-out centres are no centres: tn = 0
            const float* mzu = opaque(mz);
#pragma unroll
            for (int j = 0; j < T::SEGC; ++j) {
              float m = 0.0f;
              if (tn[j] != 0.0f) m = __ldg(mzu + (mbase + ex * msx + (ey0 + j) * msy));
              tn[j] = m > 0.5f ? tn[j] : 0.0f;
            }
          }
#pragma unroll
          for (int j = 0; j < T::SEGC; ++j) {
            // Not a centre: inv_n = 0 makes every mean, cc and coefficient an exact 0 when the
            // reciprocal of eps is finite (kFastRecip); otherwise they are replaced by zeros.
            const float inv_n = fabsf(tn[j]) * inz;
            const BoxLocal l = box_local<kFastRecip>(inv_n, -2.0f * inv_n, s[j][0], s[j][1],
                                                     s[j][2], s[j][3], s[j][4], p.eps,
                                                     p.min_vf, p.min_vw);
            if (owned_plane && tn[j] < 0.0f) {  // owned centre (tn < 0: owned in x and y)
              loss_sum -= l.cc;
              ++loss_count;
            }
            const bool keep = kFastRecip || tn[j] != 0.0f;
            float* o = ABC + T::xrow(ey0 + j) + ex;
            o[0] = keep ? l.a : 0.0f;
            o[T::CQ] = keep ? l.b : 0.0f;
            o[2 * T::CQ] = keep ? l.c : 0.0f;
          }
        } else if constexpr (kStaged) {
          // ---- A of step i + 1, staged, on the warps that stage C leaves idle.
          if (tid < T::kStageThreads && i + 1 < niter) {
            stage_wait(i + 1);
            zupdate_staged(std::integral_constant<int, T::kStageThreads>{},
                           tid, add_ok_at(i + 1), sub_ok_at(i + 1));
          }
        }
        if (p.tile_partials != nullptr && owned_plane) {  // uniform over the block
          // A warp holds about a hundred centres: a float shuffle tree, then double per warp.
          for (int o = 16; o > 0; o >>= 1) loss_sum += __shfl_down_sync(0xffffffffu, loss_sum, o);
          const int warp_count = __reduce_add_sync(0xffffffffu, loss_count);
          if (lane == 0) {
            red[warp] = double(loss_sum);
            red_count[warp] = warp_count;
          }
        }
      }
      __syncthreads();
      if constexpr (kStaged)
        if (tid == 0 && i + 2 < niter) stage_copy<T>(p, St, &stage_full, stage_geo, i + 2);
      if (p.tile_partials != nullptr && owned_plane) pend = i;  // written during a later B
      // ---- D. x pass of (a, b, c): AX[q][R1 row][tile column]; warp (q, segment), lane = row.
      if (lane < T::R1Y) {
        const int q = warp / T::NSD, x0 = (warp - q * T::NSD) * T::SEGD;
        box_row_vec<H, T::SEGD>(ABC + q * T::CQ + T::xrow(lane) + x0,
                                AX + q * T::AXQ + lane * T::PA + x0);
      }
      __syncthreads();
    }
    if constexpr (kStaged) {
      if (!centre_it) {  // no stage C to hide it behind: stage A of step i + 1 on every warp
        if (i + 1 < niter) {
          stage_wait(i + 1);
          zupdate_staged(std::integral_constant<int, NT>{}, tid, add_ok_at(i + 1),
                         sub_ok_at(i + 1));
        }
        __syncthreads();
        if (tid == 0) {
          stage_copy_out<T>(p, So, &out_full, stage_geo + 10, i);
          if (i + 2 < niter) stage_copy<T>(p, St, &stage_full, stage_geo, i + 2);
        }
      }
    } else {
      // The next step's stage A loads, in flight during stage E.
      zload(add_ok_at(i + 1), sub_ok_at(i + 1));
      load_out(out_plane_at(i + 1), fz + fsz, wz + wsz);
    }
    if constexpr (!kStaged) advance_a();
    if (centre_it) {
      // ---- E (1). y pass of (a, b, c) at this thread's two outputs.
#pragma unroll
      for (int q = 0; q < 3; ++q) {
        const float* col = AX + q * T::AXQ + 2 * warp * T::PA + lane;
        float r[2 * H + 2];
#pragma unroll
        for (int k = 0; k < 2 * H + 2; ++k) r[k] = col[k * T::PA];
        float s = r[0];
#pragma unroll
        for (int k = 1; k <= 2 * H; ++k) s += r[k];
        v[q][0] = s;
        v[q][1] = s + r[2 * H + 1] - r[0];
      }
    }
    // ---- E (2). z sums through the accumulators; the gradient of plane zg.
    float g[3][2];
#pragma unroll
    for (int q = 0; q < 3; ++q)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        g[q][r] = acc[q][r][0] + v[q][r];
#pragma unroll
        for (int j = 0; j + 1 < 2 * H; ++j) acc[q][r][j] = acc[q][r][j + 1] + v[q][r];
        acc[q][r][2 * H - 1] = v[q][r];
      }
    if constexpr (kStaged) {  // the output plane's F and W, read where they are used
      out_wait(i);
      const float* sf = So + 2 * warp * T::TX + lane;
      fo0 = sf[0] - shift_f;
      fo1 = sf[T::TX] - shift_f;
      wo0 = sf[T::OPLANE] - shift_w;
      wo1 = sf[T::OPLANE + T::TX] - shift_w;
    }
    if (out_plane) {
      float* gzu = opaque(gz);
      int go = goff;
      asm("" : "+r"(go));
      if (interior || row_out0)
        __stcs(gzu + go, g[0][0] * fo0 + g[1][0] * wo0 + g[2][0]);
      if (interior || row_out1)
        __stcs(gzu + go + gsy, g[0][1] * fo1 + g[1][1] * wo1 + g[2][1]);
    }
    fz += fsz;
    wz += wsz;
    gz += gsz;
    if (has_mask) mz += msz;
  }
  if (pend >= 0 && tid == NT - 32) flush_partial(pend);
}

/// How the blocks of the box kernel share its (tile, z) work: each block takes one segment
/// (planes [z0, z1) of one tile) and the hardware hands the blocks out in index order as
/// resident blocks finish. Chunk mode (parts == 0): block (tile, chunk) takes zchunk planes.
/// Tile mode (parts > 0): blocks 0 .. full_tiles - 1 take whole tiles; the split_tiles tiles
/// after them are cut into `parts` z parts each (block full_tiles + j: part j / split_tiles of
/// tile full_tiles + j mod split_tiles). Whole tiles pay the 2H planes of z halo and the warm-up
/// once; the parts at the end even out the blocks' finishing times (of the two blocks on an SM,
/// one runs about 25% slower than the other, 2 x 1840 vs 2330 us at 512^3 when every block got
/// the same work, and a fixed share per block left the SM half idle at the end). Both keep the
/// blocks that run at the same time on neighbouring tiles at about the same plane, so the
/// tiles' overlapping inputs and the re-read plane zc - H - 1 come from L2 (giving every block
/// one run of consecutive (tile, plane) pairs lost that: L2 hits 74% -> 33%, DRAM 23% -> 59%
/// busy, slower although it ran 8% fewer instructions).
template <int H, bool kFastRecip, bool kStaged>
__global__ void __launch_bounds__(BoxTile<H>::kThreads, 2)
    lncc_box_kernel(__grid_constant__ const LnccArgs p) {
  const index_t nz = p.owned.size.z;
  const index_t b = blockIdx.x;
  index_t tile, z0, z1;
  if (p.parts == 0) {
    tile = b;
    z0 = index_t(blockIdx.y) * p.zchunk;
    z1 = min(z0 + p.zchunk, nz);
  } else if (b < p.full_tiles) {
    tile = b;
    z0 = 0;
    z1 = nz;
  } else {
    const index_t j = b - p.full_tiles, part = j / p.split_tiles;
    tile = p.full_tiles + (j - part * p.split_tiles);
    z0 = part * nz / p.parts;
    z1 = (part + 1) * nz / p.parts;
  }
  box_segment<H, kFastRecip, kStaged>(p, tile, p.owned.lo.z + z0, int(z1 - z0));
}

/// Per slice, the sum of the tiles' loss partials: one warp per slice, lane l sums tiles l,
/// l + 32, ..., then a fixed shuffle tree (deterministic). (A thread per slice walking all tiles
/// took tens of microseconds at 512^3: one dependent L2 round trip per tile.)
__global__ void partials_kernel(const double* tile_partials, index_t slices, index_t tiles,
                                double* out) {
  const index_t s = (index_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = int(threadIdx.x & 31);
  if (s >= slices) return;  // warp-uniform
  double a = 0.0, c = 0.0;
  for (index_t t = lane; t < tiles; t += 32) {
    a += tile_partials[(s * tiles + t) * 2];
    c += tile_partials[(s * tiles + t) * 2 + 1];
  }
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, o);
    c += __shfl_down_sync(0xffffffffu, c, o);
  }
  if (lane == 0) {
    out[s * kLossTerms] = a;
    out[s * kLossTerms + 1] = c;
  }
}

bool plane_offsets_fit(const VolumeView<const float>& v) {
  if (v.data == nullptr) return true;
  const double m = double(v.extent.x) * double(v.stride.x < 0 ? -v.stride.x : v.stride.x) +
                   double(v.extent.y) * double(v.stride.y < 0 ? -v.stride.y : v.stride.y);
  return m < 2147483647.0;
}

template <int H, bool kBox>
void launch(LnccArgs& p, const Box& owned, cudaStream_t stream) {
  using T = Tile<H, kBox>;
  p.tiles_x = (owned.size.x + kTX - 1) / kTX;
  p.tiles = p.tiles_x * ((owned.size.y + T::TY - 1) / T::TY);
  // z chunks: enough blocks to fill the GPU, chunks long enough to amortise the 2H z halo.
  const index_t wanted = (1056 + p.tiles - 1) / p.tiles;
  p.zchunk = std::min<index_t>(64, std::max<index_t>(8, (owned.size.z + wanted - 1) / wanted));
  const index_t chunks = (owned.size.z + p.zchunk - 1) / p.zchunk;
  GIGAREG_ASSERT(chunks <= 65535);
  if (p.tile_partials != nullptr)
    p.tile_partials = static_cast<double*>(
        small_scratch_alloc(std::size_t(owned.size.z * p.tiles * 2) * sizeof(double), stream));
  const std::size_t shared = T::bytes(p.exact);
  try {
    if (shared > 48 * 1024)
      GIGAREG_CUDA_CHECK(cudaFuncSetAttribute(
          lncc_kernel<H, kBox>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
    lncc_kernel<H, kBox><<<dim3(unsigned(p.tiles), unsigned(chunks)), T::kThreads, shared, stream>>>(p);
    GIGAREG_CUDA_CHECK_LAUNCH("lncc_kernel");
  } catch (...) {
    small_scratch_free(p.tile_partials, stream);
    p.tile_partials = nullptr;
    throw;
  }
}

/// Blocks of lncc_box_kernel<H, kFastRecip, kStaged> resident on the whole device (cached; no
/// synchronisation).
template <int H, bool kFastRecip, bool kStaged>
index_t box_resident_blocks() {
  static const index_t resident = [] {
    int device = 0, sms = 0, per_sm = 0;
    GIGAREG_CUDA_CHECK(cudaGetDevice(&device));
    GIGAREG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    const auto kernel = lncc_box_kernel<H, kFastRecip, kStaged>;
    GIGAREG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            int(BoxTile<H>::bytes(kStaged))));
    GIGAREG_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm, kernel, BoxTile<H>::kThreads, BoxTile<H>::bytes(kStaged)));
    return index_t(std::max(1, sms * std::max(1, per_sm)));
  }();
  return resident;
}

/// How the box kernel's (tile, plane) work is cut into blocks (see lncc_box_kernel).
struct BoxSchedule {
  index_t zchunk = 0;  // chunk mode (parts == 0): planes per chunk
  index_t full_tiles = 0, split_tiles = 0, parts = 0;
  index_t blocks_x = 0, blocks_y = 0;
};

/// lncc_box_staging_for_testing's switch (false keeps the box kernel on its register path) and
/// the number of staged launches (lncc_box_staged_launches_for_testing).
std::atomic<bool> g_staging_allowed{true};
std::atomic<index_t> g_staged_launches{0};

/// lncc_box_schedule_for_testing's choice (all zero: the cost model's).
std::atomic<index_t> g_forced_parts{0}, g_forced_zchunk{0}, g_forced_resident{0};

/// The schedule with the fewest modelled steps per resident block: the blocks' planes plus, per
/// block, 2H centre planes of z halo and about two steps of warm-up and set-up, spread evenly
/// over the resident blocks (the hardware hands blocks out as others finish), plus half the
/// last blocks' length (they finish at different times). Chunks of one tile
/// (8..64 planes) against tile mode; ties keep chunks. Tile mode splits the tiles of the last,
/// partial round (at least a quarter round of them) into parts, about two per resident block,
/// none under 8 planes. `parts` > 0 forces tile mode with that many parts.
BoxSchedule box_schedule(index_t tiles, index_t nz, int H, index_t resident, index_t parts = 0) {
  const index_t per_block = 2 * H + 2;
  BoxSchedule best;
  index_t best_cost = -1;
  for (index_t chunk = 8; chunk <= 64 && parts == 0; ++chunk) {
    const index_t chunks = (nz + chunk - 1) / chunk;
    const index_t len = std::min(chunk, nz);
    const index_t cost = (tiles * chunks * (len + per_block) + resident - 1) / resident +
                         (len + per_block) / 2;
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = BoxSchedule{chunk, 0, 0, 0, tiles, chunks};
    }
    if (chunk >= nz) break;
  }
  BoxSchedule t;
  t.split_tiles = tiles % resident;
  if (tiles >= resident && t.split_tiles < resident / 4) t.split_tiles += resident;
  t.split_tiles = std::min(t.split_tiles, tiles);
  t.full_tiles = tiles - t.split_tiles;
  if (t.split_tiles > 0) {
    const index_t most = std::max<index_t>(1, nz / 8);
    t.parts = std::min(most, parts > 0 ? parts
                                       : (2 * resident + t.split_tiles - 1) / t.split_tiles);
  } else {
    t.parts = 1;  // (tiles == 0)
  }
  t.blocks_x = t.full_tiles + t.split_tiles * t.parts;
  t.blocks_y = 1;
  const index_t cost = (t.full_tiles * (nz + per_block) +
                        t.split_tiles * (nz + t.parts * per_block) + resident - 1) / resident +
                       (nz / t.parts + per_block) / 2;
  if (parts > 0 || best_cost < 0 || cost < best_cost) best = t;
  return best;
}

template <int H, bool kFastRecip, bool kStaged>
void launch_box(LnccArgs& p, const Box& owned, cudaStream_t stream) {
  using T = BoxTile<H>;
  p.tiles_x = (owned.size.x + kTX - 1) / kTX;
  p.tiles = p.tiles_x * ((owned.size.y + T::TY - 1) / T::TY);
  const index_t parts = g_forced_parts.load(), chunk = g_forced_zchunk.load();
  const index_t resident = g_forced_resident.load() > 0 ? g_forced_resident.load()
                                       : box_resident_blocks<H, kFastRecip, kStaged>();
  BoxSchedule sched = box_schedule(p.tiles, owned.size.z, H, resident, parts);
  if (chunk > 0) sched = BoxSchedule{chunk, 0, 0, 0, p.tiles, (owned.size.z + chunk - 1) / chunk};
  p.full_tiles = sched.full_tiles;
  p.split_tiles = sched.split_tiles;
  p.parts = sched.parts;
  p.zchunk = sched.zchunk;
  const index_t chunks = sched.blocks_y;
  GIGAREG_ASSERT(chunks <= 65535);
  if (p.tile_partials != nullptr)
    p.tile_partials = static_cast<double*>(
        small_scratch_alloc(std::size_t(owned.size.z * p.tiles * 2) * sizeof(double), stream));
  try {
    const auto kernel = lncc_box_kernel<H, kFastRecip, kStaged>;
    const std::size_t shared = T::bytes(kStaged);
    GIGAREG_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
    kernel<<<dim3(unsigned(sched.blocks_x), unsigned(chunks)), T::kThreads, shared, stream>>>(p);
    GIGAREG_CUDA_CHECK_LAUNCH("lncc_box_kernel");
    if constexpr (kStaged) g_staged_launches.fetch_add(1);
  } catch (...) {
    small_scratch_free(p.tile_partials, stream);
    p.tile_partials = nullptr;
    throw;
  }
}

/// cuTensorMapEncodeTiled, from the driver through the runtime (no link to libcuda), or null.
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                   const cuuint64_t*, const cuuint64_t*, const cuuint32_t*,
                                   const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiledFn encode_tiled() {
  static const EncodeTiledFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();  // not sticky; the register path is used instead
      return EncodeTiledFn(nullptr);
    }
    return reinterpret_cast<EncodeTiledFn>(f);
  }();
  return fn;
}

/// A tensor map of `v` whose box is one plane's box_x x box_y elements, or false where TMA cannot
/// read the view: its rows and planes must start at 16-byte boundaries (an x extent that is a
/// multiple of 4 in a whole allocation), x contiguous, extents within int32 coordinates.
bool plane_box_map(CUtensorMap* map, const VolumeView<const float>& v, int box_x, int box_y) {
  const EncodeTiledFn encode = encode_tiled();
  if (encode == nullptr || v.data == nullptr || v.stride.x != 1 || v.stride.y <= 0 ||
      v.stride.z <= 0 || reinterpret_cast<std::uintptr_t>(v.data) % 16 != 0 ||
      v.stride.y % 4 != 0 || v.stride.z % 4 != 0 || v.stride.z * 4 >= (index_t(1) << 40))
    return false;
  const index_t most = std::numeric_limits<std::int32_t>::max() / 2;
  if (v.extent.x > most || v.extent.y > most || v.extent.z > most) return false;
  const cuuint64_t dims[3] = {cuuint64_t(v.extent.x), cuuint64_t(v.extent.y),
                              cuuint64_t(v.extent.z)};
  const cuuint64_t strides[2] = {cuuint64_t(v.stride.y) * 4, cuuint64_t(v.stride.z) * 4};
  const cuuint32_t box[3] = {cuuint32_t(box_x), cuuint32_t(box_y), 1}, unit[3] = {1, 1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 3, const_cast<float*>(v.data), dims,
                strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) ==
         CUDA_SUCCESS;
}

/// Whether the staged box kernel can run here: built for sm_90 or newer (TMA; older targets
/// compile it to a trap) and loadable on the device (cached once per process, like
/// box_resident_blocks; no synchronisation).
template <int H>
bool staged_kernel_runs() {
  static const bool runs = [] {
    cudaFuncAttributes a{};
    if (cudaFuncGetAttributes(&a, lncc_box_kernel<H, true, true>) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return a.binaryVersion >= 90;
  }();
  return runs;
}

/// Fills p's tensor maps when the staged box kernel can read F and W (see plane_box_map). A TMA
/// box must also start at a 16-byte boundary in x: the tiles' R2 boxes start at owned.lo.x - 2H
/// plus multiples of 32, which must be a multiple of 4 elements from each view's first column
/// (true for H = 2 on whole volumes and on shards cut in y or z).
template <int H>
bool use_staged(LnccArgs& p, const Box& owned) {
  using T = BoxTile<H>;
  auto aligned = [&](const VolumeView<const float>& v) {
    return (((owned.lo.x - 2 * H - v.box_lo.x) % 4) + 4) % 4 == 0;
  };
  return g_staging_allowed.load() && aligned(p.fixed) && aligned(p.warped) &&
         staged_kernel_runs<H>() && plane_box_map(&p.fixed_map, p.fixed, T::R2X, T::R2Y) &&
         plane_box_map(&p.warped_map, p.warped, T::R2X, T::R2Y) &&
         plane_box_map(&p.fixed_out_map, p.fixed, T::TX, T::TY) &&
         plane_box_map(&p.warped_out_map, p.warped, T::TX, T::TY);
}

}  // namespace

void lncc_box_staging_for_testing(bool allowed) { g_staging_allowed.store(allowed); }
index_t lncc_box_staged_launches_for_testing() { return g_staged_launches.load(); }

void lncc_box_schedule_for_testing(index_t parts, index_t zchunk, index_t resident) {
  GIGAREG_REQUIRE(parts >= 0 && zchunk >= 0 && zchunk < 65536 && resident >= 0,
                  "lncc_box_schedule_for_testing: negative or too large");
  g_forced_parts.store(parts);
  g_forced_zchunk.store(parts > 0 ? 0 : zchunk);
  g_forced_resident.store(resident);
}

void lncc_loss(void* stream, VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const LnccConfig& config,
               SlicePartials partials, VolumeView<float> grad) {
  auto s = static_cast<cudaStream_t>(stream);
  const int H = config.taps.radius;
  GIGAREG_REQUIRE(plane_offsets_fit(fixed) && plane_offsets_fit(warped) && plane_offsets_fit(mask),
                  "lncc_loss (cuda): a view's plane holds more than 2^31 elements");
  LnccArgs p{};
  p.fixed = fixed;
  p.warped = warped;
  p.mask = mask;
  p.grad = grad;
  p.owned = owned;
  p.global = fixed.global_size;
  p.taps = config.taps;
  p.eps = config.eps;
  p.min_vf = config.min_vf;
  p.min_vw = config.min_vw;
  p.exact = grad.data != nullptr && config.exact_gradient;
  p.ants = grad.data != nullptr && !config.exact_gradient;
  p.box = true;
  for (int d = 0; d <= 2 * H; ++d) p.box = p.box && config.taps.w[d] == 1.0f;
  const index_t rv = p.exact ? 2 * H : H, rc = p.exact ? H : 0;
  p.valid = owned.grown_within(Index3{rv, rv, rv}, p.global);
  p.centres = owned.grown_within(Index3{rc, rc, rc}, p.global);
  // A non-null marker: launch() replaces it with the scratch when the partials are wanted.
  p.tile_partials = partials.data != nullptr ? partials.data : nullptr;
  // The fast path: box window, exact gradient, H <= 2, F and W with the same x-y strides (they
  // share in-plane offsets), the gradient's planes addressable with 32-bit offsets.
  const bool fast = p.box && p.exact && H <= 2 && fixed.stride.x == warped.stride.x &&
                    fixed.stride.y == warped.stride.y &&
                    plane_offsets_fit(VolumeView<const float>(grad));
  if (fast) {
    // The fast reciprocal needs a normal eps (then every argument is normal; see LnccFastRecip).
    // Staged inputs (TMA) where the views allow them, for the default 5^3 window with the fast
    // reciprocal (a normal eps): one more kernel, not four (H = 1 would rarely qualify: its R2
    // boxes start 2 columns before a multiple of 4 on a whole volume).
    const bool fast_recip = p.eps >= std::numeric_limits<float>::min();
    if (H == 1)
      fast_recip ? launch_box<1, true, false>(p, owned, s)
                 : launch_box<1, false, false>(p, owned, s);
    else if (!fast_recip)
      launch_box<2, false, false>(p, owned, s);
    else if (use_staged<2>(p, owned))
      launch_box<2, true, true>(p, owned, s);
    else
      launch_box<2, true, false>(p, owned, s);
  } else if (p.box) {
    switch (H) {
      case 1: launch<1, true>(p, owned, s); break;
      case 2: launch<2, true>(p, owned, s); break;
      case 3: launch<3, true>(p, owned, s); break;
      case 4: launch<4, true>(p, owned, s); break;
      case 5: launch<5, true>(p, owned, s); break;
      case 6: launch<6, true>(p, owned, s); break;
      case 7: launch<7, true>(p, owned, s); break;
      case 8: launch<8, true>(p, owned, s); break;
      default: GIGAREG_ASSERT(false);
    }
  } else {
    switch (H) {
      case 1: launch<1, false>(p, owned, s); break;
      case 2: launch<2, false>(p, owned, s); break;
      case 3: launch<3, false>(p, owned, s); break;
      case 4: launch<4, false>(p, owned, s); break;
      case 5: launch<5, false>(p, owned, s); break;
      case 6: launch<6, false>(p, owned, s); break;
      case 7: launch<7, false>(p, owned, s); break;
      case 8: launch<8, false>(p, owned, s); break;
      default: GIGAREG_ASSERT(false);
    }
  }
  if (partials.data != nullptr) {
    const index_t slices = owned.size.z;
    partials_kernel<<<unsigned((slices + 7) / 8), 256, 0, s>>>(p.tile_partials, slices, p.tiles,
                                                               partials.data);
    const cudaError_t e = cudaGetLastError();
    small_scratch_free(p.tile_partials, stream);
    if (e != cudaSuccess) GIGAREG_CUDA_CHECK(e);
  }
}

}  // namespace gigareg::cuda
