#pragma once
// The progress display of `gigareg register` on stderr: one bar per level with the stage, the
// level, iteration i/N, the loss and an estimate of the time left in the level.
//
//   Bar   (stderr is a terminal): the current level's line is redrawn in place with '\r' (at most
//         about 10 times a second), and left on screen when the level ends.
//   Lines (stderr is a file or a pipe, e.g. a CI log): one line when a level ends, and for long
//         levels one line per further 10% of the iterations (at most one every 2 s), so logs stay
//         short but still show that a slow level is alive.
//
// The library reports iterations only (RegistrationParams::progress); a level's end is seen when
// the next report belongs to another level, or when finish() is called after the registration.
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "gigareg/registration.hpp"

namespace gigareg::cli {

enum class ProgressStyle { Bar, Lines };

/// Bar when `stream` is a terminal, else Lines.
ProgressStyle detect_progress_style(std::FILE* stream);

class ProgressDisplay {
 public:
  /// `params` gives each stage's transform, metric and iterations per level.
  ProgressDisplay(const RegistrationParams& params, ProgressStyle style, std::FILE* stream = stderr);
  ~ProgressDisplay();  // finish()
  ProgressDisplay(const ProgressDisplay&) = delete;
  ProgressDisplay& operator=(const ProgressDisplay&) = delete;

  /// Called for every iteration (RegistrationParams::progress).
  void update(const IterationReport& report);
  /// Prints a log message without breaking the bar: the bar is cleared, the message printed on a
  /// line of its own, and the bar redrawn.
  void message(std::string_view text);
  /// Ends the current level's line (after the registration, or before an error is printed).
  void finish();

 private:
  using Clock = std::chrono::steady_clock;
  struct StageInfo {
    std::string name;  // "Affine MI"
    std::vector<int> iterations;
  };
  struct Level {
    bool active = false;
    int stage = 0, level = 0, levels = 1, done = 0, limit = 0;
    double first_loss = 0, loss = 0;
    Clock::time_point start;         // when the level's set-up began (the previous level's end)
    Clock::time_point first_report;  // after its first iteration: the base of the time estimate
    Clock::time_point last_report;   // after its last iteration so far: where the level ends
    Clock::time_point last_draw, last_line;
    int last_decile = 0;
  };

  std::string level_label(const Level& l) const;
  std::string bar_line(const Level& l, bool finished) const;
  void draw(const std::string& line);
  void clear_bar();
  void end_level();

  std::vector<StageInfo> stages_;
  ProgressStyle style_;
  std::FILE* out_;
  Level current_;
  std::size_t drawn_width_ = 0;  // characters of the bar now on screen (Bar style)
};

}  // namespace gigareg::cli
