// Deformable stages: greedy compositive updates of a displacement field u on the fixed grid,
// T(x) = A(x + u(x)), and SyN (two half-way fields meeting in a middle space).
//
// Greedy, one iteration (every array touched is a level-grid volume in the backend's memory;
// nothing is synchronised with the host except the loss value read for the convergence check,
// after the whole iteration is enqueued):
//   W = M o A(x + u)                              warp
//   S, dS/dW                                      loss (LNCC, Mattes MI or mean squares)
//   dS/du                                         warp_backward
//   g = G_sigmaGrad * dS/du                       gaussian_smooth (skipped for sigma 0)
//   Adam:  g /= max|g|                            max_norm_partials, max_norm_scale_device,
//          s = Adam(g)                            scale_field, adam_update (moments m, v)
//          s *= (step h) / max|s|                 max_norm_partials, ..., scale_field
//   GD:    s = -(step h) g / max|g|               (ANTs: the normalised smoothed gradient)
//   u <- G_sigmaWarp * (s + u o (x + s))          compose_fields, gaussian_smooth
// h is the smallest spacing of the level grid: the largest displacement of an update is `step`
// level voxels, as ANTs scales its update fields. The scale factors are computed on the device
// (a double in device memory read by scale_field): no host synchronisation. Adam sees the
// gradient normalised to a largest norm of 1, so its epsilon (StageParams::adam_epsilon) is
// relative: voxels whose gradient is far below the largest take proportionally small steps
// instead of being amplified to full ones.
//
// SyN: fields f and g on the fixed grid of the level define a middle space z: the fixed image is
// sampled at z + f(z), the moving image at A(z + g(z)). Each iteration takes the same normalised
// Adam step on both (descending the metric w.r.t. each side), composes each into its field and
// smooths it. The final map from the fixed space is x -> A(y + g(y)), y = x + f^-1(x):
//   u(x) = f^-1(x) + g(x + f^-1(x)),
// with f^-1 by invert_field.

#include <chrono>
#include <cmath>
#include <utility>

#include "gigareg/log.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/ops/warp.hpp"
#include "registration/internal.hpp"

namespace gigareg::reg {
namespace {

/// `field` (on `from`) resampled onto `to`, or taken as it is when the grids agree.
Volume<float> field_on_grid(const Context& ctx, Volume<float>&& field, const Geometry& from,
                            const Geometry& to) {
  if (field.empty()) return zeros(to, 3, ctx.memory_space());
  if (from.equals(to)) return std::move(field);
  Volume<float> out(to, 3, ctx.memory_space());
  pyramid_upsample_field(ctx, field.view(), from, out.view(), to, whole(to));
  return out;
}

bool uses_adam(const StageParams& s) {
  if (s.optimizer == FieldOptimizer::Auto) return s.transform == TransformType::Greedy;
  return s.optimizer == FieldOptimizer::Adam;
}

/// The optimiser state and scratch of one field on one level.
class FieldStepper {
 public:
  FieldStepper(const Context& ctx, const Geometry& g, const StageParams& stage, double min_spacing)
      : ctx_(ctx),
        g_(g),
        stage_(stage),
        target_(stage.step * min_spacing),
        grad_(g, 3, ctx.memory_space()),
        smoothed_(stage.gradient_sigma > 0 ? Volume<float>(g, 3, ctx.memory_space()) : Volume<float>()),
        m_(uses_adam(stage) ? zeros(g, 3, ctx.memory_space()) : Volume<float>()),
        v_(uses_adam(stage) ? zeros(g, 3, ctx.memory_space()) : Volume<float>()),
        step_(uses_adam(stage) ? Volume<float>(g, 3, ctx.memory_space()) : Volume<float>()),
        composed_(g, 3, ctx.memory_space()),
        norms_(g.size.z, 1, ctx.memory_space()),
        scale_(1, ctx.memory_space(), "step scale") {}

  /// dL/du goes here (warp_backward writes it).
  VolumeView<float> gradient() { return grad_.view(); }

