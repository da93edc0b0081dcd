// CUDA kernels of the displacement-field ops: compose / resample, scaling and squaring, fixed-point
// inversion, the damped inversion's residual norms and step, boundary pinning, Jacobian
// determinant.
//
// Launch layout (as kernels/warp.cu): a block of 32 x 8 threads owns 8 consecutive rows of one z
// slice of the owned box; each warp walks one row in x with stride 32, so the component-plane
// loads and stores are coalesced. The field sampled at arbitrary positions (u) is gathered through
// the read-only cache. Per-slice reductions (residual maxima, counts) are a fixed-order block
// reduction into one partial per (slice, row group), then a second kernel combines each slice's
// row groups in order; maxima and integer counts are order-independent anyway, so the CPU and
// CUDA partials agree exactly. The kernels are capped at 64 registers (4 blocks per SM): the
// gathers are latency-bound, and more warps in flight pay (compose: 1.25x faster at 512^3).
// Compose has a second kernel for views whose offsets fit in 32 bits (all but the largest):
// int tap offsets shared by the three components and v of the next voxel loaded early; at
// 512^3 on H100 it runs in 2.19 ms instead of 3.28 ms (docs/benchmarks.md).


#include "cuda/check.cuh"
#include "ops/scratch.hpp"
#include "cuda/field.hpp"
#include "row_tiles.cuh"

