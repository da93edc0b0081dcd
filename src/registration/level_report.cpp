// Iteration and level reports (level_report.hpp).

#include "registration/level_report.hpp"

#include <cmath>
#include <cstdio>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"

namespace gigareg::reg {

std::string fmt(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

std::string level_name(int stage_index, int lv) {
  return "stage " + std::to_string(stage_index + 1) + " level " + std::to_string(lv + 1);
}

void report_level(LevelReport& report, const StageParams& stage, int stage_index, int lv,
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
          fmt(report.final_loss) + ", " + fmt(report.seconds, 3) + " s" +
          (report.iteration_seconds.empty()
               ? std::string()
               : " (" + fmt(report.median_iteration_seconds() * 1e3, 4) + " ms per iteration, median)"));
  reports.push_back(report);
}

bool record_iteration(const LossValue& loss, int it, int lv, int levels, int stage_index,
                      const StageParams& stage, const RegistrationParams& params,
                      ConvergenceMonitor& monitor, LevelReport& report) {
  if (!(loss.count > 0))
    throw_error(ErrorKind::InvalidInput, level_name(stage_index, lv),
                "no fixed voxel counts for the metric (the masks exclude everything)");
  const double value = loss.value();
  if (!std::isfinite(value))
    throw_error(ErrorKind::Internal, level_name(stage_index, lv), "the loss is not finite");
  // The loss was just read (the read waits for the iteration on the device): the interval since
  // the previous read is this iteration's time.
  const auto now = std::chrono::steady_clock::now();
  std::string took;
  if (it > 0) {
    const double dt = std::chrono::duration<double>(now - report.last_loss_read).count();
    report.iteration_seconds.push_back(dt);
    took = ", " + fmt(dt * 1e3, 4) + " ms";
  }
  report.last_loss_read = now;
  if (it == 0) report.initial_loss = value;
  report.final_loss = value;
  report.iterations = it + 1;
  monitor.add(value);
  const double conv = monitor.value();
  if (params.progress) params.progress({stage_index, stage.transform, lv, levels, it, value, conv});
  log(LogLevel::Debug, level_name(stage_index, lv) + " iteration " + std::to_string(it + 1) +
                           ": loss " + fmt(value, 8) + ", convergence " + fmt(conv, 4) + took);
  return monitor.converged(stage.convergence.threshold);
}

}  // namespace gigareg::reg
