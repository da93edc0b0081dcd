// gaussian_smooth: argument checks, taps, the pass plan (order z, y, x; regions; z-chunks;
// scratch ping-pong) shared by both backends, and dispatch of the single passes.

#include "gigareg/ops/smooth.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "ops/common.hpp"
#include "ops/scratch.hpp"
#include "ops/smooth_plan.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/smooth.hpp"
#endif

namespace gigareg {
namespace cpu {
void gaussian_pass(VolumeView<const float> src, VolumeView<float> dst, const Box& region, int axis,
                   const GaussianTaps& taps);
void gaussian_adjoint_pass(VolumeView<const float> src, VolumeView<float> dst, int axis,
                           const GaussianTaps& taps);
}  // namespace cpu

namespace {

using ops_detail::grow_clip;

// Scratch per z-chunk: each of the two ping-pong buffers holds at most about this many voxels
// (at least one slice of the first pass's region).
constexpr index_t kChunkVoxels = index_t(1) << 25;
// In place: three buffers of about this many voxels (two for the first pass of two chunks, one
// for a middle pass): smaller chunks, so that in-place smoothing needs little memory at all.
constexpr index_t kInPlaceChunkVoxels = index_t(1) << 24;


VolumeView<float> contiguous_view(float* data, const Box& box, Index3 global) {
  const Index3 e = box.size;
  return {data, e, {1, e.x, e.x * e.y}, box.voxel_count(), 1, box.lo, global};
}

template <class T>
VolumeView<T> component(VolumeView<T> v, int c) {
  v.data += c * v.component_stride;
  v.components = 1;
  return v;
}

void run_pass(const Context& ctx, VolumeView<const float> src, VolumeView<float> dst,
              const Box& region, int axis, const GaussianTaps& taps) {
  if (ctx.backend == Backend::Cpu) {
    cpu::gaussian_pass(src, dst, region, axis, taps);
  } else {
#if GIGAREG_WITH_CUDA
    cuda::gaussian_pass(ctx.stream, src, dst, region, axis, taps);
#else
    throw_error(ErrorKind::Cuda, "gaussian_smooth", "gigareg was built without CUDA");
#endif
  }
}

}  // namespace

int gaussian_radius(double sigma_voxels, double truncation) {
  GIGAREG_REQUIRE(std::isfinite(sigma_voxels) && sigma_voxels >= 0.0,
                  "sigma must be finite and non-negative, got " + std::to_string(sigma_voxels));
  GIGAREG_REQUIRE(std::isfinite(truncation) && truncation > 0.0,
                  "truncation must be finite and positive, got " + std::to_string(truncation));
  const double r = std::ceil(truncation * sigma_voxels);
  GIGAREG_REQUIRE(r <= double(kMaxGaussianRadius),
                  "kernel radius ceil(" + std::to_string(truncation) + " * " +
                      std::to_string(sigma_voxels) + ") exceeds the maximum " +
                      std::to_string(kMaxGaussianRadius) + " voxels");
  return int(r);
}

Index3 gaussian_radii(Vec3d sigma_voxels, double truncation) {
  return {gaussian_radius(sigma_voxels.x, truncation), gaussian_radius(sigma_voxels.y, truncation),
          gaussian_radius(sigma_voxels.z, truncation)};
}

GaussianTaps gaussian_taps(double sigma_voxels, double truncation) {
  GaussianTaps taps;
  taps.radius = gaussian_radius(sigma_voxels, truncation);
  if (taps.radius == 0) {
    taps.w[0] = 1.0f;
    return taps;
  }
  double w[kMaxGaussianRadius + 1];
  double sum = 0.0;
  for (int k = 0; k <= taps.radius; ++k) {
    w[k] = std::exp(-0.5 * double(k) * double(k) / (sigma_voxels * sigma_voxels));
    sum += (k == 0 ? 1.0 : 2.0) * w[k];
  }
  for (int k = 0; k <= taps.radius; ++k) taps.w[k] = float(w[k] / sum);
  return taps;
}

Vec3d sigma_mm_to_voxels(const Geometry& geometry, Vec3d sigma_mm) {
  Vec3d s;
  for (int a = 0; a < 3; ++a) {
    GIGAREG_REQUIRE(geometry.spacing[a] > 0.0, "spacing must be positive");
    s[a] = sigma_mm[a] / geometry.spacing[a];
  }
  return s;
}

Vec3d sigma_mm_to_voxels(const Geometry& geometry, double sigma_mm) {
  return sigma_mm_to_voxels(geometry, Vec3d{sigma_mm, sigma_mm, sigma_mm});
}

Box smoothing_input_box(const Box& owned, Index3 global_size, Vec3d sigma_voxels,
                        double truncation) {
  return grow_clip(owned, gaussian_radii(sigma_voxels, truncation), global_size);
}

void gaussian_smooth_adjoint(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                             Vec3d sigma_voxels, double truncation) {
  const Index3 global = in.global_size;
  const Box grid{{0, 0, 0}, global};
  GIGAREG_REQUIRE(out.global_size == global && in.box() == grid && out.box() == grid,
                  "gaussian_smooth_adjoint works on whole volumes (views of the whole grid)");
  GIGAREG_REQUIRE(in.components == out.components && in.components >= 1,
                  "input and output must have the same number of components");
  GIGAREG_REQUIRE(static_cast<const void*>(in.data) != static_cast<const void*>(out.data),
                  "gaussian_smooth_adjoint does not run in place");
  require_backend_memory(ctx, "gaussian_smooth_adjoint", in.data);
  require_backend_memory(ctx, "gaussian_smooth_adjoint", out.data);
  const GaussianTaps taps[3] = {gaussian_taps(sigma_voxels.x, truncation), gaussian_taps(sigma_voxels.y, truncation),
                                gaussian_taps(sigma_voxels.z, truncation)};
  const auto adjoint_pass = [&](VolumeView<const float> src, VolumeView<float> dst, int axis) {
    if (ctx.backend == Backend::Cpu) {
      cpu::gaussian_adjoint_pass(src, dst, axis, taps[axis]);
    } else {
#if GIGAREG_WITH_CUDA
      cuda::gaussian_adjoint_pass(ctx.stream, src, dst, axis, taps[axis]);
#else
      throw_error(ErrorKind::Cuda, "gaussian_smooth_adjoint", "gigareg was built without CUDA");
#endif
    }
  };
  // The forward passes run z, y, x; their transposes run x, y, z, ping-ponging between `out` and
  // one scratch volume so that the last pass lands in `out`.
  int axes[3], count = 0;
  for (int a = 0; a < 3; ++a)
    if (taps[a].radius > 0) axes[count++] = a;
  Scratch<float> scratch(ctx, count > 1 ? std::size_t(grid.voxel_count()) : 0, "gaussian_smooth_adjoint scratch");
  for (int c = 0; c < in.components; ++c) {
    const VolumeView<const float> src_c = component(in, c);
    const VolumeView<float> dst_c = component(out, c);
    if (count == 0) {
      adjoint_pass(src_c, dst_c, 0);  // radius 0 everywhere: a copy
      continue;
    }
    const VolumeView<float> tmp = contiguous_view(scratch.data(), grid, global);
    VolumeView<const float> from = src_c;
    for (int p = 0; p < count; ++p) {
      // The last pass writes `out`; before it, passes alternate so that none reads what it writes.
      const VolumeView<float> to = (count - 1 - p) % 2 == 0 ? dst_c : tmp;
      adjoint_pass(from, to, axes[p]);
      from = to;
    }
  }
}

void gaussian_smooth(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                     Vec3d sigma_voxels, const Box& owned, double truncation) {
  const bool in_place = static_cast<const void*>(in.data) == static_cast<const void*>(out.data);
  gaussian_smooth_chunked(ctx, in, out, sigma_voxels, owned, truncation,
                          in_place ? kInPlaceChunkVoxels : kChunkVoxels);
}

namespace {

// How one smoothing call runs: the active passes (order z, y, x; an axis of radius 0 is the
// identity and is skipped), whether CUDA fuses the last y and x passes, and the z-chunks that
// bound the scratch. Every output voxel is computed from the same values in the same order
// whatever the chunking, so chunking never changes a bit of the result.
struct SmoothPlan {
  GaussianTaps taps[3];
  Index3 radius{0, 0, 0}, global{0, 0, 0};
  Box owned;
  bool in_place = false;
  int axes[3] = {0, 0, 0};
  int count = 0;         // active passes
  bool fuse_yx = false;  // the last two (y then x) run as one CUDA kernel
  int singles = 0;       // passes run one axis at a time
  index_t chunk_z = 1;

