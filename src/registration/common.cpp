// Pieces shared by the stage drivers: pyramid levels of the inputs, the loss mask, the metric.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "gigareg/ops/pyramid.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/ops/warp.hpp"
#include "registration/internal.hpp"

namespace gigareg::reg {

Volume<float> zeros(const Geometry& g, int components, MemorySpace space) {
  Volume<float> host(g, components, MemorySpace::Host);
  host.fill(0.0f);
  if (space == MemorySpace::Host) return host;
  return host.to(space);
}

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

/// One input at one level: borrowed when the level is the full-resolution image itself.
LevelImage shrink_image(const Context& ctx, const Volume<float>* full, double shrink, double sigma,
                        bool in_mm, bool is_mask) {
  LevelImage out;
  if (full == nullptr) return out;
  const Geometry& g = full->geometry();
  // Masks are resampled without blurring: a level voxel counts where most of it is inside.
  const Vec3d s = is_mask ? Vec3d{0, 0, 0} : sigma_voxels(g, sigma, in_mm);
  const Geometry lg = pyramid_level_geometry(g, shrink);
  if (lg.size == g.size && s.x == 0 && s.y == 0 && s.z == 0) {
    out.borrowed = full;
    return out;
  }
  out.owned = Volume<float>(lg, 1, ctx.memory_space());
  pyramid_downsample(ctx, full->view(), g, out.owned.view(), lg, s, whole(lg));
  return out;
}

}  // namespace

Volume<float> texture_mask(const Volume<float>& image, const Volume<float>* mask, int radius,
                           double min_std_fraction) {
  const Geometry& g = image.geometry();
  const index_t nx = g.size.x, ny = g.size.y, nz = g.size.z, n = g.voxel_count();
  const float* v = image.data();
  const float* mk = mask ? mask->data() : nullptr;
  double lo = 1e300, hi = -1e300;
  for (index_t i = 0; i < n; ++i)
    if (!mk || mk[i] > 0.5f) {
      lo = std::min(lo, double(v[i]));
      hi = std::max(hi, double(v[i]));
    }
  Volume<float> out(g);
  if (!(hi > lo)) {
    out.fill(0.0f);
    return out;
  }
  // Window sums of v and v^2 by three separable clipped running-window passes (x, y, z).
  std::vector<double> s1(static_cast<std::size_t>(n)), s2(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    s1[std::size_t(i)] = v[i];
    s2[std::size_t(i)] = double(v[i]) * double(v[i]);
  }
  const index_t extent[3] = {nx, ny, nz}, stride[3] = {1, nx, nx * ny};
  for (int axis = 0; axis < 3; ++axis) {
    const index_t len = extent[axis], st = stride[axis];
    const index_t lines = n / len;
#pragma omp parallel for schedule(static)
    for (index_t line = 0; line < lines; ++line) {
      // The first element of this line: enumerate the other two axes.
      index_t base;
      if (axis == 0) base = line * nx;
      else if (axis == 1) base = (line / nx) * nx * ny + line % nx;
      else base = line;
      std::vector<double> a(static_cast<std::size_t>(len)), b(static_cast<std::size_t>(len));
      for (index_t t = 0; t < len; ++t) {
        a[std::size_t(t)] = s1[std::size_t(base + t * st)];
        b[std::size_t(t)] = s2[std::size_t(base + t * st)];
      }
      for (index_t t = 0; t < len; ++t) {
        double x = 0, y = 0;
        for (index_t d = std::max<index_t>(0, t - radius); d <= std::min<index_t>(len - 1, t + radius); ++d) {
          x += a[std::size_t(d)];
          y += b[std::size_t(d)];
        }
        s1[std::size_t(base + t * st)] = x;
        s2[std::size_t(base + t * st)] = y;
      }
    }
  }
  auto count = [&](index_t t, index_t len) {
    return double(std::min<index_t>(len - 1, t + radius) - std::max<index_t>(0, t - radius) + 1);
  };
  const double threshold = (min_std_fraction * (hi - lo)) * (min_std_fraction * (hi - lo));
#pragma omp parallel for schedule(static)
  for (index_t k = 0; k < nz; ++k)
    for (index_t j = 0; j < ny; ++j)
      for (index_t i = 0; i < nx; ++i) {
        const index_t idx = i + nx * (j + ny * k);
        const double c = count(i, nx) * count(j, ny) * count(k, nz);
        const double mean = s1[std::size_t(idx)] / c;
        const double var = s2[std::size_t(idx)] / c - mean * mean;
        const bool keep = var >= threshold && (!mk || mk[idx] > 0.5f);
        out.data()[idx] = keep ? 1.0f : 0.0f;
      }
  return out;
}

