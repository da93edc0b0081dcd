// Pieces shared by the stage drivers: pyramid levels of the inputs on the boxes a process needs,
// the moving-image window, the loss mask, the metric, gathered reductions.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "gigareg/config.hpp"
#include "gigareg/log.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/ops/warp.hpp"
#include "registration/internal.hpp"
#if GIGAREG_WITH_CUDA
#include "cuda/texture_mask.hpp"
#endif

namespace gigareg::reg {

double min_spacing(const Geometry& g) {
  return std::min(g.spacing.x, std::min(g.spacing.y, g.spacing.z));
}

Vec3d sigma_voxels(const Geometry& g, double sigma, bool in_mm) {
  if (in_mm) return sigma_mm_to_voxels(g, sigma);
  return {sigma, sigma, sigma};
}

std::string fmt(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
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

// ---------------------------------------------------------------------------------------------
MovingWindow::MovingWindow(const Inputs& in, const Geometry& fixed_level, const Box& fixed_owned,
                           const Geometry& moving_level, Vec3d sigma)
    : in_(&in), fixed_level_(fixed_level), moving_level_(moving_level), fixed_owned_(fixed_owned),
      sigma_(sigma) {
  // One process: the whole grid, built once. Several: built by the first cover().
  if (in.part->size() == 1) build(whole(moving_level_));
}

Box MovingWindow::needed(const Affined& affine, double bound_mm) const {
  // Continuous moving index c(x) = L(x + u), L = (moving physical -> index) o A. Over the owned
  // voxel centres x (a parallelepiped in physical space, L maps its corners' hull onto the hull of
  // their images) and |u| <= bound: per axis, [min, max] over the corners -/+ bound * |row of L|.
  const Affined l = compose(moving_level_.physical_to_index_map(), affine);
  const Affined p = fixed_level_.index_to_physical_map();
  Vec3d lo{1e300, 1e300, 1e300}, hi{-1e300, -1e300, -1e300};
  for (int corner = 0; corner < 8; ++corner) {
    Vec3d idx;
    for (int a = 0; a < 3; ++a)
      idx[a] = double((corner >> a) & 1 ? fixed_owned_.lo[a] + fixed_owned_.size[a] - 1 : fixed_owned_.lo[a]);
    const Vec3d c = l(p(idx));
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], c[a]);
      hi[a] = std::max(hi[a], c[a]);
    }
  }
  Box b;
  for (int a = 0; a < 3; ++a) {
    const double row = std::sqrt(l.matrix(a, 0) * l.matrix(a, 0) + l.matrix(a, 1) * l.matrix(a, 1) +
                                 l.matrix(a, 2) * l.matrix(a, 2));
    const double reach = bound_mm * row;
    // floor for the lower linear tap, +1 for the upper one, one voxel for float rounding.
    const double first = std::floor(lo[a] - reach) - 1.0;
    const double last = std::floor(hi[a] + reach) + 2.0;
    const double n = double(moving_level_.size[a]);
    const index_t from = index_t(std::clamp(first, 0.0, n));
    const index_t to = index_t(std::clamp(last + 1.0, 0.0, n));
    b.lo[a] = from;
    b.size[a] = std::max<index_t>(0, to - from);
  }
  return b;
}

bool MovingWindow::covers(const Affined& affine, double bound_mm) const {
  if (image_.present() && box_ == whole(moving_level_)) return true;
  const Box need = needed(affine, bound_mm);
  return image_.present() && (need.empty() || box_.contains(need));
}

void MovingWindow::cover(const Affined& affine, double bound_mm) {
  const Partition& part = *in_->part;
  const bool ok = covers(affine, bound_mm);
  // With several processes the windows' planes come from their owners: a collective step that
  // every process joins as soon as one of them needs a new window.
  if (part.size() > 1 && part.all(ok)) return;
  if (part.size() == 1 && ok) return;
  if (ok) {
    serve();
    return;
  }
  // A margin of 8 level voxels on every side (and the bound), so that the next iterations'
  // small moves stay inside.
  Box b = needed(affine, bound_mm);
  for (int a = 0; a < 3; ++a) {
    const index_t lo = std::max<index_t>(0, b.lo[a] - 8);
    const index_t hi = std::min<index_t>(moving_level_.size[a], b.lo[a] + b.size[a] + 8);
    b.lo[a] = lo;
    b.size[a] = std::max<index_t>(1, hi - lo);
    if (b.lo[a] + b.size[a] > moving_level_.size[a]) b.lo[a] = moving_level_.size[a] - b.size[a];
  }
  build(b);
}

