// Pyramid ops: level-size rule, source boxes (halos), argument checks and dispatch.

#include "gigareg/ops/pyramid.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "ops/scratch.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/pyramid.hpp"
#include "cuda/smooth.hpp"
#endif

namespace gigareg {
namespace cpu {
void resample_trilinear(VolumeView<const float> src, VolumeView<float> dst, const Box& dst_owned,
                        const Affined& dst_to_src);
}  // namespace cpu

namespace {

Affined dst_to_src_map(const Geometry& src, const Geometry& dst) {
  return compose(src.physical_to_index_map(), dst.index_to_physical_map());
}


void check_geometry_matches(const VolumeView<const float>& v, const Geometry& g, const char* what) {
  GIGAREG_REQUIRE(v.global_size == g.size,
                  std::string(what) + ": the view's global grid is not the geometry's size");
}

}  // namespace

Index3 pyramid_level_size(Index3 fine_size, Vec3d shrink_factors) {
  Index3 out{};
  for (int a = 0; a < 3; ++a) {
    const double f = shrink_factors[a];
    GIGAREG_REQUIRE(std::isfinite(f) && f >= 1.0,
                    "shrink factors must be finite and >= 1, got " + std::to_string(f));
    GIGAREG_REQUIRE(fine_size[a] >= 1, "sizes must be positive");
    // The tiny slack keeps an exact quotient (say 100 / 2.5) from flooring one below.
    out[a] = std::max<index_t>(1, index_t(std::floor(double(fine_size[a]) / f + 1e-9)));
  }
  return out;
}

Index3 pyramid_level_size(Index3 fine_size, double shrink_factor) {
  return pyramid_level_size(fine_size, Vec3d{shrink_factor, shrink_factor, shrink_factor});
}

Geometry pyramid_level_geometry(const Geometry& fine, Vec3d shrink_factors) {
  return resized_geometry(fine, pyramid_level_size(fine.size, shrink_factors));
}

Geometry pyramid_level_geometry(const Geometry& fine, double shrink_factor) {
  return resized_geometry(fine, pyramid_level_size(fine.size, shrink_factor));
}

Box resample_source_box(const Geometry& src_geometry, const Geometry& dst_geometry,
                        const Box& dst_owned) {
  GIGAREG_REQUIRE(!dst_owned.empty(), "the owned box is empty");
  const Affined m = dst_to_src_map(src_geometry, dst_geometry);
  Vec3d lo{1e300, 1e300, 1e300}, hi{-1e300, -1e300, -1e300};
  for (int corner = 0; corner < 8; ++corner) {
    const Index3 h = dst_owned.hi();
    const Vec3d p = map_index(m, (corner & 1) ? h.x - 1 : dst_owned.lo.x,
                              (corner & 2) ? h.y - 1 : dst_owned.lo.y,
                              (corner & 4) ? h.z - 1 : dst_owned.lo.z);
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], p[a]);
      hi[a] = std::max(hi[a], p[a]);
    }
  }
  Box box;
  for (int a = 0; a < 3; ++a) {
    const index_t n = src_geometry.size[a];
    // The corners bound the affine image of the box exactly for axis-aligned maps; the slack
    // covers rounding of oblique maps between the corners.
    const double slack = 1e-9 * (1.0 + std::abs(lo[a]) + std::abs(hi[a]));
    const double l = std::clamp(lo[a] - slack, 0.0, double(n - 1));
    const double h = std::clamp(hi[a] + slack, 0.0, double(n - 1));
    const index_t i0 = index_t(std::floor(l));
    const index_t i1 = std::min<index_t>(index_t(std::floor(h)) + 1, n - 1);
    box.lo[a] = i0;
    box.size[a] = i1 - i0 + 1;
  }
  return box;
}

Box downsample_input_box(const Geometry& fine_geometry, const Geometry& coarse_geometry,
                         const Box& coarse_owned, Vec3d sigma_fine_voxels, double truncation) {
  return smoothing_input_box(resample_source_box(fine_geometry, coarse_geometry, coarse_owned),
                             fine_geometry.size, sigma_fine_voxels, truncation);
}