namespace gigareg::cuda {
namespace {

constexpr int kMinBlocks = 4;  // __launch_bounds__: 64 registers, 4 blocks of 256 per SM


/// NaN-propagating maximum: the result is NaN if either is, else the larger.
__device__ __forceinline__ double max_nan(double a, double b) {
  return (b > a || isnan(b)) && !isnan(a) ? b : a;
}

__device__ __forceinline__ double combine(double a, double b, bool is_max) {
  return is_max ? max_nan(a, b) : a + b;
}

/// Reduces each thread's `acc` over the block with a fixed tree (lanes, then warps in row order)
/// and writes the block's partial to dst[0..Terms). Term t is a maximum when bit t of max_mask is
/// set, else a sum. Every thread of the block must call it.
template <int Terms>
__device__ void block_reduce(const double (&acc)[Terms], unsigned max_mask,
                             double (&warp_vals)[kTy][Terms], double* dst) {
#pragma unroll
  for (int t = 0; t < Terms; ++t) {
    const bool is_max = (max_mask >> t) & 1u;
    double s = acc[t];
#pragma unroll
    for (int off = kTx / 2; off > 0; off /= 2)
      s = combine(s, __shfl_down_sync(0xffffffffu, s, off), is_max);
    if (threadIdx.x == 0) warp_vals[threadIdx.y][t] = s;
  }
  __syncthreads();
  if (threadIdx.y == 0 && threadIdx.x < Terms) {
    const bool is_max = (max_mask >> threadIdx.x) & 1u;
    double s = warp_vals[0][threadIdx.x];
    for (int w = 1; w < kTy; ++w) s = combine(s, warp_vals[w][threadIdx.x], is_max);
    dst[threadIdx.x] = s;
  }
  __syncthreads();
}

/// Every slice of the owned box in turn: f(i, j, k, acc) runs on this thread's voxels of its row
/// and accumulates the slice's Terms terms (maxima where max_mask says), which the block then
/// reduces into its partial for (slice, row group) when WantPartials. Every thread of the block
/// must call it (no early return: the block reduction needs them all).
template <int Terms, bool WantPartials, class F>
__device__ __forceinline__ void reduce_over_row_tiles(const Box& owned, unsigned max_mask,
                                                      double* __restrict__ block_partials, F&& f) {
  __shared__ double warp_vals[kTy][Terms];
  const index_t jj = index_t(blockIdx.x) * kTy + threadIdx.y;
  const bool row_ok = jj < owned.size.y;
  const index_t j = owned.lo.y + jj;
  for (index_t kk = blockIdx.y; kk < owned.size.z; kk += gridDim.y) {
    const index_t k = owned.lo.z + kk;
    double acc[Terms] = {};
    if (row_ok) along_row(owned, [&](index_t i) { f(i, j, k, acc); });
    if constexpr (WantPartials)
      block_reduce<Terms>(acc, max_mask, warp_vals,
                          block_partials + (kk * index_t(gridDim.x) + blockIdx.x) * Terms);
  }
}

// One thread per (slice, term): the slice's row-group partials combined in row order.
__global__ void combine_row_groups(const double* __restrict__ block_partials, index_t row_groups,
                                   index_t slices, int terms, unsigned max_mask,
                                   double* __restrict__ partials) {
  const index_t n = slices * terms;
  for (index_t idx = index_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += index_t(gridDim.x) * blockDim.x) {
    const index_t s = idx / terms;
    const int t = int(idx % terms);
    const bool is_max = (max_mask >> t) & 1u;
    double r = block_partials[(s * row_groups) * terms + t];
    for (index_t g = 1; g < row_groups; ++g)
      r = combine(r, block_partials[(s * row_groups + g) * terms + t], is_max);
    partials[idx] = r;
  }
}

void launch_combine(cudaStream_t stream, const double* block_partials, const RowTileLaunch& l,
                    index_t slices, int terms, unsigned max_mask, double* partials) {
  const long long n = slices * terms;
  combine_row_groups<<<cuda_detail::blocks_for(n, 128), 128, 0, stream>>>(
      block_partials, l.row_groups, slices, terms, max_mask, partials);
  GIGAREG_CUDA_CHECK_LAUNCH("combine_row_groups");
}

// out(i) = R i + r0 + M v(i) + u(Q i + q0 + G v(i)); v is read once per voxel, u gathered.
template <bool HasV>
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    compose_kernel(const ComposePlan plan, const VolumeView<const float> v,
                   const VolumeView<const float> u, const VolumeView<float> out, const Box owned,
                   const Boundary boundary) {
  for_each_row_tile_voxel(owned, [&](index_t i, index_t j, index_t k) {
    const Vec3f vv = HasV ? load_vec3(v, i, j, k) : Vec3f{0.f, 0.f, 0.f};
    store3(out, i, j, k, compose_voxel(plan, u, i, j, k, vv, boundary));
  });
}

// The compose kernel with 32-bit in-view offsets (launch_compose checks that every view fits):
// the 8 taps' offsets are formed once and shared by the three components (one wide address
// add per gather instead of three 64-bit adds), and v of the thread's next voxel is loaded
// before the gathers of the current one (its DRAM latency overlaps theirs). Same arithmetic as
// compose_voxel / sample_linear3, in the same order.
struct Taps32 {
  int o0, o1;    // element offsets along the axis (0 when invalid)
  float w0, w1;  // weights
  bool v0, v1;   // inside the grid and the view
};

/// axis_taps (device/interpolate.hpp) with int offsets; the float math is the same.
__device__ __forceinline__ Taps32 axis_taps32(float p, int view_lo, int view_n, int grid_n,
                                              int stride, Boundary boundary) {
  Taps32 t{0, 0, 0.f, 0.f, false, false};
  int i0 = 0, i1 = 0;
  if (boundary == Boundary::FieldTransform && !(p >= -0.5f && p < float(grid_n) - 0.5f)) return t;
  if (boundary != Boundary::Zero) {
    const float hi = float(grid_n - 1);
    const float pc = fminf(fmaxf(p, 0.f), hi);
    const float f = floorf(pc);
    const float frac = pc - f;
    i0 = int(f);
    i1 = i0 + 1 < grid_n ? i0 + 1 : grid_n - 1;
    t.w0 = 1.f - frac;
    t.w1 = frac;
  } else {
    if (!(p > -1.f && p < float(grid_n))) return t;
    const float f = floorf(p);
    const float frac = p - f;
    i0 = int(f);
    i1 = i0 + 1;
    t.w0 = 1.f - frac;
    t.w1 = frac;
  }
  t.v0 = unsigned(i0 - view_lo) < unsigned(view_n);
  t.v1 = unsigned(i1 - view_lo) < unsigned(view_n);
  t.o0 = t.v0 ? (i0 - view_lo) * stride : 0;
  t.o1 = t.v1 ? (i1 - view_lo) * stride : 0;
  return t;
}

struct View32 {  // a view's geometry as ints (launch_compose checked that they fit)
  int lo_x, lo_y, lo_z, n_x, n_y, n_z, g_x, g_y, g_z, s_x, s_y, s_z;
};

template <class T>
__device__ __forceinline__ View32 view32(const VolumeView<T>& v) {
  return {int(v.box_lo.x), int(v.box_lo.y), int(v.box_lo.z), int(v.extent.x), int(v.extent.y),
          int(v.extent.z), int(v.global_size.x), int(v.global_size.y), int(v.global_size.z),
          int(v.stride.x), int(v.stride.y), int(v.stride.z)};
}

/// Every element offset of a view's components, and the owned box, fit in int.
template <class T>
bool fits32(const VolumeView<T>& v) {
  if (v.data == nullptr) return true;
  const double span = double(v.extent.x) * double(v.stride.x < 0 ? -v.stride.x : v.stride.x) +
                      double(v.extent.y) * double(v.stride.y < 0 ? -v.stride.y : v.stride.y) +
                      double(v.extent.z) * double(v.stride.z < 0 ? -v.stride.z : v.stride.z);
  const double g = double(v.global_size.x) + double(v.global_size.y) + double(v.global_size.z);
  return span < 2147483647.0 && g < 2147483647.0 && v.stride.x >= 0 && v.stride.y >= 0 &&
         v.stride.z >= 0;
}

template <bool HasV>
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    compose32_kernel(const ComposePlan plan, const VolumeView<const float> v,
                     const VolumeView<const float> u, const VolumeView<float> out, const Box owned,
                     const Boundary boundary) {
  const int jj = int(blockIdx.x) * kTy + int(threadIdx.y);
  if (jj >= int(owned.size.y)) return;
  const int j = int(owned.lo.y) + jj;
  const View32 U = view32(u);
  const float* u0 = u.data;
  const float* u1 = u.data + u.component_stride;
  const float* u2 = u.data + 2 * u.component_stride;
  const int nx = int(owned.size.x);
  for (int kk = int(blockIdx.y); kk < int(owned.size.z); kk += int(gridDim.y)) {
    const int k = int(owned.lo.z) + kk;
    // Row pointers (64-bit once per row); x offsets in int.
    const float* vrow = HasV ? &v.at(owned.lo.x, j, k) : nullptr;
    float* orow = &out.at(owned.lo.x, j, k);
    const int vsx = int(v.stride.x), osx = int(out.stride.x);
    const index_t vcs = v.component_stride, ocs = out.component_stride;
    int ii = int(threadIdx.x);
    Vec3f vn{0.f, 0.f, 0.f};
    if (HasV && ii < nx) {
      const float* q = vrow + ii * vsx;
      vn = {q[0], q[vcs], q[2 * vcs]};  // plain loads: out may alias v (not read-only)
    }
    for (; ii < nx; ii += kTx) {
      const Vec3f vv = vn;
      if (HasV && ii + kTx < nx) {  // the next voxel's v, in flight during this one's gathers
        const float* q = vrow + (ii + kTx) * vsx;
        vn = {q[0], q[vcs], q[2 * vcs]};
      }
      const int i = int(owned.lo.x) + ii;
      const Vec3f idx{float(i), float(j), float(k)};
      const Vec3f p = plan.index_matrix * idx + plan.index_offset + plan.displacement_matrix * vv;
      const Taps32 tx = axis_taps32(p.x, U.lo_x, U.n_x, U.g_x, U.s_x, boundary);
      const Taps32 ty = axis_taps32(p.y, U.lo_y, U.n_y, U.g_y, U.s_y, boundary);
      const Taps32 tz = axis_taps32(p.z, U.lo_z, U.n_z, U.g_z, U.s_z, boundary);
      int o[8];
      bool ok[8];
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const bool bx = c & 1, by = c & 2, bz = c & 4;
        o[c] = (bz ? tz.o1 : tz.o0) + (by ? ty.o1 : ty.o0) + (bx ? tx.o1 : tx.o0);
        ok[c] = (bz ? tz.v1 : tz.v0) && (by ? ty.v1 : ty.v0) && (bx ? tx.v1 : tx.v0);
      }
      Taps3 t;  // weights only: trilinear_combine reads nothing else
      t.x.w0 = tx.w0;
      t.x.w1 = tx.w1;
      t.y.w0 = ty.w0;
      t.y.w1 = ty.w1;
      t.z.w0 = tz.w0;
      t.z.w1 = tz.w1;
      float n0[2][2][2], n1[2][2][2], n2[2][2][2];
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const int a = c & 1, b = (c >> 1) & 1, cz = c >> 2;
        n0[cz][b][a] = ok[c] ? __ldg(u0 + o[c]) : 0.f;
        n1[cz][b][a] = ok[c] ? __ldg(u1 + o[c]) : 0.f;
        n2[cz][b][a] = ok[c] ? __ldg(u2 + o[c]) : 0.f;
      }
      Vec3f s;
      s.x = trilinear_combine(t, n0);
      s.y = trilinear_combine(t, n1);
      s.z = trilinear_combine(t, n2);
      const Vec3f w = plan.rest_matrix * idx + plan.rest_offset + plan.affine_matrix * vv + s;
      float* q = orow + ii * osx;
      q[0] = w.x;
      q[ocs] = w.y;
      q[2 * ocs] = w.z;
    }
  }
}