void MovingWindow::build(const Box& box) {
  box_ = box;
  const Partition& part = *in_->part;
  const Context& ctx = in_->ctx;
  // Masks are resampled without blurring: a level voxel counts where most of it is inside.
  const Vec3d no_blur{0, 0, 0};
  if (part.size() == 1) {  // the whole image is here
    image_ = level_image(ctx, in_->moving, moving_level_, box, sigma_);
    mask_ = level_image(ctx, in_->moving_mask, moving_level_, box, no_blur);
  } else {
    const Geometry& fine = in_->moving->geometry();
    source_ = part.fetch(*in_->moving, source_planes(fine, moving_level_, box, sigma_));
    image_ = level_image(ctx, &source_, moving_level_, box, sigma_);
    if (!image_.borrowed) source_ = Volume<float>();
    if (in_->moving_mask != nullptr) {
      mask_source_ = part.fetch(*in_->moving_mask, source_planes(fine, moving_level_, box, no_blur));
      mask_ = level_image(ctx, &mask_source_, moving_level_, box, no_blur);
      if (!mask_.borrowed) mask_source_ = Volume<float>();
    }
  }
  ++rebuilds_;
}

void MovingWindow::serve() {
  const Partition& part = *in_->part;
  (void)part.fetch(*in_->moving, Box{});
  if (in_->moving_mask != nullptr) (void)part.fetch(*in_->moving_mask, Box{});
}

// ---------------------------------------------------------------------------------------------
Volume<float> texture_mask(const Context& ctx, const Volume<float>& image, const Volume<float>* mask,
                           const Box& out_box, int radius, double min_variance) {
  if (ctx.backend == Backend::Cpu) return texture_mask(image, mask, out_box, radius, min_variance);
  const Box region = out_box.grown_within(Index3{radius, radius, radius}, image.geometry().size);
  GIGAREG_REQUIRE(image.box().contains(region), "texture_mask: the image does not cover the windows");
  GIGAREG_REQUIRE(mask == nullptr || mask->box().contains(out_box), "texture_mask: the mask does not cover the box");
  Volume<float> out(image.geometry(), out_box, 1, ctx.memory_space());
#if GIGAREG_WITH_CUDA
  cuda::texture_mask(ctx.stream, image.view(), mask ? mask->view() : VolumeView<const float>{}, out.view(),
                     out_box, radius, min_variance);
#else
  throw_error(ErrorKind::Cuda, "texture_mask", "gigareg was built without CUDA");
#endif
  return out;
}