void resample_trilinear(const Context& ctx, VolumeView<const float> src,
                        const Geometry& src_geometry, VolumeView<float> dst,
                        const Geometry& dst_geometry, const Box& dst_owned) {
  check_geometry_matches(src, src_geometry, "source");
  check_geometry_matches(dst, dst_geometry, "destination");
  GIGAREG_REQUIRE(src.components == dst.components && src.components >= 1,
                  "source and destination must have the same number of components");
  const Box grid{{0, 0, 0}, dst_geometry.size};
  GIGAREG_REQUIRE(grid.contains(dst_owned), "the owned box must lie in the destination grid");
  if (dst_owned.empty()) return;
  GIGAREG_REQUIRE(dst.box().contains(dst_owned), "the destination view must contain the owned box");
  GIGAREG_REQUIRE(src.box().contains(resample_source_box(src_geometry, dst_geometry, dst_owned)),
                  "the source view must contain resample_source_box(...) of the owned box");
  require_backend_memory(ctx, "resample_trilinear", src.data);
  require_backend_memory(ctx, "resample_trilinear", dst.data);
  const Affined m = dst_to_src_map(src_geometry, dst_geometry);
  if (ctx.backend == Backend::Cpu) {
    cpu::resample_trilinear(src, dst, dst_owned, m);
  } else {
#if GIGAREG_WITH_CUDA
    cuda::resample_trilinear(ctx.stream, src, dst, dst_owned, m);
#else
    throw_error(ErrorKind::Cuda, "resample_trilinear", "gigareg was built without CUDA");
#endif
  }
}

void pyramid_downsample(const Context& ctx, VolumeView<const float> fine,
                        const Geometry& fine_geometry, VolumeView<float> coarse,
                        const Geometry& coarse_geometry, Vec3d sigma_fine_voxels,
                        const Box& coarse_owned, double truncation) {
  check_geometry_matches(fine, fine_geometry, "fine");
  check_geometry_matches(coarse, coarse_geometry, "coarse");
  const Box grid{{0, 0, 0}, coarse_geometry.size};
  GIGAREG_REQUIRE(grid.contains(coarse_owned), "the owned box must lie in the coarse grid");
  if (coarse_owned.empty()) return;
  require_backend_memory(ctx, "pyramid_downsample", fine.data);
  require_backend_memory(ctx, "pyramid_downsample", coarse.data);
  const Index3 radius = gaussian_radii(sigma_fine_voxels, truncation);
  if (radius.x == 0 && radius.y == 0 && radius.z == 0) {
    resample_trilinear(ctx, fine, fine_geometry, coarse, coarse_geometry, coarse_owned);
    return;
  }
  const Box blurred_box = resample_source_box(fine_geometry, coarse_geometry, coarse_owned);
  GIGAREG_REQUIRE(fine.box().contains(smoothing_input_box(blurred_box, fine_geometry.size,
                                                          sigma_fine_voxels, truncation)),
                  "the fine view must contain downsample_input_box(...) of the owned box");
  Scratch<float> scratch(ctx, std::size_t(blurred_box.voxel_count() * fine.components), "pyramid_downsample scratch");
  const Index3 e = blurred_box.size;
  const VolumeView<float> blurred{scratch.data(), e, {1, e.x, e.x * e.y}, blurred_box.voxel_count(),
                                  fine.components, blurred_box.lo, fine_geometry.size};
  gaussian_smooth(ctx, fine, blurred, sigma_fine_voxels, blurred_box, truncation);
  resample_trilinear(ctx, blurred, fine_geometry, coarse, coarse_geometry, coarse_owned);
}

void pyramid_upsample_field(const Context& ctx, VolumeView<const float> coarse_field,
                            const Geometry& coarse_geometry, VolumeView<float> fine_field,
                            const Geometry& fine_geometry, const Box& fine_owned) {
  resample_trilinear(ctx, coarse_field, coarse_geometry, fine_field, fine_geometry, fine_owned);
}

}  // namespace gigareg