  /// Takes one step on `field` from the gradient in gradient(): field is replaced.
  void apply(Volume<float>& field) {
    const Box owned = whole(g_);
    Volume<float>& g = smoothed_.empty() ? grad_ : smoothed_;
    if (!smoothed_.empty()) {
      const double s = stage_.gradient_sigma;
      gaussian_smooth(ctx_, grad_.view(), smoothed_.view(), Vec3d{s, s, s}, owned);
    }
    if (!uses_adam(stage_)) {
      // s = -(step h) g / max|g|
      max_norm_partials(ctx_, g.view(), owned, norms_.view);
      max_norm_scale_device(ctx_, norms_.view, -target_, 1e-30, scale_.data());
      scale_field(ctx_, g.view(), scale_.data(), owned);
      compose_and_smooth(g, field);
      return;
    }
    // Adam on g / max|g|, then s = (step h) a / max|a|.
    max_norm_partials(ctx_, g.view(), owned, norms_.view);
    max_norm_scale_device(ctx_, norms_.view, 1.0, 1e-30, scale_.data());
    AdamParams ap;
    ap.learning_rate = 1.0;
    ap.beta1 = stage_.adam_beta1;
    ap.beta2 = stage_.adam_beta2;
    ap.eps = stage_.adam_epsilon;
    ap.step = ++t_;
    scale_field(ctx_, g.view(), scale_.data(), owned);
    adam_update(ctx_, g.view(), m_.view(), v_.view(), step_.view(), ap, owned, StepOutput::Write);
    max_norm_partials(ctx_, step_.view(), owned, norms_.view);
    max_norm_scale_device(ctx_, norms_.view, target_, 1e-30, scale_.data());
    scale_field(ctx_, step_.view(), scale_.data(), owned);
    compose_and_smooth(step_, field);
  }

 private:
  /// field <- G_sigmaWarp * (s + field o (x + s))
  void compose_and_smooth(const Volume<float>& s, Volume<float>& field) {
    const Box owned = whole(g_);
    // field <- s + field o (x + s)
    compose_fields(ctx_, s.view(), g_, field.view(), g_, composed_.view(), owned);
    if (stage_.field_sigma > 0) {
      const double sg = stage_.field_sigma;
      gaussian_smooth(ctx_, composed_.view(), field.view(), Vec3d{sg, sg, sg}, owned);
    } else {
      std::swap(field, composed_);
    }
  }

  Context ctx_;
  Geometry g_;
  const StageParams& stage_;
  double target_;
  Volume<float> grad_, smoothed_, m_, v_, step_, composed_;
  Partials norms_;
  Buffer<double> scale_;
  std::int64_t t_ = 0;
};

WarpInputs warp_inputs(const LevelImage& image, const Geometry& image_geometry,
                       const Geometry& out_geometry, const Affined& affine,
                       VolumeView<const float> displacement) {
  WarpInputs w;
  w.moving = image.view();
  w.moving_geometry = image_geometry;
  w.fixed_geometry = out_geometry;
  w.affine = affine;
  w.displacement = displacement;
  w.interpolation = Interpolation::Linear;
  w.boundary = Boundary::Zero;
  return w;
}

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
          fmt(report.final_loss) + ", " + fmt(report.seconds, 3) + " s");
  reports.push_back(report);
}

/// Records one iteration's loss; returns true when the level has converged.
bool record(const LossValue& loss, int it, int lv, int levels, int stage_index,
            const StageParams& stage, const RegistrationParams& params,
            ConvergenceMonitor& monitor, LevelReport& report) {
  if (!(loss.count > 0))
    throw_error(ErrorKind::InvalidInput, level_name(stage_index, lv),
                "no fixed voxel counts for the metric (the masks exclude everything)");
  const double value = loss.value();
  if (!std::isfinite(value))
    throw_error(ErrorKind::Internal, level_name(stage_index, lv), "the loss is not finite");
  if (it == 0) report.initial_loss = value;
  report.final_loss = value;
  report.iterations = it + 1;
  monitor.add(value);
  const double conv = monitor.value();
  if (params.progress) params.progress({stage_index, stage.transform, lv, levels, it, value, conv});
  log(LogLevel::Debug, level_name(stage_index, lv) + " iteration " + std::to_string(it + 1) +
                           ": loss " + fmt(value, 8) + ", convergence " + fmt(conv, 4));
  return monitor.converged(stage.convergence.threshold);
}