Volume<float> texture_mask(const Volume<float>& image, const Volume<float>* mask, const Box& out_box,
                           int radius, double min_variance) {
  const Geometry& g = image.geometry();
  const Index3 n = g.size;
  // The region whose window sums are needed: out_box grown by the radius, clipped.
  const Box region = out_box.grown_within(Index3{radius, radius, radius}, n);
  GIGAREG_REQUIRE(image.box().contains(region), "texture_mask: the image does not cover the windows");
  const VolumeView<const float> v = image.view();
  const VolumeView<const float> mk = mask ? mask->view() : VolumeView<const float>{};
  Volume<float> out(g, out_box, 1, MemorySpace::Host);
  VolumeView<float> o = out.view();
  const index_t ox = out_box.lo.x, nx = out_box.size.x, oy = out_box.lo.y, ny = out_box.size.y;
  const index_t ry = region.lo.y, nry = region.size.y;
  const index_t window_planes = 2 * index_t(radius) + 1;
  auto window = [&](index_t t, index_t len) {
    return double(std::min<index_t>(len - 1, t + radius) - std::max<index_t>(0, t - radius) + 1);
  };
  // Separable window sums of v and v^2 in double: x sums, then y sums of those (per plane), then z
  // sums of those. Each thread takes a run of output planes and keeps a ring of the 2r + 1 planes
  // of y sums its z windows need (a few MB instead of four region-sized arrays): every sum is
  // still formed from the same terms in the same order, so the mask is independent of the
  // threading and of out_box.
#pragma omp parallel
  {
    std::vector<double> ax(std::size_t(nry * nx)), ax2(std::size_t(nry * nx));
    std::vector<double> ring(std::size_t(window_planes * ny * nx)), ring2(ring.size());
    index_t next_plane = -1;  // the next plane of y sums this thread computes
    auto plane_sums = [&](index_t d) {
      // x sums of v, v^2 over the region's y range, at the output's x
      for (index_t j = 0; j < nry; ++j)
        for (index_t i = 0; i < nx; ++i) {
          const index_t x = ox + i;
          double s1 = 0, s2 = 0;
          for (index_t t = std::max<index_t>(0, x - radius); t <= std::min<index_t>(n.x - 1, x + radius); ++t) {
            const double val = double(v.at(t, ry + j, d));
            s1 += val;
            s2 += val * val;
          }
          ax[std::size_t(j * nx + i)] = s1;
          ax2[std::size_t(j * nx + i)] = s2;
        }
      // y sums of those, at the output's y
      const std::size_t slot = std::size_t(d % window_planes) * std::size_t(ny * nx);
      for (index_t j = 0; j < ny; ++j) {
        const index_t y = oy + j;
        for (index_t i = 0; i < nx; ++i) {
          double s1 = 0, s2 = 0;
          for (index_t t = std::max<index_t>(0, y - radius); t <= std::min<index_t>(n.y - 1, y + radius); ++t) {
            s1 += ax[std::size_t((t - ry) * nx + i)];
            s2 += ax2[std::size_t((t - ry) * nx + i)];
          }
          ring[slot + std::size_t(j * nx + i)] = s1;
          ring2[slot + std::size_t(j * nx + i)] = s2;
        }
      }
    };
#pragma omp for schedule(static)
    for (index_t k = out_box.lo.z; k < out_box.lo.z + out_box.size.z; ++k) {
      const index_t first = std::max<index_t>(0, k - radius), last = std::min<index_t>(n.z - 1, k + radius);
      if (next_plane < first) next_plane = first;  // a new run of planes (or the first)
      for (; next_plane <= last; ++next_plane) plane_sums(next_plane);
      for (index_t j = 0; j < ny; ++j)
        for (index_t i = 0; i < nx; ++i) {
          double s1 = 0, s2 = 0;
          for (index_t d = first; d <= last; ++d) {
            const std::size_t at = std::size_t(d % window_planes) * std::size_t(ny * nx) + std::size_t(j * nx + i);
            s1 += ring[at];
            s2 += ring2[at];
          }
          const index_t x = ox + i, y = oy + j;
          const double c = window(x, n.x) * window(y, n.y) * window(k, n.z);
          const double mean = s1 / c;
          const double var = s2 / c - mean * mean;
          const bool keep = var >= min_variance && (mask == nullptr || mk.at(x, y, k) > 0.5f);
          o.at(x, y, k) = keep ? 1.0f : 0.0f;
        }
    }
  }
  return out;
}

Index3 displacement_halo(const Geometry& g, double bound_mm) {
  GIGAREG_REQUIRE(bound_mm >= 0.0 && std::isfinite(bound_mm), "the displacement bound must be finite");
  const Mat3d m = g.physical_to_index_map().matrix;
  Index3 h;
  for (int a = 0; a < 3; ++a) {
    const double row = std::sqrt(m(a, 0) * m(a, 0) + m(a, 1) * m(a, 1) + m(a, 2) * m(a, 2));
    const double d = bound_mm * row;
    const double v = std::ceil(d + 1e-6 * (d + double(g.size[a])) + 1e-6) + 1.0;
    h[a] = index_t(std::min(v, double(g.size[a])));
  }
  return h;
}