Level make_level(const Inputs& in, const StageParams& stage, int lv) {
  const double shrink = stage.shrink_factors[std::size_t(lv)];
  const double sigma = stage.smoothing_sigmas[std::size_t(lv)];
  const bool mm = stage.sigmas_in_mm;
  Level level;
  level.fixed = shrink_image(in.ctx, in.fixed, shrink, sigma, mm, false);
  level.moving = shrink_image(in.ctx, in.moving, shrink, sigma, mm, false);
  level.fixed_mask = shrink_image(in.ctx, in.fixed_mask, shrink, sigma, mm, true);
  level.moving_mask = shrink_image(in.ctx, in.moving_mask, shrink, sigma, mm, true);
  level.fixed_geometry = level.fixed.get().geometry();
  level.moving_geometry = level.moving.get().geometry();
  level.min_spacing = min_spacing(level.fixed_geometry);
  if (stage.metric.type == MetricType::CC && stage.metric.cc_min_std > 0) {
    // Computed on the host (one pass per level; a download and an upload on CUDA).
    const bool host = in.ctx.backend == Backend::Cpu;
    Volume<float> fixed_host, mask_host;
    const Volume<float>& f = host ? level.fixed.get() : (fixed_host = level.fixed.get().to(MemorySpace::Host));
    const Volume<float>* m = nullptr;
    if (level.fixed_mask.present())
      m = host ? &level.fixed_mask.get() : &(mask_host = level.fixed_mask.get().to(MemorySpace::Host));
    Volume<float> t = texture_mask(f, m, stage.metric.radius, stage.metric.cc_min_std);
    LevelImage combined;
    combined.owned = host ? std::move(t) : t.to(in.ctx.memory_space());
    level.fixed_mask = std::move(combined);
  }
  return level;
}

// ---------------------------------------------------------------------------------------------
MaskCombiner::MaskCombiner(const Context& ctx, const Level& level) : ctx_(ctx), level_(&level) {
  if (level.moving_mask.present()) {
    combined_ = Volume<float>(level.fixed_geometry, 1, ctx.memory_space());
    sampled_ = Volume<float>(level.fixed_geometry, 1, ctx.memory_space());
    update(Affined::identity(), {});
  }
}

VolumeView<const float> MaskCombiner::view() const {
  if (!combined_.empty()) return combined_.view();
  return level_->fixed_mask.view();
}

void MaskCombiner::update(const Affined& affine, VolumeView<const float> displacement) {
  if (combined_.empty()) return;
  WarpInputs w;
  w.moving = level_->moving_mask.view();
  w.moving_geometry = level_->moving_geometry;
  w.fixed_geometry = level_->fixed_geometry;
  w.affine = affine;
  w.displacement = displacement;
  w.interpolation = Interpolation::Linear;
  w.boundary = Boundary::Zero;
  warp(ctx_, w, sampled_.view(), whole(level_->fixed_geometry));
  // The logical AND of the two masks. There is no element-wise op for it, so on CUDA the two
  // masks make a round trip through the host (moving masks are rare; this costs two copies of
  // one fixed-level image per iteration).
  const bool host = ctx_.backend == Backend::Cpu;
  Volume<float> s = host ? Volume<float>() : sampled_.to(MemorySpace::Host);
  Volume<float> f;
  if (!host && level_->fixed_mask.present()) f = level_->fixed_mask.get().to(MemorySpace::Host);
  Volume<float> c = host ? Volume<float>() : Volume<float>(level_->fixed_geometry, 1);
  const float* sp = host ? sampled_.data() : s.data();
  const float* fp = level_->fixed_mask.present() ? (host ? level_->fixed_mask.get().data() : f.data())
                                                 : nullptr;
  float* cp = host ? combined_.data() : c.data();
  const index_t n = level_->fixed_geometry.voxel_count();
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < n; ++i)
    cp[i] = (sp[i] > 0.5f && (fp == nullptr || fp[i] > 0.5f)) ? 1.0f : 0.0f;
  if (!host) copy_bytes(combined_.data(), MemorySpace::Device, c.data(), MemorySpace::Host, c.bytes());
}

