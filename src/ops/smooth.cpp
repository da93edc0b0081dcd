// gaussian_smooth: argument checks, taps, the pass plan (order z, y, x; regions; z-chunks;
// scratch ping-pong) shared by both backends, and dispatch of the single passes.

#include "gigareg/ops/smooth.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "ops/scratch.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/smooth.hpp"
#endif

namespace gigareg {
namespace cpu {
void gaussian_pass(VolumeView<const float> src, VolumeView<float> dst, const Box& region, int axis,
                   const GaussianTaps& taps);
}  // namespace cpu

namespace {

// Scratch per z-chunk: each of the two ping-pong buffers holds at most about this many voxels
// (at least one slice of the first pass's region).
constexpr index_t kChunkVoxels = index_t(1) << 25;

Box grow_clip(const Box& b, Index3 r, Index3 global) {
  Box out;
  for (int a = 0; a < 3; ++a) {
    const index_t lo = std::max<index_t>(0, b.lo[a] - r[a]);
    const index_t hi = std::min<index_t>(global[a], b.lo[a] + b.size[a] + r[a]);
    out.lo[a] = lo;
    out.size[a] = hi - lo;
  }
  return out;
}


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

void gaussian_smooth(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                     Vec3d sigma_voxels, const Box& owned, double truncation) {
  const GaussianTaps taps[3] = {gaussian_taps(sigma_voxels.x, truncation),
                                gaussian_taps(sigma_voxels.y, truncation),
                                gaussian_taps(sigma_voxels.z, truncation)};
  const Index3 radius{taps[0].radius, taps[1].radius, taps[2].radius};
  const Index3 global = in.global_size;
  GIGAREG_REQUIRE(in.global_size == out.global_size,
                  "input and output must live on the same global grid");
  GIGAREG_REQUIRE(in.components == out.components && in.components >= 1,
                  "input and output must have the same number of components");
  const Box grid{{0, 0, 0}, global};
  GIGAREG_REQUIRE(grid.contains(owned), "the owned box must lie in the grid");
  if (owned.empty()) return;
  GIGAREG_REQUIRE(out.box().contains(owned), "the output view must contain the owned box");
  GIGAREG_REQUIRE(in.box().contains(grow_clip(owned, radius, global)),
                  "the input view must contain the owned box grown by the kernel radius "
                  "(clipped to the grid)");
  GIGAREG_REQUIRE(static_cast<const void*>(in.data) != static_cast<const void*>(out.data),
                  "smoothing cannot run in place");
  require_backend_memory(ctx, "gaussian_smooth", in.data);
  require_backend_memory(ctx, "gaussian_smooth", out.data);

  // Active passes in the order z, y, x; an axis of radius 0 is the identity and is skipped.
  int axes[3];
  int count = 0;
  for (int a = 2; a >= 0; --a)
    if (radius[a] > 0) axes[count++] = a;

  // The region of pass p is the chunk grown by the radii of the passes still to come.
  auto region_of = [&](const Box& chunk, int p) {
    Index3 g{0, 0, 0};
    for (int q = p + 1; q < count; ++q) g[axes[q]] = radius[axes[q]];
    return grow_clip(chunk, g, global);
  };

  // On CUDA the y and x passes run as one kernel when they are the last two (same values: the
  // intermediate stays in shared memory). `stored` passes write their results to scratch or out.
  bool fuse_yx = false;
#if GIGAREG_WITH_CUDA
  fuse_yx = ctx.backend == Backend::Cuda && count >= 2 && axes[count - 2] == 1 &&
            axes[count - 1] == 0 && cuda::gaussian_yx_fusable(int(radius.y), int(radius.x));
#endif
  const int singles = fuse_yx ? count - 2 : count;     // passes run one axis at a time
  const int to_scratch = fuse_yx ? singles : count - 1;  // of those, the ones writing scratch

  // z-chunks bound the scratch; every output voxel is computed from the same values in the same
  // order whatever the chunking, so chunking never changes a bit of the result.
  const Box first = region_of(owned, 0);
  const index_t slice = first.size.x * first.size.y;
  const index_t chunk_z = std::clamp<index_t>(kChunkVoxels / slice, 1, owned.size.z);
  index_t scratch_count[2] = {0, 0};
  {
    Box chunk = owned;
    chunk.size.z = chunk_z;
    for (int p = 0; p < to_scratch; ++p) scratch_count[p] = region_of(chunk, p).voxel_count();
  }
  Scratch<float> ping(ctx, std::size_t(scratch_count[0]), "gaussian_smooth scratch");
  Scratch<float> pong(ctx, std::size_t(scratch_count[1]), "gaussian_smooth scratch");

  for (int c = 0; c < in.components; ++c) {
    const VolumeView<const float> src_c = component(in, c);
    const VolumeView<float> dst_c = component(out, c);
    for (index_t z0 = owned.lo.z; z0 < owned.lo.z + owned.size.z; z0 += chunk_z) {
      Box chunk = owned;
      chunk.lo.z = z0;
      chunk.size.z = std::min(chunk_z, owned.lo.z + owned.size.z - z0);
      if (count == 0) {  // sigma 0 everywhere: a copy (the single tap 1 multiplies exactly)
        run_pass(ctx, src_c, dst_c, chunk, 0, taps[0]);
        continue;
      }
      VolumeView<const float> src = src_c;
      for (int p = 0; p < singles; ++p) {
        const Box region = region_of(chunk, p);
        const VolumeView<float> dst =
            p < to_scratch ? contiguous_view((p % 2 == 0 ? ping : pong).data(), region, global) : dst_c;
        run_pass(ctx, src, dst, region, axes[p], taps[axes[p]]);
        src = dst;
      }
#if GIGAREG_WITH_CUDA
      if (fuse_yx) cuda::gaussian_pass_yx(ctx.stream, src, dst_c, chunk, taps[1], taps[0]);
#endif
    }
  }
}

}  // namespace gigareg