IntensityRange global_range(const Context& ctx, const Partition& part, VolumeView<const float> image,
                            VolumeView<const float> mask, const Box& owned) {
  Partials p(owned.size.z, kRangeTerms, ctx.memory_space());
  intensity_range(ctx, image, mask, owned, p.view);
  const IntensityRange mine = reduce_intensity_range(ctx, p.view);
  IntensityRange r{part.min(mine.min), part.max(mine.max)};
  if (r.empty()) r = {0.0, 1.0};
  return r;
}

double global_max_norm(const Context& ctx, const Partition& part, const Volume<float>& field,
                       const Box& owned) {
  Partials p(owned.size.z, 1, ctx.memory_space());
  max_norm_partials(ctx, field.view(), owned, p.view);
  return part.max(reduce_slices_max(ctx, p.view));
}

Index3 metric_image_halo(const MetricParams& m) {
  if (m.type != MetricType::CC) return {0, 0, 0};
  const index_t h = 2 * index_t(m.radius);  // exact gradient: windows of the windows
  return {h, h, h};
}

Index3 metric_mask_halo(const MetricParams& m) {
  if (m.type != MetricType::CC) return {0, 0, 0};
  const index_t h = index_t(m.radius);
  return {h, h, h};
}

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

// ---------------------------------------------------------------------------------------------
std::string level_name(int stage_index, int lv) {
  return "stage " + std::to_string(stage_index + 1) + " level " + std::to_string(lv + 1);
}

void finish_level(LevelReport& report, const StageParams& stage, int stage_index, int lv,
                  int levels, std::chrono::steady_clock::time_point t0,
                  std::vector<LevelReport>& reports) {
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log(LogLevel::Info,
      "stage " + std::to_string(stage_index + 1) + " (" + to_string(stage.transform) + ", " +
          to_string(stage.metric.type) + ") level " + std::to_string(lv + 1) + "/" +
          std::to_string(levels) + " " + std::to_string(report.size.x) + "x" +
          std::to_string(report.size.y) + "x" + std::to_string(report.size.z) + ": " +
          std::to_string(report.iterations) + " iterations" +
          (report.converged ? " (converged)" : "") + ", loss " + fmt(report.initial_loss) + " -> " +
          fmt(report.final_loss) + ", " + fmt(report.seconds, 3) + " s" +
          (report.iteration_seconds.empty()
               ? std::string()
               : " (" + fmt(report.median_iteration_seconds() * 1e3, 4) + " ms per iteration, median)"));
  reports.push_back(report);
}

bool record(const LossValue& loss, int it, int lv, int levels, int stage_index,
            const StageParams& stage, const RegistrationParams& params,
            ConvergenceMonitor& monitor, LevelReport& report) {
  if (!(loss.count > 0))
    throw_error(ErrorKind::InvalidInput, level_name(stage_index, lv),
                "no fixed voxel counts for the metric (the masks exclude everything)");
  const double value = loss.value();
  if (!std::isfinite(value))
    throw_error(ErrorKind::Internal, level_name(stage_index, lv), "the loss is not finite");
  // The loss was just read (the read waits for the iteration on the device): the interval since
  // the previous read is this iteration's time.
  const auto now = std::chrono::steady_clock::now();
  std::string took;
  if (it > 0) {
    const double dt = std::chrono::duration<double>(now - report.last_loss_read).count();
    report.iteration_seconds.push_back(dt);
    took = ", " + fmt(dt * 1e3, 4) + " ms";
  }
  report.last_loss_read = now;
  if (it == 0) report.initial_loss = value;
  report.final_loss = value;
  report.iterations = it + 1;
  monitor.add(value);
  const double conv = monitor.value();
  if (params.progress) params.progress({stage_index, stage.transform, lv, levels, it, value, conv});
  log(LogLevel::Debug, level_name(stage_index, lv) + " iteration " + std::to_string(it + 1) +
                           ": loss " + fmt(value, 8) + ", convergence " + fmt(conv, 4) + took);
  return monitor.converged(stage.convergence.threshold);
}

