#pragma once
// A single log hook. The library never prints on its own: it hands messages to the sink, which
// the CLI sends to stderr, tests silence or capture, and embedding programs route to their logger.

#include <chrono>
#include <functional>
#include <string_view>

namespace gigareg {

enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3 };

using LogSink = std::function<void(LogLevel, std::string_view)>;

/// Installs `sink` (an empty function restores the default, which writes Warning and above to
/// stderr). Returns the previous sink. Thread-safe.
LogSink set_log_sink(LogSink sink);

/// Messages below this level are dropped before they reach the sink.
void set_log_level(LogLevel level);
LogLevel log_level();

void log(LogLevel level, std::string_view message);

/// Logs at Debug level the seconds since the previous mark (or construction) under a phase's
/// name, with the process's resident memory: "time: <phase> <s> s, resident <MiB> MiB". Where
/// a command's time goes besides its stages (`-v 2`).
class PhaseClock {
 public:
  PhaseClock();
  void mark(std::string_view phase);

 private:
  std::chrono::steady_clock::time_point last_;
};

}  // namespace gigareg
