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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
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

/// `field` (on `from`, box containing its owned box there) resampled onto `to` on `box` (which
/// contains the owned box of `to`), or re-boxed when the grids agree; zeros when there is none.
/// The coarse voxels under `box` come from their owners (a collective call).
Volume<float> field_on_grid(const Context& ctx, const Partition& part, Volume<float>&& field,
                            const Geometry& from, const Geometry& to, const Box& box) {
  if (field.empty()) return zeros(to, box, 3, ctx.memory_space());
  if (from.equals(to)) {
    if (field.box() == box) return std::move(field);
    return part.fetch(field, box);
  }
  const Volume<float> source = part.fetch(field, resample_source_box(from, to, box));
  Volume<float> out(to, box, 3, ctx.memory_space());
  pyramid_upsample_field(ctx, source.view(), from, out.view(), to, box);
  return out;
}

bool uses_adam(const StageParams& s) {
  if (s.optimizer == FieldOptimizer::Auto) return s.transform == TransformType::Greedy;
  return s.optimizer == FieldOptimizer::Adam;
}

/// The largest displacement of one update (mm): step * (smallest level spacing).
double update_bound(const StageParams& stage, double min_spacing) { return stage.step * min_spacing; }

Index3 smoothing_halo(double sigma) {
  if (!(sigma > 0)) return {0, 0, 0};
  return gaussian_radii(Vec3d{sigma, sigma, sigma}, kDefaultGaussianTruncation);
}

/// The largest of two halos, per axis.
Index3 max_halo(Index3 a, Index3 b) {
  return {std::max(a.x, b.x), std::max(a.y, b.y), std::max(a.z, b.z)};
}

/// Adam's two moments of a field on the owned box, stored as float or bfloat16.
template <class T>
struct Moments {
  Volume<T> m, v;
  Moments(const Geometry& g, const Box& owned, MemorySpace space)
      : m(zeros<T>(g, owned, 3, space)), v(zeros<T>(g, owned, 3, space)) {}
};

/// The optimiser state and scratch of one field on one level, on this process's owned box.
/// Memory: one work field (the metric's gradient, dL/du, its smoothed copy, the update and the
/// composed field take turns in it, each op writing over the one before: smoothing, Adam and the
/// composition run in place) and Adam's two moments (bfloat16 by default): with u, 36 bytes per
/// voxel (48 with float moments). The work field and u share one box (owned plus the largest halo
/// any of their uses needs), so that they trade places without copies.
class FieldStepper {
 public:
  FieldStepper(const Context& ctx, const Partition& part, const Geometry& g, const Box& owned,
               const StageParams& stage, double min_spacing)
      : ctx_(ctx),
        part_(&part),
        g_(g),
        owned_(owned),
        stage_(stage),
        target_(update_bound(stage, min_spacing)),
        grad_halo_(smoothing_halo(stage.gradient_sigma)),
        field_halo_(displacement_halo(g, target_)),
        composed_halo_(smoothing_halo(stage.field_sigma)),
        box_(part.halo_box(g.size, max_halo(max_halo(grad_halo_, field_halo_), composed_halo_))),
        work_(g, box_, 3, ctx.memory_space()),
        norms_(ctx, part, g, owned, 1),
        scale_(1, ctx.memory_space(), "step scale") {
    if (uses_adam(stage) && stage.adam_bfloat16_moments)
      moments_bf16_ = std::make_unique<Moments<bfloat16>>(g, owned, ctx.memory_space());
    else if (uses_adam(stage))
      moments_f32_ = std::make_unique<Moments<float>>(g, owned, ctx.memory_space());
  }

  /// The box a field must have (owned and the halos).
  Box field_box() const { return box_; }
  /// The largest displacement one update adds to the field (mm).
  double update_norm() const { return target_; }

  /// Where the metric writes dS/dW (owned box, one component): the first component plane of the
  /// work field, which warp_backward then overwrites with dL/du voxel by voxel (each voxel's dS/dW
  /// is read before its dL/du is written), so the metric's gradient needs no volume of its own.
  VolumeView<float> metric_gradient() {
    VolumeView<float> w = work_.view();
    VolumeView<float> out = w;
    out.data = &w.at(owned_.lo.x, owned_.lo.y, owned_.lo.z, 0);
    out.extent = owned_.size;
    out.box_lo = owned_.lo;
    out.components = 1;
    return out;
  }

  /// dL/du goes here (warp_backward writes it on the owned box).
  VolumeView<float> gradient() { return work_.view(); }

