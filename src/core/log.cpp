#include "gigareg/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace gigareg {
namespace {

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warning: return "warning";
    case LogLevel::Error: return "error";
  }
  return "log";
}

void default_sink(LogLevel level, std::string_view message) {
  if (level < LogLevel::Warning) return;
  std::fprintf(stderr, "gigareg %s: %.*s\n", level_name(level), int(message.size()), message.data());
}

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}
LogSink& current_sink() {
  static LogSink sink = default_sink;
  return sink;
}
std::atomic<int> g_level{int(LogLevel::Info)};

}  // namespace

LogSink set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  LogSink previous = std::move(current_sink());
  current_sink() = sink ? std::move(sink) : LogSink(default_sink);
  return previous;
}

void set_log_level(LogLevel level) { g_level.store(int(level)); }
LogLevel log_level() { return LogLevel(g_level.load()); }

void log(LogLevel level, std::string_view message) {
  if (int(level) < g_level.load()) return;
  std::lock_guard<std::mutex> lock(sink_mutex());
  current_sink()(level, message);
}

namespace {

// The process's resident memory now (Linux /proc/self/statm; 0 elsewhere).
double resident_mib() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long pages = 0, resident = 0;
  const int got = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return got == 2 ? double(resident) * double(::sysconf(_SC_PAGESIZE)) / double(1 << 20) : 0.0;
}

}  // namespace

PhaseClock::PhaseClock() : last_(std::chrono::steady_clock::now()) {}

void PhaseClock::mark(std::string_view phase) {
  const auto now = std::chrono::steady_clock::now();
  if (log_level() <= LogLevel::Debug) {
    char numbers[96];
    std::snprintf(numbers, sizeof numbers, " %.3g s, resident %.4g MiB",
                  std::chrono::duration<double>(now - last_).count(), resident_mib());
    log(LogLevel::Debug, "time: " + std::string(phase) + numbers);
  }
  last_ = now;
}

}  // namespace gigareg