// out = scale * v over the whole grid (the first step of scaling and squaring).
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    scale_kernel(const VolumeView<const float> v, const VolumeView<float> out, const Box owned,
                 const float scale) {
  for_each_row_tile_voxel(owned, [&](index_t i, index_t j, index_t k) {
    for (int c = 0; c < 3; ++c) out.at(i, j, k, c) = scale * v.at(i, j, k, c);
  });
}

// Per-voxel fixed-point inversion; the block partial is [max residual, count above tolerance].
template <bool HasInit, bool WantResidual>
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    invert_kernel(const ComposePlan plan, const VolumeView<const float> u,
                  const VolumeView<const float> initial, const VolumeView<float> out,
                  const Box owned, const int iterations, const float tolerance,
                  const Boundary boundary, double* __restrict__ block_partials) {
  reduce_over_row_tiles<2, WantResidual>(owned, 1u, block_partials,
                                          [&](index_t i, index_t j, index_t k, double (&acc)[2]) {
    const Vec3f w0 = HasInit ? load_vec3(initial, i, j, k) : Vec3f{0.f, 0.f, 0.f};
    float r = 0.f;
    store3(out, i, j, k, invert_voxel(plan, u, i, j, k, w0, iterations, tolerance, boundary, r));
    acc[0] = max_nan(acc[0], double(r));
    if (!(r <= tolerance)) acc[1] += 1.0;
  });
}