// ---------------------------------------------------------------------------------------------
GatheredPartials::GatheredPartials(const Context& ctx, const Partition& part, const Geometry& grid,
                                   const Box& owned, int terms)
    : part_(&part), space_(ctx.memory_space()), grid_z_(grid.size.z),
      local_(owned.size.z, terms, ctx.memory_space()) {
  if (part.size() > 1) global_ = Partials(grid.size.z, terms, ctx.memory_space());
}

SlicePartials GatheredPartials::gather() {
  if (part_->size() == 1) return local_.view;
  part_->gather_slices(local_.view, grid_z_, global_.view, space_);
  return global_.view;
}

// ---------------------------------------------------------------------------------------------
MaskCombiner::MaskCombiner(const Context& ctx, const Partition& part, const Geometry& fixed_geometry,
                           const Box& owned, Index3 mask_halo, const LevelImage* fixed_mask,
                           const MovingWindow* moving)
    : ctx_(ctx), part_(&part), grid_(fixed_geometry), owned_(owned), halo_(mask_halo),
      fixed_mask_(fixed_mask), moving_(moving) {
  if (moving_ != nullptr && moving_->has_mask()) {
    combined_ = Volume<float>(grid_, part.halo_box(grid_.size, halo_), 1, ctx.memory_space());
    sampled_ = Volume<float>(grid_, owned_, 1, ctx.memory_space());
  }
}

VolumeView<const float> MaskCombiner::view() const {
  if (!combined_.empty()) return combined_.view();
  return fixed_mask_ ? fixed_mask_->view() : VolumeView<const float>{};
}

void MaskCombiner::update(const Affined& affine, VolumeView<const float> displacement) {
  if (combined_.empty()) return;
  WarpInputs w;
  w.moving = moving_->mask().view();
  w.moving_geometry = moving_->geometry();
  w.fixed_geometry = grid_;
  w.affine = affine;
  w.displacement = displacement;
  w.interpolation = Interpolation::Linear;
  w.boundary = Boundary::Zero;
  warp(ctx_, w, sampled_.view(), owned_);
  // The logical AND of the two masks on the owned box. There is no element-wise op for it, so on
  // CUDA the masks make a round trip through the host (moving masks are rare; this costs two
  // copies of one fixed-level slab per iteration). The halo comes from the neighbours.
  const bool host = ctx_.backend == Backend::Cpu;
  Volume<float> s = host ? Volume<float>() : sampled_.to(MemorySpace::Host);
  Volume<float> f;
  const bool has_fixed = fixed_mask_ != nullptr && fixed_mask_->present();
  if (!host && has_fixed) f = fixed_mask_->get().to(MemorySpace::Host);
  Volume<float> c = host ? Volume<float>() : combined_.to(MemorySpace::Host);
  const VolumeView<const float> sv = host ? sampled_.view() : s.view();
  const VolumeView<const float> fv = has_fixed ? (host ? fixed_mask_->view() : f.view()) : VolumeView<const float>{};
  VolumeView<float> cv = host ? combined_.view() : c.view();
#pragma omp parallel for schedule(static)
  for (index_t k = owned_.lo.z; k < owned_.lo.z + owned_.size.z; ++k)
    for (index_t j = owned_.lo.y; j < owned_.lo.y + owned_.size.y; ++j)
      for (index_t i = owned_.lo.x; i < owned_.lo.x + owned_.size.x; ++i)
        cv.at(i, j, k) = (sv.at(i, j, k) > 0.5f && (!has_fixed || fv.at(i, j, k) > 0.5f)) ? 1.0f : 0.0f;
  if (!host) copy_bytes(combined_.data(), MemorySpace::Device, c.data(), MemorySpace::Host, c.bytes());
  part_->exchange_halos({&combined_}, halo_);
}

