#include "gigareg/log.hpp"

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

}  // namespace gigareg
