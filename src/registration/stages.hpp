#pragma once
// The stages of a registration as per-level hooks of the level driver (level_driver.hpp):
// linear (translation, rigid, affine; linear_stage.cpp), greedy (greedy_stage.cpp) and SyN
// (syn_stage.cpp). Each reads the transform so far from the pipeline state when it starts a level
// and leaves its result there.

#include <memory>
#include <vector>

#include "registration/level_driver.hpp"

namespace gigareg::reg {

std::unique_ptr<StageLevels> linear_stage(const StageRun& run, PipelineState& state);
std::unique_ptr<StageLevels> greedy_stage(const StageRun& run, PipelineState& state);
std::unique_ptr<StageLevels> syn_stage(const StageRun& run, PipelineState& state);

/// Runs one stage (all its levels) with the hooks of its transform; appends to `reports`.
void run_stage(const Inputs& in, const StageParams& stage, int stage_index,
               const RegistrationParams& params, PipelineState& state,
               std::vector<LevelReport>& reports);

}  // namespace gigareg::reg
