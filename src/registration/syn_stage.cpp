// SyN stages (the hooks of the level driver), in the scheme of ITK's SyNImageRegistrationMethod
// as antsRegistration runs it. Each side (fixed, moving) keeps a pair of fields on the fixed grid
// of the level: U, its map to the middle space (x -> x + U(x)), and V = U^-1, which samples its
// image in the middle space z: the fixed image at z + V_f(z), the moving one at A(z + V_m(z)).
// One iteration, on each side:
//   s = update (the metric's gradient w.r.t. that side's sampling position, smoothed with the
//       gradient sigma, 0 on the grid's outermost layer, normalised to the largest norm `step`
//       voxels; or Adam's step), signed so that moving U's points by +s improves the metric
//   T = U + s o (x + U)          compose_fields, zero displacement outside the grid (ITK's composer)
//   T <- G_sigmaWarp * T, 0 on the outermost layer (only when sigmaWarp > 0, as ITK)
//   V <- inverse of T            invert_field_damped, warm start: the previous V
//   U <- inverse of V            invert_field_damped, warm start: T
// Re-inverting every iteration keeps both fields invertible: T's small defects (a fold forming
// where the smoothing or an update crowds points) do not survive the inverse of its inverse, and
// V, which samples the image, is always the inverse of a map that was itself an inverse. The
// previous scheme (compose the update into V alone, invert once at the end) folded 7.3% of the
// MNI152 / ICBM pair with ANTs' SyN[0.1,3,0] (docs/registration.md).
// After the last level both V are refined against their U (invert_field_damped to the
// registration's inverse tolerance) and the result is collapsed exactly as ITK does:
//   u(x) = U_f(x) + V_m(x + U_f(x))     (fixed -> middle -> moving, then A)
//   w(y) = U_m(y) + V_f(y + U_m(y))     (its inverse: moving -> middle -> fixed)
// so the inverse warp comes from the half-way fields, not from inverting u (the pipeline then
// makes u the inverse of w on the full grid: reg::make_inverse_pair).

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/ops/warp.hpp"
#include "registration/field_stepper.hpp"
#include "registration/inverse_consistency.hpp"
#include "registration/level_report.hpp"
#include "registration/reductions.hpp"
#include "registration/stages.hpp"

namespace gigareg::reg {
namespace {

/// ITK's settings of the per-iteration inversions in SyN (SyNImageRegistrationMethod):
/// 20 updates at most, stop at a mean residual of 0.001 or a largest of 0.1 voxels.
DampedInverseOptions per_iteration_inverse() { return DampedInverseOptions{}; }

/// One side's pair of fields on the whole level grid.
struct SynSide {
  Volume<float> to_middle;    // U: this side's space -> the middle space
  Volume<float> from_middle;  // V = U^-1: samples this side's image in the middle space
};

class SynLevels final : public StageLevels {
 public:
  SynLevels(const StageRun& run, PipelineState& state) : run_(run), state_(state) {
    // Not sharded yet: the inversions are whole-grid ops and both images are warped in the
    // middle space (the fixed image would need a window as the moving one has).
    if (run.in.part->size() > 1)
      throw_error(ErrorKind::InvalidArgument, "SyN stage",
                  "SyN runs in one process only so far; use Greedy[...] under mpirun");
    // The fixed side starts at the identity; an earlier deformable stage's field u is kept as the
    // starting moving side (V_m = u, U_m = u^-1), so the map starts as x -> A(x + u(x)).
    geometry_ = state.field_geometry;
    moving_.from_middle = std::move(state.field);
    moving_.to_middle = std::move(state.inverse_field);
    if (!moving_.from_middle.empty() && moving_.to_middle.empty()) {
      const Context& ctx = run.in.ctx;
      moving_.to_middle = zeros(geometry_, 3, ctx.memory_space());
      DampedInverseOptions inv = final_inverse_options(run.params, geometry_);
      inv.newton = false;  // from zero: Newton's step needs a start near the inverse
      inv.pin_boundary = false;
      inv.boundary = Boundary::Border;  // a greedy field moves the boundary
      invert_field_damped(ctx, moving_.from_middle.view(), geometry_, moving_.to_middle.view(), inv);
    }
  }