// det(I + dU/dx) per voxel (halo 1); the block partial counts det <= 0 (or NaN).
template <bool WantDet, bool WantCount>
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    jacobian_kernel(const VolumeView<const float> u, const Mat3f inverse_index_map,
                    const VolumeView<float> det, const Box owned,
                    double* __restrict__ block_partials) {
  reduce_over_row_tiles<1, WantCount>(owned, 0u, block_partials,
                                       [&](index_t i, index_t j, index_t k, double (&acc)[1]) {
    const float d = jacobian_determinant_voxel(u, inverse_index_map, Index3{i, j, k});
    if constexpr (WantDet) det.at(i, j, k) = d;
    if (!(d > 0.f)) acc[0] += 1.0;
  });
}

// Per voxel |P^-1 e| (voxels); the block partial holds [largest, sum] (the damped inversion's
// residuals). The sum's order differs from the CPU's row-by-row one: equal within rounding.
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    residual_norms_kernel(const VolumeView<const float> e, const Mat3f inverse_index_map,
                          const Box owned, double* __restrict__ block_partials) {
  reduce_over_row_tiles<2, true>(owned, 1u, block_partials,
                                 [&](index_t i, index_t j, index_t k, double (&acc)[2]) {
    const float n = norm_in_voxels(inverse_index_map, load_vec3(e, i, j, k));
    acc[0] = max_nan(acc[0], double(n));
    acc[1] += double(n);
  });
}

// w <- damped_inverse_voxel(w, e, ...) per voxel; 0 on the grid's outermost layer when pinned.
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    damped_inverse_step_kernel(const VolumeView<const float> e, const VolumeView<float> w,
                               const Mat3f inverse_index_map, const float epsilon,
                               const float clip, const bool pin_boundary, const Box owned) {
  for_each_row_tile_voxel(owned, [&](index_t i, index_t j, index_t k) {
    store3(w, i, j, k,
           damped_inverse_step_voxel(e, w, inverse_index_map, epsilon, clip, pin_boundary, Index3{i, j, k}));
  });
}

// e <- (I + dw/dx) e per voxel (w read with halo 1; each voxel's e read before it is written).
__global__ void __launch_bounds__(kTx* kTy, kMinBlocks)
    newton_direction_kernel(const VolumeView<float> e, const VolumeView<const float> w,
                            const Mat3f inverse_index_map, const Box owned) {
  for_each_row_tile_voxel(owned, [&](index_t i, index_t j, index_t k) {
    store3(e, i, j, k, newton_direction_voxel(w, inverse_index_map, Index3{i, j, k}, load_vec3(e, i, j, k)));
  });
}

