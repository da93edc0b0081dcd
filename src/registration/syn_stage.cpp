// SyN stages (the hooks of the level driver): fields f and g on the fixed grid of the level
// define a middle space z: the fixed image is sampled at z + f(z), the moving image at
// A(z + g(z)). Each iteration takes the same normalised step (FieldStepper) on both, descending
// the metric w.r.t. each side, composes each into its field and smooths it. The final map from
// the fixed space is x -> A(y + g(y)), y = x + f^-1(x):
//   u(x) = f^-1(x) + g(x + f^-1(x)),
// with f^-1 by invert_field.

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "gigareg/error.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/warp.hpp"
#include "registration/field_stepper.hpp"
#include "registration/reductions.hpp"
#include "registration/stages.hpp"

namespace gigareg::reg {
namespace {

class SynLevels final : public StageLevels {
 public:
  SynLevels(const StageRun& run, PipelineState& state) : run_(run), state_(state) {
    // Not sharded yet: its collapse needs the inverse of the fixed-side field and both images are
    // warped in the middle space (the fixed image would need a window as the moving one has).
    if (run.in.part->size() > 1)
      throw_error(ErrorKind::InvalidArgument, "SyN stage",
                  "SyN runs in one process only so far; use Greedy[...] under mpirun");
    // The fixed side starts at the identity; an earlier deformable stage's field is kept as the
    // starting moving side (the map is then x -> A(y + g(y)), y = x + f^-1(x), f = 0 at first).
    g_ = std::move(state.field);
    fgeom_ = ggeom_ = state.field_geometry;
  }

  /// The fixed mask sampled through f into the middle space (recomputed every iteration).
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
    f_ = field_on_grid(ctx, part, std::move(f_), fgeom_, fg, owned);
    g_ = field_on_grid(ctx, part, std::move(g_), ggeom_, fg, owned);
    fgeom_ = ggeom_ = fg;
    // In the middle space both images are warped: the fixed one by f (into wf), the moving one by
    // A and g (into run.warped); run.metric takes d/dW_moving (the fixed side is the reference).
    // d/dW_fixed: the roles swap; its ranges are the moving image's over its grid and the fixed
    // image's over its grid and 0.
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
  }

  LossValue iterate(LevelRun& run, int) override {
    const Context& ctx = run_.in.ctx;
    const Level& level = run.level;
    const Geometry& fg = level.fixed_geometry;
    const Box owned = whole(fg);
    const MovingWindow& moving = *level.moving;
    const WarpInputs w_fixed = warp_inputs(level.fixed, fg, fg, Affined::identity(), f_.view());
    const WarpInputs w_moving =
        warp_inputs(moving.image(), moving.geometry(), fg, state_.affine, g_.view());
    if (level.fixed_mask.present()) {
      const WarpInputs wmask = warp_inputs(level.fixed_mask, fg, fg, Affined::identity(), f_.view());
      warp(ctx, wmask, fixed_mask_mid_.owned.view(), owned);
    }
    run.mask.update(state_.affine, g_.view());
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
    step_g_->apply(g_);
    step_f_->apply(f_);
    return run.metric.value();
  }

  void finish_level(LevelRun&) override {
    step_f_.reset();
    step_g_.reset();
    metric_f_.reset();
    wf_ = Volume<float>();
  }

  /// Collapses the two fields into one on the last level's grid: u(x) = f^-1(x) + g(x + f^-1(x)).
  void finish_stage() override {
    const Context& ctx = run_.in.ctx;
    const Geometry& fg = fgeom_;
    InverseOptions inv;
    inv.iterations = run_.params.inverse_iterations;
    inv.tolerance = run_.params.inverse_tolerance_mm;
    Volume<float> finv(fg, 3, ctx.memory_space());
    invert_field(ctx, f_.view(), fg, fg, finv.view(), whole(fg), inv);
    Volume<float> u(fg, 3, ctx.memory_space());
    compose_fields(ctx, finv.view(), fg, g_.view(), fg, u.view(), whole(fg));
    state_.field = std::move(u);
    state_.field_geometry = fg;
  }

 private:
  StageRun run_;
  PipelineState& state_;
  Volume<float> f_, g_;  // the fixed and moving sides' fields, on the whole level grid
  Geometry fgeom_, ggeom_;
  LevelImage fixed_mask_mid_;       // the fixed mask in the middle space (when there is one)
  std::optional<Metric> metric_f_;  // d/dW_fixed, the moving side as the reference
  Volume<float> wf_;                // the fixed image in the middle space
  std::unique_ptr<FieldStepper> step_f_, step_g_;
};

}  // namespace

std::unique_ptr<StageLevels> syn_stage(const StageRun& run, PipelineState& state) {
  return std::make_unique<SynLevels>(run, state);
}

}  // namespace gigareg::reg
