#pragma once
// The level driver: the one loop over the pyramid levels of a stage, in the shape of ITK's
// ImageRegistrationMethodv4 (a short loop over levels; the transform-specific work in hooks).
// For every level the driver builds what all stages share: the level's images (make_level), the
// loss mask, the metric and its warped image; it runs the iterations, feeds each loss to the
// convergence monitor and the level's report, and logs the level. A stage (linear, greedy, SyN;
// stages.hpp) plugs in through the hooks of StageLevels.

#include <chrono>
#include <vector>

#include "gigareg/ops/loss.hpp"
#include "gigareg/registration.hpp"
#include "gigareg/volume.hpp"
#include "registration/level.hpp"
#include "registration/level_image.hpp"
#include "registration/loss_mask.hpp"
#include "registration/metric.hpp"

namespace gigareg::reg {

/// The state the stages pass along.
struct PipelineState {
  Vec3d center{0, 0, 0};                 // the linear transform's centre (ITK fixed parameters)
  Affined affine = Affined::identity();  // physical fixed -> moving
  Volume<float> field;                   // backend memory, on `field_geometry`, box contains the
                                         // owned box of that grid (empty: none)
  Volume<float> inverse_field;           // the inverse of `field` on the same grid and box, where
                                         // the stage that left `field` knows it (SyN: from its
                                         // half-way fields); empty: the pipeline inverts `field`
  Geometry field_geometry;
};

/// The stage a driver runs, and the registration it belongs to.
struct StageRun {
  const Inputs& in;
  const StageParams& stage;
  int index;  // 0-based, in params.stages
  const RegistrationParams& params;
};

class StageLevels;

/// What the driver builds for one level and hands to the hooks. Built in place and never moved
/// (the mask points into the level).
struct LevelRun {
  LevelRun(const StageRun& run, int lv, StageLevels& hooks);
  LevelRun(const LevelRun&) = delete;
  LevelRun& operator=(const LevelRun&) = delete;

  int index;    // 0-based, coarse to fine
  int count;    // the stage's number of levels
  Level level;
  MaskCombiner mask;     // the loss mask (recomputed by the hooks for their transform)
  Metric metric;         // the warped moving image against the fixed image, on the owned box
  Volume<float> warped;  // where the hooks warp the moving image: owned box + metric image halo
};

/// The per-level hooks of a stage. The driver calls, for each level: loss_fixed_mask (while it
/// builds the LevelRun), initialize_level, then per iteration iterate, and update unless that
/// iteration's loss converged; then finish_level; after the last level finish_stage.
class StageLevels {
 public:
  virtual ~StageLevels() = default;
  /// The fixed mask, in the space where the loss is computed, that the loss mask combines with
  /// the moving one: the level's fixed mask (SyN: its own image of it in the middle space).
  virtual const LevelImage* loss_fixed_mask(const Level& level) { return &level.fixed_mask; }
  /// The level's state: the transform carried over from the previous level, the optimiser.
  virtual void initialize_level(LevelRun& run) = 0;
  /// One iteration, up to the read of its loss (the one host synchronisation), which it returns.
  virtual LossValue iterate(LevelRun& run, int iteration) = 0;
  /// After an iteration whose loss did not converge: the work that needs the loss on the host.
  virtual void update(LevelRun&) {}
  /// Hands the level's transform on to the pipeline state and releases the level's state.
  virtual void finish_level(LevelRun& run) = 0;
  /// After the last level.
  virtual void finish_stage() {}
};

/// Runs every level of `run.stage` through `hooks`; appends the level reports to `reports`.
void run_levels(const StageRun& run, StageLevels& hooks, std::vector<LevelReport>& reports);

}  // namespace gigareg::reg