__global__ void zero_boundary_kernel(const VolumeView<float> field, const Box owned) {
  for_each_row_tile_voxel(owned, [&](index_t i, index_t j, index_t k) {
    if (on_grid_boundary(Index3{i, j, k}, field.global_size)) store3(field, i, j, k, Vec3f{0.f, 0.f, 0.f});
  });
}

void launch_compose(cudaStream_t s, const ComposePlan& plan, VolumeView<const float> v,
                    VolumeView<const float> u, VolumeView<float> out, const Box& owned,
                    Boundary boundary) {
  const RowTileLaunch l = row_tile_launch(owned);
  if (fits32(v) && fits32(u) && fits32(VolumeView<const float>(out))) {
    if (v.data)
      compose32_kernel<true><<<l.grid, l.block, 0, s>>>(plan, v, u, out, owned, boundary);
    else
      compose32_kernel<false><<<l.grid, l.block, 0, s>>>(plan, v, u, out, owned, boundary);
    GIGAREG_CUDA_CHECK_LAUNCH("compose32_kernel");
    return;
  }
  if (v.data)
    compose_kernel<true><<<l.grid, l.block, 0, s>>>(plan, v, u, out, owned, boundary);
  else
    compose_kernel<false><<<l.grid, l.block, 0, s>>>(plan, v, u, out, owned, boundary);
  GIGAREG_CUDA_CHECK_LAUNCH("compose_kernel");
}

template <bool HasInit, bool WantResidual>
void launch_invert(cudaStream_t s, const RowTileLaunch& l, const ComposePlan& plan,
                   VolumeView<const float> u, VolumeView<const float> initial,
                   VolumeView<float> out, const Box& owned, int iterations, float tolerance,
                   Boundary boundary, double* block_partials) {
  invert_kernel<HasInit, WantResidual><<<l.grid, l.block, 0, s>>>(
      plan, u, initial, out, owned, iterations, tolerance, boundary, block_partials);
  GIGAREG_CUDA_CHECK_LAUNCH("invert_kernel");
}

template <bool WantDet, bool WantCount>
void launch_jacobian(cudaStream_t s, const RowTileLaunch& l, VolumeView<const float> u,
                     const Mat3f& inverse_index_map, VolumeView<float> det, const Box& owned,
                     double* block_partials) {
  jacobian_kernel<WantDet, WantCount>
      <<<l.grid, l.block, 0, s>>>(u, inverse_index_map, det, owned, block_partials);
  GIGAREG_CUDA_CHECK_LAUNCH("jacobian_kernel");
}

}  // namespace

void compose(void* stream, const ComposePlan& plan, VolumeView<const float> v,
             VolumeView<const float> u, VolumeView<float> out, const Box& owned,
             Boundary boundary) {
  if (owned.empty()) return;
  launch_compose(static_cast<cudaStream_t>(stream), plan, v, u, out, owned, boundary);
}

void exp_field(void* stream, const ComposePlan& plan, VolumeView<const float> v, int steps,
               VolumeView<float> out, Boundary boundary) {
  // Ping-pong between out and a scratch field so that the last squaring lands in out (the scaled
  // field starts in out when `steps` is even).
  const auto s = static_cast<cudaStream_t>(stream);
  const Box whole{{0, 0, 0}, out.global_size};
  const index_t n = whole.voxel_count();
  Scratch<float> scratch_mem(Context::cuda(s), steps > 0 ? std::size_t(3 * n) : 0, "exp_field scratch");
  const Index3 e = whole.size;
  const VolumeView<float> scratch{scratch_mem.data(), e, {1, e.x, e.x * e.y}, n,
                                  3, {0, 0, 0}, out.global_size};
  VolumeView<float> cur = (steps % 2 == 0) ? out : scratch;
  VolumeView<float> next = (steps % 2 == 0) ? scratch : out;
  const RowTileLaunch l = row_tile_launch(whole);
  scale_kernel<<<l.grid, l.block, 0, s>>>(v, cur, whole, float(ldexp(1.0, -steps)));
  GIGAREG_CUDA_CHECK_LAUNCH("scale_kernel");
  for (int step = 0; step < steps; ++step) {
    launch_compose(s, plan, cur, cur, next, whole, boundary);
    const VolumeView<float> t = cur;
    cur = next;
    next = t;
  }
}

