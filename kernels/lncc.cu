// CUDA LNCC loss with its exact gradient (or ANTs' approximation), one fused kernel.
// Per-centre math: include/gigareg/device/lncc.hpp. Nothing of volume size is allocated: only
// per-(slice, tile) loss partials.
//
// A block (512 threads for H <= 2, else 256) owns an output tile of 32 x TY columns (TY = 16 for
// H <= 2, else 8) of the owned box and a chunk of z (at most 64 planes); it marches along z one
// window-centre plane zc at a time. Per-block tables (in-plane offsets of the tile's columns,
// window weight totals) are built once; the tile geometry is a compile-time constant per H.
//   1. Z sums (shared Z[5][R2]): for every column of the tile grown by 2H (R2), the z-window
//      sums of (F, W, FF, WW, FW) at plane zc. Box window: running sums (add plane zc + H,
//      subtract plane zc - H - 1, the latter re-read from global memory, where L1/L2 still hold
//      it); Gaussian: the direct weighted sum over 2H + 1 planes. Intensities are shifted by the
//      tile's first owned F and W values (cc is shift-invariant): float keeps more digits.
//   2. x pass (XZ[5], tile grown by H in x, by 2H in y) and 3. y pass (S[5], tile grown by H):
//      a work item is (quantity, row or column, segment): SEG + 2H inputs go to registers and the
//      SEG outputs are running sums (box) or 2H + 1 products each (Gaussian).
//   4. At every centre of the tile grown by H: cc and the adjoint coefficients (a, b, c) of -cc
//      (zero for a centre outside the grid, outside owned grown by H, or unmasked); -cc of the
//      owned centres is summed per block in a fixed order (one partial per slice and tile).
//      ANTs' approximation writes its gradient here, at the centre, and stops.
//   5. x pass and 6. y pass of (a, b, c) onto the tile; the result goes into a ring of 2H + 1
//      planes in shared memory.
//   7. Once the ring holds planes zg - H .. zg + H (zg = zc - H), the z pass gives (A, B, C) and
//      grad(zg) = A F + B W + C, reading F and W of the output plane once more (L2 hits).
// Borders: inputs are read only inside owned grown by the halo (2H, or H for ANTs / value only)
// and clipped to the grid; everything outside is zero, which is the clipped window. Centres
// outside owned grown by H contribute nothing (their sums would be incomplete).
// Precision: float sums over shifted intensities; the running z sums accumulate a few ulps over
// a chunk (at most 64 planes). The per-slice loss partial is the sum over tiles in tile order.

#include <algorithm>

#include "cuda/check.cuh"
#include "cuda/loss.hpp"

namespace gigareg::cuda {
namespace {

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
  VolumeView<const float> fixed, warped, mask;
  VolumeView<float> grad;
  Box owned;
  Box valid;    // inputs are read only here: owned grown by the halo, clipped
  Box centres;  // centres that carry adjoint coefficients
  Index3 global;
  LnccTaps taps;
  float eps;
  index_t tiles_x, tiles;
  index_t zchunk;
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
                lncc_local<float>(n, s[0], s[T::SQ], s[2 * T::SQ], s[3 * T::SQ], s[4 * T::SQ], p.eps);
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

__global__ void partials_kernel(const double* tile_partials, index_t slices, index_t tiles,
                                double* out) {
  const index_t s = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= slices) return;
  double a = 0.0, c = 0.0;
  for (index_t t = 0; t < tiles; ++t) {
    a += tile_partials[(s * tiles + t) * 2];
    c += tile_partials[(s * tiles + t) * 2 + 1];
  }
  out[s * kLossTerms] = a;
  out[s * kLossTerms + 1] = c;
}

Box grow_clip(const Box& b, index_t r, Index3 g) {
  Box out;
  for (int a = 0; a < 3; ++a) {
    const index_t lo = std::max<index_t>(0, b.lo[a] - r);
    const index_t hi = std::min<index_t>(g[a], b.lo[a] + b.size[a] + r);
    out.lo[a] = lo;
    out.size[a] = hi - lo;
  }
  return out;
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
        loss_scratch_alloc(std::size_t(owned.size.z * p.tiles * 2) * sizeof(double), stream));
  const std::size_t shared = T::bytes(p.exact);
  try {
    if (shared > 48 * 1024)
      GIGAREG_CUDA_CHECK(cudaFuncSetAttribute(
          lncc_kernel<H, kBox>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
    lncc_kernel<H, kBox><<<dim3(unsigned(p.tiles), unsigned(chunks)), T::kThreads, shared, stream>>>(p);
    GIGAREG_CUDA_CHECK_LAUNCH("lncc_kernel");
  } catch (...) {
    loss_scratch_free(p.tile_partials, stream);
    p.tile_partials = nullptr;
    throw;
  }
}

}  // namespace

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
  p.exact = grad.data != nullptr && config.exact_gradient;
  p.ants = grad.data != nullptr && !config.exact_gradient;
  p.box = true;
  for (int d = 0; d <= 2 * H; ++d) p.box = p.box && config.taps.w[d] == 1.0f;
  p.valid = grow_clip(owned, p.exact ? 2 * H : H, p.global);
  p.centres = grow_clip(owned, p.exact ? H : 0, p.global);
  // A non-null marker: launch() replaces it with the scratch when the partials are wanted.
  p.tile_partials = partials.data != nullptr ? partials.data : nullptr;
  if (p.box) {
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
    partials_kernel<<<unsigned((slices + 127) / 128), 128, 0, s>>>(p.tile_partials, slices, p.tiles,
                                                                   partials.data);
    const cudaError_t e = cudaGetLastError();
    loss_scratch_free(p.tile_partials, stream);
    if (e != cudaSuccess) GIGAREG_CUDA_CHECK(e);
  }
}

}  // namespace gigareg::cuda