// ---------------------------------------------------------------------------------------------
namespace {

/// Intensity range of a level image (within `mask` when given); {0, 1} when empty.
IntensityRange image_range(const Context& ctx, const LevelImage& img, VolumeView<const float> mask) {
  const Geometry& g = img.get().geometry();
  Partials p(g.size.z, kRangeTerms, ctx.memory_space());
  intensity_range(ctx, img.view(), mask, whole(g), p.view);
  IntensityRange r = reduce_intensity_range(ctx, p.view);
  if (r.empty()) r = {0.0, 1.0};
  return r;
}

}  // namespace

Metric::Metric(const Context& ctx, const MetricParams& params, const Level& level)
    : ctx_(ctx), params_(params), level_(&level) {
  const index_t nz = level.fixed_geometry.size.z;
  // Ranges: the fixed image within its mask, the moving one over its whole grid and 0 (the value
  // outside it).
  const IntensityRange fr = image_range(ctx, level.fixed, level.fixed_mask.view());
  IntensityRange mr = image_range(ctx, level.moving, {});
  mr.min = std::min(mr.min, 0.0);
  mr.max = std::max(mr.max, 0.0);
  switch (params.type) {
    case MetricType::MeanSquares:
      partials_ = Partials(nz, kLossTerms, ctx.memory_space());
      break;
    case MetricType::CC: {
      partials_ = Partials(nz, kLossTerms, ctx.memory_space());
      lncc_.window = LnccWindow::Box;
      lncc_.radius = params.radius;
      lncc_.gradient = LnccGradient::Exact;
      // eps = 1e-5 for intensities scaled to [0, 1] (FireANTs' choice), in the images' own units
      // (it multiplies varF varW): windows whose variances are tiny against the intensity range
      // (flat background, the tails of smooth structures) then carry no spurious correlation.
      const double df = std::max(fr.max - fr.min, 1e-12), dm = std::max(mr.max - mr.min, 1e-12);
      lncc_.eps = params.cc_epsilon * df * df * dm * dm;
      (void)lncc_window_radius(lncc_);  // validates
      break;
    }
    case MetricType::MI:
      partials_ = Partials(1, kLossTerms, ctx.memory_space());
      mattes_.bins = params.bins;
      mattes_.fixed_min = float(fr.min);
      mattes_.fixed_max = float(fr.max);
      mattes_.moving_min = float(mr.min);
      mattes_.moving_max = float(mr.max);
      mattes_.fixed_window = ParzenWindow::Box;
      (void)mattes_moving_axis(mattes_);  // validates
      break;
  }
}

void Metric::launch(VolumeView<const float> fixed, VolumeView<const float> warped,
                    VolumeView<const float> mask, VolumeView<float> grad) {
  const Box owned = whole(level_->fixed_geometry);
  switch (params_.type) {
    case MetricType::MeanSquares:
      mse_loss(ctx_, fixed, warped, mask, owned, partials_.view, grad);
      break;
    case MetricType::CC:
      lncc_loss(ctx_, fixed, warped, mask, owned, lncc_, partials_.view, grad);
      break;
    case MetricType::MI:
      mattes_mi(ctx_, fixed, warped, mask, owned, mattes_, partials_.view, grad);
      break;
  }
}

LossValue Metric::value() const { return reduce_loss(ctx_, partials_.view); }

}  // namespace gigareg::reg