void invert(void* stream, const ComposePlan& plan, VolumeView<const float> u,
            VolumeView<const float> initial, VolumeView<float> out, const Box& owned,
            int iterations, float tolerance, Boundary boundary, double* residual) {
  if (owned.empty()) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const RowTileLaunch l = row_tile_launch(owned);
  Scratch<double> scratch(Context::cuda(s), residual ? std::size_t(owned.size.z * l.row_groups * 2) : 0, "invert_field partials");
  double* bp = scratch.data();
  if (initial.data) {
    if (residual)
      launch_invert<true, true>(s, l, plan, u, initial, out, owned, iterations, tolerance, boundary, bp);
    else
      launch_invert<true, false>(s, l, plan, u, initial, out, owned, iterations, tolerance, boundary, bp);
  } else {
    if (residual)
      launch_invert<false, true>(s, l, plan, u, initial, out, owned, iterations, tolerance, boundary, bp);
    else
      launch_invert<false, false>(s, l, plan, u, initial, out, owned, iterations, tolerance, boundary, bp);
  }
  if (residual) launch_combine(s, bp, l, owned.size.z, 2, 1u, residual);
}

void jacobian_determinant(void* stream, VolumeView<const float> u, const Mat3f& inverse_index_map,
                          VolumeView<float> det, const Box& owned, double* nonpositive) {
  if (owned.empty()) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const RowTileLaunch l = row_tile_launch(owned);
  Scratch<double> scratch(Context::cuda(s), nonpositive ? std::size_t(owned.size.z * l.row_groups) : 0, "jacobian partials");
  double* bp = scratch.data();
  if (det.data && nonpositive)
    launch_jacobian<true, true>(s, l, u, inverse_index_map, det, owned, bp);
  else if (det.data)
    launch_jacobian<true, false>(s, l, u, inverse_index_map, det, owned, bp);
  else
    launch_jacobian<false, true>(s, l, u, inverse_index_map, det, owned, bp);
  if (nonpositive) launch_combine(s, bp, l, owned.size.z, 1, 0u, nonpositive);
}

void residual_norms(void* stream, VolumeView<const float> e, const Mat3f& inverse_index_map,
                    const Box& owned, double* partials) {
  if (owned.empty()) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const RowTileLaunch l = row_tile_launch(owned);
  Scratch<double> scratch(Context::cuda(s), std::size_t(owned.size.z * l.row_groups * 2),
                          "residual_norms partials");
  residual_norms_kernel<<<l.grid, l.block, 0, s>>>(e, inverse_index_map, owned, scratch.data());
  GIGAREG_CUDA_CHECK_LAUNCH("residual_norms_kernel");
  launch_combine(s, scratch.data(), l, owned.size.z, 2, 1u, partials);
}

void damped_inverse_step(void* stream, VolumeView<const float> e, VolumeView<float> w,
                         const Mat3f& inverse_index_map, float epsilon, float clip,
                         bool pin_boundary, const Box& owned) {
  if (owned.empty()) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const RowTileLaunch l = row_tile_launch(owned);
  damped_inverse_step_kernel<<<l.grid, l.block, 0, s>>>(e, w, inverse_index_map, epsilon, clip,
                                                        pin_boundary, owned);
  GIGAREG_CUDA_CHECK_LAUNCH("damped_inverse_step_kernel");
}

void newton_direction(void* stream, VolumeView<float> e, VolumeView<const float> w,
                      const Mat3f& inverse_index_map, const Box& owned) {
  if (owned.empty()) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const RowTileLaunch l = row_tile_launch(owned);
  newton_direction_kernel<<<l.grid, l.block, 0, s>>>(e, w, inverse_index_map, owned);
  GIGAREG_CUDA_CHECK_LAUNCH("newton_direction_kernel");
}

void zero_boundary(void* stream, VolumeView<float> field, const Box& owned) {
  if (owned.empty()) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const RowTileLaunch l = row_tile_launch(owned);
  zero_boundary_kernel<<<l.grid, l.block, 0, s>>>(field, owned);
  GIGAREG_CUDA_CHECK_LAUNCH("zero_boundary_kernel");
}

void copy_to_host(void* stream, void* host, const void* device, std::size_t bytes) {
  const auto s = static_cast<cudaStream_t>(stream);
  GIGAREG_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, s));
  GIGAREG_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace gigareg::cuda