  // The region of pass p is the chunk grown by the radii of the passes still to come.
  Box region_of(const Box& chunk, int p) const {
    Index3 g{0, 0, 0};
    for (int q = p + 1; q < count; ++q) g[axes[q]] = radius[axes[q]];
    return grow_clip(chunk, g, global);
  }
  Box chunk_at(index_t z0) const {
    Box c = owned;
    c.lo.z = z0;
    c.size.z = std::min(chunk_z, owned.lo.z + owned.size.z - z0);
    return c;
  }
  Box full_chunk() const { return chunk_at(owned.lo.z); }
  index_t z_end() const { return owned.lo.z + owned.size.z; }
};

void check_smooth_arguments(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                            const Box& owned, Index3 radius, index_t chunk_voxels) {
  const Index3 global = in.global_size;
  GIGAREG_REQUIRE(in.global_size == out.global_size,
                  "input and output must live on the same global grid");
  GIGAREG_REQUIRE(in.components == out.components && in.components >= 1,
                  "input and output must have the same number of components");
  GIGAREG_REQUIRE(chunk_voxels >= 1, "the chunk size must be positive");
  const Box grid{{0, 0, 0}, global};
  GIGAREG_REQUIRE(grid.contains(owned), "the owned box must lie in the grid");
  if (owned.empty()) return;
  GIGAREG_REQUIRE(out.box().contains(owned), "the output view must contain the owned box");
  GIGAREG_REQUIRE(in.box().contains(grow_clip(owned, radius, global)),
                  "the input view must contain the owned box grown by the kernel radius "
                  "(clipped to the grid)");
  const bool in_place = static_cast<const void*>(in.data) == static_cast<const void*>(out.data);
  GIGAREG_REQUIRE(!in_place || (in.box() == out.box() && in.stride == out.stride &&
                                in.component_stride == out.component_stride),
                  "in-place smoothing needs the input and output to be the same view");
  require_backend_memory(ctx, "gaussian_smooth", in.data);
  require_backend_memory(ctx, "gaussian_smooth", out.data);
}

SmoothPlan plan_smoothing(const Context& ctx, const GaussianTaps (&taps)[3], Index3 global,
                          const Box& owned, bool in_place, index_t chunk_voxels) {
  SmoothPlan plan;
  for (int a = 0; a < 3; ++a) plan.taps[a] = taps[a];
  plan.radius = {taps[0].radius, taps[1].radius, taps[2].radius};
  plan.global = global;
  plan.owned = owned;
  plan.in_place = in_place;
  for (int a = 2; a >= 0; --a)
    if (plan.radius[a] > 0) plan.axes[plan.count++] = a;

  // On CUDA the y and x passes run as one kernel when they are the last two (same values: the
  // intermediate stays in shared memory). In place, the first pass must read the input into
  // scratch, so the fused kernel only ever reads scratch there (a z pass comes first).
#if GIGAREG_WITH_CUDA
  const int n = plan.count;
  plan.fuse_yx = ctx.backend == Backend::Cuda && n >= 2 && plan.axes[n - 2] == 1 &&
                 plan.axes[n - 1] == 0 &&
                 cuda::gaussian_yx_fusable(int(plan.radius.y), int(plan.radius.x)) &&
                 !(in_place && n == 2);
#else
  (void)ctx;
#endif
  plan.singles = plan.fuse_yx ? plan.count - 2 : plan.count;

  const Box first = plan.region_of(owned, 0);
  const index_t slice = first.size.x * first.size.y;
  index_t chunk_z = std::max<index_t>(chunk_voxels / slice, 1);
  // In place, chunk k + 1's first pass reads r_z planes of chunk k (not yet written) but none of
  // chunk k - 1 (already written): chunks are at least r_z planes thick.
  if (in_place && plan.count > 0 && plan.axes[0] == 2) chunk_z = std::max<index_t>(chunk_z, plan.radius.z);
  plan.chunk_z = std::min(chunk_z, owned.size.z);
  return plan;
}

void run_fused_yx(const Context& ctx, const SmoothPlan& plan, VolumeView<const float> src,
                  VolumeView<float> dst, const Box& chunk) {
#if GIGAREG_WITH_CUDA
  cuda::gaussian_pass_yx(ctx.stream, src, dst, chunk, plan.taps[1], plan.taps[0]);
#else
  (void)ctx, (void)plan, (void)src, (void)dst, (void)chunk;
#endif
}

// Out of place: every pass but the last (or the fused pair) writes scratch, ping-pong; the last
// writes out.
void smooth_out_of_place(const Context& ctx, const SmoothPlan& plan, VolumeView<const float> in,
                         VolumeView<float> out) {
  const int to_scratch = plan.fuse_yx ? plan.singles : plan.count - 1;
  index_t scratch_count[2] = {0, 0};
  for (int p = 0; p < to_scratch; ++p) scratch_count[p] = plan.region_of(plan.full_chunk(), p).voxel_count();
  Scratch<float> ping(ctx, std::size_t(scratch_count[0]), "gaussian_smooth scratch");
  Scratch<float> pong(ctx, std::size_t(scratch_count[1]), "gaussian_smooth scratch");
  for (int c = 0; c < in.components; ++c) {
    const VolumeView<const float> src_c = component(in, c);
    const VolumeView<float> dst_c = component(out, c);
    for (index_t z0 = plan.owned.lo.z; z0 < plan.z_end(); z0 += plan.chunk_z) {
      const Box chunk = plan.chunk_at(z0);
      if (plan.count == 0) {  // sigma 0 everywhere: a copy (the single tap 1 multiplies exactly)
        run_pass(ctx, src_c, dst_c, chunk, 0, plan.taps[0]);
        continue;
      }
      VolumeView<const float> src = src_c;
      for (int p = 0; p < plan.singles; ++p) {
        const Box region = plan.region_of(chunk, p);
        const VolumeView<float> dst =
            p < to_scratch ? contiguous_view((p % 2 == 0 ? ping : pong).data(), region, plan.global) : dst_c;
        run_pass(ctx, src, dst, region, plan.axes[p], plan.taps[plan.axes[p]]);
        src = dst;
      }
      if (plan.fuse_yx) run_fused_yx(ctx, plan, src, dst_c, chunk);
    }
  }
}

// In place: the first pass of every chunk reads the input into one of two buffers, and the
// first pass of chunk k + 1 is issued before the last pass of chunk k writes (stream order), so
// every input value is read before it is overwritten. The remaining passes read scratch only: a
// middle pass (three single passes) writes a third buffer; the last pass, or the fused y-x
// pair, writes out; a lone pass is followed by a copy from its buffer.
void smooth_in_place(const Context& ctx, const SmoothPlan& plan, VolumeView<float> volume) {
  const int middle = plan.singles == 3 ? 1 : 0;
  const std::size_t first_count = std::size_t(plan.region_of(plan.full_chunk(), 0).voxel_count());
  Scratch<float> first_a(ctx, first_count, "gaussian_smooth scratch");
  Scratch<float> first_b(ctx, first_count, "gaussian_smooth scratch");
  Scratch<float> mid(ctx, std::size_t(middle ? plan.region_of(plan.full_chunk(), 1).voxel_count() : 0),
                     "gaussian_smooth scratch");
  float* firsts[2] = {first_a.data(), first_b.data()};
  const GaussianTaps copy_taps = gaussian_taps(0.0);
  for (int c = 0; c < volume.components; ++c) {
    const VolumeView<float> dst_c = component(volume, c);
    const VolumeView<const float> src_c = dst_c;
    auto first_pass = [&](const Box& chunk, int buffer) {
      const Box region = plan.region_of(chunk, 0);
      run_pass(ctx, src_c, contiguous_view(firsts[buffer], region, plan.global), region,
               plan.axes[0], plan.taps[plan.axes[0]]);
    };
    auto remaining_passes = [&](const Box& chunk, int buffer) {
      VolumeView<const float> src = contiguous_view(firsts[buffer], plan.region_of(chunk, 0), plan.global);
      for (int p = 1; p < plan.singles; ++p) {
        const Box region = plan.region_of(chunk, p);
        const VolumeView<float> dst = p < plan.singles - 1 || plan.fuse_yx
                                          ? contiguous_view(mid.data(), region, plan.global)
                                          : dst_c;
        run_pass(ctx, src, dst, region, plan.axes[p], plan.taps[plan.axes[p]]);
        src = dst;
      }
      if (plan.fuse_yx) {
        run_fused_yx(ctx, plan, src, dst_c, chunk);
        return;
      }
      if (plan.singles == 1) run_pass(ctx, src, dst_c, chunk, 0, copy_taps);
    };
    int buffer = 0;
    first_pass(plan.full_chunk(), buffer);
    for (index_t z0 = plan.owned.lo.z; z0 < plan.z_end(); z0 += plan.chunk_z) {
      if (z0 + plan.chunk_z < plan.z_end()) first_pass(plan.chunk_at(z0 + plan.chunk_z), 1 - buffer);
      remaining_passes(plan.chunk_at(z0), buffer);
      buffer = 1 - buffer;
    }
  }
}

}  // namespace

void gaussian_smooth_chunked(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                             Vec3d sigma_voxels, const Box& owned, double truncation,
                             index_t chunk_voxels) {
  const GaussianTaps taps[3] = {gaussian_taps(sigma_voxels.x, truncation),
                                gaussian_taps(sigma_voxels.y, truncation),
                                gaussian_taps(sigma_voxels.z, truncation)};
  const Index3 radius{taps[0].radius, taps[1].radius, taps[2].radius};
  check_smooth_arguments(ctx, in, out, owned, radius, chunk_voxels);
  if (owned.empty()) return;
  const bool in_place = static_cast<const void*>(in.data) == static_cast<const void*>(out.data);
  const SmoothPlan plan = plan_smoothing(ctx, taps, in.global_size, owned, in_place, chunk_voxels);
  if (!in_place) return smooth_out_of_place(ctx, plan, in, out);
  if (plan.count == 0) return;  // the identity on itself
  smooth_in_place(ctx, plan, out);
}

}  // namespace gigareg