void run_greedy(const Inputs& in, const StageParams& stage, int stage_index,
                const RegistrationParams& params, PipelineState& state,
                std::vector<LevelReport>& reports) {
  const Context& ctx = in.ctx;
  const int levels = int(stage.convergence.iterations.size());
  for (int lv = 0; lv < levels; ++lv) {
    const auto t0 = std::chrono::steady_clock::now();
    const Level level = make_level(in, stage, lv);
    const Geometry& fg = level.fixed_geometry;
    const Box owned = whole(fg);
    Volume<float> u = field_on_grid(ctx, std::move(state.field), state.field_geometry, fg);
    state.field_geometry = fg;
    MaskCombiner mask(ctx, level);
    Metric metric(ctx, stage.metric, level);
    Volume<float> warped(fg, 1, ctx.memory_space());
    Volume<float> grad_w(fg, 1, ctx.memory_space());
    FieldStepper stepper(ctx, fg, stage, level.min_spacing);
    ConvergenceMonitor monitor(stage.convergence.window);
    LevelReport report;
    report.stage = stage_index;
    report.level = lv;
    report.size = fg.size;
    const int max_iterations = stage.convergence.iterations[std::size_t(lv)];
    for (int it = 0; it < max_iterations; ++it) {
      const WarpInputs w = warp_inputs(level.moving, level.moving_geometry, fg, state.affine, u.view());
      mask.update(state.affine, u.view());
      warp(ctx, w, warped.view(), owned);
      metric.launch(level.fixed.view(), warped.view(), mask.view(), grad_w.view());
      WarpGradients wg;
      wg.displacement = stepper.gradient();
      warp_backward(ctx, w, grad_w.view(), owned, wg);
      stepper.apply(u);
      // The loss of the field before this update (read once the update is enqueued).
      if (record(metric.value(), it, lv, levels, stage_index, stage, params, monitor, report)) {
        report.converged = true;
        break;
      }
    }
    state.field = std::move(u);
    finish_level(report, stage, stage_index, lv, levels, t0, reports);
  }
}

