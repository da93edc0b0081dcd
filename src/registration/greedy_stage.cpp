// Greedy deformable stages: compositive updates of a displacement field u on the fixed grid,
// T(x) = A(x + u(x)) (the hooks of the level driver).
//
// One iteration (every array touched is a level-grid volume in the backend's memory; nothing is
// synchronised with the host except the loss value read for the convergence check, after the
// whole iteration is enqueued):
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
// instead of being amplified to full ones. The step itself is FieldStepper's.

#include <memory>
#include <string>
#include <utility>

#include "gigareg/log.hpp"
#include "gigareg/ops/warp.hpp"
#include "registration/field_stepper.hpp"
#include "registration/reductions.hpp"
#include "registration/stages.hpp"

namespace gigareg::reg {
namespace {

class GreedyLevels final : public StageLevels {
 public:
  GreedyLevels(const StageRun& run, PipelineState& state) : run_(run), state_(state) {
    state_.inverse_field = Volume<float>();  // no longer the inverse once the field moves
    // Without smoothing of the total field nothing keeps the sum of the updates from folding
    // (GaussianDisplacementField[0.25,3,0] folded 0.09% of the prostate MR pair, with a total
    // variance of 0.5 none): say so before the run, and what does not fold.
    if (run.stage.field_sigma <= 0)
      log(LogLevel::Warning,
          "stage " + std::to_string(run.index + 1) +
              ": a greedy field (Greedy / GaussianDisplacementField) without smoothing of the total "
              "field can fold: use SyN[step,updateVariance,totalVariance] (its half-way fields are "
              "re-inverted every iteration and do not fold), or smooth the total field "
              "(GaussianDisplacementField[step,3,0.5] or Greedy[step,sigmaGrad,0.5] and more)");
  }

  void initialize_level(LevelRun& run) override {
    const Context& ctx = run_.in.ctx;
    const Partition& part = *run_.in.part;
    const Geometry& fg = run.level.fixed_geometry;
    stepper_ = std::make_unique<FieldStepper>(ctx, part, fg, run.level.owned, run_.stage,
                                              run.level.min_spacing);
    u_ = field_on_grid(ctx, part, std::move(state_.field), state_.field_geometry, fg,
                       stepper_->field_box());
    state_.field_geometry = fg;
    // A bound on |u| for the moving window, kept on the host without synchronising: an update
    // adds at most update_norm() and smoothing never increases the largest norm. Measured
    // (one synchronisation) only when the bound says the window may be outgrown.
    windowed_ = part.size() > 1;
    bound_ = windowed_ ? global_max_norm(ctx, part, u_, run.level.owned) : 0.0;
  }

  LossValue iterate(LevelRun& run, int) override {
    const Context& ctx = run_.in.ctx;
    const Partition& part = *run_.in.part;
    MovingWindow& window = *run.level.moving;
    const Box owned = run.level.owned;
    if (windowed_ && !part.all(window.covers(state_.affine, bound_))) {
      bound_ = global_max_norm(ctx, part, u_, owned);
      window.cover(state_.affine, bound_ + 4.0 * stepper_->update_norm());
    }
    const WarpInputs w = warp_inputs(window.image(), window.geometry(), run.level.fixed_geometry,
                                     state_.affine, u_.view());
    run.mask.update(state_.affine, u_.view());
    warp(ctx, w, run.warped.view(), owned);
    const VolumeView<float> grad_w = stepper_->metric_gradient();
    run.metric.launch(run.level.fixed.view(), run.warped, run.mask.view(), grad_w);
    WarpGradients wg;
    wg.displacement = stepper_->gradient();
    warp_backward(ctx, w, grad_w, owned, wg);
    stepper_->apply(u_);
    bound_ += stepper_->update_norm() * (1.0 + 1e-6);
    // The loss of the field before this update (read once the update is enqueued).
    return run.metric.value();
  }

  void finish_level(LevelRun&) override {
    state_.field = std::move(u_);
    stepper_.reset();
  }

 private:
  StageRun run_;
  PipelineState& state_;
  std::unique_ptr<FieldStepper> stepper_;
  Volume<float> u_;  // the field, on the stepper's field box
  bool windowed_ = false;
  double bound_ = 0;  // a bound on |u| (mm)
};

}  // namespace

std::unique_ptr<StageLevels> greedy_stage(const StageRun& run, PipelineState& state) {
  return std::make_unique<GreedyLevels>(run, state);
}

}  // namespace gigareg::reg