// ---------------------------------------------------------------------------------------------
Metric::Metric(const Context& ctx, const Partition& part, const MetricParams& params,
               const Geometry& fixed_geometry, const Box& owned, IntensityRange fr, IntensityRange mr)
    : ctx_(ctx), part_(&part), params_(params), grid_(fixed_geometry), owned_(owned) {
  switch (params.type) {
    case MetricType::MeanSquares:
      local_ = Partials(owned.size.z, kLossTerms, ctx.memory_space());
      break;
    case MetricType::CC: {
      local_ = Partials(owned.size.z, kLossTerms, ctx.memory_space());
      lncc_.window = LnccWindow::Box;
      lncc_.radius = params.radius;
      lncc_.gradient = LnccGradient::Exact;
      // eps relative to the intensity ranges (it multiplies varF varW): the metric does not
      // depend on the intensity scale.
      const double df = std::max(fr.max - fr.min, 1e-12), dm = std::max(mr.max - mr.min, 1e-12);
      lncc_.eps = params.cc_epsilon * df * df * dm * dm;
      // Windows flatter than cc_min_std of the range count as flat on both images (the fixed
      // image's texture mask already drops its own; the floor on the warped image keeps the
      // CUDA float sums from turning rounding noise in a nearly flat window into correlation).
      lncc_.min_variance_fixed = params.cc_min_std * df * params.cc_min_std * df;
      lncc_.min_variance_warped = params.cc_min_std * dm * params.cc_min_std * dm;
      (void)lncc_window_radius(lncc_);  // validates
      break;
    }
    case MetricType::MI: {
      local_ = Partials(1, kLossTerms, ctx.memory_space());
      mattes_.bins = params.bins;
      mattes_.fixed_min = float(fr.min);
      mattes_.fixed_max = float(fr.max);
      mattes_.moving_min = float(mr.min);
      mattes_.moving_max = float(mr.max);
      mattes_.fixed_window = ParzenWindow::Box;
      const int bins = mattes_moving_axis(mattes_).bins;  // validates
      const std::size_t cells = std::size_t(bins) * std::size_t(bins);
      histogram_ = Buffer<std::int64_t>(cells, ctx.memory_space(), "MI joint histogram");
      table_ = Buffer<float>(cells, ctx.memory_space(), "MI gradient table");
      break;
    }
  }
  if (params.type != MetricType::MI && part.size() > 1)
    global_ = Partials(grid_.size.z, kLossTerms, ctx.memory_space());
}

void Metric::launch(VolumeView<const float> fixed, Volume<float>& warped,
                    VolumeView<const float> mask, VolumeView<float> grad) {
  switch (params_.type) {
    case MetricType::MeanSquares:
      mse_loss(ctx_, fixed, warped.view(), mask, owned_, local_.view, grad);
      break;
    case MetricType::CC:
      part_->exchange_halos({&warped}, metric_image_halo(params_));
      lncc_loss(ctx_, fixed, warped.view(), mask, owned_, lncc_, local_.view, grad);
      break;
    case MetricType::MI: {
      // The three phases of mattes_mi with the joint histogram summed over processes between
      // them (int64 fixed point: exact), so every process computes the same MI and table.
      const int bins = mattes_moving_axis(mattes_).bins;
      mattes_histogram(ctx_, fixed, warped.view(), mask, owned_, mattes_, {histogram_.data(), bins});
      part_->allreduce_sum(histogram_.data(), histogram_.size());
      mattes_table(ctx_, {histogram_.data(), bins}, mattes_,
                   {grad.data != nullptr ? table_.data() : nullptr, bins}, local_.view);
      if (grad.data != nullptr)
        mattes_gradient(ctx_, fixed, warped.view(), mask, owned_, mattes_, {table_.data(), bins}, grad);
      break;
    }
  }
}

LossValue Metric::value() const {
  if (params_.type == MetricType::MI || part_->size() == 1) return reduce_loss(ctx_, local_.view);
  part_->gather_slices(local_.view, grid_.size.z, global_.view, ctx_.memory_space());
  return reduce_loss(ctx_, global_.view);
}

}  // namespace gigareg::reg