void run_syn(const Inputs& in, const StageParams& stage, int stage_index,
             const RegistrationParams& params, PipelineState& state,
             std::vector<LevelReport>& reports) {
  const Context& ctx = in.ctx;
  const int levels = int(stage.convergence.iterations.size());
  // The fixed side starts at the identity; an earlier deformable stage's field is kept as the
  // starting moving side (the map is then x -> A(y + g(y)), y = x + f^-1(x), f = 0 at first).
  Volume<float> f, g = std::move(state.field);
  Geometry fgeom = state.field_geometry, ggeom = state.field_geometry;
  InverseOptions inv;
  inv.iterations = params.inverse_iterations;
  inv.tolerance = params.inverse_tolerance_mm;
  for (int lv = 0; lv < levels; ++lv) {
    const auto t0 = std::chrono::steady_clock::now();
    const Level level = make_level(in, stage, lv);
    const Geometry& fg = level.fixed_geometry;
    const Box owned = whole(fg);
    f = field_on_grid(ctx, std::move(f), fgeom, fg);
    g = field_on_grid(ctx, std::move(g), ggeom, fg);
    fgeom = ggeom = fg;
    // In the middle space both images are warped: the fixed one by f, the moving one by A and g.
    // Masks: the fixed mask is sampled through f (and ANDed with the moving mask through A, g).
    Level middle_masks;
    middle_masks.fixed_geometry = fg;
    middle_masks.moving_geometry = level.moving_geometry;
    Volume<float> fixed_mask_mid;
    const bool has_fixed_mask = level.fixed_mask.present();
    if (has_fixed_mask) fixed_mask_mid = Volume<float>(fg, 1, ctx.memory_space());
    middle_masks.fixed_mask.borrowed = has_fixed_mask ? &fixed_mask_mid : nullptr;
    if (level.moving_mask.present()) middle_masks.moving_mask.borrowed = &level.moving_mask.get();
    MaskCombiner mask(ctx, middle_masks);

    Metric metric_m(ctx, stage.metric, level);  // d/dW_moving: fixed side is the reference
    MetricParams swapped = stage.metric;
    Level swapped_level;  // for MI ranges: the "fixed" role is the moving image
    swapped_level.fixed_geometry = fg;
    swapped_level.moving_geometry = level.fixed_geometry;
    swapped_level.fixed.borrowed = &level.moving.get();
    swapped_level.moving.borrowed = &level.fixed.get();
    Metric metric_f(ctx, swapped, swapped_level);  // d/dW_fixed: the moving side is the reference

    Volume<float> wf(fg, 1, ctx.memory_space()), wm(fg, 1, ctx.memory_space());
    Volume<float> grad_wf(fg, 1, ctx.memory_space()), grad_wm(fg, 1, ctx.memory_space());
    FieldStepper step_f(ctx, fg, stage, level.min_spacing), step_g(ctx, fg, stage, level.min_spacing);
    ConvergenceMonitor monitor(stage.convergence.window);
    LevelReport report;
    report.stage = stage_index;
    report.level = lv;
    report.size = fg.size;
    const int max_iterations = stage.convergence.iterations[std::size_t(lv)];
    for (int it = 0; it < max_iterations; ++it) {
      const WarpInputs w_fixed = warp_inputs(level.fixed, fg, fg, Affined::identity(), f.view());
      const WarpInputs w_moving = warp_inputs(level.moving, level.moving_geometry, fg, state.affine, g.view());
      if (has_fixed_mask) {
        WarpInputs wmask = warp_inputs(level.fixed_mask, fg, fg, Affined::identity(), f.view());
        warp(ctx, wmask, fixed_mask_mid.view(), owned);
      }
      mask.update(state.affine, g.view());
      warp(ctx, w_fixed, wf.view(), owned);
      warp(ctx, w_moving, wm.view(), owned);
      metric_m.launch(wf.view(), wm.view(), mask.view(), grad_wm.view());
      metric_f.launch(wm.view(), wf.view(), mask.view(), grad_wf.view());
      WarpGradients gm, gf;
      gm.displacement = step_g.gradient();
      gf.displacement = step_f.gradient();
      warp_backward(ctx, w_moving, grad_wm.view(), owned, gm);
      warp_backward(ctx, w_fixed, grad_wf.view(), owned, gf);
      step_g.apply(g);
      step_f.apply(f);
      if (record(metric_m.value(), it, lv, levels, stage_index, stage, params, monitor, report)) {
        report.converged = true;
        break;
      }
    }
    finish_level(report, stage, stage_index, lv, levels, t0, reports);
  }
  // Collapse to one field on the last level's grid: u(x) = f^-1(x) + g(x + f^-1(x)).
  const Geometry& fg = fgeom;
  Volume<float> finv(fg, 3, ctx.memory_space());
  invert_field(ctx, f.view(), fg, fg, finv.view(), whole(fg), inv);
  Volume<float> u(fg, 3, ctx.memory_space());
  compose_fields(ctx, finv.view(), fg, g.view(), fg, u.view(), whole(fg));
  state.field = std::move(u);
  state.field_geometry = fg;
}

}  // namespace

void run_deformable_stage(const Inputs& in, const StageParams& stage, int stage_index,
                          const RegistrationParams& params, PipelineState& state,
                          std::vector<LevelReport>& reports) {
  if (stage.transform == TransformType::SyN)
    run_syn(in, stage, stage_index, params, state, reports);
  else
    run_greedy(in, stage, stage_index, params, state, reports);
}

}  // namespace gigareg::reg
