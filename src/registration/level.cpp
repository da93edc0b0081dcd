// One pyramid level of a stage (level.hpp).

#include "registration/level.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>

#include "gigareg/log.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "registration/buffers.hpp"
#include "registration/halos.hpp"
#include "registration/level_report.hpp"
#include "registration/reductions.hpp"
#include "registration/texture_mask.hpp"

namespace gigareg::reg {

Level make_level(const Inputs& in, const StageParams& stage, int lv) {
  const auto t0 = std::chrono::steady_clock::now();
  const double shrink = stage.shrink_factors[std::size_t(lv)];
  const double sigma = stage.smoothing_sigmas[std::size_t(lv)];
  const bool mm = stage.sigmas_in_mm;
  const Partition& part = *in.part;
  const Context& ctx = in.ctx;
  Level level;
  const Geometry& ff = in.fixed->geometry();
  level.fixed_geometry = pyramid_level_geometry(ff, shrink);
  const Index3 size = level.fixed_geometry.size;
  level.owned = part.owned(size);
  level.image_halo = metric_image_halo(stage.metric);
  level.mask_halo = metric_mask_halo(stage.metric);
  const Box image_box = part.halo_box(size, level.image_halo);
  const Box mask_box = part.halo_box(size, level.mask_halo);
  level.fixed = level_image(ctx, in.fixed, level.fixed_geometry, image_box, sigma_voxels(ff, sigma, mm));
  level.fixed_mask = level_image(ctx, in.fixed_mask, level.fixed_geometry, mask_box, Vec3d{0, 0, 0});
  level.min_spacing = min_spacing(level.fixed_geometry);

  const Geometry& mf = in.moving->geometry();
  const Geometry moving_geometry = pyramid_level_geometry(mf, shrink);
  const Vec3d moving_sigma = sigma_voxels(mf, sigma, mm);
  level.moving = std::make_unique<MovingWindow>(in, level.fixed_geometry, level.owned,
                                                moving_geometry, moving_sigma);

  if (stage.metric.type == MetricType::CC && stage.metric.cc_min_std > 0) {
    // Computed in the backend (on CUDA: gigareg/device/texture.hpp per voxel, the same bits as
    // the host's separable sums), on the mask box, from the fixed image on the image box (mask box
    // + radius). The threshold is relative to the global range of the fixed image within its mask.
    const Volume<float>& f = level.fixed.get();
    const Volume<float>* m = level.fixed_mask.present() ? &level.fixed_mask.get() : nullptr;
    const IntensityRange r = global_range(ctx, part, f.view(),
                                          m ? m->view() : VolumeView<const float>{}, level.owned);
    // A constant image has no texture anywhere.
    const double t = stage.metric.cc_min_std * (r.max - r.min);
    const double min_variance = r.max > r.min ? t * t : std::numeric_limits<double>::infinity();
    LevelImage combined;
    combined.owned = texture_mask(ctx, f, m, mask_box, stage.metric.radius, min_variance);
    level.fixed_mask = std::move(combined);
  }
  // Metric ranges: the fixed image within its (level) mask; the moving image over its whole level
  // grid and 0 (the value outside it). The moving grid is split into slabs for this (the window
  // need not cover the whole grid).
  level.fixed_range = global_range(ctx, part, level.fixed.view(), level.fixed_mask.view(), level.owned);
  const Box moving_owned = part.owned(moving_geometry.size);
  IntensityRange mr;
  if (part.size() == 1) {
    mr = global_range(ctx, part, level.moving->image().view(), {}, moving_owned);
  } else {
    // This process's slab of the moving level grid, from the fine planes under it.
    const Volume<float> planes = part.fetch(*in.moving, source_planes(mf, moving_geometry, moving_owned, moving_sigma));
    const LevelImage slab = level_image(ctx, &planes, moving_geometry, moving_owned, moving_sigma);
    mr = global_range(ctx, part, slab.view(), {}, moving_owned);
  }
  mr.min = std::min(mr.min, 0.0);
  mr.max = std::max(mr.max, 0.0);
  level.moving_range = mr;
  log(LogLevel::Debug, "time: level " + std::to_string(lv + 1) + " set-up (images, ranges" +
                           std::string(stage.metric.type == MetricType::CC ? ", texture mask" : "") + ") " +
                           fmt(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3) + " s");
  return level;
}

}  // namespace gigareg::reg