  /// Takes one step on `field` (box field_box()) from the gradient in gradient().
  void apply(Volume<float>& field) {
    if (stage_.gradient_sigma > 0) {
      const double s = stage_.gradient_sigma;
      part_->exchange_halos({&work_}, grad_halo_);
      gaussian_smooth(ctx_, work_.view(), work_.view(), Vec3d{s, s, s}, owned_);
    }
    if (!uses_adam(stage_)) {
      // s = -(step h) g / max|g|
      scale_to(work_, -target_);
      compose_and_smooth(field);
      return;
    }
    // Adam on g / max|g|, then s = (step h) a / max|a|; the step replaces the gradient.
    scale_to(work_, 1.0);
    AdamParams ap;
    ap.learning_rate = 1.0;
    ap.beta1 = stage_.adam_beta1;
    ap.beta2 = stage_.adam_beta2;
    ap.eps = stage_.adam_epsilon;
    ap.step = ++t_;
    if (moments_bf16_)
      adam_update(ctx_, work_.view(), moments_bf16_->m.view(), moments_bf16_->v.view(), work_.view(),
                  ap, owned_, StepOutput::Write);
    else
      adam_update(ctx_, work_.view(), moments_f32_->m.view(), moments_f32_->v.view(), work_.view(),
                  ap, owned_, StepOutput::Write);
    scale_to(work_, target_);
    compose_and_smooth(field);
  }

 private:
  /// f <- f * target / max|f| (global max; the scale stays on the device).
  void scale_to(Volume<float>& f, double target) {
    max_norm_partials(ctx_, f.view(), owned_, norms_.local());
    max_norm_scale_device(ctx_, norms_.gather(), target, 1e-30, scale_.data());
    scale_field(ctx_, f.view(), scale_.data(), owned_);
  }

  /// field <- G_sigmaWarp * (s + field o (x + s)) with s in the work field: the composition
  /// replaces s (each voxel's s is read before it is written; the field is sampled elsewhere),
  /// is smoothed in place, and trades places with the field, whose memory becomes the work field.
  void compose_and_smooth(Volume<float>& field) {
    part_->exchange_halos({&field}, field_halo_);
    compose_fields(ctx_, work_.view(), g_, field.view(), g_, work_.view(), owned_);
    if (stage_.field_sigma > 0) {
      const double sg = stage_.field_sigma;
      part_->exchange_halos({&work_}, composed_halo_);
      gaussian_smooth(ctx_, work_.view(), work_.view(), Vec3d{sg, sg, sg}, owned_);
    }
    std::swap(field, work_);  // the same box
  }

