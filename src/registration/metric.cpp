// The stage metric on one level (metric.hpp).

#include "registration/metric.hpp"

#include <algorithm>

#include "registration/halos.hpp"

namespace gigareg::reg {

LnccParams cc_window(const MetricParams& params) {
  LnccParams p;
  p.window = LnccWindow::Box;
  p.radius = params.radius;
  p.gradient = LnccGradient::Exact;
  return p;
}

Metric::Metric(const Context& ctx, const Partition& part, const MetricParams& params,
               const Geometry& fixed_geometry, const Box& owned, IntensityRange fr, IntensityRange mr)
    : ctx_(ctx), part_(&part), params_(params), grid_(fixed_geometry), owned_(owned) {
  switch (params.type) {
    case MetricType::MeanSquares:
      local_ = Partials(owned.size.z, kLossTerms, ctx.memory_space());
      break;
    case MetricType::CC: {
      local_ = Partials(owned.size.z, kLossTerms, ctx.memory_space());
      lncc_ = cc_window(params);
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
