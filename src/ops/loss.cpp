// The losses: argument checks, window taps and bin maps shared by both backends, dispatch.

#include "gigareg/ops/loss.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "ops/common.hpp"
#include "ops/scratch.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/loss.hpp"
#endif

namespace gigareg {
namespace cpu {
void mse_loss(VolumeView<const float> fixed, VolumeView<const float> warped,
              VolumeView<const float> mask, const Box& owned, SlicePartials partials,
              VolumeView<float> grad);
void lncc_loss(VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const LnccConfig& config,
               SlicePartials partials, VolumeView<float> grad);
void mattes_histogram(VolumeView<const float> fixed, VolumeView<const float> warped,
                      VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                      const MattesAxis& moving_axis, std::int64_t* hist);
void mattes_table(const std::int64_t* hist, int bins, float* table, double* value);
void mattes_gradient(VolumeView<const float> fixed, VolumeView<const float> warped,
                     VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                     const MattesAxis& moving_axis, const float* table, VolumeView<float> grad);
void intensity_range(VolumeView<const float> image, VolumeView<const float> mask, const Box& owned,
                     SlicePartials partials);
}  // namespace cpu

namespace {

using ops_detail::grow_clip;
using ops_detail::no_cuda;

void require(bool cond, const char* op, const std::string& message) {
  if (!cond) throw_error(ErrorKind::InvalidArgument, op, message);
}

std::string box_text(const Box& b) {
  return "[" + std::to_string(b.lo.x) + "," + std::to_string(b.lo.y) + "," + std::to_string(b.lo.z) +
         "]+[" + std::to_string(b.size.x) + "," + std::to_string(b.size.y) + "," +
         std::to_string(b.size.z) + "]";
}

/// The common checks: owned inside the grid; F (and W) single-component views of the grid in the
/// backend's memory containing `input`; the optional mask containing `mask_box`; the optional
/// gradient containing owned; the optional partials shaped slices x terms.
void check_views(const Context& ctx, const char* op, VolumeView<const float> fixed,
                 const VolumeView<const float>* warped, VolumeView<const float> mask,
                 const Box& owned, const Box& input, const Box& mask_box,
                 const VolumeView<float>* grad, const SlicePartials* partials, index_t slices,
                 int terms) {
  const Index3 g = fixed.global_size;
  require(g.x > 0 && g.y > 0 && g.z > 0, op, "the fixed image has an empty grid");
  require(Box{{0, 0, 0}, g}.contains(owned), op, "the owned box " + box_text(owned) + " leaves the grid");
  auto check_input = [&](VolumeView<const float> v, const char* what, const Box& need) {
    require_backend_memory(ctx, op, v.data);
    require(v.components == 1, op, std::string(what) + " must have one component");
    require(v.global_size == g, op, std::string(what) + " lives on another grid than the fixed image");
    require(v.box().contains(need), op,
            std::string(what) + " view " + box_text(v.box()) + " does not contain the needed box " +
                box_text(need));
  };
  check_input(fixed, "the fixed image", input);
  if (warped != nullptr) check_input(*warped, "the warped image", input);
  if (mask.data != nullptr) check_input(mask, "the mask", mask_box);
  if (grad != nullptr && grad->data != nullptr) {
    require_backend_memory(ctx, op, grad->data);
    require(grad->components == 1, op, "the gradient must have one component");
    require(grad->global_size == g, op, "the gradient lives on another grid than the fixed image");
    require(grad->box().contains(owned), op, "the gradient view does not contain the owned box");
  }
  if (partials != nullptr && partials->data != nullptr) {
    require_backend_memory(ctx, op, partials->data);
    require(partials->slices == slices && partials->terms == terms, op,
            "the partials must be " + std::to_string(slices) + " slices x " +
                std::to_string(terms) + " terms");
  }
}

}  // namespace

LossValue reduce_loss(const Context& ctx, const SlicePartials& partials) {
  require(partials.terms == kLossTerms, "reduce_loss", "a loss has 2 terms");
  const std::vector<double> t = reduce_slices(ctx, partials);
  return {t[0], t[1]};
}

// ---------------------------------------------------------------------------------------------
void mse_loss(const Context& ctx, VolumeView<const float> fixed, VolumeView<const float> warped,
              VolumeView<const float> mask, const Box& owned, SlicePartials partials,
              VolumeView<float> grad) {
  const char* op = "mse_loss";
  check_views(ctx, op, fixed, &warped, mask, owned, owned, owned, &grad, &partials, owned.size.z,
              kLossTerms);
  if (owned.empty()) return;
  if (ctx.backend == Backend::Cpu) return cpu::mse_loss(fixed, warped, mask, owned, partials, grad);
#if GIGAREG_WITH_CUDA
  cuda::mse_loss(ctx.stream, fixed, warped, mask, owned, partials, grad);
#else
  no_cuda(op);
#endif
}

// ---------------------------------------------------------------------------------------------
int lncc_window_radius(const LnccParams& params) {
  const char* op = "lncc_window_radius";
  int h = 0;
  if (params.window == LnccWindow::Box) {
    h = params.radius;
  } else {
    require(std::isfinite(params.sigma) && params.sigma > 0.0, op, "sigma must be positive");
    require(std::isfinite(params.truncation) && params.truncation > 0.0, op,
            "truncation must be positive");
    const double r = std::ceil(params.truncation * params.sigma);
    require(r <= double(kLnccMaxRadius), op,
            "the Gaussian window radius exceeds " + std::to_string(kLnccMaxRadius));
    h = int(r);
  }
  require(h >= 1 && h <= kLnccMaxRadius, op,
          "the window radius must be 1.." + std::to_string(kLnccMaxRadius));
  return h;
}

LnccTaps lncc_window_taps(const LnccParams& params) {
  LnccTaps taps;
  taps.radius = lncc_window_radius(params);
  for (int d = -taps.radius; d <= taps.radius; ++d)
    taps.w[taps.radius + d] =
        params.window == LnccWindow::Box
            ? 1.0f
            : float(std::exp(-double(d) * double(d) / (2.0 * params.sigma * params.sigma)));
  return taps;
}

Index3 lncc_input_halo(const LnccParams& params) {
  const index_t h = lncc_window_radius(params);
  const index_t r = params.gradient == LnccGradient::Exact ? 2 * h : h;
  return {r, r, r};
}

Index3 lncc_mask_halo(const LnccParams& params) {
  const index_t h = lncc_window_radius(params);
  const index_t r = params.gradient == LnccGradient::Exact ? h : 0;
  return {r, r, r};
}

Box lncc_input_box(const Box& owned, Index3 global_size, const LnccParams& params) {
  return owned.grown_within(lncc_input_halo(params), global_size);
}

Box lncc_mask_box(const Box& owned, Index3 global_size, const LnccParams& params) {
  return owned.grown_within(lncc_mask_halo(params), global_size);
}

void lncc_loss(const Context& ctx, VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const LnccParams& params,
               SlicePartials partials, VolumeView<float> grad) {
  const char* op = "lncc_loss";
  require(std::isfinite(params.eps) && params.eps > 0.0, op, "eps must be positive");
  LnccConfig config;
  config.taps = lncc_window_taps(params);
  config.eps = float(params.eps);
  require(std::isfinite(params.min_variance_fixed) && params.min_variance_fixed >= 0.0 &&
              std::isfinite(params.min_variance_warped) && params.min_variance_warped >= 0.0,
          op, "the variance floors must be finite and non-negative");
  config.min_vf = float(params.min_variance_fixed);
  config.min_vw = float(params.min_variance_warped);
  config.exact_gradient = params.gradient == LnccGradient::Exact;
  // Value only needs the windows of the owned centres: the ANTs halo.
  LnccParams need = params;
  if (grad.data == nullptr) need.gradient = LnccGradient::AntsApproximation;
  const Index3 g = fixed.global_size;
  check_views(ctx, op, fixed, &warped, mask, owned, lncc_input_box(owned, g, need),
              lncc_mask_box(owned, g, need), &grad, &partials, owned.size.z, kLossTerms);
  if (owned.empty()) return;
  if (ctx.backend == Backend::Cpu)
    return cpu::lncc_loss(fixed, warped, mask, owned, config, partials, grad);
#if GIGAREG_WITH_CUDA
  cuda::lncc_loss(ctx.stream, fixed, warped, mask, owned, config, partials, grad);
#else
  no_cuda(op);
#endif
}

// ---------------------------------------------------------------------------------------------
namespace {

MattesAxis make_axis(const char* op, int bins, float lo, float hi, bool cubic) {
  require(bins >= kMattesMinBins && bins <= kMattesMaxBins, op,
          "bins must be " + std::to_string(kMattesMinBins) + ".." + std::to_string(kMattesMaxBins));
  require(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, op,
          "an intensity range must be finite with min <= max");
  MattesAxis a;
  a.lo = lo;
  a.bins = bins;
  a.cubic = cubic;
  const double width = double(hi) - double(lo);
  a.scale = width > 0.0 ? float(double(cubic ? bins - 3 : bins) / width) : 0.0f;
  return a;
}

void check_histogram(const Context& ctx, const char* op, const void* data, int bins,
                     const MattesParams& params, const char* what) {
  require_backend_memory(ctx, op, data);
  require(bins == params.bins, op, std::string(what) + " has another number of bins than params");
}

}  // namespace

MattesAxis mattes_fixed_axis(const MattesParams& p) {
  return make_axis("mattes_fixed_axis", p.bins, p.fixed_min, p.fixed_max,
                   p.fixed_window == ParzenWindow::CubicBSpline);
}
MattesAxis mattes_moving_axis(const MattesParams& p) {
  return make_axis("mattes_moving_axis", p.bins, p.moving_min, p.moving_max, true);
}

void mattes_histogram(const Context& ctx, VolumeView<const float> fixed,
                      VolumeView<const float> warped, VolumeView<const float> mask,
                      const Box& owned, const MattesParams& params, JointHistogram hist) {
  const char* op = "mattes_histogram";
  const MattesAxis fa = mattes_fixed_axis(params), ma = mattes_moving_axis(params);
  check_views(ctx, op, fixed, &warped, mask, owned, owned, owned, nullptr, nullptr, 0, 0);
  check_histogram(ctx, op, hist.data, hist.bins, params, "the histogram");
  require(double(fixed.global_size.x) * double(fixed.global_size.y) * double(fixed.global_size.z) <
              std::ldexp(1.0, 63 - kMattesFixedPointBits),
          op, "the grid is too large for the fixed-point histogram");
  if (ctx.backend == Backend::Cpu)
    return cpu::mattes_histogram(fixed, warped, mask, owned, fa, ma, hist.data);
#if GIGAREG_WITH_CUDA
  cuda::mattes_histogram(ctx.stream, fixed, warped, mask, owned, fa, ma, hist.data);
#else
  no_cuda(op);
#endif
}

void mattes_table(const Context& ctx, JointHistogram hist, const MattesParams& params,
                  MattesTable table, SlicePartials value) {
  const char* op = "mattes_table";
  (void)mattes_moving_axis(params);  // validates bins
  check_histogram(ctx, op, hist.data, hist.bins, params, "the histogram");
  if (table.data != nullptr) check_histogram(ctx, op, table.data, table.bins, params, "the table");
  if (value.data != nullptr) {
    require_backend_memory(ctx, op, value.data);
    require(value.slices == 1 && value.terms == kLossTerms, op, "the value must be 1 slice x 2 terms");
  }
  if (ctx.backend == Backend::Cpu) return cpu::mattes_table(hist.data, hist.bins, table.data, value.data);
#if GIGAREG_WITH_CUDA
  cuda::mattes_table(ctx.stream, hist.data, hist.bins, table.data, value.data);
#else
  no_cuda(op);
#endif
}

void mattes_gradient(const Context& ctx, VolumeView<const float> fixed,
                     VolumeView<const float> warped, VolumeView<const float> mask,
                     const Box& owned, const MattesParams& params, MattesTable table,
                     VolumeView<float> grad) {
  const char* op = "mattes_gradient";
  const MattesAxis fa = mattes_fixed_axis(params), ma = mattes_moving_axis(params);
  require(grad.data != nullptr, op, "the gradient view is empty");
  check_views(ctx, op, fixed, &warped, mask, owned, owned, owned, &grad, nullptr, 0, 0);
  check_histogram(ctx, op, table.data, table.bins, params, "the table");
  if (owned.empty()) return;
  if (ctx.backend == Backend::Cpu)
    return cpu::mattes_gradient(fixed, warped, mask, owned, fa, ma, table.data, grad);
#if GIGAREG_WITH_CUDA
  cuda::mattes_gradient(ctx.stream, fixed, warped, mask, owned, fa, ma, table.data, grad);
#else
  no_cuda(op);
#endif
}

void mattes_mi(const Context& ctx, VolumeView<const float> fixed, VolumeView<const float> warped,
               VolumeView<const float> mask, const Box& owned, const MattesParams& params,
               SlicePartials value, VolumeView<float> grad) {
  const int bins = mattes_moving_axis(params).bins;
  const std::size_t cells = std::size_t(bins) * std::size_t(bins);
  if (ctx.backend == Backend::Cpu) {
    std::vector<std::int64_t> hist(cells);
    std::vector<float> table(cells);
    mattes_histogram(ctx, fixed, warped, mask, owned, params, {hist.data(), bins});
    mattes_table(ctx, {hist.data(), bins}, params, {grad.data ? table.data() : nullptr, bins}, value);
    if (grad.data != nullptr)
      mattes_gradient(ctx, fixed, warped, mask, owned, params, {table.data(), bins}, grad);
    return;
  }
#if GIGAREG_WITH_CUDA
  Scratch<std::int64_t> hist(ctx, cells, "mattes_mi histogram");
  Scratch<float> table(ctx, cells, "mattes_mi table");
  mattes_histogram(ctx, fixed, warped, mask, owned, params, {hist.data(), bins});
  mattes_table(ctx, {hist.data(), bins}, params, {table.data(), bins}, value);
  if (grad.data != nullptr)
    mattes_gradient(ctx, fixed, warped, mask, owned, params, {table.data(), bins}, grad);
#else
  (void)cells;
  no_cuda("mattes_mi");
#endif
}

// ---------------------------------------------------------------------------------------------
void intensity_range(const Context& ctx, VolumeView<const float> image,
                     VolumeView<const float> mask, const Box& owned, SlicePartials partials) {
  const char* op = "intensity_range";
  require(partials.data != nullptr, op, "the partials are empty");
  check_views(ctx, op, image, nullptr, mask, owned, owned, owned, nullptr, &partials, owned.size.z,
              kRangeTerms);
  if (owned.empty()) return;
  if (ctx.backend == Backend::Cpu) return cpu::intensity_range(image, mask, owned, partials);
#if GIGAREG_WITH_CUDA
  cuda::intensity_range(ctx.stream, image, mask, owned, partials);
#else
  no_cuda(op);
#endif
}

IntensityRange reduce_intensity_range(const Context& ctx, const SlicePartials& partials) {
  const char* op = "reduce_intensity_range";
  require(partials.terms == kRangeTerms, op, "a range has 2 terms");
  std::vector<double> host(std::size_t(partials.slices) * kRangeTerms);
  if (!host.empty()) {
    if (ctx.backend == Backend::Cpu) {
      std::memcpy(host.data(), partials.data, host.size() * sizeof(double));
    } else {
#if GIGAREG_WITH_CUDA
      cuda::loss_copy_to_host(host.data(), partials.data, host.size() * sizeof(double), ctx.stream);
#else
      no_cuda(op);
#endif
    }
  }
  IntensityRange r{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
  for (index_t s = 0; s < partials.slices; ++s) {
    r.min = std::min(r.min, host[std::size_t(s) * kRangeTerms]);
    r.max = std::max(r.max, host[std::size_t(s) * kRangeTerms + 1]);
  }
  return r;
}

}  // namespace gigareg