  Context ctx_;
  const Partition* part_;
  Geometry g_;
  Box owned_;
  const StageParams& stage_;
  double target_;
  Index3 grad_halo_, field_halo_, composed_halo_;
  Box box_;
  Volume<float> work_;
  std::unique_ptr<Moments<bfloat16>> moments_bf16_;
  std::unique_ptr<Moments<float>> moments_f32_;
  GatheredPartials norms_;
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

void run_greedy(const Inputs& in, const StageParams& stage, int stage_index,
                const RegistrationParams& params, PipelineState& state,
                std::vector<LevelReport>& reports) {
  const Context& ctx = in.ctx;
  const Partition& part = *in.part;
  const int levels = int(stage.convergence.iterations.size());
  for (int lv = 0; lv < levels; ++lv) {
    const auto t0 = std::chrono::steady_clock::now();
    Level level = make_level(in, stage, lv);
    const Geometry& fg = level.fixed_geometry;
    const Box owned = level.owned;
    MovingWindow& window = *level.moving;
    FieldStepper stepper(ctx, part, fg, owned, stage, level.min_spacing);
    Volume<float> u = field_on_grid(ctx, part, std::move(state.field), state.field_geometry, fg,
                                    stepper.field_box());
    state.field_geometry = fg;
    MaskCombiner mask(ctx, part, fg, owned, level.mask_halo, &level.fixed_mask, &window);
    Metric metric(ctx, part, stage.metric, fg, owned, level.fixed_range, level.moving_range);
    Volume<float> warped(fg, part.halo_box(fg.size, level.image_halo), 1, ctx.memory_space());
    ConvergenceMonitor monitor(stage.convergence.window);
    LevelReport report;
    report.stage = stage_index;
    report.level = lv;
    report.size = fg.size;
    // A bound on |u| for the moving window, kept on the host without synchronising: an update
    // adds at most update_norm() and smoothing never increases the largest norm. Measured
    // (one synchronisation) only when the bound says the window may be outgrown.
    const bool windowed = part.size() > 1;
    double bound = windowed ? global_max_norm(ctx, part, u, owned) : 0.0;
    const int max_iterations = stage.convergence.iterations[std::size_t(lv)];
    for (int it = 0; it < max_iterations; ++it) {
      if (windowed && !part.all(window.covers(state.affine, bound))) {
        bound = global_max_norm(ctx, part, u, owned);
        window.cover(state.affine, bound + 4.0 * stepper.update_norm());
      }
      const WarpInputs w = warp_inputs(window.image(), window.geometry(), fg, state.affine, u.view());
      mask.update(state.affine, u.view());
      warp(ctx, w, warped.view(), owned);
      const VolumeView<float> grad_w = stepper.metric_gradient();
      metric.launch(level.fixed.view(), warped, mask.view(), grad_w);
      WarpGradients wg;
      wg.displacement = stepper.gradient();
      warp_backward(ctx, w, grad_w, owned, wg);
      stepper.apply(u);
      bound += stepper.update_norm() * (1.0 + 1e-6);
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
  const Partition& part = *in.part;
  // Not sharded yet: its collapse needs the inverse of the fixed-side field and both images are
  // warped in the middle space (the fixed image would need a window as the moving one has).
  if (part.size() > 1)
    throw_error(ErrorKind::InvalidArgument, "SyN stage",
                "SyN runs in one process only so far; use Greedy[...] under mpirun");
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
    Level level = make_level(in, stage, lv);
    const Geometry& fg = level.fixed_geometry;
    const Box owned = whole(fg);
    const MovingWindow& moving = *level.moving;  // the whole grid in one process
    f = field_on_grid(ctx, part, std::move(f), fgeom, fg, owned);
    g = field_on_grid(ctx, part, std::move(g), ggeom, fg, owned);
    fgeom = ggeom = fg;
    // In the middle space both images are warped: the fixed one by f, the moving one by A and g.
    // Masks: the fixed mask is sampled through f (and ANDed with the moving mask through A, g).
    const bool has_fixed_mask = level.fixed_mask.present();
    LevelImage fixed_mask_mid;
    if (has_fixed_mask) fixed_mask_mid.owned = Volume<float>(fg, 1, ctx.memory_space());
    MaskCombiner mask(ctx, part, fg, owned, level.mask_halo, &fixed_mask_mid, &moving);

    // d/dW_moving: the fixed side is the reference. d/dW_fixed: the roles swap; its ranges are
    // the moving image's over its grid and the fixed image's over its grid and 0.
    Metric metric_m(ctx, part, stage.metric, fg, owned, level.fixed_range, level.moving_range);
    const IntensityRange moving_whole =
        global_range(ctx, part, moving.image().view(), {}, whole(moving.geometry()));
    IntensityRange fixed_whole = global_range(ctx, part, level.fixed.view(), {}, owned);
    fixed_whole.min = std::min(fixed_whole.min, 0.0);
    fixed_whole.max = std::max(fixed_whole.max, 0.0);
    Metric metric_f(ctx, part, stage.metric, fg, owned, moving_whole, fixed_whole);

    Volume<float> wf(fg, 1, ctx.memory_space()), wm(fg, 1, ctx.memory_space());
    FieldStepper step_f(ctx, part, fg, owned, stage, level.min_spacing);
    FieldStepper step_g(ctx, part, fg, owned, stage, level.min_spacing);
    ConvergenceMonitor monitor(stage.convergence.window);
    LevelReport report;
    report.stage = stage_index;
    report.level = lv;
    report.size = fg.size;
    const int max_iterations = stage.convergence.iterations[std::size_t(lv)];
    for (int it = 0; it < max_iterations; ++it) {
      const WarpInputs w_fixed = warp_inputs(level.fixed, fg, fg, Affined::identity(), f.view());
      const WarpInputs w_moving = warp_inputs(moving.image(), moving.geometry(), fg, state.affine, g.view());
      if (has_fixed_mask) {
        WarpInputs wmask = warp_inputs(level.fixed_mask, fg, fg, Affined::identity(), f.view());
        warp(ctx, wmask, fixed_mask_mid.owned.view(), owned);
      }
      mask.update(state.affine, g.view());
      warp(ctx, w_fixed, wf.view(), owned);
      warp(ctx, w_moving, wm.view(), owned);
      const VolumeView<float> grad_wm = step_g.metric_gradient(), grad_wf = step_f.metric_gradient();
      metric_m.launch(wf.view(), wm, mask.view(), grad_wm);
      metric_f.launch(wm.view(), wf, mask.view(), grad_wf);
      WarpGradients gm, gf;
      gm.displacement = step_g.gradient();
      gf.displacement = step_f.gradient();
      warp_backward(ctx, w_moving, grad_wm, owned, gm);
      warp_backward(ctx, w_fixed, grad_wf, owned, gf);
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