  /// The fixed mask sampled through V_f into the middle space (recomputed every iteration).
  const LevelImage* loss_fixed_mask(const Level& level) override {
    fixed_mask_mid_ = LevelImage();
    if (level.fixed_mask.present())
      fixed_mask_mid_.owned = Volume<float>(level.fixed_geometry, 1, run_.in.ctx.memory_space());
    return &fixed_mask_mid_;
  }

  void initialize_level(LevelRun& run) override {
    const Context& ctx = run_.in.ctx;
    const Partition& part = *run_.in.part;
    const Level& level = run.level;
    const Geometry& fg = level.fixed_geometry;
    const Box owned = whole(fg);
    for (SynSide* side : {&fixed_, &moving_}) {
      side->to_middle = field_on_grid(ctx, part, std::move(side->to_middle), geometry_, fg, owned);
      side->from_middle = field_on_grid(ctx, part, std::move(side->from_middle), geometry_, fg, owned);
    }
    geometry_ = fg;
    // In the middle space both images are warped: the fixed one by V_f (into wf), the moving one
    // by A and V_m (into run.warped); run.metric takes d/dW_moving (the fixed side is the
    // reference). d/dW_fixed: the roles swap; its ranges are the moving image's over its grid and
    // the fixed image's over its grid and 0.
    const MovingWindow& moving = *level.moving;  // the whole grid in one process
    const IntensityRange moving_whole =
        global_range(ctx, part, moving.image().view(), {}, whole(moving.geometry()));
    IntensityRange fixed_whole = global_range(ctx, part, level.fixed.view(), {}, owned);
    fixed_whole.min = std::min(fixed_whole.min, 0.0);
    fixed_whole.max = std::max(fixed_whole.max, 0.0);
    metric_f_.emplace(ctx, part, run_.stage.metric, fg, owned, moving_whole, fixed_whole);
    wf_ = Volume<float>(fg, 1, ctx.memory_space());
    step_f_ = std::make_unique<FieldStepper>(ctx, part, fg, owned, run_.stage, level.min_spacing);
    step_g_ = std::make_unique<FieldStepper>(ctx, part, fg, owned, run_.stage, level.min_spacing);
    inverse_updates_ = 0;
    inversions_ = 0;
  }

  LossValue iterate(LevelRun& run, int) override {
    const Context& ctx = run_.in.ctx;
    const Level& level = run.level;
    const Geometry& fg = level.fixed_geometry;
    const Box owned = whole(fg);
    const MovingWindow& moving = *level.moving;
    const WarpInputs w_fixed =
        warp_inputs(level.fixed, fg, fg, Affined::identity(), fixed_.from_middle.view());
    const WarpInputs w_moving =
        warp_inputs(moving.image(), moving.geometry(), fg, state_.affine, moving_.from_middle.view());
    if (level.fixed_mask.present()) {
      const WarpInputs wmask =
          warp_inputs(level.fixed_mask, fg, fg, Affined::identity(), fixed_.from_middle.view());
      warp(ctx, wmask, fixed_mask_mid_.owned.view(), owned);
    }
    run.mask.update(state_.affine, moving_.from_middle.view());
    Volume<float>& wm = run.warped;
    warp(ctx, w_fixed, wf_.view(), owned);
    warp(ctx, w_moving, wm.view(), owned);
    const VolumeView<float> grad_wm = step_g_->metric_gradient(), grad_wf = step_f_->metric_gradient();
    run.metric.launch(wf_.view(), wm, run.mask.view(), grad_wm);
    metric_f_->launch(wm.view(), wf_, run.mask.view(), grad_wf);
    WarpGradients gm, gf;
    gm.displacement = step_g_->gradient();
    gf.displacement = step_f_->gradient();
    warp_backward(ctx, w_moving, grad_wm, owned, gm);
    warp_backward(ctx, w_fixed, grad_wf, owned, gf);
    advance(moving_, *step_g_, fg);
    advance(fixed_, *step_f_, fg);
    return run.metric.value();
  }

