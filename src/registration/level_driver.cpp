// The level driver (level_driver.hpp).

#include "registration/level_driver.hpp"

#include "registration/level_report.hpp"
#include "registration/stages.hpp"

namespace gigareg::reg {

LevelRun::LevelRun(const StageRun& run, int lv, StageLevels& hooks)
    : index(lv),
      count(int(run.stage.convergence.iterations.size())),
      level(make_level(run.in, run.stage, lv)),
      mask(run.in.ctx, *run.in.part, level.fixed_geometry, level.owned, level.mask_halo,
           hooks.loss_fixed_mask(level), level.moving.get()),
      metric(run.in.ctx, *run.in.part, run.stage.metric, level.fixed_geometry, level.owned,
             level.fixed_range, level.moving_range),
      warped(level.fixed_geometry, run.in.part->halo_box(level.fixed_geometry.size, level.image_halo),
             1, run.in.ctx.memory_space()) {}

void run_levels(const StageRun& run, StageLevels& hooks, std::vector<LevelReport>& reports) {
  const StageParams& stage = run.stage;
  const int levels = int(stage.convergence.iterations.size());
  for (int lv = 0; lv < levels; ++lv) {
    const auto t0 = std::chrono::steady_clock::now();  // the level's time includes its set-up
    LevelRun level(run, lv, hooks);
    hooks.initialize_level(level);
    ConvergenceMonitor monitor(stage.convergence.window);
    LevelReport report;
    report.stage = run.index;
    report.level = lv;
    report.size = level.level.fixed_geometry.size;
    const int max_iterations = stage.convergence.iterations[std::size_t(lv)];
    for (int it = 0; it < max_iterations; ++it) {
      const LossValue loss = hooks.iterate(level, it);
      if (record_iteration(loss, it, lv, levels, run.index, stage, run.params, monitor, report)) {
        report.converged = true;
        break;
      }
      hooks.update(level);
    }
    hooks.finish_level(level);
    report_level(report, stage, run.index, lv, levels, t0, reports);
  }
  hooks.finish_stage();
}

void run_stage(const Inputs& in, const StageParams& stage, int stage_index,
               const RegistrationParams& params, PipelineState& state,
               std::vector<LevelReport>& reports) {
  const StageRun run{in, stage, stage_index, params};
  std::unique_ptr<StageLevels> hooks;
  if (is_linear(stage.transform))
    hooks = linear_stage(run, state);
  else if (stage.transform == TransformType::SyN)
    hooks = syn_stage(run, state);
  else
    hooks = greedy_stage(run, state);
  run_levels(run, *hooks, reports);
}

}  // namespace gigareg::reg
