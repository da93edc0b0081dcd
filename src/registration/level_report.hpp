#pragma once
// What a level reports: each iteration's loss (progress callback, convergence monitor, debug
// log) and the level's summary; and the number format of the registration's logs.

#include <chrono>
#include <string>
#include <vector>

#include "gigareg/ops/loss.hpp"
#include "gigareg/registration.hpp"

namespace gigareg::reg {

/// "stage S level L" (1-based) for messages.
std::string level_name(int stage_index, int lv);

/// Records one iteration's loss in `report` and the monitor, calls the progress callback and logs
/// it; throws when no voxel counts or the loss is not finite. Returns true when the level has
/// converged.
bool record_iteration(const LossValue& loss, int it, int lv, int levels, int stage_index,
                      const StageParams& stage, const RegistrationParams& params,
                      ConvergenceMonitor& monitor, LevelReport& report);

/// Sets the level's time (since t0), logs its summary and appends it to `reports`.
void report_level(LevelReport& report, const StageParams& stage, int stage_index, int lv,
                  int levels, std::chrono::steady_clock::time_point t0,
                  std::vector<LevelReport>& reports);

/// Formats a double for logs.
std::string fmt(double v, int precision = 6);

}  // namespace gigareg::reg
