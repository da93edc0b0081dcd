// Level images of the full-resolution inputs (level_image.hpp).

#include "registration/level_image.hpp"

#include <algorithm>

#include "gigareg/error.hpp"
#include "gigareg/ops/pyramid.hpp"

namespace gigareg::reg {

double min_spacing(const Geometry& g) {
  return std::min(g.spacing.x, std::min(g.spacing.y, g.spacing.z));
}

Vec3d sigma_voxels(const Geometry& g, double sigma, bool in_mm) {
  if (in_mm) return sigma_mm_to_voxels(g, sigma);
  return {sigma, sigma, sigma};
}

namespace {

bool is_zero(Vec3d s) { return s.x == 0 && s.y == 0 && s.z == 0; }

}  // namespace

Box source_planes(const Geometry& fine, const Geometry& level_geometry, const Box& box, Vec3d sigma) {
  const Box in_box = (level_geometry.size == fine.size && is_zero(sigma))
                         ? box
                         : downsample_input_box(fine, level_geometry, box, sigma);
  return {{0, 0, in_box.lo.z}, {fine.size.x, fine.size.y, in_box.size.z}};
}

LevelImage level_image(const Context& ctx, const Volume<float>* source, const Geometry& level_geometry,
                       const Box& box, Vec3d sigma) {
  LevelImage out;
  if (source == nullptr) return out;
  const Geometry& g = source->geometry();
  if (level_geometry.size == g.size && is_zero(sigma)) {
    GIGAREG_REQUIRE(source->box().contains(box), "level_image: the source does not hold the level's box");
    out.borrowed = source;  // the views read inside `box` only
    return out;
  }
  GIGAREG_REQUIRE(source->box().contains(downsample_input_box(g, level_geometry, box, sigma)),
                  "level_image: the source does not hold the planes the level needs");
  out.owned = Volume<float>(level_geometry, box, 1, ctx.memory_space());
  pyramid_downsample(ctx, source->view(), g, out.owned.view(), level_geometry, sigma, box);
  return out;
}

}  // namespace gigareg::reg