  void finish_level(LevelRun& run) override {
    if (inversions_ > 0)
      log(LogLevel::Debug, "SyN level " + std::to_string(run.index + 1) + ": " +
                               fmt(double(inverse_updates_) / double(inversions_), 3) +
                               " inverse updates per inversion on average");
    step_f_.reset();
    step_g_.reset();
    metric_f_.reset();
    wf_ = Volume<float>();
  }

  /// Refines each V against its U and collapses the sides into the warp and its inverse.
  void finish_stage() override {
    const Context& ctx = run_.in.ctx;
    const Geometry& fg = geometry_;
    const DampedInverseOptions inv = final_inverse_options(run_.params, fg);
    for (SynSide* side : {&fixed_, &moving_}) {
      const DampedInverseReport r =
          invert_field_damped(ctx, side->to_middle.view(), fg, side->from_middle.view(), inv);
      log(LogLevel::Debug, "SyN half-way inverse: " + std::to_string(r.iterations) +
                               " updates, largest residual " + fmt(r.max_error, 3) + " voxels");
    }
    Volume<float> u(fg, 3, ctx.memory_space()), w(fg, 3, ctx.memory_space());
    compose_fields(ctx, fixed_.to_middle.view(), fg, moving_.from_middle.view(), fg, u.view(),
                   whole(fg), Boundary::FieldTransform);
    compose_fields(ctx, moving_.to_middle.view(), fg, fixed_.from_middle.view(), fg, w.view(),
                   whole(fg), Boundary::FieldTransform);
    state_.field = std::move(u);
    state_.inverse_field = std::move(w);
    state_.field_geometry = fg;
  }

 private:
  /// One iteration's update of one side from the gradient in its stepper (see the top).
  void advance(SynSide& side, FieldStepper& stepper, const Geometry& fg) {
    const Context& ctx = run_.in.ctx;
    const Box owned = whole(fg);
    // sign -1: the stepper's step descends for a sampling field (V o (x + s)); U moves the other
    // way, (x + s) o U, which moves this side's image in the middle space by about -s.
    const VolumeView<float> s = stepper.step(-1.0, run_.stage.gradient_sigma > 0);
    compose_fields(ctx, side.to_middle.view(), fg, s, fg, side.to_middle.view(), owned,
                   Boundary::FieldTransform);
    if (run_.stage.field_sigma > 0) {
      const double sg = run_.stage.field_sigma;
      gaussian_smooth(ctx, side.to_middle.view(), side.to_middle.view(), Vec3d{sg, sg, sg}, owned);
      zero_field_boundary(ctx, side.to_middle.view(), fg, owned);
    }
    // The update is spent: its memory is the inversions' scratch.
    const DampedInverseOptions inv = per_iteration_inverse();
    const DampedInverseReport a =
        invert_field_damped(ctx, side.to_middle.view(), fg, side.from_middle.view(), inv, s);
    const DampedInverseReport b =
        invert_field_damped(ctx, side.from_middle.view(), fg, side.to_middle.view(), inv, s);
    inverse_updates_ += a.iterations + b.iterations;
    inversions_ += 2;
  }

  StageRun run_;
  PipelineState& state_;
  SynSide fixed_, moving_;  // on the whole level grid `geometry_`
  Geometry geometry_;
  LevelImage fixed_mask_mid_;       // the fixed mask in the middle space (when there is one)
  std::optional<Metric> metric_f_;  // d/dW_fixed, the moving side as the reference
  Volume<float> wf_;                // the fixed image in the middle space
  std::unique_ptr<FieldStepper> step_f_, step_g_;
  long long inverse_updates_ = 0, inversions_ = 0;
};

}  // namespace

std::unique_ptr<StageLevels> syn_stage(const StageRun& run, PipelineState& state) {
  return std::make_unique<SynLevels>(run, state);
}

}  // namespace gigareg::reg
